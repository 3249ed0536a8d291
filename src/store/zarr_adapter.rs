//! A `zarrs` storage adapter over any [`ObjectStore`] that issues plain ranged GETs.
//!
//! `zarrs_object_store` asks for an object's size (a HEAD request) before partial reads; on S3
//! that doubles the request count of a gene read. This adapter answers every read with GETs
//! only, and records each GET in [`ReadMetrics`] so requests can report what they cost.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt};
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{
    AsyncMaybeBytesIterator, AsyncReadableStorageTraits, MaybeBytes, StorageError, StoreKey,
};

use super::ReadMetrics;

/// `zarrs` storage over an object store prefix, metering every GET (writes serve `convert`).
#[derive(Debug, Clone)]
pub struct ObjectStoreZarr {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    metrics: Arc<ReadMetrics>,
}

tokio::task_local! {
    /// Reads made on behalf of the current request (set by the HTTP layer).
    pub static REQUEST_READS: Arc<ReadMetrics>;
}

/// The whole body of `result`, or an error when the store delivered fewer (or more) bytes than
/// the range it announced: a truncated body is never decoded, served or cached.
pub async fn complete_body(result: GetResult) -> Result<Bytes, object_store::Error> {
    let expected = result.range.end - result.range.start;
    let bytes = result.bytes().await?;
    check_len(bytes, expected)
}

/// `bytes` if it is `expected` bytes long, else a (transient) store error.
pub fn check_len(bytes: Bytes, expected: u64) -> Result<Bytes, object_store::Error> {
    if bytes.len() as u64 == expected {
        return Ok(bytes);
    }
    Err(object_store::Error::Generic {
        store: "cellucid-edge",
        source: format!(
            "storage body cut short: received {} of {expected} bytes",
            bytes.len()
        )
        .into(),
    })
}

/// Record a GET both globally and for the current request, if one is being metered.
pub fn record_get(global: &ReadMetrics, bytes: u64) {
    global.record_get(bytes);
    let _ = REQUEST_READS.try_with(|m| m.record_get(bytes));
}

