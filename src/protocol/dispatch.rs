//! From a parsed [`Route`] to an [`Artifact`] of one atlas, and from an artifact to its bytes.

use bytes::Bytes;

use super::route::{ObsPayload, Route};
use super::strict::{ScanLimit, StrictArtifact};
use crate::dataset::{Dataset, DatasetError};
use crate::model::safe_name::safe_name;

/// Body type of an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// `application/json`
    Json,
    /// `application/octet-stream`
    Binary,
}

impl ArtifactKind {
    /// The Content-Type the reference sends.
    pub fn content_type(self) -> &'static str {
        match self {
            ArtifactKind::Json => "application/json",
            ArtifactKind::Binary => "application/octet-stream",
        }
    }
}

/// One servable artifact of an atlas, resolved to real fields and genes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Artifact {
    /// `dataset_identity.json`
    Identity,
    /// `obs_manifest.json`
    ObsManifest,
    /// `var_manifest.json`
    VarManifest,
    /// `connectivity_manifest.json`
    ConnectivityManifest,
    /// `points_<d>d.bin`
    Points(u8),
    /// continuous values of obs field #i
    ObsValues(usize),
    /// category codes of obs field #i
    ObsCodes(usize),
    /// outlier quantiles of obs field #i
    ObsOutliers(usize),
    /// expression of gene #i
    Gene(usize),
    /// edge sources
    EdgesSrc,
    /// edge destinations
    EdgesDst,
    /// vector field (id, dim)
    Vectors(String, u8),
    /// An artifact only the strict profile serves (its documents, edge weights, quantised
    /// payloads; see [`crate::protocol::strict`]).
    Strict(StrictArtifact),
}

impl Artifact {
    /// A stable name of the artifact inside its atlas (cache key component). Obs fields and
    /// genes are named by index, so no user-controlled text reaches a storage key unescaped.
    pub fn cache_key(&self) -> String {
        match self {
            Artifact::Identity => "dataset_identity.json".into(),
            Artifact::ObsManifest => "obs_manifest.json".into(),
            Artifact::VarManifest => "var_manifest.json".into(),
            Artifact::ConnectivityManifest => "connectivity_manifest.json".into(),
            Artifact::Points(d) => format!("points_{d}d.bin"),
            Artifact::ObsValues(i) => format!("obs/{i}.values.f32"),
            Artifact::ObsCodes(i) => format!("obs/{i}.codes"),
            Artifact::ObsOutliers(i) => format!("obs/{i}.outliers.f32"),
            Artifact::Gene(i) => format!("var/{i}.values.f32"),
            Artifact::EdgesSrc => "connectivity/edges.src.bin".into(),
            Artifact::EdgesDst => "connectivity/edges.dst.bin".into(),
            Artifact::Vectors(id, d) => format!("vectors/{}_{d}d.bin", safe_name(id)),
            Artifact::Strict(s) => s.cache_key(),
        }
    }

    /// Body type.
    pub fn kind(&self) -> ArtifactKind {
        match self {
            Artifact::Identity
            | Artifact::ObsManifest
            | Artifact::VarManifest
            | Artifact::ConnectivityManifest => ArtifactKind::Json,
            Artifact::Strict(s) if s.is_json() => ArtifactKind::Json,
            _ => ArtifactKind::Binary,
        }
    }

    /// Compute the artifact's uncompressed body.
    pub async fn compute(&self, dataset: &Dataset) -> Result<Bytes, DatasetError> {
        match self {
            Artifact::Identity => dataset.identity().await,
            Artifact::ObsManifest => dataset.obs_manifest().await,
            Artifact::VarManifest => dataset.var_manifest().await,
            Artifact::ConnectivityManifest => dataset
                .connectivity_manifest()
                .await?
                .ok_or_else(|| DatasetError::NotFound("No connectivity data".into())),
            Artifact::Points(d) => dataset.points(*d).await,
            Artifact::ObsValues(i) => dataset.obs_values(*i).await,
            Artifact::ObsCodes(i) => dataset.obs_codes(*i).await,
            Artifact::ObsOutliers(i) => dataset.obs_outliers(*i).await,
            Artifact::Gene(i) => dataset.gene_values(*i).await,
            Artifact::EdgesSrc => dataset.edge_file(true).await,
            Artifact::EdgesDst => dataset.edge_file(false).await,
            Artifact::Vectors(id, d) => dataset.vectors(id, *d).await,
            Artifact::Strict(s) => s.compute(dataset).await,
        }
    }

