//! One opened atlas: its resolved metadata (cheap, at open) and its artifacts (computed on
//! first use and memoised per process).

mod documents;
mod error;
pub mod fields;
// Strict profile (#14): the graph's weights and degree rule.
mod strict_graph;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::anndata::{AnnDataLayout, AnnDataStore, ColumnMeta, MatrixMeta};
use crate::model::categories::{CodesBuffer, encode_codes};
use crate::model::centroids::CentroidParams;
use crate::model::edges::{Edges, connectivity_edges_csr};
use crate::model::embedding::{
    EmbeddingNorm, count_non_finite, normalize_embedding, scale_vector_field,
};
use crate::model::latent::detect_latent_key;
use crate::model::outliers::outlier_quantiles;
use crate::model::safe_name::{GeneIndex, first_matching_safe_name, safe_name};
use crate::model::umap::{UmapResolution, resolve_umap};
use crate::model::vectors::{VectorFields, detect_vector_fields};
use crate::model::{ModelError, ObsmEntry};
use crate::store::{ReadMetrics, StoreLocation};

pub use error::DatasetError;
pub use fields::FieldKind;
pub use strict_graph::StrictGraph;

/// Settings of the reference adapter that change artifacts (they enter the cache fingerprint).
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    /// obsm key of the latent space (auto-detected when `None`).
    pub latent_key: Option<String>,
    /// var column with gene ids, or `"index"`.
    pub gene_id_column: String,
    /// Normalise embeddings to [-1, 1].
    pub normalize_embeddings: bool,
    /// Outlier quantile for centroids.
    pub centroid_outlier_quantile: f64,
    /// Minimum cells per category for a centroid.
    pub centroid_min_points: i64,
    /// Dataset id (defaults to the safe name of the dataset name).
    pub dataset_id: Option<String>,
    /// Dataset name (defaults to the store's last path segment).
    pub dataset_name: Option<String>,
    /// Largest CSR X (stored values) whose gene columns may be gathered by scanning X.
    pub csr_scan_max_nnz: u64,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        DatasetOptions {
            latent_key: None,
            gene_id_column: "index".into(),
            normalize_embeddings: true,
            centroid_outlier_quantile: 0.95,
            centroid_min_points: 10,
            dataset_id: None,
            dataset_name: None,
            csr_scan_max_nnz: 50_000_000,
        }
    }
}

/// One obs field as the viewer sees it.
#[derive(Debug, Clone)]
pub struct ObsField {
    /// Column name.
    pub name: String,
    /// Its kind.
    pub kind: FieldKind,
    /// The column's layout.
    pub column: ColumnMeta,
}

/// A decoded categorical view of a field.
#[derive(Debug)]
pub struct CategoricalField {
    /// Category labels in order.
    pub labels: Vec<String>,
    /// Codes per cell (−1 missing).
    pub codes: Vec<i32>,
}

/// Normalised embedding of one dimension.
#[derive(Debug)]
pub struct Embedding {
    /// Row-major n × d normalised coordinates.
    pub values: Vec<f32>,
    /// Normalisation used (vectors reuse its scale).
    pub norm: EmbeddingNorm,
}

type Memo<T> = Arc<OnceCell<Arc<T>>>;

/// Latent matrix (row-major values, columns).
type Latent = (Vec<f32>, usize);

/// An opened atlas.
#[derive(Debug)]
pub struct Dataset {
    store: AnnDataStore,
    layout: AnnDataLayout,
    options: DatasetOptions,
    centroid_params: CentroidParams,
    id: String,
    name: String,
    created_at: String,
    umap: UmapResolution,
    vectors: Option<VectorFields>,
    latent_key: Option<String>,
    obs_fields: Vec<ObsField>,
    obs_field_names: Vec<String>,
    genes: OnceCell<Arc<GeneIndex>>,
    embeddings: [OnceCell<Arc<Embedding>>; 3],
    categorical: Mutex<HashMap<usize, Memo<CategoricalField>>>,
    continuous: Mutex<HashMap<usize, Memo<Vec<f32>>>>,
    latent: OnceCell<Option<Arc<Latent>>>,
    edges: OnceCell<Option<Arc<Edges>>>,
    /// Strict profile (#14): the graph's strict verdict (see `strict_graph.rs`).
    strict_graph: OnceCell<Option<Arc<StrictGraph>>>,
    documents: documents::DocumentCache,
    /// Bounds concurrent full scans of a CSR X (a gene without the gene-major pack): each
    /// holds a stream of X's chunks, so unbounded concurrency would make memory grow with
    /// the number of clients instead of staying flat.
    csr_scans: tokio::sync::Semaphore,
}

fn memo<T>(map: &Mutex<HashMap<usize, Memo<T>>>, key: usize) -> Memo<T> {
    let mut guard = map.lock().unwrap_or_else(|p| p.into_inner());
    guard.entry(key).or_default().clone()
}

