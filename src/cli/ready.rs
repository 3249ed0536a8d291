//! `cellucid-edge ready`: write a Cellucid-ready copy of an atlas (protocol-0.9.md §4), which
//! `serve --ready` serves under `/v0.9`.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use cellucid_edge::store::ReadMetrics;

use super::AtlasArgs;

/// Arguments of `ready`.
#[derive(Debug, Args)]
pub struct ReadyArgs {
    /// Source store URL (AnnData-Zarr v2 or v3: a path, file://, s3://bucket/prefix).
    pub store: String,
    /// Where to write the copy (a path, file://, s3://bucket/prefix); must be empty.
    #[arg(long, value_name = "URL")]
    pub out: String,
    /// Rows of X read per block (memory is bounded by this and `--spill-entries`).
    #[arg(long, default_value_t = 65_536)]
    pub block_rows: u64,
    /// Stored values of X held in memory at once while transposing CSR to CSC; more are
    /// spilled to temporary files.
    #[arg(long, default_value_t = 8_000_000)]
    pub spill_entries: u64,
    #[command(flatten)]
    pub atlas: AtlasArgs,
}

/// Write the copy.
pub async fn run(args: ReadyArgs) -> anyhow::Result<()> {
    let location = cellucid_edge::store::open_store_url(&args.store)?;
    let dataset = cellucid_edge::dataset::Dataset::open(
        location,
        args.atlas.options(),
        Arc::new(ReadMetrics::default()),
    )
    .await
    .with_context(|| format!("opening {}", args.store))?;
    let out = super::open_cache_url(&args.out).with_context(|| format!("opening {}", args.out))?;
    let (id, name) = cellucid_edge::v09::ready::identity_of(&dataset);
    let options = cellucid_edge::v09::ready::ReadyOptions {
        block_rows: args.block_rows.max(1),
        spill_entries: args.spill_entries.max(1024),
        id,
        name,
    };
    let report = cellucid_edge::v09::ready::write_ready(&dataset, &out, &options)
        .await
        .with_context(|| format!("writing the Cellucid-ready copy to {}", args.out))?;
    eprintln!(
        "wrote a Cellucid-ready copy of `{}` to {}: X {} ({} x {}, {} stored values, {} chunks), {} objects copied",
        options.name,
        args.out,
        report.x_encoding,
        dataset.n_cells(),
        dataset.n_genes(),
        report.nnz,
        report.x_chunks,
        report.copied
    );
    eprintln!(
        "serve it with: cellucid-edge serve {} --ready {}",
        args.store, args.out
    );
    Ok(())
}
