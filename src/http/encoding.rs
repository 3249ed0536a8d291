//! Content negotiation: `Accept-Encoding` with q-values, and gzip compression.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

/// Whether an `Accept-Encoding` header value accepts gzip (RFC 9110 §12.5.3: `gzip;q=0`
/// refuses it; `*` with q > 0 accepts it unless gzip is listed explicitly).
pub fn accepts_gzip(header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    let mut gzip_q: Option<f32> = None;
    let mut star_q: Option<f32> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for param in parts {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip_q = Some(gzip_q.map_or(q, |old| old.max(q))),
            "*" => star_q = Some(q),
            _ => {}
        }
    }
    match (gzip_q, star_q) {
        (Some(q), _) => q > 0.0,
        (None, Some(q)) => q > 0.0,
        (None, None) => false,
    }
}

/// Bodies at least this large are compressed at level 1 instead of 6.
const FAST_GZIP_FROM: usize = 4 << 20;

/// gzip at level 6, like the reference; level 1 from `FAST_GZIP_FROM` (4 MiB) bytes. The large bodies
/// are float coordinates and cell indices (points, edges, vectors, dense genes of big atlases),
/// which level 6 shrinks by only a few percent more at twice the time (1M-cell `edges.dst.bin`:
/// 45 MB in, ~35 MB out either way). The decoded bytes are the same at every level.
pub fn gzip(body: &[u8]) -> Bytes {
    let level = if body.len() >= FAST_GZIP_FROM { 1 } else { 6 };
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(body.len() / 2 + 64),
        Compression::new(level),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_are_parsed() {
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("br;q=1.0, gzip;q=0.8")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("*;q=0")));
        assert!(!accepts_gzip(Some("gzip;q=0, *")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let data = b"hello hello hello hello".repeat(10);
        let compressed = gzip(&data);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }
}
