//! Content negotiation: `Accept-Encoding` with q-values, and gzip compression.

use bytes::Bytes;

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

/// gzip by the server's one policy ([`crate::cache::gzip`]: the same bytes whether a body is
/// computed here, memoised in the cache prefix or packed by `precompute`).
pub fn gzip(body: &[u8]) -> Bytes {
    crate::cache::gzip::gzip(body)
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
