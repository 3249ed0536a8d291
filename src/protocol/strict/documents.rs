//! The strict documents, as translations of the seed's (protocol-strict.md §12): the same
//! numbers (categories, centroids, counts, bounds), reshaped to the strict viewer's exact
//! keys, with payload indices and `{index}` path patterns. Pure functions on JSON values.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::StrictError;
use super::naming::{ObsNumbering, strict_dataset_id, strict_dataset_name, unique_gene_names};
use super::route::{DESTINATIONS_PATH, SOURCES_PATH, WEIGHTS_PATH};
use crate::dataset::StrictGraph;
use crate::model::quantize::{QuantBits, QuantRange};

fn malformed(document: &'static str, reason: impl Into<String>) -> StrictError {
    StrictError::MalformedSeed {
        document,
        reason: reason.into(),
    }
}

fn object<'a>(
    value: &'a Value,
    document: &'static str,
    what: &str,
) -> Result<&'a Map<String, Value>, StrictError> {
    value
        .as_object()
        .ok_or_else(|| malformed(document, format!("`{what}` is not an object")))
}

fn array<'a>(
    value: &'a Value,
    document: &'static str,
    what: &str,
) -> Result<&'a Vec<Value>, StrictError> {
    value
        .as_array()
        .ok_or_else(|| malformed(document, format!("`{what}` is not an array")))
}

/// `dataset_identity.json` of the strict profile (§4, §12.1), from the seed's identity:
/// without `_anndata_adapter`, `embeddings.umap_resolution`, `export_settings` (the seed's
/// `obs_categorical_dtype: "auto"` is not allowed, and one dtype is only truthful when every
/// categorical field uses it), `source` (the seed's shape is not allowed and its `path` is a
/// server path) and the vector fields' `obsm_keys`; `obs_fields` in payload order; the id and
/// name the strict catalogue lists; the graph counted only when it has a strict form.
/// `vector_stems` are the strict vector file stems in field order.
pub fn identity(
    seed: &Value,
    numbering: &ObsNumbering,
    graph: Option<&StrictGraph>,
    vector_stems: &[String],
) -> Result<Value, StrictError> {
    const DOC: &str = "dataset_identity.json";
    let mut out = object(seed, DOC, "$")?.clone();
    for key in ["_anndata_adapter", "export_settings", "source"] {
        out.shift_remove(key);
    }
    let id = out
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(DOC, "no `id`"))?
        .to_string();
    let name = out
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(DOC, "no `name`"))?
        .to_string();
    out.insert("id".into(), json!(strict_dataset_id(&id)));
    out.insert("name".into(), json!(strict_dataset_name(&name, &id)));

    if let Some(embeddings) = out.get_mut("embeddings").and_then(Value::as_object_mut) {
        embeddings.shift_remove("umap_resolution");
    } else {
        return Err(malformed(DOC, "no `embeddings` object"));
    }

    let fields = array(
        out.get("obs_fields").unwrap_or(&Value::Null),
        DOC,
        "obs_fields",
    )?;
    if fields.len() != numbering.len() {
        return Err(malformed(
            DOC,
            format!(
                "{} obs fields listed for {} columns",
                fields.len(),
                numbering.len()
            ),
        ));
    }
    let reordered: Vec<Value> = numbering
        .fields_in_payload_order()
        .iter()
        .filter_map(|&f| fields.get(f).cloned())
        .collect();
    out.insert("obs_fields".into(), Value::Array(reordered));

    let stats = out
        .get_mut("stats")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| malformed(DOC, "no `stats` object"))?;
    let valid = graph.filter(|g| g.verdict.is_ok());
    stats.insert("has_connectivity".into(), json!(valid.is_some()));
    stats.insert(
        "n_edges".into(),
        valid.map_or(Value::Null, |g| json!(g.n_edges)),
    );

    if let Some(vectors) = out.get_mut("vector_fields").and_then(Value::as_object_mut) {
        let fields = vectors
            .get_mut("fields")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| malformed(DOC, "no `vector_fields.fields` object"))?;
        if fields.len() != vector_stems.len() {
            return Err(malformed(DOC, "vector fields differ from the atlas's"));
        }
        for ((_, field), stem) in fields.iter_mut().zip(vector_stems) {
            let field = field
                .as_object_mut()
                .ok_or_else(|| malformed(DOC, "a vector field is not an object"))?;
            field.shift_remove("obsm_keys");
            if let Some(files) = field.get_mut("files").and_then(Value::as_object_mut) {
                for (slot, path) in files.iter_mut() {
                    *path = json!(format!("vectors/{stem}_{slot}.bin"));
                }
            }
        }
    }
    Ok(Value::Object(out))
}

