//! CPU work of background builds (the local cache warm-up, the on-demand gene pack) on a thread
//! pool of the lowest scheduling priority, so requests served meanwhile keep the cores: the
//! build uses what they leave idle.

use std::sync::OnceLock;

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
}
