//! Connectivity edges (protocol §5.6 / §4.4, adapter `_compute_connectivity_edges`).
//!
//! The reference symmetrises `C = obsp["connectivities"]` as `S = C + Cᵀ` with SciPy, binarises
//! it, and emits `(i, j)` for every stored entry with `i < j`, sorted by `(i, j)`.
//! `max_neighbors` is the largest number of stored entries in a row of `S` (a stored diagonal
//! entry counts). SciPy semantics replicated here: duplicate entries of `C` are summed (in
//! storage order), `S[i, j] = ΣC[i, j] + ΣC[j, i]` is stored only when the sum is non-zero
//! (SciPy's sparse add drops exact zeros, so `+1` and `-1` cancel and explicit zeros vanish;
//! NaN is kept).
//!
//! Implementation: one counting-sort transpose plus a sorted merge per row; no per-row
//! allocation. When every stored value is strictly positive (the normal case for
//! connectivities) the values are not copied at all.

use crate::model::error::{ModelError, ModelResult, checkpoint_every};

/// A stored value type of a sparse matrix, with the arithmetic SciPy applies to it.
pub trait EdgeValue: Copy {
    /// The additive identity.
    fn zero() -> Self;
    /// SciPy's `+` for this dtype (IEEE for floats, wrapping for integers, OR for bool).
    fn plus(self, other: Self) -> Self;
    /// Whether SciPy would store the value (`value != 0`; NaN counts as non-zero).
    fn is_nonzero(self) -> bool;
    /// Whether any sum of such values is guaranteed non-zero (enables the fast path).
    fn is_strictly_positive(self) -> bool;
}

macro_rules! float_edge_value {
    ($($t:ty),*) => {$(
        impl EdgeValue for $t {
            fn zero() -> Self { 0.0 }
            fn plus(self, other: Self) -> Self { self + other }
            fn is_nonzero(self) -> bool { self != 0.0 }
            fn is_strictly_positive(self) -> bool { self > 0.0 }
        }
    )*};
}
float_edge_value!(f32, f64);

macro_rules! int_edge_value {
    ($($t:ty),*) => {$(
        impl EdgeValue for $t {
            fn zero() -> Self { 0 }
            fn plus(self, other: Self) -> Self { self.wrapping_add(other) }
            fn is_nonzero(self) -> bool { self != 0 }
            // Positive integers can wrap around to zero when summed: use the exact path.
            fn is_strictly_positive(self) -> bool { false }
        }
    )*};
}
int_edge_value!(i8, i16, i32, i64, u8, u16, u32, u64);

impl EdgeValue for bool {
    fn zero() -> Self {
        false
    }
    fn plus(self, other: Self) -> Self {
        self || other
    }
    fn is_nonzero(self) -> bool {
        self
    }
    fn is_strictly_positive(self) -> bool {
        self
    }
}

/// An index type of compressed sparse arrays (`indptr` / `indices`).
pub trait SparseIndex: Copy {
    /// The value as a `usize`, or `None` if negative / too large.
    fn to_index(self) -> Option<usize>;
}

macro_rules! sparse_index {
    ($($t:ty),*) => {$(
        impl SparseIndex for $t {
            fn to_index(self) -> Option<usize> { usize::try_from(self).ok() }
        }
    )*};
}
sparse_index!(i32, i64, u32, u64, usize, i16, u16);

/// Index dtype of `connectivity/edges.{src,dst}.bin`, chosen from `n_cells` like the
/// reference: ≤ 65 535 → `uint16`, ≤ 4 294 967 295 → `uint32`, else `uint64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexDtype {
    /// `uint16`, 2 bytes.
    U16,
    /// `uint32`, 4 bytes.
    U32,
    /// `uint64`, 8 bytes.
    U64,
}

impl IndexDtype {
    /// The dtype for a dataset with `n_cells` cells.
    pub fn for_n_cells(n_cells: u64) -> Self {
        if n_cells <= 65_535 {
            Self::U16
        } else if n_cells <= 4_294_967_295 {
            Self::U32
        } else {
            Self::U64
        }
    }

    /// The manifest's `index_dtype`: `"uint16"`, `"uint32"` or `"uint64"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::U16 => "uint16",
            Self::U32 => "uint32",
            Self::U64 => "uint64",
        }
    }

    /// The manifest's `index_bytes`: 2, 4 or 8.
    pub fn index_bytes(self) -> usize {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
            Self::U64 => 8,
        }
    }
}

