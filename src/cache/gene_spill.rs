//! Out-of-core transposition of CSR X (cells × genes) into gene-major columns.
//!
//! Pass 1 ([`bucket_rows`]) streams X in row blocks of a bounded number of stored values and
//! appends every value as a 10-byte record (row `u32`, gene within its block `u16`, value
//! `f32`) to the spill file of its gene block. Pass 2 ([`densify_block`]) reads one spill file,
//! scatters it into `genes_per_block` dense columns and gzip-compresses each column. Memory:
//! one row block (pass 1) and one dense gene block per worker (pass 2), chosen from a budget;
//! never X. Disk: 10 bytes per stored value, removed as soon as a block is packed.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::StreamExt;
use indicatif::ProgressBar;

use super::precompute::PrecomputeError;
use crate::anndata::{AnnDataStore, SparseMeta};

/// Bytes of one spill record.
const RECORD: usize = 10;
/// Most spill files open at once (file descriptors and their write buffers).
const MAX_BLOCKS: u64 = 1024;
/// Write buffer of one spill file.
const SPILL_BUFFER: usize = 64 << 10;

/// How genes are grouped into blocks, and where their spill files live.
#[derive(Debug)]
pub struct SpillPlan {
    n_cells: u64,
    n_genes: u64,
    genes_per_block: u64,
    dir: PathBuf,
}

impl SpillPlan {
    /// A plan for `n_cells × n_genes` whose dense block fits `block_budget` bytes (at least one
    /// gene per block; at most [`MAX_BLOCKS`] blocks), spilling into a fresh directory below
    /// `parent`.
    pub fn new(
        n_cells: u64,
        n_genes: u64,
        block_budget: u64,
        parent: &Path,
    ) -> std::io::Result<Self> {
        if n_cells > u64::from(u32::MAX) {
            return Err(std::io::Error::other(format!(
                "{n_cells} cells exceed the spill record's u32 row index"
            )));
        }
        let column_bytes = n_cells.max(1) * 4;
        let by_budget = (block_budget / column_bytes).max(1);
        let by_files = n_genes.div_ceil(MAX_BLOCKS).max(1);
        let genes_per_block = by_budget
            .max(by_files)
            .min(n_genes.max(1))
            .min(u64::from(u16::MAX) + 1);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = parent.join(format!(
            "cellucid-edge-spill-{}-{stamp}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(SpillPlan {
            n_cells,
            n_genes,
            genes_per_block,
            dir,
        })
    }

    /// Number of gene blocks.
    pub fn n_blocks(&self) -> u64 {
        self.n_genes.div_ceil(self.genes_per_block)
    }

    /// Genes per block (the last block may hold fewer).
    pub fn genes_per_block(&self) -> u64 {
        self.genes_per_block
    }

    fn block_genes(&self, block: u64) -> std::ops::Range<u64> {
        let start = block * self.genes_per_block;
        start..(start + self.genes_per_block).min(self.n_genes)
    }

    fn path(&self, block: u64) -> PathBuf {
        self.dir.join(format!("block-{block:05}.spill"))
    }

    fn spill_error(&self, source: std::io::Error) -> PrecomputeError {
        PrecomputeError::Spill {
            dir: self.dir.display().to_string(),
            source,
        }
    }
}

