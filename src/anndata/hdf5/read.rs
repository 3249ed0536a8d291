//! Blocking hyperslab reads of one HDF5 dataset: numbers in their stored type, and strings.
//! Only the chunks a selection overlaps are read (and decompressed); callers run these on the
//! blocking pool.

use std::ops::Range;

use hdf5_reader::error::Result as H5Result;
use hdf5_reader::{Dataset, H5Type, SliceInfo, SliceInfoElem};

use super::dtype::{H5Bool, H5Half, VLEN_REFERENCE_BYTES, VlenReference, is_vlen_string};
use crate::anndata::{ElementKind, Numbers};

/// Largest span of whole rows (in bytes) read to serve a column subset of an unchunked 2-D
/// dataset: one sequential read and a copy beat a strided read per row.
const WHOLE_ROWS_MAX_BYTES: u64 = 16 << 20;

fn selection(ranges: &[Range<u64>]) -> SliceInfo {
    SliceInfo {
        selections: ranges
            .iter()
            .map(|r| SliceInfoElem::Slice {
                start: r.start,
                end: r.end,
                step: 1,
            })
            .collect(),
    }
}

/// The values of `ranges` (one per dimension; none for a scalar), row-major.
fn read<T: H5Type>(ds: &Dataset, ranges: &[Range<u64>]) -> H5Result<Vec<T>> {
    if ranges.iter().any(|r| r.is_empty()) {
        return Ok(Vec::new());
    }
    let array = if ranges.is_empty() {
        ds.read_array::<T>()?
    } else {
        ds.read_slice::<T>(&selection(ranges))?
    };
    // A freshly decoded array is in standard (C) order from offset 0: its vector is the data.
    let len = array.len();
    if array.is_standard_layout() {
        let (mut values, offset) = array.into_raw_vec_and_offset();
        let start = offset.unwrap_or(0);
        values.truncate(start.saturating_add(len));
        values.drain(..start.min(values.len()));
        return Ok(values);
    }
    Ok(array.iter().cloned().collect())
}

/// Like [`read`], but a column subset of an unchunked 2-D dataset reads the rows whole when
/// they are small enough, then keeps the columns asked for.
fn read_rows_then_columns<T: H5Type + Copy>(
    ds: &Dataset,
    ranges: &[Range<u64>],
    element_bytes: u64,
) -> H5Result<Vec<T>> {
    let ([rows, cols], [_, n_cols]) = (ranges, ds.shape()) else {
        return read(ds, ranges);
    };
    let whole_rows_bytes = (rows.end - rows.start)
        .saturating_mul(*n_cols)
        .saturating_mul(element_bytes);
    let full_width = cols.start == 0 && cols.end == *n_cols;
    if full_width || ds.chunks().is_some() || whole_rows_bytes > WHOLE_ROWS_MAX_BYTES {
        return read(ds, ranges);
    }
    let all = read::<T>(ds, &[rows.clone(), 0..*n_cols])?;
    let (width, c0, c1) = (*n_cols as usize, cols.start as usize, cols.end as usize);
    Ok(all
        .chunks_exact(width.max(1))
        .flat_map(|row| row[c0..c1].iter().copied())
        .collect())
}

/// Numbers (or bools) of `ranges` in their stored type; `None` for a kind that is not numeric.
pub(crate) fn numbers(
    ds: &Dataset,
    kind: ElementKind,
    ranges: &[Range<u64>],
) -> H5Result<Option<Numbers>> {
    macro_rules! get {
        ($t:ty, $variant:ident) => {
            Numbers::$variant(read_rows_then_columns::<$t>(
                ds,
                ranges,
                std::mem::size_of::<$t>() as u64,
            )?)
        };
    }
    Ok(Some(match kind {
        ElementKind::Bool => Numbers::Bool(
            read_rows_then_columns::<H5Bool>(ds, ranges, 1)?
                .into_iter()
                .map(|b| b.0)
                .collect(),
        ),
        ElementKind::Int(1) => get!(i8, I8),
        ElementKind::Int(2) => get!(i16, I16),
        ElementKind::Int(4) => get!(i32, I32),
        ElementKind::Int(8) => get!(i64, I64),
        ElementKind::UInt(1) => get!(u8, U8),
        ElementKind::UInt(2) => get!(u16, U16),
        ElementKind::UInt(4) => get!(u32, U32),
        ElementKind::UInt(8) => get!(u64, U64),
        ElementKind::Float(2) => Numbers::F16(
            read_rows_then_columns::<H5Half>(ds, ranges, 2)?
                .into_iter()
                .map(|h| h.0)
                .collect(),
        ),
        ElementKind::Float(4) => get!(f32, F32),
        ElementKind::Float(8) => get!(f64, F64),
        _ => return Ok(None),
    }))
}

/// Strings of a 1-D `range` (or the one string of a scalar when `range` is `None`).
///
/// Variable-length strings read only the references of the range, then resolve each in the
/// global heap; fixed-length strings (rare in `.h5ad`) are read whole and sliced.
pub(crate) fn strings(ds: &Dataset, range: Option<Range<u64>>) -> H5Result<Vec<String>> {
    let Some(range) = range else {
        return ds.read_strings();
    };
    if range.is_empty() {
        return Ok(Vec::new());
    }
    if is_vlen_string(ds.dtype()) && ds.vlen_reference_size() == VLEN_REFERENCE_BYTES {
        return read::<VlenReference>(ds, &[range])?
            .into_iter()
            .map(|reference| {
                let bytes = ds.resolve_vlen_reference_bytes(&reference.0, 1)?;
                Ok(String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
            })
            .collect();
    }
    let all = ds.read_strings()?;
    let (start, end) = (range.start as usize, range.end as usize);
    Ok(all
        .get(start..end)
        .map(<[String]>::to_vec)
        .unwrap_or_default())
}
