//! `cellucid-edge convert`: an `.h5ad` file → AnnData-Zarr on a path or object storage.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use cellucid_edge::convert::{ConvertOptions, Progress, convert_h5ad};

/// Arguments of `convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The `.h5ad` file to read.
    pub input: PathBuf,
    /// Where to write the AnnData-Zarr store: a path, file://…, s3://bucket/prefix.
    pub output: String,
    /// Zarr format of the store.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub zarr_format: u8,
    /// Replace an existing store at OUTPUT.
    #[arg(long)]
    pub force: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Then precompute the converted store into this cache prefix (a path, file://,
    /// s3://bucket/prefix), as `cellucid-edge precompute OUTPUT --cache CACHE_URL` does.
    #[arg(long, value_name = "CACHE_URL")]
    pub precompute: Option<String>,
    /// How the atlas is interpreted by `--precompute`.
    #[command(flatten)]
    pub atlas: super::AtlasArgs,
}

/// An indicatif bar over the bytes copied.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
    }

    fn advance(&self, key: &str, bytes: u64) {
        self.0.set_message(key.to_string());
        self.0.inc(bytes);
    }
}

/// Convert, with a progress bar on stderr.
pub async fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let output = super::open_cache_url(&args.output)
        .with_context(|| format!("opening output {}", args.output))?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let options = ConvertOptions {
        zarr_format: args.zarr_format,
        force: args.force,
    };
    let report = convert_h5ad(&args.input, &output, &options, &Bar(bar.clone())).await;
    bar.finish_and_clear();
    let report = report?;
    for skipped in &report.skipped {
        eprintln!("warning: skipped {skipped}");
    }
    eprintln!(
        "wrote {} (zarr v{}, consolidated): {} groups, {} arrays, {:.1} MB in {:.1} s",
        output.display,
        args.zarr_format,
        report.groups,
        report.arrays,
        report.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    if let Some(cache) = args.precompute {
        // The precompute subcommand's own defaults.
        super::precompute::run(super::precompute::PrecomputeArgs::whole_run(
            args.output,
            cache,
            args.quiet,
            args.atlas,
        ))
        .await
        .context("precomputing the converted store")?;
    }
    Ok(())
}
