//! One memory budget for everything a process retains.
//!
//! [`MemoryBudget`] is a single byte-weighted cache ([`moka`]) shared by every atlas of a
//! catalogue and by the HTTP layer's rendered artifacts: embeddings, obs columns, the latent
//! matrix, the edge list, the gene index, CSR `indptr`, documents and gzip bodies all count
//! against the same capacity, so memory stays bounded however many atlases are served and
//! however large they are. Entries are evicted least-recently-used first and recomputed on
//! demand; concurrent requests for the same missing entry compute it once (single flight).
//!
//! Admission is moka's TinyLFU: an entry is let in only when it is used more often than what
//! it would evict. Under a tight budget this keeps the bodies clients ask for again and again,
//! and stops a one-off large input (a latent space read to build one artifact) from flushing
//! them: with plain LRU a catalogue of five 1M-cell atlases whose hot bodies (190 MiB) nearly
//! fill a 256 MiB budget never settled under load (27 requests/s for a minute); with TinyLFU it
//! settles within 20 s.
//!
//! Computations in flight reserve their transient buffers with [`MemoryBudget::working`], so
//! concurrent cache misses cannot pile up memory beside the cache either.
//!
//! Each owner (one atlas, the HTTP layer) takes a [`BudgetScope`]: its keys cannot collide
//! with another owner's, and dropping the scope releases its entries.
//!
//! The budget is also the size limit of any single buffer: [`MemoryBudget::check`] refuses,
//! before anything is allocated, a buffer larger than the whole budget (a store declaring
//! 10¹² cells fails fast with [`TooLarge`] instead of aborting the process), and
//! [`try_filled`] / [`try_with_capacity`] turn an allocation failure into the same error.

use std::any::{Any, TypeId};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use moka::policy::EvictionPolicy;

/// Default capacity of a budget (256 MiB), used when nothing else is configured.
pub const DEFAULT_BUDGET_BYTES: u64 = 256 << 20;

/// Weights are kept in KiB (moka weighs entries with a `u32`): a weight of up to 4 TiB per
/// entry, each entry rounded up to a whole KiB.
const WEIGHT_UNIT: u64 = 1024;

/// A value that can live in a [`MemoryBudget`]: it reports the bytes it holds.
pub trait Weighed {
    /// Bytes held by the value (heap included), approximately.
    fn weight_bytes(&self) -> u64;
}

impl<T: Copy> Weighed for Vec<T> {
    fn weight_bytes(&self) -> u64 {
        (self.capacity() * std::mem::size_of::<T>()) as u64
    }
}

impl Weighed for Bytes {
    fn weight_bytes(&self) -> u64 {
        self.len() as u64
    }
}

/// What an entry is, inside its scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ItemKey {
    /// A named singleton (e.g. `"latent"`).
    Named(&'static str),
    /// One of a family (e.g. `("embedding", 3)`).
    Indexed(&'static str, u64),
    /// A free-form name (e.g. a rendered artifact's cache key).
    Text(Arc<str>),
}

impl ItemKey {
    /// A free-form key.
    pub fn text(name: impl Into<Arc<str>>) -> Self {
        ItemKey::Text(name.into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BudgetKey {
    scope: u64,
    item: ItemKey,
    /// The value's type: a key can never be read back as another type.
    type_id: TypeId,
}

#[derive(Clone)]
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    weight: u32,
}

fn weight_units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(WEIGHT_UNIT).max(1)).unwrap_or(u32::MAX)
}

struct Inner {
    cache: moka::future::Cache<BudgetKey, Entry>,
    capacity: u64,
    next_scope: AtomicU64,
    /// Working memory of computations in flight, in KiB (see [`MemoryBudget::working`]).
    working: Arc<tokio::sync::Semaphore>,
}

/// Room reserved for the transient buffers of one computation; released when dropped.
#[derive(Debug)]
pub struct WorkingMemory {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The process-wide memory budget (cheap to clone; clones share the same LRU).
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("capacity", &self.inner.capacity)
            .field("weighted_kib", &self.inner.cache.weighted_size())
            .finish()
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::new(DEFAULT_BUDGET_BYTES)
    }
}

/// A point-in-time view of a budget's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUsage {
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes held by the entries (rounded up to KiB per entry).
    pub used: u64,
    /// Number of entries.
    pub entries: u64,
}

