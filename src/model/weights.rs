//! Edge weights and the degree rule of the strict profile (protocol-strict.md §8, §12.4).
//!
//! The strict viewer needs one float64 weight per edge of the seed's edge list ([`Edges`],
//! built from `S = C + Cᵀ`): the weight of edge `(s, d)`, `s < d`, is the stored value of the
//! connectivity matrix at row `s`, column `d` (duplicates summed, as SciPy reads them), widened
//! to float64. Every weight must be finite and strictly positive, `max_neighbors` must be the
//! largest number of edges touching one cell, and the index width is uint16 up to 65 536
//! cells, uint32 up to 2³², with no form above. A graph breaking one of these has no valid
//! strict form ([`NoStrictForm`]); the strict profile then publishes no graph.

use crate::model::edges::{EdgeValue, Edges, IndexDtype, SparseIndex};
use crate::model::error::{ModelError, ModelResult};

/// Largest edge working set (sources + destinations + weights) the strict viewer accepts.
pub const MAX_WORKING_SET_BYTES: u64 = 512 << 20;

/// A stored value type that widens to float64 (the weights file's dtype).
pub trait WeightValue: EdgeValue {
    /// The value as float64 (`numpy.astype(float64)`).
    fn widen(self) -> f64;
}

macro_rules! weight_value {
    ($($t:ty),*) => {$(
        impl WeightValue for $t {
            fn widen(self) -> f64 { self as f64 }
        }
    )*};
}
weight_value!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);

impl WeightValue for bool {
    fn widen(self) -> f64 {
        if self { 1.0 } else { 0.0 }
    }
}

/// Which axis `indptr` runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseLayout {
    /// Compressed rows: `indptr` over rows, `indices` are columns.
    Csr,
    /// Compressed columns: `indptr` over columns, `indices` are rows.
    Csc,
}

/// Why a graph has no valid strict form (the strict profile then omits it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoStrictForm {
    /// More cells than a uint32 index can address.
    #[error("{n_cells} cells: edge indices above 2^32 cells have no strict form")]
    TooManyCells {
        /// Number of cells.
        n_cells: u64,
    },
    /// An edge exists only through `C[d, s]` (the matrix is not symmetric in its pattern),
    /// so it has no stored weight at `C[s, d]`.
    #[error(
        "{count} of {n_edges} edges have no stored weight at (source, destination), e.g. ({src}, {dst}) exists only as C[{dst}, {src}] (the connectivities are not symmetric)"
    )]
    MissingWeight {
        /// First offending edge's source.
        src: u32,
        /// First offending edge's destination.
        dst: u32,
        /// Offending edges.
        count: usize,
        /// All edges.
        n_edges: usize,
    },
    /// A stored weight is zero or negative.
    #[error(
        "{count} of {n_edges} edges have a weight that is not > 0, e.g. C[{src}, {dst}] = {value}"
    )]
    NonPositiveWeight {
        /// First offending edge's source.
        src: u32,
        /// First offending edge's destination.
        dst: u32,
        /// Its weight.
        value: f64,
        /// Offending edges.
        count: usize,
        /// All edges.
        n_edges: usize,
    },
    /// A stored weight is NaN or infinite.
    #[error("{count} of {n_edges} edges have a non-finite weight, e.g. C[{src}, {dst}] = {value}")]
    NonFiniteWeight {
        /// First offending edge's source.
        src: u32,
        /// First offending edge's destination.
        dst: u32,
        /// Its weight.
        value: f64,
        /// Offending edges.
        count: usize,
        /// All edges.
        n_edges: usize,
    },
    /// Sources, destinations and weights together exceed the viewer's working set.
    #[error(
        "the edge buffers need {bytes} bytes, above the viewer's working set of {MAX_WORKING_SET_BYTES} bytes"
    )]
    TooLarge {
        /// Bytes of sources + destinations + weights.
        bytes: u64,
    },
    /// The graph cannot be read as a sparse matrix at all.
    #[error("the connectivity graph is unusable: {reason}")]
    Unreadable {
        /// What is wrong.
        reason: String,
    },
}

