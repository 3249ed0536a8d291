//! Store URLs: plain paths, `file://`, `s3://bucket/prefix`, `memory://name` and the
//! `embedded://demo` atlas compiled into the binary.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::signer::Signer;

use super::ErrorClass;
use super::confined::{ConfinedStore, Scope};

/// An opened store: a backend plus the prefix under which the atlas lives.
#[derive(Clone, Debug)]
pub struct StoreLocation {
    /// The object-store backend.
    pub store: Arc<dyn ObjectStore>,
    /// Prefix of the atlas inside the backend (may be empty).
    pub prefix: Path,
    /// The URL as the user may see it: never carries credentials or local paths beyond what
    /// the user typed.
    pub display: String,
    /// Last path segment of the URL, used as the default dataset name.
    pub name: String,
    /// Whether the backend is a local directory (`file://` or a plain path).
    pub is_local: bool,
    /// URL signer of the backend, when it can presign (S3).
    pub signer: Option<Arc<dyn Signer>>,
}

impl StoreLocation {
    /// A location for a child prefix of this one (e.g. one atlas inside a catalogue root).
    /// A local child is its own store, confined to its own resolved path (a catalogue may hold
    /// symlinks to atlases kept elsewhere; nothing inside an atlas may lead out of it).
    pub fn child(&self, segment: &str) -> StoreLocation {
        if self.is_local {
            let display = format!("{}/{}", self.display.trim_end_matches('/'), segment);
            let path = display.strip_prefix("file://").unwrap_or(&display);
            if let Ok(mut child) = open_local(path, &display) {
                child.name = segment.to_string();
                return child;
            }
        }
        StoreLocation {
            store: self.store.clone(),
            prefix: self.prefix.clone().join(segment),
            display: format!("{}/{}", self.display.trim_end_matches('/'), segment),
            name: segment.to_string(),
            is_local: self.is_local,
            signer: self.signer.clone(),
        }
    }
}

impl StoreLocation {
    /// For a local location naming a regular file (an `.h5ad`), that file's path.
    pub fn local_file(&self) -> Option<std::path::PathBuf> {
        if !self.is_local {
            return None;
        }
        let path = self
            .display
            .strip_prefix("file://")
            .unwrap_or(&self.display);
        let path = std::path::Path::new(path);
        path.is_file().then(|| path.to_path_buf())
    }
}

/// Why a store URL could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    /// The URL scheme is not one we serve.
    #[error(
        "unsupported store URL scheme `{scheme}` in `{url}` (use a path, file://, s3:// or memory://)"
    )]
    UnsupportedScheme {
        /// Scheme found.
        scheme: String,
        /// URL given.
        url: String,
    },
    /// A local path does not exist or is neither a directory nor a file.
    #[error("local store `{path}` cannot be opened: {reason}")]
    Local {
        /// Path given.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The URL could not be parsed.
    #[error("invalid store URL `{url}`: {reason}")]
    Invalid {
        /// URL given.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The S3 backend could not be configured.
    #[error("cannot configure S3 for `{url}`: {source}")]
    S3 {
        /// URL given.
        url: String,
        /// Backend error.
        #[source]
        source: object_store::Error,
    },
}

impl StoreUrlError {
    /// What this failure means ([`ErrorClass`]): a local path that does not exist or is no
    /// store is [`ErrorClass::NotFound`]; an unsupported or unparsable URL and an S3 backend
    /// that cannot be configured are [`ErrorClass::Internal`] (the deployment's configuration
    /// is wrong). None of them passes by retrying.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreUrlError::Local { .. } => ErrorClass::NotFound,
            StoreUrlError::UnsupportedScheme { .. }
            | StoreUrlError::Invalid { .. }
            | StoreUrlError::S3 { .. } => ErrorClass::Internal,
        }
    }
}

