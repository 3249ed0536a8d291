//! Per-cell outlier quantiles (protocol §5.4, adapter `_compute_outlier_quantiles`),
//! bit-exact with NumPy 2.4 float32 arithmetic.

use crate::model::categories::CodeGroups;
use crate::model::error::{ModelError, ModelResult};
use crate::model::quantile::{nan_last_key, searchsorted_right};
use crate::model::reduce::{distance_f32, mean_rows_f32};

/// Computes `obs/<key>.outliers.f32` for one categorical field.
///
/// `latent` is the latent space as a row-major `n × k` float32 matrix together with `k`, or
/// `None` when there is no latent space (then every value is `0.0`, like the reference).
/// Otherwise cells start as NaN; for every category with at least `min_points` cells the value
/// is `rank / n` (float32), where `rank` counts the category's cells whose distance to the
/// category mean is `<=` this cell's (`np.searchsorted(sorted, d, side="right")`).
/// `n_cells = codes.len()`. O(n log n) per call, no per-cell allocation.
pub fn outlier_quantiles(
    latent: Option<(&[f32], usize)>,
    codes: &[i32],
    n_categories: usize,
    min_points: usize,
) -> ModelResult<Vec<f32>> {
    let n_cells = codes.len();
    let Some((data, k)) = latent else {
        return Ok(vec![0.0; n_cells]);
    };
    let expected = n_cells.saturating_mul(k);
    if data.len() != expected {
        return Err(ModelError::ShapeMismatch {
            what: "latent space".to_string(),
            expected,
            actual: data.len(),
        });
    }
    let mut out = vec![f32::NAN; n_cells];
    let groups = CodeGroups::new(codes, n_categories);
    let mut dists: Vec<f32> = Vec::new();
    let mut keys: Vec<u32> = Vec::new();
    for code in 0..n_categories {
        crate::compute::checkpoint()?;
        let cells = groups.cells(code);
        let n = cells.len();
        if n < min_points || n == 0 {
            continue;
        }
        let center = mean_rows_f32(data, k, cells);
        dists.clear();
        dists.extend(
            cells
                .iter()
                .map(|&c| distance_f32(&data[c * k..c * k + k], &center)),
        );
        keys.clear();
        keys.extend(dists.iter().map(|&d| nan_last_key(d)));
        keys.sort_unstable();
        let n_f32 = n as f32;
        for (&cell, &d) in cells.iter().zip(&dists) {
            let kd = nan_last_key(d);
            let rank = keys.partition_point(|&s| s <= kd);
            out[cell] = rank as f32 / n_f32;
        }
    }
    Ok(out)
}

