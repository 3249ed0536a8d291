//! The HDF5 (`.h5ad`) array source: an AnnData file read with `hdf5-reader`, a pure-Rust,
//! read-only HDF5 decoder (no libhdf5, nothing to install; see `docs/h5ad.md` for why this
//! reader and how it measured against libhdf5).
//!
//! anndata writes the same element encodings (attributes, group layout) to HDF5 as to Zarr, so
//! this module only answers the questions the Zarr [`MetadataTree`](super::MetadataTree)
//! answers — which node is at a key, its attributes, a group's children — and reads hyperslabs
//! of one dataset. Everything above (frames, layout, matrices) is shared with the Zarr reader.
//! Reads touch only the requested selection (only the chunks it overlaps are read and
//! decompressed) and run on tokio's blocking pool.

mod attributes;
mod dtype;
mod read;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hdf5_reader::group::Group;
use hdf5_reader::{Datatype, Hdf5File, OpenOptions};

use super::AnnDataError;
use super::array::{ElementKind, Numbers};
use super::metadata::{ArrayNode, Node};

/// An opened `.h5ad` file.
pub struct H5adFile {
    file: Hdf5File,
    path: PathBuf,
    version: String,
}

impl std::fmt::Debug for H5adFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H5adFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .finish()
    }
}

fn h5_error(key: &str, e: impl std::fmt::Display) -> AnnDataError {
    AnnDataError::Read {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// What is at a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Group,
    Dataset,
}

/// The children of `group` in h5py's order (link names ascending, byte-wise — the order
/// anndata iterates `obsm`, `layers`, … in): `(name, kind)`. Links to anything but a group or
/// a dataset (named datatypes, dangling links) are not AnnData elements and are left out.
fn members(group: &Group, key: &str) -> Result<Vec<(String, NodeKind)>, AnnDataError> {
    let (groups, datasets) = group.member_names().map_err(|e| h5_error(key, e))?;
    let mut out: Vec<(String, NodeKind)> = groups
        .into_iter()
        .map(|name| (name, NodeKind::Group))
        .chain(datasets.into_iter().map(|name| (name, NodeKind::Dataset)))
        .collect();
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

/// How every file is opened: without the reader's chunk cache. A cache (64 MiB per file by
/// default, plus a retained copy of every dataset up to 32 MiB read whole) would keep memory
/// that grows with the number of open atlases and datasets, outside the process's memory
/// budget; what is worth keeping, the dataset layer memoises. Each read decodes the chunks it
/// overlaps, as libhdf5 does with chunks larger than its 1 MiB cache.
fn open_options() -> OpenOptions {
    OpenOptions::default().with_chunk_cache_bytes(0)
}

impl H5adFile {
    /// Open `path` read-only. Fails with a clear error for a file that is not HDF5, or that is
    /// shorter than its superblock says (a truncated copy), as libhdf5 does.
    pub fn open(path: &Path) -> Result<Self, AnnDataError> {
        let shown = path.display().to_string();
        let file_error = |reason: String| AnnDataError::File {
            path: shown.clone(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| file_error(e.to_string()))?;
        let file = Hdf5File::open_with_options(path, open_options())
            .map_err(|e| file_error(format!("not a readable HDF5 file ({e})")))?;
        let superblock = file.superblock();
        let declared = superblock
            .base_address
            .saturating_add(superblock.eof_address);
        if declared > meta.len() {
            return Err(file_error(format!(
                "truncated HDF5 file: {} bytes, its superblock declares {declared}",
                meta.len()
            )));
        }
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

    fn root(&self) -> Result<Group, AnnDataError> {
        self.file.root_group().map_err(|e| h5_error("", e))
    }

    /// The group at `key` (`""` is the root), or `None` when any component is missing or is
    /// not a group.
    fn group(&self, key: &str) -> Result<Option<Group>, AnnDataError> {
        let key = key.trim_matches('/');
        let mut group = self.root()?;
        if key.is_empty() {
            return Ok(Some(group));
        }
        for part in key.split('/') {
            let found = members(&group, key)?
                .into_iter()
                .any(|(name, kind)| name == part && kind == NodeKind::Group);
            if !found {
                return Ok(None);
            }
            group = group.group(part).map_err(|e| h5_error(key, e))?;
        }
        Ok(Some(group))
    }

    /// What lives at `key`: `None` when any component of the path is missing. A missing node
    /// is an answer; an unreadable one is an error.
    fn locate(&self, key: &str) -> Result<Option<NodeKind>, AnnDataError> {
        let key = key.trim_matches('/');
        if key.is_empty() {
            return Ok(Some(NodeKind::Group));
        }
        let (parent, name) = key.rsplit_once('/').unwrap_or(("", key));
        let Some(group) = self.group(parent)? else {
            return Ok(None);
        };
        Ok(members(&group, key)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, kind)| kind))
    }

    /// The node at `key` (a group or a dataset, with its attributes), or `None`.
    pub fn node(&self, key: &str) -> Result<Option<Node>, AnnDataError> {
        match self.locate(key)? {
            Some(NodeKind::Group) => {
                let group = self
                    .group(key)?
                    .ok_or_else(|| h5_error(key, "group vanished"))?;
                let attrs = group.attributes().map_err(|e| h5_error(key, e))?;
                Ok(Some(Node::Group(attributes::to_json(&attrs, key))))
            }
            Some(NodeKind::Dataset) => {
                let ds = self.open_dataset(key)?;
                Ok(Some(Node::Array(ArrayNode::Attributes(
                    attributes::to_json(&ds.attributes(), key),
                ))))
            }
            None => Ok(None),
        }
    }

    /// Names of the children of the group at `key`, in h5py's order (names ascending,
    /// byte-wise), which is what anndata iterates.
    pub fn children(&self, key: &str) -> Result<Vec<String>, AnnDataError> {
        match self.group(key)? {
            Some(group) => Ok(members(&group, key)?
                .into_iter()
                .map(|(name, _)| name)
                .collect()),
            None => Ok(Vec::new()),
        }
    }

    /// Every group and dataset below the root, depth-first, each group's children in h5py's
    /// order: `(key, is_group)`.
    pub fn walk(&self) -> Result<Vec<(String, bool)>, AnnDataError> {
        fn visit(
            group: &Group,
            prefix: &str,
            out: &mut Vec<(String, bool)>,
        ) -> Result<(), AnnDataError> {
            for (name, kind) in members(group, prefix)? {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                out.push((key.clone(), kind == NodeKind::Group));
                if kind == NodeKind::Group {
                    let child = group.group(&name).map_err(|e| h5_error(&key, e))?;
                    visit(&child, &key, out)?;
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        visit(&self.root()?, "", &mut out)?;
        Ok(out)
    }

    fn open_dataset(&self, key: &str) -> Result<hdf5_reader::Dataset, AnnDataError> {
        self.file
            .dataset(&format!("/{}", key.trim_matches('/')))
            .map_err(|e| h5_error(key, e))
    }

    /// The dataset at `key`.
    pub fn dataset(&self, key: &str) -> Result<H5Array, AnnDataError> {
        Ok(H5Array::new(key, self.open_dataset(key)?))
    }
}

/// One dataset of the file.
#[derive(Clone)]
pub struct H5Array {
    key: String,
    // Shared: a dataset handle is a few hundred bytes, and every read moves one to the
    // blocking pool.
    ds: Arc<hdf5_reader::Dataset>,
    kind: ElementKind,
    type_name: String,
}

impl std::fmt::Debug for H5Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H5Array")
            .field("key", &self.key)
            .field("shape", &self.ds.shape())
            .field("type", &self.type_name)
            .finish()
    }
}

/// Run a blocking HDF5 read on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> Result<T, AnnDataError> + Send + 'static,
) -> Result<T, AnnDataError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| h5_error(key, format!("read task failed: {e}")))?
}

