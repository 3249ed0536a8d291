//! Reads of matrix elements: one gene column of X (dense, CSC, or CSR scanned in bounded row
//! blocks with a validated `indptr`), dense obsm matrices (read in row blocks as f32), and
//! whole sparse matrices (the connectivity graph). Every size is checked against the store's
//! read limit before anything is allocated, and every sparse structure is validated before use.

use std::ops::Range;
use std::sync::Arc;

use super::AnnDataError;
use super::array::{Numbers, ZArray};
use super::layout::{Compressed, MatrixMeta, SparseMeta};
use super::sparse::{checked_indices, checked_indptr};
use super::store::AnnDataStore;
use crate::compute::{ComputeError, run_sized};
use crate::memory::{TooLarge, bytes_of, try_filled, try_with_capacity};

/// Most stored values read per block when a CSR column is gathered by scanning rows (fewer
/// when the read limit is small).
const CSR_SCAN_BLOCK_NNZ: u64 = 4 << 20;

/// Values read per block of a dense matrix (rounded to whole chunks of rows).
const DENSE_BLOCK_VALUES: u64 = 4 << 20;

/// The three arrays of a sparse matrix, read whole and validated: `indptr` is a valid offset
/// array ending at `nnz`, every index lies inside the minor axis, and `data` has `nnz` values.
#[derive(Debug, Clone)]
pub struct SparseArrays {
    /// Offsets (`major + 1` entries, non-decreasing, from 0 to `nnz`).
    pub indptr: Vec<u64>,
    /// Minor-axis positions, each `< minor`.
    pub indices: Vec<u32>,
    /// `data`, in its stored type.
    pub data: Numbers,
}

/// A failed offloaded step of a read, as a reader error.
fn compute_error(key: &str, source: ComputeError) -> AnnDataError {
    AnnDataError::Compute {
        key: key.to_string(),
        source,
    }
}

fn shape_error(key: &str, expected: String, found: Vec<u64>) -> AnnDataError {
    AnnDataError::Shape {
        key: key.to_string(),
        expected,
        found,
    }
}

/// Rows per read of a dense `rows × cols` matrix whose chunks hold `chunk_rows` rows.
fn block_rows(chunk_rows: u64, cols: u64, rows: u64) -> u64 {
    let chunk_rows = chunk_rows.clamp(1, rows.max(1));
    let per_block = (DENSE_BLOCK_VALUES / cols.max(1)).max(1);
    (per_block / chunk_rows).max(1).saturating_mul(chunk_rows)
}

fn row_blocks(rows: u64, step: u64) -> impl Iterator<Item = Range<u64>> {
    (0..rows.div_ceil(step)).map(move |b| b * step..((b + 1) * step).min(rows))
}

impl AnnDataStore {
    fn over_limit(&self, needed: Option<u64>, what: impl FnOnce() -> String) -> AnnDataError {
        AnnDataError::TooLarge(TooLarge::OverBudget {
            what: what(),
            needed,
            budget: self.read_limit(),
        })
    }

    /// `Ok` when `needed` bytes fit in the read limit.
    fn check_fits(
        &self,
        needed: Option<u64>,
        what: impl FnOnce() -> String,
    ) -> Result<(), AnnDataError> {
        match needed {
            Some(n) if n <= self.read_limit() => Ok(()),
            _ => Err(self.over_limit(needed, what)),
        }
    }

    async fn sparse_parts(&self, meta: &SparseMeta) -> Result<[ZArray; 3], AnnDataError> {
        let key = &meta.key;
        Ok([
            self.array(&format!("{key}/indptr"), "sparse indptr")
                .await?,
            self.array(&format!("{key}/indices"), "sparse indices")
                .await?,
            self.array(&format!("{key}/data"), "sparse data").await?,
        ])
    }

