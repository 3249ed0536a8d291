//! `cellucid-edge precompute`: build every artifact and the gene-major pack into the cache —
//! all of it in this process, or one planned task at a time (`--plan`, `--phase`, `--task`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressDrawTarget};

use cellucid_edge::cache::plan::{PhaseName, PlanLimits};
use cellucid_edge::cache::precompute::{
    PrecomputeOptions, PrecomputeSummary, load_or_make_plan, precompute,
};
use cellucid_edge::cache::scratch::Scratch;
use cellucid_edge::cache::tasks::{TaskEnv, run_task};
use cellucid_edge::cache::{ArtifactCache, fingerprint};
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::Dataset;
use cellucid_edge::store::ReadMetrics;

use super::{AtlasArgs, open_cache_url};

/// Arguments of `precompute`.
#[derive(Debug, Args)]
#[command(after_help = "\
Distributed runs (any number of machines sharing the cache prefix):
  cellucid-edge precompute STORE --cache URL --plan                 # print the plan (JSON)
  cellucid-edge precompute STORE --cache URL --phase pack --task 7  # run one task
Phases run in order; the tasks of a phase in any order, in parallel, repeated or killed and run
again. After the last phase the cache is byte-identical to a plain `precompute`.")]
pub struct PrecomputeArgs {
    /// Store URL (a path, file://…, s3://bucket/prefix); a directory of stores precomputes
    /// each of them (a plan or a task needs the store of one atlas).
    pub store: String,
    /// Cache prefix URL (a path, file://, s3://bucket/prefix) that `serve --cache` and the
    /// Lambda read.
    #[arg(long, env = "CELLUCID_CACHE_URL")]
    pub cache: String,
    /// Print the plan (phases and task counts, JSON on stdout) and store it in the cache, so
    /// every task of the run uses it; runs nothing.
    #[arg(long, conflicts_with_all = ["phase", "task"])]
    pub plan: bool,
    /// Run the tasks of this phase only (all of them, `--jobs` at a time, unless `--task`):
    /// artifacts, transpose, pack, index, ranges (with `--quantize`), strict, cleanup.
    #[arg(long, value_name = "NAME")]
    pub phase: Option<PhaseName>,
    /// With `--phase`: run this one task and print its report (JSON on stdout).
    #[arg(long, value_name = "I", requires = "phase")]
    pub task: Option<u64>,
    /// Scratch of `--phase` runs, shared by every machine of the run (default:
    /// `<cache>/_work/<fingerprint>`; the cleanup phase empties it).
    #[arg(long, value_name = "URL")]
    pub scratch: Option<String>,
    /// Tasks run at once.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Directory of the private scratch of a whole run (about 8 bytes per stored value of a CSR
    /// X; removed when done). Default: the system temp dir.
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// No progress bars (logs and the summary only).
    #[arg(long)]
    pub quiet: bool,
    /// Memory budget of the atlas, in MiB: its retained buffers (embeddings, obs columns, the
    /// latent matrix, the neighbour graph …) count against it, and no single buffer may be
    /// larger. Raise it for atlases with millions of cells. The gene pack's own memory is
    /// bounded by the plan's block sizes, not by this. Default: 256 (as `serve`).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=(u64::MAX >> 20)))]
    pub memory_mb: Option<u64>,
    /// Stored values per row block and per gene block of a NEW plan instead of the defaults
    /// (tests use it to get many small tasks; a stored plan is used as it is).
    #[arg(long, hide = true)]
    pub block_nnz: Option<u64>,
    /// Also build the strict profile's quantised documents and obs payloads for a deployment
    /// serving `--quantize BITS` (8 or 16): a plan of its own, with a `ranges` phase (each
    /// gene's range, read from the gene pack) before the `strict` one.
    #[arg(long, value_name = "BITS", env = "CELLUCID_QUANTIZE")]
    pub quantize: Option<cellucid_edge::model::quantize::QuantBits>,
    #[command(flatten)]
    pub atlas: AtlasArgs,
}

impl PrecomputeArgs {
    /// A plain run of every phase with the default settings (what `convert --precompute` does).
    #[cfg(feature = "h5ad")]
    pub fn whole_run(store: String, cache: String, quiet: bool, atlas: AtlasArgs) -> Self {
        PrecomputeArgs {
            store,
            cache,
            plan: false,
            phase: None,
            task: None,
            scratch: None,
            jobs: 2,
            spill_dir: None,
            quiet,
            memory_mb: None,
            block_nnz: None,
            quantize: None,
            atlas,
        }
    }
}

impl PrecomputeArgs {
    /// Capacity of the memory budget the atlases are opened with (`--memory-mb`, else the
    /// serving default).
    pub fn memory_budget_bytes(&self) -> u64 {
        self.memory_mb
            .map_or(cellucid_edge::memory::DEFAULT_BUDGET_BYTES, |mb| mb << 20)
    }
}