impl H5Array {
    fn new(key: &str, ds: hdf5_reader::Dataset) -> Self {
        let td: &Datatype = ds.dtype();
        H5Array {
            key: key.to_string(),
            kind: dtype::element_kind(td),
            type_name: dtype::type_name(td),
            ds: Arc::new(ds),
        }
    }

    /// Store key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Shape (empty for a scalar).
    pub fn shape(&self) -> &[u64] {
        self.ds.shape()
    }

    /// Element kind.
    pub fn kind(&self) -> ElementKind {
        self.kind
    }

    /// The HDF5 type's name (`int32`, `variable-length string`, `compound`…), for messages.
    pub fn descriptor(&self) -> &str {
        &self.type_name
    }

    /// Chunk shape (the whole shape for a contiguous or compact dataset).
    pub fn chunk_shape(&self) -> Vec<u64> {
        match self.ds.chunks() {
            Some(chunks) => chunks.into_iter().map(u64::from).collect(),
            None => self.shape().to_vec(),
        }
    }

    /// Refuse a selection that does not fit the dataset (wrong rank, past the end) before
    /// anything is read.
    fn check_selection(&self, ranges: &[Range<u64>]) -> Result<(), AnnDataError> {
        let shape = self.shape();
        let fits = ranges.len() <= 2
            && ranges.len() == shape.len()
            && ranges
                .iter()
                .zip(shape)
                .all(|(r, n)| r.start <= r.end && r.end <= *n);
        if !fits {
            return Err(AnnDataError::Shape {
                key: self.key.clone(),
                expected: format!("a 0-, 1- or 2-D dataset holding {ranges:?}"),
                found: shape.to_vec(),
            });
        }
        Ok(())
    }

    /// Read numbers (or bools) of `ranges` (one per dimension; none for a scalar) in their
    /// stored type, row-major.
    pub async fn read_numbers(&self, ranges: Vec<Range<u64>>) -> Result<Numbers, AnnDataError> {
        self.check_selection(&ranges)?;
        let (ds, key, kind) = (self.ds.clone(), self.key.clone(), self.kind);
        let type_name = self.type_name.clone();
        blocking(&self.key, move || {
            read::numbers(&ds, kind, &ranges)
                .map_err(|e| h5_error(&key, e))?
                .ok_or(AnnDataError::Dtype {
                    key,
                    dtype: type_name,
                    purpose: "numbers".into(),
                })
        })
        .await
    }

    /// Read the strings of `range` of a 1-D string dataset.
    pub async fn read_strings(&self, range: Range<u64>) -> Result<Vec<String>, AnnDataError> {
        self.read_string_range(Some(range)).await
    }

    /// Read the one string of a scalar (0-d) dataset.
    pub async fn read_scalar_string(&self) -> Result<Vec<String>, AnnDataError> {
        self.read_string_range(None).await
    }

    async fn read_string_range(
        &self,
        range: Option<Range<u64>>,
    ) -> Result<Vec<String>, AnnDataError> {
        if self.kind != ElementKind::String {
            return Err(AnnDataError::Dtype {
                key: self.key.clone(),
                dtype: self.type_name.clone(),
                purpose: "a string array".into(),
            });
        }
        let ranges: Vec<Range<u64>> = range.clone().into_iter().collect();
        self.check_selection(&ranges)?;
        let (ds, key) = (self.ds.clone(), self.key.clone());
        blocking(&self.key, move || {
            read::strings(&ds, range).map_err(|e| h5_error(&key, e))
        })
        .await
    }
}