/// The index dtype the strict profile requires: uint16 up to 65 536 cells, uint32 up to 2³²
/// cells, none above (the seed switches to uint32 one cell earlier and writes uint64 above).
pub fn strict_index_dtype(n_cells: u64) -> Option<IndexDtype> {
    if n_cells <= 65_536 {
        Some(IndexDtype::U16)
    } else if n_cells <= 1 << 32 {
        Some(IndexDtype::U32)
    } else {
        None
    }
}

/// Little-endian encoding of edge endpoints in a strict dtype (uint16 holds 0..=65 535, so
/// every cell of a 65 536-cell atlas fits).
pub fn encode_strict_indices(values: impl Iterator<Item = u32>, dtype: IndexDtype) -> Vec<u8> {
    let mut out = Vec::new();
    match dtype {
        IndexDtype::U16 => values.for_each(|v| out.extend_from_slice(&(v as u16).to_le_bytes())),
        IndexDtype::U32 => values.for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        IndexDtype::U64 => {
            values.for_each(|v| out.extend_from_slice(&u64::from(v).to_le_bytes()));
        }
    }
    out
}

/// The largest number of edges touching one cell, both endpoints counted (what the strict
/// `max_neighbors` must be; self-loops are not edges and do not count).
pub fn max_degree(edges: &Edges) -> usize {
    let n = usize::try_from(edges.n_cells).unwrap_or(0);
    let mut degree = vec![0u32; n];
    for (source, w) in edges.offsets.windows(2).enumerate() {
        let out = (w[1] - w[0]) as u32;
        if let Some(slot) = degree.get_mut(source) {
            *slot = slot.saturating_add(out);
        }
        for &d in edges.dst.get(w[0]..w[1]).unwrap_or_default() {
            if let Some(slot) = degree.get_mut(d as usize) {
                *slot = slot.saturating_add(1);
            }
        }
    }
    degree.into_iter().max().unwrap_or(0) as usize
}

