//! The AnnData layout of a store: sizes, obs/var frames, obsm entries, the connectivity graph
//! and X, discovered from metadata alone (no array data is read except the two indexes' shapes).

use serde_json::Value;

use super::AnnDataError;
use super::array::ElementKind;
use super::frame::{FrameMeta, encoding_type};
use super::metadata::Node;
use super::store::AnnDataStore;

/// Which axis a sparse matrix compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressed {
    /// `csr_matrix`: `indptr` has one entry per row (+1), `indices` are columns.
    Rows,
    /// `csc_matrix`: `indptr` has one entry per column (+1), `indices` are rows.
    Columns,
}

/// A sparse matrix element (`csr_matrix` / `csc_matrix`).
#[derive(Debug, Clone)]
pub struct SparseMeta {
    /// Store key of the group.
    pub key: String,
    /// Matrix shape (rows, cols).
    pub shape: [u64; 2],
    /// Stored entries.
    pub nnz: u64,
    /// Element kind of `data`.
    pub data_kind: ElementKind,
    /// The compressed axis.
    pub compressed: Compressed,
}

impl SparseMeta {
    /// Length of the compressed axis (`indptr` has one more entry).
    pub fn major(&self) -> u64 {
        match self.compressed {
            Compressed::Rows => self.shape[0],
            Compressed::Columns => self.shape[1],
        }
    }

    /// Length of the other axis (every index is below it).
    pub fn minor(&self) -> u64 {
        match self.compressed {
            Compressed::Rows => self.shape[1],
            Compressed::Columns => self.shape[0],
        }
    }
}

/// How a matrix (X, obsp) is stored.
#[derive(Debug, Clone)]
pub enum MatrixMeta {
    /// Not present.
    Absent,
    /// A dense 2-D array.
    Dense {
        /// Store key.
        key: String,
        /// Shape.
        shape: [u64; 2],
        /// Chunk shape.
        chunks: Vec<u64>,
        /// Element kind.
        kind: ElementKind,
    },
    /// Compressed sparse rows.
    Csr(SparseMeta),
    /// Compressed sparse columns.
    Csc(SparseMeta),
}

impl MatrixMeta {
    /// Shape, if present.
    pub fn shape(&self) -> Option<[u64; 2]> {
        match self {
            MatrixMeta::Absent => None,
            MatrixMeta::Dense { shape, .. } => Some(*shape),
            MatrixMeta::Csr(s) | MatrixMeta::Csc(s) => Some(s.shape),
        }
    }

    /// A short name ("dense", "csr", "csc", "absent").
    pub fn kind_name(&self) -> &'static str {
        match self {
            MatrixMeta::Absent => "absent",
            MatrixMeta::Dense { .. } => "dense",
            MatrixMeta::Csr(_) => "csr",
            MatrixMeta::Csc(_) => "csc",
        }
    }
}

/// One `obsm` entry we can read.
#[derive(Debug, Clone)]
pub struct ObsmEntry {
    /// obsm key.
    pub name: String,
    /// Store key.
    pub key: String,
    /// Shape (1-D or 2-D).
    pub shape: Vec<u64>,
    /// Dense array or sparse matrix.
    pub matrix: MatrixMeta,
}

/// Everything the server needs to know about a store's structure.
#[derive(Debug, Clone)]
pub struct AnnDataLayout {
    /// Number of cells.
    pub n_obs: u64,
    /// Number of genes.
    pub n_vars: u64,
    /// obs dataframe.
    pub obs: FrameMeta,
    /// var dataframe.
    pub var: FrameMeta,
    /// obsm entries in zarr-python's (sorted) key order.
    pub obsm: Vec<ObsmEntry>,
    /// `obsp['connectivities']`.
    pub connectivities: MatrixMeta,
    /// X.
    pub x: MatrixMeta,
    /// Things skipped or suspicious, for `inspect` and the logs.
    pub warnings: Vec<String>,
}

