//! Reading AnnData stored as Zarr (format 2 and 3) through `zarrs` and `object_store`.
//!
//! Layers: [`metadata`] (the node tree, consolidated or per node) → [`array`] (typed ranged
//! reads of one array) → [`frame`] / [`layout`] / [`matrix`] (AnnData encodings).

pub mod array;
mod error;
pub mod frame;
pub mod layout;
pub mod matrix;
pub mod metadata;
mod store;

pub use array::{ElementKind, Numbers, ZArray};
pub use error::AnnDataError;
pub use frame::{CategoryValues, ColumnData, ColumnEncoding, ColumnMeta, FrameMeta};
pub use layout::{AnnDataLayout, MatrixMeta, ObsmEntry, SparseMeta};
pub use metadata::{MetadataTree, Node, ZarrFormat};
pub use store::AnnDataStore;