/// Visit the weight of every edge, in edge order: `C[s, d]` (duplicates summed in storage
/// order, in the stored type), or `None` where `C[s, d]` is not stored.
///
/// `indptr`, `indices`, `data` are the arrays of `C` in `layout`; they must be the arrays
/// `edges` was built from (validated there), otherwise entries outside the edge list are
/// ignored and malformed offsets are an error. CSR arrays are walked row by row with a buffer
/// of one row's edges (every weight of source `s` is in row `s`); CSC arrays need one sum per
/// edge.
pub fn visit_edge_weights<P: SparseIndex, I: SparseIndex, V: WeightValue>(
    edges: &Edges,
    indptr: &[P],
    indices: &[I],
    data: &[V],
    layout: SparseLayout,
    mut visit: impl FnMut((u32, u32), Option<V>),
) -> ModelResult<()> {
    if indices.len() != data.len() {
        return Err(invalid(format!(
            "indices ({}) and data ({}) differ in length",
            indices.len(),
            data.len()
        )));
    }
    match layout {
        SparseLayout::Csr => {
            let mut row: Vec<Option<V>> = Vec::new();
            for (source, w) in edges.offsets.windows(2).enumerate() {
                let dst = edges.dst.get(w[0]..w[1]).unwrap_or_default();
                row.clear();
                row.resize(dst.len(), None);
                let (start, end) = major_range(indptr, source, indices.len())?;
                let mut cursor = 0usize;
                for (&col, &value) in indices[start..end].iter().zip(&data[start..end]) {
                    let Some(col) = col.to_index().and_then(|c| u32::try_from(c).ok()) else {
                        return Err(invalid(format!("an index of row {source} is out of range")));
                    };
                    if col as usize <= source {
                        continue;
                    }
                    // C[s, d] + C[d, s] summing to zero is not an edge: no slot.
                    if let Some(k) = locate(dst, col, &mut cursor) {
                        row[k] = Some(row[k].unwrap_or_else(V::zero).plus(value));
                    }
                }
                for (&d, weight) in dst.iter().zip(&row) {
                    visit((source as u32, d), *weight);
                }
            }
        }
        SparseLayout::Csc => {
            let mut sums: Vec<Option<V>> = vec![None; edges.n_edges()];
            let mut cursors = vec![0usize; edges.offsets.len().saturating_sub(1)];
            for col in 0..indptr.len().saturating_sub(1) {
                let (start, end) = major_range(indptr, col, indices.len())?;
                let col32 = u32::try_from(col).unwrap_or(u32::MAX);
                for (&row, &value) in indices[start..end].iter().zip(&data[start..end]) {
                    let Some(row) = row.to_index() else {
                        return Err(invalid(format!("an index of column {col} is out of range")));
                    };
                    if row >= col {
                        continue;
                    }
                    let (Some(&a), Some(&b), Some(cursor)) = (
                        edges.offsets.get(row),
                        edges.offsets.get(row + 1),
                        cursors.get_mut(row),
                    ) else {
                        return Err(invalid(format!("index {row} out of range")));
                    };
                    if let Some(k) = locate(edges.dst.get(a..b).unwrap_or_default(), col32, cursor)
                    {
                        let slot = &mut sums[a + k];
                        *slot = Some(slot.unwrap_or_else(V::zero).plus(value));
                    }
                }
            }
            for (source, w) in edges.offsets.windows(2).enumerate() {
                let dst = edges.dst.get(w[0]..w[1]).unwrap_or_default();
                for (&d, weight) in dst.iter().zip(sums.get(w[0]..w[1]).unwrap_or_default()) {
                    visit((source as u32, d), *weight);
                }
            }
        }
    }
    Ok(())
}

/// The weight of every edge in edge order (see [`visit_edge_weights`]).
pub fn edge_weights<P: SparseIndex, I: SparseIndex, V: WeightValue>(
    edges: &Edges,
    indptr: &[P],
    indices: &[I],
    data: &[V],
    layout: SparseLayout,
) -> ModelResult<Vec<Option<V>>> {
    let mut out = Vec::with_capacity(edges.n_edges());
    visit_edge_weights(edges, indptr, indices, data, layout, |_, w| out.push(w))?;
    Ok(out)
}

fn invalid(reason: String) -> ModelError {
    ModelError::InvalidSparse { reason }
}

/// `indptr[major]..indptr[major + 1]`, checked.
fn major_range<P: SparseIndex>(
    indptr: &[P],
    major: usize,
    len: usize,
) -> ModelResult<(usize, usize)> {
    let (Some(&a), Some(&b)) = (indptr.get(major), indptr.get(major + 1)) else {
        return Err(invalid(format!("indptr has no entry {}", major + 1)));
    };
    match (a.to_index(), b.to_index()) {
        (Some(a), Some(b)) if a <= b && b <= len => Ok((a, b)),
        _ => Err(invalid(format!(
            "indptr is not a valid offset array at {major}"
        ))),
    }
}

/// Position of `col` in a row's sorted destinations, walking `cursor` forward when `col` does
/// not precede it (sorted input: linear overall), else by binary search.
fn locate(dst: &[u32], col: u32, cursor: &mut usize) -> Option<usize> {
    let mut c = (*cursor).min(dst.len());
    if c > 0 && dst[c - 1] >= col {
        return dst.binary_search(&col).ok();
    }
    while c < dst.len() && dst[c] < col {
        c += 1;
    }
    *cursor = c;
    (c < dst.len() && dst[c] == col).then_some(c)
}