static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The named in-memory store behind `memory://NAME/...` URLs (created on first use).
/// Tests fill it and then open `memory://NAME/prefix` like any other store.
pub fn memory_store(name: &str) -> Arc<InMemory> {
    let mut stores = MEMORY_STORES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    stores
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

fn last_segment(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Open a store URL.
///
/// Accepts plain paths (`./atlas.zarr`), `file:///abs/atlas.zarr`, `s3://bucket/prefix`
/// (region and credentials from the standard AWS environment; `AWS_ENDPOINT_URL` points at an
/// S3-compatible server and `http://` endpoints are allowed), and `memory://name/prefix`.
pub fn open_store_url(url: &str) -> Result<StoreLocation, StoreUrlError> {
    if let Some((scheme, rest)) = url.split_once("://") {
        match scheme {
            "file" => open_local(rest, url),
            "memory" => {
                let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                Ok(StoreLocation {
                    store: memory_store(name),
                    prefix: Path::from(prefix.trim_matches('/')),
                    display: url.to_string(),
                    name: last_segment(if prefix.is_empty() { name } else { prefix }),
                    is_local: false,
                    signer: None,
                })
            }
            "s3" => open_s3(url),
            other => Err(StoreUrlError::UnsupportedScheme {
                scheme: other.to_string(),
                url: url.to_string(),
            }),
        }
    } else {
        open_local(url, url)
    }
}

fn open_local(path: &str, url: &str) -> Result<StoreLocation, StoreUrlError> {
    let local = std::path::Path::new(path);
    let canonical = local.canonicalize().map_err(|e| StoreUrlError::Local {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    // A local file (an `.h5ad`) is opened by its path (see `StoreLocation::local_file`); its
    // object store is the parent directory, with the file name as prefix.
    let (root, prefix) = if canonical.is_file() {
        match (canonical.parent(), canonical.file_name()) {
            (Some(parent), Some(name)) => (
                parent.to_path_buf(),
                Path::from(name.to_string_lossy().as_ref()),
            ),
            _ => (canonical.clone(), Path::default()),
        }
    } else if canonical.is_dir() {
        (canonical.clone(), Path::default())
    } else {
        return Err(StoreUrlError::Local {
            path: path.to_string(),
            reason: "neither a directory (an AnnData-Zarr store) nor a file (an .h5ad)".into(),
        });
    };
    let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| StoreUrlError::Local {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    // Every read resolves symlinks and is refused outside the store (a directory, or the file).
    let scope = if canonical.is_file() {
        Scope::File(canonical.clone())
    } else {
        Scope::Dir(canonical.clone())
    };
    Ok(StoreLocation {
        store: Arc::new(ConfinedStore::new(Arc::new(store), scope)),
        prefix,
        display: url.to_string(),
        // A file's extension is not part of the dataset name (`atlas.h5ad` → `atlas`).
        name: (if canonical.is_file() {
            canonical.file_stem()
        } else {
            canonical.file_name()
        })
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| last_segment(path)),
        is_local: true,
        signer: None,
    })
}

fn open_s3(url: &str) -> Result<StoreLocation, StoreUrlError> {
    let parsed = ::url::Url::parse(url).map_err(|e| StoreUrlError::Invalid {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let bucket = parsed.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() {
        return Err(StoreUrlError::Invalid {
            url: url.to_string(),
            reason: "missing bucket name".into(),
        });
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        builder = builder.with_endpoint(endpoint);
    }
    let store = builder.build().map_err(|source| StoreUrlError::S3 {
        url: url.to_string(),
        source,
    })?;
    let prefix = parsed.path().trim_matches('/').to_string();
    // Never show credentials embedded in the URL.
    let display = format!("s3://{bucket}/{prefix}");
    let store = Arc::new(store);
    Ok(StoreLocation {
        signer: Some(store.clone()),
        store,
        prefix: Path::from(prefix.as_str()),
        display,
        name: last_segment(if prefix.is_empty() { &bucket } else { &prefix }),
        is_local: false,
    })
}
