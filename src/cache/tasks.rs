//! The tasks of a plan. Every task is idempotent (it first checks whether its output exists),
//! writes only create-only objects that are complete when they appear (one PUT each), and can
//! be killed at any point and run again: a later run finds nothing or finds the whole output.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;
use serde::Serialize;

use super::gene_pack::{
    GeneBlocks, GenePack, PACK_INDEX, block_header_len, block_key, decode_block_header,
    encode_block,
};
use super::gzip::{f32_le_bytes, gzip};
use super::plan::{PhaseName, Plan, read_indptr};
use super::precompute::{PrecomputeError, artifact_list};
use super::scratch::Scratch;
use super::shard::{Group, build_shard, group_bounds_range, parse_group_bounds, shard_key};
use super::{ArtifactCache, PutOutcome};
use crate::anndata::{MatrixMeta, Numbers};
use crate::dataset::{Dataset, ErrorClass};
use crate::protocol::Artifact;

/// Shard reads in flight per pack task.
const SHARD_READS: usize = 16;
/// Block headers read at once by the index task.
const HEADER_READS: usize = 32;

/// What a task needs: the atlas, the cache, the scratch and the plan.
#[derive(Debug, Clone)]
pub struct TaskEnv {
    /// The opened atlas.
    pub dataset: Arc<Dataset>,
    /// The cache prefix.
    pub cache: ArtifactCache,
    /// Scratch of the run (shards).
    pub scratch: Scratch,
    /// The plan.
    pub plan: Arc<Plan>,
    /// Priority of the tasks' CPU work (background while a server answers requests).
    pub priority: super::background::Priority,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    /// The task wrote its output.
    Written,
    /// The output was already there (a repeated task): nothing was done.
    AlreadyDone,
    /// The reference refuses this artifact for this atlas (answered with the same error at
    /// request time); nothing is stored.
    Refused,
}

/// What one task did (the Lambda returns it; `precompute` sums it).
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    /// Phase.
    pub phase: PhaseName,
    /// Task index in the phase.
    pub task: u64,
    /// Outcome.
    pub outcome: TaskOutcome,
    /// What was built (artifact key, shard or block).
    pub output: String,
    /// Bytes this task wrote (cache and scratch).
    pub bytes_written: u64,
    /// Bytes this task read from the scratch and the cache (source reads are metered apart).
    pub bytes_read: u64,
    /// Requests to the scratch and the cache.
    pub requests: u64,
    /// Why a refused artifact is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall time of the task.
    pub seconds: f64,
}

impl TaskReport {
    /// The report of a task that has not written anything yet.
    pub(crate) fn new(phase: PhaseName, task: u64, output: String) -> Self {
        TaskReport {
            phase,
            task,
            outcome: TaskOutcome::AlreadyDone,
            output,
            bytes_written: 0,
            bytes_read: 0,
            requests: 0,
            reason: None,
            seconds: 0.0,
        }
    }
}

/// Run task `task` of phase `phase`.
pub async fn run_task(
    env: &TaskEnv,
    phase: PhaseName,
    task: u64,
) -> Result<TaskReport, PrecomputeError> {
    if env.priority == super::background::Priority::Background {
        // A background build yields to the requests a server is answering.
        super::background::until_no_requests().await;
    }
    let started = Instant::now();
    let tasks = env.plan.phase(phase).map(|p| p.tasks).ok_or_else(|| {
        PrecomputeError::Task(format!("the plan has no `{phase}` phase for this atlas"))
    })?;
    if task >= tasks {
        return Err(PrecomputeError::Task(format!(
            "phase `{phase}` has {tasks} tasks (0..{tasks}); there is no task {task}"
        )));
    }
    let mut report = match phase {
        PhaseName::Artifacts => artifact_task(env, task).await?,
        PhaseName::Transpose => transpose_task(env, task).await?,
        PhaseName::Pack => pack_task(env, task).await?,
        PhaseName::Index => index_task(env).await?,
        // The strict profile's phases (#14).
        PhaseName::Ranges => crate::protocol::strict::precompute::ranges_task(env, task).await?,
        PhaseName::Strict => crate::protocol::strict::precompute::strict_task(env, task).await?,
        PhaseName::Cleanup => cleanup_task(env).await?,
    };
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Run CPU work at the environment's priority.
async fn cpu<R, F>(env: &TaskEnv, work: F) -> Result<R, PrecomputeError>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    super::background::run(env.priority, work)
        .await
        .ok_or_else(|| PrecomputeError::Worker("a CPU worker stopped".into()))
}

