//! Capability share links for private atlases.
//!
//! The hosted viewer cannot send headers, so the capability travels in the remote base URL as
//! a path prefix: `https://host/s/<token>/…`. A token is
//! `base64url(claims JSON) "." base64url(HMAC-SHA256(secret, claims JSON))`; the claims carry
//! an expiry (Unix seconds) and optionally the one dataset the link opens. With a secret
//! configured the [service](crate::service)'s gate answers only requests under a valid, unexpired
//! token's prefix (and, for a dataset-bound token, only that dataset); everything else is 403.
//!
//! Verification recomputes the MAC and compares it in constant time (`Mac::verify_slice`);
//! claims are parsed only after the MAC matched, so forged input never reaches the parser.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Path segment that introduces a token: `/s/<token>/…`.
pub const PREFIX: &str = "/s/";

/// Fewest secret bytes accepted (HMAC keys shorter than this are guessable).
pub const MIN_SECRET_BYTES: usize = 16;

/// Longest token accepted (a larger one is rejected before any work).
const MAX_TOKEN_CHARS: usize = 1024;

/// The HMAC key share links are signed with (held as a keyed MAC). Never printed (`Debug` is
/// redacted).
#[derive(Clone)]
pub struct ShareSecret(HmacSha256);

impl std::fmt::Debug for ShareSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareSecret(<redacted>)")
    }
}

impl ShareSecret {
    /// A secret from its bytes; at least [`MIN_SECRET_BYTES`] long.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ShareError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(ShareError::WeakSecret { len: bytes.len() });
        }
        // HMAC takes keys of any length; the error arm is for the type system only.
        <HmacSha256 as Mac>::new_from_slice(&bytes)
            .map(ShareSecret)
            .map_err(|_| ShareError::WeakSecret { len: bytes.len() })
    }

    /// The secret held by environment variable `var` (the value, trimmed, is the key).
    pub fn from_env(var: &str) -> Result<Self, ShareError> {
        let value = std::env::var(var).map_err(|_| ShareError::MissingSecret {
            var: var.to_string(),
        })?;
        Self::new(value.trim().as_bytes().to_vec()).map_err(|e| match e {
            ShareError::WeakSecret { len } => ShareError::WeakSecretIn {
                var: var.to_string(),
                len,
            },
            other => other,
        })
    }

    fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareClaims {
    /// Expiry, Unix seconds: the token is refused from this second on.
    #[serde(rename = "e")]
    pub expires: u64,
    /// The one dataset the token opens (`None`: every dataset of the server).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// Why a token, secret or request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The secret's environment variable is not set.
    #[error("share secret: environment variable {var} is not set")]
    MissingSecret {
        /// Variable name.
        var: String,
    },
    /// The secret is too short.
    #[error(
        "share secret is {len} bytes; use at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
    )]
    WeakSecret {
        /// Bytes found.
        len: usize,
    },
    /// The secret in an environment variable is too short.
    #[error(
        "share secret in {var} is {len} bytes; use at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
    )]
    WeakSecretIn {
        /// Variable name.
        var: String,
        /// Bytes found.
        len: usize,
    },
    /// The request path has no `/s/<token>/` prefix.
    #[error("a share token is required (/s/<token>/…)")]
    Missing,
    /// The token is not of the form this server issues.
    #[error("malformed share token")]
    Malformed,
    /// The signature does not match (forged or signed with another secret).
    #[error("invalid share token")]
    BadSignature,
    /// The token has expired.
    #[error("share token expired")]
    Expired,
    /// The token opens another dataset.
    #[error("share token is not valid for this dataset")]
    WrongDataset,
}

/// Seconds since the Unix epoch of `t` (0 before the epoch).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sign `claims` into a URL-safe token.
pub fn issue(secret: &ShareSecret, claims: &ShareClaims) -> String {
    // Serialising two plain fields cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let mut mac = secret.mac();
    mac.update(&payload);
    let tag = mac.finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// A token valid for `valid_for` from `now`, optionally bound to `dataset`.
pub fn issue_for(
    secret: &ShareSecret,
    now: SystemTime,
    valid_for: Duration,
    dataset: Option<&str>,
) -> String {
    let claims = ShareClaims {
        expires: unix_seconds(now).saturating_add(valid_for.as_secs()),
        dataset: dataset.map(str::to_string),
    };
    issue(secret, &claims)
}

/// Check `token`'s signature (constant time) and expiry at `now`; return its claims.
pub fn verify(
    secret: &ShareSecret,
    token: &str,
    now: SystemTime,
) -> Result<ShareClaims, ShareError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(ShareError::Malformed);
    }
    let (payload, tag) = token.split_once('.').ok_or(ShareError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| ShareError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| ShareError::Malformed)?;
    let mut mac = secret.mac();
    mac.update(&payload);
    mac.verify_slice(&tag)
        .map_err(|_| ShareError::BadSignature)?;
    // Only signed claims get here.
    let claims: ShareClaims =
        serde_json::from_slice(&payload).map_err(|_| ShareError::Malformed)?;
    if unix_seconds(now) >= claims.expires {
        return Err(ShareError::Expired);
    }
    Ok(claims)
}