impl ObjectStoreZarr {
    /// Wrap `store`, resolving zarr keys under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, metrics: Arc<ReadMetrics>) -> Self {
        Self {
            store,
            prefix,
            metrics,
        }
    }

    /// The object path of a zarr key. Parts are kept verbatim (AnnData column names such as
    /// `pct mito`, `名前` or `%%` are directory names as written); only `.`, `..` and control
    /// characters are escaped, so a key can never climb out of the prefix.
    pub fn object_path(&self, key: &str) -> Path {
        super::join_key(&self.prefix, key)
    }

    /// The metrics this adapter records into.
    pub fn metrics(&self) -> &Arc<ReadMetrics> {
        &self.metrics
    }

    /// Whole value of `key`, or `None` if absent.
    pub async fn get_key(&self, key: &str) -> Result<Option<Bytes>, object_store::Error> {
        let path = self.object_path(key);
        match self.store.get(&path).await {
            Ok(result) => {
                let bytes = complete_body(result).await?;
                record_get(&self.metrics, bytes.len() as u64);
                Ok(Some(bytes))
            }
            Err(object_store::Error::NotFound { .. }) => {
                record_get(&self.metrics, 0);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Whole value of `key` with its version (ETag, else last-modified time), or `None`.
    pub async fn get_key_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, String)>, object_store::Error> {
        let path = self.object_path(key);
        match self.store.get(&path).await {
            Ok(result) => {
                let version = result
                    .meta
                    .e_tag
                    .clone()
                    .unwrap_or_else(|| result.meta.last_modified.to_rfc3339());
                let bytes = complete_body(result).await?;
                record_get(&self.metrics, bytes.len() as u64);
                Ok(Some((bytes, version)))
            }
            Err(object_store::Error::NotFound { .. }) => {
                record_get(&self.metrics, 0);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn get_range(&self, path: &Path, range: GetRange) -> Result<MaybeBytes, StorageError> {
        let options = GetOptions {
            range: Some(range),
            ..GetOptions::default()
        };
        match self.store.get_opts(path, options).await {
            Ok(result) => {
                let bytes = complete_body(result).await.map_err(storage_error)?;
                record_get(&self.metrics, bytes.len() as u64);
                Ok(Some(bytes))
            }
            Err(object_store::Error::NotFound { .. }) => {
                record_get(&self.metrics, 0);
                Ok(None)
            }
            Err(e) => Err(storage_error(e)),
        }
    }
}

fn storage_error(e: object_store::Error) -> StorageError {
    StorageError::Other(e.to_string())
}

fn to_get_range(range: ByteRange) -> Option<GetRange> {
    match range {
        ByteRange::FromStart(0, None) => None,
        ByteRange::FromStart(offset, None) => Some(GetRange::Offset(offset)),
        ByteRange::FromStart(offset, Some(len)) => Some(GetRange::Bounded(offset..offset + len)),
        ByteRange::Suffix(len) => Some(GetRange::Suffix(len)),
    }
}

#[async_trait::async_trait]
impl AsyncReadableStorageTraits for ObjectStoreZarr {
    async fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.get_key(key.as_str()).await.map_err(storage_error)
    }

    async fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<AsyncMaybeBytesIterator<'a>, StorageError> {
        let path = self.object_path(key.as_str());
        let ranges: Vec<ByteRange> = byte_ranges.collect();
        let bounded: Option<Vec<Range<u64>>> = ranges
            .iter()
            .map(|r| match r {
                ByteRange::FromStart(offset, Some(len)) => Some(*offset..offset + len),
                _ => None,
            })
            .collect();
        let parts: Vec<Bytes> = match bounded {
            // Several bounded ranges: let the backend coalesce nearby ranges.
            Some(bounded) if bounded.len() > 1 => {
                match self.store.get_ranges(&path, &bounded).await {
                    Ok(parts) => {
                        // get_ranges coalesces; count one GET per returned part group.
                        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
                        record_get(&self.metrics, total);
                        if parts.len() != bounded.len() {
                            return Err(storage_error(object_store::Error::Generic {
                                store: "cellucid-edge",
                                source: format!(
                                    "store answered {} of {} ranges",
                                    parts.len(),
                                    bounded.len()
                                )
                                .into(),
                            }));
                        }
                        parts
                            .into_iter()
                            .zip(&bounded)
                            .map(|(part, range)| check_len(part, range.end - range.start))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(storage_error)?
                    }
                    Err(object_store::Error::NotFound { .. }) => {
                        record_get(&self.metrics, 0);
                        return Ok(None);
                    }
                    Err(e) => return Err(storage_error(e)),
                }
            }
            _ => {
                let mut parts = Vec::with_capacity(ranges.len());
                for range in ranges {
                    let value = match to_get_range(range) {
                        None => self.get_key(key.as_str()).await.map_err(storage_error)?,
                        Some(r) => self.get_range(&path, r).await?,
                    };
                    match value {
                        Some(bytes) => parts.push(bytes),
                        None => return Ok(None),
                    }
                }
                parts
            }
        };
        Ok(Some(
            futures::stream::iter(parts.into_iter().map(Ok)).boxed(),
        ))
    }

    async fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.object_path(key.as_str())).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

/// Writes (used by `convert`): whole values only — every chunk is written in one PUT under the
/// same verbatim key mapping as reads, so a written store reads back key for key.
#[async_trait::async_trait]
impl zarrs::storage::AsyncWritableStorageTraits for ObjectStoreZarr {
    async fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        self.store
            .put(
                &self.object_path(key.as_str()),
                object_store::PutPayload::from(value),
            )
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn set_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        _offset_values: zarrs::storage::OffsetBytesIterator<'a>,
    ) -> Result<(), StorageError> {
        Err(StorageError::Unsupported(format!(
            "partial writes to `{key}` (object stores write whole values)"
        )))
    }

    async fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        match self.store.delete(&self.object_path(key.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn erase_prefix(&self, prefix: &zarrs::storage::StorePrefix) -> Result<(), StorageError> {
        let dir = self.object_path(prefix.as_str());
        let mut listing = self.store.list(Some(&dir));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(storage_error)?;
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_error(e)),
            }
        }
        Ok(())
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}
