//! UMAP key resolution (protocol §6.6 / §6.7, adapter `_detect_dimensions` and
//! `_select_default_dimension`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::error::{ModelError, ModelResult};
use crate::model::obsm::{ObsmEntry, find_entry, py_str_list_repr};

/// Result of resolving which obsm key serves which embedding dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct UmapResolution {
    /// Sorted, unique dimensions that can be served (subset of {1, 2, 3}, never empty).
    pub available_dimensions: Vec<u8>,
    /// Dimension → obsm key holding that embedding (`X_umap_<d>d` or `X_umap`).
    pub key_by_dim: BTreeMap<u8, String>,
    /// The `embeddings.umap_resolution` object of `dataset_identity.json`, present exactly when
    /// an `X_umap` key exists; keys in the reference's order.
    pub umap_resolution: Option<Value>,
}

impl UmapResolution {
    /// The default dimension for these available dimensions (see [`default_dimension`]).
    pub fn default_dimension(&self) -> u8 {
        default_dimension(&self.available_dimensions)
    }

    /// The obsm key serving dimension `dim`, if that dimension is available.
    pub fn key_for(&self, dim: u8) -> Option<&str> {
        self.key_by_dim.get(&dim).map(String::as_str)
    }
}

/// Resolves UMAP embeddings from the obsm entries (in obsm order), like the reference.
///
/// Pass 1: `X_umap_<d>d` (d = 1, 2, 3) is used if it is 2-D with `n_cells` rows and exactly `d`
/// columns. Pass 2: if `X_umap` exists, `umap_resolution` is always set (ignored with a reason,
/// or `used_as` dimension k when k ∈ {1,2,3} and no explicit key serves k).
///
/// Errors with [`ModelError::NoUmapEmbedding`] when nothing usable was found.
pub fn resolve_umap(n_cells: u64, entries: &[ObsmEntry]) -> ModelResult<UmapResolution> {
    let mut available: Vec<u8> = Vec::new();
    let mut key_by_dim: BTreeMap<u8, String> = BTreeMap::new();
    let mut resolution: Option<Value> = None;

    for dim in [1u8, 2, 3] {
        let key = format!("X_umap_{dim}d");
        if let Some(entry) = find_entry(entries, &key) {
            let shape = &entry.shape;
            if shape.len() != 2 || shape[0] != n_cells || shape[1] != u64::from(dim) {
                continue; // the reference logs a warning and skips the key
            }
            available.push(dim);
            key_by_dim.insert(dim, key);
        }
    }

    if let Some(entry) = find_entry(entries, "X_umap") {
        let shape = &entry.shape;
        let mut obj = Map::new();
        obj.insert("source_key".into(), json!("X_umap"));
        if shape.len() != 2 {
            obj.insert("action".into(), json!("ignored"));
            obj.insert("reason".into(), json!("invalid_shape"));
            obj.insert("shape".into(), json!(shape));
        } else if shape[0] != n_cells {
            obj.insert("action".into(), json!("ignored"));
            obj.insert("reason".into(), json!("row_count_mismatch"));
            obj.insert("shape".into(), json!(shape));
            obj.insert("expected_rows".into(), json!(n_cells));
        } else {
            let n_dims = shape[1];
            let alias_key = format!("X_umap_{n_dims}d");
            match u8::try_from(n_dims) {
                Ok(d @ 1..=3) if key_by_dim.contains_key(&d) => {
                    obj.insert("action".into(), json!("ignored"));
                    obj.insert("reason".into(), json!("explicit_key_present"));
                    obj.insert("dim".into(), json!(n_dims));
                    obj.insert("alias_key".into(), json!(alias_key));
                }
                Ok(d @ 1..=3) => {
                    available.push(d);
                    key_by_dim.insert(d, "X_umap".to_string());
                    obj.insert("action".into(), json!("used_as"));
                    obj.insert("dim".into(), json!(n_dims));
                    obj.insert("alias_key".into(), json!(alias_key));
                }
                _ => {
                    obj.insert("action".into(), json!("ignored"));
                    obj.insert("reason".into(), json!("unsupported_dim"));
                    obj.insert("n_dims".into(), json!(n_dims));
                }
            }
        }
        resolution = Some(Value::Object(obj));
    }

    if available.is_empty() {
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        return Err(ModelError::NoUmapEmbedding {
            available_keys_repr: py_str_list_repr(&keys),
        });
    }
    available.sort_unstable();
    available.dedup();
    Ok(UmapResolution {
        available_dimensions: available,
        key_by_dim,
        umap_resolution: resolution,
    })
}

