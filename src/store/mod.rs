//! Object storage: open store URLs as [`object_store`] backends, meter every read, and expose
//! them to `zarrs` through an adapter that issues plain ranged GETs (no HEAD before a read).

pub mod confined;
mod fault;
mod key;
mod metrics;
mod read_only;
mod url;
mod zarr_adapter;

pub use confined::ConfinedStore;
pub use fault::{Fault, FaultRule, FaultyStore, KeyMatch};
pub use key::join_key;
pub use metrics::{ReadMetrics, ReadMetricsSnapshot};
pub use read_only::ReadOnlyStore;
pub use url::{StoreLocation, StoreUrlError, memory_store, open_store_url};
pub use zarr_adapter::{ObjectStoreZarr, check_len, complete_body};

/// Per-request read metering.
pub mod zarr_adapter_reads {
    pub use super::zarr_adapter::{REQUEST_READS, record_get};
}