/// Little-endian encoding of edge indices in `dtype` (values must fit, which holds for indices
/// `< n_cells` with `dtype = IndexDtype::for_n_cells(n_cells)`).
pub fn encode_indices(values: &[u32], dtype: IndexDtype) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.index_bytes());
    match dtype {
        IndexDtype::U16 => values
            .iter()
            .for_each(|&v| out.extend_from_slice(&(v as u16).to_le_bytes())),
        IndexDtype::U32 => values
            .iter()
            .for_each(|&v| out.extend_from_slice(&v.to_le_bytes())),
        IndexDtype::U64 => values
            .iter()
            .for_each(|&v| out.extend_from_slice(&u64::from(v).to_le_bytes())),
    }
    out
}

/// The undirected edge list of the symmetrised, binarised connectivity graph, stored like a
/// CSR matrix of its upper triangle: the edges with source `i` are
/// `(i, dst[offsets[i]..offsets[i + 1]])`, destinations ascending. This is exactly the
/// reference's `(src, dst)` order; `src` is materialised only when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edges {
    /// Number of cells (rows of the matrix).
    pub n_cells: u64,
    /// `n_cells + 1` offsets into `dst`, one range per source cell.
    pub offsets: Vec<usize>,
    /// Destination cell of each edge (`dst > src`), sorted by `(src, dst)`.
    pub dst: Vec<u32>,
    /// Largest number of stored entries in a row of `S = C + Cᵀ` (diagonal included).
    pub max_neighbors: usize,
}

impl Edges {
    /// Number of edges (`n_edges` of the manifest).
    pub fn n_edges(&self) -> usize {
        self.dst.len()
    }

    /// Index dtype for this dataset.
    pub fn index_dtype(&self) -> IndexDtype {
        IndexDtype::for_n_cells(self.n_cells)
    }

    /// The source cell of every edge (materialised).
    pub fn src(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.dst.len());
        for (i, w) in self.offsets.windows(2).enumerate() {
            out.extend(std::iter::repeat_n(i as u32, w[1] - w[0]));
        }
        out
    }

    /// All edges as `(src, dst)` pairs, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.offsets
            .windows(2)
            .enumerate()
            .flat_map(move |(i, w)| self.dst[w[0]..w[1]].iter().map(move |&j| (i as u32, j)))
    }

    /// Body of `connectivity/edges.src.bin`.
    pub fn src_bytes(&self) -> Vec<u8> {
        let dtype = self.index_dtype();
        let mut out = Vec::with_capacity(self.dst.len() * dtype.index_bytes());
        for (i, w) in self.offsets.windows(2).enumerate() {
            let n = w[1] - w[0];
            match dtype {
                IndexDtype::U16 => {
                    let b = (i as u16).to_le_bytes();
                    (0..n).for_each(|_| out.extend_from_slice(&b));
                }
                IndexDtype::U32 => {
                    let b = (i as u32).to_le_bytes();
                    (0..n).for_each(|_| out.extend_from_slice(&b));
                }
                IndexDtype::U64 => {
                    let b = (i as u64).to_le_bytes();
                    (0..n).for_each(|_| out.extend_from_slice(&b));
                }
            }
        }
        out
    }

    /// Body of `connectivity/edges.dst.bin`.
    pub fn dst_bytes(&self) -> Vec<u8> {
        encode_indices(&self.dst, self.index_dtype())
    }
}

fn invalid(reason: impl Into<String>) -> ModelError {
    ModelError::InvalidSparse {
        reason: reason.into(),
    }
}

/// Validates `indptr` and returns it as `usize` offsets.
fn checked_indptr<P: SparseIndex>(
    n_rows: usize,
    indptr: &[P],
    nnz: usize,
) -> ModelResult<Vec<usize>> {
    if n_rows == 0 && indptr.is_empty() {
        if nnz != 0 {
            return Err(invalid("empty indptr with stored entries"));
        }
        return Ok(vec![0]);
    }
    if indptr.len() != n_rows + 1 {
        return Err(invalid(format!(
            "indptr has {} entries, expected n_cells + 1 = {}",
            indptr.len(),
            n_rows + 1
        )));
    }
    let mut ptr = Vec::with_capacity(indptr.len());
    let mut prev = 0usize;
    for (i, p) in indptr.iter().enumerate() {
        let p = p
            .to_index()
            .ok_or_else(|| invalid(format!("indptr[{i}] is negative or too large")))?;
        if (i == 0 && p != 0) || p < prev {
            return Err(invalid(format!(
                "indptr is not a valid offset array at {i}"
            )));
        }
        prev = p;
        ptr.push(p);
    }
    if prev != nnz {
        return Err(invalid(format!(
            "indptr ends at {prev} but there are {nnz} stored entries"
        )));
    }
    Ok(ptr)
}

