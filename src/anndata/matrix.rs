//! Reads of matrix elements: one gene column of X (dense, CSC, or CSR in bounded row blocks),
//! dense obsm matrices, and whole sparse matrices (the connectivity graph).

use super::AnnDataError;
use super::array::Numbers;
use super::layout::{MatrixMeta, SparseMeta};
use super::store::AnnDataStore;

/// Non-zeros read per block when a CSR column has to be gathered by scanning rows.
const CSR_SCAN_BLOCK_NNZ: u64 = 4 << 20;

/// The three arrays of a sparse matrix, read whole.
#[derive(Debug, Clone)]
pub struct SparseArrays {
    /// `indptr` (major axis + 1 entries).
    pub indptr: Vec<i64>,
    /// `indices` (minor-axis positions).
    pub indices: Vec<i64>,
    /// `data`, in its stored type.
    pub data: Numbers,
}

impl AnnDataStore {
    /// Read a whole sparse matrix element.
    pub async fn read_sparse(&self, meta: &SparseMeta) -> Result<SparseArrays, AnnDataError> {
        let key = &meta.key;
        let indptr = self
            .array(&format!("{key}/indptr"), "sparse indptr")
            .await?;
        let indices = self
            .array(&format!("{key}/indices"), "sparse indices")
            .await?;
        let data = self.array(&format!("{key}/data"), "sparse data").await?;
        let (indptr, indices, data) = futures::try_join!(
            indptr.read_numbers(None),
            indices.read_numbers(None),
            data.read_numbers(None)
        )?;
        Ok(SparseArrays {
            indptr: indptr.to_i64(),
            indices: indices.to_i64(),
            data,
        })
    }

    /// Read a dense (n × d) obsm-like matrix as row-major f32. A 1-D array is read as (n × 1);
    /// a sparse matrix is densified (obsm matrices are narrow).
    pub async fn read_matrix_f32(
        &self,
        matrix: &MatrixMeta,
    ) -> Result<(Vec<f32>, usize), AnnDataError> {
        match matrix {
            MatrixMeta::Absent => Ok((Vec::new(), 0)),
            MatrixMeta::Dense { key, shape, .. } => {
                let array = self.array(key, "a dense matrix").await?;
                let values = if array.shape().len() == 1 {
                    array.read_numbers(None).await?
                } else {
                    array.read_numbers_2d(0..shape[0], 0..shape[1]).await?
                };
                Ok((values.into_f32(), shape[1] as usize))
            }
            MatrixMeta::Csr(meta) | MatrixMeta::Csc(meta) => {
                let arrays = self.read_sparse(meta).await?;
                let [rows, cols] = meta.shape;
                let mut out = vec![0f32; (rows * cols) as usize];
                let values = arrays.data.to_f32();
                let is_csr = matches!(matrix, MatrixMeta::Csr(_));
                #[allow(clippy::needless_range_loop)] // indexes two arrays in step
                for major in 0..arrays.indptr.len().saturating_sub(1) {
                    let (start, end) = (arrays.indptr[major], arrays.indptr[major + 1]);
                    for j in start.max(0) as usize..(end.max(0) as usize).min(values.len()) {
                        let minor = arrays.indices[j];
                        let (r, c) = if is_csr {
                            (major as i64, minor)
                        } else {
                            (minor, major as i64)
                        };
                        if r < 0 || c < 0 || r as u64 >= rows || c as u64 >= cols {
                            return Err(AnnDataError::Metadata {
                                key: format!("{}/indices", meta.key),
                                reason: format!(
                                    "index {minor} out of bounds for shape {rows} x {cols}"
                                ),
                            });
                        }
                        out[(r as u64 * cols + c as u64) as usize] += values[j];
                    }
                }
                Ok((out, cols as usize))
            }
        }
    }

    /// Column `gene` of X as f32 (`X` absent → zeros). CSR X is scanned in bounded row blocks;
    /// callers decide beforehand whether a scan is acceptable (see `csr_scan_allowed`).
    pub async fn read_gene_column(
        &self,
        x: &MatrixMeta,
        n_obs: u64,
        gene: u64,
    ) -> Result<Vec<f32>, AnnDataError> {
        match x {
            MatrixMeta::Absent => Ok(vec![0.0; n_obs as usize]),
            MatrixMeta::Dense { key, .. } => Ok(self
                .array(key, "X")
                .await?
                .read_numbers_2d(0..n_obs, gene..gene + 1)
                .await?
                .into_f32()),
            MatrixMeta::Csc(meta) => self.read_csc_column(meta, n_obs, gene).await,
            MatrixMeta::Csr(meta) => self.scan_csr_column(meta, n_obs, gene).await,
        }
    }