/// Split a request target (`/s/<token>/rest?query`) into the token and the target below it
/// (`/rest?query`, at least `/`).
pub fn split_target(target: &str) -> Result<(&str, String), ShareError> {
    let rest = target.strip_prefix(PREFIX).ok_or(ShareError::Missing)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (token, below) = rest.split_at(end);
    if token.is_empty() {
        return Err(ShareError::Missing);
    }
    let below = if below.starts_with('/') {
        below.to_string()
    } else {
        format!("/{below}")
    };
    Ok((token, below))
}

/// Replace the token of a `/s/<token>/…` path with `<token>` for logs (a token is a bearer
/// capability and must not end up in log files).
pub fn redact(path: &str) -> std::borrow::Cow<'_, str> {
    match split_target(path) {
        Ok((_, below)) => format!("{PREFIX}<token>{below}").into(),
        Err(_) => path.into(),
    }
}

/// Parse a validity such as `7d`, `12h`, `30m`, `2w` (humantime syntax).
pub fn parse_validity(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration `{text}`: {e} (examples: 7d, 12h, 30min)"))?;
    if d.as_secs() == 0 {
        return Err(format!("duration `{text}` must be at least one second"));
    }
    Ok(d)
}

/// The viewer URL for a server at `base` with `token`:
/// `https://www.cellucid.com/?remote=<percent-encoded base>/s/<token>[&dataset=<id>]`.
pub fn viewer_url(base: &str, token: &str, dataset: Option<&str>) -> String {
    let remote = format!("{}{PREFIX}{token}", base.trim_end_matches('/'));
    let encoded: String = url::form_urlencoded::byte_serialize(remote.as_bytes()).collect();
    let mut link = format!("https://www.cellucid.com/?remote={encoded}");
    if let Some(id) = dataset {
        let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        link.push_str("&dataset=");
        link.push_str(&id);
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ShareSecret {
        ShareSecret::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    #[test]
    fn round_trip_and_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = issue_for(&secret(), now, Duration::from_secs(60), Some("pbmc"));
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        let claims = verify(&secret(), &token, now).unwrap();
        assert_eq!(claims.dataset.as_deref(), Some("pbmc"));
        assert_eq!(claims.expires, 1_000_060);
        assert_eq!(
            verify(&secret(), &token, now + Duration::from_secs(60)),
            Err(ShareError::Expired)
        );
    }

    #[test]
    fn forged_tokens_fail() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = issue_for(&secret(), now, Duration::from_secs(60), None);
        let other = ShareSecret::new(b"another secret of enough length".to_vec()).unwrap();
        assert_eq!(verify(&other, &token, now), Err(ShareError::BadSignature));
        // Claims re-signed by nobody: a longer expiry with the old tag.
        let (_, tag) = token.split_once('.').unwrap();
        let payload = URL_SAFE_NO_PAD.encode(br#"{"e":99999999999}"#);
        assert_eq!(
            verify(&secret(), &format!("{payload}.{tag}"), now),
            Err(ShareError::BadSignature)
        );
        for bad in ["", ".", "abc", "a.b.c", "!!.!!", &"a".repeat(5000)] {
            assert!(verify(&secret(), bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn weak_secrets_are_refused() {
        assert_eq!(
            ShareSecret::new(b"short".to_vec()).unwrap_err(),
            ShareError::WeakSecret { len: 5 }
        );
    }

    #[test]
    fn targets_split() {
        assert_eq!(
            split_target("/s/abc/points.bin?x=1").unwrap(),
            ("abc", "/points.bin?x=1".to_string())
        );
        assert_eq!(split_target("/s/abc").unwrap(), ("abc", "/".to_string()));
        assert_eq!(
            split_target("/s/abc?q").unwrap(),
            ("abc", "/?q".to_string())
        );
        assert_eq!(split_target("/s//x"), Err(ShareError::Missing));
        assert_eq!(split_target("/points.bin"), Err(ShareError::Missing));
        assert_eq!(redact("/s/abc/x"), "/s/<token>/x");
    }

    #[test]
    fn validity_and_url() {
        assert_eq!(
            parse_validity("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_validity("0s").is_err());
        assert!(parse_validity("soon").is_err());
        assert_eq!(
            viewer_url("https://x.example/", "t.k", Some("a b")),
            "https://www.cellucid.com/?remote=https%3A%2F%2Fx.example%2Fs%2Ft.k&dataset=a+b"
        );
    }
}
