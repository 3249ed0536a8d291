//! Building responses: status + text/JSON bodies, the 503 of a store that failed or was too
//! slow, the 403 of the share gate, and the seed protocol's common headers.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::cors::CorsPolicy;
use crate::service::Body;

/// How the server presents itself in `/_cellucid/info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// Host the server is bound to / reached at.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Set `Content-Type` and `Content-Length`.
pub fn set_len_and_type<B>(r: &mut Response<B>, content_type: &'static str, len: u64) {
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// A response without a body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// A `text/plain` response.
pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    let body = Bytes::from(message.to_string());
    let len = body.len() as u64;
    let mut r = Response::new(Body::bytes(body));
    *r.status_mut() = status;
    set_len_and_type(&mut r, "text/plain", len);
    r
}

/// A `200` JSON response of `bytes`.
pub fn json_bytes(bytes: Bytes) -> Response<Body> {
    let len = bytes.len() as u64;
    let mut r = Response::new(Body::bytes(bytes));
    set_len_and_type(&mut r, "application/json", len);
    r
}

/// `503` + `Retry-After: 1`, never stored by caches: the store failed or was too slow, and the
/// next request may well succeed.
pub fn retry_later(message: &str) -> Response<Body> {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The 503 of a request that outlived its deadline.
pub fn timed_out(deadline_ms: u128) -> Response<Body> {
    tracing::warn!(
        target: "cellucid_edge::http",
        deadline_ms = deadline_ms as u64,
        "request deadline exceeded (slow or hung store)"
    );
    retry_later("The data store did not answer in time; retry shortly")
}

/// A `403` that says why (share tokens), never cached.
pub fn forbidden(reason: &impl std::fmt::Display) -> Response<Body> {
    let mut r = text(StatusCode::FORBIDDEN, &format!("Forbidden: {reason}"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The headers every seed-protocol response carries (CORS echo, Vary, allowed methods and
/// headers, exposed headers, default `Cache-Control: no-cache`).
pub fn apply_common_headers(cors: &CorsPolicy, headers: &mut HeaderMap, origin: Option<&str>) {
    if cors.allows_any() {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else if let Some(origin) = origin
        && cors.allows(origin)
        && let Ok(v) = HeaderValue::from_str(origin)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Origin, Accept-Encoding"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Range, If-None-Match"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "Content-Length, Content-Encoding, Content-Range, ETag, Server-Timing",
        ),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
}