impl Dataset {
    /// Open the atlas at `location`: one metadata read when consolidated, then pure logic.
    pub async fn open(
        location: StoreLocation,
        options: DatasetOptions,
        metrics: Arc<ReadMetrics>,
    ) -> Result<Self, DatasetError> {
        let store = AnnDataStore::open(location, metrics).await?;
        let layout = store.layout().await?;
        let entries: Vec<ObsmEntry> = layout
            .obsm
            .iter()
            .map(|e| {
                let shape = if e.shape.len() == 1 {
                    vec![e.shape[0], 1]
                } else {
                    e.shape.clone()
                };
                ObsmEntry::new(e.name.clone(), shape)
            })
            .collect();
        let umap = resolve_umap(layout.n_obs, &entries)?;
        let vectors = detect_vector_fields(layout.n_obs, &entries, &umap.available_dimensions);
        let latent_key = detect_latent_key(options.latent_key.as_deref(), &entries);
        let obs_fields: Vec<ObsField> = layout
            .obs
            .columns
            .iter()
            .map(|c| ObsField {
                name: c.name.clone(),
                kind: FieldKind::of(&c.encoding),
                column: c.clone(),
            })
            .collect();
        let obs_field_names = obs_fields.iter().map(|f| f.name.clone()).collect();
        let name = options
            .dataset_name
            .clone()
            .unwrap_or_else(|| store.location().name.clone());
        let id = options
            .dataset_id
            .clone()
            .unwrap_or_else(|| safe_name(&name));
        let created_at = time::OffsetDateTime::now_utc()
            .format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .unwrap_or_default();
        let centroid_params = CentroidParams::sanitized(
            options.centroid_outlier_quantile,
            options.centroid_min_points,
        );
        Ok(Dataset {
            store,
            layout,
            options,
            centroid_params,
            id,
            name,
            created_at,
            umap,
            vectors,
            latent_key,
            obs_fields,
            obs_field_names,
            genes: OnceCell::new(),
            embeddings: Default::default(),
            categorical: Mutex::new(HashMap::new()),
            continuous: Mutex::new(HashMap::new()),
            latent: OnceCell::new(),
            edges: OnceCell::new(),
            strict_graph: OnceCell::new(),
            documents: Default::default(),
            csr_scans: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
        })
    }

    /// Dataset id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Dataset name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of cells.
    pub fn n_cells(&self) -> u64 {
        self.layout.n_obs
    }

    /// Number of genes.
    pub fn n_genes(&self) -> u64 {
        self.layout.n_vars
    }

    /// The store's layout.
    pub fn layout(&self) -> &AnnDataLayout {
        &self.layout
    }

    /// The underlying store.
    pub fn store(&self) -> &AnnDataStore {
        &self.store
    }

