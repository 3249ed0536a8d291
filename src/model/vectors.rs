//! Vector-field detection (protocol §6.8, adapter `_detect_vector_fields`).

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::model::obsm::ObsmEntry;

/// One detected vector field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorField {
    /// The field id (the obsm key without its `_<d>d` suffix, e.g. `velocity_umap`).
    pub id: String,
    /// Display label (e.g. `"Velocity (UMAP)"`).
    pub label: String,
    /// Sorted dimensions for which the field has data.
    pub available_dimensions: Vec<u8>,
    /// `"<d>d"` slot → obsm key, in the reference's insertion order (explicit keys in obsm
    /// order, then implicit keys).
    pub obsm_keys: Vec<(String, String)>,
}

impl VectorField {
    /// Default dimension of the field: the largest available one.
    pub fn default_dimension(&self) -> u8 {
        self.available_dimensions.iter().copied().max().unwrap_or(0)
    }

    /// The obsm key holding this field's `dim`-dimensional data.
    pub fn obsm_key(&self, dim: u8) -> Option<&str> {
        let slot = format!("{dim}d");
        self.obsm_keys
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, k)| k.as_str())
    }

    /// The per-field JSON object (`label`, `basis`, `available_dimensions`,
    /// `default_dimension`, `files`, `obsm_keys`), keys in the reference's order.
    pub fn to_json(&self) -> Value {
        let mut files = Map::new();
        for d in &self.available_dimensions {
            files.insert(
                format!("{d}d"),
                Value::String(format!("vectors/{}_{d}d.bin", self.id)),
            );
        }
        let mut obsm_keys = Map::new();
        for (slot, key) in &self.obsm_keys {
            obsm_keys.insert(slot.clone(), Value::String(key.clone()));
        }
        let mut obj = Map::new();
        obj.insert("label".into(), json!(self.label));
        obj.insert("basis".into(), json!("umap"));
        obj.insert(
            "available_dimensions".into(),
            json!(self.available_dimensions),
        );
        obj.insert("default_dimension".into(), json!(self.default_dimension()));
        obj.insert("files".into(), Value::Object(files));
        obj.insert("obsm_keys".into(), Value::Object(obsm_keys));
        Value::Object(obj)
    }
}

/// All detected vector fields, in the reference's `fields` dict order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorFields {
    /// `velocity_umap` if present, else the smallest field id (code-point order).
    pub default_field: String,
    /// Fields in insertion order (first seen in the explicit pass, then the implicit pass).
    pub fields: Vec<VectorField>,
}

impl VectorFields {
    /// The field with this id.
    pub fn field(&self, field_id: &str) -> Option<&VectorField> {
        self.fields.iter().find(|f| f.id == field_id)
    }

    /// The obsm key serving `vectors/<field_id>_<dim>d.bin`.
    pub fn obsm_key(&self, field_id: &str, dim: u8) -> Option<&str> {
        self.field(field_id).and_then(|f| f.obsm_key(dim))
    }

    /// The `vector_fields` object of `dataset_identity.json`:
    /// `{"default_field": …, "fields": {id: {…}}}`.
    pub fn to_json(&self) -> Value {
        let mut fields = Map::new();
        for f in &self.fields {
            fields.insert(f.id.clone(), f.to_json());
        }
        let mut obj = Map::new();
        obj.insert("default_field".into(), json!(self.default_field));
        obj.insert("fields".into(), Value::Object(fields));
        Value::Object(obj)
    }
}

/// Matches Python's `re.match(r"^(.*)_([123])d$", key)`: returns `(group1, dim)`.
///
/// Python's `$` also matches just before a single trailing newline, and `.` does not match a
/// newline; both are replicated.
fn match_explicit_suffix(key: &str) -> Option<(&str, u8)> {
    let body = key.strip_suffix('\n').unwrap_or(key);
    if body.contains('\n') {
        return None;
    }
    let bytes = body.as_bytes();
    let n = bytes.len();
    if n < 3 || bytes[n - 3] != b'_' || bytes[n - 1] != b'd' {
        return None;
    }
    let dim = match bytes[n - 2] {
        b'1' => 1,
        b'2' => 2,
        b'3' => 3,
        _ => return None,
    };
    // The last three bytes are ASCII, so `n - 3` is a char boundary.
    Some((&body[..n - 3], dim))
}

