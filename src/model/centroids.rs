//! Per-category centroids (protocol §6.4, adapter `_compute_centroids_for_field`), bit-exact
//! with NumPy 2.4 float32 arithmetic.

use serde::Serialize;

use crate::model::categories::CodeGroups;
use crate::model::error::{ModelError, ModelResult};
use crate::model::quantile::quantile_linear_select;
use crate::model::reduce::{distance_f32, mean_rows_f32};

/// Default `centroid_outlier_quantile`.
pub const DEFAULT_CENTROID_QUANTILE: f64 = 0.95;
/// Default `centroid_min_points`.
pub const DEFAULT_CENTROID_MIN_POINTS: usize = 10;

/// One centroid of the manifest's `centroidsByDim` lists (serialises to
/// `{"category", "position", "n_points"}` in that order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Centroid {
    /// The category label.
    pub category: String,
    /// The centre (float32 results widened to f64, as Python's `float`); always finite.
    pub position: Vec<f64>,
    /// Number of points the centre was averaged over.
    pub n_points: usize,
}

/// Centroid settings after the reference's sanitising (A:207-221).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CentroidParams {
    /// Outlier quantile `q`, in (0.5, 1.0).
    pub quantile: f64,
    /// Minimum number of points for a centroid (≥ 1).
    pub min_points: usize,
}

impl Default for CentroidParams {
    fn default() -> Self {
        Self {
            quantile: DEFAULT_CENTROID_QUANTILE,
            min_points: DEFAULT_CENTROID_MIN_POINTS,
        }
    }
}

impl CentroidParams {
    /// Applies the reference's validation: `q` outside the open interval (0.5, 1.0) (or NaN)
    /// becomes 0.95; `min_points < 1` becomes 10.
    pub fn sanitized(quantile: f64, min_points: i64) -> Self {
        let quantile = if quantile > 0.5 && quantile < 1.0 {
            quantile
        } else {
            DEFAULT_CENTROID_QUANTILE
        };
        let min_points = match usize::try_from(min_points) {
            Ok(m) if m >= 1 => m,
            _ => DEFAULT_CENTROID_MIN_POINTS,
        };
        Self {
            quantile,
            min_points,
        }
    }
}

/// Computes the centroids of one categorical field in one dimension.
///
/// `coords` is the **normalised** row-major `n × dim` embedding (`points_<dim>d`), `codes` the
/// per-cell codes (`-1` missing), `categories` the labels. For each category in order: skip if
/// `n < min_points`; `center = mean`; if `n > min_points`, distances to the centre, threshold
/// `np.quantile(dists, q)`, inliers `dist <= thr`, and if at least `min_points` inliers the
/// centre becomes their mean. Centroids with a non-finite position are dropped (JSON must never
/// carry NaN/Infinity; the reference would emit them).
pub fn compute_centroids<S: AsRef<str>>(
    coords: &[f32],
    dim: usize,
    codes: &[i32],
    categories: &[S],
    params: &CentroidParams,
) -> ModelResult<Vec<Centroid>> {
    let n_cells = codes.len();
    if dim == 0 {
        return Err(ModelError::InvalidDimension { dim: 0 });
    }
    let expected = n_cells.saturating_mul(dim);
    if coords.len() != expected {
        return Err(ModelError::ShapeMismatch {
            what: "centroid coordinates".to_string(),
            expected,
            actual: coords.len(),
        });
    }
    let min_points = params.min_points.max(1);
    if dim == 1 {
        centroids_by_group(coords, codes, categories, params.quantile, min_points)
    } else {
        centroids_streaming(coords, dim, codes, categories, params.quantile, min_points)
    }
}

/// Keeps a centroid only when every coordinate is finite.
fn finite_centroid(label: &str, center: &[f32], n_points: usize) -> Option<Centroid> {
    center.iter().all(|v| v.is_finite()).then(|| Centroid {
        category: label.to_string(),
        position: center.iter().map(|&v| f64::from(v)).collect(),
        n_points,
    })
}

