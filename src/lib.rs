//! cellucid-edge: serve AnnData-Zarr atlases to the Cellucid viewer from object storage.
//!
//! The crate is layered like the request path through it:
//! [`store`] (object storage, metered ranged GETs) → [`anndata`] (AnnData-on-Zarr reader) →
//! [`model`] (the reference's rules as pure functions) → [`dataset`] (one opened atlas and its
//! artifacts) → [`protocol`] (routes and documents) → [`http`] (HTTP rules and the seed
//! protocol's handler) and [`v09`] (the 0.9 protocol's handler)
//! → [`service`] (the one front door: gate → router → protocol handlers → one response type)
//! → transports ([`serve`] locally; [`lambda`] for AWS Lambda), which never look at paths.
//!
//! Across the layers: [`memory`] (one byte budget for everything a process retains) and
//! [`compute`] (CPU-bound work off the async executor, interruptible by the request deadline).

pub mod anndata;
pub mod cache;
pub mod catalog;
pub mod compute;
#[cfg(feature = "h5ad")]
pub mod convert;
pub mod dataset;
pub mod demo;
pub mod http;
pub mod lambda;
pub mod links;
pub mod memory;
pub mod model;
pub mod precompute_lambda;
pub mod protocol;
pub mod serve;
pub mod service;
pub mod share;
pub mod store;
pub mod v09;
