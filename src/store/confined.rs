//! [`ConfinedStore`]: a local-filesystem store whose every object access is resolved (symlinks
//! followed) and refused when the resolved path leaves the store. A symlink inside a store
//! (`ln -s /etc store.zarr/etcdir`) can therefore never make any protocol read or write outside
//! it — the rule cellucid 0.9.5 applies to every key ("after resolving symlinks, the key must
//! name a regular file inside the store").
//!
//! Listings pass through unchanged (names only; every object they name is checked when read),
//! so a catalogue directory may still hold symlinks to atlases kept elsewhere: each atlas is its
//! own store, confined to its own resolved root (see [`StoreLocation::child`]).
//!
//! [`StoreLocation::child`]: super::StoreLocation::child

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

tokio::task_local! {
    /// Reads refused by a [`ConfinedStore`] during the current request (set by the service
    /// around each request): a failure after a refusal is the store referring outside itself,
    /// even where the error reached the caller only as text (through the Zarr codec layer).
    pub static REQUEST_REFUSALS: Arc<AtomicU64>;
}

/// Whether a [`ConfinedStore`] refused a read during the current request.
pub fn refused_in_this_request() -> bool {
    REQUEST_REFUSALS
        .try_with(|n| n.load(Ordering::Relaxed) > 0)
        .unwrap_or(false)
}

/// What a [`ConfinedStore`] may touch, as resolved (canonical) filesystem paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything below this directory.
    Dir(PathBuf),
    /// Exactly this file (a single-file store: `.h5ad`, `.zarr.zip`).
    File(PathBuf),
}

impl Scope {
    /// The scope of an existing local path (a directory or a file), resolved.
    pub fn of(path: &std::path::Path) -> std::io::Result<Scope> {
        let canonical = std::fs::canonicalize(path)?;
        Ok(if canonical.is_dir() {
            Scope::Dir(canonical)
        } else {
            Scope::File(canonical)
        })
    }

    /// Whether resolved path `real` is inside the scope.
    pub fn contains(&self, real: &std::path::Path) -> bool {
        match self {
            // Component-wise: `/data/a.zarr2` is not inside `/data/a.zarr`.
            Scope::Dir(root) => real.starts_with(root),
            Scope::File(file) => real == file,
        }
    }
}

/// A [`LocalFileSystem`] confined to a [`Scope`]: reads of objects whose resolved path leaves
/// the scope fail with [`object_store::Error::PermissionDenied`], and so do writes whose
/// deepest existing ancestor resolves outside it. An object that does not exist is
/// [`object_store::Error::NotFound`], as from the filesystem itself.
#[derive(Debug)]
pub struct ConfinedStore {
    fs: Arc<LocalFileSystem>,
    scope: Scope,
}

impl std::fmt::Display for ConfinedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Confined({})", self.fs)
    }
}

/// Why an access was refused (the `source` of the `PermissionDenied` error).
#[derive(Debug, thiserror::Error)]
#[error("`{key}` resolves outside the store (through a symbolic link); refused")]
pub struct OutsideStore {
    /// The object key asked for.
    pub key: String,
}

impl ConfinedStore {
    /// Confine `fs` to `scope`.
    pub fn new(fs: Arc<LocalFileSystem>, scope: Scope) -> Self {
        ConfinedStore { fs, scope }
    }

    /// The scope accesses are confined to.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The filesystem backend.
    pub fn filesystem(&self) -> &Arc<LocalFileSystem> {
        &self.fs
    }

    fn refused(location: &Path) -> object_store::Error {
        let _ = REQUEST_REFUSALS.try_with(|n| n.fetch_add(1, Ordering::Relaxed));
        tracing::warn!(
            target: "cellucid_edge::store",
            key = %location,
            "a store key resolves outside the store (symbolic link); refused"
        );
        object_store::Error::PermissionDenied {
            path: location.to_string(),
            source: Box::new(OutsideStore {
                key: location.to_string(),
            }),
        }
    }

