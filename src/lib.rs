//! cellucid-edge: serve AnnData-Zarr atlases to the Cellucid viewer from object storage.
//!
//! The crate is layered like the request path through it:
//! [`store`] (object storage, metered ranged GETs) → [`anndata`] (AnnData-on-Zarr reader) →
//! [`model`] (the reference's rules as pure functions) → [`dataset`] (one opened atlas and its
//! artifacts) → [`protocol`] (routes and documents) → [`http`] (transport-agnostic responses)
//! → transports ([`serve`] locally; [`lambda`] for AWS Lambda).

pub mod anndata;
pub mod cache;
pub mod catalog;
#[cfg(feature = "h5ad")]
pub mod convert;
pub mod dataset;
pub mod demo;
pub mod http;
pub mod lambda;
pub mod links;
pub mod model;
pub mod protocol;
pub mod serve;
pub mod share;
pub mod store;
pub mod v09;
