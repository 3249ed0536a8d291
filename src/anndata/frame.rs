//! AnnData `dataframe` elements (`obs`, `var`): column discovery and column reads for every
//! column encoding anndata writes.

use serde_json::{Map, Value};

use super::AnnDataError;
use super::array::{ElementKind, Numbers};
use super::store::AnnDataStore;

/// How one dataframe column is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnEncoding {
    /// A plain numeric or bool array.
    Numeric {
        /// Element kind of the array.
        kind: ElementKind,
    },
    /// A `string-array`.
    Strings,
    /// A `categorical`: `codes` + `categories`.
    Categorical {
        /// `ordered` attribute.
        ordered: bool,
        /// Number of declared categories (from the categories array shape).
        n_categories: u64,
        /// Element kind of the categories array.
        categories_kind: ElementKind,
    },
    /// `nullable-integer`: `values` + `mask`.
    NullableInteger,
    /// `nullable-boolean`: `values` + `mask`.
    NullableBoolean,
    /// `nullable-string-array`: `values` + `mask`.
    NullableString,
}

/// One column of a dataframe.
#[derive(Debug, Clone)]
pub struct ColumnMeta {
    /// Column name as the user wrote it.
    pub name: String,
    /// Store key of the column element.
    pub key: String,
    /// Its encoding.
    pub encoding: ColumnEncoding,
}

/// A dataframe element's layout.
#[derive(Debug, Clone)]
pub struct FrameMeta {
    /// Store key of the dataframe group.
    pub key: String,
    /// Store key of the index array.
    pub index_key: String,
    /// Number of rows.
    pub n_rows: u64,
    /// Readable columns in `column-order`.
    pub columns: Vec<ColumnMeta>,
}

/// Category values as stored.
#[derive(Debug, Clone)]
pub enum CategoryValues {
    /// String categories.
    Strings(Vec<String>),
    /// Numeric or bool categories.
    Numbers(Numbers),
}

