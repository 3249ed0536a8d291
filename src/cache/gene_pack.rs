//! The gene-major layout: every gene's response body (gzip of its f32 column) packed one after
//! another in one object, plus an offset index. Serving a gene after precompute is one ranged
//! GET of exactly the response's bytes; the index is read once per process.

use std::ops::Range;

use bytes::Bytes;
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use super::{ArtifactCache, CacheError};

/// Cache key of the packed gene bodies.
pub const PACK_DATA: &str = "genes/packed.gz.bin";
/// Cache key of the offset index: `n_genes + 1` little-endian u64 offsets into [`PACK_DATA`].
pub const PACK_INDEX: &str = "genes/index.u64";

/// Why a gene pack could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GenePackError {
    /// Cache I/O.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The index does not fit the atlas.
    #[error("gene pack index is invalid: {0}")]
    Invalid(String),
    /// Writing the pack failed.
    #[error("writing the gene pack failed: {0}")]
    Write(String),
}

/// A loaded gene pack index.
#[derive(Debug, Clone)]
pub struct GenePack {
    offsets: Vec<u64>,
}

impl GenePack {
    /// Read the index of the pack under `fingerprint`, if the pack is complete.
    pub async fn load(
        cache: &ArtifactCache,
        fingerprint: &str,
        n_genes: u64,
    ) -> Result<Option<GenePack>, GenePackError> {
        let Some(bytes) = cache.get(fingerprint, PACK_INDEX).await? else {
            return Ok(None);
        };
        Self::parse(&bytes, n_genes).map(Some)
    }

    /// Parse an index for `n_genes` genes.
    pub fn parse(bytes: &[u8], n_genes: u64) -> Result<GenePack, GenePackError> {
        if bytes.len() as u64 != (n_genes + 1) * 8 {
            return Err(GenePackError::Invalid(format!(
                "{} bytes for {} genes",
                bytes.len(),
                n_genes
            )));
        }
        let offsets: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut word = [0u8; 8];
                word.copy_from_slice(c);
                u64::from_le_bytes(word)
            })
            .collect();
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(GenePackError::Invalid("offsets are not ascending".into()));
        }
        Ok(GenePack { offsets })
    }

    /// Byte range of gene `gene` inside [`PACK_DATA`].
    pub fn range(&self, gene: usize) -> Option<Range<u64>> {
        Some(*self.offsets.get(gene)?..*self.offsets.get(gene + 1)?)
    }

    /// Total packed bytes.
    pub fn total_bytes(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// The gzip body of gene `gene` (one ranged GET).
    pub async fn read(
        &self,
        cache: &ArtifactCache,
        fingerprint: &str,
        gene: usize,
    ) -> Result<Bytes, GenePackError> {
        let range = self
            .range(gene)
            .ok_or_else(|| GenePackError::Invalid(format!("no gene #{gene} in the pack")))?;
        Ok(cache.get_range(fingerprint, PACK_DATA, range).await?)
    }
}

/// Streams gene bodies into the pack object (multipart upload), then writes the index.
pub struct GenePackWriter {
    writer: BufWriter,
    offsets: Vec<u64>,
}

impl std::fmt::Debug for GenePackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenePackWriter")
            .field("genes", &(self.offsets.len() - 1))
            .finish()
    }
}

impl GenePackWriter {
    /// Start a pack under `fingerprint`.
    pub fn new(cache: &ArtifactCache, fingerprint: &str) -> Self {
        let path = cache.path(fingerprint, PACK_DATA);
        GenePackWriter {
            writer: BufWriter::new(cache.store().clone(), path),
            offsets: vec![0],
        }
    }

    /// Append the next gene's gzip body.
    pub async fn push(&mut self, gzipped: &[u8]) -> Result<(), GenePackError> {
        self.writer
            .write_all(gzipped)
            .await
            .map_err(|e| GenePackError::Write(e.to_string()))?;
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last + gzipped.len() as u64);
        Ok(())
    }

    /// Genes written so far.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether no gene was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finish the data object, then write the index (its presence marks the pack complete).
    pub async fn finish(
        mut self,
        cache: &ArtifactCache,
        fingerprint: &str,
    ) -> Result<u64, GenePackError> {
        self.writer
            .shutdown()
            .await
            .map_err(|e| GenePackError::Write(e.to_string()))?;
        let mut index = Vec::with_capacity(self.offsets.len() * 8);
        for o in &self.offsets {
            index.extend_from_slice(&o.to_le_bytes());
        }
        // Create-only like every artifact: a concurrent run that finished first wrote the
        // same index (the pack is deterministic for one fingerprint).
        cache
            .put_plain(
                fingerprint,
                PACK_INDEX,
                index.into(),
                "application/octet-stream",
            )
            .await?;
        Ok(self.offsets.last().copied().unwrap_or(0))
    }
}