/// Default dimension: 3 if available, else 2, else 1; otherwise the first listed dimension
/// (the reference's fallback), or 3 for an empty list (never happens after [`resolve_umap`]).
pub fn default_dimension(available: &[u8]) -> u8 {
    for dim in [3u8, 2, 1] {
        if available.contains(&dim) {
            return dim;
        }
    }
    available.first().copied().unwrap_or(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, shape: &[u64]) -> ObsmEntry {
        ObsmEntry::new(key, shape.to_vec())
    }

    #[test]
    fn explicit_keys_only() {
        let r = resolve_umap(
            5,
            &[
                e("X_umap_3d", &[5, 3]),
                e("X_pca", &[5, 50]),
                e("X_umap_2d", &[5, 2]),
            ],
        )
        .unwrap();
        assert_eq!(r.available_dimensions, vec![2, 3]);
        assert_eq!(r.key_for(2), Some("X_umap_2d"));
        assert_eq!(r.key_for(3), Some("X_umap_3d"));
        assert_eq!(r.umap_resolution, None);
        assert_eq!(r.default_dimension(), 3);
    }

    #[test]
    fn explicit_key_wrong_shape_is_skipped() {
        let r = resolve_umap(
            5,
            &[
                e("X_umap_1d", &[5]),    // not 2-D
                e("X_umap_2d", &[4, 2]), // wrong rows
                e("X_umap_3d", &[5, 2]), // wrong columns
                e("X_umap", &[5, 2]),
            ],
        )
        .unwrap();
        assert_eq!(r.available_dimensions, vec![2]);
        assert_eq!(r.key_for(2), Some("X_umap"));
        assert_eq!(
            serde_json::to_string(&r.umap_resolution).unwrap(),
            r#"{"source_key":"X_umap","action":"used_as","dim":2,"alias_key":"X_umap_2d"}"#
        );
    }

    #[test]
    fn x_umap_resolutions() {
        // python: AnnDataAdapter._detect_dimensions on these obsm layouts
        let r = resolve_umap(5, &[e("X_umap_2d", &[5, 2]), e("X_umap", &[5, 2])]).unwrap();
        assert_eq!(r.key_for(2), Some("X_umap_2d"));
        assert_eq!(
            serde_json::to_string(&r.umap_resolution).unwrap(),
            r#"{"source_key":"X_umap","action":"ignored","reason":"explicit_key_present","dim":2,"alias_key":"X_umap_2d"}"#
        );

        let r = resolve_umap(5, &[e("X_umap_2d", &[5, 2]), e("X_umap", &[5, 4])]).unwrap();
        assert_eq!(
            serde_json::to_string(&r.umap_resolution).unwrap(),
            r#"{"source_key":"X_umap","action":"ignored","reason":"unsupported_dim","n_dims":4}"#
        );

        let r = resolve_umap(5, &[e("X_umap_2d", &[5, 2]), e("X_umap", &[4, 2])]).unwrap();
        assert_eq!(
            serde_json::to_string(&r.umap_resolution).unwrap(),
            r#"{"source_key":"X_umap","action":"ignored","reason":"row_count_mismatch","shape":[4,2],"expected_rows":5}"#
        );

        let r = resolve_umap(5, &[e("X_umap_2d", &[5, 2]), e("X_umap", &[5, 2, 1])]).unwrap();
        assert_eq!(
            serde_json::to_string(&r.umap_resolution).unwrap(),
            r#"{"source_key":"X_umap","action":"ignored","reason":"invalid_shape","shape":[5,2,1]}"#
        );

        let r = resolve_umap(5, &[e("X_umap_2d", &[5, 2]), e("X_umap", &[5, 0])]).unwrap();
        assert_eq!(
            serde_json::to_string(&r.umap_resolution).unwrap(),
            r#"{"source_key":"X_umap","action":"ignored","reason":"unsupported_dim","n_dims":0}"#
        );

        let r = resolve_umap(5, &[e("X_umap", &[5, 1])]).unwrap();
        assert_eq!(r.available_dimensions, vec![1]);
        assert_eq!(r.default_dimension(), 1);
    }

    #[test]
    fn x_umap_both_explicit_and_alias() {
        let r = resolve_umap(3, &[e("X_umap", &[3, 3]), e("X_umap_2d", &[3, 2])]).unwrap();
        assert_eq!(r.available_dimensions, vec![2, 3]);
        assert_eq!(r.key_for(3), Some("X_umap"));
        assert_eq!(r.key_for(2), Some("X_umap_2d"));
    }

    #[test]
    fn zero_cells() {
        let r = resolve_umap(0, &[e("X_umap", &[0, 2])]).unwrap();
        assert_eq!(r.available_dimensions, vec![2]);
    }

    #[test]
    fn no_embedding_errors_like_reference() {
        let err = resolve_umap(5, &[e("X_pca", &[5, 50]), e("X_umap", &[5])]).unwrap_err();
        // python: str(ValueError) raised by AnnDataAdapter(adata) with obsm X_pca, X_umap (5,4)
        assert_eq!(
            err.to_string(),
            "No valid UMAP embeddings found in adata.obsm. Expected keys: 'X_umap_1d', \
             'X_umap_2d', 'X_umap_3d', or 'X_umap' (1D/2D/3D). Available obsm keys: \
             ['X_pca', 'X_umap']. Please add UMAP coordinates to your AnnData object using \
             scanpy.tl.umap() and then store explicit embeddings under X_umap_1d / X_umap_2d / \
             X_umap_3d."
        );
        assert!(matches!(
            resolve_umap(0, &[]),
            Err(ModelError::NoUmapEmbedding { .. })
        ));
    }

    #[test]
    fn default_dimension_order() {
        assert_eq!(default_dimension(&[1, 2, 3]), 3);
        assert_eq!(default_dimension(&[1, 2]), 2);
        assert_eq!(default_dimension(&[1]), 1);
        assert_eq!(default_dimension(&[]), 3);
    }
}