    async fn read_csc_column(
        &self,
        meta: &SparseMeta,
        n_obs: u64,
        gene: u64,
    ) -> Result<Vec<f32>, AnnDataError> {
        let key = &meta.key;
        let bounds = self
            .array(&format!("{key}/indptr"), "sparse indptr")
            .await?
            .read_numbers(Some(gene..gene + 2))
            .await?
            .to_i64();
        let (start, end) = match bounds.as_slice() {
            [s, e] if 0 <= *s && s <= e && (*e as u64) <= meta.nnz => (*s as u64, *e as u64),
            other => {
                return Err(AnnDataError::Metadata {
                    key: format!("{key}/indptr"),
                    reason: format!(
                        "invalid column bounds {other:?} for {} stored entries",
                        meta.nnz
                    ),
                });
            }
        };
        let mut column = vec![0f32; n_obs as usize];
        if start == end {
            return Ok(column);
        }
        let indices = self
            .array(&format!("{key}/indices"), "sparse indices")
            .await?;
        let data = self.array(&format!("{key}/data"), "sparse data").await?;
        let (indices, data) = futures::try_join!(
            indices.read_numbers(Some(start..end)),
            data.read_numbers(Some(start..end))
        )?;
        scatter(&mut column, &indices.to_i64(), &data.into_f32(), key)?;
        Ok(column)
    }

    async fn scan_csr_column(
        &self,
        meta: &SparseMeta,
        n_obs: u64,
        gene: u64,
    ) -> Result<Vec<f32>, AnnDataError> {
        let key = &meta.key;
        let indptr = self
            .array(&format!("{key}/indptr"), "sparse indptr")
            .await?
            .read_numbers(None)
            .await?
            .to_i64();
        let indices_array = self
            .array(&format!("{key}/indices"), "sparse indices")
            .await?;
        let data_array = self.array(&format!("{key}/data"), "sparse data").await?;
        let mut column = vec![0f32; n_obs as usize];
        let mut row = 0usize;
        while row < n_obs as usize {
            // Grow a block of rows up to about CSR_SCAN_BLOCK_NNZ stored entries.
            let block_start = row;
            let first = indptr[row].max(0) as u64;
            while row < n_obs as usize
                && (indptr[row + 1].max(0) as u64).saturating_sub(first) <= CSR_SCAN_BLOCK_NNZ
            {
                row += 1;
            }
            if row == block_start {
                row += 1; // one huge row
            }
            let last = (indptr[row].max(0) as u64).min(meta.nnz);
            if last <= first {
                continue;
            }
            let indices = indices_array
                .read_numbers(Some(first..last))
                .await?
                .to_i64();
            let hits: Vec<(usize, usize)> = (block_start..row)
                .flat_map(|r| {
                    let s = (indptr[r].max(0) as u64).saturating_sub(first) as usize;
                    let e =
                        ((indptr[r + 1].max(0) as u64).min(last)).saturating_sub(first) as usize;
                    let indices = &indices;
                    (s..e.min(indices.len()))
                        .filter(move |&j| indices[j] == gene as i64)
                        .map(move |j| (r, j))
                })
                .collect();
            if hits.is_empty() {
                continue;
            }
            let data = data_array.read_numbers(Some(first..last)).await?.into_f32();
            for (r, j) in hits {
                if let Some(v) = data.get(j) {
                    column[r] += *v;
                }
            }
        }
        Ok(column)
    }
}

fn scatter(
    column: &mut [f32],
    rows: &[i64],
    values: &[f32],
    key: &str,
) -> Result<(), AnnDataError> {
    for (&r, &v) in rows.iter().zip(values) {
        match column.get_mut(usize::try_from(r).unwrap_or(usize::MAX)) {
            Some(slot) => *slot += v,
            None => {
                return Err(AnnDataError::Metadata {
                    key: format!("{key}/indices"),
                    reason: format!("row index {r} out of bounds for {} cells", column.len()),
                });
            }
        }
    }
    Ok(())
}