impl Drop for SpillPlan {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One row block of X as read from the store.
struct RowBlock {
    rows: std::ops::Range<usize>,
    first: u64,
    indices: Vec<i64>,
    data: Vec<f32>,
}

/// Pass 1: stream CSR X in row blocks of about `row_block_nnz` stored values (`jobs` blocks
/// read ahead) and append every stored value to its gene block's spill file.
pub async fn bucket_rows(
    store: &AnnDataStore,
    meta: &SparseMeta,
    plan: &SpillPlan,
    row_block_nnz: u64,
    jobs: usize,
    progress: &ProgressBar,
) -> Result<(), PrecomputeError> {
    let key = &meta.key;
    let indptr = store
        .array(&format!("{key}/indptr"), "sparse indptr")
        .await
        .map_err(|e| PrecomputeError::InvalidX(e.to_string()))?
        .read_numbers(None)
        .await
        .map_err(|e| PrecomputeError::InvalidX(e.to_string()))?
        .to_i64();
    let n = plan.n_cells as usize;
    if indptr.len() != n + 1 {
        return Err(PrecomputeError::InvalidX(format!(
            "{key}/indptr has {} entries for {n} rows",
            indptr.len()
        )));
    }
    if indptr[0] != 0 || indptr.windows(2).any(|w| w[0] > w[1]) || indptr[n] as u64 > meta.nnz {
        return Err(PrecomputeError::InvalidX(format!(
            "{key}/indptr is not ascending from 0 to at most {} stored values",
            meta.nnz
        )));
    }
    // Row blocks of about `row_block_nnz` stored values (a longer row is a block of its own).
    let mut blocks = Vec::new();
    let mut row = 0usize;
    while row < n {
        let start = row;
        let first = indptr[row] as u64;
        row += 1;
        while row < n && (indptr[row + 1] as u64) - first <= row_block_nnz.max(1) {
            row += 1;
        }
        blocks.push(start..row);
    }
    let indices_array = store
        .array(&format!("{key}/indices"), "sparse indices")
        .await
        .map_err(|e| PrecomputeError::InvalidX(e.to_string()))?;
    let data_array = store
        .array(&format!("{key}/data"), "sparse data")
        .await
        .map_err(|e| PrecomputeError::InvalidX(e.to_string()))?;
    let indptr = &indptr;
    let (indices_array, data_array) = (&indices_array, &data_array);
    let mut reads = futures::stream::iter(blocks)
        .map(|rows| async move {
            let (first, last) = (indptr[rows.start] as u64, indptr[rows.end] as u64);
            if first == last {
                return Ok(RowBlock {
                    rows,
                    first,
                    indices: Vec::new(),
                    data: Vec::new(),
                });
            }
            let (indices, data) = futures::try_join!(
                indices_array.read_numbers(Some(first..last)),
                data_array.read_numbers(Some(first..last))
            )
            .map_err(|e| PrecomputeError::InvalidX(e.to_string()))?;
            Ok::<_, PrecomputeError>(RowBlock {
                rows,
                first,
                indices: indices.to_i64(),
                data: data.into_f32(),
            })
        })
        .buffered(jobs.max(1));

    let mut writers = Some(open_writers(plan)?);
    let bounds = (plan.n_genes, plan.genes_per_block);
    while let Some(block) = reads.next().await {
        let block = block?;
        let count = block.indices.len() as u64;
        let mut owned = writers.take().ok_or_else(|| {
            PrecomputeError::Worker("spill writers lost after a failed block".into())
        })?;
        let indptr_slice: Vec<i64> = indptr[block.rows.start..=block.rows.end].to_vec();
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = write_block(&mut owned, &block, &indptr_slice, bounds);
            (owned, result)
        })
        .await
        .map_err(|e| PrecomputeError::Worker(e.to_string()))?;
        result.map_err(|e| match e {
            WriteError::Io(source) => plan.spill_error(source),
            WriteError::Invalid(reason) => PrecomputeError::InvalidX(reason),
        })?;
        writers = Some(back);
        progress.inc(count);
    }
    if let Some(writers) = writers {
        for mut w in writers {
            w.flush().map_err(|e| plan.spill_error(e))?;
        }
    }
    Ok(())
}

fn open_writers(plan: &SpillPlan) -> Result<Vec<BufWriter<File>>, PrecomputeError> {
    (0..plan.n_blocks())
        .map(|b| {
            File::create(plan.path(b))
                .map(|f| BufWriter::with_capacity(SPILL_BUFFER, f))
                .map_err(|e| plan.spill_error(e))
        })
        .collect()
}

enum WriteError {
    Io(std::io::Error),
    Invalid(String),
}

fn write_block(
    writers: &mut [BufWriter<File>],
    block: &RowBlock,
    indptr: &[i64],
    (n_genes, genes_per_block): (u64, u64),
) -> Result<(), WriteError> {
    if block.indices.len() != block.data.len() {
        return Err(WriteError::Invalid(format!(
            "indices and data differ in length ({} vs {}) in rows {:?}",
            block.indices.len(),
            block.data.len(),
            block.rows
        )));
    }
    let mut record = [0u8; RECORD];
    for (offset, row) in block.rows.clone().enumerate() {
        let s = (indptr[offset] as u64 - block.first) as usize;
        let e = (indptr[offset + 1] as u64 - block.first) as usize;
        for j in s..e.min(block.indices.len()) {
            let gene = block.indices[j];
            if gene < 0 || gene as u64 >= n_genes {
                return Err(WriteError::Invalid(format!(
                    "column index {gene} out of bounds for {n_genes} genes (row {row})"
                )));
            }
            let gene = gene as u64;
            let b = (gene / genes_per_block) as usize;
            let local = (gene % genes_per_block) as u16;
            record[0..4].copy_from_slice(&(row as u32).to_le_bytes());
            record[4..6].copy_from_slice(&local.to_le_bytes());
            record[6..10].copy_from_slice(&block.data[j].to_le_bytes());
            writers[b].write_all(&record).map_err(WriteError::Io)?;
        }
    }
    Ok(())
}