    /// Read a whole sparse matrix element, validated (see [`SparseArrays`]). The three arrays
    /// together must fit in the read limit.
    pub async fn read_sparse(&self, meta: &SparseMeta) -> Result<SparseArrays, AnnDataError> {
        let [indptr, indices, data] = self.sparse_parts(meta).await?;
        let needed = [&indptr, &indices, &data].iter().try_fold(0u64, |sum, a| {
            let n = a.shape().iter().try_fold(1u64, |n, d| n.checked_mul(*d))?;
            sum.checked_add(n.checked_mul(a.value_size())?)
        });
        self.check_fits(needed, || {
            format!("reading the sparse matrix `{}`", meta.key)
        })?;
        let (indptr, indices, data) = futures::try_join!(
            indptr.read_numbers(None),
            indices.read_numbers(None),
            data.read_numbers(None)
        )?;
        let meta = meta.clone();
        let key = meta.key.clone();
        run_sized(indices.len() + indptr.len(), move || {
            if data.len() as u64 != meta.nnz || indices.len() as u64 != meta.nnz {
                return Err(AnnDataError::Structure {
                    key: meta.key.clone(),
                    reason: format!(
                        "indices ({}) and data ({}) must both hold the {} stored values",
                        indices.len(),
                        data.len(),
                        meta.nnz
                    ),
                });
            }
            let indptr = checked_indptr(&meta.key, &indptr, meta.major(), meta.nnz)?;
            let indices = checked_indices::<u32>(&meta.key, &indices, meta.minor(), 0)?;
            Ok(SparseArrays {
                indptr,
                indices,
                data,
            })
        })
        .await
        .map_err(|e| compute_error(&key, e))?
    }

    /// Read a dense (n × d) obsm-like matrix as row-major f32, checking it has `n_rows` rows.
    /// A 1-D array is read as (n × 1); a sparse matrix is densified (obsm matrices are narrow).
    /// Dense arrays are read in blocks of rows, so a float64 matrix never sits in memory whole
    /// next to its f32 copy.
    pub async fn read_matrix_f32(
        &self,
        matrix: &MatrixMeta,
        n_rows: u64,
    ) -> Result<(Vec<f32>, usize), AnnDataError> {
        let (key, [rows, cols]) = match matrix {
            MatrixMeta::Absent => return Ok((Vec::new(), 0)),
            MatrixMeta::Dense { key, shape, .. } => (key, *shape),
            MatrixMeta::Csr(meta) | MatrixMeta::Csc(meta) => (&meta.key, meta.shape),
        };
        if rows != n_rows {
            return Err(shape_error(
                key,
                format!("{n_rows} rows (one per cell)"),
                vec![rows, cols],
            ));
        }
        let values = rows.checked_mul(cols);
        self.check_fits(values.and_then(bytes_of::<f32>), || {
            format!("the {rows} x {cols} matrix `{key}` as float32")
        })?;
        let values = values.unwrap_or_default();
        let width = usize::try_from(cols).map_err(|_| {
            shape_error(
                key,
                "a column count this machine can address".into(),
                vec![rows, cols],
            )
        })?;
        match matrix {
            MatrixMeta::Absent => Ok((Vec::new(), 0)),
            MatrixMeta::Dense { key, chunks, .. } => {
                let array = self.array(key, "a dense matrix").await?;
                if array.shape().len() == 1 {
                    return Ok((array.read_numbers(None).await?.into_f32(), 1));
                }
                let mut out: Vec<f32> =
                    try_with_capacity(values, || format!("the matrix `{key}`"))?;
                let step = block_rows(chunks.first().copied().unwrap_or(rows), cols, rows);
                for block in row_blocks(rows, step) {
                    let part = array.read_numbers_2d(block, 0..cols).await?;
                    match part {
                        Numbers::F32(v) => out.extend_from_slice(&v),
                        other => out.extend(other.into_f32()),
                    }
                }
                Ok((out, width))
            }
            MatrixMeta::Csr(meta) | MatrixMeta::Csc(meta) => {
                let arrays = self.read_sparse(meta).await?;
                let key = meta.key.clone();
                let is_csr = meta.compressed == Compressed::Rows;
                let out = run_sized(arrays.indices.len() + values as usize, move || {
                    densify(&arrays, values, cols, is_csr, &key)
                })
                .await
                .map_err(|e| compute_error(&meta.key, e))??;
                Ok((out, width))
            }
        }
    }

    /// Column `gene` of X as f32 (`X` absent → zeros). A CSR X is scanned whole (its `indptr`
    /// read and validated first); callers that serve many genes keep the `indptr` and call
    /// [`scan_csr_column`](Self::scan_csr_column), and decide beforehand whether a scan is
    /// acceptable.
    pub async fn read_gene_column(
        &self,
        x: &MatrixMeta,
        n_obs: u64,
        gene: u64,
    ) -> Result<Vec<f32>, AnnDataError> {
        match x {
            MatrixMeta::Absent => Ok(try_filled(n_obs, 0.0, || "a gene column".into())?),
            MatrixMeta::Dense { key, .. } => Ok(self
                .array(key, "X")
                .await?
                .read_numbers_2d(0..n_obs, gene..gene.saturating_add(1))
                .await?
                .into_f32()),
            MatrixMeta::Csc(meta) => self.read_csc_column(meta, n_obs, gene).await,
            MatrixMeta::Csr(meta) => {
                let indptr = Arc::new(self.read_csr_indptr(meta).await?);
                self.scan_csr_column(meta, n_obs, gene, &indptr).await
            }
        }
    }