impl MemoryBudget {
    /// A budget of `capacity_bytes` (at least 1 KiB).
    pub fn new(capacity_bytes: u64) -> Self {
        let capacity = capacity_bytes.max(WEIGHT_UNIT);
        let cache = moka::future::Cache::builder()
            .max_capacity(capacity / WEIGHT_UNIT)
            .weigher(|_key: &BudgetKey, entry: &Entry| entry.weight)
            .eviction_policy(EvictionPolicy::tiny_lfu())
            .support_invalidation_closures()
            .build();
        MemoryBudget {
            inner: Arc::new(Inner {
                cache,
                capacity,
                next_scope: AtomicU64::new(1),
                working: Arc::new(tokio::sync::Semaphore::new(
                    usize::try_from(capacity / WEIGHT_UNIT).unwrap_or(usize::MAX >> 4),
                )),
            }),
        }
    }

    /// Reserve `bytes` of working memory for one computation's transient buffers (what it
    /// reads and converts before its result enters the cache), waiting while computations in
    /// flight already hold the budget's capacity. This bounds what concurrent cache misses
    /// hold besides the cache — under load with a budget smaller than the working set, many
    /// misses at once would otherwise each read their own 100 MB inputs. A reservation larger
    /// than the capacity takes the whole capacity (it runs alone).
    pub async fn working(&self, bytes: u64) -> WorkingMemory {
        let kib = bytes
            .div_ceil(WEIGHT_UNIT)
            .clamp(1, (self.inner.capacity / WEIGHT_UNIT).max(1));
        let kib = u32::try_from(kib).unwrap_or(u32::MAX);
        let permit = self
            .inner
            .working
            .clone()
            .acquire_many_owned(kib)
            .await
            // The semaphore is never closed.
            .unwrap_or_else(|_| unreachable!("the working-memory semaphore is never closed"));
        WorkingMemory { _permit: permit }
    }

    /// Capacity in bytes: the most the entries may hold, and the largest single buffer.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// A new scope (one owner's namespace in the shared LRU).
    pub fn scope(&self) -> BudgetScope {
        BudgetScope {
            budget: self.clone(),
            id: self.inner.next_scope.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// `Ok` when a buffer of `needed` bytes (`None`: more than `u64` can count) fits in the
    /// budget; otherwise [`TooLarge`] naming `what`. Call before allocating anything whose size
    /// comes from the data.
    pub fn check(
        &self,
        needed: Option<u64>,
        what: impl FnOnce() -> String,
    ) -> Result<(), TooLarge> {
        match needed {
            Some(n) if n <= self.inner.capacity => Ok(()),
            _ => Err(TooLarge::OverBudget {
                what: what(),
                needed,
                budget: self.inner.capacity,
            }),
        }
    }

    /// Current use (pending evictions applied first).
    pub async fn usage(&self) -> BudgetUsage {
        self.inner.cache.run_pending_tasks().await;
        BudgetUsage {
            capacity: self.inner.capacity,
            used: self.inner.cache.weighted_size() * WEIGHT_UNIT,
            entries: self.inner.cache.entry_count(),
        }
    }
}

/// One owner's namespace in a [`MemoryBudget`]. Dropping it releases the owner's entries.
pub struct BudgetScope {
    budget: MemoryBudget,
    id: u64,
}

impl std::fmt::Debug for BudgetScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetScope").field("id", &self.id).finish()
    }
}

impl Drop for BudgetScope {
    fn drop(&mut self) {
        let id = self.id;
        // Invalidation closures are enabled by `MemoryBudget::new`, so this cannot fail.
        let _ = self
            .budget
            .inner
            .cache
            .invalidate_entries_if(move |key, _| key.scope == id);
    }
}

