//! The seed's computational rules (cellucid 0.0.9 `AnnDataAdapter`) as pure functions.
//!
//! Plain slices in, plain `Vec`s/structs out; no I/O, no async. Float results are bit-exact
//! with NumPy 2.4 (float32 arithmetic, NEP 50 promotion) where the reference computes them with
//! NumPy.

pub mod categories;
pub mod centroids;
pub mod continuous;
pub mod edges;
pub mod embedding;
pub mod error;
pub mod latent;
pub mod obsm;
pub mod outliers;
pub mod quantile;
pub mod quantize;
pub mod reduce;
pub mod safe_name;
#[cfg(test)]
pub(crate) mod testutil;
pub mod umap;
pub mod vectors;
pub mod weights;

pub use error::{ModelError, ModelResult};
pub use obsm::ObsmEntry;
