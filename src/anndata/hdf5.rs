//! The HDF5 (`.h5ad`) array source: an AnnData file read through `hdf5-metno` (libhdf5).
//!
//! anndata writes the same element encodings (attributes, group layout) to HDF5 as to Zarr, so
//! this module only answers the questions the Zarr [`MetadataTree`](super::MetadataTree)
//! answers — which node is at a key, its attributes, a group's children — and reads hyperslabs
//! of one dataset. Everything above (frames, layout, matrices) is shared with the Zarr reader.
//! Reads touch only the requested selection (libhdf5 reads just the chunks it overlaps) and run
//! on tokio's blocking pool.

use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Dataset, File, Group, H5Type, LocationType};
use serde_json::{Map, Number, Value};

use super::AnnDataError;
use super::array::{ElementKind, Numbers};
use super::metadata::{ArrayNode, Node};

/// An opened `.h5ad` file.
#[derive(Debug)]
pub struct H5adFile {
    file: File,
    path: PathBuf,
    version: String,
}

fn h5_error(key: &str, e: impl ToString) -> AnnDataError {
    AnnDataError::Read {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// The HDF5 path of a store key (`""` is the root group).
fn h5_path(key: &str) -> String {
    format!("/{}", key.trim_matches('/'))
}

impl H5adFile {
    /// Open `path` read-only. Fails with a clear error for a file that is not HDF5 (or is
    /// truncated so badly that libhdf5 cannot find its superblock).
    pub fn open(path: &Path) -> Result<Self, AnnDataError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| AnnDataError::File {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let file = File::open(path).map_err(|e| AnnDataError::File {
            path: shown.clone(),
            reason: format!("not a readable HDF5 file ({e})"),
        })?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Ok(H5adFile {
            file,
            path: path.to_path_buf(),
            version: format!("h5ad:{}:{modified}", meta.len()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size and modification time of the file (what a cache fingerprint depends on).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// What lives at `key`: `None` when any component of the path is missing.
    fn locate(&self, key: &str) -> Result<Option<LocationType>, AnnDataError> {
        let key = key.trim_matches('/');
        if key.is_empty() {
            return Ok(Some(LocationType::Group));
        }
        // Walk component by component: H5Lexists fails (rather than answering "no") when an
        // intermediate component is missing or is a dataset.
        let mut group: Group = self.file.group("/").map_err(|e| h5_error(key, e))?;
        let parts: Vec<&str> = key.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() || !group.link_exists(part) {
                return Ok(None);
            }
            let kind = group.loc_type_by_name(part).map_err(|e| h5_error(key, e))?;
            if i + 1 == parts.len() {
                return Ok(Some(kind));
            }
            if kind != LocationType::Group {
                return Ok(None);
            }
            group = group.group(part).map_err(|e| h5_error(key, e))?;
        }
        Ok(None)
    }

    /// The node at `key` (a group or a dataset, with its attributes), or `None`.
    pub fn node(&self, key: &str) -> Result<Option<Node>, AnnDataError> {
        let path = h5_path(key);
        match self.locate(key)? {
            Some(LocationType::Group) => {
                let group = self.file.group(&path).map_err(|e| h5_error(key, e))?;
                Ok(Some(Node::Group(attributes(&group, key))))
            }
            Some(LocationType::Dataset) => {
                let ds = self.file.dataset(&path).map_err(|e| h5_error(key, e))?;
                Ok(Some(Node::Array(ArrayNode::Attributes(attributes(
                    &ds, key,
                )))))
            }
            _ => Ok(None),
        }
    }

    /// Names of the children of the group at `key`, in HDF5 name order (what h5py, and
    /// therefore anndata, iterates).
    pub fn children(&self, key: &str) -> Result<Vec<String>, AnnDataError> {
        if self.locate(key)? != Some(LocationType::Group) {
            return Ok(Vec::new());
        }
        self.file
            .group(&h5_path(key))
            .and_then(|g| g.member_names())
            .map_err(|e| h5_error(key, e))
    }

    /// Every group and dataset below the root, depth-first, each group's children in name
    /// order: `(key, is_group)`.
    pub fn walk(&self) -> Result<Vec<(String, bool)>, AnnDataError> {
        fn visit(
            group: &Group,
            prefix: &str,
            out: &mut Vec<(String, bool)>,
        ) -> Result<(), AnnDataError> {
            let names = group.member_names().map_err(|e| h5_error(prefix, e))?;
            for name in names {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                match group.loc_type_by_name(&name) {
                    Ok(LocationType::Group) => {
                        out.push((key.clone(), true));
                        let child = group.group(&name).map_err(|e| h5_error(&key, e))?;
                        visit(&child, &key, out)?;
                    }
                    Ok(LocationType::Dataset) => out.push((key, false)),
                    // Named datatypes and dangling links are not AnnData elements.
                    _ => {}
                }
            }
            Ok(())
        }
        let root = self.file.group("/").map_err(|e| h5_error("", e))?;
        let mut out = Vec::new();
        visit(&root, "", &mut out)?;
        Ok(out)
    }

    /// The dataset at `key`.
    pub fn dataset(&self, key: &str) -> Result<H5Array, AnnDataError> {
        let ds = self
            .file
            .dataset(&h5_path(key))
            .map_err(|e| h5_error(key, e))?;
        H5Array::new(key, ds)
    }
}

/// A group's or dataset's attributes as JSON (what Zarr stores in `.zattrs` / `attributes`).
/// Attributes of types anndata never writes (compound, references) become `null`.
pub(crate) fn attributes(location: &hdf5::Location, key: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let Ok(names) = location.attr_names() else {
        return out;
    };
    for name in names {
        let value = location
            .attr(&name)
            .and_then(|a| attribute_value(&a))
            .unwrap_or_else(|e| {
                tracing::debug!(target: "cellucid_edge::h5ad", "{key}: attribute {name} unreadable: {e}");
                Value::Null
            });
        out.insert(name, value);
    }
    out
}

fn float_value(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn attribute_value(attr: &Attribute) -> hdf5::Result<Value> {
    let scalar = attr.is_scalar();
    let values: Vec<Value> = match attr.dtype()?.to_descriptor()? {
        TypeDescriptor::Boolean => attr
            .read_raw::<bool>()?
            .into_iter()
            .map(Value::Bool)
            .collect(),
        TypeDescriptor::Integer(_) | TypeDescriptor::Enum(_) => attr
            .read_raw::<i64>()?
            .into_iter()
            .map(Value::from)
            .collect(),
        TypeDescriptor::Unsigned(_) => attr
            .read_raw::<u64>()?
            .into_iter()
            .map(Value::from)
            .collect(),
        TypeDescriptor::Float(_) => attr
            .read_raw::<f64>()?
            .into_iter()
            .map(float_value)
            .collect(),
        TypeDescriptor::VarLenUnicode => attr
            .read_raw::<VarLenUnicode>()?
            .into_iter()
            .map(|s| Value::String(s.as_str().to_string()))
            .collect(),
        TypeDescriptor::VarLenAscii => attr
            .read_raw::<VarLenAscii>()?
            .into_iter()
            .map(|s| Value::String(s.as_str().to_string()))
            .collect(),
        other => return Err(format!("unsupported attribute type {other}").into()),
    };
    Ok(if scalar {
        values.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(values)
    })
}

/// The element kind of an HDF5 type, as far as AnnData reading cares.
pub(crate) fn descriptor_kind(td: &TypeDescriptor) -> ElementKind {
    match td {
        TypeDescriptor::Boolean => ElementKind::Bool,
        TypeDescriptor::Integer(s) => ElementKind::Int(*s as u8),
        TypeDescriptor::Unsigned(s) => ElementKind::UInt(*s as u8),
        TypeDescriptor::Float(s) => ElementKind::Float(*s as u8),
        TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii => ElementKind::String,
        _ => ElementKind::Other,
    }
}

/// One dataset of the file.
#[derive(Debug, Clone)]
pub struct H5Array {
    key: String,
    ds: Dataset,
    descriptor: TypeDescriptor,
    shape: Vec<u64>,
}

/// Run a blocking libhdf5 call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> Result<T, AnnDataError> + Send + 'static,
) -> Result<T, AnnDataError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| h5_error(key, format!("read task failed: {e}")))?
}

impl H5Array {
    fn new(key: &str, ds: Dataset) -> Result<Self, AnnDataError> {
        let descriptor =
            ds.dtype()
                .and_then(|t| t.to_descriptor())
                .map_err(|e| AnnDataError::Metadata {
                    key: key.to_string(),
                    reason: format!("unreadable data type: {e}"),
                })?;
        let shape = ds.shape().into_iter().map(|d| d as u64).collect();
        Ok(H5Array {
            key: key.to_string(),
            ds,
            descriptor,
            shape,
        })
    }

    /// Store key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Shape (empty for a scalar).
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// Element kind.
    pub fn kind(&self) -> ElementKind {
        descriptor_kind(&self.descriptor)
    }

    /// The HDF5 type (for messages and conversion).
    pub fn descriptor(&self) -> &TypeDescriptor {
        &self.descriptor
    }

    /// Chunk shape (the whole shape for a contiguous dataset).
    pub fn chunk_shape(&self) -> Vec<u64> {
        match self.ds.chunk() {
            Some(c) => c.into_iter().map(|d| d as u64).collect(),
            None => self.shape.clone(),
        }
    }

    /// Read `ranges` (one per dimension; empty for a scalar) as `T`, row-major.
    fn read_blocking<T: H5Type>(
        ds: &Dataset,
        key: &str,
        ranges: &[Range<u64>],
    ) -> Result<Vec<T>, AnnDataError> {
        if ranges.iter().any(|r| r.is_empty()) {
            return Ok(Vec::new());
        }
        let r = |i: usize| ranges[i].start as usize..ranges[i].end as usize;
        let values = match ranges.len() {
            0 => ds.read_raw::<T>(),
            // libhdf5 fills a freshly allocated C-order array: its raw vector is the data.
            1 => ds
                .read_slice_1d::<T, _>(r(0))
                .map(|a| a.into_raw_vec_and_offset().0),
            2 => ds
                .read_slice_2d::<T, _>((r(0), r(1)))
                .map(|a| a.into_raw_vec_and_offset().0),
            n => {
                return Err(AnnDataError::Shape {
                    key: key.to_string(),
                    expected: "a 0-, 1- or 2-D dataset".into(),
                    found: vec![n as u64],
                });
            }
        };
        values.map_err(|e| h5_error(key, e))
    }

    /// Read numbers (or bools) of `ranges` in their stored type.
    pub async fn read_numbers(&self, ranges: Vec<Range<u64>>) -> Result<Numbers, AnnDataError> {
        let ds = self.ds.clone();
        let key = self.key.clone();
        let kind = self.kind();
        blocking(&self.key.clone(), move || {
            macro_rules! get {
                ($t:ty, $variant:ident) => {
                    Numbers::$variant(Self::read_blocking::<$t>(&ds, &key, &ranges)?)
                };
            }
            Ok(match kind {
                ElementKind::Bool => get!(bool, Bool),
                ElementKind::Int(1) => get!(i8, I8),
                ElementKind::Int(2) => get!(i16, I16),
                ElementKind::Int(4) => get!(i32, I32),
                ElementKind::Int(8) => get!(i64, I64),
                ElementKind::UInt(1) => get!(u8, U8),
                ElementKind::UInt(2) => get!(u16, U16),
                ElementKind::UInt(4) => get!(u32, U32),
                ElementKind::UInt(8) => get!(u64, U64),
                ElementKind::Float(4) => get!(f32, F32),
                ElementKind::Float(8) => get!(f64, F64),
                other => {
                    return Err(AnnDataError::Dtype {
                        key,
                        dtype: format!("{other:?}"),
                        purpose: "numbers".into(),
                    });
                }
            })
        })
        .await
    }

    /// Read variable-length strings of `range`.
    pub async fn read_strings(&self, range: Range<u64>) -> Result<Vec<String>, AnnDataError> {
        self.read_string_ranges(vec![range]).await
    }

    /// Read the one string of a scalar (0-d) dataset.
    pub async fn read_scalar_string(&self) -> Result<Vec<String>, AnnDataError> {
        self.read_string_ranges(Vec::new()).await
    }

    async fn read_string_ranges(
        &self,
        ranges: Vec<Range<u64>>,
    ) -> Result<Vec<String>, AnnDataError> {
        let ds = self.ds.clone();
        let key = self.key.clone();
        let descriptor = self.descriptor.clone();
        blocking(&self.key.clone(), move || match descriptor {
            TypeDescriptor::VarLenUnicode => {
                Ok(Self::read_blocking::<VarLenUnicode>(&ds, &key, &ranges)?
                    .into_iter()
                    .map(|s| s.as_str().to_string())
                    .collect())
            }
            TypeDescriptor::VarLenAscii => {
                Ok(Self::read_blocking::<VarLenAscii>(&ds, &key, &ranges)?
                    .into_iter()
                    .map(|s| s.as_str().to_string())
                    .collect())
            }
            other => Err(AnnDataError::Dtype {
                key,
                dtype: other.to_string(),
                purpose: "a string array".into(),
            }),
        })
        .await
    }
}
