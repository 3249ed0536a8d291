//! CPU-bound work off the async executor, interruptible by its caller.
//!
//! [`offload`] runs a closure on tokio's blocking pool (at most one job per core at a time, so
//! a burst of heavy requests queues instead of oversubscribing the machine) and awaits it. If
//! the awaiting future is dropped — a request deadline (`tokio::time::timeout`) fired, or the
//! client went away — the job's cancellation flag is raised; long loops poll it through
//! [`checkpoint`] and stop early, so an abandoned request does not keep a core busy.
//!
//! The flag is ambient: [`offload`] installs it in a thread-local for the duration of the
//! closure, and [`checkpoint`] reads it. Code that polls it (the model's long loops) keeps
//! plain signatures and, called outside [`offload`] (tests, benchmarks), is never cancelled.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;

/// The work was abandoned: its caller stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the computation was cancelled: its request ended")]
pub struct Cancelled;

/// Why an offloaded job produced no value.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// The job was cancelled.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// The job panicked (a bug: it is reported, the process keeps serving).
    #[error("a compute task failed: {0}")]
    Failed(#[source] tokio::task::JoinError),
}

thread_local! {
    static CANCEL: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Jobs running at once: one per core.
static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    Arc::new(Semaphore::new(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    ))
});

/// `Err(Cancelled)` when the current [`offload`]ed job was abandoned; always `Ok` elsewhere.
/// Cheap (a thread-local read): call it every few thousand iterations of a long loop.
pub fn checkpoint() -> Result<(), Cancelled> {
    if is_cancelled() {
        Err(Cancelled)
    } else {
        Ok(())
    }
}

/// Whether the current [`offload`]ed job was abandoned.
pub fn is_cancelled() -> bool {
    CANCEL.with(|flag| {
        flag.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

/// Raises the flag when the awaiting future goes away (or completes: then nobody listens).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Installs a job's flag in the blocking thread, and removes it (even on panic).
struct Installed;

impl Installed {
    fn new(flag: Arc<AtomicBool>) -> Self {
        CANCEL.with(|slot| *slot.borrow_mut() = Some(flag));
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        CANCEL.with(|slot| *slot.borrow_mut() = None);
    }
}

/// Run `work` on the blocking pool and await its result. Dropping the returned future raises
/// the job's cancellation flag (see [`checkpoint`]); a job still queued for a slot never
/// starts.
pub async fn offload<T, F>(work: F) -> Result<T, ComputeError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let flag = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(flag.clone());
    let permit = SLOTS.clone().acquire_owned().await.map_err(|_| Cancelled)?;
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _installed = Installed::new(flag);
        work()
    });
    match job.await {
        Ok(value) => Ok(value),
        Err(e) if e.is_cancelled() => Err(Cancelled.into()),
        Err(e) => Err(ComputeError::Failed(e)),
    }
}

/// Work touching fewer values than this runs inline in [`run_sized`]: tens of microseconds,
/// less than handing it to another thread costs.
pub const INLINE_BELOW: usize = 1 << 16;

/// [`offload`] `work` that touches about `values` values — or, below [`INLINE_BELOW`], run it
/// right here (it is too small to hold up the executor, and a thread hand-off would cost more
/// than the work). Large atlases always go through [`offload`].
pub async fn run_sized<T, F>(values: usize, work: F) -> Result<T, ComputeError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if values < INLINE_BELOW {
        Ok(work())
    } else {
        offload(work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn results_come_back_and_checkpoints_pass() {
        let v = offload(|| {
            checkpoint().unwrap();
            21 * 2
        })
        .await
        .unwrap();
        assert_eq!(v, 42);
        assert!(checkpoint().is_ok(), "outside offload nothing is cancelled");
    }

    #[tokio::test]
    async fn a_dropped_caller_interrupts_the_job() {
        let iterations = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let (i, s) = (iterations.clone(), stopped.clone());
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_millis(50),
            offload(move || {
                // Would spin for a minute without cancellation.
                while started.elapsed() < Duration::from_secs(60) {
                    i.fetch_add(1, Ordering::Relaxed);
                    if checkpoint().is_err() {
                        s.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }),
        )
        .await;
        assert!(outcome.is_err(), "the deadline fired");
        let waited = Instant::now();
        while !stopped.load(Ordering::SeqCst) {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "the job did not stop"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(iterations.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_crash() {
        let err = offload(|| -> u8 { panic!("bug") }).await.unwrap_err();
        assert!(matches!(err, ComputeError::Failed(_)), "{err}");
        assert!(checkpoint().is_ok());
    }
}
