//! The node tree of a Zarr store: consolidated metadata read with one GET, or per-node
//! metadata read on demand when the store has none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Map, Value};
use zarrs::array::{ArrayMetadata, ArrayMetadataV2, ArrayMetadataV3};

use super::AnnDataError;
use crate::memory::TooLarge;
use crate::store::{DocumentError, ObjectStoreZarr, ObjectVersion};

/// Zarr storage format of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZarrFormat {
    /// Zarr v2 (`.zgroup`, `.zarray`, `.zattrs`, `.zmetadata`).
    V2,
    /// Zarr v3 (`zarr.json`).
    V3,
}

impl ZarrFormat {
    /// `2` or `3`.
    pub fn number(self) -> u8 {
        match self {
            ZarrFormat::V2 => 2,
            ZarrFormat::V3 => 3,
        }
    }
}

/// A node as found in consolidated metadata, parsed on first access (so an unreadable node in
/// `uns` never prevents opening the store).
#[derive(Debug, Clone)]
enum RawNode {
    V2 {
        array: Option<Value>,
        attrs: Option<Value>,
    },
    V3(Value),
}

impl RawNode {
    fn parse(self, path: &str) -> Result<Node, AnnDataError> {
        match self {
            RawNode::V2 {
                array: Some(array),
                attrs,
            } => v2_array(&join(path, ".zarray"), array, attrs),
            RawNode::V2 { array: None, attrs } => Ok(Node::Group(
                attrs
                    .and_then(|a| a.as_object().cloned())
                    .unwrap_or_default(),
            )),
            RawNode::V3(value) => v3_node(&join(path, "zarr.json"), value),
        }
    }
}

/// One node of the tree.
#[derive(Debug, Clone)]
pub enum Node {
    /// A group with its attributes.
    Group(Map<String, Value>),
    /// An array.
    Array(ArrayNode),
}

/// What is known about an array node before it is opened.
#[derive(Debug, Clone)]
pub enum ArrayNode {
    /// A Zarr array: its full metadata (attributes included).
    Zarr(Box<ArrayMetadata>),
    /// An array whose source opens it by key (an HDF5 dataset): its attributes.
    Attributes(Map<String, Value>),
}

impl Node {
    /// The node's user attributes.
    pub fn attributes(&self) -> &Map<String, Value> {
        match self {
            Node::Group(attrs) | Node::Array(ArrayNode::Attributes(attrs)) => attrs,
            Node::Array(ArrayNode::Zarr(meta)) => match meta.as_ref() {
                ArrayMetadata::V2(v2) => &v2.attributes,
                ArrayMetadata::V3(v3) => &v3.attributes,
            },
        }
    }
}

/// The metadata of every node we have looked at, keyed by path ("" is the root).
#[derive(Debug)]
pub struct MetadataTree {
    format: ZarrFormat,
    consolidated: bool,
    /// Raw bytes of the consolidated document (the fingerprint source), if any.
    consolidated_bytes: Option<Bytes>,
    nodes: Mutex<HashMap<String, Option<Node>>>,
    /// Version (ETag, modification time, version id) of the root metadata document.
    source_version: Option<ObjectVersion>,
    /// Consolidated entries not parsed yet.
    raw: Mutex<HashMap<String, RawNode>>,
    /// All paths known from consolidated metadata, in document order (for child listing).
    known_paths: Vec<String>,
}

fn metadata_error(key: &str, reason: impl ToString) -> AnnDataError {
    AnnDataError::Metadata {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

fn storage_error(key: &str, source: object_store::Error) -> AnnDataError {
    AnnDataError::Storage {
        key: key.to_string(),
        source,
    }
}

/// Largest metadata document read (consolidated metadata of a very wide atlas is a few MB; a
/// larger one is refused before its body is read, never parsed into memory).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// The metadata document `key`, or `None`.
async fn document(
    storage: &ObjectStoreZarr,
    key: &str,
) -> Result<Option<(Bytes, ObjectVersion)>, AnnDataError> {
    storage
        .get_document(key, MAX_METADATA_BYTES)
        .await
        .map_err(|e| match e {
            DocumentError::Store(source) => storage_error(key, source),
            DocumentError::TooLarge { size, limit } => {
                AnnDataError::TooLarge(TooLarge::OverBudget {
                    what: format!("the metadata document `{key}`"),
                    needed: Some(size),
                    budget: limit,
                })
            }
        })
}

/// The body of the metadata document `key`, or `None`.
async fn document_body(
    storage: &ObjectStoreZarr,
    key: &str,
) -> Result<Option<Bytes>, AnnDataError> {
    Ok(document(storage, key).await?.map(|(bytes, _)| bytes))
}

fn parse_json(key: &str, bytes: &[u8]) -> Result<Value, AnnDataError> {
    serde_json::from_slice(bytes).map_err(|e| metadata_error(key, format!("not valid JSON: {e}")))
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}/{child}")
    }
}