/// One category at a time over its cells (`dim == 1`, where NumPy's mean is a pairwise sum).
fn centroids_by_group<S: AsRef<str>>(
    coords: &[f32],
    codes: &[i32],
    categories: &[S],
    quantile: f64,
    min_points: usize,
) -> ModelResult<Vec<Centroid>> {
    let groups = CodeGroups::new(codes, categories.len());
    let mut out = Vec::new();
    let mut scratch: Vec<f32> = Vec::new();
    for (code, label) in categories.iter().enumerate() {
        crate::compute::checkpoint()?;
        let cells = groups.cells(code);
        let n = cells.len();
        if n < min_points {
            continue;
        }
        let mut center = mean_rows_f32(coords, 1, cells);
        let mut used = n;
        if n > min_points {
            let dists: Vec<f32> = cells
                .iter()
                .map(|&c| distance_f32(&coords[c..c + 1], &center))
                .collect();
            scratch.clear();
            scratch.extend_from_slice(&dists);
            let thr = quantile_linear_select(&mut scratch, quantile);
            let inliers: Vec<usize> = cells
                .iter()
                .zip(&dists)
                .filter(|&(_, &d)| d <= thr)
                .map(|(&c, _)| c)
                .collect();
            if inliers.len() >= min_points {
                center = mean_rows_f32(coords, 1, &inliers);
                used = inliers.len();
            }
        }
        out.extend(finite_centroid(label.as_ref(), &center, used));
    }
    Ok(out)
}