/// Common validation: cell count, `indptr`, column indices. Returns the `usize` offsets.
fn validate<P: SparseIndex, I: SparseIndex>(
    n_cells: usize,
    indptr: &[P],
    indices: &[I],
) -> ModelResult<Vec<usize>> {
    if n_cells as u64 > 1u64 << 32 {
        return Err(ModelError::TooManyCells {
            n_cells: n_cells as u64,
        });
    }
    let ptr = checked_indptr(n_cells, indptr, indices.len())?;
    if let Some(pos) = indices
        .iter()
        .position(|ix| ix.to_index().is_none_or(|j| j >= n_cells))
    {
        return Err(invalid(format!(
            "column index at position {pos} is outside 0..{n_cells}"
        )));
    }
    Ok(ptr)
}

/// Edges from CSR arrays of the `n_cells × n_cells` connectivity matrix (`obsp
/// ["connectivities"]`). Column indices may be unsorted and duplicated within a row.
pub fn connectivity_edges_csr<P, I, V>(
    n_cells: usize,
    indptr: &[P],
    indices: &[I],
    data: &[V],
) -> ModelResult<Edges>
where
    P: SparseIndex,
    I: SparseIndex,
    V: EdgeValue,
{
    if indices.len() != data.len() {
        return Err(invalid(format!(
            "indices ({}) and data ({}) differ in length",
            indices.len(),
            data.len()
        )));
    }
    let ptr = validate(n_cells, indptr, indices)?;
    if data.iter().all(|v| v.is_strictly_positive()) {
        edges_pattern(n_cells, &ptr, indices)
    } else {
        edges_exact(n_cells, &ptr, indices, data)
    }
}

/// Edges from CSR arrays when only the sparsity pattern matters (every stored entry treated as
/// non-zero, e.g. a boolean or known-positive matrix stored without `data`).
pub fn connectivity_edges_csr_pattern<P, I>(
    n_cells: usize,
    indptr: &[P],
    indices: &[I],
) -> ModelResult<Edges>
where
    P: SparseIndex,
    I: SparseIndex,
{
    let ptr = validate(n_cells, indptr, indices)?;
    edges_pattern(n_cells, &ptr, indices)
}

/// Edges from CSC arrays. A CSC matrix is the CSR matrix of its transpose, and `S = C + Cᵀ`
/// is the same for `C` and `Cᵀ` (including which sums are zero, with duplicates summed in the
/// same order), so this forwards to [`connectivity_edges_csr`] with the same arrays.
pub fn connectivity_edges_csc<P, I, V>(
    n_cells: usize,
    indptr: &[P],
    indices: &[I],
    data: &[V],
) -> ModelResult<Edges>
where
    P: SparseIndex,
    I: SparseIndex,
    V: EdgeValue,
{
    connectivity_edges_csr(n_cells, indptr, indices, data)
}

/// Column of a validated index.
fn col<I: SparseIndex>(ix: I) -> u32 {
    ix.to_index().unwrap_or(0) as u32
}

/// Offset type of the pattern path's transpose (`u32` when it fits: half the memory traffic).
trait Offset: Copy {
    const ZERO: Self;
    fn inc(&mut self);
    fn add(&mut self, other: Self);
    fn get(self) -> usize;
}

impl Offset for u32 {
    const ZERO: Self = 0;
    fn inc(&mut self) {
        *self += 1;
    }
    fn add(&mut self, other: Self) {
        *self += other;
    }
    fn get(self) -> usize {
        self as usize
    }
}

impl Offset for usize {
    const ZERO: Self = 0;
    fn inc(&mut self) {
        *self += 1;
    }
    fn add(&mut self, other: Self) {
        *self += other;
    }
    fn get(self) -> usize {
        self
    }
}

/// Pattern-only path (every stored entry non-zero, so every sum is non-zero).
///
/// Only the upper triangle is built: row `i`'s edges are the union of `{j > i : C[i, j]}` and
/// `{k > i : C[k, i]}` (a counting-sort transpose of C's strictly lower triangle). Row sizes
/// of S follow as `upper(i) + lower(i) + diagonal(i)`.
fn edges_pattern<I: SparseIndex>(
    n_cells: usize,
    ptr: &[usize],
    indices: &[I],
) -> ModelResult<Edges> {
    if u32::try_from(indices.len()).is_ok() {
        edges_pattern_with::<I, u32>(n_cells, ptr, indices)
    } else {
        edges_pattern_with::<I, usize>(n_cells, ptr, indices)
    }
}

