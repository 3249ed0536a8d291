//! [`AnnDataStore`]: an opened Zarr store with its metadata tree and node accessors.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::AnnDataError;
use super::array::ZArray;
use super::metadata::{MetadataTree, Node, ZarrFormat};
use crate::store::{ObjectStoreZarr, ReadMetrics, StoreLocation};

/// An opened AnnData-Zarr store.
#[derive(Debug)]
pub struct AnnDataStore {
    location: StoreLocation,
    storage: Arc<ObjectStoreZarr>,
    tree: MetadataTree,
}

impl AnnDataStore {
    /// Open the store at `location`: reads its (consolidated) metadata, nothing else.
    pub async fn open(
        location: StoreLocation,
        metrics: Arc<ReadMetrics>,
    ) -> Result<Self, AnnDataError> {
        let storage = Arc::new(ObjectStoreZarr::new(
            location.store.clone(),
            location.prefix.clone(),
            metrics,
        ));
        let tree = MetadataTree::open(&storage).await?;
        Ok(AnnDataStore {
            location,
            storage,
            tree,
        })
    }

    /// Where the store lives.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The zarrs storage adapter (for direct ranged reads).
    pub fn storage(&self) -> &Arc<ObjectStoreZarr> {
        &self.storage
    }

    /// The metadata tree.
    pub fn tree(&self) -> &MetadataTree {
        &self.tree
    }

    /// Zarr format of the store.
    pub fn format(&self) -> ZarrFormat {
        self.tree.format()
    }

    /// The node at `key`, if any.
    pub async fn node(&self, key: &str) -> Result<Option<Node>, AnnDataError> {
        self.tree.node(&self.storage, key).await
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
        match self.node(key).await? {
            Some(Node::Array(meta)) => ZArray::new(self.storage.clone(), key, *meta),
            Some(Node::Group(_)) => Err(AnnDataError::Metadata {
                key: key.to_string(),
                reason: format!("is a group, expected {expected}"),
            }),
            None => Err(AnnDataError::Missing {
                key: key.to_string(),
                expected: expected.to_string(),
            }),
        }
    }

    /// Names of the children of the group at `key` (empty if there is no such group).
    pub async fn children(&self, key: &str) -> Result<Vec<String>, AnnDataError> {
        match self.node(key).await? {
            Some(Node::Group(_)) => {
                self.tree
                    .children(&self.storage, self.location.store.as_ref(), key)
                    .await
            }
            _ => Ok(Vec::new()),
        }
    }
}
