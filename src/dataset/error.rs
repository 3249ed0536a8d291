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
    /// A strict-profile document could not be produced (#14).
    #[error(transparent)]
    Strict(#[from] crate::protocol::strict::StrictError),
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
            DatasetError::Strict(e) => {
                use crate::protocol::strict::StrictError as S;
                match e {
                    // The data has no strict form (repeated categories or keys, an empty key,
                    // a graph that cannot be weighted): what the store holds, not a bug.
                    S::DuplicateCategory { .. }
                    | S::DuplicateObsKey
                    | S::EmptyObsKey
                    | S::NoStrictGraph(_) => ErrorClass::BadStore,
                    // A seed body that does not translate (also a damaged cache object) or
                    // a document that does not serialise.
                    S::MalformedSeed { .. }
                    | S::SeedJson { .. }
                    | S::Serialize { .. }
                    | S::BadSeedPayload { .. } => ErrorClass::Internal,
                }
            }
        }
    }

    /// Whether the request should be told to come back later (transient store failure).
    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::TooLarge;

    fn storage(source: object_store::Error) -> DatasetError {
        AnnDataError::Storage {
            key: "obsm/X_umap/c/0/0".into(),
            source,
        }
        .into()
    }

    #[test]
    fn classes_come_from_variants() {
        // A key the metadata promised is gone: the store is damaged (500), not a 404.
        let vanished = storage(object_store::Error::NotFound {
            path: "x".into(),
            source: "Generic storage".into(),
        });
        assert_eq!(vanished.class(), ErrorClass::BadStore);
        let denied = storage(object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "storage Generic".into(),
        });
        assert_eq!(denied.class(), ErrorClass::Internal);
        let flaky = storage(object_store::Error::Generic {
            store: "S3",
            source: "connection reset".into(),
        });
        assert_eq!(flaky.class(), ErrorClass::Transient);
        assert!(flaky.is_transient());
        assert_eq!(
            DatasetError::NotFound("Gene not found: X".into()).class(),
            ErrorClass::NotFound
        );
        let huge = DatasetError::from(TooLarge::OverBudget {
            what: "obs/index".into(),
            needed: None,
            budget: 1,
        });
        assert_eq!(huge.class(), ErrorClass::TooLarge);
        let corrupt = DatasetError::from(AnnDataError::Structure {
            key: "X/indptr".into(),
            reason: "decreases".into(),
        });
        assert_eq!(corrupt.class(), ErrorClass::BadStore);
        // A failure shared by every waiter of one computation keeps its class and its text.
        let shared = DatasetError::from(Arc::new(flaky));
        let again = DatasetError::Shared(Arc::new(shared));
        assert_eq!(again.class(), ErrorClass::Transient);
        assert!(again.to_string().contains("connection reset"), "{again}");
        // The source chain is kept.
        let chained = std::error::Error::source(&denied);
        assert!(chained.is_some());
    }
}