/// Python's `str.isspace()` (Unicode White_Space plus U+001C..U+001F).
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Display label of a field id, exactly as the reference's `_label_for`:
/// drop `_umap`, `_` → space, strip whitespace, upper-case the first character, append
/// `" (UMAP)"`.
pub fn vector_field_label(field_id: &str) -> String {
    let has_umap = field_id.ends_with("_umap");
    let base = if has_umap {
        &field_id[..field_id.len() - 5]
    } else {
        field_id
    };
    let replaced = base.replace('_', " ");
    let stripped = replaced.trim_matches(py_isspace);
    let titled = match stripped.chars().next() {
        Some(first) => {
            let mut s: String = first.to_uppercase().collect();
            s.push_str(&stripped[first.len_utf8()..]);
            s
        }
        None => field_id.to_string(),
    };
    if has_umap {
        format!("{titled} (UMAP)")
    } else {
        titled
    }
}

struct WorkEntry {
    dims: BTreeSet<u8>,
    explicit: BTreeSet<u8>,
    obsm_keys: Vec<(String, String)>,
}

impl WorkEntry {
    fn set_slot(&mut self, slot: String, key: String) {
        // Python dict assignment: an existing key keeps its position, the value is replaced.
        if let Some(existing) = self.obsm_keys.iter_mut().find(|(s, _)| *s == slot) {
            existing.1 = key;
        } else {
            self.obsm_keys.push((slot, key));
        }
    }
}

