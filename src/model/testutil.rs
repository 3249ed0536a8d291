//! Helpers shared by the unit tests of `crate::model` (test builds only).

/// Deterministic pseudo-random float32 values in `[-scale/2, scale/2)` (xorshift64).
///
/// The python scripts quoted in the tests use the identical generator:
/// ```text
/// M = (1 << 64) - 1
/// def xs(n, seed, scale):
///     s = seed; out = np.empty(n, dtype=np.float32); sc = np.float32(scale)
///     for i in range(n):
///         s ^= (s << 13) & M; s ^= s >> 7; s ^= (s << 17) & M
///         u = np.float32(s >> 40) / np.float32(1 << 24)
///         out[i] = np.float32(np.float32(u - np.float32(0.5)) * sc)
///     return out
/// ```
pub fn xorshift_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            (u - 0.5) * scale
        })
        .collect()
}

/// Deterministic pseudo-random integers in `0..modulus` (xorshift64, `s >> 33` mod modulus).
///
/// Python: same `s` update as [`xorshift_values`], value `(s >> 33) % modulus`.
pub fn xorshift_ints(n: usize, seed: u64, modulus: u64) -> Vec<u64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 33) % modulus
        })
        .collect()
}
