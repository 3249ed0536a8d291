//! [`AnnDataStore`]: an opened AnnData source — a Zarr store (v2/v3) or an `.h5ad` file — with
//! its node tree and node accessors. Everything above ([`frame`](super::frame),
//! [`layout`](super::layout), [`matrix`](super::matrix)) works through these accessors and is
//! the same for both formats.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::AnnDataError;
use super::array::ZArray;
use super::metadata::{ArrayNode, MetadataTree, Node, ZarrFormat};
use crate::store::{ObjectStoreZarr, ReadMetrics, StoreLocation};

/// The on-disk format of an opened source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// AnnData-Zarr in the given Zarr format.
    Zarr(ZarrFormat),
    /// An AnnData HDF5 file.
    H5ad,
}

impl SourceFormat {
    /// A short name: `zarr v2`, `zarr v3` or `h5ad`.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Zarr(ZarrFormat::V2) => "zarr v2",
            SourceFormat::Zarr(ZarrFormat::V3) => "zarr v3",
            SourceFormat::H5ad => "h5ad",
        }
    }

    /// The Zarr format number, for Zarr sources.
    pub fn zarr_number(self) -> Option<u8> {
        match self {
            SourceFormat::Zarr(f) => Some(f.number()),
            SourceFormat::H5ad => None,
        }
    }
}

#[derive(Debug)]
enum Backend {
    Zarr {
        storage: Arc<ObjectStoreZarr>,
        tree: MetadataTree,
    },
    #[cfg(feature = "h5ad")]
    H5ad(super::hdf5::H5adFile),
}

/// An opened AnnData source.
#[derive(Debug)]
pub struct AnnDataStore {
    location: StoreLocation,
    backend: Backend,
    /// Largest read of one array, in bytes of values (see [`ZArray::with_read_limit`]).
    read_limit: u64,
}

impl AnnDataStore {
    /// Open the source at `location`: a local file is read as `.h5ad` (when built with the
    /// `h5ad` feature), anything else as a Zarr store. Reads metadata only.
    pub async fn open(
        location: StoreLocation,
        metrics: Arc<ReadMetrics>,
    ) -> Result<Self, AnnDataError> {
        if let Some(path) = location.local_file() {
            return Self::open_file(location, &path);
        }
        let storage = Arc::new(ObjectStoreZarr::new(
            location.store.clone(),
            location.prefix.clone(),
            metrics,
        ));
        let tree = MetadataTree::open(&storage).await?;
        Ok(AnnDataStore {
            location,
            backend: Backend::Zarr { storage, tree },
            read_limit: super::array::DEFAULT_READ_LIMIT,
        })
    }

    #[cfg(feature = "h5ad")]
    fn open_file(location: StoreLocation, path: &std::path::Path) -> Result<Self, AnnDataError> {
        let file = super::hdf5::H5adFile::open(path)?;
        Ok(AnnDataStore {
            location,
            backend: Backend::H5ad(file),
            read_limit: super::array::DEFAULT_READ_LIMIT,
        })
    }

    #[cfg(not(feature = "h5ad"))]
    fn open_file(_location: StoreLocation, path: &std::path::Path) -> Result<Self, AnnDataError> {
        Err(AnnDataError::File {
            path: path.display().to_string(),
            reason: "this build reads AnnData-Zarr stores only (.h5ad needs the `h5ad` feature)"
                .into(),
        })
    }

    /// Limit every array read to `bytes` of values in memory (a dataset passes its memory
    /// budget): a read above it fails with [`AnnDataError::TooLarge`] before any allocation.
    pub fn with_read_limit(mut self, bytes: u64) -> Self {
        self.read_limit = bytes;
        self
    }

    /// The largest read of one array, in bytes.
    pub fn read_limit(&self) -> u64 {
        self.read_limit
    }

    /// Where the source lives.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The zarrs storage adapter (for direct ranged reads), for Zarr sources.
    pub fn storage(&self) -> Option<&Arc<ObjectStoreZarr>> {
        match &self.backend {
            Backend::Zarr { storage, .. } => Some(storage),
            #[cfg(feature = "h5ad")]
            Backend::H5ad(_) => None,
        }
    }

