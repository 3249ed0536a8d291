//! A catalogue: one atlas served at the root, or a directory of atlases served as `/<id>/…`.

use std::sync::Arc;

use crate::anndata::AnnDataError;
use crate::dataset::{Dataset, DatasetContext, DatasetError, DatasetOptions};
use crate::memory::MemoryBudget;
use crate::store::StoreLocation;

/// The atlases a server answers for. Every atlas keeps its buffers in the one memory budget of
/// the [`DatasetContext`] it was opened with.
#[derive(Debug, Clone)]
pub struct Catalog {
    datasets: Vec<Arc<Dataset>>,
    multi: bool,
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
}

impl Catalog {
    /// A catalogue of one atlas served at the root.
    pub fn single(dataset: Arc<Dataset>) -> Self {
        Catalog {
            datasets: vec![dataset],
            multi: false,
        }
    }

    /// Open `location` as one atlas, or — when it holds no store root — as a directory whose
    /// children are atlases (each served under `/<id>/`). Every atlas shares `context` (its
    /// read metrics and memory budget).
    pub async fn open(
        location: StoreLocation,
        options: &DatasetOptions,
        context: &DatasetContext,
    ) -> Result<Self, CatalogError> {
        match Dataset::open(location.clone(), options.clone(), context).await {
            Ok(ds) => return Ok(Self::single(Arc::new(ds))),
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
        let mut datasets: Vec<Arc<Dataset>> = Vec::new();
        let mut failures = Vec::new();
        for name in names {
            let child = location.child(&name);
            let mut child_options = options.clone();
            child_options
                .dataset_name
                .get_or_insert_with(|| name.strip_suffix(".h5ad").unwrap_or(&name).to_string());
            // Ids must be unique and URL-safe; the name stays as written.
            child_options.dataset_id = None;
            match Dataset::open(child, child_options, context).await {
                Ok(ds) => {
                    if datasets.iter().any(|d| d.id() == ds.id()) {
                        failures.push(format!("{name}: duplicate dataset id `{}`", ds.id()));
                    } else {
                        datasets.push(Arc::new(ds));
                    }
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        for failure in &failures {
            tracing::warn!(target: "cellucid_edge::catalog", "skipped: {failure}");
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
            multi: true,
        })
    }

    /// Whether atlases are served under `/<id>/` (more than a single root atlas).
    pub fn is_multi(&self) -> bool {
        self.multi
    }

    /// The memory budget the atlases' buffers count against (the HTTP layer keeps its
    /// rendered artifacts in it too).
    pub fn budget(&self) -> &MemoryBudget {
        self.first().budget()
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
        // A catalogue always holds at least one atlas (see `open`).
        &self.datasets[0]
    }
}
