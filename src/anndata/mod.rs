//! Reading AnnData stored as Zarr (format 2 and 3) through `zarrs` and `object_store`, or as
//! `.h5ad` (HDF5, feature `h5ad`) through libhdf5.
//!
//! Layers: the source's node tree ([`metadata`] for Zarr, consolidated or per node; `hdf5` for
//! h5ad) → [`array`](mod@array) (typed ranged reads of one array, either backing) → [`frame`] /
//! [`layout`] / [`matrix`] / [`sparse`] (AnnData encodings, shared by both formats). Sizes read
//! from metadata are checked in this shared layer, above both backends: every read must fit
//! the store's read limit (a dataset's memory budget) before anything is allocated.

pub mod array;
mod error;
pub mod frame;
#[cfg(feature = "h5ad")]
pub mod hdf5;
pub mod layout;
pub mod matrix;
pub mod metadata;
pub mod sparse;
mod store;

pub use array::{ElementKind, IndexType, IndexValuesError, Numbers, ZArray};
pub use error::AnnDataError;
pub use frame::{CategoryValues, ColumnData, ColumnEncoding, ColumnMeta, FrameMeta};
pub use layout::{AnnDataLayout, Compressed, MatrixMeta, ObsmEntry, SparseMeta};
pub use metadata::{ArrayNode, MetadataTree, Node, ZarrFormat};
pub use store::{AnnDataStore, SourceFormat};
