//! 8- and 16-bit quantisation of float32 payloads (strict profile, opt-in per deployment).
//!
//! The encoding is the reference exporter's (`cellucid.prepare_data._quantize_continuous`,
//! cellucid 0.0.9, protocol.md §12), byte for byte:
//!
//! - `min`, `max` = the smallest and largest *finite* value, as Python floats of the float32
//!   values; `(0.0, 1.0)` when no value is finite; `max := min + 1.0` when `min == max`;
//! - `scale = max_code / (max - min)` in f64 (`max_code` = 254 or 65534), then, as NumPy 2 does
//!   with a Python float against a float32 array, every step in float32:
//!   `code = trunc(clip((v - f32(min)) * f32(scale), 0, max_code))`;
//! - NaN and ±Inf become the missing sentinel (255 or 65535).
//!
//! The viewer decodes `code -> min + code * (max - min) / max_code` and the sentinel to NaN
//! (protocol-strict.md §7). The tuples of the strict manifests carry `min` and `max`.

use std::fmt;

/// Width of a quantised payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuantBits {
    /// `uint8`: codes 0..=254, 255 = missing.
    U8,
    /// `uint16`: codes 0..=65534, 65535 = missing.
    U16,
}

/// A quantisation width that is neither 8 nor 16.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantisation must be 8 or 16 bits, not `{0}`")]
pub struct BadQuantBits(pub String);

impl QuantBits {
    /// From a bit count (8 or 16).
    pub fn from_bits(bits: u64) -> Option<Self> {
        match bits {
            8 => Some(Self::U8),
            16 => Some(Self::U16),
            _ => None,
        }
    }

    /// 8 or 16 (`quantizationBits` / `quantization` in the manifests).
    pub fn bits(self) -> u8 {
        match self {
            Self::U8 => 8,
            Self::U16 => 16,
        }
    }

    /// Largest code of a value (254 / 65534).
    pub fn max_code(self) -> u16 {
        match self {
            Self::U8 => 254,
            Self::U16 => 65534,
        }
    }

    /// The missing sentinel (255 / 65535).
    pub fn missing(self) -> u16 {
        match self {
            Self::U8 => 255,
            Self::U16 => 65535,
        }
    }

    /// The manifest's `dtype`: `"uint8"` / `"uint16"`.
    pub fn dtype(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::U16 => "uint16",
        }
    }

    /// File extension and the manifest's `ext`: `"u8"` / `"u16"`.
    pub fn ext(self) -> &'static str {
        match self {
            Self::U8 => "u8",
            Self::U16 => "u16",
        }
    }

    /// Bytes per value.
    pub fn width(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::U16 => 2,
        }
    }
}

impl std::str::FromStr for QuantBits {
    type Err = BadQuantBits;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<u64>()
            .ok()
            .and_then(Self::from_bits)
            .ok_or_else(|| BadQuantBits(s.to_string()))
    }
}

impl fmt::Display for QuantBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bits())
    }
}

/// The `(min, max)` a quantised payload is encoded with (what its manifest tuple carries).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantRange {
    /// Value of code 0.
    pub min: f64,
    /// Value of code `max_code`.
    pub max: f64,
}

impl QuantRange {
    /// The reference's range from the finite min and max of the values (`None`: no finite
    /// value): `(0, 1)` when there is none, `max := min + 1` when they are equal.
    pub fn from_finite_bounds(bounds: Option<(f32, f32)>) -> Self {
        let (min, max) = match bounds {
            Some((lo, hi)) => (f64::from(lo), f64::from(hi)),
            None => (0.0, 1.0),
        };
        let max = if max == min { min + 1.0 } else { max };
        QuantRange { min, max }
    }

    /// The range of `values` (see [`QuantRange::from_finite_bounds`]).
    pub fn of(values: &[f32]) -> Self {
        Self::from_finite_bounds(finite_bounds(values))
    }

    /// The value code `code` stands for, as the viewer decodes it (NaN for the sentinel).
    pub fn decode(self, code: u16, bits: QuantBits) -> f64 {
        if code == bits.missing() {
            return f64::NAN;
        }
        self.min + f64::from(code) * (self.max - self.min) / f64::from(bits.max_code())
    }
}

