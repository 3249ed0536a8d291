//! `precompute`: build every artifact of an atlas into the cache prefix, and the gene-major
//! pack of X, so a cold stateless process answers any request with one GET.
//!
//! The work is a [`Plan`] of phases and tasks (see [`super::plan`]); [`precompute`] runs that
//! same plan in one process, `jobs` tasks at a time, with its scratch shards in a private local
//! directory. Tasks run one by one elsewhere (`precompute --phase P --task I`, the
//! precompute-task Lambda) write exactly the same cache objects.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::gene_pack::{GenePackError, PACK_INDEX, block_key};
use super::plan::{PhaseName, Plan, PlanArtifacts, PlanError, PlanLimits, make_plan, plan_key};
use super::scratch::{Scratch, ScratchError};
use super::tasks::{TaskEnv, TaskOutcome, TaskReport, run_task};
use super::{ArtifactCache, CacheError, PutOutcome};
use crate::dataset::{Dataset, DatasetError, FieldKind};
use crate::model::quantize::QuantBits;
use crate::protocol::Artifact;
use crate::store::{ErrorClass, classify_object_store};

/// Settings of a run in one process (none but `strict` changes what is written).
#[derive(Debug, Clone)]
pub struct PrecomputeOptions {
    /// Tasks run at once.
    pub jobs: usize,
    /// Parent directory of the private scratch directory (removed when done).
    pub spill_dir: PathBuf,
    /// Block sizes of a plan made by this run (a stored plan is used as it is).
    pub limits: PlanLimits,
    /// Priority of the CPU work (background for builds a server runs while answering).
    pub priority: super::background::Priority,
    /// What the strict profile serves (#14). Unlike the settings above it changes what is
    /// written: with `quantize`, the plan (stored under its own key) also builds the quantised
    /// documents and payloads, see [`super::plan::plan_key`].
    pub strict: crate::protocol::strict::StrictConfig,
}

impl Default for PrecomputeOptions {
    fn default() -> Self {
        PrecomputeOptions {
            jobs: 2,
            spill_dir: std::env::temp_dir(),
            limits: PlanLimits::default(),
            priority: super::background::Priority::Normal,
            strict: crate::protocol::strict::StrictConfig::default(),
        }
    }
}

/// Why a precompute task or run failed.
#[derive(Debug, thiserror::Error)]
pub enum PrecomputeError {
    /// An artifact could not be computed from the source (a transient store failure).
    #[error("computing `{artifact}`: {source}")]
    Compute {
        /// Cache key of the artifact.
        artifact: String,
        /// Cause (boxed: a dataset error is large).
        #[source]
        source: Box<DatasetError>,
    },
    /// The cache could not be read or written.
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    /// The gene pack is inconsistent.
    #[error(transparent)]
    GenePack(#[from] GenePackError),
    /// The plan could not be made or loaded.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The scratch space failed.
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    /// The private scratch directory could not be made.
    #[error("scratch directory in `{dir}`: {source}")]
    ScratchDir {
        /// Parent directory.
        dir: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The source matrix (or a shard made from it) is malformed.
    #[error("X is invalid: {0}")]
    InvalidX(String),
    /// A task does not fit the plan or the atlas, or ran before its inputs existed.
    #[error("{0}")]
    Task(String),
    /// The atlas changed since the plan was made.
    #[error(
        "the plan is for fingerprint {planned} but the atlas now has {actual}: the source \
         changed; make a new plan"
    )]
    StaleFingerprint {
        /// Fingerprint of the plan.
        planned: String,
        /// Fingerprint of the opened atlas.
        actual: String,
    },
    /// A worker thread died.
    #[error("a precompute worker failed: {0}")]
    Worker(String),
}

