//! CPU work of background builds (the local cache warm-up, the on-demand gene pack) on a thread
//! pool of the lowest scheduling priority, so requests served meanwhile keep the cores: the
//! build uses what they leave idle. Besides the priority, a background build starts each of its
//! tasks only when no request is in flight or ended within [`QUIET`] ([`ForegroundRequest`],
//! [`until_no_requests`]):
//! reading and decoding the store happen on the async runtime at normal priority, so without
//! this a viewer's first requests would share the cores with the build's reads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Requests being answered now (see [`ForegroundRequest`]).
static FOREGROUND: AtomicUsize = AtomicUsize::new(0);

/// Woken when the last request in flight ends.
static IDLE: LazyLock<Notify> = LazyLock::new(Notify::new);

/// The moment the process first counted requests or first waited for them (about its
/// start): the origin of [`LAST_REQUEST_END`].
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// When the last request ended, in milliseconds since [`EPOCH`] (0: none yet).
static LAST_REQUEST_END: AtomicU64 = AtomicU64::new(0);

/// How long the server must have been quiet before a background task starts: a viewer's
/// requests come in bursts (identity, manifests, points, a gene) with short gaps, and the whole
/// burst should find the cores free.
pub const QUIET: Duration = Duration::from_millis(250);

/// One request in flight: background builds start no new task while one exists, nor within
/// [`QUIET`] of its end. The service holds one per request it handles.
#[derive(Debug)]
#[must_use = "the request counts as in flight while the guard lives"]
pub struct ForegroundRequest(());

impl ForegroundRequest {
    /// Count a request as in flight until the guard is dropped.
    pub fn begin() -> Self {
        LazyLock::force(&EPOCH);
        FOREGROUND.fetch_add(1, Ordering::SeqCst);
        ForegroundRequest(())
    }
}

impl Drop for ForegroundRequest {
    fn drop(&mut self) {
        let now = EPOCH.elapsed().as_millis().max(1);
        LAST_REQUEST_END.fetch_max(u64::try_from(now).unwrap_or(u64::MAX), Ordering::SeqCst);
        if FOREGROUND.fetch_sub(1, Ordering::SeqCst) == 1 {
            IDLE.notify_waiters();
        }
    }
}

/// Wait until no request is in flight and none ended within [`QUIET`] (nor did the process
/// start counting within it: a server just started gets its first requests first).
pub async fn until_no_requests() {
    loop {
        let idle = IDLE.notified();
        tokio::pin!(idle);
        // Registered before the check, so an end of the last request in between is not missed.
        idle.as_mut().enable();
        if FOREGROUND.load(Ordering::SeqCst) > 0 {
            idle.await;
            continue;
        }
        // Quiet since the last request ended, or since the first background task asked (a
        // server just started: its first requests are on their way).
        let last = LAST_REQUEST_END.load(Ordering::SeqCst);
        let quiet_since = *EPOCH + Duration::from_millis(last);
        match (quiet_since + QUIET).checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
            _ => return,
        }
    }
}

/// How urgently a task's CPU work runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Priority {
    /// On the async runtime's blocking threads (a `precompute` run, a Lambda task).
    #[default]
    Normal,
    /// On the background pool (niced to 19 on Linux) while a server answers requests.
    Background,
}

fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("cellucid-background-{i}"))
            .start_handler(|_| lower_this_thread())
            .build()
            .ok()
    })
    .as_ref()
}

/// Lowest priority for the calling thread (Linux: threads have their own nice value).
fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory effects; `who = 0` with PRIO_PROCESS names the calling
    // thread on Linux. A failure (not permitted) leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

/// Run `work` at `priority` and await its result (`None` if the worker died).
pub async fn run<R, F>(priority: Priority, work: F) -> Option<R>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    match (priority, pool()) {
        (Priority::Background, Some(pool)) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            pool.spawn(move || {
                let _ = tx.send(work());
            });
            rx.await.ok()
        }
        _ => tokio::task::spawn_blocking(work).await.ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_priorities_run_the_work() {
        assert_eq!(run(Priority::Normal, || 2 + 2).await, Some(4));
        let name = run(Priority::Background, || {
            std::thread::current().name().map(str::to_string)
        })
        .await
        .flatten();
        assert!(name.is_some_and(|n| n.starts_with("cellucid-background-")));
    }

    #[tokio::test]
    async fn background_tasks_wait_for_requests_to_end() {
        let started = Instant::now();
        until_no_requests().await; // none in flight: after QUIET from the start
        assert!(started.elapsed() >= QUIET);
        let request = ForegroundRequest::begin();
        let waiting = tokio::spawn(until_no_requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a task started while a request was in flight"
        );
        let ended = Instant::now();
        drop(request);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken when the request ended")
            .expect("joined");
        assert!(
            ended.elapsed() >= QUIET,
            "a task started within QUIET of a request"
        );
    }
}