fn edges_pattern_with<I: SparseIndex, O: Offset>(
    n_cells: usize,
    ptr: &[usize],
    indices: &[I],
) -> ModelResult<Edges> {
    // Pass 1: count C's strictly-lower entries per column; note stored diagonals.
    let mut t_ptr = vec![O::ZERO; n_cells + 1];
    let mut degree = vec![0u32; n_cells];
    for (i, w) in ptr.windows(2).enumerate() {
        checkpoint_every(i)?;
        for ix in &indices[w[0]..w[1]] {
            let j = col(*ix) as usize;
            if j < i {
                t_ptr[j + 1].inc();
            } else if j == i {
                degree[i] = 1; // S[i, i] is stored (duplicates still count once)
            }
        }
    }
    for j in 0..n_cells {
        let prev = t_ptr[j];
        t_ptr[j + 1].add(prev);
    }
    // Pass 2: fill the transpose of the lower triangle (rows ascending within a bucket).
    let mut t_rows = vec![0u32; t_ptr[n_cells].get()];
    {
        let mut next: Vec<O> = t_ptr[..n_cells].to_vec();
        for (i, w) in ptr.windows(2).enumerate() {
            checkpoint_every(i)?;
            for ix in &indices[w[0]..w[1]] {
                let j = col(*ix) as usize;
                if j < i {
                    t_rows[next[j].get()] = i as u32;
                    next[j].inc();
                }
            }
        }
    }
    // Pass 3: per row, union of the upper part of row i and bucket i.
    let mut offsets = Vec::with_capacity(n_cells + 1);
    offsets.push(0usize);
    let mut dst: Vec<u32> = Vec::with_capacity(indices.len());
    let mut upper: Vec<u32> = Vec::new();
    for (i, w) in ptr.windows(2).enumerate() {
        checkpoint_every(i)?;
        let row = i as u32;
        upper.clear();
        let mut sorted = true;
        let mut prev = 0u32;
        for ix in &indices[w[0]..w[1]] {
            let j = col(*ix);
            if j > row {
                sorted &= j >= prev;
                prev = j;
                upper.push(j);
            }
        }
        if !sorted {
            upper.sort_unstable();
        }
        let start = dst.len();
        let bucket = &t_rows[t_ptr[i].get()..t_ptr[i + 1].get()];
        union_sorted(&upper, bucket, &mut dst);
        let added = dst.len() - start;
        degree[i] = degree[i].saturating_add(added as u32);
        for &j in &dst[start..] {
            degree[j as usize] = degree[j as usize].saturating_add(1);
        }
        offsets.push(dst.len());
    }
    let max_neighbors = degree.iter().copied().max().unwrap_or(0) as usize;
    Ok(Edges {
        n_cells: n_cells as u64,
        offsets,
        dst,
        max_neighbors,
    })
}

/// Appends the union of two sorted lists (duplicates allowed in each) to `out`, deduplicated.
fn union_sorted(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    let mut last: Option<u32> = None;
    let mut take = |j: u32| {
        if last != Some(j) {
            last = Some(j);
            out.push(j);
        }
    };
    let (mut ia, mut ib) = (0usize, 0usize);
    while ia < a.len() && ib < b.len() {
        let (x, y) = (a[ia], b[ib]);
        let j = x.min(y);
        ia += usize::from(x == j);
        ib += usize::from(y == j);
        take(j);
    }
    a[ia..].iter().chain(&b[ib..]).for_each(|&j| take(j));
}

