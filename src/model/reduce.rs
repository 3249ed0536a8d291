//! NumPy-compatible float32 reductions (bit-exact with NumPy 2.x on x86-64).
//!
//! Facts established by experiment against NumPy 2.4 (see the crate README):
//! * `np.add.reduce` along a **contiguous** axis (a 1-D array, a row of a C-contiguous matrix,
//!   or axis 0 of an `(n, 1)` array) uses NumPy's `pairwise_sum`: fewer than 8 elements are
//!   added sequentially; up to 128 elements use 8 interleaved accumulators combined as
//!   `((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))` followed by the remainder sequentially; above 128
//!   the range is split at `n/2` rounded down to a multiple of 8 and both halves are summed
//!   recursively. The reduction result is `0.0 + pairwise_sum(values)`.
//! * `arr.sum(axis=0)` / `arr.mean(axis=0)` of a C-contiguous `(n, d)` array with `d ≥ 2` adds
//!   the rows one after another (per column: `((0 + x0) + x1) + …`).
//! * `mean` divides the float32 sum by the count as float64 (`np.intp` count ⇒ float64 loop)
//!   and casts the quotient back to float32.
//! * `np.linalg.norm(x, axis=1)` is `sqrt(add.reduce(x * x, axis=1))`, all float32.

/// NumPy's `pairwise_sum` over the values `f(0), …, f(n-1)` (float32 arithmetic).
pub fn pairwise_sum_by<F: Fn(usize) -> f32>(n: usize, f: &F) -> f32 {
    pairwise_rec(0, n, f)
}

