//! A catalogue: one atlas served at the root, or a directory of atlases served as `/<id>/…`.
//!
//! Ids are unique and never shadow a mount point of the router (`s`, `strict`, `v0.9`,
//! `_cellucid`): a directory whose children would collide is a clear error at start. A child
//! whose store fails transiently while the catalogue opens is not dropped: it stays pending and
//! is opened again on a later request ([`Catalog::retry_pending`]), so a store hiccup at a
//! Lambda container's init is never remembered as a 404 for the container's life.

use std::sync::Arc;

use crate::anndata::AnnDataError;
use crate::dataset::{Dataset, DatasetError, DatasetOptions};
use crate::model::safe_name::safe_name;
use crate::store::{ReadMetrics, StoreLocation};

/// Dataset ids a catalogue never gives out: the router's mount points (`/s/<token>/`, the
/// strict profile, the 0.9 protocol, the control routes).
pub const RESERVED_IDS: [&str; 4] = ["s", "strict", "v0.9", "_cellucid"];

/// The atlases a server answers for.
#[derive(Debug, Clone)]
pub struct Catalog {
    datasets: Vec<Arc<Dataset>>,
    pending: Vec<Pending>,
    multi: bool,
    options: DatasetOptions,
    metrics: Arc<ReadMetrics>,
}

/// A child of a catalogue directory whose store failed transiently while opening.
#[derive(Debug, Clone)]
struct Pending {
    /// Directory entry name.
    name: String,
    /// The id it will get.
    id: String,
    location: StoreLocation,
}

/// Why a catalogue could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The single store failed to open.
    #[error("cannot open atlas `{url}`: {source}")]
    Open {
        /// Store URL.
        url: String,
        /// Cause.
        #[source]
        source: DatasetError,
    },
    /// Neither a store nor a directory of stores.
    #[error("`{url}` is neither an AnnData-Zarr store nor a directory of stores{detail}")]
    Empty {
        /// Store URL.
        url: String,
        /// Per-child failures, if any.
        detail: String,
    },
    /// The listing of a directory failed.
    #[error("cannot list `{url}`: {source}")]
    List {
        /// Store URL.
        url: String,
        /// Cause.
        #[source]
        source: object_store::Error,
    },
    /// Every atlas of the directory failed transiently: nothing can be served yet.
    #[error("no atlas of `{url}` can be opened for now (the store failed for {pending:?})")]
    Unavailable {
        /// Catalogue URL.
        url: String,
        /// The children that failed.
        pending: Vec<String>,
    },
    /// Two children of a directory would get the same id.
    #[error(
        "`{first}` and `{second}` in `{url}` would both be served as `/{id}/`; rename one of them"
    )]
    DuplicateId {
        /// Catalogue URL.
        url: String,
        /// The id.
        id: String,
        /// First child.
        first: String,
        /// Second child.
        second: String,
    },
    /// A child would get an id the router reserves.
    #[error(
        "`{name}` in `{url}` would be served as `/{id}/`, which is reserved ({reserved}); rename it",
        reserved = RESERVED_IDS.join(", ")
    )]
    ReservedId {
        /// Catalogue URL.
        url: String,
        /// The id.
        id: String,
        /// The child.
        name: String,
    },
}

/// Whether a failure to open one atlas of a catalogue may pass (the store failed, not the
/// data): such an atlas is retried later instead of being dropped. The one place that decides
/// it, so the dataset layer's own error classification can replace it.
pub fn is_transient_open_error(error: &DatasetError) -> bool {
    error.is_transient()
}

/// The id a child of a catalogue directory gets (its dataset name's safe name).
fn child_id(name: &str, options: &DatasetOptions) -> (String, DatasetOptions) {
    let mut child = options.clone();
    child
        .dataset_name
        .get_or_insert_with(|| name.strip_suffix(".h5ad").unwrap_or(name).to_string());
    // Ids must be unique and URL-safe; the name stays as written.
    child.dataset_id = None;
    let id = safe_name(child.dataset_name.as_deref().unwrap_or(name));
    (id, child)
}

impl Catalog {
    /// A catalogue of one atlas served at the root.
    pub fn single(dataset: Arc<Dataset>) -> Self {
        Catalog {
            options: dataset.options().clone(),
            datasets: vec![dataset],
            pending: Vec::new(),
            multi: false,
            metrics: Arc::new(ReadMetrics::default()),
        }
    }