/// The strict verdict of a CSR graph without visiting every edge, when the common case allows
/// it: every stored value finite and > 0 and every row's columns strictly increasing (no
/// duplicates). Then each stored entry above the diagonal is an edge with a valid weight, and
/// the graph is valid iff those entries are as many as the edges; otherwise the missing ones
/// are counted and the first is located. `None`: the case does not apply (use
/// [`visit_edge_weights`] with a [`WeightCheck`]).
pub fn csr_fast_verdict<P: SparseIndex, I: SparseIndex, V: WeightValue>(
    edges: &Edges,
    indptr: &[P],
    indices: &[I],
    data: &[V],
) -> Option<Result<(), NoStrictForm>> {
    if indices.len() != data.len() || indptr.len() != edges.offsets.len() {
        return None;
    }
    if !data.iter().all(|v| {
        let w = v.widen();
        w.is_finite() && w > 0.0
    }) {
        return None;
    }
    let mut upper = 0usize;
    for (row, w) in indptr.windows(2).enumerate() {
        let (Some(a), Some(b)) = (w[0].to_index(), w[1].to_index()) else {
            return None;
        };
        let cols = indices.get(a..b)?;
        // Strictly increasing and every index usable (else the general walk decides).
        if cols.first().is_some_and(|c| c.to_index().is_none())
            || cols
                .windows(2)
                .any(|p| match (p[0].to_index(), p[1].to_index()) {
                    (Some(x), Some(y)) => x >= y,
                    _ => true,
                })
        {
            return None;
        }
        // Sorted: the entries above the diagonal are a suffix.
        upper += cols.len() - cols.partition_point(|c| c.to_index().is_some_and(|c| c <= row));
    }
    let n_edges = edges.n_edges();
    if upper == n_edges {
        return Some(Ok(()));
    }
    // Some edge exists only through C[d, s]: find the first one (sorted merge per row).
    for (source, w) in edges.offsets.windows(2).enumerate() {
        let dst = edges.dst.get(w[0]..w[1])?;
        let (a, b) = (
            indptr.get(source)?.to_index()?,
            indptr.get(source + 1)?.to_index()?,
        );
        let cols = indices.get(a..b)?;
        let col = |k: usize| cols[k].to_index().unwrap_or(usize::MAX);
        let mut k = cols.partition_point(|c| c.to_index().is_some_and(|c| c <= source));
        for &d in dst {
            let d_index = d as usize;
            while k < cols.len() && col(k) < d_index {
                k += 1;
            }
            if k >= cols.len() || col(k) != d_index {
                return Some(Err(NoStrictForm::MissingWeight {
                    src: source as u32,
                    dst: d,
                    count: n_edges.saturating_sub(upper),
                    n_edges,
                }));
            }
        }
    }
    None
}

/// Accumulates the strict verdict over the weights of a graph's edges.
#[derive(Debug, Default)]
pub struct WeightCheck {
    n_edges: usize,
    missing: Option<((u32, u32), usize)>,
    non_positive: Option<((u32, u32), f64, usize)>,
    non_finite: Option<((u32, u32), f64, usize)>,
}

impl WeightCheck {
    /// Account for the weight of one edge.
    pub fn visit(&mut self, edge: (u32, u32), weight: Option<f64>) {
        self.n_edges += 1;
        match weight {
            None => self.missing.get_or_insert((edge, 0)).1 += 1,
            Some(v) if !v.is_finite() => self.non_finite.get_or_insert((edge, v, 0)).2 += 1,
            Some(v) if v <= 0.0 => self.non_positive.get_or_insert((edge, v, 0)).2 += 1,
            Some(_) => {}
        }
    }

