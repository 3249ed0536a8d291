//! The four JSON documents of the seed protocol, built once per opened atlas and kept in its
//! memory budget (the reference rebuilds them per request; their content is the same).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::fields::FieldKind;
use super::{CategoricalField, Dataset, DatasetError, items};
use crate::compute::run_sized;
use crate::model::categories::CodesDtype;
use crate::model::centroids::compute_centroids;
use crate::model::continuous::finite_min_max;
use crate::model::edges::IndexDtype;

/// An obs column read for the obs manifest.
enum LoadedField {
    Continuous(Arc<Vec<f32>>),
    Category(Arc<CategoricalField>),
    /// Left out of the manifests (more than 65,535 categories; see `Dataset::warnings`).
    LeftOut,
}

fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

impl Dataset {
    /// `dataset_identity.json`.
    pub async fn identity(&self) -> Result<Bytes, DatasetError> {
        let bytes: Arc<Bytes> = self
            .memory
            .get_or_try_insert(items::IDENTITY, async {
                Ok::<_, DatasetError>(to_bytes(&self.identity_value().await?))
            })
            .await?;
        Ok(Bytes::clone(&bytes))
    }

    async fn identity_value(&self) -> Result<Value, DatasetError> {
        let mut n_categorical = 0;
        let mut n_continuous = 0;
        let mut obs_fields = Vec::with_capacity(self.obs_fields.len());
        for (index, field) in self.obs_fields.iter().enumerate() {
            let mut entry = Map::new();
            entry.insert("key".into(), json!(field.name));
            entry.insert("kind".into(), json!(field.kind.as_str()));
            match field.kind {
                FieldKind::Category => {
                    // Fields with more categories than a code can address are left out (those
                    // declared in metadata already at open).
                    let n = match &field.column.encoding {
                        crate::anndata::ColumnEncoding::Categorical { n_categories, .. } => {
                            *n_categories as usize
                        }
                        _ => match self.servable_categorical(index).await? {
                            Some(categorical) => categorical.labels.len(),
                            None => continue,
                        },
                    };
                    n_categorical += 1;
                    entry.insert("n_categories".into(), json!(n));
                }
                FieldKind::Continuous => n_continuous += 1,
            }
            obs_fields.push(Value::Object(entry));
        }
        let n_obs_fields = obs_fields.len();
        let has_connectivity = self.has_connectivity();
        let n_edges = if has_connectivity {
            // The reference reports null when edge extraction fails.
            match self.edges().await {
                Ok(Some(edges)) => json!(edges.n_edges()),
                _ => Value::Null,
            }
        } else {
            Value::Null
        };
        let dims = &self.umap.available_dimensions;
        let files: Map<String, Value> = dims
            .iter()
            .map(|d| (format!("{d}d"), json!(format!("points_{d}d.bin"))))
            .collect();
        let mut embeddings = Map::new();
        embeddings.insert("available_dimensions".into(), json!(dims));
        embeddings.insert(
            "default_dimension".into(),
            json!(self.umap.default_dimension()),
        );
        embeddings.insert("files".into(), Value::Object(files));
        if let Some(resolution) = &self.umap.umap_resolution {
            embeddings.insert("umap_resolution".into(), resolution.clone());
        }
        let location = self.store.location();
        let source_path = if location.is_local {
            Value::Null
        } else {
            json!(location.display)
        };
        let mut identity = json!({
            "version": 2,
            "id": self.id,
            "name": self.name,
            "description": "Loaded directly from AnnData",
            "created_at": self.created_at,
            "cellucid_data_version": "anndata_adapter",
            "stats": {
                "n_cells": self.n_cells(),
                "n_genes": self.n_genes(),
                "n_obs_fields": n_obs_fields,
                "n_categorical_fields": n_categorical,
                "n_continuous_fields": n_continuous,
                "has_connectivity": has_connectivity,
                "n_edges": n_edges,
            },
            "embeddings": Value::Object(embeddings),
            "obs_fields": obs_fields,
            "export_settings": {
                "compression": null,
                "var_quantization": null,
                "obs_continuous_quantization": null,
                "obs_categorical_dtype": "auto",
            },
            "source": {
                "type": "anndata_adapter",
                "format": self.source_format(),
                "path": source_path,
                "is_backed": self.is_backed(),
            },
            "_anndata_adapter": true,
        });
        if let (Some(vectors), Some(obj)) = (&self.vectors, identity.as_object_mut()) {
            obj.insert("vector_fields".into(), vectors.to_json());
        }
        Ok(identity)
    }

    /// `obs_manifest.json` (compact_v1).
    pub async fn obs_manifest(&self) -> Result<Bytes, DatasetError> {
        let bytes: Arc<Bytes> = self
            .memory
            .get_or_try_insert(items::OBS_MANIFEST, async {
                Ok::<_, DatasetError>(to_bytes(&self.obs_manifest_value().await?))
            })
            .await?;
        Ok(Bytes::clone(&bytes))
    }