/// All categories in three sequential passes over the cells (`dim >= 2`): NumPy sums the rows of
/// a `(n, d)` selection one after another per column, and a pass in cell order adds each
/// category's rows in the same (ascending) order, so the result is bit-identical to per-category
/// gathering — without its random reads of the embedding (the cost at 1M cells).
fn centroids_streaming<S: AsRef<str>>(
    coords: &[f32],
    dim: usize,
    codes: &[i32],
    categories: &[S],
    quantile: f64,
    min_points: usize,
) -> ModelResult<Vec<Centroid>> {
    let k = categories.len();
    let valid = |c: i32| usize::try_from(c).ok().filter(|&c| c < k);
    let rows = || {
        codes
            .iter()
            .zip(coords.chunks_exact(dim))
            .filter_map(|(&c, row)| valid(c).map(|c| (c, row)))
    };
    let mean = |sums: &[f32], n: usize| -> Vec<f32> {
        sums.iter()
            .map(|&s| (f64::from(s) / n as f64) as f32)
            .collect()
    };
    let add_row = |sums: &mut [f32], c: usize, row: &[f32]| {
        for (a, &v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row) {
            *a += v;
        }
    };

    // Pass 1: sizes and sums of every category.
    let mut counts = vec![0usize; k];
    let mut sums = vec![0.0f32; k * dim];
    for (c, row) in rows() {
        counts[c] += 1;
        add_row(&mut sums, c, row);
    }
    let centers: Vec<Vec<f32>> = (0..k)
        .map(|c| mean(&sums[c * dim..(c + 1) * dim], counts[c]))
        .collect();
    let trimmed = |c: usize| counts[c] > min_points;

    crate::compute::checkpoint()?;
    // Pass 2: each cell's distance to its centre, also grouped by category for the quantile.
    let mut offsets = vec![0usize; k + 1];
    for c in 0..k {
        offsets[c + 1] = offsets[c] + if trimmed(c) { counts[c] } else { 0 };
    }
    let mut grouped = vec![0.0f32; offsets[k]];
    let mut cursor = offsets.clone();
    let mut cell_dist = vec![f32::NAN; codes.len()];
    for ((cell, &code), row) in codes.iter().enumerate().zip(coords.chunks_exact(dim)) {
        if let Some(c) = valid(code).filter(|&c| trimmed(c)) {
            let d = distance_f32(row, &centers[c]);
            cell_dist[cell] = d;
            grouped[cursor[c]] = d;
            cursor[c] += 1;
        }
    }
    crate::compute::checkpoint()?;
    let thresholds: Vec<f32> = (0..k)
        .map(|c| match trimmed(c) {
            true => quantile_linear_select(&mut grouped[offsets[c]..offsets[c + 1]], quantile),
            false => f32::NAN,
        })
        .collect();

    crate::compute::checkpoint()?;
    // Pass 3: sums of the inliers (`dist <= threshold`) of the trimmed categories.
    let mut kept = vec![0usize; k];
    let mut kept_sums = vec![0.0f32; k * dim];
    for ((&code, row), &d) in codes.iter().zip(coords.chunks_exact(dim)).zip(&cell_dist) {
        if let Some(c) = valid(code)
            && trimmed(c)
            && d <= thresholds[c]
        {
            kept[c] += 1;
            add_row(&mut kept_sums, c, row);
        }
    }

    let mut out = Vec::new();
    for (c, label) in categories.iter().enumerate() {
        if counts[c] < min_points {
            continue;
        }
        let (center, used) = if trimmed(c) && kept[c] >= min_points {
            (mean(&kept_sums[c * dim..(c + 1) * dim], kept[c]), kept[c])
        } else {
            (centers[c].clone(), counts[c])
        };
        out.extend(finite_centroid(label.as_ref(), &center, used));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::embedding::normalize_embedding;
    use crate::model::testutil::{xorshift_ints, xorshift_values};

    #[test]
    fn params_sanitizing() {
        assert_eq!(CentroidParams::default().quantile, 0.95);
        assert_eq!(CentroidParams::default().min_points, 10);
        let p = CentroidParams::sanitized(0.5, 0);
        assert_eq!((p.quantile, p.min_points), (0.95, 10));
        let p = CentroidParams::sanitized(1.0, -3);
        assert_eq!((p.quantile, p.min_points), (0.95, 10));
        let p = CentroidParams::sanitized(f64::NAN, 1);
        assert_eq!((p.quantile, p.min_points), (0.95, 1));
        let p = CentroidParams::sanitized(0.9, 3);
        assert_eq!((p.quantile, p.min_points), (0.9, 3));
    }

    #[test]
    fn shape_errors() {
        let cats = ["a"];
        assert!(
            compute_centroids(&[0.0; 3], 2, &[0, 0], &cats, &CentroidParams::default()).is_err()
        );
        assert!(compute_centroids(&[], 0, &[], &cats, &CentroidParams::default()).is_err());
        assert_eq!(
            compute_centroids::<&str>(&[], 2, &[], &[], &CentroidParams::default()).unwrap(),
            vec![]
        );
    }

    #[test]
    fn non_finite_centroids_are_dropped() {
        let cats = ["a", "b"];
        let coords = [f32::NAN, 1.0, 2.0, 3.0];
        let params = CentroidParams::sanitized(0.95, 1);
        let c = compute_centroids(&coords, 1, &[0, 0, 1, 1], &cats, &params).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].category, "b");
        assert_eq!(c[0].position, vec![2.5]);
    }

    #[test]
    fn serializes_in_reference_key_order() {
        let c = Centroid {
            category: "T cell".into(),
            position: vec![0.5, -0.25],
            n_points: 12,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"category":"T cell","position":[0.5,-0.25],"n_points":12}"#
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn check_case(
        raw: &[f32],
        n: usize,
        d: usize,
        codes: &[i32],
        k: usize,
        q: f64,
        m: i64,
        expected: &[(&str, &[u64], usize)],
    ) {
        let (coords, _) = normalize_embedding(raw, n, d, true).unwrap();
        let cats: Vec<String> = (0..k).map(|i| format!("c{i}")).collect();
        let params = CentroidParams::sanitized(q, m);
        let got = compute_centroids(&coords, d, codes, &cats, &params).unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, (cat, pos, n_points)) in got.iter().zip(expected) {
            assert_eq!(g.category, *cat);
            let bits: Vec<u64> = g.position.iter().map(|p| p.to_bits()).collect();
            assert_eq!(bits, pos.to_vec(), "category {cat}");
            assert_eq!(g.n_points, *n_points, "category {cat}");
        }
    }

    #[test]
    fn numpy_random_2d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(300*2, 1, 20.0);
        //   codes = xsi(300, 21, 8) with 7 -> -1; obs["f"] = pd.Categorical.from_codes(codes, ["c0".."c6"])
        //   AnnDataAdapter(adata, centroid_outlier_quantile=0.95, centroid_min_points=35)._compute_centroids_for_field("f", 2)
        //   category sizes [27, 35, 41, 46, 33, 45, 35]; min_points = size of a category (n == min_points case)
        let (n, d) = (300, 2);
        let raw: Vec<f32> = xorshift_values(n * d, 1, 20.0);
        let codes: Vec<i32> = xorshift_ints(n, 21, 8)
            .iter()
            .map(|&c| if c == 7 { -1 } else { c as i32 })
            .collect();
        let expected: &[(&str, &[u64], usize)] = &[
            ("c1", &[0x3fa318adc0000000, 0xbfb8791060000000], 35),
            ("c2", &[0x3fc3016b80000000, 0x3f990fdce0000000], 39),
            ("c3", &[0xbfbd4cf440000000, 0x3f9c372a60000000], 43),
            ("c5", &[0x3fc7850020000000, 0xbfcd2957a0000000], 42),
            ("c6", &[0xbfadfcd360000000, 0xbf9a378a00000000], 35),
        ];
        check_case(&raw, n, d, &codes, 7, 0.95, 35, expected);
    }

    #[test]
    fn numpy_ties_1d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(200*1, 2, 8.0); np.floor(raw);
        //   codes = xsi(200, 22, 4) with 3 -> -1; obs["f"] = pd.Categorical.from_codes(codes, ["c0".."c2"])
        //   AnnDataAdapter(adata, centroid_outlier_quantile=0.9, centroid_min_points=10)._compute_centroids_for_field("f", 1)
        //   category sizes [53, 56, 47]; integer coordinates: many distance ties at the threshold
        let (n, d) = (200, 1);
        let raw: Vec<f32> = xorshift_values(n * d, 2, 8.0)
            .iter()
            .map(|v| v.floor())
            .collect();
        let codes: Vec<i32> = xorshift_ints(n, 22, 4)
            .iter()
            .map(|&c| if c == 3 { -1 } else { c as i32 })
            .collect();
        let expected: &[(&str, &[u64], usize)] = &[
            ("c0", &[0xbfacfb2ba0000000], 53),
            ("c1", &[0xbfaa1f58e0000000], 56),
            ("c2", &[0xbfc3f2b380000000], 44),
        ];
        check_case(&raw, n, d, &codes, 3, 0.9, 10, expected);
    }

    #[test]
    fn numpy_ties_2d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(240*2, 3, 6.0); np.floor(raw);
        //   codes = xsi(240, 23, 5) with 4 -> -1; obs["f"] = pd.Categorical.from_codes(codes, ["c0".."c3"])
        //   AnnDataAdapter(adata, centroid_outlier_quantile=0.75, centroid_min_points=10)._compute_centroids_for_field("f", 2)
        //   category sizes [53, 56, 51, 40]; integer coordinates
        let (n, d) = (240, 2);
        let raw: Vec<f32> = xorshift_values(n * d, 3, 6.0)
            .iter()
            .map(|v| v.floor())
            .collect();
        let codes: Vec<i32> = xorshift_ints(n, 23, 5)
            .iter()
            .map(|&c| if c == 4 { -1 } else { c as i32 })
            .collect();
        let expected: &[(&str, &[u64], usize)] = &[
            ("c0", &[0xbfa9999a60000000, 0x3fb99999c0000000], 40),
            ("c1", &[0x3f9bed6180000000, 0xbfc1745d60000000], 44),
            ("c2", &[0xbfd435e560000000, 0xbfc58ed220000000], 38),
            ("c3", &[0x3f9b4e81c0000000, 0x3fab4e81a0000000], 30),
        ];
        check_case(&raw, n, d, &codes, 4, 0.75, 10, expected);
    }

    #[test]
    fn numpy_random_3d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(400*3, 4, 3.0);
        //   codes = xsi(400, 24, 6) with 5 -> -1; obs["f"] = pd.Categorical.from_codes(codes, ["c0".."c4"])
        //   AnnDataAdapter(adata, centroid_outlier_quantile=0.95, centroid_min_points=10)._compute_centroids_for_field("f", 3)
        //   category sizes [65, 61, 66, 66, 68]
        let (n, d) = (400, 3);
        let raw: Vec<f32> = xorshift_values(n * d, 4, 3.0);
        let codes: Vec<i32> = xorshift_ints(n, 24, 6)
            .iter()
            .map(|&c| if c == 5 { -1 } else { c as i32 })
            .collect();
        let expected: &[(&str, &[u64], usize)] = &[
            (
                "c0",
                &[0xbfb04922c0000000, 0x3fc14e4a40000000, 0xbfb00eb180000000],
                61,
            ),
            (
                "c1",
                &[0x3f5d409c20000000, 0x3fc3a0a420000000, 0xbf25ae1a80000000],
                58,
            ),
            (
                "c2",
                &[0x3fb018c180000000, 0x3fae5e3de0000000, 0xbfc21ffae0000000],
                62,
            ),
            (
                "c3",
                &[0x3f9c792fe0000000, 0xbfb672fbc0000000, 0x3f818a4840000000],
                62,
            ),
            (
                "c4",
                &[0x3faea17da0000000, 0xbfb2599920000000, 0x3f9a78cbc0000000],
                64,
            ),
        ];
        check_case(&raw, n, d, &codes, 5, 0.95, 10, expected);
    }

    #[test]
    fn numpy_large_1d_pairwise() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(3000*1, 5, 100.0);
        //   codes = xsi(3000, 25, 3) with 2 -> -1; obs["f"] = pd.Categorical.from_codes(codes, ["c0".."c1"])
        //   AnnDataAdapter(adata, centroid_outlier_quantile=0.95, centroid_min_points=10)._compute_centroids_for_field("f", 1)
        //   category sizes [1007, 943]; 1-D means use pairwise summation over > 128 values
        let (n, d) = (3000, 1);
        let raw: Vec<f32> = xorshift_values(n * d, 5, 100.0);
        let codes: Vec<i32> = xorshift_ints(n, 25, 3)
            .iter()
            .map(|&c| if c == 2 { -1 } else { c as i32 })
            .collect();
        let expected: &[(&str, &[u64], usize)] = &[
            ("c0", &[0x3f96837680000000], 956),
            ("c1", &[0x3fa8d24cc0000000], 895),
        ];
        check_case(&raw, n, d, &codes, 2, 0.95, 10, expected);
    }

    #[test]
    fn numpy_large_2d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(3000*2, 6, 100.0);
        //   codes = xsi(3000, 26, 3) with 2 -> -1; obs["f"] = pd.Categorical.from_codes(codes, ["c0".."c1"])
        //   AnnDataAdapter(adata, centroid_outlier_quantile=0.9, centroid_min_points=10)._compute_centroids_for_field("f", 2)
        //   category sizes [997, 1013]
        let (n, d) = (3000, 2);
        let raw: Vec<f32> = xorshift_values(n * d, 6, 100.0);
        let codes: Vec<i32> = xorshift_ints(n, 26, 3)
            .iter()
            .map(|&c| if c == 2 { -1 } else { c as i32 })
            .collect();
        let expected: &[(&str, &[u64], usize)] = &[
            ("c0", &[0xbf6ea7fc00000000, 0x3f67582600000000], 897),
            ("c1", &[0xbf91151c00000000, 0x3f9e7dd360000000], 911),
        ];
        check_case(&raw, n, d, &codes, 2, 0.9, 10, expected);
    }

    #[test]
    fn numpy_small_categories() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(30*2, 7, 10.0);
        //   codes = xsi(30, 27, 7) with 6 -> -1; obs["f"] = pd.Categorical.from_codes(codes, ["c0".."c5"])
        //   AnnDataAdapter(adata, centroid_outlier_quantile=0.95, centroid_min_points=5)._compute_centroids_for_field("f", 2)
        //   category sizes [4, 7, 4, 6, 3, 2]; some categories below min_points
        let (n, d) = (30, 2);
        let raw: Vec<f32> = xorshift_values(n * d, 7, 10.0);
        let codes: Vec<i32> = xorshift_ints(n, 27, 7)
            .iter()
            .map(|&c| if c == 6 { -1 } else { c as i32 })
            .collect();
        let expected: &[(&str, &[u64], usize)] = &[
            ("c1", &[0x3fe7b8f260000000, 0x3fba4b2f60000000], 6),
            ("c3", &[0xbfe0ef9000000000, 0x3fce25e400000000], 5),
        ];
        check_case(&raw, n, d, &codes, 6, 0.95, 5, expected);
    }
}
