//! Scratch shards: the output of one `transpose` task, the input of every `pack` task.
//!
//! A shard holds the stored values of one row block of a CSR X, grouped by gene block and,
//! inside a group, by gene (rows ascending, as in X). Layout (little-endian):
//!
//! ```text
//! "CESHARD1"  u64 n_gene_blocks  u64 row_start  u64 row_end
//! u64 group_offsets[n_gene_blocks + 1]          byte offsets of the groups in the shard
//! group b:    u32 counts[genes in block b]  u32 rows[n]  f32 values[n]
//! ```
//!
//! A pack task reads 16 bytes of the offset table and then its group: two ranged GETs per
//! shard, whatever the number of blocks.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

use super::gene_pack::GeneBlocks;

/// First bytes of a shard.
pub const SHARD_MAGIC: &[u8; 8] = b"CESHARD1";
/// Bytes before the group offset table.
const FIXED_HEADER: u64 = 32;

/// Scratch key of the shard of row block `block`.
pub fn shard_key(block: u64) -> String {
    format!("shards/{block:06}.bin")
}

/// Byte range of the two offsets bounding group `block` in a shard's header.
pub fn group_bounds_range(block: u64) -> Range<u64> {
    let start = FIXED_HEADER + block * 8;
    start..start + 16
}

/// The byte range of a group from the 16 bytes [`group_bounds_range`] names.
pub fn parse_group_bounds(bytes: &[u8]) -> Result<Range<u64>, String> {
    if bytes.len() != 16 {
        return Err(format!("shard offsets of {} bytes", bytes.len()));
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
    let (start, end) = (word(0), word(8));
    if start > end || !(end - start).is_multiple_of(4) {
        return Err(format!("shard group bounds {start}..{end} are invalid"));
    }
    Ok(start..end)
}

/// A column index of X as stored (any integer type); `None` when negative.
pub trait ColumnIndex: Copy {
    /// The index, if not negative.
    fn to_u64(self) -> Option<u64>;
}

macro_rules! column_index {
    ($($t:ty),*) => {$(
        impl ColumnIndex for $t {
            #[inline]
            fn to_u64(self) -> Option<u64> {
                u64::try_from(self).ok()
            }
        }
    )*};
}
column_index!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Build the shard of rows `rows` of X. `indptr` holds the `rows.len() + 1` absolute row
/// offsets, `genes` (column indices as stored, checked here against `blocks.n_genes`) and
/// `values` the stored values from `indptr[0]` on.
pub fn build_shard<G: ColumnIndex>(
    blocks: GeneBlocks,
    rows: Range<u64>,
    indptr: &[u64],
    genes: &[G],
    values: &[f32],
) -> Result<Bytes, String> {
    let n_rows = (rows.end - rows.start) as usize;
    let first = *indptr.first().ok_or("empty row offsets")?;
    let n = genes.len();
    if indptr.len() != n_rows + 1 || values.len() != n || indptr[n_rows] - first != n as u64 {
        return Err(format!(
            "row block {rows:?}: {} offsets, {} indices, {} values",
            indptr.len(),
            n,
            values.len()
        ));
    }
    let n_genes = blocks.n_genes as usize;
    let mut counts = vec![0u32; n_genes];
    for &g in genes {
        match g.to_u64().filter(|&g| g < blocks.n_genes) {
            Some(g) => counts[g as usize] += 1,
            None => {
                return Err(format!(
                    "a column index is out of bounds for {n_genes} genes (rows from {})",
                    rows.start
                ));
            }
        }
    }
    // Word (u32) positions: header, then per group counts, rows, values.
    let n_blocks = blocks.count();
    let header_words = (FIXED_HEADER as usize + (n_blocks as usize + 1) * 8) / 4;
    let mut group_offsets = Vec::with_capacity(n_blocks as usize + 1);
    // Per gene: word position of its first row in the output.
    let mut cursor = vec![0usize; n_genes];
    let mut pos = header_words;
    for b in 0..n_blocks {
        let genes_b = blocks.genes(b);
        group_offsets.push(pos as u64 * 4);
        let width = (genes_b.end - genes_b.start) as usize;
        let records: usize = counts[genes_b.start as usize..genes_b.end as usize]
            .iter()
            .map(|&c| c as usize)
            .sum();
        let mut row_pos = pos + width;
        for g in genes_b {
            cursor[g as usize] = row_pos;
            row_pos += counts[g as usize] as usize;
        }
        pos += width + 2 * records;
    }
    group_offsets.push(pos as u64 * 4);
    let mut words = vec![0u32; pos];
    // Header.
    let mut header = Vec::with_capacity(header_words * 4);
    header.extend_from_slice(SHARD_MAGIC);
    for w in [n_blocks, rows.start, rows.end] {
        header.extend_from_slice(&w.to_le_bytes());
    }
    for o in &group_offsets {
        header.extend_from_slice(&o.to_le_bytes());
    }
    for (w, chunk) in words.iter_mut().zip(header.chunks_exact(4)) {
        *w = u32::from_le_bytes(chunk.try_into().unwrap_or([0; 4]));
    }
    // Counts, then rows and values (a value sits `records` words after its row).
    for b in 0..n_blocks {
        let genes_b = blocks.genes(b);
        let at = (group_offsets[b as usize] / 4) as usize;
        let width = (genes_b.end - genes_b.start) as usize;
        words[at..at + width]
            .copy_from_slice(&counts[genes_b.start as usize..genes_b.end as usize]);
    }
    let mut value_shift = vec![0usize; n_blocks as usize];
    for b in 0..n_blocks {
        let genes_b = blocks.genes(b);
        value_shift[b as usize] = counts[genes_b.start as usize..genes_b.end as usize]
            .iter()
            .map(|&c| c as usize)
            .sum();
    }
    let per_block = blocks.genes_per_block as u32;
    for r in 0..n_rows {
        let row = (rows.start + r as u64) as u32;
        let s = (indptr[r] - first) as usize;
        let e = (indptr[r + 1] - first) as usize;
        for j in s..e {
            // Checked in the counting pass above.
            let g = genes[j].to_u64().unwrap_or_default() as u32;
            let p = cursor[g as usize];
            cursor[g as usize] = p + 1;
            words[p] = row;
            words[p + value_shift[(g / per_block) as usize]] = values[j].to_bits();
        }
    }
    Ok(words_to_le_bytes(words))
}

/// Little-endian u32 words seen as bytes, without a copy.
struct Words(Vec<u32>);

impl AsRef<[u8]> for Words {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

fn words_to_le_bytes(mut words: Vec<u32>) -> Bytes {
    if cfg!(target_endian = "big") {
        for w in &mut words {
            *w = w.to_le();
        }
    }
    Bytes::from_owner(Words(words))
}

/// The little-endian u32 words of `bytes` (a view when aligned on a little-endian target).
pub fn le_words(bytes: &[u8]) -> Cow<'_, [u32]> {
    if cfg!(target_endian = "little")
        && let Ok(words) = bytemuck::try_cast_slice::<u8, u32>(bytes)
    {
        return Cow::Borrowed(words);
    }
    Cow::Owned(
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
            .collect(),
    )
}

/// One gene block's group of one shard, parsed.
#[derive(Debug)]
pub struct Group<'a> {
    words: Cow<'a, [u32]>,
    width: usize,
    records: usize,
}

