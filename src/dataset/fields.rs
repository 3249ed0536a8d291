//! Obs fields: their kind (continuous or category) and their decoded values, following the
//! reference's pandas semantics (§6.1–§6.3 of the protocol notes).

use crate::anndata::{CategoryValues, ColumnData, ColumnEncoding, ElementKind, Numbers};
use crate::model::categories::{
    Categorized, categorize_bools, categorize_floats, categorize_strings,
};

/// Kind of an obs field as the viewer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Numbers: served as `values.f32`.
    Continuous,
    /// Labels: served as codes + outliers.
    Category,
}

impl FieldKind {
    /// The JSON word (`"continuous"` / `"category"`).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Continuous => "continuous",
            FieldKind::Category => "category",
        }
    }

    /// Classify a column from its encoding alone (no data read), like `get_obs_field_kind`.
    pub fn of(encoding: &ColumnEncoding) -> FieldKind {
        match encoding {
            ColumnEncoding::Numeric { kind } if *kind != ElementKind::Bool => FieldKind::Continuous,
            ColumnEncoding::NullableInteger => FieldKind::Continuous,
            _ => FieldKind::Category,
        }
    }
}

/// Python `str()` of each category value.
pub fn category_labels(categories: &CategoryValues) -> Vec<String> {
    match categories {
        CategoryValues::Strings(v) => v.clone(),
        CategoryValues::Numbers(n) => n.python_str_labels(),
    }
}

fn masked_bools(values: &Numbers, mask: &[bool]) -> Vec<Option<bool>> {
    let ints = values.to_i64();
    ints.iter()
        .zip(mask)
        .map(|(v, m)| if *m { None } else { Some(*v != 0) })
        .collect()
}

/// Values of a column as `pd.to_numeric(col, errors="coerce").astype(float32)`.
pub fn numeric_values(data: &ColumnData) -> Vec<f32> {
    match data {
        ColumnData::Numbers(n) => n.to_f32(),
        ColumnData::NullableNumbers { values, mask } => values
            .to_f32()
            .into_iter()
            .zip(mask)
            .map(|(v, m)| if *m { f32::NAN } else { v })
            .collect(),
        ColumnData::Strings(v) => v.iter().map(|s| parse_python_float(s)).collect(),
        ColumnData::NullableStrings { values, mask } => values
            .iter()
            .zip(mask)
            .map(|(s, m)| if *m { f32::NAN } else { parse_python_float(s) })
            .collect(),
        ColumnData::Categorical { codes, categories } => {
            let numeric: Vec<f32> = match categories {
                CategoryValues::Numbers(n) => n.to_f32(),
                CategoryValues::Strings(s) => s.iter().map(|x| parse_python_float(x)).collect(),
            };
            codes
                .iter()
                .map(|&c| {
                    usize::try_from(c)
                        .ok()
                        .and_then(|i| numeric.get(i).copied())
                        .unwrap_or(f32::NAN)
                })
                .collect()
        }
    }
}

fn parse_python_float(s: &str) -> f32 {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f32::INFINITY,
        "-inf" | "-infinity" => f32::NEG_INFINITY,
        _ => t.parse::<f64>().map(|v| v as f32).unwrap_or(f32::NAN),
    }
}

/// Categories and codes of a column as `col.astype("category")` gives them.
pub fn categorical_view(data: &ColumnData) -> Categorized {
    match data {
        ColumnData::Categorical { codes, categories } => {
            let labels = category_labels(categories);
            let codes = codes
                .iter()
                .map(|&c| {
                    if c < 0 {
                        -1
                    } else {
                        i32::try_from(c).unwrap_or(-1)
                    }
                })
                .collect();
            (labels, codes)
        }
        ColumnData::Numbers(Numbers::Bool(v)) => {
            let values: Vec<Option<bool>> = v.iter().map(|b| Some(*b)).collect();
            categorize_bools(&values)
        }
        ColumnData::Numbers(n) if !n.is_float() => {
            let values: Vec<Option<i64>> = n.to_i64().into_iter().map(Some).collect();
            crate::model::categories::categorize_ints(&values)
        }
        ColumnData::Numbers(n) => categorize_floats(&n.to_f64()),
        ColumnData::NullableNumbers { values, mask } => match values {
            Numbers::Bool(_) => categorize_bools(&masked_bools(values, mask)),
            _ => {
                let ints: Vec<Option<i64>> = values
                    .to_i64()
                    .into_iter()
                    .zip(mask)
                    .map(|(v, m)| if *m { None } else { Some(v) })
                    .collect();
                crate::model::categories::categorize_ints(&ints)
            }
        },
        ColumnData::Strings(v) => {
            let values: Vec<Option<&str>> = v.iter().map(|s| Some(s.as_str())).collect();
            categorize_strings(&values)
        }
        ColumnData::NullableStrings { values, mask } => {
            let values: Vec<Option<&str>> = values
                .iter()
                .zip(mask)
                .map(|(s, m)| if *m { None } else { Some(s.as_str()) })
                .collect();
            categorize_strings(&values)
        }
    }
}

/// Each row as `col.astype(str)` prints it (used for gene id columns).
pub fn string_values(data: &ColumnData) -> Vec<String> {
    match data {
        ColumnData::Strings(v) => v.clone(),
        ColumnData::NullableStrings { values, mask } => values
            .iter()
            .zip(mask)
            .map(|(s, m)| if *m { "<NA>".to_string() } else { s.clone() })
            .collect(),
        ColumnData::Numbers(n) => n.python_str_labels(),
        ColumnData::NullableNumbers { values, mask } => values
            .python_str_labels()
            .into_iter()
            .zip(mask)
            .map(|(s, m)| if *m { "<NA>".to_string() } else { s })
            .collect(),
        ColumnData::Categorical { codes, categories } => {
            let labels = category_labels(categories);
            codes
                .iter()
                .map(|&c| {
                    usize::try_from(c)
                        .ok()
                        .and_then(|i| labels.get(i).cloned())
                        .unwrap_or_else(|| "nan".to_string())
                })
                .collect()
        }
    }
}
