//! Consolidated metadata synthesised for Zarr folders that lack it (protocol-0.9.md §3.3): the
//! browser cannot list a folder, so it must learn the whole tree from one document.
//!
//! The tree is walked by listing one level at a time (`list_with_delimiter`), never descending
//! into an array, so chunk trees are never listed.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Map, Value, json};

use super::documents::python_json;
use crate::store::{ErrorClass, classify_object_store};

/// Why consolidated metadata could not be synthesised.
#[derive(Debug, thiserror::Error)]
pub enum ConsolidateError {
    /// A listing or a read failed.
    #[error("cannot read `{path}` while consolidating metadata: {source}")]
    Store {
        /// Object path.
        path: String,
        /// Cause.
        #[source]
        source: object_store::Error,
    },
    /// A metadata document is not JSON.
    #[error("metadata document `{path}` is not valid JSON: {reason}")]
    Json {
        /// Object path.
        path: String,
        /// Parser message.
        reason: String,
    },
    /// Neither `zarr.json` nor `.zgroup` at the root.
    #[error("`{0}` holds no Zarr root (`zarr.json` or `.zgroup`)")]
    NotZarr(String),
}

impl ConsolidateError {
    /// What this failure means: a store failure by its `object_store` class; metadata that is
    /// not JSON, or a folder without a Zarr root, is [`ErrorClass::BadStore`].
    pub fn class(&self) -> ErrorClass {
        match self {
            ConsolidateError::Store { source, .. } => classify_object_store(source),
            ConsolidateError::Json { .. } | ConsolidateError::NotZarr(_) => ErrorClass::BadStore,
        }
    }
}

/// The synthesised document and the key it answers.
#[derive(Debug, Clone)]
pub struct Synthesised {
    /// `.zmetadata` (v2) or `zarr.json` (v3).
    pub key: &'static str,
    /// UTF-8 JSON bytes.
    pub bytes: Bytes,
}

async fn get_json(store: &dyn ObjectStore, path: &Path) -> Result<Option<Value>, ConsolidateError> {
    match store.get(path).await {
        Ok(result) => {
            let bytes = result
                .bytes()
                .await
                .map_err(|source| ConsolidateError::Store {
                    path: path.to_string(),
                    source,
                })?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ConsolidateError::Json {
                    path: path.to_string(),
                    reason: e.to_string(),
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(ConsolidateError::Store {
            path: path.to_string(),
            source,
        }),
    }
}

fn join(prefix: &Path, rel: &str) -> Path {
    super::source::join_key(prefix, rel)
}

/// Synthesise the consolidated document of the Zarr folder at `root`, or `None` when the store
/// already has one (a root `.zmetadata`, or a root `zarr.json` with an object-valued
/// `consolidated_metadata`).
pub async fn synthesise(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
) -> Result<Option<Synthesised>, ConsolidateError> {
    if let Some(mut doc) = get_json(store.as_ref(), &join(root, "zarr.json")).await? {
        if doc
            .get("consolidated_metadata")
            .is_some_and(Value::is_object)
        {
            return Ok(None);
        }
        let mut metadata = Map::new();
        walk_v3(store.as_ref(), root, String::new(), &mut metadata).await?;
        if let Some(obj) = doc.as_object_mut() {
            obj.insert(
                "consolidated_metadata".into(),
                json!({"kind": "inline", "must_understand": false, "metadata": metadata}),
            );
        }
        return Ok(Some(Synthesised {
            key: "zarr.json",
            bytes: Bytes::from(python_json(&doc)),
        }));
    }
    let zgroup = join(root, ".zgroup");
    match store.head(&join(root, ".zmetadata")).await {
        Ok(_) => return Ok(None),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(source) => {
            return Err(ConsolidateError::Store {
                path: join(root, ".zmetadata").to_string(),
                source,
            });
        }
    }
    if get_json(store.as_ref(), &zgroup).await?.is_none() {
        return Err(ConsolidateError::NotZarr(root.to_string()));
    }
    let mut metadata = Map::new();
    walk_v2(store.as_ref(), root, String::new(), &mut metadata).await?;
    let doc = json!({"zarr_consolidated_format": 1, "metadata": metadata});
    Ok(Some(Synthesised {
        key: ".zmetadata",
        bytes: Bytes::from(python_json(&doc)),
    }))
}

/// Files and sub-folders of one level, both sorted.
async fn level(
    store: &dyn ObjectStore,
    dir: &Path,
) -> Result<(Vec<String>, Vec<String>), ConsolidateError> {
    let listing = store
        .list_with_delimiter(Some(dir))
        .await
        .map_err(|source| ConsolidateError::Store {
            path: dir.to_string(),
            source,
        })?;
    let mut files: Vec<String> = listing
        .objects
        .iter()
        .filter_map(|o| o.location.filename().map(str::to_string))
        .collect();
    let mut dirs: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect();
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

fn rel_key(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// v2: every `.zgroup`, `.zattrs` and `.zarray`, top-down (files sorted, then sub-folders
/// sorted, depth first), not below an array folder.
fn walk_v2<'a>(
    store: &'a dyn ObjectStore,
    root: &'a Path,
    rel: String,
    out: &'a mut Map<String, Value>,
) -> BoxFuture<'a, Result<(), ConsolidateError>> {
    Box::pin(async move {
        let dir = join(root, &rel);
        let (files, dirs) = level(store, &dir).await?;
        let mut is_array = false;
        for name in &files {
            if matches!(name.as_str(), ".zgroup" | ".zattrs" | ".zarray") {
                if let Some(doc) = get_json(store, &join(&dir, name)).await? {
                    out.insert(rel_key(&rel, name), doc);
                }
                is_array |= name == ".zarray";
            }
            if name == "zarr.json"
                && let Some(doc) = get_json(store, &join(&dir, "zarr.json")).await?
            {
                is_array |= doc.get("node_type").and_then(Value::as_str) == Some("array");
            }
        }
        if is_array {
            return Ok(());
        }
        for sub in dirs {
            walk_v2(store, root, rel_key(&rel, &sub), out).await?;
        }
        Ok(())
    })
}

/// v3: each node's `zarr.json` under its relative path (root excluded), not below arrays.
fn walk_v3<'a>(
    store: &'a dyn ObjectStore,
    root: &'a Path,
    rel: String,
    out: &'a mut Map<String, Value>,
) -> BoxFuture<'a, Result<(), ConsolidateError>> {
    Box::pin(async move {
        let dir = join(root, &rel);
        let (_files, dirs) = level(store, &dir).await?;
        for sub in dirs {
            let child = rel_key(&rel, &sub);
            let Some(doc) = get_json(store, &join(root, &format!("{child}/zarr.json"))).await?
            else {
                continue;
            };
            let is_array = doc.get("node_type").and_then(Value::as_str) == Some("array");
            out.insert(child.clone(), doc);
            if !is_array {
                walk_v3(store, root, child, out).await?;
            }
        }
        Ok(())
    })
}
