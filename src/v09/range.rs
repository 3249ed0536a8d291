//! Byte-range and conditional-request semantics of the 0.9 protocol (protocol-0.9.md §1.3), as
//! pure functions: given a resource's size and strong ETag and the request's headers, decide
//! what to answer.

use http::HeaderMap;
use http::header;

/// The decision for one store-byte request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `304 Not Modified` (If-None-Match matched; checked before any Range handling).
    NotModified,
    /// `200` with the whole resource.
    Full,
    /// `206` with the inclusive byte interval `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// `416 Range Not Satisfiable` (`Content-Range: bytes */<size>`).
    Unsatisfiable,
}

impl Decision {
    /// Length of the body this decision sends for a resource of `size` bytes.
    pub fn body_len(self, size: u64) -> u64 {
        match self {
            Decision::Full => size,
            Decision::Partial { start, end } => end - start + 1,
            Decision::NotModified | Decision::Unsatisfiable => 0,
        }
    }
}

/// Whether an `If-None-Match` value matches `etag`: split on `,`, trim, drop a leading `W/`
/// (weak comparison); `*` matches anything.
pub fn if_none_match_matches(value: &str, etag: &str) -> bool {
    value.split(',').map(str::trim).any(|token| {
        let token = token.strip_prefix("W/").unwrap_or(token);
        token == "*" || token == etag
    })
}

/// Parse one `Range` value for a resource of `size` bytes. Only the exact, case-sensitive form
/// `bytes=A-B` (up to 20 digits each side, no spaces, no lists) is accepted; `None` means 416.
pub fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let digits = |s: &str| s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) || (a.is_empty() && b.is_empty()) || size == 0 {
        return None;
    }
    // Up to 20 digits can exceed u64: saturate (such a start is past any real size).
    let number = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    if a.is_empty() {
        let suffix = number(b);
        if suffix == 0 {
            return None;
        }
        return Some((size.saturating_sub(suffix), size - 1));
    }
    let start = number(a);
    let end = if b.is_empty() { size - 1 } else { number(b) };
    if start >= size || end < start {
        return None;
    }
    Some((start, end.min(size - 1)))
}

/// The §1.3 algorithm: If-None-Match (weak, before Range) → 304; more than one `Range` line →
/// 416; a present `If-Range` that is not exactly `etag` → 200 full; then the range itself.
pub fn decide(headers: &HeaderMap, size: u64, etag: &str) -> Decision {
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        // A value that is not visible ASCII cannot name our tag.
        if value.to_str().is_ok_and(|v| if_none_match_matches(v, etag)) {
            return Decision::NotModified;
        }
    }
    let mut ranges = headers.get_all(header::RANGE).iter();
    let Some(range) = ranges.next() else {
        return Decision::Full;
    };
    if ranges.next().is_some() {
        return Decision::Unsatisfiable;
    }
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        let same = if_range.to_str().is_ok_and(|v| v.trim() == etag);
        if !same {
            return Decision::Full;
        }
    }
    match range.to_str().ok().and_then(|v| parse_range(v, size)) {
        Some((start, end)) => Decision::Partial { start, end },
        None => Decision::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn range_forms() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=90-500", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-16", 307216), Some((307200, 307215)));
        assert_eq!(parse_range("bytes=-500", 100), Some((0, 99)));
        assert_eq!(parse_range("bytes=99-99", 100), Some((99, 99)));
        for bad in [
            "bytes=-",
            "bytes=0-1,4-5",
            "bytes= 0-1",
            "Bytes=0-1",
            "bytes=100-",
            "bytes=5-4",
            "bytes=-0",
            "bytes=0x1-2",
            "items=0-1",
            "bytes=0-1 ",
            "bytes=+1-2",
            "bytes=123456789012345678901-",
        ] {
            assert_eq!(parse_range(bad, 100), None, "{bad}");
        }
        assert_eq!(parse_range("bytes=0-0", 0), None);
        assert_eq!(parse_range("bytes=-1", 0), None);
        // 20 digits saturate: a start beyond the size is unsatisfiable, an end is clamped.
        assert_eq!(parse_range("bytes=99999999999999999999-", 100), None);
        assert_eq!(
            parse_range("bytes=0-99999999999999999999", 100),
            Some((0, 99))
        );
    }

    #[test]
    fn if_none_match_is_weak_and_runs_before_range() {
        let tag = "\"abc\"";
        assert!(if_none_match_matches("\"x\", W/\"abc\"", tag));
        assert!(if_none_match_matches("*", tag));
        assert!(!if_none_match_matches("\"abcd\"", tag));
        let h = headers(&[("if-none-match", "\"abc\""), ("range", "bytes=0-1")]);
        assert_eq!(decide(&h, 10, tag), Decision::NotModified);
        let h = headers(&[("if-none-match", "\"zzz\""), ("range", "bytes=0-1")]);
        assert_eq!(decide(&h, 10, tag), Decision::Partial { start: 0, end: 1 });
    }

    #[test]
    fn if_range_is_strong() {
        let tag = "\"abc\"";
        let h = headers(&[("range", "bytes=2-3"), ("if-range", " \"abc\" ")]);
        assert_eq!(decide(&h, 10, tag), Decision::Partial { start: 2, end: 3 });
        let h = headers(&[("range", "bytes=2-3"), ("if-range", "W/\"abc\"")]);
        assert_eq!(decide(&h, 10, tag), Decision::Full);
        let h = headers(&[
            ("range", "bytes=2-3"),
            ("if-range", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ]);
        assert_eq!(decide(&h, 10, tag), Decision::Full);
        // A stale If-Range wins even over a malformed range.
        let h = headers(&[("range", "bytes=9-2"), ("if-range", "\"old\"")]);
        assert_eq!(decide(&h, 10, tag), Decision::Full);
    }

    #[test]
    fn two_range_lines_are_416() {
        let h = headers(&[("range", "bytes=0-1"), ("range", "bytes=2-3")]);
        assert_eq!(decide(&h, 10, "\"a\""), Decision::Unsatisfiable);
        assert_eq!(decide(&HeaderMap::new(), 10, "\"a\""), Decision::Full);
        assert_eq!(Decision::Partial { start: 2, end: 3 }.body_len(10), 2);
        assert_eq!(Decision::Full.body_len(10), 10);
    }
}
