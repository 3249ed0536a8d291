//! The strict profile (protocol-strict.md): the seed protocol reshaped for the viewer builds of
//! 2026 that validate every document with exact keys, at its own base path [`BASE`], while the
//! byte-exact seed stays at the origin root and the 0.9 protocol under `/v0.9`.
//!
//! Same computed buffers as the seed; exact-key documents; payloads addressed by index
//! (`obs/{index}.codes.u8`, `var/{index}.values.f32`); float64 edge weights; opt-in 8/16-bit
//! quantised gene and continuous obs values. See `docs/strict-profile.md`.
//!
//! # Entry points (what a router calls)
//!
//! 1. [`below_base`] — is a decoded request path under `/strict`, and what follows it;
//! 2. [`parse_target`] — that rest against a catalogue: a control document or
//!    `(dataset, StrictRoute)`;
//! 3. [`control_document`] for `_cellucid/datasets` (health and info are the seed's), or
//!    [`resolve`]`(dataset, route, config)` → an [`Artifact`] that the ordinary artifact path
//!    renders (memory → cache prefix → compute), using [`Artifact::derived_from`] so strict
//!    documents and quantised payloads are translated from the seed's cached bodies.
//!
//! Modules: `route` (paths → typed routes), `naming` (payload indices, unique gene names,
//! ids), `documents` (seed → strict JSON), `artifact` (the strict artifacts), `gene_ranges`
//! (per-gene quantisation ranges), `precompute` (the precompute hook), `report` (what
//! `inspect` says the profile leaves out).

mod artifact;
mod documents;
mod gene_ranges;
pub mod naming;
pub mod precompute;
pub mod report;
pub mod route;

use std::sync::Arc;

use serde_json::Value;

pub use artifact::StrictArtifact;
pub use documents::CatalogEntry;
pub use gene_ranges::{ScanLimit, gene_ranges};
pub use route::{StrictControl, StrictRoute, ValueExt};

use crate::catalog::Catalog;
use crate::dataset::{Dataset, DatasetError, FieldKind};
use crate::model::categories::CodesDtype;
use crate::model::quantize::QuantBits;
use crate::model::weights::NoStrictForm;
use crate::protocol::Artifact;
use naming::{ObsNumbering, strict_dataset_id, strict_dataset_name, vector_stems};

/// The base path of the strict profile.
pub const BASE: &str = "/strict";

/// Settings of the strict profile for one deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrictConfig {
    /// Serve gene and continuous obs values quantised to this width (`--quantize 8|16`,
    /// `CELLUCID_QUANTIZE`); float32 when `None`.
    pub quantize: Option<QuantBits>,
}

/// Why a strict document could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    /// A seed document does not have the shape the translation expects (a bug, not data).
    #[error("the seed's `{document}` cannot be translated: {reason}")]
    MalformedSeed {
        /// Document name.
        document: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A seed document is not JSON (e.g. a damaged cache object).
    #[error("the seed's `{document}` is not JSON")]
    SeedJson {
        /// Document name.
        document: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A strict document could not be serialised.
    #[error("serialising a strict document failed")]
    Serialize {
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A float32 payload's length is not a multiple of 4.
    #[error("a float32 payload of {len} bytes cannot be quantised")]
    BadSeedPayload {
        /// Its length.
        len: usize,
    },
    /// Two categories of a field read the same (the strict viewer wants unique categories).
    #[error(
        "categorical field `{field}` has the category {label} twice; the strict profile needs unique categories"
    )]
    DuplicateCategory {
        /// Field.
        field: String,
        /// The repeated label (JSON).
        label: String,
    },
    /// Two obs fields have the same key.
    #[error("two obs fields have the same key")]
    DuplicateObsKey,
    /// An obs field has an empty key.
    #[error("an obs field has an empty key")]
    EmptyObsKey,
    /// The graph has no strict form.
    #[error("the connectivity graph has no strict form")]
    NoStrictGraph(#[source] NoStrictForm),
}

/// The path below [`BASE`] of a decoded request path (`"/strict/x"` → `"x"`), or `None` when
/// the path is not under the strict base (`"/strictly"`, `"/"`).
pub fn below_base(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(BASE)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('/')
}

/// Where a path below the strict base leads.
#[derive(Debug, Clone)]
pub enum StrictTarget<'a> {
    /// A server-wide control document.
    Control(StrictControl),
    /// A document or payload of one atlas.
    Dataset(&'a Arc<Dataset>, StrictRoute),
}

/// The strict catalogue: `(dataset, entry)` for every atlas, in catalogue order. One atlas is
/// served at path `"/"`, several at `"/<clean id>/"`.
pub fn catalog_entries(catalog: &Catalog) -> Vec<(&Arc<Dataset>, CatalogEntry)> {
    catalog
        .datasets()
        .iter()
        .map(|d| {
            let id = strict_dataset_id(d.id());
            let path = if catalog.is_multi() {
                format!("/{id}/")
            } else {
                "/".to_string()
            };
            let name = strict_dataset_name(d.name(), d.id());
            (d, CatalogEntry { id, path, name })
        })
        .collect()
}

/// Parse a decoded path below the strict base against `catalog`; `None` for unknown paths
/// (404). Only each dataset's declared path is served (no id-prefix aliases).
pub fn parse_target<'a>(catalog: &'a Catalog, below: &str) -> Option<StrictTarget<'a>> {
    if let Some(control) = route::parse_control(below) {
        return Some(StrictTarget::Control(control));
    }
    if !catalog.is_multi() {
        return Some(StrictTarget::Dataset(
            catalog.first(),
            route::parse_route(below)?,
        ));
    }
    let (dir, rest) = below.split_once('/')?;
    let (dataset, _) = catalog_entries(catalog)
        .into_iter()
        .find(|(_, e)| e.path.trim_matches('/') == dir)?;
    Some(StrictTarget::Dataset(dataset, route::parse_route(rest)?))
}