/// Pass 2: the gzip bodies of the genes of `block`, in gene order. Deletes the spill file.
pub fn densify_block(plan: &SpillPlan, block: u64) -> Result<Vec<Bytes>, PrecomputeError> {
    let genes = plan.block_genes(block);
    let n = plan.n_cells as usize;
    let width = (genes.end - genes.start) as usize;
    let mut dense = vec![0f32; width * n];
    let path = plan.path(block);
    let file = File::open(&path).map_err(|e| plan.spill_error(e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = vec![0u8; RECORD * 8192];
    let mut pending = 0usize;
    loop {
        let read = reader
            .read(&mut buf[pending..])
            .map_err(|e| plan.spill_error(e))?;
        if read == 0 {
            break;
        }
        let filled = pending + read;
        let whole = filled - filled % RECORD;
        for rec in buf[..whole].chunks_exact(RECORD) {
            let row = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize;
            let local = u16::from_le_bytes([rec[4], rec[5]]) as usize;
            let value = f32::from_le_bytes([rec[6], rec[7], rec[8], rec[9]]);
            match dense.get_mut(local * n + row) {
                Some(slot) if row < n && local < width => *slot += value,
                _ => {
                    return Err(PrecomputeError::InvalidX(format!(
                        "spill record (row {row}, gene {local}) outside block {block}"
                    )));
                }
            }
        }
        buf.copy_within(whole..filled, 0);
        pending = filled - whole;
    }
    if pending != 0 {
        return Err(PrecomputeError::InvalidX(format!(
            "spill file of block {block} is truncated"
        )));
    }
    let _ = std::fs::remove_file(&path);
    Ok((0..width)
        .map(|g| gzip_f32(&dense[g * n..(g + 1) * n]))
        .collect())
}

/// gzip (level 6, like every other body) of little-endian f32 values, without materialising
/// the whole uncompressed column.
pub fn gzip_f32(values: &[f32]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(6));
    let mut chunk = Vec::with_capacity(64 << 10);
    for part in values.chunks(16 << 10) {
        chunk.clear();
        for v in part {
            chunk.extend_from_slice(&v.to_le_bytes());
        }
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(&chunk);
    }
    Bytes::from(encoder.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_respect_budget_and_file_limit() {
        let dir = std::env::temp_dir();
        let plan = SpillPlan::new(1_000_000, 20_000, 256 << 20, &dir).unwrap();
        assert_eq!(plan.genes_per_block(), 67);
        assert_eq!(plan.n_blocks(), 299);
        let tiny = SpillPlan::new(1_000_000, 20_000, 1, &dir).unwrap();
        assert!(tiny.n_blocks() <= MAX_BLOCKS);
        let small = SpillPlan::new(10, 3, 1 << 30, &dir).unwrap();
        assert_eq!((small.genes_per_block(), small.n_blocks()), (3, 1));
        assert_eq!(small.block_genes(0), 0..3);
    }

    #[test]
    fn gzip_f32_inflates_to_the_column() {
        use std::io::Read;
        let values: Vec<f32> = (0..100_000).map(|i| (i % 7) as f32 * 0.5).collect();
        let gz = gzip_f32(&values);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, crate::dataset::f32_bytes(&values).to_vec());
    }

    #[test]
    fn densify_rejects_records_outside_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let plan = SpillPlan::new(4, 2, 1 << 20, dir.path()).unwrap();
        let mut rec = Vec::new();
        rec.extend_from_slice(&9u32.to_le_bytes());
        rec.extend_from_slice(&0u16.to_le_bytes());
        rec.extend_from_slice(&1f32.to_le_bytes());
        std::fs::write(plan.path(0), &rec).unwrap();
        assert!(matches!(
            densify_block(&plan, 0),
            Err(PrecomputeError::InvalidX(_))
        ));
    }
}
