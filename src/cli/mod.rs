//! Command-line interface: argument definitions and the subcommands.

#[cfg(feature = "h5ad")]
mod convert;
mod inspect;
mod precompute;
mod ready;
mod serve;
mod share;

use clap::{Args, Parser, Subcommand, ValueEnum};

use cellucid_edge::dataset::DatasetOptions;

/// Serve AnnData-Zarr atlases to the Cellucid viewer — locally, or from object storage.
#[derive(Debug, Parser)]
#[command(name = "cellucid-edge", version, about, long_about = None, after_help = "\
Examples:
  cellucid-edge serve                          # the built-in demo atlas on http://127.0.0.1:8765
  cellucid-edge serve atlas.zarr --port 9000   # your own AnnData-Zarr store
  cellucid-edge serve ./atlases/               # a directory of stores, served as /<id>/...
  cellucid-edge inspect atlas.zarr             # what the viewer will see, and warnings
  cellucid-edge serve atlas.h5ad               # an .h5ad file, read lazily
  cellucid-edge convert atlas.h5ad s3://bucket/atlas.zarr   # h5ad -> AnnData-Zarr
  cellucid-edge precompute s3://b/atlas.zarr --cache s3://b/cache   # then serve --cache")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CELLUCID_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber syntax), e.g. `info` or `cellucid_edge=debug`.
    #[arg(long, global = true, default_value = "info", env = "CELLUCID_LOG")]
    pub log: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve an atlas (or a directory of atlases) to the viewer over HTTP.
    Serve(serve::ServeArgs),
    /// Show what the viewer will see in a store, and what may go wrong.
    Inspect(inspect::InspectArgs),
    /// Convert an .h5ad file to AnnData-Zarr (consolidated) on a path or object storage.
    #[cfg(feature = "h5ad")]
    Convert(convert::ConvertArgs),
    /// Build every artifact and the gene-major copy of X into a cache prefix (resumable).
    Precompute(precompute::PrecomputeArgs),
    /// Print a viewer link carrying a signed, expiring share token (private atlases).
    Share(share::ShareArgs),
    /// Write a Cellucid-ready copy (gene-major CSC float32 X, uns['cellucid']) for the 0.9 protocol.
    Ready(ready::ReadyArgs),
}

/// How an atlas is interpreted (these settings change artifacts).
#[derive(Debug, Args, Clone)]
pub struct AtlasArgs {
    /// obsm key of the latent space for outlier quantiles (auto-detected by default).
    #[arg(long)]
    pub latent_key: Option<String>,
    /// var column holding gene ids (`index` = var_names).
    #[arg(long, default_value = "index")]
    pub gene_id_column: String,
    /// Dataset name shown in the viewer (default: the store's directory name).
    #[arg(long)]
    pub dataset_name: Option<String>,
    /// Dataset id (default: the safe name of the dataset name).
    #[arg(long)]
    pub dataset_id: Option<String>,
    /// Keep embeddings as stored instead of normalising them to [-1, 1].
    #[arg(long)]
    pub no_normalize: bool,
    /// Largest CSR X (stored values) for which a gene may be served by scanning X.
    #[arg(long, default_value_t = 50_000_000)]
    pub csr_scan_max_nnz: u64,
}

impl AtlasArgs {
    /// The dataset options these arguments describe.
    pub fn options(&self) -> DatasetOptions {
        DatasetOptions {
            latent_key: self.latent_key.clone(),
            gene_id_column: self.gene_id_column.clone(),
            normalize_embeddings: !self.no_normalize,
            dataset_id: self.dataset_id.clone(),
            dataset_name: self.dataset_name.clone(),
            csr_scan_max_nnz: self.csr_scan_max_nnz,
            ..DatasetOptions::default()
        }
    }
}

/// Set up tracing.
pub fn init_logging(global: &GlobalArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Run the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Inspect(args) => inspect::run(args).await,
        #[cfg(feature = "h5ad")]
        Command::Convert(args) => convert::run(args).await,
        Command::Precompute(args) => precompute::run(args).await,
        Command::Share(args) => share::run(args),
        Command::Ready(args) => ready::run(args).await,
    }
}

/// Open a store URL, or the embedded demo when none is given.
pub async fn open_location(
    store: Option<&str>,
) -> anyhow::Result<cellucid_edge::store::StoreLocation> {
    Ok(match store {
        Some(url) => cellucid_edge::store::open_store_url(url)?,
        None => cellucid_edge::demo::demo_location().await?,
    })
}

/// Open a cache (or `convert` output) URL; a local directory is created when missing.
pub fn open_cache_url(url: &str) -> anyhow::Result<cellucid_edge::store::StoreLocation> {
    let local = url.strip_prefix("file://").unwrap_or(url);
    if !url.contains("://") || url.starts_with("file://") {
        std::fs::create_dir_all(local)?;
    }
    Ok(cellucid_edge::store::open_store_url(url)?)
}
