//! The strict profile in the precompute plan (`crate::cache::plan`): the strict-only artifacts
//! written into the cache prefix next to the seed's, so a cold process answers every strict
//! request with one GET. Two phases, run after the gene pack's `index`:
//!
//! * `ranges` (plans for `--quantize` only) — one task per gene block of the pack: reads the
//!   block object, inflates each gene and writes the quantisation range of each gene
//!   (`strict/ranges/<b>.bin`, two little-endian f64 per gene: min, max). The ranges are those of
//!   the very bodies the seed serves (and a quantised gene is derived from), at any atlas size,
//!   spread over as many tasks as the pack.
//! * `strict` — one task per strict-only artifact ([`artifact_list`]): the documents (float32
//!   and, with `--quantize`, the quantised manifests: the var one from the `ranges` outputs),
//!   the edge weights, the uint16 edge indices of a 65 536-cell atlas and the quantised
//!   continuous obs payloads. A document derived from a seed artifact takes that artifact's
//!   body from the cache (one GET; the `artifacts` phase ran) or computes it.
//!
//! Everything the strict profile shares with the seed (points, float32 obs payloads and genes
//! through the gene-major pack, edges, vectors) is the seed's. Quantised genes are not stored:
//! each is one GET of the float32 gene in the pack, quantised on the fly. Like every task, a
//! strict task first checks whether its output exists and writes it whole, create-only; its
//! output does not depend on where or when it runs (`created_at` of the identity is the
//! source's modification time, as in the seed's identity), so a distributed run writes the
//! same bytes as a single process.

use std::io::Read;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::StrictArtifact;
use super::artifact::var_manifest;
use super::gene_ranges::ScanLimit;
use crate::cache::PutOutcome;
use crate::cache::gene_pack::{block_header_len, block_key, decode_block_header};
use crate::cache::gzip::gzip;
use crate::cache::plan::PhaseName;
use crate::cache::precompute::PrecomputeError;
use crate::cache::tasks::{TaskEnv, TaskOutcome, TaskReport};
use crate::dataset::{Dataset, DatasetError, FieldKind};
use crate::model::edges::IndexDtype;
use crate::model::quantize::{QuantBits, QuantRange};
use crate::model::weights::strict_index_dtype;
use crate::protocol::Artifact;

/// Range blocks read at once by the quantised var manifest's task.
const RANGE_READS: usize = 32;
/// Bytes per gene in a range block.
const RANGE_BYTES: usize = 16;

/// Cache key of the quantisation ranges of the genes of pack block `block`.
pub fn ranges_key(block: u64) -> String {
    format!("strict/ranges/{block}.bin")
}

/// Suffix of the cache object recording why a strict artifact is not published for an atlas
/// (its text is the reason).
pub const REFUSED_SUFFIX: &str = ".refused";

