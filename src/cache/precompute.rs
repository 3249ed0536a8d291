//! `precompute`: build every artifact of an atlas into the cache prefix, and the gene-major
//! pack of X, so a cold stateless process answers any request with one GET.
//!
//! Phases (each with its own progress bar):
//! 1. **artifacts** — the four JSON documents, points, obs codes/values/outliers, edges and
//!    vectors, computed in parallel (`jobs` at a time) and written create-only; an artifact
//!    already in the cache is skipped (resumable, idempotent).
//! 2. **genes** — skipped when the pack index exists. For CSR X the pack is built out of core
//!    (see [`super::gene_spill`]): X is streamed in row blocks and bucketed into per-gene-block
//!    spill files on local disk, then each gene block is densified, gzip-compressed gene by
//!    gene and appended to the pack in gene order. Memory is bounded by the row block and
//!    `jobs` gene blocks, never by X. CSC, dense and absent X are read one column at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::gene_spill::{SpillPlan, bucket_rows, densify_block};
use super::{ArtifactCache, GenePackError, GenePackWriter, PACK_INDEX, PutOutcome};
use crate::anndata::MatrixMeta;
use crate::dataset::{Dataset, DatasetError, FieldKind};
use crate::http::encoding::gzip;
use crate::protocol::Artifact;

/// Settings of a precompute run.
#[derive(Debug, Clone)]
pub struct PrecomputeOptions {
    /// Artifacts / gene blocks processed at once.
    pub jobs: usize,
    /// Memory for dense gene blocks, shared by the `jobs` workers (bytes).
    pub memory_budget: u64,
    /// Stored values of X read per row block while bucketing CSR X.
    pub row_block_nnz: u64,
    /// Directory of the temporary spill files (removed when done).
    pub spill_dir: PathBuf,
    /// The strict profile's settings (#14): which strict-only artifacts to build.
    pub strict: crate::protocol::strict::StrictConfig,
}

impl Default for PrecomputeOptions {
    fn default() -> Self {
        PrecomputeOptions {
            jobs: 2,
            memory_budget: 512 << 20,
            row_block_nnz: 4 << 20,
            spill_dir: std::env::temp_dir(),
            strict: crate::protocol::strict::StrictConfig::default(),
        }
    }
}

