//! NumPy-compatible sorting, `searchsorted` and linear `quantile` on float32 data.
//!
//! `np.quantile(a_f32, q)` with a Python-float `q` in NumPy 2.4 ("linear" method, weak `q`):
//! `h = (n - 1) * q` in float64; `lo = floor(h)`; `t = h - lo` (float64, then a Python float);
//! if `h >= n - 1` the result is the largest value; otherwise with `a = s[lo]`, `b = s[lo + 1]`
//! and `diff = b - a` (float32): `t >= 0.5` → `b - diff * f32(1 - t)`, else `a + diff * f32(t)`
//! (all float32 arithmetic, `t` cast to float32 under NEP 50). A NaN anywhere gives NaN.

use std::cmp::Ordering;

/// Sort key giving NumPy's float order: ascending, `-0.0 == 0.0`, every NaN last.
pub fn nan_last_key(x: f32) -> u32 {
    if x.is_nan() {
        return u32::MAX;
    }
    let x = if x == 0.0 { 0.0f32 } else { x };
    let bits = x.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// NumPy's comparison used by `np.sort` / `np.searchsorted`: NaN is larger than everything.
pub fn cmp_nan_last(a: f32, b: f32) -> Ordering {
    nan_last_key(a).cmp(&nan_last_key(b))
}

/// Sorts float32 values ascending with NaNs last (as `np.sort`).
pub fn sort_nan_last(values: &mut [f32]) {
    values.sort_unstable_by_key(|&v| nan_last_key(v));
}

/// `np.searchsorted(sorted, v, side="right")`: the number of elements `<= v` (NaN-aware).
pub fn searchsorted_right(sorted: &[f32], v: f32) -> usize {
    let kv = nan_last_key(v);
    sorted.partition_point(|&s| nan_last_key(s) <= kv)
}

/// `np.quantile(values, q)` (method "linear", Python-float `q`) of values already sorted by
/// [`sort_nan_last`]. Returns NaN for an empty slice (NumPy raises) or when any value is NaN.
pub fn quantile_linear_sorted(sorted: &[f32], q: f64) -> f32 {
    let n = sorted.len();
    let Some(&last) = sorted.last() else {
        return f32::NAN;
    };
    if last.is_nan() || q.is_nan() {
        return f32::NAN;
    }
    let h = (n - 1) as f64 * q;
    if h >= (n - 1) as f64 {
        return last;
    }
    if h < 0.0 {
        return sorted[0];
    }
    let lo_f = h.floor();
    let lo = lo_f as usize;
    let t = h - lo_f;
    let (a, b) = (sorted[lo], sorted[lo + 1]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * ((1.0 - t) as f32)
    } else {
        a + diff * (t as f32)
    }
}

/// `np.quantile(values, q)` (method "linear") of unsorted values, reordering `values` in place:
/// the two order statistics the interpolation needs are found by selection, in linear time,
/// instead of a full sort. Same result as [`quantile_linear_sorted`] of the sorted values.
pub fn quantile_linear_select(values: &mut [f32], q: f64) -> f32 {
    let n = values.len();
    if n == 0 || q.is_nan() || values.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    let h = (n - 1) as f64 * q;
    let max_of = |vals: &[f32]| {
        vals.iter()
            .copied()
            .max_by_key(|&v| nan_last_key(v))
            .unwrap_or(f32::NAN)
    };
    if h >= (n - 1) as f64 {
        return max_of(values);
    }
    let lo = if h < 0.0 { 0 } else { h.floor() as usize };
    let (_, &mut a, above) = values.select_nth_unstable_by_key(lo, |&v| nan_last_key(v));
    if h < 0.0 {
        return a;
    }
    let b = above
        .iter()
        .copied()
        .min_by_key(|&v| nan_last_key(v))
        .unwrap_or(a);
    let t = h - h.floor();
    let diff = b - a;
    if t >= 0.5 {
        b - diff * ((1.0 - t) as f32)
    } else {
        a + diff * (t as f32)
    }
}

/// `np.quantile(values, q)` of unsorted values (sorts a copy).
pub fn quantile_linear(values: &[f32], q: f64) -> f32 {
    let mut v = values.to_vec();
    sort_nan_last(&mut v);
    quantile_linear_sorted(&v, q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testutil::xorshift_values;

    #[test]
    fn key_order() {
        let mut v = vec![
            f32::NAN,
            1.0,
            -0.0,
            f32::INFINITY,
            -3.0,
            0.0,
            f32::NEG_INFINITY,
        ];
        sort_nan_last(&mut v);
        assert_eq!(v[0], f32::NEG_INFINITY);
        assert_eq!(v[1], -3.0);
        assert_eq!(v[2], 0.0);
        assert_eq!(v[3], 0.0);
        assert_eq!(v[4], 1.0);
        assert_eq!(v[5], f32::INFINITY);
        assert!(v[6].is_nan());
        assert_eq!(cmp_nan_last(-0.0, 0.0), Ordering::Equal);
        assert_eq!(cmp_nan_last(f32::NAN, f32::INFINITY), Ordering::Greater);
    }

    #[test]
    fn selection_quantile_equals_the_sorted_one() {
        let qs = [0.0, 0.05, 0.5, 0.95, 0.999, 1.0];
        let mut cases: Vec<Vec<f32>> = vec![
            vec![2.5],
            vec![1.0, 1.0],
            vec![3.0, -1.0],
            vec![0.0, -0.0, 5.0, 5.0, 5.0, f32::INFINITY, f32::NEG_INFINITY],
            vec![f32::INFINITY, f32::INFINITY, 1.0],
        ];
        for n in [3usize, 10, 11, 100, 1001] {
            cases.push(xorshift_values(n, n as u64 + 17, 10.0));
        }
        for case in &cases {
            for &q in &qs {
                let expected = quantile_linear(case, q);
                let got = quantile_linear_select(&mut case.clone(), q);
                assert!(
                    expected.to_bits() == got.to_bits() || (expected == got),
                    "q={q} n={}: sorted {expected} vs select {got}",
                    case.len()
                );
            }
        }
        assert!(quantile_linear_select(&mut [1.0, f32::NAN, 2.0], 0.5).is_nan());
        assert!(quantile_linear_select(&mut [], 0.5).is_nan());
    }

    #[test]
    fn searchsorted_side_right() {
        let s = [1.0f32, 2.0, 2.0, 3.0, f32::NAN];
        assert_eq!(searchsorted_right(&s, 0.5), 0);
        assert_eq!(searchsorted_right(&s, 2.0), 3);
        assert_eq!(searchsorted_right(&s, 3.0), 4);
        assert_eq!(searchsorted_right(&s, f32::NAN), 5);
        assert_eq!(searchsorted_right(&[], 1.0), 0);
    }

    #[test]
    fn quantile_edge_cases() {
        assert!(quantile_linear(&[], 0.5).is_nan());
        assert_eq!(quantile_linear(&[7.0], 0.95), 7.0);
        assert_eq!(quantile_linear(&[1.0, 2.0], 1.0), 2.0);
        assert_eq!(quantile_linear(&[1.0, 2.0], 0.0), 1.0);
        assert!(quantile_linear(&[1.0, f32::NAN], 0.5).is_nan());
        assert_eq!(quantile_linear(&[3.0, 1.0, 2.0], 0.5), 2.0);
    }

    #[test]
    fn quantile_matches_numpy() {
        // python (numpy 2.4.6): x = xs(n, seed, scale) (see testutil);
        //   np.quantile(np.abs(x), q).view(np.uint32)
        let cases: [(usize, u64, f32, f64, u32); 14] = [
            (2, 1, 1.0, 0.95, 0x3efe6660),      // f64 formula differs: False
            (2, 1, 1.0, 0.9, 0x3efcccc0),       // f64 formula differs: False
            (2, 1, 1.0, 0.51, 0x3ef051ac),      // f64 formula differs: False
            (20, 1, 1.0, 0.51, 0x3e7f797e),     // f64 formula differs: True
            (2, 3, 1.0, 0.51, 0x3ed0f504),      // f64 formula differs: True
            (2, 7, 1.0, 0.51, 0x3e923bb2),      // f64 formula differs: True
            (2, 7, 3000.0, 0.75, 0x44927b5a),   // f64 formula differs: True
            (2, 8, 3000.0, 0.51, 0x443f42eb),   // f64 formula differs: True
            (2, 13, 1.0, 0.51, 0x3ed0f8fe),     // f64 formula differs: True
            (2, 13, 3000.0, 0.51, 0x44990e5e),  // f64 formula differs: True
            (100, 14, 3000.0, 0.9, 0x44a82c22), // f64 formula differs: True
            (1001, 5, 1.0, 0.95, 0x3ef1e242),
            (37, 9, 3000.0, 0.999, 0x44bb724e),
            (11, 2, 1.0, 0.95, 0x3edfff7e),
        ];
        for (n, seed, scale, q, bits) in cases {
            let v: Vec<f32> = xorshift_values(n, seed, scale)
                .iter()
                .map(|x| x.abs())
                .collect();
            assert_eq!(quantile_linear(&v, q).to_bits(), bits, "n={n} q={q}");
        }
    }
}