    /// The Zarr metadata tree, for Zarr sources.
    pub fn tree(&self) -> Option<&MetadataTree> {
        match &self.backend {
            Backend::Zarr { tree, .. } => Some(tree),
            #[cfg(feature = "h5ad")]
            Backend::H5ad(_) => None,
        }
    }

    /// Format of the source.
    pub fn format(&self) -> SourceFormat {
        match &self.backend {
            Backend::Zarr { tree, .. } => SourceFormat::Zarr(tree.format()),
            #[cfg(feature = "h5ad")]
            Backend::H5ad(_) => SourceFormat::H5ad,
        }
    }

    /// Whether all metadata was read up front (consolidated Zarr metadata; always for h5ad,
    /// whose metadata is read from the local file on demand).
    pub fn is_consolidated(&self) -> bool {
        self.tree().is_none_or(MetadataTree::is_consolidated)
    }

    /// Version of the source, as one line: the ETag, modification time and version id of the
    /// root metadata document (read with it, no extra request); size and modification time of
    /// an `.h5ad` file. Rewriting the store changes it (see [`ObjectVersion`] for the limits).
    ///
    /// [`ObjectVersion`]: crate::store::ObjectVersion
    pub fn source_version(&self) -> Option<String> {
        match &self.backend {
            Backend::Zarr { tree, .. } => tree.source_version().map(|v| v.token()),
            #[cfg(feature = "h5ad")]
            Backend::H5ad(file) => Some(file.version().to_string()),
        }
    }

    /// The node at `key`, if any.
    pub async fn node(&self, key: &str) -> Result<Option<Node>, AnnDataError> {
        match &self.backend {
            Backend::Zarr { storage, tree } => tree.node(storage, key).await,
            #[cfg(feature = "h5ad")]
            Backend::H5ad(file) => file.node(key),
        }
    }

    /// Attributes of the node at `key`; an error naming `expected` if there is no node.
    pub async fn attributes(
        &self,
        key: &str,
        expected: &str,
    ) -> Result<Map<String, Value>, AnnDataError> {
        match self.node(key).await? {
            Some(node) => Ok(node.attributes().clone()),
            None => Err(AnnDataError::Missing {
                key: key.to_string(),
                expected: expected.to_string(),
            }),
        }
    }

    /// The array at `key`; an error naming `expected` if absent or a group.
    pub async fn array(&self, key: &str, expected: &str) -> Result<ZArray, AnnDataError> {
        match (self.node(key).await?, &self.backend) {
            (Some(Node::Array(ArrayNode::Zarr(meta))), Backend::Zarr { storage, .. }) => {
                Ok(ZArray::new(storage.clone(), key, *meta)?.with_read_limit(self.read_limit))
            }
            #[cfg(feature = "h5ad")]
            (Some(Node::Array(_)), Backend::H5ad(file)) => {
                Ok(ZArray::from_hdf5(file.dataset(key)?).with_read_limit(self.read_limit))
            }
            (Some(Node::Array(_)), _) => Err(AnnDataError::Metadata {
                key: key.to_string(),
                reason: "array node of another source format".into(),
            }),
            (Some(Node::Group(_)), _) => Err(AnnDataError::Metadata {
                key: key.to_string(),
                reason: format!("is a group, expected {expected}"),
            }),
            (None, _) => Err(AnnDataError::Missing {
                key: key.to_string(),
                expected: expected.to_string(),
            }),
        }
    }

    /// Names of the children of the group at `key` (empty if there is no such group), in the
    /// order anndata lists them.
    pub async fn children(&self, key: &str) -> Result<Vec<String>, AnnDataError> {
        match &self.backend {
            Backend::Zarr { storage, tree } => match tree.node(storage, key).await? {
                Some(Node::Group(_)) => {
                    tree.children(storage, self.location.store.as_ref(), key)
                        .await
                }
                _ => Ok(Vec::new()),
            },
            #[cfg(feature = "h5ad")]
            Backend::H5ad(file) => file.children(key),
        }
    }
}
