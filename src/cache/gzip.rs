//! The one gzip policy of the server: every gzip body — computed on a request, memoised in the
//! cache prefix, packed by `precompute` on one machine or by a thousand Lambda tasks — is made
//! by [`gzip`], so the same artifact always has the same bytes (and a strong ETag names exactly
//! one byte sequence).
//!
//! The level depends on the body length only: level 6 (the reference's) below
//! [`FAST_FROM`], level 2 from there. Large bodies are gene columns, points, edges and vectors:
//! on a sparse gene column zlib-rs level 2 (`deflate_fast`) runs 3–6× faster than level 6 for
//! 10–25 % more bytes, and it beats level 1 (`deflate_quick`, the former setting for bodies
//! from 4 MiB) on size at about the same speed (measured in docs/precompute.md). The decoded
//! bytes are the same at every level.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

/// Bodies at least this long are compressed at [`FAST_LEVEL`].
pub const FAST_FROM: usize = 256 << 10;
/// Level of bodies shorter than [`FAST_FROM`].
pub const SMALL_LEVEL: u32 = 6;
/// Level of bodies from [`FAST_FROM`] bytes.
pub const FAST_LEVEL: u32 = 2;

/// A name of this policy, for anything that must change when the bytes would (e.g. the cache
/// fingerprint): bump it whenever a constant above or the compressor changes.
pub const POLICY_ID: &str = "gzip:zlib-rs:l6<256KiB:l2";

/// The gzip level of a body of `len` bytes.
pub fn level_for(len: usize) -> u32 {
    if len >= FAST_FROM {
        FAST_LEVEL
    } else {
        SMALL_LEVEL
    }
}

/// gzip `body` by the policy (no file name, no timestamp: deterministic).
pub fn gzip(body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() / 8 + 64);
    gzip_into(body, &mut out);
    Bytes::from(out)
}

/// gzip `body` by the policy, appending to `out` (lets a caller reuse one buffer).
pub fn gzip_into(body: &[u8], out: &mut Vec<u8>) {
    let mut encoder = GzEncoder::new(out, Compression::new(level_for(body.len())));
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    let _ = encoder.finish();
}

/// The little-endian bytes of `values` (a view on little-endian targets, a copy elsewhere).
pub fn f32_le_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trips_on_both_sides_of_the_threshold() {
        for len in [0usize, 10, FAST_FROM - 1, FAST_FROM, FAST_FROM * 3 + 7] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8 & 0x0f).collect();
            assert_eq!(gunzip(&gzip(&body)), body, "len {len}");
        }
    }

    #[test]
    fn deterministic_and_buffer_reuse_gives_the_same_bytes() {
        let values: Vec<f32> = (0..100_000)
            .map(|i| if i % 19 == 0 { i as f32 } else { 0.0 })
            .collect();
        let bytes = f32_le_bytes(&values);
        let a = gzip(&bytes);
        let mut out = vec![1, 2, 3];
        gzip_into(&bytes, &mut out);
        assert_eq!(&out[3..], &a[..]);
        assert_eq!(gzip(&bytes), a);
        // No timestamp: MTIME (bytes 4..8) is zero.
        assert_eq!(&a[4..8], &[0, 0, 0, 0]);
    }

    #[test]
    fn f32_bytes_are_little_endian() {
        let v = [1.0f32, -2.5];
        let expected: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(&f32_le_bytes(&v)[..], &expected[..]);
    }
}