impl PrecomputeError {
    /// What this failure means, on typed variants ([`ErrorClass`], the same classification
    /// the server answers clients with): the source's class for an artifact that could not be
    /// computed, the `object_store` class ([`classify_object_store`]) for the cache prefix and
    /// the scratch space, [`ErrorClass::Transient`] for a worker that died, and
    /// [`ErrorClass::BadStore`] / [`ErrorClass::Internal`] for inputs, plans and tasks that
    /// will fail the same way again. A cache store that refuses the function's credentials
    /// (`PermissionDenied`, `Unauthenticated`) is [`ErrorClass::Internal`]: permanent until
    /// someone fixes the IAM policy.
    pub fn class(&self) -> ErrorClass {
        match self {
            PrecomputeError::Compute { source, .. } => source.class(),
            PrecomputeError::Cache(CacheError::Store { source, .. })
            | PrecomputeError::GenePack(GenePackError::Cache(CacheError::Store {
                source, ..
            }))
            | PrecomputeError::Scratch(ScratchError { source, .. }) => {
                classify_object_store(source)
            }
            PrecomputeError::Worker(_) => ErrorClass::Transient,
            PrecomputeError::Cache(CacheError::Invalid { .. })
            | PrecomputeError::GenePack(GenePackError::Cache(CacheError::Invalid { .. }))
            | PrecomputeError::GenePack(GenePackError::Invalid(_))
            | PrecomputeError::InvalidX(_)
            | PrecomputeError::Plan(PlanError::InvalidX(_) | PlanError::Stored(_)) => {
                ErrorClass::BadStore
            }
            PrecomputeError::ScratchDir { .. }
            | PrecomputeError::Task(_)
            | PrecomputeError::StaleFingerprint { .. } => ErrorClass::Internal,
        }
    }

    /// Whether running the same task again may succeed (a store or cache that failed or
    /// throttled), as opposed to an input, a plan or credentials that will fail the same way:
    /// exactly [`ErrorClass::Transient`] of [`class`](Self::class). The precompute-task Lambda
    /// reports these as `cellucid.Transient`, the only error its state machine retries.
    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }
}

/// Totals of one phase of a run.
#[derive(Debug, Default, Clone)]
pub struct PhaseSummary {
    /// Tasks run.
    pub tasks: u64,
    /// Tasks that wrote their output.
    pub written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Whether the phase was skipped because its outputs were complete.
    pub skipped: bool,
}

