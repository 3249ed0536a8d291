//! Continuous obs field min/max (protocol §6.3, adapter `get_obs_manifest`).

/// Min and max over the finite float32 values, as Python floats (`float(valid.min())`);
/// `(0.0, 1.0)` when no value is finite.
///
/// On ties between `-0.0` and `0.0` the later value wins (NumPy's SIMD reductions may pick
/// either sign; the numeric value is the same).
pub fn finite_min_max(values: &[f32]) -> (f64, f64) {
    let mut it = values.iter().copied().filter(|v| v.is_finite());
    let Some(first) = it.next() else {
        return (0.0, 1.0);
    };
    let (mut lo, mut hi) = (first, first);
    for v in it {
        if v <= lo {
            lo = v;
        }
        if v >= hi {
            hi = v;
        }
    }
    (f64::from(lo), f64::from(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_over_finite_values() {
        // python: v = np.array([...], np.float32); valid = v[np.isfinite(v)];
        //   float(valid.min()), float(valid.max())
        let v = [
            3.5f32,
            f32::NAN,
            -1.25,
            f32::INFINITY,
            0.1,
            f32::NEG_INFINITY,
        ];
        assert_eq!(finite_min_max(&v), (-1.25, 3.5));
        let (_, hi) = finite_min_max(&[0.1f32]);
        assert_eq!(hi, 0.10000000149011612); // float(np.float32(0.1))
    }

    #[test]
    fn no_finite_values() {
        assert_eq!(finite_min_max(&[]), (0.0, 1.0));
        assert_eq!(finite_min_max(&[f32::NAN, f32::INFINITY]), (0.0, 1.0));
    }

    #[test]
    fn single_value() {
        assert_eq!(finite_min_max(&[-7.0]), (-7.0, -7.0));
    }
}