/// Ranks of `values` within themselves: `np.searchsorted(np.sort(values), values,
/// side="right")` (exposed for tests and for callers that need the raw ranks).
pub fn ranks_side_right(values: &[f32]) -> Vec<usize> {
    let mut sorted = values.to_vec();
    crate::model::quantile::sort_nan_last(&mut sorted);
    values
        .iter()
        .map(|&v| searchsorted_right(&sorted, v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testutil::{xorshift_ints, xorshift_values};

    #[test]
    fn no_latent_gives_zeros() {
        assert_eq!(
            outlier_quantiles(None, &[0, -1, 1], 2, 10).unwrap(),
            vec![0.0, 0.0, 0.0]
        );
        assert!(outlier_quantiles(None, &[], 0, 10).unwrap().is_empty());
    }

    #[test]
    fn small_and_missing_stay_nan() {
        let latent = [0.0f32, 1.0, 2.0, 3.0, 4.0];
        let q = outlier_quantiles(Some((&latent, 1)), &[0, 0, -1, 1, 0], 2, 3).unwrap();
        assert!(q[2].is_nan()); // missing
        assert!(q[3].is_nan()); // category of 1 < min_points
        // category 0: values 0, 1, 4 -> mean 5/3; dists 1.667, 0.667, 2.333
        assert_eq!(q[0], 2.0f32 / 3.0);
        assert_eq!(q[1], 1.0f32 / 3.0);
        assert_eq!(q[4], 1.0);
    }

    #[test]
    fn ties_share_the_higher_rank() {
        assert_eq!(
            ranks_side_right(&[1.0, 2.0, 1.0, f32::NAN]),
            vec![2, 3, 2, 4]
        );
        let latent = [1.0f32, -1.0, 1.0, -1.0];
        let q = outlier_quantiles(Some((&latent, 1)), &[0, 0, 0, 0], 1, 1).unwrap();
        assert_eq!(q, vec![1.0; 4]);
    }

    #[test]
    fn zero_width_latent() {
        let q = outlier_quantiles(Some((&[], 0)), &[0, 0, 1], 2, 1).unwrap();
        assert_eq!(q, vec![1.0, 1.0, 1.0]);
    }

    #[test]
    fn shape_error() {
        assert!(outlier_quantiles(Some((&[1.0, 2.0, 3.0], 2)), &[0, 0], 1, 1).is_err());
    }

    /// `sum(bits[i] * (i + 1)) mod 2^64`, as computed by the python generator.
    fn checksum(bits: &[u32]) -> u64 {
        bits.iter().enumerate().fold(0u64, |acc, (i, &b)| {
            acc.wrapping_add(u64::from(b).wrapping_mul(i as u64 + 1))
        })
    }

    #[test]
    fn numpy_k3() {
        // python (cellucid 0.0.9, numpy 2.4.6): obsm["X_pca"] = xs(60*3, 31, 10.0) as (60,3);
        //   codes = xsi(60, 41, 4) with 3 -> -1, categorical "f";
        //   AnnDataAdapter(adata, centroid_min_points=10).get_obs_outlier_quantiles("f")
        //   category sizes [14, 19, 9]; one category below min_points
        let (n, k) = (60, 3);
        let latent: Vec<f32> = xorshift_values(n * k, 31, 10.0);
        let codes: Vec<i32> = xorshift_ints(n, 41, 4)
            .iter()
            .map(|&c| if c == 3 { -1 } else { c as i32 })
            .collect();
        let q = outlier_quantiles(Some((&latent, k)), &codes, 3, 10).unwrap();
        let bits: Vec<u32> = q.iter().map(|v| v.to_bits()).collect();
        let expected: [u32; 60] = [
            0x3f2f286c, 0x7fc00000, 0x3f6db6db, 0x3edb6db7, 0x7fc00000, 0x3f124925, 0x7fc00000,
            0x3f492492, 0x7fc00000, 0x7fc00000, 0x7fc00000, 0x7fc00000, 0x3d579436, 0x7fc00000,
            0x3e579436, 0x3f579436, 0x7fc00000, 0x3e5b6db7, 0x3f5b6db7, 0x7fc00000, 0x3e924925,
            0x7fc00000, 0x3f06bca2, 0x3f21af28, 0x3f800000, 0x3f36db6e, 0x3e124925, 0x7fc00000,
            0x7fc00000, 0x3ea1af28, 0x7fc00000, 0x7fc00000, 0x3e86bca2, 0x3f1435e5, 0x3ef286bd,
            0x3d924925, 0x3f7286bd, 0x3f800000, 0x3f650d79, 0x3f4a1af3, 0x7fc00000, 0x3e21af28,
            0x7fc00000, 0x3ed79436, 0x7fc00000, 0x3dd79436, 0x7fc00000, 0x3f3ca1af, 0x7fc00000,
            0x7fc00000, 0x7fc00000, 0x7fc00000, 0x3eb6db6e, 0x7fc00000, 0x3f000000, 0x3ebca1af,
            0x7fc00000, 0x7fc00000, 0x7fc00000, 0x3f249249,
        ];
        assert_eq!(bits, expected.to_vec());
    }

    #[test]
    fn numpy_k10() {
        // python (cellucid 0.0.9, numpy 2.4.6): obsm["X_pca"] = xs(80*10, 32, 10.0) as (80,10);
        //   codes = xsi(80, 42, 3) with 2 -> -1, categorical "f";
        //   AnnDataAdapter(adata, centroid_min_points=10).get_obs_outlier_quantiles("f")
        //   category sizes [25, 24]; 8-accumulator pairwise row sums
        let (n, k) = (80, 10);
        let latent: Vec<f32> = xorshift_values(n * k, 32, 10.0);
        let codes: Vec<i32> = xorshift_ints(n, 42, 3)
            .iter()
            .map(|&c| if c == 2 { -1 } else { c as i32 })
            .collect();
        let q = outlier_quantiles(Some((&latent, k)), &codes, 2, 10).unwrap();
        let bits: Vec<u32> = q.iter().map(|v| v.to_bits()).collect();
        let expected: [u32; 80] = [
            0x7fc00000, 0x7fc00000, 0x3eaaaaab, 0x3ecccccd, 0x7fc00000, 0x3f6147ae, 0x3f555555,
            0x7fc00000, 0x3f800000, 0x3f355555, 0x7fc00000, 0x3f19999a, 0x3e000000, 0x3df5c28f,
            0x3e23d70a, 0x3eb851ec, 0x3f6aaaab, 0x3f200000, 0x7fc00000, 0x3f000000, 0x3ec00000,
            0x7fc00000, 0x7fc00000, 0x7fc00000, 0x3ef5c28f, 0x3f3851ec, 0x7fc00000, 0x7fc00000,
            0x3f400000, 0x7fc00000, 0x7fc00000, 0x7fc00000, 0x3da3d70a, 0x3e4ccccd, 0x3e955555,
            0x7fc00000, 0x3f2e147b, 0x7fc00000, 0x3f570a3d, 0x7fc00000, 0x3ea3d70a, 0x3daaaaab,
            0x7fc00000, 0x3d23d70a, 0x3f6b851f, 0x7fc00000, 0x7fc00000, 0x7fc00000, 0x7fc00000,
            0x3f75c28f, 0x3f0f5c29, 0x7fc00000, 0x3ed55555, 0x3eeaaaab, 0x7fc00000, 0x3d2aaaab,
            0x7fc00000, 0x3f600000, 0x3f428f5c, 0x3f0aaaab, 0x7fc00000, 0x3e555555, 0x3f755555,
            0x7fc00000, 0x7fc00000, 0x3e8f5c29, 0x3f800000, 0x7fc00000, 0x3e2aaaab, 0x3f4aaaab,
            0x3e800000, 0x3f4ccccd, 0x3e75c28f, 0x3f155555, 0x7fc00000, 0x7fc00000, 0x3f2aaaab,
            0x3f051eb8, 0x3ee147ae, 0x3f23d70a,
        ];
        assert_eq!(bits, expected.to_vec());
    }

    #[test]
    fn numpy_k50_ties() {
        // python (cellucid 0.0.9, numpy 2.4.6): obsm["X_pca"] = xs(90*50, 33, 4.0); np.floor as (90,50);
        //   codes = xsi(90, 43, 3) with 2 -> -1, categorical "f";
        //   AnnDataAdapter(adata, centroid_min_points=10).get_obs_outlier_quantiles("f")
        //   category sizes [27, 38]; integer latent values: distance ties
        let (n, k) = (90, 50);
        let latent: Vec<f32> = xorshift_values(n * k, 33, 4.0)
            .iter()
            .map(|v| v.floor())
            .collect();
        let codes: Vec<i32> = xorshift_ints(n, 43, 3)
            .iter()
            .map(|&c| if c == 2 { -1 } else { c as i32 })
            .collect();
        let q = outlier_quantiles(Some((&latent, k)), &codes, 2, 10).unwrap();
        let bits: Vec<u32> = q.iter().map(|v| v.to_bits()).collect();
        let expected: [u32; 90] = [
            0x7fc00000, 0x3f50d794, 0x3f0e38e4, 0x7fc00000, 0x3f7286bd, 0x3cd79436, 0x3f5a12f7,
            0x3f3425ed, 0x3f638e39, 0x3e17b426, 0x3ed097b4, 0x3e06bca2, 0x3e21af28, 0x3f1af287,
            0x7fc00000, 0x7fc00000, 0x3f800000, 0x3f3ca1af, 0x3f2f286c, 0x3e84bda1, 0x3f6d097b,
            0x7fc00000, 0x7fc00000, 0x3ed79436, 0x3ebda12f, 0x3f435e51, 0x3ebca1af, 0x7fc00000,
            0x3f5097b4, 0x7fc00000, 0x3d17b426, 0x3f0d7943, 0x3ef684be, 0x3f2aaaab, 0x7fc00000,
            0x3f000000, 0x3e86bca2, 0x3de38e39, 0x3f06bca2, 0x3f2f286c, 0x3f212f68, 0x3e3ca1af,
            0x3f79435e, 0x3ebca1af, 0x3f5e50d8, 0x7fc00000, 0x3e579436, 0x3e3da12f, 0x7fc00000,
            0x3dd79436, 0x3eaaaaab, 0x3f650d79, 0x7fc00000, 0x7fc00000, 0x7fc00000, 0x3f579436,
            0x7fc00000, 0x3f1435e5, 0x3e7286bd, 0x7fc00000, 0x7fc00000, 0x3f6bca1b, 0x7fc00000,
            0x3e9435e5, 0x3e638e39, 0x3f4a1af3, 0x3f471c72, 0x7fc00000, 0x3eca1af3, 0x7fc00000,
            0x3f800000, 0x3ea1af28, 0x3ee38e39, 0x7fc00000, 0x3d97b426, 0x3f7684be, 0x7fc00000,
            0x3f21af28, 0x3f3da12f, 0x3d579436, 0x7fc00000, 0x7fc00000, 0x3e97b426, 0x3da1af28,
            0x3f000000, 0x3f35e50d, 0x3f000000, 0x3f04bda1, 0x3f17b426, 0x7fc00000,
        ];
        assert_eq!(bits, expected.to_vec());
    }

    #[test]
    fn numpy_k130() {
        // python (cellucid 0.0.9, numpy 2.4.6): obsm["X_pca"] = xs(400*130, 34, 2.0) as (400,130);
        //   codes = xsi(400, 44, 4) with 3 -> -1, categorical "f";
        //   AnnDataAdapter(adata, centroid_min_points=10).get_obs_outlier_quantiles("f")
        //   category sizes [108, 94, 100]; row sums > 128 use the recursive split
        let (n, k) = (400, 130);
        let latent: Vec<f32> = xorshift_values(n * k, 34, 2.0);
        let codes: Vec<i32> = xorshift_ints(n, 44, 4)
            .iter()
            .map(|&c| if c == 3 { -1 } else { c as i32 })
            .collect();
        let q = outlier_quantiles(Some((&latent, k)), &codes, 3, 10).unwrap();
        let bits: Vec<u32> = q.iter().map(|v| v.to_bits()).collect();
        for (i, want) in [
            (0, 0x3e6fa8da),
            (25, 0x7fc00000),
            (50, 0x7fc00000),
            (75, 0x3f1df51b),
            (100, 0x3df684be),
            (125, 0x3ec9882c),
            (150, 0x3ee4c416),
            (175, 0x3ed70a3d),
            (200, 0x3f497b42),
            (225, 0x3d82b931),
            (250, 0x3d9882b9),
            (275, 0x3f2147ae),
            (300, 0x3f6fa8da),
            (325, 0x7fc00000),
            (350, 0x3e82b931),
            (375, 0x7fc00000),
        ] {
            assert_eq!(bits[i], want, "cell {i}");
        }
        assert_eq!(checksum(&bits), 0x00005ff899b3701e);
    }

    #[test]
    fn numpy_k1_large() {
        // python (cellucid 0.0.9, numpy 2.4.6): obsm["X_pca"] = xs(3000*1, 35, 50.0) as (3000,1);
        //   codes = xsi(3000, 45, 4) with 3 -> -1, categorical "f";
        //   AnnDataAdapter(adata, centroid_min_points=10).get_obs_outlier_quantiles("f")
        //   category sizes [788, 741, 747]; 1-D latent: pairwise column mean
        let (n, k) = (3000, 1);
        let latent: Vec<f32> = xorshift_values(n * k, 35, 50.0);
        let codes: Vec<i32> = xorshift_ints(n, 45, 4)
            .iter()
            .map(|&c| if c == 3 { -1 } else { c as i32 })
            .collect();
        let q = outlier_quantiles(Some((&latent, k)), &codes, 3, 10).unwrap();
        let bits: Vec<u32> = q.iter().map(|v| v.to_bits()).collect();
        for (i, want) in [
            (0, 0x3f800000),
            (187, 0x3f2b8872),
            (374, 0x3e27a270),
            (561, 0x3f3d83f1),
            (748, 0x3eb5b8d5),
            (935, 0x3f060bbf),
            (1122, 0x3e69e89c),
            (1309, 0x3ec09988),
            (1496, 0x3e5a57c0),
            (1683, 0x7fc00000),
            (1870, 0x3da5d478),
            (2057, 0x3f37730b),
            (2244, 0x7fc00000),
            (2431, 0x3ebc7cbf),
            (2618, 0x3f6020e6),
            (2805, 0x3eef1b4a),
            (2992, 0x7fc00000),
        ] {
            assert_eq!(bits[i], want, "cell {i}");
        }
        assert_eq!(checksum(&bits), 0x00150a33ecb7b77f);
    }

    #[test]
    fn numpy_k2_large() {
        // python (cellucid 0.0.9, numpy 2.4.6): obsm["X_pca"] = xs(5000*2, 36, 50.0) as (5000,2);
        //   codes = xsi(5000, 46, 5) with 4 -> -1, categorical "f";
        //   AnnDataAdapter(adata, centroid_min_points=10).get_obs_outlier_quantiles("f")
        //   category sizes [955, 1026, 938, 1029]
        let (n, k) = (5000, 2);
        let latent: Vec<f32> = xorshift_values(n * k, 36, 50.0);
        let codes: Vec<i32> = xorshift_ints(n, 46, 5)
            .iter()
            .map(|&c| if c == 4 { -1 } else { c as i32 })
            .collect();
        let q = outlier_quantiles(Some((&latent, k)), &codes, 4, 10).unwrap();
        let bits: Vec<u32> = q.iter().map(|v| v.to_bits()).collect();
        for (i, want) in [
            (0, 0x3f635139),
            (312, 0x3e3dc9da),
            (624, 0x7fc00000),
            (936, 0x3cf4898d),
            (1248, 0x3f4297be),
            (1560, 0x3d96a707),
            (1872, 0x7fc00000),
            (2184, 0x3f3fd03c),
            (2496, 0x3f605e5c),
            (2808, 0x3ee40df9),
            (3120, 0x3ede69fc),
            (3432, 0x3e18b3a6),
            (3744, 0x3eb4ac7c),
            (4056, 0x3ebd409a),
            (4368, 0x3ed8f0d3),
            (4680, 0x3f5673ef),
            (4992, 0x3f73fdd1),
        ] {
            assert_eq!(bits[i], want, "cell {i}");
        }
        assert_eq!(checksum(&bits), 0x0038f03291dccbfe);
    }
}