/// Run the precompute (or the plan, or one task) and print what it did.
pub async fn run(args: PrecomputeArgs) -> anyhow::Result<()> {
    let location = cellucid_edge::store::open_store_url(&args.store)
        .with_context(|| format!("opening {}", args.store))?;
    let shown = location.display.clone();
    let metrics = Arc::new(ReadMetrics::default());
    // The atlases' own buffers (embeddings, latent, edges …) count against `--memory-mb`; the
    // gene pack's memory is bounded by the plan's block sizes.
    let context = cellucid_edge::dataset::DatasetContext::new(
        metrics.clone(),
        cellucid_edge::memory::MemoryBudget::new(args.memory_budget_bytes()),
    );
    let catalog = Catalog::open(location, &args.atlas.options(), &context)
        .await
        .with_context(|| format!("opening {shown}"))?;
    let cache = ArtifactCache::new(
        &open_cache_url(&args.cache).with_context(|| format!("opening cache {}", args.cache))?,
        Arc::new(ReadMetrics::default()),
    );
    let limits = PlanLimits {
        row_block_nnz: args.block_nnz,
        gene_block_nnz: args.block_nnz,
    };
    let options = PrecomputeOptions {
        jobs: args.jobs.max(1),
        spill_dir: args.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
        limits,
        priority: Default::default(),
        strict: cellucid_edge::protocol::strict::StrictConfig {
            quantize: args.quantize,
        },
    };
    if args.plan || args.phase.is_some() {
        let [dataset] = catalog.datasets() else {
            bail!(
                "{shown} holds {} atlases: a plan or a task is for one atlas; pass its own store \
                 URL",
                catalog.datasets().len()
            );
        };
        let fp = fingerprint(dataset);
        let plan = load_or_make_plan(dataset, &cache, &fp, limits, args.quantize)
            .await
            .context("making the plan")?;
        if args.plan {
            println!("{}", plan.to_json());
            return Ok(());
        }
        let scratch = match &args.scratch {
            Some(url) => {
                Scratch::at(&open_cache_url(url).with_context(|| format!("opening scratch {url}"))?)
            }
            None => Scratch::shared(&cache, &fp),
        };
        let env = TaskEnv {
            dataset: dataset.clone(),
            cache,
            scratch,
            plan: Arc::new(plan),
            priority: Default::default(),
        };
        let phase = args.phase.unwrap_or(PhaseName::Artifacts);
        return run_phase(&env, phase, args.task, options.jobs, &metrics).await;
    }
    let progress = if args.quiet {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    } else {
        MultiProgress::new()
    };
    for dataset in catalog.datasets() {
        run_all(dataset, &cache, &options, &progress).await?;
    }
    Ok(())
}

/// `--phase P [--task I]`: run one task, or every task of the phase, printing one JSON report
/// per task (with the source reads it made when it ran alone).
async fn run_phase(
    env: &TaskEnv,
    phase: PhaseName,
    task: Option<u64>,
    jobs: usize,
    metrics: &ReadMetrics,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let before = metrics.snapshot();
    let tasks = match task {
        Some(t) => vec![t],
        None => (0..env.plan.phase(phase).map_or(0, |p| p.tasks)).collect(),
    };
    let mut reports = futures::stream::iter(tasks)
        .map(|t| run_task(env, phase, t))
        .buffer_unordered(jobs.max(1));
    while let Some(report) = reports.next().await {
        let report = report.with_context(|| format!("phase {phase}"))?;
        let mut json = serde_json::to_value(&report)?;
        if task.is_some() {
            let source = metrics.snapshot().since(before);
            json["source_gets"] = source.gets.into();
            json["source_bytes"] = source.bytes.into();
        }
        println!("{json}");
    }
    Ok(())
}

async fn run_all(
    dataset: &Arc<Dataset>,
    cache: &ArtifactCache,
    options: &PrecomputeOptions,
    progress: &MultiProgress,
) -> anyhow::Result<()> {
    let fp = fingerprint(dataset);
    eprintln!(
        "precomputing `{}` ({} cells, {} genes, X {}) into {}/{fp}",
        dataset.name(),
        dataset.n_cells(),
        dataset.n_genes(),
        dataset.layout().x.kind_name(),
        cache.display().trim_end_matches('/'),
    );
    let summary = precompute(dataset.clone(), cache, &fp, options, progress)
        .await
        .with_context(|| format!("precomputing {}", dataset.name()))?;
    print_summary(dataset, &fp, &summary);
    Ok(())
}

fn print_summary(dataset: &Dataset, fp: &str, summary: &PrecomputeSummary) {
    println!("atlas        {} (fingerprint {fp})", dataset.name());
    println!("written      {} artifacts", summary.written);
    println!("skipped      {} (already in the cache)", summary.skipped);
    println!(
        "gene pack    {}",
        if summary.gene_pack_existed {
            "already present".to_string()
        } else {
            format!("{} genes", summary.genes_packed)
        }
    );
    println!("bytes        {} written", summary.bytes_written);
    for (phase, totals) in summary.phases.values() {
        if totals.skipped {
            println!("phase        {phase:<10} skipped (complete)");
        } else {
            println!(
                "phase        {phase:<10} {:>5} tasks {:>8.1} s",
                totals.tasks,
                totals.elapsed.as_secs_f64()
            );
        }
    }
    println!("time         {:.1} s", summary.elapsed.as_secs_f64());
    for (key, reason) in &summary.refused {
        println!("refused      {key}: {reason} (answered with the same error when asked)");
    }
    tracing::info!(
        target: "cellucid_edge::precompute",
        atlas = dataset.name(),
        fingerprint = %fp,
        written = summary.written,
        skipped = summary.skipped,
        bytes = summary.bytes_written,
        seconds = summary.elapsed.as_secs_f64(),
        "precompute finished"
    );
}