/// Why a precompute run failed.
#[derive(Debug, thiserror::Error)]
pub enum PrecomputeError {
    /// An artifact could not be computed from the source.
    #[error("computing `{artifact}`: {source}")]
    Compute {
        /// Cache key of the artifact.
        artifact: String,
        /// Cause.
        #[source]
        source: DatasetError,
    },
    /// The cache could not be written.
    #[error("writing the cache: {0}")]
    Cache(#[from] super::CacheError),
    /// The gene pack could not be built.
    #[error(transparent)]
    GenePack(#[from] GenePackError),
    /// Spill files on local disk.
    #[error("spill files in `{dir}`: {source}")]
    Spill {
        /// Spill directory.
        dir: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The source matrix is malformed.
    #[error("X is invalid: {0}")]
    InvalidX(String),
    /// A worker task died.
    #[error("a precompute worker failed: {0}")]
    Worker(String),
    /// The strict profile's artifacts could not be built (#14).
    #[error(transparent)]
    Strict(#[from] crate::protocol::strict::precompute::StrictPrecomputeError),
}

/// What one run did.
#[derive(Debug, Default, Clone)]
pub struct PrecomputeSummary {
    /// Artifacts written by this run.
    pub written: u64,
    /// Artifacts already present (skipped).
    pub skipped: u64,
    /// Artifacts the reference itself refuses for this atlas (e.g. too many categories),
    /// with the reason; they are answered with the same error at request time.
    pub refused: Vec<(String, String)>,
    /// Gzip bytes written to the cache (artifacts + gene pack).
    pub bytes_written: u64,
    /// Genes in the pack (0 when the pack already existed).
    pub genes_packed: u64,
    /// Whether the gene pack already existed.
    pub gene_pack_existed: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Every artifact the atlas serves besides genes, in the viewer's order.
pub fn artifact_list(dataset: &Dataset) -> Vec<Artifact> {
    let mut list = vec![
        Artifact::Identity,
        Artifact::ObsManifest,
        Artifact::VarManifest,
    ];
    if dataset.has_connectivity() {
        list.push(Artifact::ConnectivityManifest);
    }
    for &dim in &dataset.umap().available_dimensions {
        list.push(Artifact::Points(dim));
    }
    for (i, field) in dataset.obs_fields().iter().enumerate() {
        match field.kind {
            FieldKind::Category => {
                list.push(Artifact::ObsCodes(i));
                list.push(Artifact::ObsOutliers(i));
            }
            FieldKind::Continuous => list.push(Artifact::ObsValues(i)),
        }
    }
    if dataset.has_connectivity() {
        list.push(Artifact::EdgesSrc);
        list.push(Artifact::EdgesDst);
    }
    if let Some(vectors) = dataset.vector_fields() {
        for field in &vectors.fields {
            for &dim in &field.available_dimensions {
                list.push(Artifact::Vectors(field.id.clone(), dim));
            }
        }
    }
    list
}

fn bar(multi: &MultiProgress, len: u64, phase: &str, unit: &str) -> ProgressBar {
    let bar = multi.add(ProgressBar::new(len));
    let template = format!(
        "{{prefix:>10}} [{{elapsed_precise}}] {{bar:32}} {{pos}}/{{len}} {unit} ({{eta}}) {{msg}}"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.set_prefix(phase.to_string());
    bar
}

/// Build every artifact of `dataset` into `cache` under `fingerprint`.
pub async fn precompute(
    dataset: Arc<Dataset>,
    cache: &ArtifactCache,
    fingerprint: &str,
    options: &PrecomputeOptions,
    progress: &MultiProgress,
) -> Result<PrecomputeSummary, PrecomputeError> {
    let started = Instant::now();
    let jobs = options.jobs.max(1);
    let mut summary = PrecomputeSummary::default();

    // Phase 1: artifacts.
    let artifacts = artifact_list(&dataset);
    let pb = bar(progress, artifacts.len() as u64, "artifacts", "artifacts");
    let written = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let results: Vec<(String, Result<PutOutcome, String>)> =
        futures::stream::iter(artifacts.into_iter().map(|artifact| {
            let dataset = dataset.clone();
            let pb = pb.clone();
            let (written, bytes) = (&written, &bytes);
            async move {
                let key = artifact.cache_key();
                let outcome =
                    build_artifact(&dataset, cache, fingerprint, &artifact, written, bytes).await;
                pb.inc(1);
                pb.set_message(key.clone());
                (key, outcome)
            }
        }))
        .buffer_unordered(jobs)
        .collect()
        .await;
    pb.finish_with_message("done");
    for (key, result) in results {
        match result {
            Ok(PutOutcome::Written) => {}
            Ok(PutOutcome::AlreadyPresent) => summary.skipped += 1,
            Err(reason) => summary.refused.push((key, reason)),
        }
    }
    summary.written = written.load(Ordering::Relaxed);
    summary.bytes_written = bytes.load(Ordering::Relaxed);

    // Phase 1b — strict profile hook (#14): the strict-only documents, weights and quantised
    // obs payloads (everything else the strict profile serves is the seed's, built above).
    let strict = crate::protocol::strict::precompute::build(
        dataset.clone(),
        cache,
        fingerprint,
        &options.strict,
        jobs,
    )
    .await?;
    summary.written += strict.written;
    summary.skipped += strict.skipped;
    summary.bytes_written += strict.bytes_written;
    summary.refused.extend(strict.refused);

    // Phase 2: the gene-major pack.
    if cache.exists(fingerprint, PACK_INDEX).await? {
        summary.gene_pack_existed = true;
        summary.skipped += 1;
    } else {
        let packed = build_gene_pack(&dataset, cache, fingerprint, options, progress).await?;
        summary.genes_packed = dataset.n_genes();
        summary.bytes_written += packed;
        summary.written += 1;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Build only the gene-major pack of `dataset` (no progress display), unless it exists; `true`
/// when this call wrote it. Used by a server that memoises a small CSR X on first use instead
/// of scanning X for every gene (see `AppConfig::gene_pack_on_demand`).
pub async fn build_gene_pack_on_demand(
    dataset: Arc<Dataset>,
    cache: &ArtifactCache,
    fingerprint: &str,
    options: &PrecomputeOptions,
) -> Result<bool, PrecomputeError> {
    if cache.exists(fingerprint, PACK_INDEX).await? {
        return Ok(false);
    }
    let hidden = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    build_gene_pack(&dataset, cache, fingerprint, options, &hidden).await?;
    Ok(true)
}

/// Compute, gzip and store one artifact unless present. A refusal by the reference's rules
/// (a 4xx at request time) is reported, not fatal; store failures are errors.
async fn build_artifact(
    dataset: &Dataset,
    cache: &ArtifactCache,
    fingerprint: &str,
    artifact: &Artifact,
    written: &AtomicU64,
    bytes: &AtomicU64,
) -> Result<PutOutcome, String> {
    let key = artifact.cache_key();
    match cache.exists(fingerprint, &key).await {
        Ok(true) => return Ok(PutOutcome::AlreadyPresent),
        Ok(false) => {}
        Err(e) => return Err(e.to_string()),
    }
    let body = artifact.compute(dataset).await.map_err(|e| e.to_string())?;
    let gzipped = tokio::task::spawn_blocking(move || gzip(&body))
        .await
        .map_err(|e| e.to_string())?;
    let len = gzipped.len() as u64;
    let outcome = cache
        .put(fingerprint, &key, gzipped, artifact.kind().content_type())
        .await
        .map_err(|e| e.to_string())?;
    if outcome == PutOutcome::Written {
        written.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(len, Ordering::Relaxed);
    }
    Ok(outcome)
}

/// Build the gene pack; returns the packed bytes.
async fn build_gene_pack(
    dataset: &Arc<Dataset>,
    cache: &ArtifactCache,
    fingerprint: &str,
    options: &PrecomputeOptions,
    progress: &MultiProgress,
) -> Result<u64, PrecomputeError> {
    let n_genes = dataset.n_genes();
    let jobs = options.jobs.max(1);
    let mut writer = GenePackWriter::new(cache, fingerprint);
    match &dataset.layout().x {
        MatrixMeta::Csr(meta) => {
            let plan = SpillPlan::new(
                dataset.n_cells(),
                n_genes,
                options.memory_budget / jobs as u64,
                &options.spill_dir,
            )
            .map_err(|source| PrecomputeError::Spill {
                dir: options.spill_dir.display().to_string(),
                source,
            })?;
            tracing::info!(
                target: "cellucid_edge::precompute",
                genes_per_block = plan.genes_per_block(),
                blocks = plan.n_blocks(),
                "bucketing CSR X ({} stored values) into gene blocks",
                meta.nnz
            );
            let pb = bar(progress, meta.nnz, "bucket X", "values");
            bucket_rows(
                dataset.store(),
                meta,
                &plan,
                options.row_block_nnz,
                jobs,
                &pb,
            )
            .await?;
            pb.finish_with_message("done");
            let pb = bar(progress, n_genes, "genes", "genes");
            let plan = Arc::new(plan);
            let mut blocks = futures::stream::iter(0..plan.n_blocks())
                .map(|block| {
                    let plan = plan.clone();
                    tokio::task::spawn_blocking(move || densify_block(&plan, block))
                })
                .buffered(jobs);
            while let Some(joined) = blocks.next().await {
                let gzipped = joined.map_err(|e| PrecomputeError::Worker(e.to_string()))??;
                for body in gzipped {
                    writer.push(&body).await?;
                    pb.inc(1);
                }
            }
            pb.finish_with_message("done");
        }
        _ => {
            // CSC, dense or absent X: a column is one bounded read.
            let pb = bar(progress, n_genes, "genes", "genes");
            let mut columns = futures::stream::iter(0..n_genes as usize)
                .map(|gene| {
                    let dataset = dataset.clone();
                    async move {
                        let body = dataset.gene_values(gene).await.map_err(|source| {
                            PrecomputeError::Compute {
                                artifact: format!("var/{gene}.values.f32"),
                                source,
                            }
                        })?;
                        tokio::task::spawn_blocking(move || gzip(&body))
                            .await
                            .map_err(|e| PrecomputeError::Worker(e.to_string()))
                    }
                })
                .buffered(jobs);
            while let Some(body) = columns.try_next().await? {
                writer.push(&body).await?;
                pb.inc(1);
            }
            pb.finish_with_message("done");
        }
    }
    Ok(writer.finish(cache, fingerprint).await?)
}
