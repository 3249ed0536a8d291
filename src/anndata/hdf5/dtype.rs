//! HDF5 datatypes as AnnData sees them: the [`ElementKind`] of a stored type, a readable name
//! for messages, and the element types `hdf5-reader` decodes that it has no built-in for
//! (h5py's bool enum, half floats, raw variable-length references).

use hdf5_reader::error::{Error as H5Error, Result as H5Result};
use hdf5_reader::{ByteOrder, Datatype, H5Type, StringSize, VarLenKind};

use crate::anndata::ElementKind;

/// Whether `td` is how h5py stores numpy `bool`: an enum `{FALSE: 0, TRUE: 1}` over an 8-bit
/// integer.
pub(crate) fn is_h5py_bool(td: &Datatype) -> bool {
    match td {
        Datatype::Enum { base, members } => {
            matches!(**base, Datatype::FixedPoint { size: 1, .. })
                && members.len() == 2
                && members.iter().any(|m| m.name == "FALSE")
                && members.iter().any(|m| m.name == "TRUE")
        }
        _ => false,
    }
}

/// Whether `td` holds text: a variable-length string (h5py's `str`/`bytes` vlen types) or a
/// fixed-length string (numpy `S<n>`).
pub(crate) fn is_string(td: &Datatype) -> bool {
    matches!(
        td,
        Datatype::String { .. }
            | Datatype::VarLen {
                kind: VarLenKind::String,
                ..
            }
    )
}

/// Whether `td` is a variable-length string (stored as global-heap references).
pub(crate) fn is_vlen_string(td: &Datatype) -> bool {
    matches!(
        td,
        Datatype::String {
            size: StringSize::Variable,
            ..
        } | Datatype::VarLen {
            kind: VarLenKind::String,
            ..
        }
    )
}

/// The element kind of an HDF5 type, as far as AnnData reading cares.
pub(crate) fn element_kind(td: &Datatype) -> ElementKind {
    match td {
        _ if is_h5py_bool(td) => ElementKind::Bool,
        Datatype::FixedPoint {
            size, signed: true, ..
        } => ElementKind::Int(*size),
        Datatype::FixedPoint {
            size,
            signed: false,
            ..
        } => ElementKind::UInt(*size),
        Datatype::FloatingPoint { size, .. } => ElementKind::Float(*size),
        _ if is_string(td) => ElementKind::String,
        _ => ElementKind::Other,
    }
}

/// A short name of the type for messages (`int32`, `float64`, `bool`, `string`, `compound`…).
pub(crate) fn type_name(td: &Datatype) -> String {
    match td {
        _ if is_h5py_bool(td) => "bool".into(),
        Datatype::FixedPoint { size, signed, .. } => {
            format!(
                "{}int{}",
                if *signed { "" } else { "u" },
                u32::from(*size) * 8
            )
        }
        Datatype::FloatingPoint { size, .. } => format!("float{}", u32::from(*size) * 8),
        Datatype::String {
            size: StringSize::Fixed(n),
            ..
        } => format!("fixed-length string ({n} bytes)"),
        _ if is_vlen_string(td) => "variable-length string".into(),
        Datatype::Compound { .. } => "compound".into(),
        Datatype::Array { .. } => "array".into(),
        Datatype::Enum { .. } => "enum".into(),
        Datatype::VarLen { .. } => "variable-length sequence".into(),
        Datatype::Opaque { .. } => "opaque".into(),
        Datatype::Reference { .. } => "reference".into(),
        Datatype::Bitfield { .. } => "bitfield".into(),
        Datatype::String { .. } => "string".into(),
    }
}

fn mismatch(expected: &str, found: &Datatype) -> H5Error {
    H5Error::TypeMismatch {
        expected: expected.into(),
        actual: type_name(found),
    }
}

fn first_bytes<const N: usize>(bytes: &[u8], order: ByteOrder) -> H5Result<[u8; N]> {
    let mut out: [u8; N] = bytes
        .get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| H5Error::InvalidData(format!("element shorter than {N} bytes")))?;
    let native_little = cfg!(target_endian = "little");
    if (order == ByteOrder::LittleEndian) != native_little {
        out.reverse();
    }
    Ok(out)
}

/// One value of h5py's bool enum.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H5Bool(pub bool);

impl H5Type for H5Bool {
    fn hdf5_type() -> Datatype {
        Datatype::FixedPoint {
            size: 1,
            signed: true,
            byte_order: ByteOrder::LittleEndian,
        }
    }

    fn from_bytes(bytes: &[u8], dtype: &Datatype) -> H5Result<Self> {
        if !is_h5py_bool(dtype) {
            return Err(mismatch("bool enum", dtype));
        }
        let byte = bytes
            .first()
            .ok_or_else(|| H5Error::InvalidData("empty bool element".into()))?;
        Ok(H5Bool(*byte != 0))
    }

    fn element_size(_dtype: &Datatype) -> usize {
        1
    }
}

/// One IEEE half-precision value, widened to `f32`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H5Half(pub f32);

impl H5Type for H5Half {
    fn hdf5_type() -> Datatype {
        Datatype::FloatingPoint {
            size: 2,
            byte_order: ByteOrder::LittleEndian,
        }
    }