/// What one run did.
#[derive(Debug, Default, Clone)]
pub struct PrecomputeSummary {
    /// Artifacts written by this run (the gene pack counts as one).
    pub written: u64,
    /// Artifacts already present (skipped).
    pub skipped: u64,
    /// Artifacts the reference itself refuses for this atlas (e.g. too many categories),
    /// with the reason; they are answered with the same error at request time.
    pub refused: Vec<(String, String)>,
    /// Bytes written to the cache (artifacts + gene pack).
    pub bytes_written: u64,
    /// Genes in the pack (0 when the pack already existed).
    pub genes_packed: u64,
    /// Whether the gene pack already existed.
    pub gene_pack_existed: bool,
    /// Per phase, in run order.
    pub phases: BTreeMap<usize, (PhaseName, PhaseSummary)>,
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

/// The plan of `dataset` for a deployment serving `quantize` under `/strict`: the one stored
/// in the cache under `fingerprint` (and [`plan_key`]`(quantize)`) if there is one, else a new
/// one, stored create-only (two planners racing store the same bytes; the loser uses the
/// winner's).
pub async fn load_or_make_plan(
    dataset: &Dataset,
    cache: &ArtifactCache,
    fingerprint: &str,
    limits: PlanLimits,
    quantize: Option<QuantBits>,
) -> Result<Plan, PrecomputeError> {
    if let Some(stored) = load_plan(cache, fingerprint, quantize).await? {
        return Ok(stored);
    }
    let artifacts = PlanArtifacts {
        seed: artifact_list(dataset)
            .iter()
            .map(Artifact::cache_key)
            .collect(),
        strict: crate::protocol::strict::precompute::artifact_list(dataset, quantize)
            .iter()
            .map(|a| a.cache_key())
            .collect(),
        quantize,
    };
    let plan = make_plan(dataset, fingerprint, artifacts, limits).await?;
    let body = bytes::Bytes::from(plan.to_json().into_bytes());
    if cache
        .put_plain(fingerprint, &plan_key(quantize), body, "application/json")
        .await?
        == PutOutcome::AlreadyPresent
        && let Some(stored) = load_plan(cache, fingerprint, quantize).await?
    {
        return Ok(stored);
    }
    Ok(plan)
}

/// The plan for `quantize` stored under `fingerprint`, if any.
pub async fn load_plan(
    cache: &ArtifactCache,
    fingerprint: &str,
    quantize: Option<QuantBits>,
) -> Result<Option<Plan>, PrecomputeError> {
    let key = plan_key(quantize);
    let Some(bytes) = cache.get(fingerprint, &key).await? else {
        return Ok(None);
    };
    let plan = Plan::from_json(&bytes)?;
    if plan.quantize() != quantize {
        return Err(PlanError::Stored(format!(
            "`{key}` is a plan for quantisation {:?}, not {quantize:?}",
            plan.quantize
        ))
        .into());
    }
    if plan.fingerprint != fingerprint {
        return Err(PrecomputeError::StaleFingerprint {
            planned: plan.fingerprint,
            actual: fingerprint.to_string(),
        });
    }
    Ok(Some(plan))
}

fn bar(multi: &MultiProgress, len: u64, phase: &str) -> ProgressBar {
    let bar = multi.add(ProgressBar::new(len));
    let template =
        "{prefix:>10} [{elapsed_precise}] {bar:32} {pos}/{len} tasks ({eta}) {msg}".to_string();
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.set_prefix(phase.to_string());
    bar
}

/// Whether the outputs of `phase` are all present, so its tasks need not run (and, for
/// `transpose`, no scratch shards are needed).
async fn phase_complete(
    env: &TaskEnv,
    phase: PhaseName,
    pack_done: bool,
) -> Result<bool, PrecomputeError> {
    Ok(match phase {
        PhaseName::Artifacts | PhaseName::Ranges | PhaseName::Strict => false,
        PhaseName::Index | PhaseName::Cleanup => pack_done,
        PhaseName::Pack => pack_done,
        PhaseName::Transpose => {
            if pack_done {
                return Ok(true);
            }
            let fp = &env.plan.fingerprint;
            let blocks = env.plan.gene_blocks().count();
            let missing = futures::stream::iter(0..blocks)
                .map(|b| async move { env.cache.exists(fp, &block_key(b)).await })
                .buffered(16)
                .any(|present| async move { !matches!(present, Ok(true)) })
                .await;
            !missing
        }
    })
}

/// Run the phases of `plan` named in `phases` in order, `jobs` tasks at a time.
async fn run_phases(
    env: &TaskEnv,
    phases: &[PhaseName],
    jobs: usize,
    progress: &MultiProgress,
    summary: &mut PrecomputeSummary,
) -> Result<(), PrecomputeError> {
    let fp = &env.plan.fingerprint;
    let pack_done = env.cache.exists(fp, PACK_INDEX).await?;
    summary.gene_pack_existed = pack_done;
    for (i, phase) in env.plan.phases.iter().enumerate() {
        if !phases.contains(&phase.name) {
            continue;
        }
        let started = Instant::now();
        let mut totals = PhaseSummary {
            tasks: phase.tasks,
            ..PhaseSummary::default()
        };
        if phase_complete(env, phase.name, pack_done).await? {
            totals.skipped = true;
            summary.phases.insert(i, (phase.name, totals));
            continue;
        }
        let pb = bar(progress, phase.tasks, phase.name.as_str());
        let mut reports = futures::stream::iter(0..phase.tasks)
            .map(|task| run_task(env, phase.name, task))
            .buffer_unordered(jobs.max(1));
        while let Some(report) = reports.next().await {
            let report: TaskReport = report?;
            pb.inc(1);
            pb.set_message(report.output.clone());
            if report.outcome == TaskOutcome::Written {
                totals.written += 1;
                totals.bytes_written += report.bytes_written;
            }
            match (phase.name, report.outcome) {
                (PhaseName::Artifacts | PhaseName::Strict, TaskOutcome::Written) => {
                    summary.written += 1;
                    summary.bytes_written += report.bytes_written;
                }
                (PhaseName::Artifacts | PhaseName::Strict, TaskOutcome::AlreadyDone) => {
                    summary.skipped += 1
                }
                (PhaseName::Artifacts | PhaseName::Strict, TaskOutcome::Refused) => summary
                    .refused
                    .push((report.output, report.reason.unwrap_or_default())),
                (PhaseName::Pack | PhaseName::Index | PhaseName::Ranges, TaskOutcome::Written) => {
                    summary.bytes_written += report.bytes_written;
                }
                _ => {}
            }
        }
        pb.finish_with_message("done");
        totals.elapsed = started.elapsed();
        tracing::info!(
            target: "cellucid_edge::precompute",
            phase = phase.name.as_str(),
            tasks = phase.tasks,
            written = totals.written,
            bytes = totals.bytes_written,
            seconds = totals.elapsed.as_secs_f64(),
            "phase done"
        );
        summary.phases.insert(i, (phase.name, totals));
    }
    if !pack_done && env.cache.exists(fp, PACK_INDEX).await? {
        summary.written += 1;
        summary.genes_packed = env.plan.atlas.genes;
    } else if pack_done {
        summary.skipped += 1;
    }
    Ok(())
}

/// A task environment for a run in this process: the plan (stored or new) and a private
/// scratch directory.
pub async fn local_env(
    dataset: Arc<Dataset>,
    cache: &ArtifactCache,
    fingerprint: &str,
    options: &PrecomputeOptions,
) -> Result<TaskEnv, PrecomputeError> {
    let plan = load_or_make_plan(
        &dataset,
        cache,
        fingerprint,
        options.limits,
        options.strict.quantize,
    )
    .await?;
    let scratch =
        Scratch::private(&options.spill_dir).map_err(|source| PrecomputeError::ScratchDir {
            dir: options.spill_dir.display().to_string(),
            source,
        })?;
    Ok(TaskEnv {
        dataset,
        cache: cache.clone(),
        scratch,
        plan: Arc::new(plan),
        priority: options.priority,
    })
}

/// Build every artifact of `dataset` into `cache` under `fingerprint`: the whole plan, in this
/// process.
pub async fn precompute(
    dataset: Arc<Dataset>,
    cache: &ArtifactCache,
    fingerprint: &str,
    options: &PrecomputeOptions,
    progress: &MultiProgress,
) -> Result<PrecomputeSummary, PrecomputeError> {
    let started = Instant::now();
    let env = local_env(dataset, cache, fingerprint, options).await?;
    let mut summary = PrecomputeSummary::default();
    run_phases(&env, &PhaseName::ALL, options.jobs, progress, &mut summary).await?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Build only the gene-major pack of `dataset` (no progress display), unless it exists; `true`
/// when this call wrote it. Used by a server that memoises a CSR X on first use instead of
/// scanning X for every gene (see `AppConfig::gene_pack_on_demand`).
pub async fn build_gene_pack_on_demand(
    dataset: Arc<Dataset>,
    cache: &ArtifactCache,
    fingerprint: &str,
    options: &PrecomputeOptions,
) -> Result<bool, PrecomputeError> {
    if cache.exists(fingerprint, PACK_INDEX).await? {
        return Ok(false);
    }
    // The server answers requests meanwhile: the build gets the CPU they leave.
    let options = PrecomputeOptions {
        priority: super::background::Priority::Background,
        ..options.clone()
    };
    let env = local_env(dataset, cache, fingerprint, &options).await?;
    let hidden = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    let mut summary = PrecomputeSummary::default();
    // The private scratch goes with `env`: no cleanup phase, so the index is the last write.
    let phases = [PhaseName::Transpose, PhaseName::Pack, PhaseName::Index];
    run_phases(&env, &phases, options.jobs, &hidden, &mut summary).await?;
    Ok(summary.genes_packed > 0)
}