impl BudgetScope {
    /// The budget this scope lives in.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    fn key<T: 'static>(&self, item: ItemKey) -> BudgetKey {
        BudgetKey {
            scope: self.id,
            item,
            type_id: TypeId::of::<T>(),
        }
    }

    /// The entry `item` of type `T`, if it is held.
    pub async fn get<T: Send + Sync + 'static>(&self, item: &ItemKey) -> Option<Arc<T>> {
        let entry = self
            .budget
            .inner
            .cache
            .get(&self.key::<T>(item.clone()))
            .await?;
        Arc::downcast::<T>(entry.value).ok()
    }

    /// The entry `item`, computed by `init` when it is not held (concurrent callers for the
    /// same key wait for one computation). A failed computation is not retained: the next
    /// caller computes again.
    pub async fn get_or_try_insert<T, E, F>(&self, item: ItemKey, init: F) -> Result<Arc<T>, Arc<E>>
    where
        T: Weighed + Send + Sync + 'static,
        E: Send + Sync + 'static,
        F: Future<Output = Result<T, E>>,
    {
        // Both futures are boxed: computations nest (a document needs columns, which need
        // reads), and inline they would make every caller's future — and, in debug builds, its
        // stack frames — as large as the whole chain.
        let init = Box::pin(init);
        let entry = Box::pin(
            self.budget
                .inner
                .cache
                .try_get_with(self.key::<T>(item), async {
                    let value = init.await?;
                    let weight = weight_units(value.weight_bytes());
                    Ok::<_, E>(Entry {
                        value: Arc::new(value),
                        weight,
                    })
                }),
        )
        .await?;
        Ok(Arc::downcast::<T>(entry.value)
            .unwrap_or_else(|_| unreachable!("budget keys carry the value's TypeId")))
    }

    /// Hold `value` as `item` (replacing any previous entry).
    pub async fn insert<T: Weighed + Send + Sync + 'static>(&self, item: ItemKey, value: Arc<T>) {
        let weight = weight_units(value.weight_bytes());
        self.budget
            .inner
            .cache
            .insert(self.key::<T>(item), Entry { value, weight })
            .await;
    }
}

/// A buffer that does not fit: larger than the memory budget, or refused by the allocator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    /// Larger than the whole memory budget.
    #[error(
        "{what} needs {}, more than the memory budget of {} (raise --memory-cache-bytes / CELLUCID_MEMORY_CACHE_BYTES)",
        human_bytes(*needed),
        human_bytes(Some(*budget))
    )]
    OverBudget {
        /// What the buffer is for (names the store key).
        what: String,
        /// Bytes needed (`None`: more than `u64` can count).
        needed: Option<u64>,
        /// The budget's capacity.
        budget: u64,
    },
    /// The allocator refused the buffer.
    #[error("{what}: cannot allocate {}", human_bytes(*needed))]
    Allocation {
        /// What the buffer is for.
        what: String,
        /// Bytes asked for.
        needed: Option<u64>,
    },
    /// More positions along an axis than this server's index types address.
    #[error("{what}: more than the {most} positions this server can address")]
    Extent {
        /// The axis.
        what: String,
        /// The most positions addressable.
        most: u128,
    },
}

/// `1.5 GiB`-style size (`more than 16 EiB` for `None`).
pub fn human_bytes(bytes: Option<u64>) -> String {
    let Some(bytes) = bytes else {
        return "more than 16 EiB".into();
    };
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
    }
}

/// Hand the memory freed by evictions and finished computations back to the operating system,
/// once a second, from a background thread.
///
/// glibc's `malloc` keeps freed blocks in its per-thread arenas for reuse (its mmap threshold
/// grows to 32 MiB as large blocks are freed, so even multi-megabyte buffers land there): a
/// process serving a catalogue under load then stays far above its budget (measured with five
/// 1M-cell atlases, a 256 MiB budget and 64 connections: 911 MiB resident; 453 MiB with this).
/// `malloc_trim` returns the free pages of every arena; allocation itself stays as fast as
/// before (pinning the mmap threshold instead doubled the CPU of a CSR gene scan). A no-op on
/// other C libraries and systems. Call once at start.
pub fn start_releasing_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    // SAFETY: `malloc_trim` is thread-safe (it takes each arena's lock) and
                    // only releases pages of free blocks.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(target: "cellucid_edge::memory", "freed memory will stay with the allocator: {e}");
        }
    }
}

/// Bytes of `count` values of `T` (`None` on overflow).
pub fn bytes_of<T>(count: u64) -> Option<u64> {
    count.checked_mul(std::mem::size_of::<T>() as u64)
}

/// An empty vector with room for `count` values, or [`TooLarge::Allocation`] (never an abort).
pub fn try_with_capacity<T>(count: u64, what: impl FnOnce() -> String) -> Result<Vec<T>, TooLarge> {
    let refused = |what: String| TooLarge::Allocation {
        what,
        needed: bytes_of::<T>(count),
    };
    let Ok(count) = usize::try_from(count) else {
        return Err(refused(what()));
    };
    let mut out = Vec::new();
    match out.try_reserve_exact(count) {
        Ok(()) => Ok(out),
        Err(_) => Err(refused(what())),
    }
}