async fn artifact_task(env: &TaskEnv, task: u64) -> Result<TaskReport, PrecomputeError> {
    let key = env
        .plan
        .artifacts
        .get(task as usize)
        .cloned()
        .unwrap_or_default();
    let mut report = TaskReport::new(PhaseName::Artifacts, task, key.clone());
    let artifact = artifact_list(&env.dataset)
        .into_iter()
        .nth(task as usize)
        .filter(|a| a.cache_key() == key)
        .ok_or_else(|| {
            PrecomputeError::Task(format!(
                "artifact task {task} (`{key}`) does not match this atlas: was the plan made by \
                 another version?"
            ))
        })?;
    let fp = &env.plan.fingerprint;
    report.requests += 1;
    if env.cache.exists(fp, &key).await? {
        return Ok(report);
    }
    let body = match artifact.compute(&env.dataset).await {
        Ok(body) => body,
        // A deterministic failure (the reference's rules, a missing field, a malformed
        // column) is what a request would be answered with too: recorded, not retried. A
        // buffer over this run's memory budget is not the atlas's fault: the run fails (raise
        // `--memory-mb` / `CELLUCID_MEMORY_CACHE_BYTES`) instead of leaving the artifact out.
        Err(e) if !e.is_transient() && e.class() != ErrorClass::TooLarge => {
            report.outcome = TaskOutcome::Refused;
            report.reason = Some(e.to_string());
            return Ok(report);
        }
        Err(source) => {
            return Err(PrecomputeError::Compute {
                artifact: key,
                source: Box::new(source),
            });
        }
    };
    let body = if artifact == Artifact::Identity {
        let created = super::stable::source_modified(&env.dataset).await;
        super::stable::with_created_at(&body, &super::stable::format_time(created))
    } else {
        body
    };
    let gzipped = cpu(env, move || gzip(&body)).await?;
    let len = gzipped.len() as u64;
    report.requests += 1;
    if env
        .cache
        .put(fp, &key, gzipped, artifact.kind().content_type())
        .await?
        == PutOutcome::Written
    {
        report.outcome = TaskOutcome::Written;
        report.bytes_written = len;
    }
    Ok(report)
}

