//! Reading AnnData stored as Zarr (format 2 and 3) through `zarrs` and `object_store`, or as
//! `.h5ad` (HDF5, feature `h5ad`) through libhdf5.
//!
//! Layers: the source's node tree ([`metadata`] for Zarr, consolidated or per node; `hdf5` for
//! h5ad) → [`array`] (typed ranged reads of one array, either backing) → [`frame`] /
//! [`layout`] / [`matrix`] (AnnData encodings, shared by both formats).

pub mod array;
mod error;
pub mod frame;
#[cfg(feature = "h5ad")]
pub mod hdf5;
pub mod layout;
pub mod matrix;
pub mod metadata;
mod store;

pub use array::{ElementKind, Numbers, ZArray};
pub use error::AnnDataError;
pub use frame::{CategoryValues, ColumnData, ColumnEncoding, ColumnMeta, FrameMeta};
pub use layout::{AnnDataLayout, MatrixMeta, ObsmEntry, SparseMeta};
pub use metadata::{ArrayNode, MetadataTree, Node, ZarrFormat};
pub use store::{AnnDataStore, SourceFormat};
