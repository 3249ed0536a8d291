//! The gene-major layout: every gene's response body (the policy's gzip of its f32 column)
//! stored in **gene blocks** — one object per block of consecutive genes, written whole and
//! create-only by one task — plus one index. Serving a gene is one ranged GET of exactly the
//! response's bytes; the index is read once per process.
//!
//! * block object `genes/blocks/<b>.bin`: `count + 1` little-endian u64 offsets of the bodies
//!   relative to the end of that header, then the bodies in gene order. An object is complete
//!   when it exists (one PUT), so a reader never sees half a block.
//! * index `genes/pack.index`: [`INDEX_MAGIC`], then u64 `n_genes`, `genes_per_block`,
//!   `n_blocks`, then per block its `count + 1` offsets, absolute within the block object.
//!   Written last: its presence marks the whole pack complete.

use std::ops::Range;

use bytes::Bytes;

use super::{ArtifactCache, CacheError};

/// Cache key of the pack index.
pub const PACK_INDEX: &str = "genes/pack.index";
/// First bytes of the pack index (format version 1).
pub const INDEX_MAGIC: &[u8; 8] = b"CEGPACK1";
/// Most genes in one block (also bounds a block header).
pub const MAX_GENES_PER_BLOCK: u64 = 1 << 16;

/// Cache key of gene block `block`.
pub fn block_key(block: u64) -> String {
    format!("genes/blocks/{block:06}.bin")
}

/// Why a gene pack could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GenePackError {
    /// Cache I/O.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The index or a block header does not fit the atlas.
    #[error("gene pack is invalid: {0}")]
    Invalid(String),
}

/// The genes of every block: `genes_per_block` consecutive genes, the last block fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneBlocks {
    /// Genes in the atlas.
    pub n_genes: u64,
    /// Genes per block (≥ 1).
    pub genes_per_block: u64,
}

impl GeneBlocks {
    /// Number of blocks.
    pub fn count(&self) -> u64 {
        self.n_genes.div_ceil(self.genes_per_block.max(1))
    }

    /// Genes of block `block`.
    pub fn genes(&self, block: u64) -> Range<u64> {
        let start = (block * self.genes_per_block).min(self.n_genes);
        start..(start + self.genes_per_block).min(self.n_genes)
    }
}

/// Serialise a block object from its gzip bodies (in gene order).
pub fn encode_block(bodies: &[Bytes]) -> Vec<u8> {
    let data: usize = bodies.iter().map(Bytes::len).sum();
    let mut out = Vec::with_capacity((bodies.len() + 1) * 8 + data);
    let mut offset = 0u64;
    out.extend_from_slice(&offset.to_le_bytes());
    for body in bodies {
        offset += body.len() as u64;
        out.extend_from_slice(&offset.to_le_bytes());
    }
    for body in bodies {
        out.extend_from_slice(body);
    }
    out
}

/// Length of the header of a block of `count` genes.
pub fn block_header_len(count: u64) -> u64 {
    (count + 1) * 8
}

/// Parse a block header (`count + 1` relative offsets) of an object of `object_len` bytes into
/// absolute offsets of the bodies within the object.
pub fn decode_block_header(
    header: &[u8],
    count: u64,
    object_len: u64,
) -> Result<Vec<u64>, GenePackError> {
    let header_len = block_header_len(count);
    if header.len() as u64 != header_len {
        return Err(GenePackError::Invalid(format!(
            "block header of {} bytes for {count} genes",
            header.len()
        )));
    }
    let offsets: Vec<u64> = header
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) + header_len)
        .collect();
    let ascending = offsets.windows(2).all(|w| w[0] <= w[1]);
    if offsets.first() != Some(&header_len) || !ascending || offsets.last() != Some(&object_len) {
        return Err(GenePackError::Invalid(format!(
            "block offsets do not span its {object_len} bytes"
        )));
    }
    Ok(offsets)
}

/// A loaded gene pack index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenePack {
    blocks: GeneBlocks,
    /// Per block, `count + 1` absolute offsets into the block object.
    offsets: Vec<u64>,
}

impl GenePack {
    /// A pack from each block's absolute offsets (as [`decode_block_header`] returns them).
    pub fn from_blocks(
        blocks: GeneBlocks,
        per_block: Vec<Vec<u64>>,
    ) -> Result<GenePack, GenePackError> {
        if per_block.len() as u64 != blocks.count() {
            return Err(GenePackError::Invalid(format!(
                "{} block headers for {} blocks",
                per_block.len(),
                blocks.count()
            )));
        }
        let mut offsets = Vec::with_capacity((blocks.n_genes + blocks.count()) as usize);
        for (b, o) in per_block.into_iter().enumerate() {
            let genes = blocks.genes(b as u64);
            if o.len() as u64 != genes.end - genes.start + 1 {
                return Err(GenePackError::Invalid(format!(
                    "block {b} has a wrong gene count"
                )));
            }
            offsets.extend(o);
        }
        Ok(GenePack { blocks, offsets })
    }

    /// Serialise the index.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.offsets.len() * 8);
        out.extend_from_slice(INDEX_MAGIC);
        for word in [
            self.blocks.n_genes,
            self.blocks.genes_per_block,
            self.blocks.count(),
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for o in &self.offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out
    }