impl CategoryValues {
    /// Number of categories.
    pub fn len(&self) -> usize {
        match self {
            CategoryValues::Strings(v) => v.len(),
            CategoryValues::Numbers(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The values of one column, as stored.
#[derive(Debug, Clone)]
pub enum ColumnData {
    /// Numeric or bool values.
    Numbers(Numbers),
    /// Strings.
    Strings(Vec<String>),
    /// Categorical codes (−1 missing) and categories.
    Categorical {
        /// Codes, −1 for missing.
        codes: Vec<i64>,
        /// Declared categories in order.
        categories: CategoryValues,
    },
    /// Nullable numbers (ints or bools) with a mask (`true` = missing).
    NullableNumbers {
        /// Values (undefined where masked).
        values: Numbers,
        /// Missing-value mask.
        mask: Vec<bool>,
    },
    /// Nullable strings with a mask (`true` = missing).
    NullableStrings {
        /// Values (undefined where masked).
        values: Vec<String>,
        /// Missing-value mask.
        mask: Vec<bool>,
    },
}

pub(crate) fn encoding_type(attrs: &Map<String, Value>) -> Option<&str> {
    attrs.get("encoding-type").and_then(Value::as_str)
}

impl AnnDataStore {
    /// Discover the layout of the dataframe at `key` (`obs` or `var`). Columns with encodings we
    /// cannot read are left out and reported in `warnings`.
    pub async fn frame_meta(
        &self,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<FrameMeta, AnnDataError> {
        let attrs = self.attributes(key, "an AnnData dataframe").await?;
        if encoding_type(&attrs) != Some("dataframe") {
            return Err(AnnDataError::Metadata {
                key: key.to_string(),
                reason: format!(
                    "encoding-type is {:?}, expected \"dataframe\"",
                    encoding_type(&attrs)
                ),
            });
        }
        let index_name = attrs
            .get("_index")
            .and_then(Value::as_str)
            .unwrap_or("_index");
        let index_key = format!("{key}/{index_name}");
        let index = self.array(&index_key, "the dataframe index").await?;
        let n_rows = index.len_1d()?;
        let order: Vec<String> = match attrs.get("column-order") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(AnnDataError::Metadata {
                        key: key.to_string(),
                        reason: format!("column-order holds a non-string {other}"),
                    }),
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
            Some(other) => {
                return Err(AnnDataError::Metadata {
                    key: key.to_string(),
                    reason: format!("column-order is {other}, expected a list"),
                });
            }
        };
        let mut columns = Vec::with_capacity(order.len());
        for name in order {
            let column_key = format!("{key}/{name}");
            match self.column_encoding(&column_key, n_rows).await {
                Ok(encoding) => columns.push(ColumnMeta {
                    name,
                    key: column_key,
                    encoding,
                }),
                Err(e) => warnings.push(format!("{key} column `{name}` skipped: {e}")),
            }
        }
        Ok(FrameMeta {
            key: key.to_string(),
            index_key,
            n_rows,
            columns,
        })
    }

    async fn column_encoding(
        &self,
        key: &str,
        n_rows: u64,
    ) -> Result<ColumnEncoding, AnnDataError> {
        let attrs = self.attributes(key, "a dataframe column").await?;
        let encoding = encoding_type(&attrs).unwrap_or("array").to_string();
        let check_len = |len: u64, what: &str| {
            if len == n_rows {
                Ok(())
            } else {
                Err(AnnDataError::Shape {
                    key: format!("{key}/{what}"),
                    expected: format!("{n_rows} rows"),
                    found: vec![len],
                })
            }
        };
        match encoding.as_str() {
            "array" => {
                let array = self.array(key, "a column array").await?;
                check_len(array.len_1d()?, "")?;
                match array.kind() {
                    ElementKind::String => Ok(ColumnEncoding::Strings),
                    ElementKind::Other => Err(AnnDataError::Dtype {
                        key: key.to_string(),
                        dtype: array.dtype_name(),
                        purpose: "an obs/var column".into(),
                    }),
                    kind => Ok(ColumnEncoding::Numeric { kind }),
                }
            }
            "string-array" => {
                let array = self.array(key, "a string array").await?;
                check_len(array.len_1d()?, "")?;
                Ok(ColumnEncoding::Strings)
            }
            "categorical" => {
                let codes = self
                    .array(&format!("{key}/codes"), "categorical codes")
                    .await?;
                check_len(codes.len_1d()?, "codes")?;
                if !matches!(codes.kind(), ElementKind::Int(_) | ElementKind::UInt(_)) {
                    return Err(AnnDataError::Dtype {
                        key: format!("{key}/codes"),
                        dtype: codes.dtype_name(),
                        purpose: "categorical codes (integers)".into(),
                    });
                }
                let categories = self
                    .array(&format!("{key}/categories"), "categorical categories")
                    .await?;
                let n_categories = categories.len_1d()?;
                Ok(ColumnEncoding::Categorical {
                    ordered: attrs
                        .get("ordered")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    n_categories,
                    categories_kind: categories.kind(),
                })
            }
            "nullable-integer" | "nullable-boolean" | "nullable-string-array" => {
                let values = self
                    .array(&format!("{key}/values"), "nullable values")
                    .await?;
                let mask = self.array(&format!("{key}/mask"), "nullable mask").await?;
                check_len(values.len_1d()?, "values")?;
                check_len(mask.len_1d()?, "mask")?;
                Ok(match encoding.as_str() {
                    "nullable-integer" => ColumnEncoding::NullableInteger,
                    "nullable-boolean" => ColumnEncoding::NullableBoolean,
                    _ => ColumnEncoding::NullableString,
                })
            }
            other => Err(AnnDataError::Encoding {
                key: key.to_string(),
                encoding: other.to_string(),
            }),
        }
    }

    async fn read_mask(&self, key: &str) -> Result<Vec<bool>, AnnDataError> {
        let mask = self.array(&format!("{key}/mask"), "nullable mask").await?;
        match mask.read_numbers(None).await? {
            Numbers::Bool(v) => Ok(v),
            other => Ok(other.to_i64().into_iter().map(|x| x != 0).collect()),
        }
    }

    /// Read the values of one column.
    pub async fn read_column(&self, column: &ColumnMeta) -> Result<ColumnData, AnnDataError> {
        let key = column.key.as_str();
        match &column.encoding {
            ColumnEncoding::Numeric { .. } => Ok(ColumnData::Numbers(
                self.array(key, "a column array")
                    .await?
                    .read_numbers(None)
                    .await?,
            )),
            ColumnEncoding::Strings => Ok(ColumnData::Strings(
                self.array(key, "a string array")
                    .await?
                    .read_strings(None)
                    .await?,
            )),
            ColumnEncoding::Categorical { .. } => {
                let codes = self
                    .array(&format!("{key}/codes"), "categorical codes")
                    .await?
                    .read_numbers(None)
                    .await?
                    .to_i64();
                let categories_array = self
                    .array(&format!("{key}/categories"), "categorical categories")
                    .await?;
                let categories = if categories_array.kind() == ElementKind::String {
                    CategoryValues::Strings(categories_array.read_strings(None).await?)
                } else {
                    CategoryValues::Numbers(categories_array.read_numbers(None).await?)
                };
                let n = categories.len() as i64;
                if let Some(bad) = codes.iter().find(|&&c| c >= n || c < -1) {
                    return Err(AnnDataError::Metadata {
                        key: format!("{key}/codes"),
                        reason: format!("code {bad} is outside the {n} declared categories"),
                    });
                }
                Ok(ColumnData::Categorical { codes, categories })
            }
            ColumnEncoding::NullableInteger | ColumnEncoding::NullableBoolean => {
                let values = self
                    .array(&format!("{key}/values"), "nullable values")
                    .await?
                    .read_numbers(None)
                    .await?;
                let mask = self.read_mask(key).await?;
                Ok(ColumnData::NullableNumbers { values, mask })
            }
            ColumnEncoding::NullableString => {
                let values = self
                    .array(&format!("{key}/values"), "nullable values")
                    .await?
                    .read_strings(None)
                    .await?;
                let mask = self.read_mask(key).await?;
                Ok(ColumnData::NullableStrings { values, mask })
            }
        }
    }

    /// Read a dataframe's index as strings (numbers are formatted like Python's `str`).
    pub async fn read_index(&self, frame: &FrameMeta) -> Result<Vec<String>, AnnDataError> {
        let index = self.array(&frame.index_key, "the dataframe index").await?;
        if index.kind() == ElementKind::String {
            index.read_strings(None).await
        } else {
            let numbers = index.read_numbers(None).await?;
            Ok(numbers.python_str_labels())
        }
    }
}