/// The strict-only artifacts of `dataset` for a deployment serving `quantize`, in plan order.
pub fn artifact_list(dataset: &Dataset, quantize: Option<QuantBits>) -> Vec<StrictArtifact> {
    let mut list = vec![
        StrictArtifact::Identity,
        StrictArtifact::ObsManifest(None),
        StrictArtifact::VarManifest(None),
    ];
    if let Some(bits) = quantize {
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

/// Run CPU work at the task's priority.
async fn cpu<R, F>(env: &TaskEnv, work: F) -> Result<R, PrecomputeError>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    crate::cache::background::run(env.priority, work)
        .await
        .ok_or_else(|| PrecomputeError::Worker("a CPU worker stopped".into()))
}

fn gunzip(gzipped: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn f32_values(body: &[u8]) -> Option<Vec<f32>> {
    body.len().is_multiple_of(4).then(|| {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

/// The range block of the gzip gene bodies of one pack block object.
fn encode_ranges(object: &[u8], offsets: &[u64]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(offsets.len().saturating_sub(1) * RANGE_BYTES);
    for (gene, w) in offsets.windows(2).enumerate() {
        let body = object
            .get(w[0] as usize..w[1] as usize)
            .ok_or_else(|| format!("gene {gene} of the block lies outside the object"))?;
        let values = gunzip(body)
            .ok()
            .as_deref()
            .and_then(f32_values)
            .ok_or_else(|| format!("gene {gene} of the block is not gzip float32"))?;
        let range = QuantRange::of(&values);
        out.extend_from_slice(&range.min.to_le_bytes());
        out.extend_from_slice(&range.max.to_le_bytes());
    }
    Ok(out)
}

fn decode_ranges(bytes: &[u8], count: usize) -> Option<Vec<QuantRange>> {
    (bytes.len() == count * RANGE_BYTES).then(|| {
        bytes
            .chunks_exact(RANGE_BYTES)
            .map(|c| {
                let (min, max) = c.split_at(8);
                QuantRange {
                    min: f64::from_le_bytes(min.try_into().unwrap_or([0; 8])),
                    max: f64::from_le_bytes(max.try_into().unwrap_or([0; 8])),
                }
            })
            .collect()
    })
}

/// Task `task` of the `ranges` phase: the quantisation ranges of the genes of pack block `task`.
pub async fn ranges_task(env: &TaskEnv, task: u64) -> Result<TaskReport, PrecomputeError> {
    let key = ranges_key(task);
    let mut report = TaskReport::new(PhaseName::Ranges, task, key.clone());
    let fp = &env.plan.fingerprint;
    report.requests += 1;
    if env.cache.exists(fp, &key).await? {
        return Ok(report);
    }
    let count = env.plan.gene_blocks().genes(task).count() as u64;
    let block = block_key(task);
    report.requests += 1;
    let object = env.cache.get(fp, &block).await?.ok_or_else(|| {
        PrecomputeError::Task(format!(
            "gene block {task} is missing: run every `pack` task before `ranges`"
        ))
    })?;
    report.bytes_read += object.len() as u64;
    let header_len = block_header_len(count) as usize;
    let header = object.get(..header_len).unwrap_or_default();
    let offsets = decode_block_header(header, count, object.len() as u64)?;
    let ranges = cpu(env, move || encode_ranges(&object, &offsets))
        .await?
        .map_err(|e| PrecomputeError::Task(format!("{block}: {e}")))?;
    let len = ranges.len() as u64;
    report.requests += 1;
    if env
        .cache
        .put_plain(fp, &key, Bytes::from(ranges), "application/octet-stream")
        .await?
        == PutOutcome::Written
    {
        report.outcome = TaskOutcome::Written;
        report.bytes_written = len;
    }
    Ok(report)
}

/// Every gene's quantisation range, from the `ranges` phase's outputs.
async fn gene_ranges(
    env: &TaskEnv,
    report: &mut TaskReport,
) -> Result<Vec<QuantRange>, PrecomputeError> {
    let blocks = env.plan.gene_blocks();
    let fp = &env.plan.fingerprint;
    let cache = &env.cache;
    let per_block: Vec<Vec<QuantRange>> = futures::stream::iter(0..blocks.count())
        .map(|b| async move {
            let count = blocks.genes(b).count();
            let bytes = cache.get(fp, &ranges_key(b)).await?.ok_or_else(|| {
                PrecomputeError::Task(format!(
                    "the ranges of gene block {b} are missing: run every `ranges` task before \
                     `strict`"
                ))
            })?;
            decode_ranges(&bytes, count).ok_or_else(|| {
                PrecomputeError::Task(format!(
                    "`{}` holds {} bytes, not {} for {count} genes",
                    ranges_key(b),
                    bytes.len(),
                    count * RANGE_BYTES
                ))
            })
        })
        .buffered(RANGE_READS)
        .try_collect()
        .await?;
    report.requests += per_block.len() as u64;
    Ok(per_block.into_iter().flatten().collect())
}

/// The uncompressed body of seed artifact `source`: from the cache when the `artifacts` phase
/// stored it (one GET), else computed (same bytes either way).
async fn source_body(
    env: &TaskEnv,
    source: &Artifact,
    report: &mut TaskReport,
) -> Result<Result<Bytes, DatasetError>, PrecomputeError> {
    report.requests += 1;
    match env
        .cache
        .get(&env.plan.fingerprint, &source.cache_key())
        .await?
    {
        Some(gzipped) => {
            report.bytes_read += gzipped.len() as u64;
            let key = source.cache_key();
            let body = cpu(env, move || gunzip(&gzipped)).await?.map_err(|e| {
                PrecomputeError::Task(format!("the cached `{key}` is not valid gzip: {e}"))
            })?;
            Ok(Ok(Bytes::from(body)))
        }
        None => Ok(Box::pin(source.compute(&env.dataset)).await),
    }
}

/// The body of strict artifact `artifact` (the outer error: the cache or a missing input; the
/// inner one: what computing it gave).
async fn strict_body(
    env: &TaskEnv,
    artifact: StrictArtifact,
    report: &mut TaskReport,
) -> Result<Result<Bytes, DatasetError>, PrecomputeError> {
    let dataset = &env.dataset;
    Ok(match (artifact, artifact.source()) {
        (StrictArtifact::Identity, _) => match artifact.compute(dataset).await {
            // The source's modification time, like the seed identity in the cache.
            Ok(body) => {
                let created = crate::cache::stable::source_modified(dataset).await;
                let created = crate::cache::stable::format_time(created);
                Ok(crate::cache::stable::with_created_at(&body, &created))
            }
            Err(e) => Err(e),
        },
        (StrictArtifact::VarManifest(Some(bits)), Some(source)) => {
            let ranges = gene_ranges(env, report).await?;
            match source_body(env, &source, report).await? {
                Ok(seed) => var_manifest(seed, Some((bits, ranges))).await,
                Err(e) => Err(e),
            }
        }
        (_, Some(source)) => match source_body(env, &source, report).await? {
            Ok(body) => artifact.derive(dataset, body, ScanLimit::Unlimited).await,
            Err(e) => Err(e),
        },
        (_, None) => artifact.compute(dataset).await,
    })
}

/// Task `task` of the `strict` phase: one strict-only artifact.
pub async fn strict_task(env: &TaskEnv, task: u64) -> Result<TaskReport, PrecomputeError> {
    let key = env
        .plan
        .strict
        .get(task as usize)
        .cloned()
        .unwrap_or_default();
    let mut report = TaskReport::new(PhaseName::Strict, task, key.clone());
    let artifact = artifact_list(&env.dataset, env.plan.quantize())
        .into_iter()
        .nth(task as usize)
        .filter(|a| a.cache_key() == key)
        .ok_or_else(|| {
            PrecomputeError::Task(format!(
                "strict task {task} (`{key}`) does not match this atlas: was the plan made by \
                 another version?"
            ))
        })?;
    let fp = &env.plan.fingerprint;
    let refusal_key = format!("{key}{REFUSED_SUFFIX}");
    report.requests += 2;
    if env.cache.exists(fp, &key).await? {
        return Ok(report);
    }
    if env.cache.exists(fp, &refusal_key).await? {
        report.outcome = TaskOutcome::Refused;
        report.reason = Some(format!("refused by an earlier run (`{refusal_key}`)"));
        return Ok(report);
    }
    let body = match strict_body(env, artifact, &mut report).await? {
        Ok(body) => body,
        // What the strict profile does not publish for this atlas (e.g. a graph without a
        // strict form) is answered 404 at request time: recorded, not retried — the reason is
        // stored beside the artifact's key, so a later run (a restarted server's warm-up)
        // does not compute it again. A buffer over this run's memory budget fails the run
        // instead (see `cache::tasks`).
        Err(e) if !e.is_transient() && e.class() != crate::dataset::ErrorClass::TooLarge => {
            let reason = e.to_string();
            report.requests += 1;
            env.cache
                .put_plain(
                    fp,
                    &refusal_key,
                    bytes::Bytes::from(reason.clone().into_bytes()),
                    "text/plain",
                )
                .await?;
            report.outcome = TaskOutcome::Refused;
            report.reason = Some(reason);
            return Ok(report);
        }
        Err(source) => {
            return Err(PrecomputeError::Compute {
                artifact: key,
                source: Box::new(source),
            });
        }
    };
    let gzipped = cpu(env, move || gzip(&body)).await?;
    let len = gzipped.len() as u64;
    report.requests += 1;
    if env
        .cache
        .put(
            fp,
            &key,
            gzipped,
            Artifact::Strict(artifact).kind().content_type(),
        )
        .await?
        == PutOutcome::Written
    {
        report.outcome = TaskOutcome::Written;
        report.bytes_written = len;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_blocks_round_trip() {
        let genes: [&[f32]; 3] = [&[0.0, 2.5, f32::NAN], &[1.0, 1.0], &[f32::INFINITY]];
        let bodies: Vec<Bytes> = genes
            .iter()
            .map(|v| gzip(&crate::cache::gzip::f32_le_bytes(v)))
            .collect();
        let object = crate::cache::gene_pack::encode_block(&bodies);
        let offsets = decode_block_header(&object[..32], 3, object.len() as u64).expect("header");
        let encoded = encode_ranges(&object, &offsets).expect("ranges");
        let ranges = decode_ranges(&encoded, 3).expect("decoded");
        assert_eq!(ranges[0], QuantRange { min: 0.0, max: 2.5 });
        assert_eq!(ranges[1], QuantRange { min: 1.0, max: 2.0 });
        assert_eq!(ranges[2], QuantRange { min: 0.0, max: 1.0 });
        assert!(decode_ranges(&encoded, 2).is_none());
        // Flip the last byte (the trailer's length of the last gene): no longer valid gzip.
        let mut broken = object.to_vec();
        if let Some(last) = broken.last_mut() {
            *last ^= 0xff;
        }
        assert!(encode_ranges(&broken, &offsets).is_err());
    }
}
