//! Embedding normalisation and vector-field scaling (protocol §5.1 / §5.7, adapter
//! `get_embedding` and `get_vector_field_binary`), bit-exact with NumPy 2 on float32.
//!
//! The reference computes, on the float32 array `raw` (n × d):
//! `mins/maxs = raw.min/max(axis=0)` (float32), `ranges = maxs - mins` (float32),
//! `max_range = float(ranges.max())`, `1.0` if `< 1e-8`, `center = (mins + maxs) / 2` (float32),
//! `scale_factor = 2.0 / max_range` (Python float), and `(raw - center) * scale_factor`:
//! under NumPy 2's NEP 50 the Python float is *weak*, so it is cast to float32 and the product
//! is computed in float32 (this differs from a float64 product in the last bit for most
//! inputs).

use crate::model::error::{ModelError, ModelResult};

/// Per-dimension normalisation parameters kept for scaling vector fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingNorm {
    /// Per-axis centre `(min + max) / 2` in float32 (zeros when normalisation is off).
    pub center: Vec<f32>,
    /// `2.0 / max_range` as a Python float (1.0 when normalisation is off).
    pub scale_factor: f64,
}

impl EmbeddingNorm {
    /// The parameters used when normalisation is off: centre 0, scale 1.
    pub fn identity(dim: usize) -> Self {
        Self {
            center: vec![0.0; dim],
            scale_factor: 1.0,
        }
    }
}

/// Number of NaN/±Inf values in `values`.
pub fn count_non_finite(values: &[f32]) -> usize {
    values.iter().filter(|v| !v.is_finite()).count()
}

/// Refuses embeddings (or vector fields) containing non-finite values.
///
/// The reference lets a NaN poison every normalised coordinate; this server must not serve
/// such data, but the decision is left to the caller.
pub fn validate_finite(values: &[f32]) -> ModelResult<()> {
    match count_non_finite(values) {
        0 => Ok(()),
        count => Err(ModelError::NonFiniteEmbedding { count }),
    }
}

fn check_shape(what: &str, values: &[f32], n_cells: usize, dim: usize) -> ModelResult<()> {
    if dim == 0 {
        return Err(ModelError::InvalidDimension { dim: 0 });
    }
    let expected = n_cells
        .checked_mul(dim)
        .ok_or_else(|| ModelError::ShapeMismatch {
            what: what.to_string(),
            expected: usize::MAX,
            actual: values.len(),
        })?;
    if values.len() != expected {
        return Err(ModelError::ShapeMismatch {
            what: what.to_string(),
            expected,
            actual: values.len(),
        });
    }
    Ok(())
}

/// `np.minimum`/`np.maximum` step: NaN propagates; on ties the later value wins (what NumPy's
/// elementwise loops do; signed zeros of a 1-D SIMD reduction may differ).
fn np_min(cur: f32, v: f32) -> f32 {
    if cur.is_nan() || v.is_nan() {
        f32::NAN
    } else if cur < v {
        cur
    } else {
        v
    }
}

fn np_max(cur: f32, v: f32) -> f32 {
    if cur.is_nan() || v.is_nan() {
        f32::NAN
    } else if cur > v {
        cur
    } else {
        v
    }
}

/// Computes the normalisation parameters of a row-major `n_cells × dim` float32 embedding.
///
/// With `normalize == false`, or `n_cells == 0` (where the reference itself fails with a
/// zero-size reduction error), returns [`EmbeddingNorm::identity`].
pub fn embedding_norm(
    raw: &[f32],
    n_cells: usize,
    dim: usize,
    normalize: bool,
) -> ModelResult<EmbeddingNorm> {
    check_shape("embedding", raw, n_cells, dim)?;
    if !normalize || n_cells == 0 {
        return Ok(EmbeddingNorm::identity(dim));
    }
    let mut mins = raw[..dim].to_vec();
    let mut maxs = raw[..dim].to_vec();
    for row in raw.chunks_exact(dim).skip(1) {
        for j in 0..dim {
            mins[j] = np_min(mins[j], row[j]);
            maxs[j] = np_max(maxs[j], row[j]);
        }
    }
    let mut max_range_f32 = f32::NEG_INFINITY;
    for j in 0..dim {
        let r = maxs[j] - mins[j];
        max_range_f32 = if j == 0 { r } else { np_max(max_range_f32, r) };
    }
    let mut max_range = f64::from(max_range_f32);
    if max_range < 1e-8 {
        max_range = 1.0;
    }
    let center = (0..dim).map(|j| (mins[j] + maxs[j]) / 2.0).collect();
    Ok(EmbeddingNorm {
        center,
        scale_factor: 2.0 / max_range,
    })
}