    /// Parse an index for `n_genes` genes.
    pub fn parse(bytes: &[u8], n_genes: u64) -> Result<GenePack, GenePackError> {
        let invalid = |why: &str| GenePackError::Invalid(why.to_string());
        if bytes.len() < 32 || &bytes[..8] != INDEX_MAGIC || !bytes.len().is_multiple_of(8) {
            return Err(invalid("not a pack index of this version"));
        }
        let words: Vec<u64> = bytes[8..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let (n, per, count) = (words[0], words[1], words[2]);
        if n != n_genes {
            return Err(GenePackError::Invalid(format!(
                "index for {n} genes, the atlas has {n_genes}"
            )));
        }
        if per == 0 || per > MAX_GENES_PER_BLOCK {
            return Err(invalid("genes per block out of range"));
        }
        let blocks = GeneBlocks {
            n_genes,
            genes_per_block: per,
        };
        if count != blocks.count() || words.len() as u64 - 3 != n_genes + count {
            return Err(invalid("index length does not match its block count"));
        }
        let pack = GenePack {
            blocks,
            offsets: words[3..].to_vec(),
        };
        for b in 0..count {
            let o = pack.block_offsets(b);
            if o.windows(2).any(|w| w[0] > w[1]) {
                return Err(invalid("offsets are not ascending"));
            }
        }
        Ok(pack)
    }

    fn block_offsets(&self, block: u64) -> &[u64] {
        let genes = self.blocks.genes(block);
        let start = (block * (self.blocks.genes_per_block + 1)) as usize;
        let len = (genes.end - genes.start + 1) as usize;
        self.offsets.get(start..start + len).unwrap_or_default()
    }

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

    /// The block layout.
    pub fn blocks(&self) -> GeneBlocks {
        self.blocks
    }

    /// Block key and byte range of gene `gene`.
    pub fn locate(&self, gene: usize) -> Option<(String, Range<u64>)> {
        let gene = gene as u64;
        if gene >= self.blocks.n_genes {
            return None;
        }
        let block = gene / self.blocks.genes_per_block;
        let i = (gene % self.blocks.genes_per_block) as usize;
        let o = self.block_offsets(block);
        Some((block_key(block), *o.get(i)?..*o.get(i + 1)?))
    }

    /// Total packed body bytes (headers excluded).
    pub fn total_bytes(&self) -> u64 {
        (0..self.blocks.count())
            .map(|b| {
                let o = self.block_offsets(b);
                o.last().unwrap_or(&0) - o.first().unwrap_or(&0)
            })
            .sum()
    }

    /// The gzip body of gene `gene` (one ranged GET).
    pub async fn read(
        &self,
        cache: &ArtifactCache,
        fingerprint: &str,
        gene: usize,
    ) -> Result<Bytes, GenePackError> {
        let (key, range) = self
            .locate(gene)
            .ok_or_else(|| GenePackError::Invalid(format!("no gene #{gene} in the pack")))?;
        Ok(cache.get_range(fingerprint, &key, range).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_through_headers_and_the_index() {
        let blocks = GeneBlocks {
            n_genes: 5,
            genes_per_block: 2,
        };
        assert_eq!(blocks.count(), 3);
        assert_eq!(blocks.genes(2), 4..5);
        let bodies: Vec<Vec<Bytes>> = (0..3)
            .map(|b| {
                blocks
                    .genes(b)
                    .map(|g| Bytes::from(vec![g as u8; g as usize + 1]))
                    .collect()
            })
            .collect();
        let mut per_block = Vec::new();
        let mut objects = Vec::new();
        for (b, bodies) in bodies.iter().enumerate() {
            let object = encode_block(bodies);
            let count = blocks.genes(b as u64).count() as u64;
            let header = &object[..block_header_len(count) as usize];
            per_block.push(decode_block_header(header, count, object.len() as u64).unwrap());
            objects.push(object);
        }
        let pack = GenePack::from_blocks(blocks, per_block).unwrap();
        let parsed = GenePack::parse(&pack.encode(), 5).unwrap();
        assert_eq!(parsed, pack);
        for g in 0..5usize {
            let (key, range) = parsed.locate(g).unwrap();
            let b = g / 2;
            assert_eq!(key, block_key(b as u64));
            let object = &objects[b];
            assert_eq!(
                &object[range.start as usize..range.end as usize],
                &vec![g as u8; g + 1][..]
            );
        }
        assert!(parsed.locate(5).is_none());
        assert_eq!(parsed.total_bytes(), 15);
        assert!(GenePack::parse(&pack.encode(), 6).is_err());
        assert!(GenePack::parse(b"CEGPACK1", 5).is_err());
        let mut corrupt = pack.encode();
        corrupt.truncate(corrupt.len() - 8);
        assert!(GenePack::parse(&corrupt, 5).is_err());
    }

    #[test]
    fn block_headers_must_span_the_object() {
        let object = encode_block(&[Bytes::from_static(b"abc")]);
        assert!(decode_block_header(&object[..16], 1, object.len() as u64 + 1).is_err());
        assert!(decode_block_header(&object[..8], 1, object.len() as u64).is_err());
    }
}
