//! HDF5 attributes as JSON, the form Zarr stores them in (`.zattrs` / `attributes`): anndata
//! writes the same element encodings to both, so the shared AnnData reader above sees one
//! model.

use hdf5_reader::error::Result as H5Result;
use hdf5_reader::{Attribute, Datatype};
use serde_json::{Map, Number, Value};

use super::dtype::{enum_codes, is_h5py_bool, is_string, type_name};

/// `attributes` as a JSON object in name order (libhdf5's and h5py's default order). An
/// attribute of a type anndata never writes (compound, reference…) or one that cannot be
/// decoded becomes `null`, logged at debug level with its key.
pub(crate) fn to_json(attributes: &[Attribute], key: &str) -> Map<String, Value> {
    let mut sorted: Vec<&Attribute> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    sorted
        .into_iter()
        .map(|attribute| {
            let value = value(attribute).unwrap_or_else(|e| {
                tracing::debug!(
                    target: "cellucid_edge::h5ad",
                    "{key}: attribute {} unreadable: {e}",
                    attribute.name
                );
                Value::Null
            });
            (attribute.name.clone(), value)
        })
        .collect()
}

fn float_value(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn values<T>(v: Vec<T>, to_json: impl Fn(T) -> Value) -> Vec<Value> {
    v.into_iter().map(to_json).collect()
}

/// One attribute's value: a scalar for a scalar dataspace, else an array (flattened).
fn value(attribute: &Attribute) -> H5Result<Value> {
    let a = attribute;
    let items: Vec<Value> = match &a.datatype {
        td if is_h5py_bool(td) => a.raw_data.iter().map(|b| Value::Bool(*b != 0)).collect(),
        Datatype::Enum { base, .. } => values(enum_codes(&a.raw_data, base)?, Value::from),
        Datatype::FixedPoint { size, signed, .. } => match (size, signed) {
            (1, true) => values(a.read_1d::<i8>()?, Value::from),
            (2, true) => values(a.read_1d::<i16>()?, Value::from),
            (4, true) => values(a.read_1d::<i32>()?, Value::from),
            (8, true) => values(a.read_1d::<i64>()?, Value::from),
            (1, false) => values(a.read_1d::<u8>()?, Value::from),
            (2, false) => values(a.read_1d::<u16>()?, Value::from),
            (4, false) => values(a.read_1d::<u32>()?, Value::from),
            (8, false) => values(a.read_1d::<u64>()?, Value::from),
            _ => return Err(unsupported(a)),
        },
        Datatype::FloatingPoint { size: 4, .. } => {
            values(a.read_1d::<f32>()?, |x| float_value(f64::from(x)))
        }
        Datatype::FloatingPoint { size: 8, .. } => values(a.read_1d::<f64>()?, float_value),
        Datatype::FloatingPoint { size: 2, .. } => {
            values(a.read_1d::<super::dtype::H5Half>()?, |x| {
                float_value(f64::from(x.0))
            })
        }
        td if is_string(td) => values(a.read_strings()?, Value::String),
        _ => return Err(unsupported(a)),
    };
    Ok(if a.shape.is_empty() {
        items.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    })
}

fn unsupported(a: &Attribute) -> hdf5_reader::error::Error {
    hdf5_reader::error::Error::TypeMismatch {
        expected: "a number, bool or string attribute".into(),
        actual: type_name(&a.datatype),
    }
}
