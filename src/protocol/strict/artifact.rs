//! The strict profile's own artifacts ([`crate::protocol::Artifact::Strict`]): its documents,
//! the edge weights, and quantised payloads. Everything whose bytes equal a seed artifact's
//! (float32 genes and obs payloads, points, vectors, edges) *is* that seed artifact, so the
//! cache prefix and the gene pack hold it once.
//!
//! Most strict artifacts are derived from a seed artifact's body ([`StrictArtifact::source`]):
//! the HTTP layer takes that body from memory or the cache prefix (one GET; a gene from the
//! gene-major pack) and only the translation runs here.

use bytes::Bytes;
use serde_json::Value;

use super::StrictError;
use super::documents;
use super::gene_ranges::{ScanLimit, gene_ranges};
use super::naming::{ObsNumbering, vector_stems};
use crate::dataset::{Dataset, DatasetError};
use crate::model::edges::IndexDtype;
use crate::model::quantize::{QuantBits, QuantRange, quantize};
use crate::model::weights::encode_strict_indices;
use crate::protocol::Artifact;

/// An artifact only the strict profile serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrictArtifact {
    /// `dataset_identity.json`
    Identity,
    /// `obs_manifest.json` (continuous values quantised or not)
    ObsManifest(Option<QuantBits>),
    /// `var_manifest.json` (genes quantised or not)
    VarManifest(Option<QuantBits>),
    /// `connectivity_manifest.json`
    ConnectivityManifest,
    /// `connectivity/edges.weights.f64.bin`
    EdgeWeights,
    /// `connectivity/edges.{src,dst}.bin` re-encoded as uint16, for the one cell count where
    /// the seed's width differs from the strict one (65 536 cells)
    EdgeIndices {
        /// `true` for sources.
        source: bool,
    },
    /// `obs/<payload>.values.u8|u16` of obs field #i
    QuantizedObsValues(usize, QuantBits),
    /// `var/<i>.values.u8|u16` of gene #i
    QuantizedGene(usize, QuantBits),
}

fn q_prefix(quantize: Option<QuantBits>) -> String {
    match quantize {
        Some(bits) => format!("strict/q{}/", bits.bits()),
        None => "strict/".into(),
    }
}

fn parse_json(body: &[u8], document: &'static str) -> Result<Value, StrictError> {
    serde_json::from_slice(body).map_err(|source| StrictError::SeedJson { document, source })
}

fn to_json_bytes(value: &Value) -> Result<Bytes, StrictError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|source| StrictError::Serialize { source })
}

