//! Errors of serving one atlas.

use crate::anndata::AnnDataError;
use crate::model::ModelError;

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
    /// Serving this would need a full scan of a large CSR X: run `precompute` first.
    #[error(
        "gene `{gene}` needs a scan of X ({nnz} stored values in CSR layout, above the on-demand limit of {limit}); run `cellucid-edge precompute` to build the gene-major cache"
    )]
    NeedsPrecompute {
        /// The gene asked for.
        gene: String,
        /// Stored values of X.
        nnz: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A request for something the field does not have (e.g. `values` of a text column).
    #[error("{0}")]
    Unsupported(String),
    /// A strict-profile document could not be produced (#14).
    #[error(transparent)]
    Strict(#[from] crate::protocol::strict::StrictError),
}

impl DatasetError {
    /// Whether the request should be told to come back later (transient store failure).
    pub fn is_transient(&self) -> bool {
        matches!(self, DatasetError::AnnData(e) if e.is_transient())
    }
}