/// The strict `_cellucid/datasets` (a share token bound to one dataset lists only it).
/// `_cellucid/health` and `_cellucid/info` are the seed's documents: they already follow the
/// strict rules (§1, §2).
pub fn datasets_document(catalog: &Catalog, scope: Option<&str>) -> Value {
    let entries: Vec<CatalogEntry> = catalog_entries(catalog)
        .into_iter()
        .filter(|(d, _)| scope.is_none_or(|id| d.id() == id))
        .map(|(_, e)| e)
        .collect();
    documents::datasets(&entries)
}

/// Alias of [`datasets_document`] for routers that dispatch every control document alike:
/// `None` for health and info (answer with the seed's).
pub fn control_document(
    catalog: &Catalog,
    control: StrictControl,
    scope: Option<&str>,
) -> Option<Value> {
    (control == StrictControl::Datasets).then(|| datasets_document(catalog, scope))
}

fn not_found(what: impl Into<String>) -> DatasetError {
    DatasetError::NotFound(what.into())
}

/// The codes width of categorical obs field `field` (from metadata when the column is a
/// stored categorical, else from its categories).
async fn codes_dtype(dataset: &Dataset, field: usize) -> Result<CodesDtype, DatasetError> {
    let n = match dataset.obs_fields().get(field).map(|f| &f.column.encoding) {
        Some(crate::anndata::ColumnEncoding::Categorical { n_categories, .. }) => {
            usize::try_from(*n_categories).unwrap_or(usize::MAX)
        }
        _ => dataset.categorical(field).await?.labels.len(),
    };
    Ok(CodesDtype::for_n_categories(n)?)
}

/// The value extension a deployment serves.
fn served_ext(config: &StrictConfig) -> ValueExt {
    match config.quantize {
        None => ValueExt::F32,
        Some(QuantBits::U8) => ValueExt::U8,
        Some(QuantBits::U16) => ValueExt::U16,
    }
}