impl AnnDataStore {
    /// Read the matrix element at `key` (dense array, csr_matrix, csc_matrix) or `Absent`.
    pub async fn matrix_meta(&self, key: &str) -> Result<MatrixMeta, AnnDataError> {
        match self.node(key).await? {
            None => Ok(MatrixMeta::Absent),
            Some(Node::Array(_)) => {
                let array = self.array(key, "a dense matrix").await?;
                let shape = array.shape().to_vec();
                let kind = array.kind();
                if !kind.is_numeric() && kind != ElementKind::Bool {
                    return Err(AnnDataError::Dtype {
                        key: key.to_string(),
                        dtype: array.dtype_name(),
                        purpose: "a numeric matrix".into(),
                    });
                }
                let shape2 = match shape.as_slice() {
                    [r, c] => [*r, *c],
                    [r] => [*r, 1],
                    _ => {
                        return Err(AnnDataError::Shape {
                            key: key.to_string(),
                            expected: "a 1-D or 2-D array".into(),
                            found: shape,
                        });
                    }
                };
                Ok(MatrixMeta::Dense {
                    key: key.to_string(),
                    shape: shape2,
                    chunks: array.chunk_shape(),
                    kind,
                })
            }
            Some(Node::Group(attrs)) => {
                let encoding = encoding_type(&attrs).unwrap_or_default().to_string();
                if encoding != "csr_matrix" && encoding != "csc_matrix" {
                    return Err(AnnDataError::Encoding {
                        key: key.to_string(),
                        encoding,
                    });
                }
                let shape = match attrs.get("shape") {
                    Some(Value::Array(v)) if v.len() == 2 => {
                        let dims: Option<Vec<u64>> = v.iter().map(Value::as_u64).collect();
                        match dims {
                            Some(d) => [d[0], d[1]],
                            None => {
                                return Err(AnnDataError::Metadata {
                                    key: key.to_string(),
                                    reason: "shape attribute is not two integers".into(),
                                });
                            }
                        }
                    }
                    _ => {
                        return Err(AnnDataError::Metadata {
                            key: key.to_string(),
                            reason: "sparse matrix without a 2-element `shape` attribute".into(),
                        });
                    }
                };
                let data = self.array(&format!("{key}/data"), "sparse data").await?;
                let indices = self
                    .array(&format!("{key}/indices"), "sparse indices")
                    .await?;
                let indptr = self
                    .array(&format!("{key}/indptr"), "sparse indptr")
                    .await?;
                for array in [&indices, &indptr] {
                    if !matches!(array.kind(), ElementKind::Int(_) | ElementKind::UInt(_)) {
                        return Err(AnnDataError::Dtype {
                            key: array.key().to_string(),
                            dtype: array.dtype_name(),
                            purpose: "sparse offsets and indices (integers)".into(),
                        });
                    }
                }
                let nnz = data.len_1d()?;
                if indices.len_1d()? != nnz {
                    return Err(AnnDataError::Shape {
                        key: format!("{key}/indices"),
                        expected: format!("{nnz} entries like data"),
                        found: indices.shape().to_vec(),
                    });
                }
                let meta = SparseMeta {
                    key: key.to_string(),
                    shape,
                    nnz,
                    data_kind: data.kind(),
                    compressed: if encoding == "csr_matrix" {
                        Compressed::Rows
                    } else {
                        Compressed::Columns
                    },
                };
                let expected = meta.major().checked_add(1);
                if Some(indptr.len_1d()?) != expected {
                    return Err(AnnDataError::Shape {
                        key: format!("{key}/indptr"),
                        expected: match expected {
                            Some(n) => {
                                format!("{n} entries (one per compressed row or column, +1)")
                            }
                            None => "more entries than can be counted".into(),
                        },
                        found: indptr.shape().to_vec(),
                    });
                }
                Ok(match meta.compressed {
                    Compressed::Rows => MatrixMeta::Csr(meta),
                    Compressed::Columns => MatrixMeta::Csc(meta),
                })
            }
        }
    }

    /// Discover the AnnData layout. Unknown elements in obsm are skipped with a warning; `uns`,
    /// `layers` and `varm` are never read.
    pub async fn layout(&self) -> Result<AnnDataLayout, AnnDataError> {
        let mut warnings = Vec::new();
        let root = self.attributes("", "the AnnData root group").await?;
        if let Some(enc) = encoding_type(&root)
            && enc != "anndata"
        {
            return Err(AnnDataError::Metadata {
                key: String::new(),
                reason: format!("root encoding-type is \"{enc}\", expected \"anndata\""),
            });
        }
        let obs = self.frame_meta("obs", &mut warnings).await?;
        let var = self.frame_meta("var", &mut warnings).await?;
        let (n_obs, n_vars) = (obs.n_rows, var.n_rows);
        let mut obsm = Vec::new();
        for name in self.children("obsm").await? {
            let key = format!("obsm/{name}");
            match self.matrix_meta(&key).await {
                Ok(MatrixMeta::Absent) => {}
                Ok(matrix) => {
                    let shape = match &matrix {
                        MatrixMeta::Dense { key, .. } => {
                            self.array(key, "an obsm array").await?.shape().to_vec()
                        }
                        other => other.shape().map(|s| s.to_vec()).unwrap_or_default(),
                    };
                    // Kept for the reference's rules (which report e.g. an `X_umap` with the
                    // wrong row count in `umap_resolution`), never read as data (reads check the
                    // row count), and reported.
                    if shape.first() != Some(&n_obs) {
                        warnings.push(format!(
                            "obsm `{name}` has shape {shape:?}: not one row per cell ({n_obs}), so it \
                             is never served (not as an embedding, vector field or latent space)"
                        ));
                    }
                    obsm.push(ObsmEntry {
                        name,
                        key,
                        shape,
                        matrix,
                    });
                }
                Err(e) => warnings.push(format!("obsm `{name}` skipped: {e}")),
            }
        }
        let connectivities = match self.matrix_meta("obsp/connectivities").await {
            Ok(m) => match m.shape() {
                Some([r, c]) if r != n_obs || c != n_obs => {
                    warnings.push(format!(
                        "obsp `connectivities` skipped: shape {r} x {c}, expected {n_obs} x {n_obs}"
                    ));
                    MatrixMeta::Absent
                }
                _ => m,
            },
            Err(e) => {
                warnings.push(format!("obsp `connectivities` skipped: {e}"));
                MatrixMeta::Absent
            }
        };
        let x = self.matrix_meta("X").await?;
        if let Some([r, c]) = x.shape()
            && (r != n_obs || c != n_vars)
        {
            return Err(AnnDataError::Shape {
                key: "X".into(),
                expected: format!("{n_obs} x {n_vars}"),
                found: vec![r, c],
            });
        }
        Ok(AnnDataLayout {
            n_obs,
            n_vars,
            obs,
            var,
            obsm,
            connectivities,
            x,
            warnings,
        })
    }
}
