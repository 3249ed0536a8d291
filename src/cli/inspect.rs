//! `cellucid-edge inspect`: what the viewer will see, and warnings.
//!
//! Everything a server would refuse or leave out is reported as a warning (columns skipped,
//! obsm entries without one row per cell, fields with too many categories, buffers larger
//! than the memory budget, a CSR or row-chunked X that needs `precompute`), and the report is
//! printed anyway: a hostile store gets a clear report, never a crash.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use cellucid_edge::anndata::{ColumnEncoding, SourceFormat};
use cellucid_edge::dataset::{Dataset, DatasetContext, FieldKind};
use cellucid_edge::memory::MemoryBudget;
use cellucid_edge::model::embedding::count_non_finite;
use cellucid_edge::model::safe_name::{collisions, duplicates, safe_name};
use cellucid_edge::store::ReadMetrics;

use super::AtlasArgs;

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Store URL (default: the built-in demo atlas).
    pub store: Option<String>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
    /// The memory budget (bytes) to check the atlas against, as `serve` would use it.
    #[arg(long, default_value_t = 256 << 20, env = "CELLUCID_MEMORY_CACHE_BYTES")]
    pub memory_cache_bytes: u64,
    #[command(flatten)]
    pub atlas: AtlasArgs,
}

/// Print the report.
pub async fn run(args: InspectArgs) -> anyhow::Result<()> {
    let location = super::open_location(args.store.as_deref()).await?;
    let shown = location.display.clone();
    let metrics = Arc::new(ReadMetrics::default());
    let context = DatasetContext::new(metrics.clone(), MemoryBudget::new(args.memory_cache_bytes));
    let ds = Dataset::open(location, args.atlas.options(), &context)
        .await
        .with_context(|| format!("opening {shown}"))?;
    let layout = ds.layout();
    let mut warnings: Vec<String> = Vec::new();

    let names: Vec<&str> = ds.obs_fields().iter().map(|f| f.name.as_str()).collect();
    for (safe, members) in collisions(&names) {
        let list: Vec<&str> = members
            .iter()
            .filter_map(|&i| names.get(i).copied())
            .collect();
        warnings.push(format!(
            "obs fields {list:?} share the URL name `{safe}`: the viewer can only load the first"
        ));
    }
    match ds.genes().await {
        Ok(genes) => {
            for (id, rows) in duplicates(genes.ids()).into_iter().take(10) {
                warnings.push(format!(
                    "gene id `{id}` appears {} times: every copy serves the last one's values",
                    rows.len()
                ));
            }
            let gene_collisions = collisions(genes.ids());
            if !gene_collisions.is_empty() {
                warnings.push(format!(
                    "{} gene URL names are shared by several genes (e.g. `{}`)",
                    gene_collisions.len(),
                    gene_collisions[0].0
                ));
            }
        }
        Err(e) => warnings.push(format!("the gene ids cannot be served: {e}")),
    }
    for &dim in &ds.umap().available_dimensions {
        if let Some(key) = ds.umap().key_for(dim)
            && let Some(entry) = layout.obsm.iter().find(|e| e.name == key)
        {
            match ds
                .store()
                .read_matrix_f32(&entry.matrix, ds.n_cells())
                .await
            {
                Ok((raw, _)) => {
                    let bad = count_non_finite(&raw);
                    if bad > 0 {
                        warnings.push(format!(
                            "obsm `{key}` has {bad} non-finite values: points_{dim}d.bin will be refused"
                        ));
                    }
                }
                Err(e) => warnings.push(format!("points_{dim}d.bin cannot be served: {e}")),
            }
        }
    }
    // Text fields become categories only once read: check they fit a uint16 code.
    for (index, field) in ds.obs_fields().iter().enumerate() {
        if field.kind == FieldKind::Category
            && !matches!(field.column.encoding, ColumnEncoding::Categorical { .. })
            && let Err(e) = ds.servable_categorical(index).await
        {
            warnings.push(format!("obs field `{}` cannot be served: {e}", field.name));
        }
    }
    if let Some((nnz, layout_name)) = ds.gene_read_cost()
        && nnz > ds.options().csr_scan_max_nnz
    {
        warnings.push(format!(
            "X ({layout_name}) makes every gene read {nnz} stored values: genes need \
             `cellucid-edge precompute` before serving"
        ));
    }
    // The dataset's own warnings (layout, left-out fields) first.
    let mut all_warnings = ds.warnings();
    all_warnings.extend(warnings);
    let warnings = all_warnings;

    // Strict profile (#14): what `/strict` leaves out or serves differently. A store the
    // notes cannot be made for (gene ids beyond the memory budget …) is still inspected.
    let strict_notes = match cellucid_edge::protocol::strict::report::notes(&ds).await {
        Ok(notes) => notes,
        Err(e) => vec![format!("cannot be described for this store: {e}")],
    };

    let fields: Vec<serde_json::Value> = ds
        .obs_fields()
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "url_name": safe_name(&f.name),
                "kind": f.kind.as_str(),
            })
        })
        .collect();
    let report = serde_json::json!({
        "store": ds.store().location().display,
        "format": ds.store().format().name(),
        "zarr_format": ds.store().format().zarr_number(),
        "consolidated_metadata": ds.store().is_consolidated(),
        "id": ds.id(),
        "name": ds.name(),
        "n_cells": ds.n_cells(),
        "n_genes": ds.n_genes(),
        "dimensions": ds.umap().available_dimensions,
        "default_dimension": ds.umap().default_dimension(),
        "embedding_keys": ds.umap().key_by_dim,
        "obs_fields": fields,
        "latent_key": ds.latent_key(),
        "vector_fields": ds.vector_fields().map(|v| v.to_json()),
        "connectivity": ds.has_connectivity(),
        "x": layout.x.kind_name(),
        "obsm": layout.obsm.iter().map(|e| serde_json::json!({"key": e.name, "shape": e.shape})).collect::<Vec<_>>(),
        "warnings": warnings,
        "strict_profile": strict_notes,
        "store_reads": {"gets": metrics.snapshot().gets, "bytes": metrics.snapshot().bytes},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("store        {}", ds.store().location().display);
    println!(
        "format       {} ({})",
        ds.store().format().name(),
        if ds.store().format() == SourceFormat::H5ad {
            "local file, read lazily; `cellucid-edge convert` makes AnnData-Zarr for object storage"
        } else if ds.store().is_consolidated() {
            "consolidated metadata"
        } else {
            "no consolidated metadata: every open probes keys; consolidate for speed"
        }
    );
    println!("dataset      {} (id `{}`)", ds.name(), ds.id());
    println!("cells        {}", ds.n_cells());
    println!("genes        {}", ds.n_genes());
    println!(
        "dimensions   {:?} (default {}D)",
        ds.umap().available_dimensions,
        ds.umap().default_dimension()
    );
    for (dim, key) in &ds.umap().key_by_dim {
        println!("  {dim}D from obsm `{key}`");
    }
    println!("X            {}", layout.x.kind_name());
    println!(
        "latent key   {}",
        ds.latent_key().unwrap_or("(none: outliers will be 0)")
    );
    println!(
        "connectivity {}",
        if ds.has_connectivity() {
            "obsp['connectivities']"
        } else {
            "none"
        }
    );
    match ds.vector_fields() {
        Some(v) => {
            for f in &v.fields {
                println!(
                    "vectors      {} {:?}D ({})",
                    f.id, f.available_dimensions, f.label
                );
            }
        }
        None => println!("vectors      none"),
    }
    println!("obs fields   {}", ds.obs_fields().len());
    for f in ds.obs_fields() {
        let kind = match f.kind {
            FieldKind::Continuous => "continuous",
            FieldKind::Category => "category",
        };
        println!("  {:<11} {} -> obs/{}", kind, f.name, safe_name(&f.name));
    }
    if warnings.is_empty() {
        println!("warnings     none");
    } else {
        println!("warnings     {}", warnings.len());
        for w in &warnings {
            println!("  - {w}");
        }
    }
    println!("strict       what the strict profile (/strict) leaves out or changes:");
    for note in &strict_notes {
        println!("  - {note}");
    }
    let reads = metrics.snapshot();
    println!("store reads  {} GETs, {} bytes", reads.gets, reads.bytes);
    Ok(())
}