    /// Open `location` as one atlas, or — when it holds no store root — as a directory whose
    /// children are atlases (each served under `/<id>/`).
    pub async fn open(
        location: StoreLocation,
        options: &DatasetOptions,
        metrics: Arc<ReadMetrics>,
    ) -> Result<Self, CatalogError> {
        match Dataset::open(location.clone(), options.clone(), metrics.clone()).await {
            Ok(ds) => {
                let mut catalog = Self::single(Arc::new(ds));
                catalog.metrics = metrics;
                return Ok(catalog);
            }
            Err(DatasetError::AnnData(AnnDataError::Missing { key, .. })) if key == "zarr.json" => {
            }
            Err(source) => {
                return Err(CatalogError::Open {
                    url: location.display.clone(),
                    source,
                });
            }
        }
        let listing = location
            .store
            .list_with_delimiter(Some(&location.prefix))
            .await
            .map_err(|source| CatalogError::List {
                url: location.display.clone(),
                source,
            })?;
        // Child stores (directories) and, in a local directory, `.h5ad` files.
        let h5ad_files = listing
            .objects
            .iter()
            .filter(|_| location.is_local)
            .filter_map(|o| o.location.filename())
            .filter(|n| n.ends_with(".h5ad"));
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .chain(h5ad_files)
            .filter(|n| !n.starts_with('.'))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        // Ids are decided by names alone: check them all before opening anything.
        let mut ids: Vec<(String, &str)> = Vec::new();
        for name in &names {
            let (id, _) = child_id(name, options);
            if RESERVED_IDS.contains(&id.as_str()) {
                return Err(CatalogError::ReservedId {
                    url: location.display.clone(),
                    id,
                    name: name.clone(),
                });
            }
            if let Some((_, first)) = ids.iter().find(|(other, _)| *other == id) {
                return Err(CatalogError::DuplicateId {
                    url: location.display.clone(),
                    id,
                    first: first.to_string(),
                    second: name.clone(),
                });
            }
            ids.push((id, name));
        }
        let mut datasets: Vec<Arc<Dataset>> = Vec::new();
        let mut pending = Vec::new();
        let mut failures = Vec::new();
        for name in &names {
            let child = location.child(name);
            let (id, child_options) = child_id(name, options);
            match Dataset::open(child.clone(), child_options, metrics.clone()).await {
                Ok(ds) => datasets.push(Arc::new(ds)),
                Err(e) if is_transient_open_error(&e) => {
                    tracing::warn!(target: "cellucid_edge::catalog", dataset = %id,
                        "cannot open `{name}` for now (retried on a later request): {e}");
                    pending.push(Pending {
                        name: name.clone(),
                        id,
                        location: child,
                    });
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        for failure in &failures {
            tracing::warn!(target: "cellucid_edge::catalog", "skipped: {failure}");
        }
        if datasets.is_empty() && !pending.is_empty() {
            // Nothing to serve yet: the caller opens the whole catalogue again later.
            return Err(CatalogError::Unavailable {
                url: location.display.clone(),
                pending: pending.iter().map(|p| p.name.clone()).collect(),
            });
        }
        if datasets.is_empty() {
            let detail = if failures.is_empty() {
                String::new()
            } else {
                format!(" ({})", failures.join("; "))
            };
            return Err(CatalogError::Empty {
                url: location.display.clone(),
                detail,
            });
        }
        Ok(Catalog {
            datasets,
            pending,
            multi: true,
            options: options.clone(),
            metrics,
        })
    }

    /// Whether atlases are served under `/<id>/` (more than a single root atlas).
    pub fn is_multi(&self) -> bool {
        self.multi
    }

    /// The atlases in listing order.
    pub fn datasets(&self) -> &[Arc<Dataset>] {
        &self.datasets
    }

    /// The atlas with id `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Dataset>> {
        self.datasets.iter().find(|d| d.id() == id)
    }

    /// The first atlas (the one a viewer opens by default).
    pub fn first(&self) -> &Arc<Dataset> {
        // A catalogue always holds at least one opened atlas (see `open` and `single`).
        &self.datasets[0]
    }

    /// Whether some atlases failed transiently and are still to be opened.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The ids of the atlases still to be opened.
    pub fn pending_ids(&self) -> impl Iterator<Item = &str> {
        self.pending.iter().map(|p| p.id.as_str())
    }

    /// Whether `id` names an atlas still to be opened.
    pub fn is_pending(&self, id: &str) -> bool {
        self.pending.iter().any(|p| p.id == id)
    }

    /// Try the pending atlases again. `Some`: the catalogue with those that opened (in listing
    /// order) and without those that turned out to be broken for good; `None`: nothing changed.
    pub async fn retry_pending(&self) -> Option<Catalog> {
        if self.pending.is_empty() {
            return None;
        }
        let mut next = self.clone();
        next.pending.clear();
        let mut changed = false;
        for p in &self.pending {
            let (_, options) = child_id(&p.name, &self.options);
            match Dataset::open(p.location.clone(), options, self.metrics.clone()).await {
                Ok(ds) => {
                    tracing::info!(target: "cellucid_edge::catalog", dataset = %p.id, "opened on retry");
                    next.datasets.push(Arc::new(ds));
                    changed = true;
                }
                Err(e) if is_transient_open_error(&e) => {
                    tracing::warn!(target: "cellucid_edge::catalog", dataset = %p.id,
                        "still cannot open `{}`: {e}", p.name);
                    next.pending.push(p.clone());
                }
                Err(e) => {
                    tracing::warn!(target: "cellucid_edge::catalog", dataset = %p.id,
                        "skipped `{}`: {e}", p.name);
                    changed = true;
                }
            }
        }
        if !changed {
            return None;
        }
        // Listing order: children share the directory's URL, so URL order is name order.
        next.datasets.sort_by(|a, b| {
            a.store()
                .location()
                .display
                .cmp(&b.store().location().display)
        });
        Some(next)
    }
}
