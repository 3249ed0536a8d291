//! The precompute hook of the strict profile: the strict-only artifacts written into the cache
//! prefix next to the seed's, so a cold process answers every strict request with one GET.
//!
//! Everything the strict profile shares with the seed (points, float32 obs payloads and genes
//! through the gene-major pack, edges, vectors) is built by the seed's precompute; this hook
//! adds the strict documents (float32 and, with `quantize`, the quantised manifests, whose
//! per-gene ranges need a full pass over X that only precompute may do for a large CSR X),
//! the edge weights, the uint16 edge indices of a 65 536-cell atlas and the quantised
//! continuous obs payloads. Quantised genes are not stored: each is one GET of the float32
//! gene in the pack, quantised on the fly. Create-only and idempotent like the seed's phase.

use std::sync::Arc;

use futures::StreamExt;

use super::gene_ranges::ScanLimit;
use super::{StrictArtifact, StrictConfig};
use crate::cache::{ArtifactCache, CacheError, PutOutcome};
use crate::dataset::{Dataset, DatasetError, FieldKind};
use crate::http::encoding::gzip;
use crate::model::edges::IndexDtype;
use crate::model::weights::strict_index_dtype;

/// What the strict hook did.
#[derive(Debug, Default, Clone)]
pub struct StrictPrecompute {
    /// Artifacts written.
    pub written: u64,
    /// Artifacts already in the cache.
    pub skipped: u64,
    /// Artifacts the strict profile does not publish for this atlas, with the reason (e.g.
    /// a graph without a strict form): answered 404 at request time.
    pub refused: Vec<(String, String)>,
    /// Gzip bytes written.
    pub bytes_written: u64,
}

/// Why the strict hook failed (the run should stop; an artifact the profile does not publish
/// is not a failure).
#[derive(Debug, thiserror::Error)]
pub enum StrictPrecomputeError {
    /// The cache prefix could not be read or written.
    #[error("writing the cache: {0}")]
    Cache(#[from] CacheError),
    /// The source store failed (transiently) while computing an artifact.
    #[error("computing `{artifact}`: {source}")]
    Source {
        /// Cache key of the artifact.
        artifact: String,
        /// Cause.
        #[source]
        source: DatasetError,
    },
}

/// The strict-only artifacts of `dataset` for a deployment configured with `config`.
pub fn artifact_list(dataset: &Dataset, config: &StrictConfig) -> Vec<StrictArtifact> {
    let mut list = vec![
        StrictArtifact::Identity,
        StrictArtifact::ObsManifest(None),
        StrictArtifact::VarManifest(None),
    ];
    if let Some(bits) = config.quantize {
        list.push(StrictArtifact::ObsManifest(Some(bits)));
        list.push(StrictArtifact::VarManifest(Some(bits)));
        for (i, field) in dataset.obs_fields().iter().enumerate() {
            if field.kind == FieldKind::Continuous {
                list.push(StrictArtifact::QuantizedObsValues(i, bits));
            }
        }
    }
    if dataset.has_connectivity() {
        list.push(StrictArtifact::ConnectivityManifest);
        list.push(StrictArtifact::EdgeWeights);
        let n = dataset.n_cells();
        if strict_index_dtype(n).is_some_and(|d| d != IndexDtype::for_n_cells(n)) {
            list.push(StrictArtifact::EdgeIndices { source: true });
            list.push(StrictArtifact::EdgeIndices { source: false });
        }
    }
    list
}

/// Compute one strict artifact from the source store without the request-time limits.
async fn compute(
    dataset: &Dataset,
    artifact: StrictArtifact,
) -> Result<bytes::Bytes, DatasetError> {
    match artifact.source() {
        Some(source) => {
            let body = Box::pin(source.compute(dataset)).await?;
            artifact.derive(dataset, body, ScanLimit::Unlimited).await
        }
        None => artifact.compute(dataset).await,
    }
}

/// Build the strict-only artifacts of `dataset` into `cache` under `fingerprint`, `jobs` at a
/// time. Cache and transient source failures are errors; an artifact the profile does not publish is reported in
/// [`StrictPrecompute::refused`].
pub async fn build(
    dataset: Arc<Dataset>,
    cache: &ArtifactCache,
    fingerprint: &str,
    config: &StrictConfig,
    jobs: usize,
) -> Result<StrictPrecompute, StrictPrecomputeError> {
    let list = artifact_list(&dataset, config);
    let results: Vec<(String, Result<Built, StrictPrecomputeError>)> =
        futures::stream::iter(list.into_iter().map(|artifact| {
            let dataset = dataset.clone();
            async move {
                let key = artifact.cache_key();
                let outcome = build_one(&dataset, cache, fingerprint, artifact).await;
                (key, outcome)
            }
        }))
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    let mut summary = StrictPrecompute::default();
    for (key, result) in results {
        match result? {
            Built::Present | Built::Put(PutOutcome::AlreadyPresent, _) => summary.skipped += 1,
            Built::Put(PutOutcome::Written, bytes) => {
                summary.written += 1;
                summary.bytes_written += bytes;
            }
            Built::Refused(reason) => summary.refused.push((key, reason)),
        }
    }
    summary.refused.sort();
    Ok(summary)
}

/// The outcome of one artifact.
enum Built {
    /// Already in the cache.
    Present,
    /// Written (or found written by a concurrent run), with its gzip size.
    Put(PutOutcome, u64),
    /// Not published for this atlas.
    Refused(String),
}

async fn build_one(
    dataset: &Dataset,
    cache: &ArtifactCache,
    fingerprint: &str,
    artifact: StrictArtifact,
) -> Result<Built, StrictPrecomputeError> {
    let key = artifact.cache_key();
    if cache.exists(fingerprint, &key).await? {
        return Ok(Built::Present);
    }
    let body = match compute(dataset, artifact).await {
        Ok(body) => body,
        Err(source) if source.is_transient() => {
            return Err(StrictPrecomputeError::Source {
                artifact: key,
                source,
            });
        }
        Err(e) => return Ok(Built::Refused(e.to_string())),
    };
    let gzipped = match tokio::task::spawn_blocking(move || gzip(&body)).await {
        Ok(gzipped) => gzipped,
        Err(e) => return Ok(Built::Refused(format!("compression task failed: {e}"))),
    };
    let len = gzipped.len() as u64;
    let content_type = if artifact.is_json() {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let outcome = cache.put(fingerprint, &key, gzipped, content_type).await?;
    Ok(Built::Put(outcome, len))
}