    async fn obs_manifest_value(&self) -> Result<Value, DatasetError> {
        // Every column and embedding is read concurrently (on object storage the latencies
        // overlap), then the centroids of each (field, dimension) pair are computed in parallel
        // off the executor; the document is assembled in field order.
        let loaded = futures::future::try_join_all(self.obs_fields.iter().enumerate().map(
            |(index, field)| async move {
                Ok::<_, DatasetError>(match field.kind {
                    FieldKind::Continuous => LoadedField::Continuous(self.continuous(index).await?),
                    FieldKind::Category => match self.servable_categorical(index).await? {
                        Some(categorical) => LoadedField::Category(categorical),
                        None => LoadedField::LeftOut,
                    },
                })
            },
        ));
        let dims = &self.umap.available_dimensions;
        let embeddings = futures::future::try_join_all(dims.iter().map(|&dim| self.embedding(dim)));
        let (loaded, embeddings) = futures::future::try_join(loaded, embeddings).await?;

        let mut centroid_tasks = Vec::new();
        for field in &loaded {
            let LoadedField::Category(cat) = field else {
                continue;
            };
            for (&dim, embedding) in dims.iter().zip(&embeddings) {
                let (cat, embedding, params) =
                    (cat.clone(), embedding.clone(), self.centroid_params);
                centroid_tasks.push(run_sized(cat.codes.len() * usize::from(dim), move || {
                    compute_centroids(
                        &embedding.values,
                        usize::from(dim),
                        &cat.codes,
                        &cat.labels,
                        &params,
                    )
                }));
            }
        }
        let mut centroids = futures::future::try_join_all(centroid_tasks)
            .await?
            .into_iter();

        let mut continuous = Vec::new();
        let mut categorical = Vec::new();
        for (field, loaded) in self.obs_fields.iter().zip(&loaded) {
            match loaded {
                LoadedField::Continuous(values) => {
                    let (min, max) = finite_min_max(values);
                    continuous.push(json!([field.name, min, max]));
                }
                LoadedField::Category(cat) => {
                    let dtype = CodesDtype::for_n_categories(cat.labels.len())?;
                    let mut by_dim = Map::new();
                    for &dim in dims {
                        let per_dim = centroids.next().ok_or_else(|| {
                            DatasetError::Unsupported("centroid task missing".into())
                        })??;
                        by_dim.insert(
                            dim.to_string(),
                            serde_json::to_value(per_dim).unwrap_or_default(),
                        );
                    }
                    categorical.push(json!([
                        field.name,
                        cat.labels,
                        dtype.as_str(),
                        dtype.missing_value(),
                        Value::Object(by_dim),
                        0.0,
                        1.0
                    ]));
                }
                LoadedField::LeftOut => {}
            }
        }
        Ok(json!({
            "_format": "compact_v1",
            "n_points": self.n_cells(),
            "centroid_outlier_quantile": self.centroid_params.quantile,
            "latent_key": self.latent_key,
            "compression": null,
            "_obsSchemas": {
                "continuous": {
                    "pathPattern": "obs/{key}.values.f32",
                    "ext": "f32",
                    "dtype": "float32",
                    "quantized": false,
                },
                "categorical": {
                    "codesPathPattern": "obs/{key}.codes.{ext}",
                    "outlierPathPattern": "obs/{key}.outliers.f32",
                    "outlierExt": "f32",
                    "outlierDtype": "float32",
                    "outlierQuantized": false,
                },
            },
            "_continuousFields": continuous,
            "_categoricalFields": categorical,
        }))
    }

    /// `var_manifest.json` (compact_v1).
    pub async fn var_manifest(&self) -> Result<Bytes, DatasetError> {
        let bytes: Arc<Bytes> = self
            .memory
            .get_or_try_insert(items::VAR_MANIFEST, async {
                let genes = self.genes().await?;
                let fields: Vec<Value> = genes.ids().iter().map(|g| json!([g])).collect();
                Ok::<_, DatasetError>(to_bytes(&json!({
                    "_format": "compact_v1",
                    "n_points": self.n_cells(),
                    "var_gene_id_column": self.options.gene_id_column,
                    "compression": null,
                    "quantization": null,
                    "_varSchema": {
                        "kind": "continuous",
                        "pathPattern": "var/{key}.values.f32",
                        "ext": "f32",
                        "dtype": "float32",
                        "quantized": false,
                    },
                    "fields": fields,
                })))
            })
            .await?;
        Ok(Bytes::clone(&bytes))
    }

    /// `connectivity_manifest.json`, or `None` when there is no graph (404).
    pub async fn connectivity_manifest(&self) -> Result<Option<Bytes>, DatasetError> {
        if !self.has_connectivity() {
            return Ok(None);
        }
        let bytes: Arc<Bytes> = self
            .memory
            .get_or_try_insert(items::CONNECTIVITY_MANIFEST, async {
                let Some(edges) = self.edges().await? else {
                    return Err(DatasetError::NotFound("No connectivity data".into()));
                };
                let dtype = IndexDtype::for_n_cells(self.n_cells());
                Ok::<_, DatasetError>(to_bytes(&json!({
                    "format": "edge_pairs",
                    "n_cells": self.n_cells(),
                    "n_edges": edges.n_edges(),
                    "max_neighbors": edges.max_neighbors,
                    "index_bytes": dtype.index_bytes(),
                    "index_dtype": dtype.as_str(),
                    "sourcesPath": "connectivity/edges.src.bin",
                    "destinationsPath": "connectivity/edges.dst.bin",
                    "compression": null,
                })))
            })
            .await?;
        Ok(Some(Bytes::clone(&bytes)))
    }
}