async fn transpose_task(env: &TaskEnv, task: u64) -> Result<TaskReport, PrecomputeError> {
    let key = shard_key(task);
    let mut report = TaskReport::new(PhaseName::Transpose, task, key.clone());
    let MatrixMeta::Csr(meta) = &env.dataset.layout().x else {
        return Err(PrecomputeError::Task(
            "X is not CSR: nothing to transpose".into(),
        ));
    };
    let rows = env
        .plan
        .row_block(task)
        .ok_or_else(|| PrecomputeError::Task(format!("no row block {task} in the plan")))?;
    report.requests += 2;
    if env.cache.exists(&env.plan.fingerprint, PACK_INDEX).await?
        || env.scratch.exists(&key).await?
    {
        return Ok(report);
    }
    let indptr = read_indptr(
        &env.dataset,
        &meta.key,
        env.dataset.n_cells(),
        meta.nnz,
        Some(rows.clone()),
    )
    .await?;
    let (first, last) = (indptr[0], indptr[indptr.len() - 1]);
    let store = env.dataset.store();
    let invalid = |e: crate::anndata::AnnDataError| PrecomputeError::InvalidX(e.to_string());
    let (indices, data) = if first == last {
        (Numbers::I64(Vec::new()), Numbers::F32(Vec::new()))
    } else {
        let indices = store
            .array(&format!("{}/indices", meta.key), "sparse indices")
            .await
            .map_err(invalid)?;
        let data = store
            .array(&format!("{}/data", meta.key), "sparse data")
            .await
            .map_err(invalid)?;
        futures::try_join!(
            indices.read_numbers(Some(first..last)),
            data.read_numbers(Some(first..last))
        )
        .map_err(invalid)?
    };
    let blocks = env.plan.gene_blocks();
    let shard = cpu(env, move || {
        let values = data.into_f32();
        macro_rules! shard {
            ($genes:expr) => {
                build_shard(blocks, rows, &indptr, $genes, &values)
                    .map_err(PrecomputeError::InvalidX)
            };
        }
        match &indices {
            Numbers::I32(v) => shard!(v),
            Numbers::I64(v) => shard!(v),
            Numbers::U32(v) => shard!(v),
            Numbers::U64(v) => shard!(v),
            Numbers::I16(v) => shard!(v),
            Numbers::U16(v) => shard!(v),
            Numbers::I8(v) => shard!(v),
            Numbers::U8(v) => shard!(v),
            _ => Err(PrecomputeError::InvalidX(
                "X's column indices are not integers".into(),
            )),
        }
    })
    .await??;
    let len = shard.len() as u64;
    report.requests += 1;
    if env.scratch.put(&key, shard).await? == PutOutcome::Written {
        report.outcome = TaskOutcome::Written;
        report.bytes_written = len;
    }
    Ok(report)
}

async fn pack_task(env: &TaskEnv, task: u64) -> Result<TaskReport, PrecomputeError> {
    let key = block_key(task);
    let mut report = TaskReport::new(PhaseName::Pack, task, key.clone());
    let fp = &env.plan.fingerprint;
    report.requests += 1;
    if env.cache.exists(fp, &key).await? {
        return Ok(report);
    }
    let blocks = env.plan.gene_blocks();
    let object = match &env.dataset.layout().x {
        MatrixMeta::Csr(_) => pack_from_shards(env, blocks, task, &mut report).await?,
        _ => pack_from_columns(env, blocks, task).await?,
    };
    let len = object.len() as u64;
    report.requests += 1;
    if env
        .cache
        .put_plain(fp, &key, Bytes::from(object), "application/octet-stream")
        .await?
        == PutOutcome::Written
    {
        report.outcome = TaskOutcome::Written;
        report.bytes_written = len;
    }
    Ok(report)
}

/// Gather block `block`'s group from every shard, then densify and gzip its genes.
async fn pack_from_shards(
    env: &TaskEnv,
    blocks: GeneBlocks,
    block: u64,
    report: &mut TaskReport,
) -> Result<Vec<u8>, PrecomputeError> {
    let scratch = &env.scratch;
    let groups: Vec<Bytes> = futures::stream::iter(0..env.plan.n_row_blocks())
        .map(|shard| async move {
            let key = shard_key(shard);
            let bounds = scratch.get_range(&key, group_bounds_range(block)).await?;
            let range = parse_group_bounds(&bounds)
                .map_err(|e| PrecomputeError::InvalidX(format!("{key}: {e}")))?;
            Ok::<_, PrecomputeError>(scratch.get_range(&key, range).await?)
        })
        .buffered(SHARD_READS)
        .try_collect()
        .await?;
    report.requests += 2 * groups.len() as u64;
    report.bytes_read += groups.iter().map(|g| g.len() as u64 + 16).sum::<u64>();
    let n_cells = env.dataset.n_cells() as usize;
    let width = blocks.genes(block).count();
    cpu(env, move || densify_and_gzip(&groups, width, n_cells)).await?
}