fn value_schema(quantize: Option<QuantBits>, kind: bool, dir: &str) -> Value {
    let mut schema = Map::new();
    if kind {
        schema.insert("kind".into(), json!("continuous"));
    }
    let (ext, dtype) = match quantize {
        Some(bits) => (bits.ext(), bits.dtype()),
        None => ("f32", "float32"),
    };
    schema.insert(
        "pathPattern".into(),
        json!(format!("{dir}/{{index}}.values.{ext}")),
    );
    schema.insert("ext".into(), json!(ext));
    schema.insert("dtype".into(), json!(dtype));
    schema.insert("quantized".into(), json!(quantize.is_some()));
    if let Some(bits) = quantize {
        schema.insert("quantizationBits".into(), json!(bits.bits()));
    }
    Value::Object(schema)
}

fn number(value: &Value, document: &'static str, what: &str) -> Result<f64, StrictError> {
    value
        .as_f64()
        .ok_or_else(|| malformed(document, format!("`{what}` is not a number")))
}

/// `obs_manifest.json` of the strict profile (§6, §12.2), from the seed's manifest: payload
/// indices first in every tuple, `{index}` path patterns, only the schemas of kinds present,
/// no outlier bounds (outliers stay float32), and, when `quantize` is set, quantised
/// continuous values with the `[min, max]` their payloads are encoded with.
pub fn obs_manifest(
    seed: &Value,
    numbering: &ObsNumbering,
    field_names: &[String],
    quantize: Option<QuantBits>,
) -> Result<Value, StrictError> {
    const DOC: &str = "obs_manifest.json";
    let seed_obj = object(seed, DOC, "$")?;
    let payload_of: HashMap<&str, usize> = field_names
        .iter()
        .enumerate()
        .filter_map(|(field, name)| Some((name.as_str(), numbering.payload(field)?)))
        .collect();
    if payload_of.len() != field_names.len() {
        return Err(StrictError::DuplicateObsKey);
    }
    let key_of = |tuple: &[Value], what: &str| -> Result<(usize, String), StrictError> {
        let key = tuple
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(DOC, format!("a {what} tuple has no key")))?;
        if key.is_empty() {
            return Err(StrictError::EmptyObsKey);
        }
        let payload = *payload_of
            .get(key)
            .ok_or_else(|| malformed(DOC, format!("unknown obs field `{key}`")))?;
        Ok((payload, key.to_string()))
    };

    let mut continuous = Vec::new();
    for tuple in array(
        seed_obj.get("_continuousFields").unwrap_or(&Value::Null),
        DOC,
        "_continuousFields",
    )? {
        let tuple = array(tuple, DOC, "continuous tuple")?;
        let (payload, key) = key_of(tuple, "continuous")?;
        let mut out = vec![json!(payload), json!(key)];
        if quantize.is_some() {
            // The seed's [key, min, max] are the finite bounds (0, 1 when none): the range of
            // the quantised payload follows from them exactly.
            let (min, max) = match tuple.as_slice() {
                [_, min, max] => (number(min, DOC, "min")?, number(max, DOC, "max")?),
                _ => return Err(malformed(DOC, "a continuous tuple is not [key, min, max]")),
            };
            let range = QuantRange::from_finite_bounds(Some((min as f32, max as f32)));
            out.push(json!(range.min));
            out.push(json!(range.max));
        }
        continuous.push((payload, Value::Array(out)));
    }

    let mut categorical = Vec::new();
    for tuple in array(
        seed_obj.get("_categoricalFields").unwrap_or(&Value::Null),
        DOC,
        "_categoricalFields",
    )? {
        let tuple = array(tuple, DOC, "categorical tuple")?;
        let (payload, key) = key_of(tuple, "categorical")?;
        let [_, categories, dtype, missing, centroids, ..] = tuple.as_slice() else {
            return Err(malformed(DOC, "a categorical tuple is too short"));
        };
        let labels = array(categories, DOC, "categories")?;
        let mut seen = HashSet::with_capacity(labels.len());
        for label in labels {
            if label.is_null() || !seen.insert(label.to_string()) {
                return Err(StrictError::DuplicateCategory {
                    field: key,
                    label: label.to_string(),
                });
            }
        }
        categorical.push((
            payload,
            json!([payload, key, categories, dtype, missing, centroids]),
        ));
    }
    continuous.sort_by_key(|(p, _)| *p);
    categorical.sort_by_key(|(p, _)| *p);

    let mut schemas = Map::new();
    if !continuous.is_empty() {
        schemas.insert("continuous".into(), value_schema(quantize, false, "obs"));
    }
    if !categorical.is_empty() {
        schemas.insert(
            "categorical".into(),
            json!({
                "codesPathPattern": "obs/{index}.codes.{ext}",
                "outlierPathPattern": "obs/{index}.outliers.f32",
                "outlierExt": "f32",
                "outlierDtype": "float32",
                "outlierQuantized": false,
            }),
        );
    }
    let get = |key: &str| seed_obj.get(key).cloned().unwrap_or(Value::Null);
    Ok(json!({
        "_format": "compact_v1",
        "n_points": get("n_points"),
        "centroid_outlier_quantile": get("centroid_outlier_quantile"),
        "latent_key": get("latent_key"),
        "compression": null,
        "_obsSchemas": Value::Object(schemas),
        "_continuousFields": continuous.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
        "_categoricalFields": categorical.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
    }))
}

