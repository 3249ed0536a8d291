//! Scratch space of a precompute run: where `transpose` tasks leave their shards for the
//! `pack` tasks (and the Step Functions item lists). Never part of the cache itself.
//!
//! A run on one machine uses a private local directory, removed when the run ends; tasks spread
//! over machines share `<cache>/_work/<fingerprint>/` (or any store URL given), which the
//! `cleanup` phase empties.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{ArtifactCache, PutOutcome};

/// Prefix (inside the cache prefix) of the shared scratch spaces.
pub const SHARED_SCRATCH: &str = "_work";

/// A scratch space on some object store.
#[derive(Clone)]
pub struct Scratch {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    display: String,
    /// A private local directory, removed with the last clone.
    _local: Option<Arc<tempfile::TempDir>>,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("at", &self.display)
            .finish()
    }
}

/// A scratch operation failed.
#[derive(Debug, thiserror::Error)]
#[error("scratch `{path}`: {source}")]
pub struct ScratchError {
    /// Object path.
    pub path: String,
    /// Cause.
    #[source]
    pub source: object_store::Error,
}

impl Scratch {
    /// The shared scratch of `fingerprint` inside `cache`: `<cache>/_work/<fingerprint>/`.
    pub fn shared(cache: &ArtifactCache, fingerprint: &str) -> Scratch {
        Scratch {
            store: cache.store().clone(),
            prefix: cache.path(SHARED_SCRATCH, fingerprint),
            display: format!(
                "{}/{SHARED_SCRATCH}/{fingerprint}",
                cache.display().trim_end_matches('/')
            ),
            _local: None,
        }
    }

    /// A scratch at `location` (any store URL, e.g. a shared file system).
    pub fn at(location: &crate::store::StoreLocation) -> Scratch {
        Scratch {
            store: location.store.clone(),
            prefix: location.prefix.clone(),
            display: location.display.clone(),
            _local: None,
        }
    }

    /// A private local directory below `parent`, removed when the last clone is dropped.
    pub fn private(parent: &std::path::Path) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new()
            .prefix("cellucid-edge-scratch-")
            .tempdir_in(parent)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path())
            .map_err(std::io::Error::other)?;
        Ok(Scratch {
            store: Arc::new(store),
            prefix: Path::default(),
            display: dir.path().display().to_string(),
            _local: Some(Arc::new(dir)),
        })
    }

    /// Where the scratch is (for messages).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Object path of `key`.
    pub fn path(&self, key: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in key.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    fn error(&self, key: &str, source: object_store::Error) -> ScratchError {
        ScratchError {
            path: format!("{}/{key}", self.display.trim_end_matches('/')),
            source,
        }
    }

    /// Store `body` under `key` unless present (one PUT; a reader never sees part of it).
    pub async fn put(&self, key: &str, body: Bytes) -> Result<PutOutcome, ScratchError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(key), PutPayload::from_bytes(body), options)
            .await
        {
            Ok(_) => Ok(PutOutcome::Written),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::AlreadyPresent),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, ScratchError> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// A byte range of `key`.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ScratchError> {
        let expected = range.end - range.start;
        self.store
            .get_range(&self.path(key), range)
            .await
            .and_then(|b| crate::store::check_len(b, expected))
            .map_err(|e| self.error(key, e))
    }

    /// Delete every object of the scratch; returns how many.
    pub async fn clear(&self) -> Result<u64, ScratchError> {
        // Another cleanup running at the same time may delete an object (or a directory being
        // listed) first: that is not a failure.
        let paths = self
            .store
            .list(Some(&self.prefix))
            .filter_map(|meta| async move {
                match meta {
                    Err(object_store::Error::NotFound { .. }) => None,
                    other => Some(other.map(|m| m.location)),
                }
            })
            .boxed();
        let mut results = self.store.delete_stream(paths);
        let mut deleted = 0;
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("", e)),
            }
        }
        Ok(deleted)
    }
}
