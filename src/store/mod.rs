//! Object storage: open store URLs as [`object_store`] backends, meter every read, and expose
//! them to `zarrs` through an adapter that issues plain ranged GETs (no HEAD before a read).

pub mod confined;
mod error_class;
mod fault;
mod key;
mod metrics;
mod read_only;
mod url;
mod zarr_adapter;

pub use confined::ConfinedStore;
pub use error_class::{ErrorClass, classify_io, classify_object_store};
pub use fault::{Fault, FaultRule, FaultyStore, KeyMatch};
pub use key::join_key;
pub use metrics::{ReadMetrics, ReadMetricsSnapshot};
pub use read_only::ReadOnlyStore;
pub use url::{StoreLocation, StoreUrlError, memory_store, open_store_url};
pub use zarr_adapter::{DocumentError, ObjectStoreZarr, ObjectVersion, check_len, complete_body};

/// Per-request read metering.
pub mod zarr_adapter_reads {
    pub use super::zarr_adapter::{REQUEST_READS, record_get};
}

/// `future` carrying the calling request's read metering and refusal count (task-locals), for
/// work a request spawns onto other tasks (e.g. the blocks of a CSR scan): their reads count
/// towards the request's `Server-Timing` and a refused read is still seen as a refusal.
pub fn in_request_scope<F: std::future::Future>(
    future: F,
) -> impl std::future::Future<Output = F::Output> {
    use zarr_adapter::REQUEST_READS;
    let reads = REQUEST_READS.try_with(std::sync::Arc::clone).ok();
    let refusals = confined::REQUEST_REFUSALS
        .try_with(std::sync::Arc::clone)
        .ok();
    async move {
        match (reads, refusals) {
            (Some(reads), Some(refusals)) => {
                REQUEST_READS
                    .scope(reads, confined::REQUEST_REFUSALS.scope(refusals, future))
                    .await
            }
            (Some(reads), None) => REQUEST_READS.scope(reads, future).await,
            (None, Some(refusals)) => confined::REQUEST_REFUSALS.scope(refusals, future).await,
            (None, None) => future.await,
        }
    }
}