impl<'a> Group<'a> {
    /// Parse a group of `width` genes.
    pub fn parse(bytes: &'a [u8], width: usize) -> Result<Group<'a>, String> {
        if !bytes.len().is_multiple_of(4) {
            return Err("shard group is not word-aligned".into());
        }
        let words = le_words(bytes);
        if words.len() < width {
            return Err(format!(
                "shard group of {} words for {width} genes",
                words.len()
            ));
        }
        let records: usize = words[..width].iter().map(|&c| c as usize).sum();
        if words.len() != width + 2 * records {
            return Err(format!(
                "shard group of {} words for {records} values of {width} genes",
                words.len()
            ));
        }
        Ok(Group {
            words,
            width,
            records,
        })
    }

    /// Rows and value bits of every gene of the group, in gene order.
    pub fn genes(&self) -> impl Iterator<Item = (&[u32], &[u32])> + '_ {
        let counts = &self.words[..self.width];
        let rows = &self.words[self.width..self.width + self.records];
        let values = &self.words[self.width + self.records..];
        let mut at = 0usize;
        counts.iter().map(move |&c| {
            let range = at..at + c as usize;
            at += c as usize;
            (&rows[range.clone()], &values[range])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_group_values_by_gene_block_and_gene() {
        let blocks = GeneBlocks {
            n_genes: 5,
            genes_per_block: 2,
        };
        // Rows 10..13: row 10 = {g4: 1, g0: 2}, row 11 = {}, row 12 = {g1: 3, g0: 4, g2: 5}.
        let indptr = [100u64, 102, 102, 105];
        let genes = [4u32, 0, 1, 0, 2];
        let values = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        let shard = build_shard(blocks, 10..13, &indptr, &genes, &values).unwrap();
        assert_eq!(&shard[..8], SHARD_MAGIC);
        let mut seen = Vec::new();
        for b in 0..3u64 {
            let r = group_bounds_range(b);
            let bounds = parse_group_bounds(&shard[r.start as usize..r.end as usize]).unwrap();
            let bytes = &shard[bounds.start as usize..bounds.end as usize];
            let group = Group::parse(bytes, blocks.genes(b).count()).unwrap();
            for (i, (rows, bits)) in group.genes().enumerate() {
                let values: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
                seen.push((blocks.genes(b).start + i as u64, rows.to_vec(), values));
            }
        }
        assert_eq!(
            seen,
            vec![
                (0, vec![10, 12], vec![2.0, 4.0]),
                (1, vec![12], vec![3.0]),
                (2, vec![12], vec![5.0]),
                (3, vec![], vec![]),
                (4, vec![10], vec![1.0]),
            ]
        );
        assert_eq!(shard.len() as u64, {
            let r = group_bounds_range(2);
            parse_group_bounds(&shard[r.start as usize..r.end as usize])
                .unwrap()
                .end
        });
    }

    #[test]
    fn malformed_groups_are_refused() {
        assert!(Group::parse(&[1, 0, 0], 1).is_err());
        // One gene claiming 5 records in a group with none.
        assert!(Group::parse(&5u32.to_le_bytes(), 1).is_err());
        assert!(parse_group_bounds(&[0; 15]).is_err());
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&9u64.to_le_bytes());
        assert!(parse_group_bounds(&b).is_err());
        let blocks = GeneBlocks {
            n_genes: 2,
            genes_per_block: 1,
        };
        assert!(build_shard(blocks, 0..1, &[0, 2], &[0u32], &[1.0]).is_err());
        assert!(build_shard(blocks, 0..1, &[0, 1], &[-1i32], &[1.0]).is_err());
        assert!(build_shard(blocks, 0..1, &[0, 1], &[2i64], &[1.0]).is_err());
    }
}