    /// The validated `indptr` of a sparse matrix (see [`checked_indptr`]).
    pub async fn read_csr_indptr(&self, meta: &SparseMeta) -> Result<Vec<u64>, AnnDataError> {
        let [indptr, ..] = self.sparse_parts(meta).await?;
        let raw = indptr.read_numbers(None).await?;
        let meta = meta.clone();
        let key = meta.key.clone();
        run_sized(raw.len(), move || {
            checked_indptr(&meta.key, &raw, meta.major(), meta.nnz)
        })
        .await
        .map_err(|e| compute_error(&key, e))?
    }

    async fn read_csc_column(
        &self,
        meta: &SparseMeta,
        n_obs: u64,
        gene: u64,
    ) -> Result<Vec<f32>, AnnDataError> {
        let key = &meta.key;
        let [indptr, indices, data] = self.sparse_parts(meta).await?;
        let bounds = indptr
            .read_numbers(Some(gene..gene.saturating_add(2)))
            .await?;
        let bounds = checked_indices::<u64>(key, &bounds, meta.nnz.saturating_add(1), gene)
            .map_err(|_| AnnDataError::Structure {
                key: format!("{key}/indptr"),
                reason: format!(
                    "column {gene} has bounds outside the {} stored values",
                    meta.nnz
                ),
            })?;
        let (start, end) = match bounds.as_slice() {
            [s, e] if s <= e => (*s, *e),
            other => {
                return Err(AnnDataError::Structure {
                    key: format!("{key}/indptr"),
                    reason: format!("column {gene} has decreasing bounds {other:?}"),
                });
            }
        };
        let mut column = try_filled(n_obs, 0f32, || "a gene column".into())?;
        if start == end {
            return Ok(column);
        }
        let (indices, data) = futures::try_join!(
            indices.read_numbers(Some(start..end)),
            data.read_numbers(Some(start..end))
        )?;
        let rows = checked_indices::<u64>(key, &indices, n_obs, start)?;
        for (&r, v) in rows.iter().zip(data.into_f32()) {
            // In range: checked above.
            if let Some(slot) = column.get_mut(r as usize) {
                *slot += v;
            }
        }
        Ok(column)
    }

    /// Column `gene` of a CSR X by scanning its rows in bounded blocks, with X's validated
    /// `indptr` (see [`read_csr_indptr`](Self::read_csr_indptr)). Every index read is checked
    /// to lie inside the matrix; the filtering runs off the async executor.
    pub async fn scan_csr_column(
        &self,
        meta: &SparseMeta,
        n_obs: u64,
        gene: u64,
        indptr: &Arc<Vec<u64>>,
    ) -> Result<Vec<f32>, AnnDataError> {
        let key = meta.key.clone();
        if indptr.len() as u64 != n_obs.saturating_add(1) {
            return Err(AnnDataError::Structure {
                key: format!("{key}/indptr"),
                reason: format!("has {} entries for {n_obs} rows", indptr.len()),
            });
        }
        let [_, indices_array, data_array] = self.sparse_parts(meta).await?;
        let chunk = indices_array.chunk_shape().first().copied().unwrap_or(0);
        let arrays = Arc::new((indices_array, data_array));
        let n_vars = meta.minor();
        let nnz = indptr.last().copied().unwrap_or(0);
        let block_nnz = csr_scan_block_values(nnz, chunk, self.read_limit());
        let mut column = try_filled(n_obs, 0f32, || "a gene column".into())?;
        // Blocks of stored values are read, decoded and filtered [`csr_scan_parallelism`] at
        // a time, each its own task (so decoding uses every core); blocks follow the chunks of
        // `indices`, so no chunk is decoded twice. Hits are summed in storage order, as a
        // sequential scan would. Dropping the scan (a request deadline) aborts every block.
        let blocks = (0..nnz)
            .step_by(block_nnz.max(1) as usize)
            .map(|first| first..(first + block_nnz).min(nnz));
        let mut blocks = blocks.enumerate();
        let mut found: Vec<Vec<(usize, f32)>> = Vec::new();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < csr_scan_parallelism() {
                let Some((i, values)) = blocks.next() else {
                    break;
                };
                let job = scan_csr_block(
                    arrays.clone(),
                    indptr.clone(),
                    values,
                    gene,
                    n_vars,
                    key.clone(),
                );
                running.spawn(crate::store::in_request_scope(
                    async move { (i, job.await) },
                ));
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (i, hits) = joined.map_err(|e| compute_error(&key, ComputeError::Failed(e)))?;
            if found.len() <= i {
                found.resize_with(i + 1, Vec::new);
            }
            found[i] = hits?;
        }
        for (r, v) in found.into_iter().flatten() {
            if let Some(slot) = column.get_mut(r) {
                *slot += v;
            }
        }
        Ok(column)
    }
}