fn f32_values(body: &[u8]) -> Result<Vec<f32>, StrictError> {
    if !body.len().is_multiple_of(4) {
        return Err(StrictError::BadSeedPayload { len: body.len() });
    }
    Ok(body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The strict `var_manifest.json` from the seed's body and, when quantised, every gene's range
/// (in var order).
pub(crate) async fn var_manifest(
    seed_body: Bytes,
    quantized: Option<(QuantBits, Vec<QuantRange>)>,
) -> Result<Bytes, DatasetError> {
    blocking(move || {
        let seed = parse_json(&seed_body, "var_manifest.json")?;
        let quantized = quantized
            .as_ref()
            .map(|(bits, ranges)| (*bits, ranges.as_slice()));
        to_json_bytes(&documents::var_manifest(&seed, quantized)?)
    })
    .await
}

/// Run CPU-bound translation off the async executor ([`crate::compute`]: abandoned when the
/// request ends).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StrictError> + Send + 'static,
) -> Result<T, DatasetError> {
    crate::compute::offload(work)
        .await?
        .map_err(DatasetError::from)
}

impl StrictArtifact {
    /// Name inside the atlas's cache prefix (`strict/…`, `strict/q8/…` for quantised ones).
    pub fn cache_key(&self) -> String {
        match self {
            StrictArtifact::Identity => "strict/dataset_identity.json".into(),
            StrictArtifact::ObsManifest(q) => format!("{}obs_manifest.json", q_prefix(*q)),
            StrictArtifact::VarManifest(q) => format!("{}var_manifest.json", q_prefix(*q)),
            StrictArtifact::ConnectivityManifest => "strict/connectivity_manifest.json".into(),
            StrictArtifact::EdgeWeights => "strict/connectivity/edges.weights.f64.bin".into(),
            StrictArtifact::EdgeIndices { source } => format!(
                "strict/connectivity/edges.{}.u16.bin",
                if *source { "src" } else { "dst" }
            ),
            StrictArtifact::QuantizedObsValues(i, bits) => {
                format!("{}obs/{i}.values.{}", q_prefix(Some(*bits)), bits.ext())
            }
            StrictArtifact::QuantizedGene(i, bits) => {
                format!("{}var/{i}.values.{}", q_prefix(Some(*bits)), bits.ext())
            }
        }
    }

    /// Whether the body is JSON.
    pub fn is_json(&self) -> bool {
        matches!(
            self,
            StrictArtifact::Identity
                | StrictArtifact::ObsManifest(_)
                | StrictArtifact::VarManifest(_)
                | StrictArtifact::ConnectivityManifest
        )
    }

    /// Whether a computed body belongs in the cache prefix. Quantised genes are derived from
    /// the float32 gene (one GET of the gene-major pack) on every cold request instead of
    /// being written one object per gene.
    pub fn write_back(&self) -> bool {
        !matches!(self, StrictArtifact::QuantizedGene(..))
    }

    /// The seed artifact whose body this one is translated from, if any.
    pub fn source(&self) -> Option<Artifact> {
        match self {
            StrictArtifact::ObsManifest(_) => Some(Artifact::ObsManifest),
            StrictArtifact::VarManifest(_) => Some(Artifact::VarManifest),
            StrictArtifact::QuantizedObsValues(i, _) => Some(Artifact::ObsValues(*i)),
            StrictArtifact::QuantizedGene(i, _) => Some(Artifact::Gene(*i)),
            // The identity needs the graph's strict verdict: computed first, from one read of
            // the graph that the seed's edge list then reuses (see `compute_direct`).
            StrictArtifact::Identity
            | StrictArtifact::ConnectivityManifest
            | StrictArtifact::EdgeWeights
            | StrictArtifact::EdgeIndices { .. } => None,
        }
    }

    /// Compute the body from the source store alone (the seed source, if any, is computed
    /// too). Used by `precompute` and whenever no cache is at hand.
    pub async fn compute(&self, dataset: &Dataset) -> Result<Bytes, DatasetError> {
        match self.source() {
            Some(source) => {
                let body = Box::pin(source.compute(dataset)).await?;
                self.derive(dataset, body, ScanLimit::Dataset).await
            }
            None => self.compute_direct(dataset).await,
        }
    }

    async fn compute_direct(&self, dataset: &Dataset) -> Result<Bytes, DatasetError> {
        match self {
            StrictArtifact::Identity => {
                // Graph first: its read also gives the seed identity its edge count.
                let graph = dataset.strict_graph().await?;
                let seed = dataset.identity().await?;
                let numbering = ObsNumbering::new(dataset.obs_fields());
                let stems = dataset
                    .vector_fields()
                    .map(vector_stems)
                    .unwrap_or_default();
                blocking(move || {
                    let seed = parse_json(&seed, "dataset_identity.json")?;
                    to_json_bytes(&documents::identity(
                        &seed,
                        &numbering,
                        graph.as_deref(),
                        &stems,
                    )?)
                })
                .await
            }
            StrictArtifact::ConnectivityManifest => {
                let graph = dataset
                    .strict_graph()
                    .await?
                    .filter(|g| g.verdict.is_ok())
                    .ok_or_else(|| DatasetError::NotFound("No connectivity data".into()))?;
                Ok(to_json_bytes(&documents::connectivity_manifest(&graph)?)?)
            }
            StrictArtifact::EdgeWeights => dataset.strict_edge_weights().await,
            StrictArtifact::EdgeIndices { source } => {
                let edges = dataset.edges().await?.ok_or_else(|| {
                    DatasetError::NotFound("Connectivity data not available".into())
                })?;
                let source = *source;
                blocking(move || {
                    Ok(Bytes::from(if source {
                        encode_strict_indices(edges.src().into_iter(), IndexDtype::U16)
                    } else {
                        encode_strict_indices(edges.dst.iter().copied(), IndexDtype::U16)
                    }))
                })
                .await
            }
            // Derived artifacts never get here (see `compute`).
            _ => Err(DatasetError::Unsupported(format!(
                "`{}` is derived from a seed artifact",
                self.cache_key()
            ))),
        }
    }

    /// Translate the body of [`StrictArtifact::source`] into this artifact's body.
    /// `limit` bounds the work a quantised var manifest may do at request time.
    pub async fn derive(
        &self,
        dataset: &Dataset,
        source_body: Bytes,
        limit: ScanLimit,
    ) -> Result<Bytes, DatasetError> {
        match *self {
            StrictArtifact::ObsManifest(quantize) => {
                let numbering = ObsNumbering::new(dataset.obs_fields());
                let names: Vec<String> = dataset
                    .obs_fields()
                    .iter()
                    .map(|f| f.name.clone())
                    .collect();
                blocking(move || {
                    let seed = parse_json(&source_body, "obs_manifest.json")?;
                    to_json_bytes(&documents::obs_manifest(
                        &seed, &numbering, &names, quantize,
                    )?)
                })
                .await
            }
            StrictArtifact::VarManifest(quantize) => {
                let ranges = match quantize {
                    Some(_) => Some(gene_ranges(dataset, limit).await?),
                    None => None,
                };
                var_manifest(source_body, quantize.zip(ranges)).await
            }
            StrictArtifact::QuantizedObsValues(_, bits)
            | StrictArtifact::QuantizedGene(_, bits) => {
                blocking(move || {
                    let values = f32_values(&source_body)?;
                    let range = QuantRange::of(&values);
                    Ok(Bytes::from(quantize(&values, range, bits)))
                })
                .await
            }
            StrictArtifact::Identity
            | StrictArtifact::ConnectivityManifest
            | StrictArtifact::EdgeWeights
            | StrictArtifact::EdgeIndices { .. } => self.compute_direct(dataset).await,
        }
    }
}