/// `count` copies of `value`, or [`TooLarge::Allocation`] (never an abort).
pub fn try_filled<T: Clone>(
    count: u64,
    value: T,
    what: impl FnOnce() -> String,
) -> Result<Vec<T>, TooLarge> {
    let mut out = try_with_capacity(count, what)?;
    // `try_with_capacity` succeeded, so `count` fits in `usize`.
    out.resize(count as usize, value);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Blob(u64);
    impl Weighed for Blob {
        fn weight_bytes(&self) -> u64 {
            self.0
        }
    }

    #[tokio::test]
    async fn entries_are_weighed_and_evicted_within_the_capacity() {
        let budget = MemoryBudget::new(1 << 20);
        let scope = budget.scope();
        for i in 0..64u64 {
            let v: Arc<Blob> = scope
                .get_or_try_insert(ItemKey::Indexed("blob", i), async {
                    Ok::<_, ()>(Blob(100 << 10))
                })
                .await
                .unwrap();
            assert_eq!(v.0, 100 << 10);
        }
        let usage = budget.usage().await;
        assert!(usage.used <= 1 << 20, "{usage:?}");
        assert!(usage.entries <= 10, "{usage:?}");
        assert!(usage.entries > 0, "{usage:?}");
    }

    #[tokio::test]
    async fn scopes_and_types_never_collide_and_dropping_a_scope_releases_it() {
        let budget = MemoryBudget::new(1 << 20);
        let a = budget.scope();
        let b = budget.scope();
        let key = ItemKey::Named("x");
        a.insert(key.clone(), Arc::new(Blob(10))).await;
        assert!(b.get::<Blob>(&key).await.is_none());
        assert!(a.get::<Vec<u8>>(&key).await.is_none());
        assert_eq!(a.get::<Blob>(&key).await.map(|v| v.0), Some(10));
        drop(a);
        b.insert(key.clone(), Arc::new(Blob(20))).await;
        assert_eq!(budget.usage().await.entries, 1);
    }

    #[tokio::test]
    async fn concurrent_misses_compute_once_and_failures_are_not_kept() {
        use std::sync::atomic::AtomicUsize;
        let budget = MemoryBudget::new(1 << 20);
        let scope = Arc::new(budget.scope());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (scope, calls) = (scope.clone(), calls.clone());
                tokio::spawn(async move {
                    scope
                        .get_or_try_insert(ItemKey::Named("once"), async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Ok::<_, ()>(Blob(1))
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let failed: Result<Arc<Blob>, Arc<&str>> = scope
            .get_or_try_insert(ItemKey::Named("fails"), async { Err("no") })
            .await;
        assert!(failed.is_err());
        let retried: Result<Arc<Blob>, Arc<&str>> = scope
            .get_or_try_insert(ItemKey::Named("fails"), async { Ok(Blob(2)) })
            .await;
        assert_eq!(retried.unwrap().0, 2);
    }

    #[tokio::test]
    async fn working_memory_is_bounded_by_the_capacity() {
        let budget = MemoryBudget::new(1 << 20);
        let a = budget.working(600 << 10).await;
        // A second 600 KiB reservation waits until the first is released.
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            budget.working(600 << 10),
        )
        .await;
        assert!(waiting.is_err(), "over capacity: must wait");
        drop(a);
        let _b = budget.working(600 << 10).await;
        // Larger than the capacity: takes all of it, never fails.
        drop(_b);
        let _all = budget.working(10 << 30).await;
    }

    #[test]
    fn checks_and_allocations_fail_cleanly() {
        let budget = MemoryBudget::new(1 << 20);
        assert!(budget.check(Some(1 << 20), || "fits".into()).is_ok());
        let err = budget
            .check(bytes_of::<f32>(1_000_000_000_000), || "obs/index".into())
            .unwrap_err();
        assert!(err.to_string().contains("obs/index"), "{err}");
        assert!(err.to_string().contains("3.6 TiB"), "{err}");
        assert!(budget.check(None, || "overflow".into()).is_err());
        let err = try_filled(u64::MAX / 2, 0u64, || "huge".into()).unwrap_err();
        assert!(matches!(err, TooLarge::Allocation { .. }), "{err}");
        assert_eq!(
            try_filled(3, 7u8, || "small".into()).unwrap(),
            vec![7, 7, 7]
        );
    }
}