    /// The source format as the reference reports it: `"zarr"` or `"h5ad"`.
    pub fn source_format(&self) -> &'static str {
        match self.store.format() {
            crate::anndata::SourceFormat::H5ad => "h5ad",
            crate::anndata::SourceFormat::Zarr(_) => "zarr",
        }
    }

    /// Whether the reference reads this source in backed mode (it does for `.h5ad`).
    pub fn is_backed(&self) -> bool {
        self.store.format() == crate::anndata::SourceFormat::H5ad
    }

    /// Options in force.
    pub fn options(&self) -> &DatasetOptions {
        &self.options
    }

    /// UMAP resolution (available dimensions and keys).
    pub fn umap(&self) -> &UmapResolution {
        &self.umap
    }

    /// Detected vector fields.
    pub fn vector_fields(&self) -> Option<&VectorFields> {
        self.vectors.as_ref()
    }

    /// Latent key used for outliers.
    pub fn latent_key(&self) -> Option<&str> {
        self.latent_key.as_deref()
    }

    /// Obs fields in column order.
    pub fn obs_fields(&self) -> &[ObsField] {
        &self.obs_fields
    }

    /// Whether `obsp['connectivities']` exists.
    pub fn has_connectivity(&self) -> bool {
        !matches!(self.layout.connectivities, MatrixMeta::Absent)
    }

    /// The obs field a URL component names: the first column whose safe name matches.
    pub fn resolve_obs_field(&self, component: &str) -> Option<usize> {
        first_matching_safe_name(&self.obs_field_names, component)
    }

    /// Gene ids in var order, with the reference's reverse lookup.
    pub async fn genes(&self) -> Result<Arc<GeneIndex>, DatasetError> {
        self.genes
            .get_or_try_init(|| async {
                let ids = if self.options.gene_id_column == "index" {
                    self.store.read_index(&self.layout.var).await?
                } else {
                    let column = self
                        .layout
                        .var
                        .columns
                        .iter()
                        .find(|c| c.name == self.options.gene_id_column)
                        .ok_or_else(|| {
                            DatasetError::NotFound(format!(
                                "gene_id_column '{}' not found in var",
                                self.options.gene_id_column
                            ))
                        })?;
                    fields::string_values(&self.store.read_column(column).await?)
                };
                Ok::<_, DatasetError>(Arc::new(GeneIndex::new(&ids)))
            })
            .await
            .cloned()
    }

    /// Normalised embedding for `dim`.
    pub async fn embedding(&self, dim: u8) -> Result<Arc<Embedding>, DatasetError> {
        let key = self
            .umap
            .key_for(dim)
            .ok_or_else(|| DatasetError::NotFound("Points data not available".into()))?
            .to_string();
        let slot = &self.embeddings[usize::from(dim.clamp(1, 3)) - 1];
        slot.get_or_try_init(|| async {
            let entry = self
                .layout
                .obsm
                .iter()
                .find(|e| e.name == key)
                .ok_or_else(|| DatasetError::NotFound(format!("obsm `{key}` not found")))?;
            let (raw, d) = self.store.read_matrix_f32(&entry.matrix).await?;
            if d != usize::from(dim) {
                return Err(DatasetError::NotFound(format!(
                    "obsm `{key}` has {d} columns, expected {dim}"
                )));
            }
            let non_finite = count_non_finite(&raw);
            if non_finite > 0 {
                return Err(ModelError::NonFiniteEmbedding { count: non_finite }.into());
            }
            let (values, norm) = normalize_embedding(
                &raw,
                self.layout.n_obs as usize,
                usize::from(dim),
                self.options.normalize_embeddings,
            )?;
            Ok(Arc::new(Embedding { values, norm }))
        })
        .await
        .cloned()
    }

    /// Categorical view (`astype("category")`) of obs field `index`.
    pub async fn categorical(&self, index: usize) -> Result<Arc<CategoricalField>, DatasetError> {
        let field = self.field(index)?;
        memo(&self.categorical, index)
            .get_or_try_init(|| async {
                let data = self.store.read_column(&field.column).await?;
                let (labels, codes) = fields::categorical_view(&data);
                Ok::<_, DatasetError>(Arc::new(CategoricalField { labels, codes }))
            })
            .await
            .cloned()
    }

    /// Numeric view (`to_numeric(..., errors="coerce")` as f32) of obs field `index`.
    pub async fn continuous(&self, index: usize) -> Result<Arc<Vec<f32>>, DatasetError> {
        let field = self.field(index)?;
        memo(&self.continuous, index)
            .get_or_try_init(|| async {
                let data = self.store.read_column(&field.column).await?;
                Ok::<_, DatasetError>(Arc::new(fields::numeric_values(&data)))
            })
            .await
            .cloned()
    }

    fn field(&self, index: usize) -> Result<&ObsField, DatasetError> {
        self.obs_fields
            .get(index)
            .ok_or_else(|| DatasetError::NotFound(format!("Obs field not found: #{index}")))
    }

    async fn latent(&self) -> Result<Option<Arc<Latent>>, DatasetError> {
        self.latent
            .get_or_try_init(|| async {
                let Some(key) = &self.latent_key else {
                    return Ok(None);
                };
                let Some(entry) = self.layout.obsm.iter().find(|e| &e.name == key) else {
                    return Ok(None);
                };
                let (values, k) = self.store.read_matrix_f32(&entry.matrix).await?;
                Ok::<_, DatasetError>(Some(Arc::new((values, k))))
            })
            .await
            .cloned()
    }

    /// Connectivity edges (None when the store has no graph).
    pub async fn edges(&self) -> Result<Option<Arc<Edges>>, DatasetError> {
        self.edges
            .get_or_try_init(|| async {
                let meta = match &self.layout.connectivities {
                    MatrixMeta::Absent => return Ok(None),
                    MatrixMeta::Csr(meta) => (meta, false),
                    MatrixMeta::Csc(meta) => (meta, true),
                    MatrixMeta::Dense { .. } => {
                        return Err(DatasetError::Unsupported(
                            "obsp['connectivities'] is dense; expected a sparse matrix".into(),
                        ));
                    }
                };
                let arrays = self.store.read_sparse(meta.0).await?;
                let n = self.layout.n_obs as usize;
                let edges = edges_from_arrays(n, &arrays, meta.1)?;
                Ok::<_, DatasetError>(Some(Arc::new(edges)))
            })
            .await
            .cloned()
    }

    /// `points_<dim>d.bin`.
    pub async fn points(&self, dim: u8) -> Result<Bytes, DatasetError> {
        if !self.umap.available_dimensions.contains(&dim) {
            return Err(DatasetError::NotFound("Points data not available".into()));
        }
        let embedding = self.embedding(dim).await?;
        Ok(f32_bytes(&embedding.values))
    }

    /// `obs/<field>.values.f32`.
    pub async fn obs_values(&self, index: usize) -> Result<Bytes, DatasetError> {
        Ok(f32_bytes(&self.continuous(index).await?))
    }

    /// `obs/<field>.codes.u8|u16`.
    pub async fn obs_codes(&self, index: usize) -> Result<Bytes, DatasetError> {
        let cat = self.categorical(index).await?;
        let CodesBuffer { bytes, .. } = encode_codes(&cat.codes, cat.labels.len())?;
        Ok(Bytes::from(bytes))
    }

    /// `obs/<field>.outliers.f32`.
    pub async fn obs_outliers(&self, index: usize) -> Result<Bytes, DatasetError> {
        let cat = self.categorical(index).await?;
        let latent = self.latent().await?;
        let values = outlier_quantiles(
            latent.as_deref().map(|(v, k)| (v.as_slice(), *k)),
            &cat.codes,
            cat.labels.len(),
            self.centroid_params.min_points,
        )?;
        Ok(f32_bytes(&values))
    }

    /// `var/<gene>.values.f32` for gene index `gene`.
    pub async fn gene_values(&self, gene: usize) -> Result<Bytes, DatasetError> {
        if let MatrixMeta::Csr(meta) = &self.layout.x
            && meta.nnz > self.options.csr_scan_max_nnz
        {
            let genes = self.genes().await?;
            return Err(DatasetError::NeedsPrecompute {
                gene: genes.ids().get(gene).cloned().unwrap_or_default(),
                nnz: meta.nnz,
                limit: self.options.csr_scan_max_nnz,
            });
        }
        // Only CSR needs a scan of X; CSC and dense X read one column's chunks.
        let _scan =
            match &self.layout.x {
                MatrixMeta::Csr(_) => Some(self.csr_scans.acquire().await.map_err(|_| {
                    DatasetError::Unsupported("the dataset is shutting down".into())
                })?),
                _ => None,
            };
        let column = self
            .store
            .read_gene_column(&self.layout.x, self.layout.n_obs, gene as u64)
            .await?;
        Ok(f32_bytes(&column))
    }

    /// `connectivity/edges.src.bin` (`source = true`) or `edges.dst.bin`.
    pub async fn edge_file(&self, source: bool) -> Result<Bytes, DatasetError> {
        let edges = self
            .edges()
            .await?
            .ok_or_else(|| DatasetError::NotFound("Connectivity data not available".into()))?;
        Ok(Bytes::from(if source {
            edges.src_bytes()
        } else {
            edges.dst_bytes()
        }))
    }

    /// `vectors/<field>_<dim>d.bin`.
    pub async fn vectors(&self, field: &str, dim: u8) -> Result<Bytes, DatasetError> {
        let key = self
            .vectors
            .as_ref()
            .and_then(|v| v.obsm_key(field, dim))
            .ok_or_else(|| {
                DatasetError::NotFound(format!(
                    "Vector field '{field}' does not provide {dim}D data"
                ))
            })?
            .to_string();
        let embedding = self.embedding(dim).await?;
        let entry = self
            .layout
            .obsm
            .iter()
            .find(|e| e.name == key)
            .ok_or_else(|| DatasetError::NotFound(format!("obsm `{key}` not found")))?;
        let (raw, _) = self.store.read_matrix_f32(&entry.matrix).await?;
        let scaled = scale_vector_field(
            &raw,
            self.layout.n_obs as usize,
            usize::from(dim),
            &embedding.norm,
            self.options.normalize_embeddings,
        )?;
        Ok(f32_bytes(&scaled))
    }
}

fn edges_from_arrays(
    n: usize,
    arrays: &crate::anndata::matrix::SparseArrays,
    csc: bool,
) -> Result<Edges, ModelError> {
    use crate::anndata::Numbers;
    use crate::model::edges::connectivity_edges_csc;
    macro_rules! run {
        ($data:expr) => {
            if csc {
                connectivity_edges_csc(n, &arrays.indptr, &arrays.indices, $data)
            } else {
                connectivity_edges_csr(n, &arrays.indptr, &arrays.indices, $data)
            }
        };
    }
    match &arrays.data {
        Numbers::Bool(v) => run!(v),
        Numbers::I8(v) => run!(v),
        Numbers::I16(v) => run!(v),
        Numbers::I32(v) => run!(v),
        Numbers::I64(v) => run!(v),
        Numbers::U8(v) => run!(v),
        Numbers::U16(v) => run!(v),
        Numbers::U32(v) => run!(v),
        Numbers::U64(v) => run!(v),
        Numbers::F16(v) | Numbers::F32(v) => run!(v),
        Numbers::F64(v) => run!(v),
    }
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(values: &[f32]) -> Bytes {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Bytes::from(out)
}
