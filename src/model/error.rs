//! Error type shared by every function of the `model` module.

use thiserror::Error;

/// Everything that can go wrong while applying the adapter's rules to input data.
///
/// None of the functions in `crate::model` panic on input-derived data; they return one of
/// these variants instead.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ModelError {
    /// No usable UMAP embedding exists in `obsm` (the reference refuses to start).
    ///
    /// The message reproduces the reference's `ValueError` text.
    #[error(
        "No valid UMAP embeddings found in adata.obsm. Expected keys: 'X_umap_1d', 'X_umap_2d', \
         'X_umap_3d', or 'X_umap' (1D/2D/3D). Available obsm keys: {available_keys_repr}. Please \
         add UMAP coordinates to your AnnData object using scanpy.tl.umap() and then store \
         explicit embeddings under X_umap_1d / X_umap_2d / X_umap_3d."
    )]
    NoUmapEmbedding {
        /// The obsm keys, formatted like Python's `repr(list_of_str)`.
        available_keys_repr: String,
    },

    /// An embedding contains NaN or ±Inf values (the reference would let them poison every
    /// coordinate; this server refuses such embeddings).
    #[error("embedding contains {count} non-finite value(s)")]
    NonFiniteEmbedding {
        /// Number of non-finite values found.
        count: usize,
    },

    /// A flat buffer does not have the length implied by its declared shape.
    #[error("{what}: expected {expected} elements, got {actual}")]
    ShapeMismatch {
        /// What was being checked (e.g. `"embedding"`).
        what: String,
        /// Expected number of elements.
        expected: usize,
        /// Actual number of elements.
        actual: usize,
    },

    /// A dimension outside {1, 2, 3} (or otherwise unusable) was requested.
    #[error("invalid dimension {dim}")]
    InvalidDimension {
        /// The offending dimension.
        dim: u64,
    },

    /// A categorical field has more categories than a `uint16` code with a `65535` sentinel
    /// can address (the reference silently wraps codes around; we refuse).
    #[error("categorical field has {n_categories} categories; at most 65535 are supported")]
    TooManyCategories {
        /// Number of categories of the field.
        n_categories: usize,
    },

    /// A categorical code is neither `-1` (missing) nor a valid index into the categories.
    #[error("invalid category code {code} at cell {index} (n_categories = {n_categories})")]
    InvalidCode {
        /// Cell index of the offending code.
        index: usize,
        /// The offending code.
        code: i64,
        /// Number of categories of the field.
        n_categories: usize,
    },

    /// Compressed sparse (CSR/CSC) arrays are structurally invalid.
    #[error("invalid sparse matrix: {reason}")]
    InvalidSparse {
        /// Human-readable description of the problem.
        reason: String,
    },

    /// More cells than this implementation can index (edge indices are kept as `u32`).
    #[error("{n_cells} cells exceed the supported maximum of 4294967296")]
    TooManyCells {
        /// Number of cells requested.
        n_cells: u64,
    },

    /// The computation was abandoned because its caller stopped waiting (see
    /// [`crate::compute::checkpoint`]).
    #[error("the computation was cancelled: its request ended")]
    Cancelled,
}

impl From<crate::compute::Cancelled> for ModelError {
    fn from(_: crate::compute::Cancelled) -> Self {
        ModelError::Cancelled
    }
}

/// Rows between two cancellation checkpoints in the long loops of the model.
pub(crate) const CHECKPOINT_ROWS: usize = 1 << 16;

/// A cancellation checkpoint every [`CHECKPOINT_ROWS`] rows of a loop over rows.
pub(crate) fn checkpoint_every(row: usize) -> ModelResult<()> {
    if row.is_multiple_of(CHECKPOINT_ROWS) {
        crate::compute::checkpoint()?;
    }
    Ok(())
}

/// Convenience alias used throughout `crate::model`.
pub type ModelResult<T> = Result<T, ModelError>;