/// `var_manifest.json` of the strict profile (§7, §12.3), from the seed's manifest: each gene
/// `[index, name]` with index = its position in var and the names made unique; with
/// `quantized`, `[index, name, min, max]` and a quantised schema.
pub fn var_manifest(
    seed: &Value,
    quantized: Option<(QuantBits, &[QuantRange])>,
) -> Result<Value, StrictError> {
    const DOC: &str = "var_manifest.json";
    let seed_obj = object(seed, DOC, "$")?;
    let ids: Vec<String> = array(
        seed_obj.get("fields").unwrap_or(&Value::Null),
        DOC,
        "fields",
    )?
    .iter()
    .map(|t| {
        t.get(0)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| malformed(DOC, "a gene tuple has no name"))
    })
    .collect::<Result<_, _>>()?;
    if let Some((_, ranges)) = quantized
        && ranges.len() != ids.len()
    {
        return Err(malformed(
            DOC,
            format!("{} gene ranges for {} genes", ranges.len(), ids.len()),
        ));
    }
    let names = unique_gene_names(&ids);
    let fields: Vec<Value> = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| match quantized {
            Some((_, ranges)) => json!([i, name, ranges[i].min, ranges[i].max]),
            None => json!([i, name]),
        })
        .collect();
    let bits = quantized.map(|(b, _)| b);
    Ok(json!({
        "_format": "compact_v1",
        "n_points": seed_obj.get("n_points").cloned().unwrap_or(Value::Null),
        "var_gene_id_column": seed_obj.get("var_gene_id_column").cloned().unwrap_or(Value::Null),
        "compression": null,
        "quantization": bits.map(QuantBits::bits),
        "_varSchema": value_schema(bits, true, "var"),
        "fields": fields,
    }))
}

