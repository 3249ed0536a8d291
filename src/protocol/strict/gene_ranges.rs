//! The quantisation range of every gene (the `[min, max]` of a quantised var manifest) in one
//! pass over X: dense X in blocks of columns, CSR/CSC X in blocks of stored entries, memory
//! bounded by one block and three numbers per gene. The ranges are exactly those of the dense
//! float32 columns the seed serves (duplicates summed, implicit zeros counted).

use std::ops::Range;

use crate::anndata::{MatrixMeta, SparseMeta};
use crate::dataset::{Dataset, DatasetError};
use crate::model::quantize::{ColumnBounds, QuantRange};

/// Stored entries read per block of a sparse X.
const BLOCK_NNZ: u64 = 4 << 20;
/// Bytes of dense X read per block of columns.
const DENSE_BLOCK_BYTES: u64 = 64 << 20;

/// How much of a CSR X a request may scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanLimit {
    /// At request time: CSR X up to the dataset's `csr_scan_max_nnz` (the gene rule).
    Dataset,
    /// `precompute`: any size.
    Unlimited,
}

fn invalid(key: &str, reason: impl Into<String>) -> DatasetError {
    DatasetError::AnnData(crate::anndata::AnnDataError::Metadata {
        key: key.to_string(),
        reason: reason.into(),
    })
}

/// Run a CPU-bound pass off the async executor ([`crate::compute`]: abandoned when the
/// request ends).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DatasetError> + Send + 'static,
) -> Result<T, DatasetError> {
    crate::compute::offload(work).await?
}

/// The quantisation range of every gene, in var order.
pub async fn gene_ranges(
    dataset: &Dataset,
    limit: ScanLimit,
) -> Result<Vec<QuantRange>, DatasetError> {
    let n_cells = dataset.n_cells();
    let n_genes = usize::try_from(dataset.n_genes())
        .map_err(|_| DatasetError::Unsupported("too many genes".into()))?;
    let bounds = ColumnBounds::new(n_genes);
    let bounds = match &dataset.layout().x {
        MatrixMeta::Absent => bounds,
        MatrixMeta::Dense { key, .. } => dense_pass(dataset, key, n_cells, bounds).await?,
        MatrixMeta::Csc(meta) => sparse_pass(dataset, meta, Axis::GenesMajor, bounds).await?,
        MatrixMeta::Csr(meta) => {
            let max = dataset.options().csr_scan_max_nnz;
            if limit == ScanLimit::Dataset && meta.nnz > max {
                return Err(DatasetError::NeedsPrecompute {
                    gene: "(every gene: the quantised var manifest)".into(),
                    nnz: meta.nnz,
                    limit: max,
                    layout: "CSR layout".into(),
                });
            }
            sparse_pass(dataset, meta, Axis::CellsMajor, bounds).await?
        }
    };
    Ok(bounds.ranges(n_cells))
}

async fn dense_pass(
    dataset: &Dataset,
    key: &str,
    n_cells: u64,
    mut bounds: ColumnBounds,
) -> Result<ColumnBounds, DatasetError> {
    let array = dataset.store().array(key, "X").await?;
    let n_genes = dataset.n_genes();
    let width = (DENSE_BLOCK_BYTES / (n_cells.max(1) * 4)).clamp(1, n_genes.max(1));
    let mut start = 0u64;
    while start < n_genes {
        let end = (start + width).min(n_genes);
        let values = array.read_numbers_2d(0..n_cells, start..end).await?;
        bounds = blocking(move || {
            let values = values.into_f32();
            let w = (end - start) as usize;
            for c in 0..w {
                let column = values.iter().skip(c).step_by(w);
                for &v in column {
                    bounds.observe(start as usize + c, v);
                }
            }
            Ok(bounds)
        })
        .await?;
        start = end;
    }
    Ok(bounds)
}

/// Which axis a sparse X's `indptr` runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    /// CSR: majors are cells, minors genes.
    CellsMajor,
    /// CSC: majors are genes, minors cells.
    GenesMajor,
}