fn pairwise_rec<F: Fn(usize) -> f32>(start: usize, n: usize, f: &F) -> f32 {
    if n < 8 {
        let mut res = 0.0f32;
        for i in start..start + n {
            res += f(i);
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f32; 8];
        for (j, rj) in r.iter_mut().enumerate() {
            *rj = f(start + j);
        }
        let full = n - (n % 8);
        let mut i = 8;
        while i < full {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += f(start + i + j);
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += f(start + i);
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_rec(start, n2, f) + pairwise_rec(start + n2, n - n2, f)
    }
}

/// `np.add.reduce` of a contiguous float32 vector: `0.0 + pairwise_sum(values)`.
pub fn add_reduce_f32(values: &[f32]) -> f32 {
    0.0f32 + pairwise_sum_by(values.len(), &|i| values[i])
}

/// `coords[rows, :].mean(axis=0)` for a row-major `n × dim` float32 matrix, as NumPy computes
/// it (pairwise along the column when `dim == 1`, sequential row accumulation otherwise; the
/// division happens in float64 and is cast back to float32).
///
/// A row index outside `coords` contributes NaN (callers in this module never pass one). An
/// empty `rows` gives NaN, like NumPy.
pub fn mean_rows_f32(coords: &[f32], dim: usize, rows: &[usize]) -> Vec<f32> {
    let n = rows.len();
    let sums: Vec<f32> = if dim == 1 {
        vec![0.0f32 + pairwise_sum_by(n, &|i| coords.get(rows[i]).copied().unwrap_or(f32::NAN))]
    } else {
        let mut acc = vec![0.0f32; dim];
        for &r in rows {
            let row = r
                .checked_mul(dim)
                .and_then(|start| coords.get(start..start.checked_add(dim)?));
            match row {
                Some(row) => {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                None => acc.iter_mut().for_each(|a| *a = f32::NAN),
            }
        }
        acc
    };
    sums.into_iter()
        .map(|s| (f64::from(s) / n as f64) as f32)
        .collect()
}

/// `np.linalg.norm(row - center)` for one float32 row: the squared differences are summed with
/// [`pairwise_sum_by`] and the square root is taken in float32.
pub fn distance_f32(row: &[f32], center: &[f32]) -> f32 {
    let sq = |i: usize| {
        let d = row[i] - center[i];
        d * d
    };
    (0.0f32 + pairwise_sum_by(row.len().min(center.len()), &sq)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testutil::xorshift_values;

    #[test]
    fn mean_out_of_range_rows_are_nan_not_panics() {
        assert!(mean_rows_f32(&[1.0, 2.0], 1, &[5])[0].is_nan());
        assert!(
            mean_rows_f32(&[1.0, 2.0], 2, &[0, 1])
                .iter()
                .all(|v| v.is_nan())
        );
        assert_eq!(mean_rows_f32(&[1.0, 2.0], 2, &[0]), vec![1.0, 2.0]);
        assert!(mean_rows_f32(&[1.0], 1, &[])[0].is_nan());
    }

    #[test]
    fn pairwise_small_is_sequential() {
        let v = [1.0e8f32, 1.0, -1.0e8, 1.0];
        assert_eq!(add_reduce_f32(&v), ((1.0e8f32 + 1.0) - 1.0e8) + 1.0);
        assert_eq!(add_reduce_f32(&[]), 0.0);
        assert!(add_reduce_f32(&[-0.0, -0.0]).is_sign_positive());
    }

    #[test]
    fn pairwise_sums_match_numpy() {
        // python (numpy 2.4.6), xorshift values reproduced in python:
        //   def xs(n, seed, scale): ... same generator ... -> np.float32 array x
        //   np.add.reduce(x).view(np.uint32)
        let expected: [(usize, u32); 9] = [
            (3, 0xc3a5_c9a1),
            (8, 0xc41c_0a9a),
            (10, 0xc41e_f39e),
            (50, 0xc4c1_1e1f),
            (127, 0xc494_0f63),
            (128, 0xc4a2_5df4),
            (129, 0xc4b8_a34a),
            (1000, 0xc683_a9a0),
            (100_000, 0x483f_520a),
        ];
        let first: Vec<u32> = xorshift_values(3, 42, 1000.0)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(first, vec![0xc3fa_0000, 0x42fa_5350, 0x422d_0c5b]);
        for (n, bits) in expected {
            let v = xorshift_values(n, 42, 1000.0);
            assert_eq!(add_reduce_f32(&v).to_bits(), bits, "n = {n}");
        }
    }

    #[test]
    fn distances_match_numpy_norm() {
        // python: x = xs(k, 50 + k, 10.0); c = xs(k, 500 + k, 1.0);
        //   np.linalg.norm((x - c).reshape(1, k), axis=1)[0].view(np.uint32)
        let cases: [(usize, u32); 6] = [
            (3, 0x40c9dc03),
            (8, 0x40fb7b86),
            (10, 0x4116eb63),
            (50, 0x41924f14),
            (130, 0x41fb7093),
            (300, 0x42454cea),
        ];
        for (k, bits) in cases {
            let x = xorshift_values(k, 50 + k as u64, 10.0);
            let c = xorshift_values(k, 500 + k as u64, 1.0);
            assert_eq!(distance_f32(&x, &c).to_bits(), bits, "k = {k}");
        }
    }

    #[test]
    fn means_match_numpy() {
        // python: x = xs(n * d, 70 + n + d, 100.0).reshape(n, d);
        //   x[np.arange(0, n, 2), :].mean(axis=0).view(np.uint32)
        let cases: Vec<(usize, usize, Vec<u32>)> = vec![
            (5, 1, vec![0xc1b48338]),
            (300, 1, vec![0xbfc3912c]),
            (5000, 1, vec![0xbe84f4c9]),
            (300, 2, vec![0x3f32ce72, 0x4018866d]),
            (5000, 3, vec![0xbe63e378, 0xbd7d55ad, 0xbe5301aa]),
        ];
        for (n, d, bits) in cases {
            let x = xorshift_values(n * d, 70 + (n + d) as u64, 100.0);
            let rows: Vec<usize> = (0..n).step_by(2).collect();
            let m: Vec<u32> = mean_rows_f32(&x, d, &rows)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(m, bits, "n = {n}, d = {d}");
        }
    }
}
