//! `cellucid-edge precompute`: build every artifact and the gene-major pack into the cache.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressDrawTarget};

use cellucid_edge::cache::precompute::{PrecomputeOptions, precompute};
use cellucid_edge::cache::{ArtifactCache, fingerprint};
use cellucid_edge::catalog::Catalog;
use cellucid_edge::store::ReadMetrics;

use super::{AtlasArgs, open_cache_url};

/// Arguments of `precompute`.
#[derive(Debug, Args)]
pub struct PrecomputeArgs {
    /// Store URL (a path, file://…, s3://bucket/prefix); a directory of stores precomputes
    /// each of them.
    pub store: String,
    /// Cache prefix URL (a path, file://, s3://bucket/prefix) that `serve --cache` and the
    /// Lambda read.
    #[arg(long, env = "CELLUCID_CACHE_URL")]
    pub cache: String,
    /// Artifacts and gene blocks processed at once.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Memory for dense gene blocks shared by the jobs, in MiB (the rest of the run needs a
    /// few hundred MiB more: one row block of X per job).
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u64,
    /// Stored values of X per row block while transposing CSR X.
    #[arg(long, default_value_t = 4 << 20)]
    pub row_block_nnz: u64,
    /// Directory for temporary spill files of the CSR transposition (about 10 bytes per stored
    /// value of X; removed when done). Default: the system temp dir.
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// No progress bars (logs and the summary only).
    #[arg(long)]
    pub quiet: bool,
    /// Also build the strict profile's quantised documents and obs payloads for a deployment
    /// serving `--quantize BITS` (8 or 16): the quantised var manifest needs a pass over X.
    #[arg(long, value_name = "BITS", env = "CELLUCID_QUANTIZE")]
    pub quantize: Option<cellucid_edge::model::quantize::QuantBits>,
    #[command(flatten)]
    pub atlas: AtlasArgs,
}

/// Run the precompute and print a summary per atlas.
pub async fn run(args: PrecomputeArgs) -> anyhow::Result<()> {
    let location = cellucid_edge::store::open_store_url(&args.store)
        .with_context(|| format!("opening {}", args.store))?;
    let shown = location.display.clone();
    let catalog = Catalog::open(
        location,
        &args.atlas.options(),
        Arc::new(ReadMetrics::default()),
    )
    .await
    .with_context(|| format!("opening {shown}"))?;
    let cache = ArtifactCache::new(
        &open_cache_url(&args.cache).with_context(|| format!("opening cache {}", args.cache))?,
        Arc::new(ReadMetrics::default()),
    );
    let options = PrecomputeOptions {
        jobs: args.jobs.max(1),
        memory_budget: args.memory_mb.max(1) << 20,
        row_block_nnz: args.row_block_nnz.max(1),
        spill_dir: args.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
        strict: cellucid_edge::protocol::strict::StrictConfig {
            quantize: args.quantize,
        },
    };
    let progress = if args.quiet {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    } else {
        MultiProgress::new()
    };
    for dataset in catalog.datasets() {
        let fp = fingerprint(dataset);
        eprintln!(
            "precomputing `{}` ({} cells, {} genes, X {}) into {}/{fp}",
            dataset.name(),
            dataset.n_cells(),
            dataset.n_genes(),
            dataset.layout().x.kind_name(),
            cache.display().trim_end_matches('/'),
        );
        let summary = precompute(dataset.clone(), &cache, &fp, &options, &progress)
            .await
            .with_context(|| format!("precomputing {}", dataset.name()))?;
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
    Ok(())
}