/// `connectivity_manifest.json` of the strict profile (§8, §12.4), for a graph with a strict
/// form: the edge degree as `max_neighbors`, the strict index width, the weights file.
pub fn connectivity_manifest(graph: &StrictGraph) -> Result<Value, StrictError> {
    let dtype = graph
        .verdict
        .as_ref()
        .map_err(|e| StrictError::NoStrictGraph(e.clone()))?;
    Ok(json!({
        "format": "edge_pairs",
        "n_cells": graph.n_cells,
        "n_edges": graph.n_edges,
        "max_neighbors": graph.max_degree,
        "index_bytes": dtype.index_bytes(),
        "index_dtype": dtype.as_str(),
        "sourcesPath": SOURCES_PATH,
        "destinationsPath": DESTINATIONS_PATH,
        "weightsPath": WEIGHTS_PATH,
        "weight_bytes": 8,
        "weight_dtype": "float64",
        "compression": null,
    }))
}

/// One entry of the strict `_cellucid/datasets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Clean dataset id (= the identity's `id`).
    pub id: String,
    /// `"/"` or `"/<id>/"`.
    pub path: String,
    /// Trimmed name (= the identity's `name`).
    pub name: String,
}

/// `_cellucid/datasets` of the strict profile (§3): exact `{id, path, name}` entries.
pub fn datasets(entries: &[CatalogEntry]) -> Value {
    let list: Vec<Value> = entries
        .iter()
        .map(|e| json!({ "id": e.id, "path": e.path, "name": e.name }))
        .collect();
    json!({ "datasets": list })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::FieldKind;
    use crate::model::edges::IndexDtype;
    use crate::model::weights::NoStrictForm;

    fn seed_identity() -> Value {
        json!({
            "version": 2, "id": "-x", "name": " Atlas ", "description": "d",
            "created_at": "2026-01-01T00:00:00Z", "cellucid_data_version": "anndata_adapter",
            "stats": {"n_cells": 3, "n_genes": 2, "n_obs_fields": 2, "n_categorical_fields": 1,
                      "n_continuous_fields": 1, "has_connectivity": true, "n_edges": 5},
            "embeddings": {"available_dimensions": [2], "default_dimension": 2,
                           "files": {"2d": "points_2d.bin"}, "umap_resolution": {"a": 1}},
            "obs_fields": [{"key": "c", "kind": "category", "n_categories": 2},
                           {"key": "v", "kind": "continuous"}],
            "export_settings": {"obs_categorical_dtype": "auto"},
            "source": {"type": "anndata_adapter", "path": "/srv/x"},
            "_anndata_adapter": true,
            "vector_fields": {"default_field": "velocity_umap", "fields": {"velocity_umap": {
                "label": "Velocity (UMAP)", "basis": "umap", "available_dimensions": [2],
                "default_dimension": 2, "files": {"2d": "vectors/velocity_umap_2d.bin"},
                "obsm_keys": {"2d": "velocity_umap"}}}}
        })
    }

    #[test]
    fn identity_drops_the_forbidden_members_and_reorders_fields() {
        let numbering = ObsNumbering::from_kinds(&[FieldKind::Category, FieldKind::Continuous]);
        let graph = StrictGraph {
            n_cells: 3,
            n_edges: 5,
            max_degree: 2,
            verdict: Err(NoStrictForm::TooManyCells { n_cells: 0 }),
        };
        let out = identity(&seed_identity(), &numbering, Some(&graph), &["7".into()]).unwrap();
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "version",
                "id",
                "name",
                "description",
                "created_at",
                "cellucid_data_version",
                "stats",
                "embeddings",
                "obs_fields",
                "vector_fields"
            ]
        );
        assert_eq!(out["name"], "Atlas");
        assert!(out["id"].as_str().unwrap().starts_with("ds-x-"));
        assert_eq!(out["obs_fields"][0]["key"], "v");
        assert_eq!(out["stats"]["has_connectivity"], false);
        assert_eq!(out["stats"]["n_edges"], Value::Null);
        assert!(out["embeddings"].get("umap_resolution").is_none());
        let field = &out["vector_fields"]["fields"]["velocity_umap"];
        assert!(field.get("obsm_keys").is_none());
        assert_eq!(field["files"]["2d"], "vectors/7_2d.bin");
    }

    #[test]
    fn obs_manifest_tuples_and_schemas() {
        let seed = json!({
            "_format": "compact_v1", "n_points": 3, "centroid_outlier_quantile": 0.95,
            "latent_key": null, "compression": null, "_obsSchemas": {},
            "_continuousFields": [["v", 2.0, 2.0]],
            "_categoricalFields": [["c", ["a", "b"], "uint8", 255, {"2": []}, 0.0, 1.0]]
        });
        let numbering = ObsNumbering::from_kinds(&[FieldKind::Category, FieldKind::Continuous]);
        let names = vec!["c".to_string(), "v".to_string()];
        let plain = obs_manifest(&seed, &numbering, &names, None).unwrap();
        assert_eq!(plain["_continuousFields"], json!([[0, "v"]]));
        assert_eq!(
            plain["_categoricalFields"],
            json!([[1, "c", ["a", "b"], "uint8", 255, {"2": []}]])
        );
        assert_eq!(
            plain["_obsSchemas"]["continuous"]["pathPattern"],
            "obs/{index}.values.f32"
        );
        let q = obs_manifest(&seed, &numbering, &names, Some(QuantBits::U16)).unwrap();
        // A constant field: max := min + 1, like the reference exporter.
        assert_eq!(q["_continuousFields"], json!([[0, "v", 2.0, 3.0]]));
        assert_eq!(q["_obsSchemas"]["continuous"]["quantizationBits"], 16);
        assert_eq!(q["_obsSchemas"]["continuous"]["ext"], "u16");

        let mut dup = seed.clone();
        dup["_categoricalFields"][0][1] = json!(["a", "a"]);
        assert!(matches!(
            obs_manifest(&dup, &numbering, &names, None),
            Err(StrictError::DuplicateCategory { .. })
        ));
        let only_cat = json!({"_continuousFields": [], "_categoricalFields": [],
                              "n_points": 1, "_obsSchemas": {}});
        let empty = obs_manifest(&only_cat, &ObsNumbering::from_kinds(&[]), &[], None).unwrap();
        assert_eq!(empty["_obsSchemas"], json!({}));
    }

    #[test]
    fn var_manifest_indices_and_unique_names() {
        let seed = json!({"_format": "compact_v1", "n_points": 3, "var_gene_id_column": "index",
                          "compression": null, "quantization": null, "_varSchema": {},
                          "fields": [["DUP"], ["g"], ["DUP"]]});
        let plain = var_manifest(&seed, None).unwrap();
        assert_eq!(plain["fields"], json!([[0, "DUP"], [1, "g"], [2, "DUP-1"]]));
        assert_eq!(plain["quantization"], Value::Null);
        assert_eq!(plain["_varSchema"]["pathPattern"], "var/{index}.values.f32");
        assert_eq!(plain["_varSchema"]["kind"], "continuous");
        let ranges = [QuantRange { min: 0.0, max: 1.0 }; 3];
        let q = var_manifest(&seed, Some((QuantBits::U8, &ranges))).unwrap();
        assert_eq!(q["quantization"], 8);
        assert_eq!(q["fields"][2], json!([2, "DUP-1", 0.0, 1.0]));
        assert!(var_manifest(&seed, Some((QuantBits::U8, &ranges[..1]))).is_err());
    }

    #[test]
    fn connectivity_manifest_needs_a_strict_form() {
        let mut graph = StrictGraph {
            n_cells: 65_536,
            n_edges: 3,
            max_degree: 2,
            verdict: Ok(IndexDtype::U16),
        };
        let m = connectivity_manifest(&graph).unwrap();
        assert_eq!(m["index_dtype"], "uint16");
        assert_eq!(m["max_neighbors"], 2);
        assert_eq!(m["weightsPath"], WEIGHTS_PATH);
        assert_eq!(m.as_object().unwrap().len(), 12);
        graph.verdict = Err(NoStrictForm::TooLarge { bytes: 1 });
        assert!(connectivity_manifest(&graph).is_err());
    }
}
