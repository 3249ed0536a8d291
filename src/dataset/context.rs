//! [`DatasetContext`]: what every atlas of a process shares.

use std::sync::Arc;

use crate::memory::MemoryBudget;
use crate::store::ReadMetrics;

/// Shared by every atlas a process opens (pass the same context to each
/// [`Dataset::open`](super::Dataset::open) / [`Catalog::open`](crate::catalog::Catalog::open)):
/// the store read counters, and the one [`MemoryBudget`] all retained buffers count against —
/// so memory does not grow with the number of atlases.
#[derive(Debug, Clone, Default)]
pub struct DatasetContext {
    /// GETs and bytes read from the stores.
    pub metrics: Arc<ReadMetrics>,
    /// The process's memory budget (also the largest single buffer an atlas may need).
    pub budget: MemoryBudget,
}

impl DatasetContext {
    /// A context with these metrics and budget.
    pub fn new(metrics: Arc<ReadMetrics>, budget: MemoryBudget) -> Self {
        DatasetContext { metrics, budget }
    }

    /// Fresh metrics and a budget of `bytes`.
    pub fn with_budget_bytes(bytes: u64) -> Self {
        DatasetContext::new(Arc::default(), MemoryBudget::new(bytes))
    }
}