    /// Every weight present, finite and > 0, or the first kind of failure found.
    pub fn finish(self) -> Result<(), NoStrictForm> {
        let n_edges = self.n_edges;
        if let Some(((src, dst), count)) = self.missing {
            return Err(NoStrictForm::MissingWeight {
                src,
                dst,
                count,
                n_edges,
            });
        }
        if let Some(((src, dst), value, count)) = self.non_finite {
            return Err(NoStrictForm::NonFiniteWeight {
                src,
                dst,
                value,
                count,
                n_edges,
            });
        }
        if let Some(((src, dst), value, count)) = self.non_positive {
            return Err(NoStrictForm::NonPositiveWeight {
                src,
                dst,
                value,
                count,
                n_edges,
            });
        }
        Ok(())
    }
}

/// Whether the weights (in edge order) are what the strict viewer requires.
pub fn check_weights<V: WeightValue>(
    edges: &Edges,
    weights: &[Option<V>],
) -> Result<(), NoStrictForm> {
    let mut check = WeightCheck::default();
    for ((s, d), w) in edges.pairs().zip(weights) {
        check.visit((s, d), w.map(V::widen));
    }
    check.finish()
}

/// The graph-level rules that do not need weights: index width and working set.
pub fn check_size(n_cells: u64, n_edges: usize) -> Result<IndexDtype, NoStrictForm> {
    let dtype = strict_index_dtype(n_cells).ok_or(NoStrictForm::TooManyCells { n_cells })?;
    let bytes = (n_edges as u64).saturating_mul(2 * dtype.index_bytes() as u64 + 8);
    if bytes > MAX_WORKING_SET_BYTES {
        return Err(NoStrictForm::TooLarge { bytes });
    }
    Ok(dtype)
}