/// Blocks of CSR X scanned at once by [`AnnDataStore::scan_csr_column`]: one per core, at
/// most 4 (each holds one block of indices and data while it is decoded).
pub fn csr_scan_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

/// Stored values per block of a CSR scan: a whole number of `indices` chunks (`chunk`, 0 when
/// unknown), about a quarter of one core's share of `nnz` so the cores stay balanced, at most
/// [`CSR_SCAN_BLOCK_NNZ`] and what the read limit allows.
fn csr_scan_block_values(nnz: u64, chunk: u64, read_limit: u64) -> u64 {
    let most = (read_limit / 16).clamp(1, CSR_SCAN_BLOCK_NNZ);
    let balanced = nnz
        .div_ceil(4 * csr_scan_parallelism() as u64)
        .clamp(1, most);
    if chunk == 0 || chunk > most {
        return balanced;
    }
    (balanced / chunk).max(1) * chunk
}

/// The stored values `values` of a CSR X whose column is `gene`, as `(row, value)` in storage
/// order. Indices are checked to lie inside the matrix; the data block is read only when the
/// gene occurs in it.
async fn scan_csr_block(
    arrays: Arc<(ZArray, ZArray)>,
    indptr: Arc<Vec<u64>>,
    values: Range<u64>,
    gene: u64,
    n_vars: u64,
    key: String,
) -> Result<Vec<(usize, f32)>, AnnDataError> {
    let (indices_array, data_array) = (&arrays.0, &arrays.1);
    let first = values.start;
    let indices = indices_array.read_numbers(Some(values.clone())).await?;
    let (ptr, key_for_job) = (indptr.clone(), key.clone());
    let hits = run_sized(indices.len(), move || {
        let positions = checked_indices::<u64>(&key_for_job, &indices, n_vars, first)?;
        // The row of stored value `first`: the last row starting at or before it.
        let mut row = ptr.partition_point(|&p| p <= first).saturating_sub(1);
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for (j, &g) in positions.iter().enumerate() {
            if g == gene {
                let at = first + j as u64;
                while row + 1 < ptr.len() && ptr[row + 1] <= at {
                    row += 1;
                }
                hits.push((row, j));
            }
        }
        Ok::<_, AnnDataError>(hits)
    })
    .await
    .map_err(|e| compute_error(&key, e))??;
    if hits.is_empty() {
        return Ok(Vec::new());
    }
    let data = data_array.read_numbers(Some(values)).await?.into_f32();
    Ok(hits
        .into_iter()
        .filter_map(|(r, j)| data.get(j).map(|v| (r, *v)))
        .collect())
}

/// The dense row-major `rows × cols` copy of validated sparse arrays (`values = rows × cols`).
fn densify(
    arrays: &SparseArrays,
    values: u64,
    cols: u64,
    csr: bool,
    key: &str,
) -> Result<Vec<f32>, AnnDataError> {
    let mut out = try_filled(values, 0f32, || format!("the dense copy of `{key}`"))?;
    let data = arrays.data.to_f32();
    for (major, w) in arrays.indptr.windows(2).enumerate() {
        crate::compute::checkpoint().map_err(|e| compute_error(key, e.into()))?;
        for j in w[0] as usize..w[1] as usize {
            let (Some(&minor), Some(&v)) = (arrays.indices.get(j), data.get(j)) else {
                continue;
            };
            let (r, c) = if csr {
                (major as u64, u64::from(minor))
            } else {
                (u64::from(minor), major as u64)
            };
            if let Some(slot) = out.get_mut((r * cols + c) as usize) {
                *slot += v;
            }
        }
    }
    Ok(out)
}