    /// The artifact whose body this one is translated from (strict documents and quantised
    /// payloads), so the HTTP layer can take that body from memory or the cache prefix and
    /// only call [`Artifact::derive`].
    pub fn derived_from(&self) -> Option<Artifact> {
        match self {
            Artifact::Strict(s) => s.source(),
            _ => None,
        }
    }

    /// This artifact's body from the body of [`Artifact::derived_from`].
    pub async fn derive(&self, dataset: &Dataset, source: Bytes) -> Result<Bytes, DatasetError> {
        match self {
            Artifact::Strict(s) => s.derive(dataset, source, ScanLimit::Dataset).await,
            _ => self.compute(dataset).await,
        }
    }

    /// Whether a computed body is written back to the cache prefix: not for genes, which come
    /// from the gene-major pack `precompute` builds, nor for what derives from a gene.
    pub fn write_back(&self) -> bool {
        match self {
            Artifact::Gene(_) => false,
            Artifact::Strict(s) => s.write_back(),
            _ => true,
        }
    }
}

/// Resolve a dataset route to an artifact; unknown fields, genes, dimensions → `NotFound`
/// with the reference's message.
pub async fn resolve_artifact(dataset: &Dataset, route: &Route) -> Result<Artifact, DatasetError> {
    Ok(match route {
        Route::Identity => Artifact::Identity,
        Route::ObsManifest => Artifact::ObsManifest,
        Route::VarManifest => Artifact::VarManifest,
        Route::ConnectivityManifest => {
            if !dataset.has_connectivity() {
                return Err(DatasetError::NotFound("No connectivity data".into()));
            }
            Artifact::ConnectivityManifest
        }
        Route::Points { dim } => {
            if !dataset.umap().available_dimensions.contains(dim) {
                return Err(DatasetError::NotFound("Points data not available".into()));
            }
            Artifact::Points(*dim)
        }
        Route::Obs {
            component, payload, ..
        } => {
            let index = dataset.resolve_obs_field(component).ok_or_else(|| {
                DatasetError::NotFound(format!("Obs field not found: {component}"))
            })?;
            match payload {
                ObsPayload::Values => Artifact::ObsValues(index),
                ObsPayload::Codes => Artifact::ObsCodes(index),
                ObsPayload::Outliers => Artifact::ObsOutliers(index),
            }
        }
        Route::Var { component, .. } => {
            let genes = dataset.genes().await?;
            let index = genes
                .lookup(component)
                .ok_or_else(|| DatasetError::NotFound(format!("Gene not found: {component}")))?;
            Artifact::Gene(index)
        }
        Route::Edges { source, .. } => {
            if !dataset.has_connectivity() {
                return Err(DatasetError::NotFound(
                    "Connectivity data not available".into(),
                ));
            }
            if *source {
                Artifact::EdgesSrc
            } else {
                Artifact::EdgesDst
            }
        }
        Route::Vectors { field, dim, .. } => {
            let known = dataset
                .vector_fields()
                .and_then(|v| v.obsm_key(field, *dim))
                .is_some();
            if !known {
                return Err(DatasetError::NotFound(format!(
                    "Vector field '{field}' not available"
                )));
            }
            Artifact::Vectors(field.clone(), *dim)
        }
        Route::Health | Route::Info | Route::Datasets => {
            return Err(DatasetError::NotFound("Not found".into()));
        }
    })
}