fn v2_array(key: &str, array: Value, attrs: Option<Value>) -> Result<Node, AnnDataError> {
    let mut meta: ArrayMetadataV2 =
        serde_json::from_value(array).map_err(|e| metadata_error(key, e))?;
    if let Some(Value::Object(attrs)) = attrs {
        meta.attributes = attrs;
    }
    Ok(Node::Array(ArrayNode::Zarr(Box::new(ArrayMetadata::V2(
        meta,
    )))))
}

fn v3_node(key: &str, value: Value) -> Result<Node, AnnDataError> {
    match value.get("node_type").and_then(Value::as_str) {
        Some("array") => {
            let meta: ArrayMetadataV3 =
                serde_json::from_value(value).map_err(|e| metadata_error(key, e))?;
            Ok(Node::Array(ArrayNode::Zarr(Box::new(ArrayMetadata::V3(
                meta,
            )))))
        }
        Some("group") => Ok(Node::Group(
            value
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        )),
        other => Err(metadata_error(
            key,
            format!("node_type is {other:?}, expected \"array\" or \"group\""),
        )),
    }
}

impl MetadataTree {
    /// Open the tree of the store behind `storage`.
    ///
    /// Reads `.zmetadata` (v2 consolidated) first; if absent, the root `zarr.json` (v3, with or
    /// without consolidated metadata); if absent, the root `.zgroup` (v2 without
    /// consolidation). A consolidated store therefore costs one GET for v2 and two for v3.
    pub async fn open(storage: &ObjectStoreZarr) -> Result<Self, AnnDataError> {
        if let Some((bytes, version)) = document(storage, ".zmetadata").await? {
            let mut tree = Self::from_v2_consolidated(bytes)?;
            tree.source_version = Some(version);
            return Ok(tree);
        }
        if let Some((bytes, version)) = document(storage, "zarr.json").await? {
            let mut tree = Self::from_v3_root(bytes)?;
            tree.source_version = Some(version);
            return Ok(tree);
        }
        if let Some((_, version)) = document(storage, ".zgroup").await? {
            let mut tree = Self::unconsolidated(ZarrFormat::V2);
            tree.source_version = Some(version);
            return Ok(tree);
        }
        Err(AnnDataError::Missing {
            key: "zarr.json".into(),
            expected: "a Zarr store root: `.zmetadata`, `zarr.json` or `.zgroup`".into(),
        })
    }

    fn unconsolidated(format: ZarrFormat) -> Self {
        MetadataTree {
            format,
            consolidated: false,
            consolidated_bytes: None,
            nodes: Mutex::new(HashMap::new()),
            raw: Mutex::new(HashMap::new()),
            source_version: None,
            known_paths: Vec::new(),
        }
    }

    fn from_v2_consolidated(bytes: Bytes) -> Result<Self, AnnDataError> {
        let key = ".zmetadata";
        let doc = parse_json(key, &bytes)?;
        let entries = doc
            .get("metadata")
            .and_then(Value::as_object)
            .ok_or_else(|| metadata_error(key, "no `metadata` object"))?;
        // Group the flat `path/.zarray|.zattrs|.zgroup` documents per node.
        // (path, [.zarray, .zgroup, .zattrs]) in order of first appearance: the document's
        // key order is the order zarr-python (and therefore anndata) lists children in.
        let mut order: Vec<String> = Vec::new();
        let mut grouped: HashMap<String, [Option<Value>; 3]> = HashMap::new();
        for (k, v) in entries {
            let (path, file) = match k.rsplit_once('/') {
                Some((p, f)) => (p.to_string(), f),
                None => (String::new(), k.as_str()),
            };
            let slot = match file {
                ".zarray" => 0,
                ".zgroup" => 1,
                ".zattrs" => 2,
                _ => continue,
            };
            if !grouped.contains_key(&path) {
                order.push(path.clone());
            }
            grouped.entry(path).or_default()[slot] = Some(v.clone());
        }
        let mut raw = HashMap::new();
        let mut known_paths = Vec::with_capacity(order.len());
        for path in order {
            let Some([array, group, attrs]) = grouped.remove(&path) else {
                continue;
            };
            if array.is_none() && group.is_none() {
                // Attributes without a node document: ignore like zarr-python does.
                continue;
            }
            known_paths.push(path.clone());
            raw.insert(path, RawNode::V2 { array, attrs });
        }
        Ok(MetadataTree {
            format: ZarrFormat::V2,
            consolidated: true,
            consolidated_bytes: Some(bytes),
            nodes: Mutex::new(HashMap::new()),
            raw: Mutex::new(raw),
            source_version: None,
            known_paths,
        })
    }