async fn sparse_pass(
    dataset: &Dataset,
    meta: &SparseMeta,
    axis: Axis,
    mut bounds: ColumnBounds,
) -> Result<ColumnBounds, DatasetError> {
    let key = &meta.key;
    let store = dataset.store();
    let indptr = store
        .array(&format!("{key}/indptr"), "sparse indptr")
        .await?
        .read_numbers(None)
        .await?
        .to_i64();
    let [rows, cols] = meta.shape;
    let (n_major, n_minor) = match axis {
        Axis::CellsMajor => (rows, cols),
        Axis::GenesMajor => (cols, rows),
    };
    if indptr.len() as u64 != n_major + 1
        || indptr.first() != Some(&0)
        || indptr.windows(2).any(|w| w[0] > w[1])
        || indptr.last().is_some_and(|&last| last as u64 > meta.nnz)
    {
        return Err(invalid(
            &format!("{key}/indptr"),
            format!(
                "not an ascending offset array of {} entries ending at most at {}",
                n_major + 1,
                meta.nnz
            ),
        ));
    }
    let indices = store
        .array(&format!("{key}/indices"), "sparse indices")
        .await?;
    let data = store.array(&format!("{key}/data"), "sparse data").await?;
    for majors in blocks(&indptr) {
        let (first, last) = (indptr[majors.start] as u64, indptr[majors.end] as u64);
        if first == last {
            continue;
        }
        let (minor, values) = futures::try_join!(
            indices.read_numbers(Some(first..last)),
            data.read_numbers(Some(first..last))
        )?;
        let offsets: Vec<i64> = indptr[majors.start..=majors.end].to_vec();
        let key = key.clone();
        bounds = blocking(move || {
            let minor = minor.to_i64();
            let values = values.into_f32();
            if minor.len() != values.len() {
                return Err(invalid(&key, "indices and data differ in length"));
            }
            let mut entries: Vec<(i64, f32)> = Vec::new();
            for (m, w) in offsets.windows(2).enumerate() {
                let s = (w[0] - offsets[0]) as usize;
                let e = (w[1] - offsets[0]) as usize;
                entries.clear();
                entries.extend(
                    minor[s..e]
                        .iter()
                        .copied()
                        .zip(values[s..e].iter().copied()),
                );
                if entries.iter().any(|(j, _)| *j < 0 || *j as u64 >= n_minor) {
                    return Err(invalid(
                        &format!("{key}/indices"),
                        format!("index out of bounds 0..{n_minor}"),
                    ));
                }
                if entries.windows(2).any(|p| p[0].0 >= p[1].0) {
                    // Unsorted or duplicated: the dense cell holds the sum, in storage order.
                    entries.sort_by_key(|(j, _)| *j);
                    entries.dedup_by(|later, kept| {
                        if later.0 == kept.0 {
                            kept.1 += later.1;
                            true
                        } else {
                            false
                        }
                    });
                }
                let major = majors.start + m;
                for &(j, v) in &entries {
                    let gene = match axis {
                        Axis::CellsMajor => j as usize,
                        Axis::GenesMajor => major,
                    };
                    bounds.observe(gene, 0.0 + v);
                }
            }
            Ok(bounds)
        })
        .await?;
    }
    Ok(bounds)
}

/// Consecutive ranges of majors holding about [`BLOCK_NNZ`] stored entries each (a longer
/// major is a block of its own).
fn blocks(indptr: &[i64]) -> Vec<Range<usize>> {
    let n = indptr.len().saturating_sub(1);
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < n {
        let first = indptr[start];
        let mut end = start + 1;
        while end < n && (indptr[end + 1] - first) as u64 <= BLOCK_NNZ {
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_major_once() {
        let indptr = [0i64, 0, 3, 3, 5];
        assert_eq!(blocks(&indptr), vec![0..4]);
        assert!(blocks(&[0]).is_empty());
        let big = [0i64, BLOCK_NNZ as i64 + 1, BLOCK_NNZ as i64 + 2];
        assert_eq!(blocks(&big), vec![0..1, 1..2]);
    }
}