/// Little-endian float64 bytes of the weights (the weights file; a missing weight — which
/// [`check_weights`] refuses — would be written as 0).
pub fn weights_bytes<V: WeightValue>(weights: &[Option<V>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(weights.len() * 8);
    for w in weights {
        out.extend_from_slice(&w.map_or(0.0, V::widen).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::edges::connectivity_edges_csr;

    /// CSR arrays of a dense matrix (row-major, zeros not stored).
    fn csr(n: usize, dense: &[f32]) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for i in 0..n {
            for j in 0..n {
                let v = dense[i * n + j];
                if v != 0.0 {
                    indices.push(j as i64);
                    data.push(v);
                }
            }
            indptr.push(indices.len() as i64);
        }
        (indptr, indices, data)
    }

    fn weights_of(n: usize, dense: &[f32]) -> (Edges, Vec<Option<f32>>) {
        let (p, i, d) = csr(n, dense);
        let edges = connectivity_edges_csr(n, &p, &i, &d).unwrap();
        let w = edge_weights(&edges, &p, &i, &d, SparseLayout::Csr).unwrap();
        (edges, w)
    }

    #[test]
    fn symmetric_graph_has_weights_in_edge_order() {
        #[rustfmt::skip]
        let dense = [
            0.0, 0.5, 0.25, 0.0,
            0.5, 0.0, 0.0, 1.0,
            0.25, 0.0, 0.0, 0.0,
            0.0, 1.0, 0.0, 0.0,
        ];
        let (edges, w) = weights_of(4, &dense);
        assert_eq!(edges.pairs().collect::<Vec<_>>(), [(0, 1), (0, 2), (1, 3)]);
        assert_eq!(check_weights(&edges, &w), Ok(()));
        assert_eq!(w, vec![Some(0.5), Some(0.25), Some(1.0)]);
        let bytes: Vec<u8> = [0.5f64, 0.25, 1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(weights_bytes(&w), bytes);
        assert_eq!(max_degree(&edges), 2);
        assert_eq!(max_degree(&edges), edges.max_neighbors);
        assert_eq!(
            weights_bytes(&[Some(0.5f32)]),
            0.5f64.to_le_bytes().to_vec()
        );
    }

    #[test]
    fn csc_arrays_give_the_same_weights() {
        #[rustfmt::skip]
        let dense = [
            0.0, 0.5, 0.0,
            0.75, 0.0, 2.0,
            0.0, 2.0, 0.0,
        ];
        let (edges, w) = weights_of(3, &dense);
        // The CSC arrays of `dense` are the CSR arrays of its transpose.
        let mut t = [0f32; 9];
        for i in 0..3 {
            for j in 0..3 {
                t[j * 3 + i] = dense[i * 3 + j];
            }
        }
        let (p, i, d) = csr(3, &t);
        let csc = edge_weights(&edges, &p, &i, &d, SparseLayout::Csc).unwrap();
        assert_eq!(w, csc);
        // Row = source: (0, 1) weighs C[0, 1] = 0.5, not C[1, 0] = 0.75.
        assert_eq!(w, vec![Some(0.5), Some(2.0)]);
    }

    #[test]
    fn asymmetric_zero_and_nan_weights_have_no_strict_form() {
        // (0, 2) exists only as C[2, 0].
        #[rustfmt::skip]
        let asym = [
            0.0, 1.0, 0.0,
            1.0, 0.0, 0.0,
            3.0, 0.0, 0.0,
        ];
        let (edges, w) = weights_of(3, &asym);
        assert!(matches!(
            check_weights(&edges, &w),
            Err(NoStrictForm::MissingWeight {
                src: 0,
                dst: 2,
                count: 1,
                n_edges: 2
            })
        ));
        // A negative upper value with a larger positive reverse: an edge with weight < 0.
        #[rustfmt::skip]
        let negative = [
            0.0, -1.0,
            2.0, 0.0,
        ];
        let (edges, w) = weights_of(2, &negative);
        assert!(matches!(
            check_weights(&edges, &w),
            Err(NoStrictForm::NonPositiveWeight { value, .. }) if value == -1.0
        ));
        #[rustfmt::skip]
        let nan = [
            0.0, f32::NAN,
            f32::NAN, 0.0,
        ];
        let (edges, w) = weights_of(2, &nan);
        assert!(matches!(
            check_weights(&edges, &w),
            Err(NoStrictForm::NonFiniteWeight { .. })
        ));
    }

    #[test]
    fn duplicates_are_summed_and_self_loops_do_not_count() {
        // Row 0 stores column 1 twice (0.25 + 0.5) and a self-loop.
        let indptr = [0i64, 3, 4];
        let indices = [1i64, 0, 1, 0];
        let data = [0.25f32, 9.0, 0.5, 0.75];
        let edges = connectivity_edges_csr(2, &indptr, &indices, &data).unwrap();
        let w = edge_weights(&edges, &indptr, &indices, &data, SparseLayout::Csr).unwrap();
        assert_eq!(w, vec![Some(0.75)]);
        // The seed counts the stored diagonal (2); the strict degree is 1.
        assert_eq!(edges.max_neighbors, 2);
        assert_eq!(max_degree(&edges), 1);
    }

    #[test]
    fn random_graphs_match_a_dense_reference_in_both_layouts() {
        use crate::model::testutil::{xorshift_ints, xorshift_values};
        for seed in 1..40u64 {
            let n = 3 + (seed as usize % 17);
            let nnz = n * 3;
            // Unsorted rows with duplicates: entries in random order, bucketed by row.
            let rows = xorshift_ints(nnz, seed, n as u64);
            let cols = xorshift_ints(nnz, seed * 7 + 1, n as u64);
            let vals = xorshift_values(nnz, seed * 13 + 5, 4.0);
            let mut by_row: Vec<Vec<(i64, f32)>> = vec![Vec::new(); n];
            for ((r, c), v) in rows.iter().zip(&cols).zip(&vals) {
                by_row[*r as usize].push((*c as i64, *v));
            }
            let csr = |by: &Vec<Vec<(i64, f32)>>| {
                let (mut p, mut i, mut d) = (vec![0i64], Vec::new(), Vec::new());
                for row in by {
                    for (c, v) in row {
                        i.push(*c);
                        d.push(*v);
                    }
                    p.push(i.len() as i64);
                }
                (p, i, d)
            };
            let (p, i, d) = csr(&by_row);
            let edges = connectivity_edges_csr(n, &p, &i, &d).unwrap();
            let got = edge_weights(&edges, &p, &i, &d, SparseLayout::Csr).unwrap();
            // Dense reference: C[s, d] summed in storage order, present iff stored.
            let mut dense: Vec<Option<f32>> = vec![None; n * n];
            for (r, row) in by_row.iter().enumerate() {
                for (c, v) in row {
                    let slot = &mut dense[r * n + *c as usize];
                    *slot = Some(slot.unwrap_or(0.0) + v);
                }
            }
            let expected: Vec<Option<f32>> = edges
                .pairs()
                .map(|(a, b)| dense[a as usize * n + b as usize])
                .collect();
            assert_eq!(got, expected, "seed {seed} (CSR)");
            // The same matrix stored as CSC: its arrays are the CSR arrays of the transpose,
            // columns visited in order.
            let mut by_col: Vec<Vec<(i64, f32)>> = vec![Vec::new(); n];
            for (r, row) in by_row.iter().enumerate() {
                for (c, v) in row {
                    by_col[*c as usize].push((r as i64, *v));
                }
            }
            let (p, i, d) = csr(&by_col);
            let csc = edge_weights(&edges, &p, &i, &d, SparseLayout::Csc).unwrap();
            assert_eq!(csc, expected, "seed {seed} (CSC)");
        }
    }

    #[test]
    fn the_fast_verdict_agrees_with_the_full_check() {
        #[rustfmt::skip]
        let cases: [&[f32]; 3] = [
            &[0.0, 0.5, 0.25, 0.5, 0.0, 1.0, 0.25, 1.0, 0.0],
            &[0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 3.0, 0.0, 0.0],
            &[0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.0],
        ];
        for dense in cases {
            let (p, i, d) = csr(3, dense);
            let edges = connectivity_edges_csr(3, &p, &i, &d).unwrap();
            let w = edge_weights(&edges, &p, &i, &d, SparseLayout::Csr).unwrap();
            assert_eq!(
                csr_fast_verdict(&edges, &p, &i, &d),
                Some(check_weights(&edges, &w)),
                "{dense:?}"
            );
        }
        // Negative values, duplicates or unsorted rows: no fast verdict.
        let (p, i, d) = csr(2, &[0.0, -1.0, 2.0, 0.0]);
        let edges = connectivity_edges_csr(2, &p, &i, &d).unwrap();
        assert_eq!(csr_fast_verdict(&edges, &p, &i, &d), None);
        let (p, i, d) = (vec![0i64, 2, 3], vec![1i64, 1, 0], vec![0.5f32, 0.5, 1.0]);
        let edges = connectivity_edges_csr(2, &p, &i, &d).unwrap();
        assert_eq!(csr_fast_verdict(&edges, &p, &i, &d), None);
    }

    #[test]
    fn index_width_and_size_limits() {
        assert_eq!(strict_index_dtype(65_535), Some(IndexDtype::U16));
        assert_eq!(strict_index_dtype(65_536), Some(IndexDtype::U16));
        assert_eq!(strict_index_dtype(65_537), Some(IndexDtype::U32));
        assert_eq!(strict_index_dtype(1 << 32), Some(IndexDtype::U32));
        assert_eq!(strict_index_dtype((1 << 32) + 1), None);
        assert_eq!(
            check_size((1 << 32) + 1, 0),
            Err(NoStrictForm::TooManyCells {
                n_cells: (1 << 32) + 1
            })
        );
        assert_eq!(check_size(100_000, 1_000), Ok(IndexDtype::U32));
        assert!(matches!(
            check_size(100_000, 40_000_000),
            Err(NoStrictForm::TooLarge { .. })
        ));
        assert_eq!(
            encode_strict_indices([65_535u32, 1].into_iter(), IndexDtype::U16),
            vec![0xff, 0xff, 1, 0]
        );
    }
}