    fn from_v3_root(bytes: Bytes) -> Result<Self, AnnDataError> {
        let key = "zarr.json";
        let mut doc = parse_json(key, &bytes)?;
        let consolidated = doc
            .as_object_mut()
            .and_then(|o| o.remove("consolidated_metadata"))
            .filter(|c| !c.is_null());
        let root = v3_node(key, doc)?;
        let mut tree = Self::unconsolidated(ZarrFormat::V3);
        let mut nodes = HashMap::new();
        nodes.insert(String::new(), Some(root));
        if let Some(consolidated) = consolidated {
            let metadata = consolidated
                .get("metadata")
                .and_then(Value::as_object)
                .ok_or_else(|| metadata_error(key, "consolidated_metadata has no `metadata`"))?;
            let mut raw = HashMap::new();
            for (path, value) in metadata {
                let path = path.trim_matches('/').to_string();
                tree.known_paths.push(path.clone());
                raw.insert(path, RawNode::V3(value.clone()));
            }
            tree.raw = Mutex::new(raw);
            tree.consolidated = true;
            tree.consolidated_bytes = Some(bytes);
        }
        tree.nodes = Mutex::new(nodes);
        Ok(tree)
    }

    /// The store's Zarr format.
    pub fn format(&self) -> ZarrFormat {
        self.format
    }

    /// Whether the whole tree came from consolidated metadata.
    pub fn is_consolidated(&self) -> bool {
        self.consolidated
    }

    /// Version (ETag, modification time, version id) of the root metadata document, from the
    /// GET that read it.
    pub fn source_version(&self) -> Option<&ObjectVersion> {
        self.source_version.as_ref()
    }

    /// Bytes of the consolidated metadata document, when there is one.
    pub fn consolidated_bytes(&self) -> Option<&Bytes> {
        self.consolidated_bytes.as_ref()
    }

    fn cached(&self, path: &str) -> Option<Option<Node>> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.get(path).cloned()
    }

    /// Metadata of the node at `path`, or `None` if there is no node there.
    pub async fn node(
        &self,
        storage: &ObjectStoreZarr,
        path: &str,
    ) -> Result<Option<Node>, AnnDataError> {
        let path = path.trim_matches('/');
        if let Some(found) = self.cached(path) {
            return Ok(found);
        }
        if self.consolidated {
            let raw = {
                let pending = self.raw.lock().unwrap_or_else(|p| p.into_inner());
                pending.get(path).cloned()
            };
            // A node that fails to parse stays pending: every access reports the same error.
            let node = match raw {
                Some(raw) => Some(raw.parse(path)?),
                None => None,
            };
            self.raw
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(path);
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            nodes.insert(path.to_string(), node.clone());
            return Ok(node);
        }
        let node = match self.format {
            ZarrFormat::V3 => {
                let key = join(path, "zarr.json");
                match document_body(storage, &key).await? {
                    Some(bytes) => Some(v3_node(&key, parse_json(&key, &bytes)?)?),
                    None => None,
                }
            }
            ZarrFormat::V2 => self.fetch_v2_node(storage, path).await?,
        };
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.insert(path.to_string(), node.clone());
        Ok(node)
    }

    async fn fetch_v2_node(
        &self,
        storage: &ObjectStoreZarr,
        path: &str,
    ) -> Result<Option<Node>, AnnDataError> {
        let attrs_key = join(path, ".zattrs");
        let array_key = join(path, ".zarray");
        let group_key = join(path, ".zgroup");
        let (attrs, array) = futures::join!(
            document_body(storage, &attrs_key),
            document_body(storage, &array_key)
        );
        let (attrs, array) = (attrs?, array?);
        let attrs = match attrs {
            Some(bytes) => Some(parse_json(&attrs_key, &bytes)?),
            None => None,
        };
        if let Some(array) = array {
            return Ok(Some(v2_array(
                &array_key,
                parse_json(&array_key, &array)?,
                attrs,
            )?));
        }
        let group = document_body(storage, &group_key).await?;
        if group.is_some() || attrs.is_some() {
            return Ok(Some(Node::Group(
                attrs
                    .and_then(|a| a.as_object().cloned())
                    .unwrap_or_default(),
            )));
        }
        Ok(None)
    }

    /// Names of the direct children of the group at `path`: in consolidated-metadata document
    /// order when there is one (the order anndata itself sees, which decides e.g. the latent
    /// key fallback), otherwise from a store listing sorted by code point.
    pub async fn children(
        &self,
        storage: &ObjectStoreZarr,
        store: &dyn object_store::ObjectStore,
        path: &str,
    ) -> Result<Vec<String>, AnnDataError> {
        let path = path.trim_matches('/');
        if self.consolidated {
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            let names: Vec<String> = self
                .known_paths
                .iter()
                .filter_map(|p| p.strip_prefix(&prefix))
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                .map(str::to_string)
                .collect();
            return Ok(names);
        }
        let dir = storage.object_path(path);
        let listing = store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| storage_error(path, e))?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// A shared handle to a tree.
pub type SharedTree = Arc<MetadataTree>;