    fn from_bytes(bytes: &[u8], dtype: &Datatype) -> H5Result<Self> {
        let Datatype::FloatingPoint {
            size: 2,
            byte_order,
        } = dtype
        else {
            return Err(mismatch("float16", dtype));
        };
        let raw = first_bytes::<2>(bytes, *byte_order)?;
        Ok(H5Half(f32::from(half::f16::from_ne_bytes(raw))))
    }

    fn element_size(_dtype: &Datatype) -> usize {
        2
    }
}

/// Bytes of one variable-length reference as stored in a dataset with 8-byte file offsets:
/// sequence length (u32), global heap collection address (u64), object index (u32).
pub(crate) const VLEN_REFERENCE_BYTES: usize = 16;

/// One raw variable-length reference (resolved afterwards against the global heap).
#[derive(Debug, Clone, Copy)]
pub(crate) struct VlenReference(pub [u8; VLEN_REFERENCE_BYTES]);

impl H5Type for VlenReference {
    fn hdf5_type() -> Datatype {
        Datatype::Opaque {
            size: VLEN_REFERENCE_BYTES as u32,
            tag: String::new(),
        }
    }

    fn from_bytes(bytes: &[u8], dtype: &Datatype) -> H5Result<Self> {
        if !is_vlen_string(dtype) {
            return Err(mismatch("variable-length string", dtype));
        }
        bytes
            .get(..VLEN_REFERENCE_BYTES)
            .and_then(|b| b.try_into().ok())
            .map(VlenReference)
            .ok_or_else(|| H5Error::InvalidData("truncated variable-length reference".into()))
    }

    fn element_size(_dtype: &Datatype) -> usize {
        VLEN_REFERENCE_BYTES
    }
}

/// Integer values of enum members stored in `raw` over the integer type `base` (for enums
/// that are not h5py bools, read as their integer codes, as libhdf5 converts them).
pub(crate) fn enum_codes(raw: &[u8], base: &Datatype) -> H5Result<Vec<i64>> {
    let Datatype::FixedPoint {
        size,
        signed,
        byte_order,
    } = base
    else {
        return Err(mismatch("integer enum base", base));
    };
    let (size, signed, order) = (*size, *signed, *byte_order);
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(mismatch("1, 2, 4 or 8-byte enum base", base));
    }
    let decode = |b: &[u8]| -> H5Result<i64> {
        Ok(match (size, signed) {
            (1, true) => i64::from(i8::from_ne_bytes(first_bytes(b, order)?)),
            (1, false) => i64::from(u8::from_ne_bytes(first_bytes(b, order)?)),
            (2, true) => i64::from(i16::from_ne_bytes(first_bytes(b, order)?)),
            (2, false) => i64::from(u16::from_ne_bytes(first_bytes(b, order)?)),
            (4, true) => i64::from(i32::from_ne_bytes(first_bytes(b, order)?)),
            (4, false) => i64::from(u32::from_ne_bytes(first_bytes(b, order)?)),
            (8, _) => i64::from_ne_bytes(first_bytes(b, order)?),
            _ => return Err(mismatch("1, 2, 4 or 8-byte enum base", base)),
        })
    };
    raw.chunks_exact(usize::from(size)).map(decode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(size: u8, signed: bool, byte_order: ByteOrder) -> Datatype {
        Datatype::FixedPoint {
            size,
            signed,
            byte_order,
        }
    }

    #[test]
    fn enum_codes_sign_extend_in_both_byte_orders() {
        let le = int(2, true, ByteOrder::LittleEndian);
        assert_eq!(enum_codes(&[0xfe, 0xff, 7, 0], &le).unwrap(), [-2, 7]);
        let be = int(2, true, ByteOrder::BigEndian);
        assert_eq!(enum_codes(&[0xff, 0xfe, 0, 7], &be).unwrap(), [-2, 7]);
        let unsigned = int(1, false, ByteOrder::LittleEndian);
        assert_eq!(enum_codes(&[0xff], &unsigned).unwrap(), [255]);
        assert!(enum_codes(&[0; 3], &int(3, true, ByteOrder::LittleEndian)).is_err());
    }

    #[test]
    fn kinds_and_names() {
        let float = Datatype::FloatingPoint {
            size: 4,
            byte_order: ByteOrder::LittleEndian,
        };
        assert_eq!(element_kind(&float), ElementKind::Float(4));
        assert_eq!(type_name(&float), "float32");
        assert_eq!(
            element_kind(&int(8, false, ByteOrder::BigEndian)),
            ElementKind::UInt(8)
        );
        assert_eq!(type_name(&int(2, true, ByteOrder::LittleEndian)), "int16");
    }

    #[test]
    fn half_floats_widen() {
        let half = Datatype::FloatingPoint {
            size: 2,
            byte_order: ByteOrder::LittleEndian,
        };
        // 0x3c00 = 1.0, 0xc000 = -2.0
        assert_eq!(H5Half::from_bytes(&[0x00, 0x3c], &half).unwrap().0, 1.0);
        assert_eq!(H5Half::from_bytes(&[0x00, 0xc0], &half).unwrap().0, -2.0);
        assert!(H5Half::from_bytes(&[0x00], &half).is_err());
    }
}