/// Detects per-cell vector fields aligned to the UMAP (reference `_detect_vector_fields`).
///
/// `entries` are the obsm entries in obsm order, `available_dims` the UMAP dimensions that can
/// be served. Returns `None` when no field qualifies.
pub fn detect_vector_fields(
    n_cells: u64,
    entries: &[ObsmEntry],
    available_dims: &[u8],
) -> Option<VectorFields> {
    if entries.is_empty() {
        return None;
    }
    let mut order: Vec<String> = Vec::new();
    let mut work: HashMap<String, WorkEntry> = HashMap::new();
    let mut ensure = |id: &str, order: &mut Vec<String>| {
        if !work.contains_key(id) {
            order.push(id.to_string());
            work.insert(
                id.to_string(),
                WorkEntry {
                    dims: BTreeSet::new(),
                    explicit: BTreeSet::new(),
                    obsm_keys: Vec::new(),
                },
            );
        }
    };

    // Pass 1: explicit `<field>_umap_<d>d` keys.
    let mut explicit_hits: Vec<(String, u8, String)> = Vec::new();
    for entry in entries {
        let Some((field_id, dim)) = match_explicit_suffix(&entry.key) else {
            continue;
        };
        if !field_id.ends_with("_umap") || field_id.starts_with("X_") {
            continue;
        }
        if !available_dims.contains(&dim) {
            continue;
        }
        let s = &entry.shape;
        if s.len() != 2 || s[0] != n_cells || s[1] != u64::from(dim) {
            continue;
        }
        ensure(field_id, &mut order);
        explicit_hits.push((field_id.to_string(), dim, entry.key.clone()));
    }
    // Pass 2 candidates: implicit `<field>_umap` keys (the explicit regex can never match a key
    // ending in `_umap`, so the reference's extra check is a no-op).
    let mut implicit_hits: Vec<(String, u8)> = Vec::new();
    for entry in entries {
        let key = entry.key.as_str();
        if !key.ends_with("_umap") || key.starts_with("X_") {
            continue;
        }
        if match_explicit_suffix(key).is_some() {
            continue;
        }
        let s = &entry.shape;
        let dim = match s.len() {
            1 if s[0] == n_cells => 1u64,
            2 if s[0] == n_cells => s[1],
            _ => continue,
        };
        let Ok(dim) = u8::try_from(dim) else {
            continue;
        };
        if !(1..=3).contains(&dim) || !available_dims.contains(&dim) {
            continue;
        }
        ensure(key, &mut order);
        implicit_hits.push((key.to_string(), dim));
    }

    for (id, dim, key) in explicit_hits {
        if let Some(w) = work.get_mut(&id) {
            w.set_slot(format!("{dim}d"), key);
            w.dims.insert(dim);
            w.explicit.insert(dim);
        }
    }
    for (id, dim) in implicit_hits {
        if let Some(w) = work.get_mut(&id) {
            if w.explicit.contains(&dim) {
                continue;
            }
            let slot = format!("{dim}d");
            if !w.obsm_keys.iter().any(|(s, _)| *s == slot) {
                w.obsm_keys.push((slot, id.clone()));
                w.dims.insert(dim);
            }
        }
    }

    let mut fields = Vec::new();
    for id in order {
        let Some(w) = work.remove(&id) else { continue };
        if w.dims.is_empty() {
            continue;
        }
        fields.push(VectorField {
            label: vector_field_label(&id),
            available_dimensions: w.dims.into_iter().collect(),
            obsm_keys: w.obsm_keys,
            id,
        });
    }
    if fields.is_empty() {
        return None;
    }
    let default_field = if fields.iter().any(|f| f.id == "velocity_umap") {
        "velocity_umap".to_string()
    } else {
        fields.iter().map(|f| f.id.as_str()).min()?.to_string()
    };
    Some(VectorFields {
        default_field,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, shape: &[u64]) -> ObsmEntry {
        ObsmEntry::new(key, shape.to_vec())
    }

    #[test]
    fn labels_match_reference() {
        // python: AnnDataAdapter._detect_vector_fields(...)["fields"][id]["label"]
        assert_eq!(vector_field_label("velocity_umap"), "Velocity (UMAP)");
        assert_eq!(vector_field_label("T_fwd_umap"), "T fwd (UMAP)");
        assert_eq!(vector_field_label("_umap"), "_umap (UMAP)");
        assert_eq!(vector_field_label("__umap"), "__umap (UMAP)");
        assert_eq!(vector_field_label("ßig_umap"), "SSig (UMAP)");
        assert_eq!(vector_field_label("\u{1c}a_umap"), "A (UMAP)");
    }

    #[test]
    fn suffix_regex() {
        assert_eq!(
            match_explicit_suffix("velocity_umap_2d"),
            Some(("velocity_umap", 2))
        );
        assert_eq!(
            match_explicit_suffix("velocity_umap_2d\n"),
            Some(("velocity_umap", 2))
        );
        assert_eq!(match_explicit_suffix("a\nb_umap_2d"), None);
        assert_eq!(match_explicit_suffix("_1d"), Some(("", 1)));
        assert_eq!(match_explicit_suffix("x_4d"), None);
        assert_eq!(match_explicit_suffix("é_3d"), Some(("é", 3)));
    }

    #[test]
    fn detection_matches_reference_json() {
        // python (cellucid 0.0.9):
        //   obsm order: velocity_umap_3d(5,3), X_umap(5,3), X_umap_2d(5,2), T_fwd_umap(5,2),
        //   velocity_umap(5,2), velocity_umap_2d(5,2), drift_umap(5,), bad_umap(5,4),
        //   X_vel_umap(5,2)  (+ foo_umap_2d(4,2) here, which anndata itself would reject)
        //   json.dumps(AnnDataAdapter(adata)._vector_fields_metadata)
        let entries = vec![
            e("velocity_umap_3d", &[5, 3]),
            e("X_umap", &[5, 3]),
            e("X_umap_2d", &[5, 2]),
            e("T_fwd_umap", &[5, 2]),
            e("velocity_umap", &[5, 2]),
            e("velocity_umap_2d", &[5, 2]),
            e("drift_umap", &[5]),
            e("bad_umap", &[5, 4]),
            e("X_vel_umap", &[5, 2]),
            e("foo_umap_2d", &[4, 2]),
        ];
        let vf = detect_vector_fields(5, &entries, &[2, 3]).unwrap();
        let expected = r#"{"default_field":"velocity_umap","fields":{"velocity_umap":{"label":"Velocity (UMAP)","basis":"umap","available_dimensions":[2,3],"default_dimension":3,"files":{"2d":"vectors/velocity_umap_2d.bin","3d":"vectors/velocity_umap_3d.bin"},"obsm_keys":{"3d":"velocity_umap_3d","2d":"velocity_umap_2d"}},"T_fwd_umap":{"label":"T fwd (UMAP)","basis":"umap","available_dimensions":[2],"default_dimension":2,"files":{"2d":"vectors/T_fwd_umap_2d.bin"},"obsm_keys":{"2d":"T_fwd_umap"}}}}"#;
        assert_eq!(
            serde_json::to_string(&vf.to_json()).unwrap(),
            expected.trim()
        );
        assert_eq!(vf.obsm_key("velocity_umap", 2), Some("velocity_umap_2d"));
        assert_eq!(vf.obsm_key("velocity_umap", 3), Some("velocity_umap_3d"));
        assert_eq!(vf.obsm_key("T_fwd_umap", 2), Some("T_fwd_umap"));
        assert_eq!(vf.obsm_key("T_fwd_umap", 3), None);
        assert_eq!(vf.obsm_key("drift_umap", 1), None);
    }

    #[test]
    fn default_field_is_smallest_without_velocity() {
        let entries = vec![e("zeta_umap", &[3, 2]), e("Alpha_umap_2d", &[3, 2])];
        let vf = detect_vector_fields(3, &entries, &[2]).unwrap();
        assert_eq!(vf.default_field, "Alpha_umap");
        assert_eq!(
            vf.fields.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            vec!["Alpha_umap", "zeta_umap"]
        );
    }

    #[test]
    fn nothing_detected() {
        assert_eq!(detect_vector_fields(3, &[], &[2]), None);
        assert_eq!(
            detect_vector_fields(3, &[e("X_umap", &[3, 2]), e("vel_umap", &[3, 3])], &[2]),
            None
        );
    }
}
