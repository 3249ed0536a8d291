//! Errors of serving one atlas, and their [`ErrorClass`].

use std::sync::Arc;

use crate::anndata::AnnDataError;
use crate::compute::ComputeError;
use crate::memory::TooLarge;
use crate::model::ModelError;
pub use crate::store::ErrorClass;

/// Why an artifact could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The store could not be read.
    #[error(transparent)]
    AnnData(#[from] AnnDataError),
    /// The data breaks one of the reference's rules (e.g. no UMAP, too many categories).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The requested thing does not exist (unknown field, gene, dimension, no graph).
    #[error("{0}")]
    NotFound(String),
    /// Serving this gene would read too much of X on demand: run `precompute` first.
    #[error(
        "gene `{gene}` needs reading {nnz} stored values of X ({layout}), above the on-demand limit of {limit}; run `cellucid-edge precompute` to build the gene-major cache"
    )]
    NeedsPrecompute {
        /// The gene asked for.
        gene: String,
        /// Stored values of X one request for it would read.
        nnz: u64,
        /// The configured limit (`csr_scan_max_nnz`).
        limit: u64,
        /// How X is laid out (`CSR layout`, `dense, chunks of 256 columns` …).
        layout: String,
    },
    /// A request for something the field does not have (e.g. `values` of a text column).
    #[error("{0}")]
    Unsupported(String),
    /// A buffer the data needs does not fit in the memory budget.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// A computation off the executor was cancelled or failed.
    #[error(transparent)]
    Compute(#[from] ComputeError),
    /// The same failure, reported to every request that waited for one computation.
    #[error(transparent)]
    Shared(Arc<DatasetError>),
}

impl From<Arc<DatasetError>> for DatasetError {
    /// The error itself when nobody else holds it, else a shared view of it.
    fn from(error: Arc<DatasetError>) -> Self {
        Arc::try_unwrap(error).unwrap_or_else(DatasetError::Shared)
    }
}

impl DatasetError {
    /// What this failure means for a client, decided on typed variants (store and zarrs error
    /// kinds included), never on message text.
    pub fn class(&self) -> ErrorClass {
        match self {
            DatasetError::AnnData(e) => e.class(),
            DatasetError::Model(e) => match e {
                ModelError::TooManyCategories { .. } => ErrorClass::NotFound,
                ModelError::TooManyCells { .. } => ErrorClass::TooLarge,
                ModelError::InvalidDimension { .. } | ModelError::Cancelled => ErrorClass::Internal,
                _ => ErrorClass::BadStore,
            },
            DatasetError::NotFound(_) => ErrorClass::NotFound,
            DatasetError::NeedsPrecompute { .. } => ErrorClass::NeedsPrecompute,
            DatasetError::Unsupported(_) | DatasetError::Compute(_) => ErrorClass::Internal,
            DatasetError::TooLarge(_) => ErrorClass::TooLarge,
            DatasetError::Shared(inner) => inner.class(),
        }
    }

    /// Whether the request should be told to come back later (transient store failure).
    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }
}