/// Smallest and largest finite value (`None` when there is none). On ties between `-0.0` and
/// `0.0` the later value wins, like [`crate::model::continuous::finite_min_max`].
pub fn finite_bounds(values: &[f32]) -> Option<(f32, f32)> {
    let mut it = values.iter().copied().filter(|v| v.is_finite());
    let first = it.next()?;
    let (mut lo, mut hi) = (first, first);
    for v in it {
        if v <= lo {
            lo = v;
        }
        if v >= hi {
            hi = v;
        }
    }
    Some((lo, hi))
}

/// Quantise `values` with `range` into little-endian codes of `bits` (the reference's
/// float32 arithmetic; see the module documentation).
pub fn quantize(values: &[f32], range: QuantRange, bits: QuantBits) -> Vec<u8> {
    let max_code = f32::from(bits.max_code());
    let scale = (f64::from(bits.max_code()) / (range.max - range.min)) as f32;
    let min = range.min as f32;
    let code = |v: f32| -> u16 {
        if !v.is_finite() {
            return bits.missing();
        }
        let normalized = (v - min) * scale;
        // np.clip then astype(uint): NaN cannot occur here (finite inputs, finite scale),
        // but an infinite product clips to the largest code.
        normalized.clamp(0.0, max_code) as u16
    };
    let mut out = Vec::with_capacity(values.len() * bits.width());
    match bits {
        QuantBits::U8 => out.extend(values.iter().map(|&v| code(v) as u8)),
        QuantBits::U16 => {
            for &v in values {
                out.extend_from_slice(&code(v).to_le_bytes());
            }
        }
    }
    out
}

/// Decode a quantised payload back to values (NaN for the sentinel), as the viewer does.
pub fn dequantize(bytes: &[u8], range: QuantRange, bits: QuantBits) -> Vec<f64> {
    match bits {
        QuantBits::U8 => bytes
            .iter()
            .map(|&c| range.decode(u16::from(c), bits))
            .collect(),
        QuantBits::U16 => bytes
            .chunks_exact(2)
            .map(|c| range.decode(u16::from_le_bytes([c[0], c[1]]), bits))
            .collect(),
    }
}

/// Largest absolute difference between `values` and their quantised-then-decoded form over
/// the finite values (what a viewer loses by loading the quantised payload).
pub fn worst_case_error(values: &[f32], bits: QuantBits) -> f64 {
    let range = QuantRange::of(values);
    let decoded = dequantize(&quantize(values, range, bits), range, bits);
    values
        .iter()
        .zip(decoded)
        .filter(|(v, _)| v.is_finite())
        .map(|(&v, d)| (f64::from(v) - d).abs())
        .fold(0.0, f64::max)
}

/// Finite min/max per column of a matrix streamed as stored entries (e.g. CSR X read in row
/// blocks), with the implicit zeros of sparse columns: a column with fewer stored entries than
/// rows also contains `0.0`.
#[derive(Debug, Clone)]
pub struct ColumnBounds {
    min: Vec<f32>,
    max: Vec<f32>,
    seen: Vec<bool>,
    stored: Vec<u64>,
}

impl ColumnBounds {
    /// Bounds of `n_columns` empty columns.
    pub fn new(n_columns: usize) -> Self {
        ColumnBounds {
            min: vec![0.0; n_columns],
            max: vec![0.0; n_columns],
            seen: vec![false; n_columns],
            stored: vec![0; n_columns],
        }
    }

    /// Account for one stored cell value (duplicates of one cell already summed, as the dense
    /// column holds them); `false` when `column` is out of range.
    pub fn observe(&mut self, column: usize, value: f32) -> bool {
        let Some(stored) = self.stored.get_mut(column) else {
            return false;
        };
        *stored += 1;
        // The dense column is `0.0 + value` (a stored -0.0 reads back as 0.0).
        let value = 0.0f32 + value;
        if !value.is_finite() {
            return true;
        }
        if self.seen[column] {
            if value <= self.min[column] {
                self.min[column] = value;
            }
            if value >= self.max[column] {
                self.max[column] = value;
            }
        } else {
            self.seen[column] = true;
            self.min[column] = value;
            self.max[column] = value;
        }
        true
    }

    /// Account for a whole dense column at once.
    pub fn observe_column(&mut self, column: usize, values: &[f32]) -> bool {
        values.iter().all(|&v| self.observe(column, v))
    }

