//! [`ReadOnlyStore`]: an [`ObjectStore`] that forwards reads and refuses every write, counting
//! the attempts. Tests wrap a source store with it to prove the server never writes there;
//! deployments may wrap a source store with it as defence in depth.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Reads pass through; `put`, multipart uploads, deletes, copies and renames fail with
/// `NotSupported` and are counted.
#[derive(Debug)]
pub struct ReadOnlyStore {
    inner: Arc<dyn ObjectStore>,
    write_attempts: Arc<AtomicU64>,
}

impl ReadOnlyStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        ReadOnlyStore {
            inner,
            write_attempts: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many writes were attempted (and refused).
    pub fn write_attempts(&self) -> u64 {
        self.write_attempts.load(Ordering::Relaxed)
    }

    fn refuse(&self, operation: &str, location: &Path) -> object_store::Error {
        self.write_attempts.fetch_add(1, Ordering::Relaxed);
        tracing::error!(target: "cellucid_edge::store", %location, operation, "write to a read-only store refused");
        object_store::Error::NotSupported {
            source: format!("{operation} `{location}`: this store is read-only").into(),
        }
    }
}

impl std::fmt::Display for ReadOnlyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadOnly({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for ReadOnlyStore {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> Result<PutResult> {
        Err(self.refuse("put", location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(self.refuse("put_multipart", location))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Every location offered for deletion is refused (and counted).
        let attempts = self.write_attempts.clone();
        locations
            .map(move |location| {
                let location = location?;
                attempts.fetch_add(1, Ordering::Relaxed);
                Err(object_store::Error::NotSupported {
                    source: format!("delete `{location}`: this store is read-only").into(),
                })
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, _from: &Path, to: &Path, _options: CopyOptions) -> Result<()> {
        Err(self.refuse("copy", to))
    }

    async fn rename_opts(&self, from: &Path, _to: &Path, _options: RenameOptions) -> Result<()> {
        Err(self.refuse("rename", from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn reads_pass_and_writes_are_refused_and_counted() {
        let inner = Arc::new(InMemory::new());
        let x = Path::from("a/x");
        inner
            .put(&x, PutPayload::from_static(b"abc"))
            .await
            .unwrap();
        let ro = ReadOnlyStore::new(inner.clone());
        assert_eq!(
            &ro.get(&x).await.unwrap().bytes().await.unwrap()[..],
            b"abc"
        );
        assert!(ro.put(&x, PutPayload::from_static(b"zzz")).await.is_err());
        assert!(ro.delete(&x).await.is_err());
        assert!(ro.copy(&x, &Path::from("a/y")).await.is_err());
        assert!(ro.put_multipart(&x).await.is_err());
        assert_eq!(ro.write_attempts(), 4);
        assert_eq!(
            &inner.get(&x).await.unwrap().bytes().await.unwrap()[..],
            b"abc"
        );
    }
}