    /// Resolve `location` and check it is an existing object inside the scope.
    async fn check_read(&self, location: &Path) -> Result<()> {
        let fs_path = self.fs.path_to_filesystem(location)?;
        let scope = self.scope.clone();
        // Resolving touches the filesystem (one lstat per component): off the async executor.
        let resolved = tokio::task::spawn_blocking(move || {
            std::fs::canonicalize(&fs_path).map(|real| scope.contains(&real))
        })
        .await
        .map_err(|source| object_store::Error::JoinError { source })?;
        match resolved {
            Ok(true) => Ok(()),
            Ok(false) => Err(Self::refused(location)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(object_store::Error::NotFound {
                    path: location.to_string(),
                    source: Box::new(e),
                })
            }
            Err(e) => Err(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            }),
        }
    }

    /// Check that writing `location` stays inside the scope: its deepest existing ancestor
    /// (itself, when it exists) resolves inside.
    async fn check_write(&self, location: &Path) -> Result<()> {
        let fs_path = self.fs.path_to_filesystem(location)?;
        let scope = self.scope.clone();
        let inside = tokio::task::spawn_blocking(move || {
            let mut probe = fs_path.as_path();
            loop {
                match std::fs::canonicalize(probe) {
                    Ok(real) => return scope.contains(&real),
                    Err(_) => match probe.parent() {
                        Some(parent) => probe = parent,
                        None => return false,
                    },
                }
            }
        })
        .await
        .map_err(|source| object_store::Error::JoinError { source })?;
        if inside {
            Ok(())
        } else {
            Err(Self::refused(location))
        }
    }
}

#[async_trait]
impl ObjectStore for ConfinedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.check_write(location).await?;
        self.fs.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check_write(location).await?;
        self.fs.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check_read(location).await?;
        self.fs.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check_read(location).await?;
        self.fs.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let checker = Arc::new(ConfinedStore::new(self.fs.clone(), self.scope.clone()));
        let checked = locations
            .then(move |location| {
                let checker = checker.clone();
                async move {
                    let location = location?;
                    checker.check_write(&location).await?;
                    Ok(location)
                }
            })
            .boxed();
        self.fs.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.fs.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.fs.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.fs.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check_read(from).await?;
        self.check_write(to).await?;
        self.fs.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.check_write(from).await?;
        self.check_write(to).await?;
        self.fs.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    fn confined(root: &std::path::Path) -> ConfinedStore {
        let fs = Arc::new(LocalFileSystem::new_with_prefix(root).expect("fs"));
        ConfinedStore::new(fs, Scope::of(root).expect("scope"))
    }

    #[tokio::test]
    async fn symlinks_leaving_the_store_are_refused() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), b"secret").expect("write");
        let store = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(store.path().join("obs")).expect("mkdir");
        std::fs::write(store.path().join("obs/a"), b"inside").expect("write");
        std::os::unix::fs::symlink(outside.path(), store.path().join("etcdir")).expect("link");
        std::os::unix::fs::symlink(outside.path().join("secret"), store.path().join("obs/leak"))
            .expect("link");
        std::os::unix::fs::symlink(store.path().join("obs/a"), store.path().join("alias"))
            .expect("link");
        let s = confined(store.path());
        let read = |key: &'static str| {
            let s = &s;
            async move { s.get(&Path::from(key)).await.map(|r| r.meta.size) }
        };
        assert_eq!(read("obs/a").await.expect("inside"), 6);
        assert_eq!(read("alias").await.expect("a link inside the store"), 6);
        for key in ["etcdir/secret", "obs/leak"] {
            match read(key).await {
                Err(object_store::Error::PermissionDenied { .. }) => {}
                other => panic!("{key}: {other:?}"),
            }
            assert!(s.head(&Path::from(key)).await.is_err(), "{key}");
            assert!(s.get_range(&Path::from(key), 0..2).await.is_err(), "{key}");
        }
        assert!(matches!(
            read("nope").await,
            Err(object_store::Error::NotFound { .. })
        ));
        // Writes through the link are refused too; writes inside pass.
        let write = s
            .put(&Path::from("etcdir/new"), PutPayload::from_static(b"x"))
            .await;
        assert!(
            matches!(write, Err(object_store::Error::PermissionDenied { .. })),
            "{write:?}"
        );
        assert!(!outside.path().join("new").exists());
        s.put(&Path::from("fresh/dir/x"), PutPayload::from_static(b"x"))
            .await
            .expect("write inside");
    }

    #[test]
    fn scopes_compare_components() {
        let dir = Scope::Dir(PathBuf::from("/data/a.zarr"));
        assert!(dir.contains(std::path::Path::new("/data/a.zarr/X/0")));
        assert!(!dir.contains(std::path::Path::new("/data/a.zarr2/X/0")));
        assert!(!dir.contains(std::path::Path::new("/etc/passwd")));
        let file = Scope::File(PathBuf::from("/data/a.h5ad"));
        assert!(file.contains(std::path::Path::new("/data/a.h5ad")));
        assert!(!file.contains(std::path::Path::new("/data/b.h5ad")));
    }
}