/// Exact path (SciPy's value semantics): full transpose with values, per-row merge of row `i`
/// of C (sorted by column, duplicates in storage order) with row `i` of Cᵀ; a column is kept
/// when `(0 + ΣC[i, j]) + (0 + ΣC[j, i])` is non-zero.
fn edges_exact<I: SparseIndex, V: EdgeValue>(
    n_cells: usize,
    ptr: &[usize],
    indices: &[I],
    data: &[V],
) -> ModelResult<Edges> {
    let nnz = indices.len();
    let mut t_ptr = vec![0usize; n_cells + 1];
    for ix in indices {
        t_ptr[col(*ix) as usize + 1] += 1;
    }
    for j in 0..n_cells {
        t_ptr[j + 1] += t_ptr[j];
    }
    let mut t_rows = vec![0u32; nnz];
    let mut t_vals = vec![V::zero(); nnz];
    {
        let mut next: Vec<usize> = t_ptr[..n_cells].to_vec();
        for (i, w) in ptr.windows(2).enumerate() {
            checkpoint_every(i)?;
            for (ix, &v) in indices[w[0]..w[1]].iter().zip(&data[w[0]..w[1]]) {
                let j = col(*ix) as usize;
                t_rows[next[j]] = i as u32;
                t_vals[next[j]] = v;
                next[j] += 1;
            }
        }
    }
    let mut offsets = Vec::with_capacity(n_cells + 1);
    offsets.push(0usize);
    let mut dst: Vec<u32> = Vec::with_capacity(nnz);
    let mut max_neighbors = 0usize;
    let mut row_a: Vec<(u32, u32, V)> = Vec::new();
    for (i, w) in ptr.windows(2).enumerate() {
        checkpoint_every(i)?;
        row_a.clear();
        let mut sorted = true;
        let mut prev = 0u32;
        for (p, (ix, &v)) in indices[w[0]..w[1]]
            .iter()
            .zip(&data[w[0]..w[1]])
            .enumerate()
        {
            let j = col(*ix);
            sorted &= j >= prev;
            prev = j;
            row_a.push((j, p as u32, v));
        }
        if !sorted {
            row_a.sort_unstable_by_key(|e| (e.0, e.1));
        }
        let (b0, b1) = (t_ptr[i], t_ptr[i + 1]);
        let (b, bv) = (&t_rows[b0..b1], &t_vals[b0..b1]);
        let row = i as u32;
        let mut count = 0usize;
        let (mut ia, mut ib) = (0usize, 0usize);
        loop {
            let j = match (row_a.get(ia), b.get(ib)) {
                (Some(x), Some(&y)) => x.0.min(y),
                (Some(x), None) => x.0,
                (None, Some(&y)) => y,
                (None, None) => break,
            };
            let mut sa = V::zero();
            while let Some(x) = row_a.get(ia).filter(|x| x.0 == j) {
                sa = sa.plus(x.2);
                ia += 1;
            }
            let mut sb = V::zero();
            while ib < b.len() && b[ib] == j {
                sb = sb.plus(bv[ib]);
                ib += 1;
            }
            if sa.plus(sb).is_nonzero() {
                count += 1;
                if j > row {
                    dst.push(j);
                }
            }
        }
        offsets.push(dst.len());
        max_neighbors = max_neighbors.max(count);
    }
    Ok(Edges {
        n_cells: n_cells as u64,
        offsets,
        dst,
        max_neighbors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::testutil::{xorshift_ints, xorshift_values};

    fn pairs(e: &Edges) -> Vec<(u32, u32)> {
        let p: Vec<(u32, u32)> = e.pairs().collect();
        let src = e.src();
        assert_eq!(src.len(), e.dst.len());
        assert!(p.iter().zip(&src).all(|(a, &s)| a.0 == s));
        p
    }

    // python (cellucid 0.0.9, scipy 1.17.1): the 5×5 non-canonical CSR
    //   indptr [0,4,6,8,9,11], indices [3,1,1,0, 2,0, 1,4, 3, 0,2],
    //   data [1,.5,.25,2, -1,0, 1,nan, 0, 3,-3] as obsp["connectivities"];
    //   adapter._compute_connectivity_edges() -> ([0,0,0,2], [1,3,4,4], 4, 4), uint16
    const HAND_PTR: [i64; 6] = [0, 4, 6, 8, 9, 11];
    const HAND_IDX: [i64; 11] = [3, 1, 1, 0, 2, 0, 1, 4, 3, 0, 2];
    const HAND_DATA: [f64; 11] = [
        1.0,
        0.5,
        0.25,
        2.0,
        -1.0,
        0.0,
        1.0,
        f64::NAN,
        0.0,
        3.0,
        -3.0,
    ];

    #[test]
    fn hand_case_matches_scipy() {
        let e = connectivity_edges_csr(5, &HAND_PTR, &HAND_IDX, &HAND_DATA).unwrap();
        assert_eq!(pairs(&e), vec![(0, 1), (0, 3), (0, 4), (2, 4)]);
        assert_eq!(e.n_edges(), 4);
        assert_eq!(e.max_neighbors, 4);
        assert_eq!(e.index_dtype(), IndexDtype::U16);
        // same with float32 data / int32 indices (python: hand32)
        let d32: Vec<f32> = HAND_DATA.iter().map(|&v| v as f32).collect();
        let p32: Vec<i32> = HAND_PTR.iter().map(|&v| v as i32).collect();
        let i32s: Vec<i32> = HAND_IDX.iter().map(|&v| v as i32).collect();
        assert_eq!(connectivity_edges_csr(5, &p32, &i32s, &d32).unwrap(), e);
        // python: the same arrays as a csc_matrix give the same edges
        assert_eq!(
            connectivity_edges_csc(5, &HAND_PTR, &HAND_IDX, &HAND_DATA).unwrap(),
            e
        );
    }

    #[test]
    fn integer_and_bool_values() {
        // python: int64 C[0,1]=1, C[1,0]=2, C[2,0]=-1, C[3,2]=255 -> ([0,0,2],[1,2,3],3,2)
        let e = connectivity_edges_csr(
            4,
            &[0u32, 1, 2, 3, 4],
            &[1u32, 0, 0, 2],
            &[1i64, 2, -1, 255],
        )
        .unwrap();
        assert_eq!(pairs(&e), vec![(0, 1), (0, 2), (2, 3)]);
        assert_eq!(e.max_neighbors, 2);
        // python: uint8 C[0,1]=128, C[1,0]=128 (wraps to 0), C[2,2]=1 -> ([], [], 0, 1)
        let e =
            connectivity_edges_csr(3, &[0u32, 1, 2, 3], &[1u32, 0, 2], &[128u8, 128, 1]).unwrap();
        assert_eq!(e.n_edges(), 0);
        assert_eq!(e.max_neighbors, 1);
        let e = connectivity_edges_csr(2, &[0u32, 1, 1], &[1u32], &[true]).unwrap();
        assert_eq!(pairs(&e), vec![(0, 1)]);
        let e = connectivity_edges_csr(2, &[0u32, 1, 1], &[1u32], &[false]).unwrap();
        assert_eq!(e.n_edges(), 0);
    }

    #[test]
    fn cancellation_and_duplicate_order() {
        // python: f32 C[0,1]=1, C[1,0]=-1 -> no edge, max_neighbors 0
        let e = connectivity_edges_csr(3, &[0u32, 1, 2, 2], &[1u32, 0], &[1.0f32, -1.0]).unwrap();
        assert_eq!((e.n_edges(), e.max_neighbors), (0, 0));
        // python: duplicates [1e8, 1, -1e8] at C[0,2] sum to 0 in float32 (dropped) but to 1 in
        // float64 (kept)
        let e = connectivity_edges_csr(3, &[0u32, 3, 3, 3], &[2u32, 2, 2], &[1e8f32, 1.0, -1e8])
            .unwrap();
        assert_eq!((e.n_edges(), e.max_neighbors), (0, 0));
        let e = connectivity_edges_csr(3, &[0u32, 3, 3, 3], &[2u32, 2, 2], &[1e8f64, 1.0, -1e8])
            .unwrap();
        assert_eq!(pairs(&e), vec![(0, 2)]);
        assert_eq!(e.max_neighbors, 1);
    }

    #[test]
    fn pattern_only_and_unsorted_rows() {
        let e = connectivity_edges_csr_pattern(4, &[0u64, 3, 3, 4, 4], &[3u64, 1, 3, 0]).unwrap();
        // row 0 = [3, 1, 3] (unsorted, duplicated), row 2 = [0]
        assert_eq!(pairs(&e), vec![(0, 1), (0, 2), (0, 3)]);
        assert_eq!(e.max_neighbors, 3);
    }

    #[test]
    fn empty_and_invalid() {
        let e = connectivity_edges_csr::<u64, u64, f32>(0, &[0], &[], &[]).unwrap();
        assert_eq!((e.n_edges(), e.max_neighbors), (0, 0));
        let e = connectivity_edges_csr::<u64, u64, f32>(0, &[], &[], &[]).unwrap();
        assert_eq!(e.n_edges(), 0);
        let e = connectivity_edges_csr::<u64, u64, f32>(3, &[0, 0, 0, 0], &[], &[]).unwrap();
        assert_eq!((e.n_edges(), e.max_neighbors), (0, 0));
        let bad = |r: ModelResult<Edges>| matches!(r, Err(ModelError::InvalidSparse { .. }));
        assert!(bad(connectivity_edges_csr(
            2,
            &[0u64, 1],
            &[0u64],
            &[1.0f32]
        )));
        assert!(bad(connectivity_edges_csr(
            2,
            &[0u64, 1, 1],
            &[2u64],
            &[1.0f32]
        )));
        assert!(bad(connectivity_edges_csr(
            2,
            &[0i64, 1, 1],
            &[-1i64],
            &[1.0f32]
        )));
        assert!(bad(connectivity_edges_csr(
            2,
            &[1u64, 1, 1],
            &[0u64],
            &[1.0f32]
        )));
        assert!(bad(connectivity_edges_csr(
            2,
            &[0u64, 2, 1],
            &[0u64, 1],
            &[1.0f32, 1.0]
        )));
        assert!(bad(connectivity_edges_csr(
            2,
            &[0u64, 1, 2],
            &[0u64, 1],
            &[1.0f32]
        )));
        assert!(bad(connectivity_edges_csr(
            2,
            &[0u64, 1, 3],
            &[0u64, 1],
            &[1.0f32, 1.0]
        )));
    }

    #[test]
    fn too_many_cells() {
        assert_eq!(
            connectivity_edges_csr::<u64, u64, f32>((1 << 32) + 1, &[], &[], &[]),
            Err(ModelError::TooManyCells {
                n_cells: (1 << 32) + 1
            })
        );
    }

    #[test]
    fn index_dtype_and_encoding() {
        assert_eq!(IndexDtype::for_n_cells(0), IndexDtype::U16);
        assert_eq!(IndexDtype::for_n_cells(65_535), IndexDtype::U16);
        assert_eq!(IndexDtype::for_n_cells(65_536), IndexDtype::U32);
        assert_eq!(IndexDtype::for_n_cells(4_294_967_295), IndexDtype::U32);
        assert_eq!(IndexDtype::for_n_cells(4_294_967_296), IndexDtype::U64);
        assert_eq!(IndexDtype::U32.as_str(), "uint32");
        assert_eq!(IndexDtype::U64.index_bytes(), 8);
        assert_eq!(encode_indices(&[1, 258], IndexDtype::U16), vec![1, 0, 2, 1]);
        assert_eq!(encode_indices(&[1], IndexDtype::U32), vec![1, 0, 0, 0]);
        assert_eq!(
            encode_indices(&[1], IndexDtype::U64),
            vec![1, 0, 0, 0, 0, 0, 0, 0]
        );
        let e = connectivity_edges_csr(5, &HAND_PTR, &HAND_IDX, &HAND_DATA).unwrap();
        assert_eq!(e.src_bytes(), vec![0, 0, 0, 0, 0, 0, 2, 0]);
        assert_eq!(e.dst_bytes(), vec![1, 0, 3, 0, 4, 0, 4, 0]);
    }

    #[test]
    fn usize_offsets_match_u32_offsets() {
        let n = 500;
        let indices = xorshift_ints(n * 7, 91, n as u64);
        let indptr: Vec<usize> = (0..=n).map(|i| i * 7).collect();
        let a = edges_pattern_with::<u64, u32>(n, &indptr, &indices).unwrap();
        let b = edges_pattern_with::<u64, usize>(n, &indptr, &indices).unwrap();
        assert_eq!(a, b);
        assert!(a.n_edges() > 0);
    }

    /// A request deadline drops the awaiting future; the symmetrisation (≈1.5 s at 1M cells)
    /// notices at its next checkpoint and stops, instead of keeping a core busy.
    #[tokio::test]
    async fn a_dropped_caller_interrupts_the_symmetrisation() {
        let (n, k) = (400_000usize, 10usize);
        let indices = xorshift_ints(n * k, 71, n as u64);
        let data = vec![1.0f32; n * k];
        let indptr: Vec<u64> = (0..=n).map(|i| (i * k) as u64).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let started = std::time::Instant::now();
        let job = crate::compute::offload(move || {
            let result = connectivity_edges_csr(n, &indptr, &indices, &data);
            let _ = tx.send((result.map(|e| e.n_edges()), started.elapsed()));
        });
        let deadline = tokio::time::timeout(std::time::Duration::from_millis(30), job).await;
        assert!(deadline.is_err(), "the work outlived the deadline");
        let (result, stopped_after) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the job ended");
        assert_eq!(
            result,
            Err(ModelError::Cancelled),
            "after {stopped_after:?}"
        );
        // Unhindered, the same work runs to the end.
        let (indices, data) = (xorshift_ints(n * k, 71, n as u64), vec![1.0f32; n * k]);
        let indptr: Vec<u64> = (0..=n).map(|i| (i * k) as u64).collect();
        let full = std::time::Instant::now();
        let edges = crate::compute::offload(move || {
            connectivity_edges_csr(n, &indptr, &indices, &data).map(|e| e.n_edges())
        })
        .await
        .unwrap();
        assert!(edges.unwrap() > 0);
        assert!(
            stopped_after < full.elapsed(),
            "cancelled after {stopped_after:?}, a full run takes {:?}",
            full.elapsed()
        );
    }

    #[test]
    fn wide_src_encoding() {
        let e = Edges {
            n_cells: 70_000,
            offsets: vec![0, 2, 2, 3],
            dst: vec![1, 2, 69_999],
            max_neighbors: 2,
        };
        assert_eq!(e.index_dtype(), IndexDtype::U32);
        assert_eq!(e.src(), vec![0, 0, 2]);
        assert_eq!(e.src_bytes(), vec![0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(e.dst_bytes()[8..], [0x6f, 0x11, 0x01, 0x00]);
        let e = Edges {
            n_cells: 5_000_000_000,
            ..e
        };
        assert_eq!(e.src_bytes().len(), 24);
        assert_eq!(e.dst_bytes().len(), 24);
    }

    fn checksum(e: &Edges, n: u64) -> u64 {
        pairs(e).iter().enumerate().fold(0u64, |acc, (i, &(s, d))| {
            acc.wrapping_add((u64::from(s) * n + u64::from(d)).wrapping_mul(i as u64 + 1))
        })
    }

    #[test]
    fn random_graphs_match_scipy() {
        // python (cellucid 0.0.9): indices = xsi(n*k, seed, n), data = xs(n*k, vseed, 2.0)
        //   (positive: abs + 0.01; else np.round(data * 4) / 4, so zeros and cancellations
        //   occur), indptr = arange(0, n*k+1, k); csr_matrix or csc_matrix;
        //   adapter._compute_connectivity_edges(); checksum = sum((s*n+d)*(e+1)) mod 2^64
        // (n, k, seed, vseed, positive, format, n_edges, max_neighbors, checksum, dtype)
        type Case = (
            usize,
            usize,
            u64,
            u64,
            bool,
            &'static str,
            usize,
            usize,
            u64,
            IndexDtype,
        );
        let cases: [Case; 4] = [
            (
                2000,
                10,
                61,
                62,
                true,
                "csr",
                19899,
                32,
                0x0001_5207_2b82_2112,
                IndexDtype::U16,
            ),
            (
                2000,
                10,
                63,
                64,
                false,
                "csr",
                17437,
                29,
                0x0001_019a_dd75_2736,
                IndexDtype::U16,
            ),
            (
                70000,
                3,
                65,
                66,
                true,
                "csr",
                209_984,
                16,
                0xbb86_edfe_eb19_7143,
                IndexDtype::U32,
            ),
            (
                3000,
                6,
                67,
                68,
                false,
                "csc",
                15690,
                21,
                0x0001_d3f0_2824_342a,
                IndexDtype::U16,
            ),
        ];
        for (n, k, seed, vseed, pos, fmt, n_edges, max_nb, chk, dtype) in cases {
            let indices = xorshift_ints(n * k, seed, n as u64);
            let data: Vec<f32> = xorshift_values(n * k, vseed, 2.0)
                .iter()
                .map(|&v| {
                    if pos {
                        v.abs() + 0.01
                    } else {
                        (v * 4.0).round_ties_even() / 4.0
                    }
                })
                .collect();
            let indptr: Vec<u64> = (0..=n).map(|i| (i * k) as u64).collect();
            let e = if fmt == "csr" {
                connectivity_edges_csr(n, &indptr, &indices, &data).unwrap()
            } else {
                connectivity_edges_csc(n, &indptr, &indices, &data).unwrap()
            };
            assert_eq!(e.n_edges(), n_edges, "n = {n}");
            assert_eq!(e.max_neighbors, max_nb, "n = {n}");
            assert_eq!(e.index_dtype(), dtype);
            assert_eq!(checksum(&e, n as u64), chk, "n = {n}");
            // the exact path gives the same result as the fast path on positive data
            if pos {
                let data64: Vec<i64> = data.iter().map(|_| 1).collect();
                assert_eq!(
                    connectivity_edges_csr(n, &indptr, &indices, &data64).unwrap(),
                    e
                );
                assert_eq!(
                    connectivity_edges_csr_pattern(n, &indptr, &indices).unwrap(),
                    e
                );
            }
        }
    }
}