/// Normalises a row-major `n_cells × dim` float32 embedding in place and returns the
/// parameters (see the module docs for the exact float32 arithmetic).
pub fn normalize_embedding_in_place(
    values: &mut [f32],
    n_cells: usize,
    dim: usize,
    normalize: bool,
) -> ModelResult<EmbeddingNorm> {
    let norm = embedding_norm(values, n_cells, dim, normalize)?;
    if normalize && n_cells > 0 {
        let scale = norm.scale_factor as f32;
        for row in values.chunks_exact_mut(dim) {
            for (v, &c) in row.iter_mut().zip(&norm.center) {
                *v = (*v - c) * scale;
            }
        }
    }
    Ok(norm)
}

/// Normalised copy of a row-major `n_cells × dim` float32 embedding plus its parameters
/// (the bytes of `points_<dim>d.bin` are the little-endian encoding of the returned values).
pub fn normalize_embedding(
    raw: &[f32],
    n_cells: usize,
    dim: usize,
    normalize: bool,
) -> ModelResult<(Vec<f32>, EmbeddingNorm)> {
    let mut out = raw.to_vec();
    let norm = normalize_embedding_in_place(&mut out, n_cells, dim, normalize)?;
    Ok((out, norm))
}

/// Scales a row-major `n_cells × dim` vector field (displacements) in place into the
/// normalised space of `points_<dim>d.bin`: `raw *= scale_factor` in float32 when `normalize`
/// is on and `scale_factor != 1.0`; no centring.
pub fn scale_vector_field_in_place(
    values: &mut [f32],
    n_cells: usize,
    dim: usize,
    norm: &EmbeddingNorm,
    normalize: bool,
) -> ModelResult<()> {
    check_shape("vector field", values, n_cells, dim)?;
    if normalize && norm.scale_factor != 1.0 {
        let scale = norm.scale_factor as f32;
        for v in values.iter_mut() {
            *v *= scale;
        }
    }
    Ok(())
}

/// Scaled copy of a vector field (see [`scale_vector_field_in_place`]).
pub fn scale_vector_field(
    raw: &[f32],
    n_cells: usize,
    dim: usize,
    norm: &EmbeddingNorm,
    normalize: bool,
) -> ModelResult<Vec<f32>> {
    let mut out = raw.to_vec();
    scale_vector_field_in_place(&mut out, n_cells, dim, norm, normalize)?;
    Ok(out)
}