/// The block object of `width` genes from each shard's group (in row-block order).
fn densify_and_gzip(
    groups: &[Bytes],
    width: usize,
    n_cells: usize,
) -> Result<Vec<u8>, PrecomputeError> {
    let parsed: Vec<Group<'_>> = groups
        .iter()
        .map(|g| Group::parse(g, width))
        .collect::<Result<_, _>>()
        .map_err(PrecomputeError::InvalidX)?;
    // Per shard, the (rows, value bits) slices of each gene of the block.
    let per_gene: Vec<Vec<(&[u32], &[u32])>> = {
        let mut per_gene: Vec<Vec<(&[u32], &[u32])>> = vec![Vec::new(); width];
        for group in &parsed {
            for (j, slices) in group.genes().enumerate() {
                per_gene[j].push(slices);
            }
        }
        per_gene
    };
    let bodies: Vec<Bytes> = per_gene
        .par_iter()
        .map_init(
            || vec![0f32; n_cells],
            |dense, slices| {
                for (rows, bits) in slices {
                    for (&row, &value) in rows.iter().zip(bits.iter()) {
                        let slot = dense.get_mut(row as usize).ok_or_else(|| {
                            PrecomputeError::InvalidX(format!(
                                "a shard row {row} is outside the {n_cells} cells"
                            ))
                        })?;
                        *slot += f32::from_bits(value);
                    }
                }
                let body = gzip(&f32_le_bytes(dense));
                for (rows, _) in slices {
                    for &row in rows.iter() {
                        dense[row as usize] = 0.0;
                    }
                }
                Ok(body)
            },
        )
        .collect::<Result<_, PrecomputeError>>()?;
    Ok(encode_block(&bodies))
}

/// A block of a CSC, dense or absent X: one column read per gene.
async fn pack_from_columns(
    env: &TaskEnv,
    blocks: GeneBlocks,
    block: u64,
) -> Result<Vec<u8>, PrecomputeError> {
    let dataset = &env.dataset;
    let n_cells = dataset.n_cells();
    let bodies: Vec<Bytes> = futures::stream::iter(blocks.genes(block))
        .map(|gene| async move {
            let column = dataset
                .store()
                .read_gene_column(&dataset.layout().x, n_cells, gene)
                .await
                .map_err(|e| PrecomputeError::InvalidX(e.to_string()))?;
            cpu(env, move || gzip(&f32_le_bytes(&column))).await
        })
        .buffered(2)
        .try_collect()
        .await?;
    Ok(encode_block(&bodies))
}

async fn index_task(env: &TaskEnv) -> Result<TaskReport, PrecomputeError> {
    let mut report = TaskReport::new(PhaseName::Index, 0, PACK_INDEX.to_string());
    let fp = &env.plan.fingerprint;
    report.requests += 1;
    if env.cache.exists(fp, PACK_INDEX).await? {
        return Ok(report);
    }
    let blocks = env.plan.gene_blocks();
    let cache = &env.cache;
    let per_block: Vec<Vec<u64>> = futures::stream::iter(0..blocks.count())
        .map(|b| async move {
            let count = blocks.genes(b).count() as u64;
            let key = block_key(b);
            let (header, object_len) = cache
                .get_head_range(fp, &key, 0..block_header_len(count))
                .await?
                .ok_or_else(|| {
                    PrecomputeError::Task(format!(
                        "gene block {b} is missing: run every `pack` task before `index`"
                    ))
                })?;
            Ok::<_, PrecomputeError>(decode_block_header(&header, count, object_len)?)
        })
        .buffered(HEADER_READS)
        .try_collect()
        .await?;
    report.requests += per_block.len() as u64;
    let pack = GenePack::from_blocks(blocks, per_block)?;
    let index = pack.encode();
    let len = index.len() as u64;
    report.requests += 1;
    if cache
        .put_plain(
            fp,
            PACK_INDEX,
            Bytes::from(index),
            "application/octet-stream",
        )
        .await?
        == PutOutcome::Written
    {
        report.outcome = TaskOutcome::Written;
        report.bytes_written = len;
    }
    Ok(report)
}

async fn cleanup_task(env: &TaskEnv) -> Result<TaskReport, PrecomputeError> {
    let mut report = TaskReport::new(PhaseName::Cleanup, 0, env.scratch.display().to_string());
    let deleted = env.scratch.clear().await?;
    report.requests += deleted + 1;
    if deleted > 0 {
        report.outcome = TaskOutcome::Written;
    }
    Ok(report)
}
