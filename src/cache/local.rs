//! Fast by default on one machine: `serve` of a local store keeps a cache prefix in the user's
//! cache directory (`~/.cache/cellucid-edge` on Linux, `~/Library/Caches/cellucid-edge` on macOS,
//! `%LOCALAPPDATA%\cellucid-edge` on Windows) unless told otherwise, and warms it in the
//! background: every artifact is computed once, by the same tasks `precompute` runs, and kept
//! across restarts (keys carry the atlas fingerprint, so a changed atlas never sees stale data).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use super::plan::PhaseName;
use super::precompute::{PrecomputeOptions, local_env};
use super::tasks::{TaskOutcome, run_task};
use super::{ArtifactCache, fingerprint};
use crate::dataset::Dataset;

/// Name of the directory inside the platform's user cache directory.
const DIR_NAME: &str = "cellucid-edge";

/// The default cache directory of local stores, if the platform has a user cache directory.
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join(DIR_NAME))
}

/// What a warm-up did.
#[derive(Debug, Default, Clone, Copy)]
pub struct WarmUp {
    /// Artifacts computed and stored.
    pub written: u64,
    /// Artifacts already in the cache.
    pub present: u64,
    /// Artifacts the reference refuses for this atlas.
    pub refused: u64,
}

/// Compute every artifact of `dataset` (the `artifacts` and `strict` phases of its plan, one
/// task at a time) into `cache`, skipping what is there. Genes are left to the pack build the server starts.
pub async fn warm_artifacts(
    dataset: Arc<Dataset>,
    cache: &ArtifactCache,
) -> Result<WarmUp, super::precompute::PrecomputeError> {
    let fp = fingerprint(&dataset);
    let options = PrecomputeOptions {
        priority: super::background::Priority::Background,
        ..PrecomputeOptions::default()
    };
    let env = local_env(dataset, cache, &fp, &options).await?;
    // The strict profile's documents too (#14): without `--quantize` its tasks need only the
    // source (and the seed artifacts, computed first).
    let tasks: Vec<(PhaseName, u64)> = [PhaseName::Artifacts, PhaseName::Strict]
        .into_iter()
        .flat_map(|phase| {
            (0..env.plan.phase(phase).map_or(0, |p| p.tasks)).map(move |t| (phase, t))
        })
        .collect();
    let mut done = WarmUp::default();
    // One at a time: the server answers requests meanwhile.
    let mut reports =
        std::pin::pin!(futures::stream::iter(tasks).then(|(phase, t)| run_task(&env, phase, t)));
    while let Some(report) = reports.next().await {
        match report?.outcome {
            TaskOutcome::Written => done.written += 1,
            TaskOutcome::AlreadyDone => done.present += 1,
            TaskOutcome::Refused => done.refused += 1,
        }
    }
    Ok(done)
}

/// Warm `cache` with every artifact of every dataset, in the background; failures are logged
/// (requests then compute what they need, as without a cache).
pub fn spawn_warm_up(datasets: Vec<Arc<Dataset>>, cache: ArtifactCache) {
    tokio::spawn(async move {
        for dataset in datasets {
            let started = Instant::now();
            let id = dataset.id().to_string();
            match warm_artifacts(dataset, &cache).await {
                Ok(done) => tracing::info!(
                    target: "cellucid_edge::cache",
                    dataset = %id,
                    written = done.written,
                    present = done.present,
                    refused = done.refused,
                    seconds = started.elapsed().as_secs_f64(),
                    "local cache warmed"
                ),
                Err(e) => tracing::warn!(
                    target: "cellucid_edge::cache",
                    dataset = %id,
                    "warming the local cache failed (requests compute what they need): {e}"
                ),
            }
        }
    });
}