/// Little-endian bytes of a float32 buffer (the body of every `.f32`/`.bin` float route).
pub fn f32_le_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testutil::xorshift_values;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn numpy_neg_2d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(7*2, 11, 40.0) + np.float32(-100.0), reshaped (7,2)
        //   adapter.get_embedding(2), adapter._embedding_norm[2],
        //   vector field xs(7*2, 111, 2.0) via get_vector_field_binary  (9 of 14 values differ from a float64 product)
        let n = 7;
        let d = 2;
        let raw: Vec<f32> = xorshift_values(n * d, 11, 40.0)
            .iter()
            .map(|v| v + (-100.0f32))
            .collect();

        let (out, norm) = normalize_embedding(&raw, n, d, true).unwrap();
        assert_eq!(
            bits(&out),
            vec![
                0xbf74ca58, 0x3f7ffffb, 0x3f146bae, 0xbcc5e2cb, 0x3f74ca58, 0x3f60c836, 0xbf12e6f5,
                0xbe9d511e, 0x3f052463, 0xbf800003, 0x3f5e1352, 0xbf505376, 0xbec9a771, 0x3f2b6833
            ]
        );
        assert_eq!(bits(&norm.center), vec![0xc2d9138a, 0xc2d0f852]);
        assert_eq!(norm.scale_factor.to_bits(), 0x3fb55b63f0a810aa);
        let vec_raw = xorshift_values(n * d, 111, 2.0);
        let scaled = scale_vector_field(&vec_raw, n, d, &norm, true).unwrap();
        assert_eq!(
            bits(&scaled),
            vec![
                0xbdaadb20, 0x3d95a4ae, 0x3d14e8f1, 0xbcf53d9e, 0xbd7fcbdf, 0x3d4da175, 0xbd2ecb06,
                0x3d017367, 0x3ca06559, 0xbd675437, 0x3d112540, 0xbd947d49, 0x3cbd77b7, 0xbda01eee
            ]
        );
    }

    #[test]
    fn numpy_const_axis_3d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(6*3, 12, 5.0) + np.float32(0.0), reshaped (6,3); raw[:,1] = -7.25
        //   adapter.get_embedding(3), adapter._embedding_norm[3],
        //   vector field xs(6*3, 112, 2.0) via get_vector_field_binary  (4 of 18 values differ from a float64 product)
        let n = 6;
        let d = 3;
        let mut raw: Vec<f32> = xorshift_values(n * d, 12, 5.0)
            .iter()
            .map(|v| v + (0.0f32))
            .collect();
        for r in 0..n {
            raw[r * d + 1] = -7.25;
        }
        let (out, norm) = normalize_embedding(&raw, n, d, true).unwrap();
        assert_eq!(
            bits(&out),
            vec![
                0xbf44bf24, 0x00000000, 0x3f0228d0, 0xbf07ec3e, 0x00000000, 0xbf800000, 0x3cbe3cae,
                0x00000000, 0x3ec32a88, 0x3d30b0de, 0x00000000, 0x3f800000, 0x3ed63bc0, 0x00000000,
                0xbee56408, 0x3f44bf24, 0x00000000, 0xbe55fbb2
            ]
        );
        assert_eq!(bits(&norm.center), vec![0xbf5f1a79, 0xc0e80000, 0xbd50b1c0]);
        assert_eq!(norm.scale_factor.to_bits(), 0x3fde342033d8d66f);
        let vec_raw = xorshift_values(n * d, 112, 2.0);
        let scaled = scale_vector_field(&vec_raw, n, d, &norm, true).unwrap();
        assert_eq!(
            bits(&scaled),
            vec![
                0xbef1a102, 0xbef16b51, 0xbeb9e5aa, 0xbebe4f72, 0xbedd0a41, 0xbe462ac4, 0xbd1cf806,
                0x3c69ae83, 0xbd1bcf10, 0xbe4ec6c2, 0x3ec5d628, 0x3ebba83b, 0x3ec5a02a, 0xbe980e65,
                0x3ef167cb, 0x3ea4fb1d, 0x3e776e62, 0x3eb5328c
            ]
        );
    }

    #[test]
    fn numpy_one_d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(5*1, 13, 0.001) + np.float32(2.5), reshaped (5,1)
        //   adapter.get_embedding(1), adapter._embedding_norm[1],
        //   vector field xs(5*1, 113, 2.0) via get_vector_field_binary  (3 of 5 values differ from a float64 product)
        let n = 5;
        let d = 1;
        let raw: Vec<f32> = xorshift_values(n * d, 13, 0.001)
            .iter()
            .map(|v| v + (2.5f32))
            .collect();

        let (out, norm) = normalize_embedding(&raw, n, d, true).unwrap();
        assert_eq!(
            bits(&out),
            vec![0xbf800000, 0x3f422df9, 0xbf19191a, 0x3f800000, 0xbe375909]
        );
        assert_eq!(bits(&norm.center), vec![0x401fff61]);
        assert_eq!(norm.scale_factor.to_bits(), 0x40a0e87cb297a51e);
        let vec_raw = xorshift_values(n * d, 113, 2.0);
        let scaled = scale_vector_field(&vec_raw, n, d, &norm, true).unwrap();
        assert_eq!(
            bits(&scaled),
            vec![0xc50743e6, 0xc4ec7b3f, 0x42df6e2b, 0x44e981bd, 0x4359f4f9]
        );
    }

    #[test]
    fn numpy_all_equal_2d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(4*2, 14, 1.0) + np.float32(0.0), reshaped (4,2); raw[:] = -3.5
        //   adapter.get_embedding(2), adapter._embedding_norm[2],
        //   vector field xs(4*2, 114, 2.0) via get_vector_field_binary  (0 of 8 values differ from a float64 product)
        let n = 4;
        let d = 2;
        let mut raw: Vec<f32> = xorshift_values(n * d, 14, 1.0)
            .iter()
            .map(|v| v + (0.0f32))
            .collect();
        raw.iter_mut().for_each(|v| *v = -3.5);
        let (out, norm) = normalize_embedding(&raw, n, d, true).unwrap();
        assert_eq!(
            bits(&out),
            vec![
                0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
                0x00000000
            ]
        );
        assert_eq!(bits(&norm.center), vec![0xc0600000, 0xc0600000]);
        assert_eq!(norm.scale_factor.to_bits(), 0x4000000000000000);
        let vec_raw = xorshift_values(n * d, 114, 2.0);
        let scaled = scale_vector_field(&vec_raw, n, d, &norm, true).unwrap();
        assert_eq!(
            bits(&scaled),
            vec![
                0xc0000000, 0xbfbfc61a, 0xbfa88f06, 0xbef38d58, 0x3f1662e4, 0xbff65b12, 0x3fb99f88,
                0xbf88ce06
            ]
        );
    }

    #[test]
    fn numpy_tiny_range_2d() {
        // python (cellucid 0.0.9, numpy 2.4.6): raw = xs(4*2, 15, 1e-09) + np.float32(1.0), reshaped (4,2)
        //   adapter.get_embedding(2), adapter._embedding_norm[2],
        //   vector field xs(4*2, 115, 2.0) via get_vector_field_binary  (0 of 8 values differ from a float64 product)
        let n = 4;
        let d = 2;
        let raw: Vec<f32> = xorshift_values(n * d, 15, 1e-09)
            .iter()
            .map(|v| v + (1.0f32))
            .collect();

        let (out, norm) = normalize_embedding(&raw, n, d, true).unwrap();
        assert_eq!(
            bits(&out),
            vec![
                0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
                0x00000000
            ]
        );
        assert_eq!(bits(&norm.center), vec![0x3f800000, 0x3f800000]);
        assert_eq!(norm.scale_factor.to_bits(), 0x4000000000000000);
        let vec_raw = xorshift_values(n * d, 115, 2.0);
        let scaled = scale_vector_field(&vec_raw, n, d, &norm, true).unwrap();
        assert_eq!(
            bits(&scaled),
            vec![
                0xc0000000, 0xbf9fc69c, 0x3f429be4, 0x3ea6d500, 0xbfb8d6b4, 0x3fe4c448, 0xbcbb1d80,
                0x3ffb68c4
            ]
        );
    }

    #[test]
    fn off_path_and_identity() {
        let raw = vec![1.0f32, -2.0, 3.5, 4.0];
        let (out, norm) = normalize_embedding(&raw, 2, 2, false).unwrap();
        assert_eq!(out, raw);
        assert_eq!(norm, EmbeddingNorm::identity(2));
        let v = scale_vector_field(&raw, 2, 2, &norm, false).unwrap();
        assert_eq!(v, raw);
        // normalisation on but scale exactly 1.0 (max_range 2.0): vectors untouched
        let (_, norm) = normalize_embedding(&[0.0, 2.0], 2, 1, true).unwrap();
        assert_eq!(norm.scale_factor, 1.0);
        assert_eq!(norm.center, vec![1.0]);
        assert_eq!(
            scale_vector_field(&[0.3], 1, 1, &norm, true).unwrap(),
            vec![0.3]
        );
    }

    #[test]
    fn empty_and_bad_shapes() {
        let (out, norm) = normalize_embedding(&[], 0, 3, true).unwrap();
        assert!(out.is_empty());
        assert_eq!(norm, EmbeddingNorm::identity(3));
        assert!(matches!(
            normalize_embedding(&[1.0, 2.0, 3.0], 2, 2, true),
            Err(ModelError::ShapeMismatch {
                expected: 4,
                actual: 3,
                ..
            })
        ));
        assert!(matches!(
            normalize_embedding(&[], 0, 0, true),
            Err(ModelError::InvalidDimension { dim: 0 })
        ));
        assert!(scale_vector_field(&[1.0], 2, 1, &EmbeddingNorm::identity(1), true).is_err());
    }

    #[test]
    fn non_finite_validation() {
        assert_eq!(validate_finite(&[1.0, -2.0, 0.0]), Ok(()));
        assert_eq!(
            validate_finite(&[f32::NAN, 1.0, f32::INFINITY, f32::NEG_INFINITY]),
            Err(ModelError::NonFiniteEmbedding { count: 3 })
        );
        assert_eq!(count_non_finite(&[]), 0);
        // the reference lets NaN poison every coordinate; so does the raw arithmetic
        let (out, _) = normalize_embedding(&[1.0, f32::NAN, 3.0], 3, 1, true).unwrap();
        assert!(out.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn le_bytes() {
        assert_eq!(
            f32_le_bytes(&[1.0, -2.0]),
            vec![0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]
        );
    }
}