/// Resolve a strict route of `dataset` to the artifact that answers it; what the strict
/// documents do not advertise is `NotFound` (unknown indices, another extension than the one
/// served, a graph without a strict form).
pub async fn resolve(
    dataset: &Dataset,
    route: &StrictRoute,
    config: &StrictConfig,
) -> Result<Artifact, DatasetError> {
    let numbering = || ObsNumbering::new(dataset.obs_fields());
    let field_of = |payload: usize, kind: FieldKind| {
        numbering()
            .field(payload)
            .filter(|&f| dataset.obs_fields().get(f).is_some_and(|o| o.kind == kind))
            .ok_or_else(|| not_found(format!("Obs payload not found: {payload}")))
    };
    Ok(match route {
        StrictRoute::Identity => Artifact::Strict(StrictArtifact::Identity),
        StrictRoute::ObsManifest => Artifact::Strict(StrictArtifact::ObsManifest(config.quantize)),
        StrictRoute::VarManifest => Artifact::Strict(StrictArtifact::VarManifest(config.quantize)),
        // Graph routes resolve from metadata alone (a cold process must not read the graph to
        // serve a cached manifest); the manifest and the weights answer 404 when computed for a
        // graph without a strict form.
        StrictRoute::ConnectivityManifest => {
            graph_route(dataset)?;
            Artifact::Strict(StrictArtifact::ConnectivityManifest)
        }
        StrictRoute::Points { dim } => {
            if !dataset.umap().available_dimensions.contains(dim) {
                return Err(not_found("Points data not available"));
            }
            Artifact::Points(*dim)
        }
        StrictRoute::ObsValues { payload, ext } => {
            let field = field_of(*payload, FieldKind::Continuous)?;
            if *ext != served_ext(config) {
                return Err(not_found(format!("Obs payload not found: {payload}")));
            }
            match config.quantize {
                None => Artifact::ObsValues(field),
                Some(bits) => Artifact::Strict(StrictArtifact::QuantizedObsValues(field, bits)),
            }
        }
        StrictRoute::ObsCodes { payload, wide } => {
            let field = field_of(*payload, FieldKind::Category)?;
            if (codes_dtype(dataset, field).await? == CodesDtype::U16) != *wide {
                return Err(not_found(format!("Obs payload not found: {payload}")));
            }
            Artifact::ObsCodes(field)
        }
        StrictRoute::ObsOutliers { payload } => {
            Artifact::ObsOutliers(field_of(*payload, FieldKind::Category)?)
        }
        StrictRoute::VarValues { gene, ext } => {
            if *gene as u64 >= dataset.n_genes() || *ext != served_ext(config) {
                return Err(not_found(format!("Gene not found: {gene}")));
            }
            match config.quantize {
                None => Artifact::Gene(*gene),
                Some(bits) => Artifact::Strict(StrictArtifact::QuantizedGene(*gene, bits)),
            }
        }
        StrictRoute::EdgeSources | StrictRoute::EdgeDestinations => {
            let source = *route == StrictRoute::EdgeSources;
            let strict = graph_route(dataset)?;
            let seed = crate::model::edges::IndexDtype::for_n_cells(dataset.n_cells());
            match (strict == seed, source) {
                (true, true) => Artifact::EdgesSrc,
                (true, false) => Artifact::EdgesDst,
                (false, source) => Artifact::Strict(StrictArtifact::EdgeIndices { source }),
            }
        }
        StrictRoute::EdgeWeights => {
            graph_route(dataset)?;
            Artifact::Strict(StrictArtifact::EdgeWeights)
        }
        StrictRoute::Vectors { stem, dim } => {
            let unknown = || not_found(format!("Vector field '{stem}' not available"));
            let vectors = dataset.vector_fields().ok_or_else(unknown)?;
            let position = vector_stems(vectors)
                .iter()
                .position(|s| s == stem)
                .ok_or_else(unknown)?;
            let field = vectors.fields.get(position).ok_or_else(unknown)?;
            if field.obsm_key(*dim).is_none() {
                return Err(unknown());
            }
            Artifact::Vectors(field.id.clone(), *dim)
        }
    })
}

/// The strict index width of the atlas's graph from its metadata (no store read): `NotFound`
/// without `obsp['connectivities']`, above 2³² cells, or when this process already knows the
/// graph has no strict form.
fn graph_route(dataset: &Dataset) -> Result<crate::model::edges::IndexDtype, DatasetError> {
    let no_graph = || not_found("No connectivity data");
    if !dataset.has_connectivity() {
        return Err(no_graph());
    }
    if let Some(known) = dataset.known_strict_graph()
        && known.as_ref().is_none_or(|g| g.verdict.is_err())
    {
        return Err(no_graph());
    }
    crate::model::weights::strict_index_dtype(dataset.n_cells()).ok_or_else(no_graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_a_whole_segment() {
        assert_eq!(below_base("/strict"), Some(""));
        assert_eq!(below_base("/strict/"), Some(""));
        assert_eq!(
            below_base("/strict/_cellucid/health"),
            Some("_cellucid/health")
        );
        assert_eq!(below_base("/strictly/x"), None);
        assert_eq!(below_base("/v0.9/strict"), None);
        assert_eq!(below_base("strict/x"), None);
    }
}