    /// The quantisation range of every column of a matrix with `n_rows` rows.
    pub fn ranges(&self, n_rows: u64) -> Vec<QuantRange> {
        (0..self.min.len())
            .map(|c| {
                let mut bounds = self.seen[c].then(|| (self.min[c], self.max[c]));
                if self.stored[c] < n_rows {
                    bounds = Some(match bounds {
                        Some((lo, hi)) => (lo.min(0.0), hi.max(0.0)),
                        None => (0.0, 0.0),
                    });
                }
                QuantRange::from_finite_bounds(bounds)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_parse_and_describe() {
        assert_eq!("8".parse::<QuantBits>(), Ok(QuantBits::U8));
        assert_eq!(" 16 ".parse::<QuantBits>(), Ok(QuantBits::U16));
        assert!("12".parse::<QuantBits>().is_err());
        assert!("x".parse::<QuantBits>().is_err());
        assert_eq!(QuantBits::U8.missing(), 255);
        assert_eq!(QuantBits::U16.max_code(), 65534);
        assert_eq!(QuantBits::U16.ext(), "u16");
        assert_eq!(QuantBits::U8.dtype(), "uint8");
    }

    #[test]
    fn ranges_follow_the_reference() {
        assert_eq!(
            QuantRange::of(&[f32::NAN, 2.0, -1.0, f32::INFINITY]),
            QuantRange {
                min: -1.0,
                max: 2.0
            }
        );
        // Constant: max := min + 1. No finite value: (0, 1).
        assert_eq!(
            QuantRange::of(&[3.0, 3.0]),
            QuantRange { min: 3.0, max: 4.0 }
        );
        assert_eq!(
            QuantRange::of(&[f32::NAN]),
            QuantRange { min: 0.0, max: 1.0 }
        );
    }

    #[test]
    fn codes_match_numpy() {
        // python (numpy 2.4): v = np.array([0, .1, .5, .999, 1, nan, inf], np.float32)
        //   _quantize_continuous(v, 8)[0] -> [0, 25, 127, 253, 254, 255, 255]
        let v = [0.0f32, 0.1, 0.5, 0.999, 1.0, f32::NAN, f32::INFINITY];
        let r = QuantRange::of(&v);
        assert_eq!(
            quantize(&v, r, QuantBits::U8),
            [0, 25, 127, 253, 254, 255, 255]
        );
        let q16 = quantize(&v, r, QuantBits::U16);
        let codes: Vec<u16> = q16
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        // 0.1 * 65534 = 6553.4 (in f32: 6553.40039) -> 6553; 0.999 -> 65468.465 -> 65468
        assert_eq!(codes, [0, 6553, 32767, 65468, 65534, 65535, 65535]);
    }

    #[test]
    fn decoding_is_within_one_step() {
        let v: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        for bits in [QuantBits::U8, QuantBits::U16] {
            let r = QuantRange::of(&v);
            let step = (r.max - r.min) / f64::from(bits.max_code());
            let err = worst_case_error(&v, bits);
            assert!(err <= step * 1.0001, "{bits}: {err} > {step}");
            assert!(err > 0.0);
        }
        let d = dequantize(&[255, 0], QuantRange { min: 1.0, max: 2.0 }, QuantBits::U8);
        assert!(d[0].is_nan());
        assert_eq!(d[1], 1.0);
    }

    #[test]
    fn column_bounds_include_implicit_zeros() {
        let mut b = ColumnBounds::new(3);
        // column 0: two stored positives of three rows (an implicit zero)
        assert!(b.observe(0, 2.0));
        assert!(b.observe(0, 5.0));
        // column 1: every row stored
        for v in [1.0, 4.0, f32::NAN] {
            assert!(b.observe(1, v));
        }
        // column 2: nothing stored
        assert!(!b.observe(3, 1.0));
        let r = b.ranges(3);
        assert_eq!(r[0], QuantRange { min: 0.0, max: 5.0 });
        assert_eq!(r[1], QuantRange { min: 1.0, max: 4.0 });
        assert_eq!(r[2], QuantRange { min: 0.0, max: 1.0 });
        // The same as quantising the dense columns.
        assert_eq!(r[0], QuantRange::of(&[2.0, 0.0, 5.0]));
        assert_eq!(r[2], QuantRange::of(&[0.0, 0.0, 0.0]));
    }
}
