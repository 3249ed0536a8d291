//! Counters of store reads: how many GET requests and how many bytes came back.

use std::sync::atomic::{AtomicU64, Ordering};

/// Thread-safe counters of reads made against a store.
#[derive(Debug, Default)]
pub struct ReadMetrics {
    gets: AtomicU64,
    bytes: AtomicU64,
}

/// A point-in-time copy of [`ReadMetrics`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadMetricsSnapshot {
    /// Number of GET requests (ranged or whole).
    pub gets: u64,
    /// Bytes returned by those requests.
    pub bytes: u64,
}

impl ReadMetrics {
    /// Record one GET that returned `bytes` bytes.
    pub fn record_get(&self, bytes: u64) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> ReadMetricsSnapshot {
        ReadMetricsSnapshot {
            gets: self.gets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

impl ReadMetricsSnapshot {
    /// Reads made between `earlier` and `self`.
    pub fn since(self, earlier: ReadMetricsSnapshot) -> ReadMetricsSnapshot {
        ReadMetricsSnapshot {
            gets: self.gets.saturating_sub(earlier.gets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}
