//! The cache prefix: derived artifacts memoised on object storage, already gzip-compressed,
//! under `<cache>/<fingerprint>/<artifact>`, so a cold process answers with one GET.
//!
//! Writes are create-only (`If-None-Match: *`): concurrent writers never corrupt an entry, and
//! a failed write never fails the request that triggered it. The source store is never written.

pub mod background;
mod fingerprint;
pub mod gene_pack;
pub mod gzip;
pub mod local;
pub mod plan;
pub mod precompute;
pub mod scratch;
mod shard;
pub mod stable;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

pub use fingerprint::fingerprint;
pub use gene_pack::{GenePack, GenePackError, PACK_INDEX};

use crate::store::ReadMetrics;
use crate::store::zarr_adapter_reads::record_get;

/// Why a cache operation failed (never fatal to a request).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache store failed.
    #[error("cache store error at `{path}`: {source}")]
    Store {
        /// Object path.
        path: String,
        /// Cause.
        #[source]
        source: object_store::Error,
    },
    /// A cached object is malformed.
    #[error("cache object `{path}` is invalid: {reason}")]
    Invalid {
        /// Object path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result of a create-only write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// We wrote the entry.
    Written,
    /// Someone else already had (same fingerprint, same content).
    AlreadyPresent,
}

/// A cache prefix on some object store.
#[derive(Clone)]
pub struct ArtifactCache {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    signer: Option<Arc<dyn Signer>>,
    display: String,
    metrics: Arc<ReadMetrics>,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("url", &self.display)
            .finish()
    }
}

impl ArtifactCache {
    /// A cache at `location` (any store URL).
    pub fn new(location: &crate::store::StoreLocation, metrics: Arc<ReadMetrics>) -> Self {
        ArtifactCache {
            store: location.store.clone(),
            prefix: location.prefix.clone(),
            signer: location.signer.clone(),
            display: location.display.clone(),
            metrics,
        }
    }

    /// The cache URL (for messages).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Object path of `artifact` under `fingerprint`.
    pub fn path(&self, fingerprint: &str, artifact: &str) -> Path {
        crate::store::join_key(&self.prefix.clone().join(fingerprint), artifact)
    }

    /// The cached gzip body of an artifact, if present (one GET).
    pub async fn get(
        &self,
        fingerprint: &str,
        artifact: &str,
    ) -> Result<Option<Bytes>, CacheError> {
        let path = self.path(fingerprint, artifact);
        match self.store.get(&path).await {
            Ok(result) => {
                let bytes = crate::store::complete_body(result)
                    .await
                    .map_err(|source| CacheError::Store {
                        path: path.to_string(),
                        source,
                    })?;
                record_get(&self.metrics, bytes.len() as u64);
                Ok(Some(bytes))
            }
            Err(object_store::Error::NotFound { .. }) => {
                record_get(&self.metrics, 0);
                Ok(None)
            }
            Err(source) => Err(CacheError::Store {
                path: path.to_string(),
                source,
            }),
        }
    }

    /// A byte range of a cached object (one GET).
    pub async fn get_range(
        &self,
        fingerprint: &str,
        artifact: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, CacheError> {
        let path = self.path(fingerprint, artifact);
        let expected = range.end.saturating_sub(range.start);
        let bytes = self
            .store
            .get_range(&path, range)
            .await
            .and_then(|bytes| crate::store::check_len(bytes, expected))
            .map_err(|source| CacheError::Store {
                path: path.to_string(),
                source,
            })?;
        record_get(&self.metrics, bytes.len() as u64);
        Ok(bytes)
    }

    /// A byte range of a cached object and the object's whole length (one GET), or `None`
    /// when the object does not exist.
    pub async fn get_head_range(
        &self,
        fingerprint: &str,
        artifact: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Option<(Bytes, u64)>, CacheError> {
        let path = self.path(fingerprint, artifact);
        let options = object_store::GetOptions {
            range: Some(range.clone().into()),
            ..object_store::GetOptions::default()
        };
        let error = |source| CacheError::Store {
            path: path.to_string(),
            source,
        };
        match self.store.get_opts(&path, options).await {
            Ok(result) => {
                let size = result.meta.size;
                let bytes = crate::store::complete_body(result).await.map_err(error)?;
                record_get(&self.metrics, bytes.len() as u64);
                Ok(Some((bytes, size)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(error(source)),
        }
    }

    /// Whether an entry exists (HEAD).
    pub async fn exists(&self, fingerprint: &str, artifact: &str) -> Result<bool, CacheError> {
        let path = self.path(fingerprint, artifact);
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(CacheError::Store {
                path: path.to_string(),
                source,
            }),
        }
    }

    /// Store `gzipped` (a gzip body of `content_type`) create-only.
    pub async fn put(
        &self,
        fingerprint: &str,
        artifact: &str,
        gzipped: Bytes,
        content_type: &'static str,
    ) -> Result<PutOutcome, CacheError> {
        self.put_encoded(fingerprint, artifact, gzipped, content_type, Some("gzip"))
            .await
    }

    /// Store an uncompressed object (e.g. the gene pack index) create-only.
    pub async fn put_plain(
        &self,
        fingerprint: &str,
        artifact: &str,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<PutOutcome, CacheError> {
        self.put_encoded(fingerprint, artifact, body, content_type, None)
            .await
    }

    /// Store `body` create-only with the `Content-Type` and `Content-Encoding` metadata a
    /// client fetching the object directly (a presigned URL) must see.
    pub async fn put_encoded(
        &self,
        fingerprint: &str,
        artifact: &str,
        body: Bytes,
        content_type: &'static str,
        content_encoding: Option<&'static str>,
    ) -> Result<PutOutcome, CacheError> {
        let path = self.path(fingerprint, artifact);
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type.into());
        if let Some(encoding) = content_encoding {
            attributes.insert(Attribute::ContentEncoding, encoding.into());
        }
        let options = PutOptions {
            mode: PutMode::Create,
            attributes,
            ..PutOptions::default()
        };
        let payload = PutPayload::from_bytes(body);
        let result = match self.store.put_opts(&path, payload.clone(), options).await {
            // Backends without object attributes (local files): the kind is implied by the key.
            Err(object_store::Error::NotImplemented { .. }) => {
                let options = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                self.store.put_opts(&path, payload, options).await
            }
            other => other,
        };
        match result {
            Ok(_) => Ok(PutOutcome::Written),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::AlreadyPresent),
            Err(source) => Err(CacheError::Store {
                path: path.to_string(),
                source,
            }),
        }
    }

    /// The underlying store and the object path of an artifact (for streaming writers).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Whether this backend can hand out presigned URLs (S3).
    pub fn can_presign(&self) -> bool {
        self.signer.is_some()
    }

    /// A presigned GET URL of a cached artifact, when the backend can sign (S3).
    pub async fn presigned_get(
        &self,
        fingerprint: &str,
        artifact: &str,
        expires_in: Duration,
    ) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let path = self.path(fingerprint, artifact);
        signer
            .signed_url(http::Method::GET, &path, expires_in)
            .await
            .ok()
            .map(|u| u.to_string())
    }
}
