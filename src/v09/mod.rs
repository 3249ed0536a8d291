//! The Cellucid **0.9** protocol front-end (`shared/docs/protocol-0.9.md`): the raw AnnData
//! store served to the browser with single-range reads, strong ETags and 304s, beside the seed
//! 0.0.9 protocol.
//!
//! Both protocols come from one deployment: the seed stays at the origin root (the oldest
//! viewer drops path prefixes) and this front-end is mounted under [`BASE_PATH`] (`/v0.9`), so
//! its base URL is `<origin>/v0.9` and its routes are `/v0.9/_cellucid/health|info|datasets`
//! and `/v0.9/_cellucid/anndata/<id>.zarr/<key>` (or `<id>.h5ad`, `<id>.zarr.zip`). With several
//! datasets each also has its own base URL `<origin>/v0.9/<id>` (a portable id never starts
//! with `_`, so the two forms cannot collide).
//!
//! Layers: [`range`] (Range/If-None-Match/If-Range as pure functions), [`keys`] (key and route
//! validation), [`documents`] (JSON documents, portable ids, Python JSON formatting),
//! [`host`] (the 421 rule), [`consolidate`] (synthesised consolidated metadata), [`source`]
//! (one dataset over object storage: metadata, one ranged GET per range), and [`Frontend`]
//! (routing and responses).

pub mod consolidate;
pub mod documents;
pub mod host;
pub mod keys;
pub mod range;
pub mod ready;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::cache::ArtifactCache;
use crate::catalog::Catalog;
use crate::http::{CorsPolicy, ServerIdentity};
use documents::{DatasetEntry, StoreKind, python_json};
use host::HostCheck;
use keys::{AnnDataRoute, is_valid_store_key, parse_anndata_route};
use range::{Decision, decide};
use source::{ByteStream, Lookup, ObjectInfo, Source, SourceError, SourceLocation};

/// Where the 0.9 front-end is mounted on the origin.
pub const BASE_PATH: &str = "/v0.9";

/// Whether a request path (raw, before decoding) belongs to the 0.9 front-end.
pub fn is_v09_path(path: &str) -> bool {
    path == BASE_PATH || path.starts_with("/v0.9/")
}

/// The base URL of the 0.9 protocol for a server reachable at `origin` (no trailing `/`).
pub fn base_url(origin: &str) -> String {
    format!("{}{BASE_PATH}", origin.trim_end_matches('/'))
}

/// The App of a buffered transport (the Lambda): store-byte bodies above `max_body_bytes` are
/// redirected to a presigned URL of the store object itself (S3), else answered 413, before
/// anything is read. HEAD, 304 and 416 are always answered by the function (§5.1).
pub fn for_buffered_transport(app: crate::http::App, max_body_bytes: usize) -> crate::http::App {
    let Some(frontend) = app.protocol_09() else {
        return app;
    };
    let config = FrontendConfig {
        max_inline_body: Some(max_body_bytes as u64),
        ..frontend.config().clone()
    };
    let frontend = frontend.with_config(config);
    app.with_protocol_09(frontend)
}

/// Settings of the front-end.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// CORS allow-list (the reference's by default).
    pub cors: CorsPolicy,
    /// The Host rule (421), for a local server bound to loopback.
    pub host_check: Option<HostCheck>,
    /// `/_cellucid/info` host and port (a transport's [`ServerIdentity`] extension wins).
    pub identity: ServerIdentity,
    /// Serve the notebook-channel `/_cellucid/protocol` document (off: 404, as a data-only
    /// server has no channel; §2.3).
    pub protocol_document: bool,
    /// Largest store-byte body answered inline; larger GETs are redirected to a presigned URL
    /// of the object when the backend can sign (S3), else answered 413. `None`: no limit
    /// (a streaming transport).
    pub max_inline_body: Option<u64>,
    /// Lifetime of presigned redirect URLs.
    pub presign_ttl: Duration,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            cors: CorsPolicy::default(),
            host_check: None,
            identity: ServerIdentity {
                host: "127.0.0.1".into(),
                port: 8765,
            },
            protocol_document: false,
            max_inline_body: None,
            presign_ttl: Duration::from_secs(3600),
        }
    }
}

/// A response body: buffered bytes, or a stream of known length from object storage.
pub enum Body {
    /// Nothing (HEAD, 304, redirects).
    Empty,
    /// In memory (documents, generated metadata, messages).
    Bytes(Bytes),
    /// Streamed from one ranged GET.
    Stream(ByteStream),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes(b) => write!(f, "Bytes({})", b.len()),
            Body::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl Body {
    /// Collect the body in memory (a transport that cannot stream). A stream that fails or
    /// ends short yields `Err`; the transport must then not answer with a short body.
    pub async fn collect(self) -> Result<Bytes, object_store::Error> {
        match self {
            Body::Empty => Ok(Bytes::new()),
            Body::Bytes(b) => Ok(b),
            Body::Stream(mut stream) => {
                let mut out = BytesMut::new();
                while let Some(chunk) = stream.next().await {
                    out.extend_from_slice(&chunk?);
                }
                Ok(out.freeze())
            }
        }
    }
}

/// Error of a streamed body (the connection is closed: never a short answer).
pub type BodyError = object_store::Error;

/// A [`Body`] as a hyper body: bytes in one frame, a store stream frame by frame.
pub fn hyper_body(body: Body) -> http_body_util::combinators::UnsyncBoxBody<Bytes, BodyError> {
    use http_body_util::BodyExt;
    match body {
        Body::Empty => http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
        Body::Bytes(b) => http_body_util::Full::new(b)
            .map_err(|never| match never {})
            .boxed_unsync(),
        Body::Stream(stream) => {
            http_body_util::StreamBody::new(stream.map(|r| r.map(hyper::body::Frame::data)))
                .boxed_unsync()
        }
    }
}

/// The 0.9 front-end: one or more datasets, each a [`Source`].
#[derive(Debug)]
pub struct Frontend {
    sources: Vec<Arc<Source>>,
    config: FrontendConfig,
}

impl Frontend {
    /// A front-end over `sources` (at least one; the first is served at the base URL).
    pub fn new(sources: Vec<Arc<Source>>, config: FrontendConfig) -> Option<Self> {
        if sources.is_empty() {
            return None;
        }
        Some(Frontend { sources, config })
    }

    /// The seed catalogue's Zarr folders served as 0.9 datasets. Ids: the seed's explicit
    /// `dataset_id` when portable, else a portable id derived from the seed id.
    /// `cache` + `fingerprint(id)` memoise synthesised metadata in the cache prefix.
    pub fn from_catalog(
        catalog: &Catalog,
        cache: Option<&ArtifactCache>,
        fingerprint: impl Fn(&str) -> Option<String>,
        config: FrontendConfig,
    ) -> Option<Self> {
        let sources = catalog
            .datasets()
            .iter()
            .map(|ds| {
                let location = SourceLocation::from_location(
                    ds.store().location().clone(),
                    StoreKind::ZarrFolder,
                );
                let explicit = ds
                    .options()
                    .dataset_id
                    .as_deref()
                    .filter(|id| documents::is_portable_id(id));
                let id = explicit
                    .map(str::to_string)
                    .unwrap_or_else(|| documents::portable_id_from(ds.id()));
                let name = documents::display_name_from(ds.name(), &id);
                let cache = cache.and_then(|c| fingerprint(ds.id()).map(|fp| (c.clone(), fp)));
                Arc::new(Source::new(
                    id,
                    name,
                    location,
                    documents::Counts {
                        n_cells: Some(ds.n_cells()),
                        n_genes: Some(ds.n_genes()),
                    },
                    cache,
                ))
            })
            .collect();
        Self::new(sources, config)
    }

    /// The same datasets with another configuration.
    pub fn with_config(&self, config: FrontendConfig) -> Self {
        Frontend {
            sources: self.sources.clone(),
            config,
        }
    }

    /// The datasets served.
    pub fn sources(&self) -> &[Arc<Source>] {
        &self.sources
    }

    /// The configuration.
    pub fn config(&self) -> &FrontendConfig {
        &self.config
    }

    /// Base paths (relative to the origin) at which datasets are served: `/v0.9` for the first,
    /// and `/v0.9/<id>` for each when there are several.
    pub fn base_paths(&self) -> Vec<(String, String)> {
        let mut out = vec![(self.sources[0].id.clone(), BASE_PATH.to_string())];
        if self.sources.len() > 1 {
            for s in &self.sources {
                out.push((s.id.clone(), format!("{BASE_PATH}/{}", s.id)));
            }
        }
        out
    }

    /// Answer a request whose path is under [`BASE_PATH`], buffering the body (the [`App`]'s
    /// transports). Common headers (CORS, Cache-Control) included.
    ///
    /// [`App`]: crate::http::App
    pub async fn handle_buffered<B>(&self, request: &Request<B>) -> Response<Bytes> {
        let response = self.handle(request).await;
        let (mut parts, body) = response.into_parts();
        let bytes = match body.collect().await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(target: "cellucid_edge::v09", "store read failed mid-body: {e}");
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The data store failed while reading; retry",
                );
                let origin = origin_of(request.headers());
                self.common_headers(r.headers_mut(), origin);
                parts.status = r.status();
                parts.headers = r.headers().clone();
                return Response::from_parts(parts, r.into_body());
            }
        };
        Response::from_parts(parts, bytes)
    }

    /// Answer a request whose path is under [`BASE_PATH`] (streaming body).
    pub async fn handle<B>(&self, request: &Request<B>) -> Response<Body> {
        let mut response = self.dispatch(request).await;
        self.common_headers(response.headers_mut(), origin_of(request.headers()));
        if request.method() == Method::HEAD {
            *response.body_mut() = Body::Empty;
        }
        response
    }

    fn common_headers(&self, headers: &mut HeaderMap, origin: Option<&str>) {
        if let Some(origin) = origin
            && self.config.cors.allows(origin)
            && let Ok(v) = HeaderValue::from_str(origin)
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        } else if self.config.cors.allows_any() {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type, Range"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "Accept-Ranges, Content-Encoding, Content-Length, Content-Range, ETag",
            ),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }

    async fn dispatch<B>(&self, request: &Request<B>) -> Response<Body> {
        if let Some(check) = &self.config.host_check
            && !check.allows(request.headers())
        {
            tracing::warn!(
                target: "cellucid_edge::v09",
                host = ?request.headers().get_all(header::HOST).iter().collect::<Vec<_>>(),
                "Host header does not name this server (421)"
            );
            let mut r = text(
                StatusCode::MISDIRECTED_REQUEST,
                "Host header does not name this server",
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r.map(Body::Bytes);
        }
        match *request.method() {
            Method::GET | Method::HEAD => {}
            Method::OPTIONS => return empty(StatusCode::NO_CONTENT),
            Method::POST => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return r.map(Body::Bytes);
            }
            _ => {
                let mut r = text(StatusCode::NOT_IMPLEMENTED, "Unsupported method");
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return r.map(Body::Bytes);
            }
        }
        let raw = request.uri().path();
        let decoded = match percent_encoding::percent_decode_str(raw).decode_utf8() {
            Ok(p) => p.into_owned(),
            Err(_) => return not_found(raw),
        };
        let Some(rest) = decoded.strip_prefix(BASE_PATH) else {
            return not_found(&decoded);
        };
        let rest = rest.trim_start_matches('/');
        // `/v0.9/<id>/…` (a dataset's own base URL) or `/v0.9/…` (the first dataset).
        let (source, route) = match rest.split_once('/') {
            Some((first, tail)) if !first.starts_with('_') => {
                match self.sources.iter().find(|s| s.id == first) {
                    Some(s) => (s, tail.trim_start_matches('/')),
                    None => return not_found(&decoded),
                }
            }
            _ => (&self.sources[0], rest),
        };
        // A share token bound to one dataset opens only that one (like the seed protocol's).
        if let Some(refusal) = crate::http::wrong_dataset_refusal(request, &source.id) {
            return refusal.map(Body::Bytes);
        }
        let identity = request
            .extensions()
            .get::<ServerIdentity>()
            .unwrap_or(&self.config.identity);
        match route {
            "" | "index.html" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cellucid viewer UI unavailable",
            )
            .map(Body::Bytes),
            "_cellucid/health" => json_response(&documents::health_document(
                source.location.kind,
                source.counts,
            )),
            "_cellucid/info" => json_response(&documents::info_document(
                source.location.kind,
                source.counts,
                &identity.host,
                identity.port,
            )),
            "_cellucid/protocol" if self.config.protocol_document => {
                json_response(&documents::protocol_document())
            }
            "_cellucid/datasets" => match source.file_size().await {
                Ok(size) => json_response(&documents::datasets_document(&[DatasetEntry {
                    id: &source.id,
                    name: &source.name,
                    kind: source.location.kind,
                    size,
                }])),
                Err(e) => source_error(&e),
            },
            _ => match route.strip_prefix("_cellucid/anndata/") {
                Some(rest) => self.anndata(request, source, rest, &decoded).await,
                None => not_found(&decoded),
            },
        }
    }

    async fn anndata<B>(
        &self,
        request: &Request<B>,
        source: &Source,
        rest: &str,
        shown: &str,
    ) -> Response<Body> {
        let kind = source.location.kind;
        let key = match (parse_anndata_route(rest), kind) {
            (Some(AnnDataRoute::H5ad(id)), StoreKind::H5ad)
            | (Some(AnnDataRoute::ZarrZip(id)), StoreKind::ZarrZip)
                if id == source.id =>
            {
                None
            }
            (Some(AnnDataRoute::ZarrKey(id, key)), StoreKind::ZarrFolder) if id == source.id => {
                if !is_valid_store_key(key) {
                    return not_found(shown);
                }
                Some(key)
            }
            _ => return not_found(shown),
        };
        // HEAD and revalidations read current metadata; plain reads may use the memo, since
        // their GET carries If-Match.
        let fresh = request.method() == Method::HEAD
            || request.headers().contains_key(header::IF_NONE_MATCH);
        // An object that changes between its metadata and its GET is looked up again.
        for attempt in 0..3 {
            let fresh = fresh || attempt > 0;
            let lookup =
                match key {
                    Some(key) => source.lookup_key(key, fresh).await,
                    None => source
                        .head_with(&source.location.path, fresh)
                        .await
                        .map(|info| match info {
                            Some(info) => Lookup::Object(source.location.path.clone(), info),
                            None => Lookup::Absent,
                        }),
                };
            let lookup = match lookup {
                Ok(l) => l,
                Err(e) => return source_error(&e),
            };
            let (path, info) = match lookup {
                Lookup::Absent => {
                    return match key {
                        Some(key) => text(
                            StatusCode::NOT_FOUND,
                            &format!("No key '{key}' in the store"),
                        )
                        .map(Body::Bytes),
                        None => not_found(shown),
                    };
                }
                Lookup::Generated(bytes, info) => {
                    let decision = decide(request.headers(), info.size, &info.etag);
                    let body = match decision {
                        Decision::Full => Body::Bytes(bytes),
                        Decision::Partial { start, end } => {
                            // Bounds come from `decide`, within the generated bytes.
                            Body::Bytes(bytes.slice(start as usize..=end as usize))
                        }
                        _ => Body::Empty,
                    };
                    return bytes_response(decision, &info, body);
                }
                Lookup::Object(path, info) => (path, info),
            };
            let decision = decide(request.headers(), info.size, &info.etag);
            let range = match decision {
                Decision::Full => None,
                Decision::Partial { start, end } => Some((start, end)),
                Decision::NotModified | Decision::Unsatisfiable => {
                    return bytes_response(decision, &info, Body::Empty);
                }
            };
            if request.method() == Method::HEAD {
                return bytes_response(decision, &info, Body::Empty);
            }
            if let Some(max) = self.config.max_inline_body
                && decision.body_len(info.size) > max
            {
                return self.redirect(source, &path, &info, decision).await;
            }
            match source.get_range(&path, &info, range).await {
                Ok(Some(stream)) => return bytes_response(decision, &info, Body::Stream(stream)),
                Ok(None) => continue,
                Err(e) => return source_error(&e),
            }
        }
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The object keeps changing; retry",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r.map(Body::Bytes)
    }

    /// A body too large for the transport: `307` to a presigned GET of the store object itself
    /// (S3 serves the same bytes, range and ETag), or `413` when the backend cannot sign.
    async fn redirect(
        &self,
        source: &Source,
        path: &object_store::path::Path,
        info: &ObjectInfo,
        decision: Decision,
    ) -> Response<Body> {
        if let Some(signer) = &source.location.signer {
            let options = object_store::signer::SignedUrlOptions::new().with_query([
                ("response-content-type", "application/octet-stream"),
                ("response-cache-control", "no-cache"),
            ]);
            match signer
                .signed_url_opts(http::Method::GET, path, self.config.presign_ttl, &options)
                .await
            {
                Ok(url) => {
                    let mut r = empty(StatusCode::TEMPORARY_REDIRECT);
                    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    if let Ok(v) = HeaderValue::from_str(&info.etag) {
                        r.headers_mut().insert(header::ETAG, v);
                    }
                    r.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                    return r;
                }
                Err(e) => {
                    tracing::warn!(target: "cellucid_edge::v09", "cannot presign {path}: {e}");
                }
            }
        }
        let message = format!(
            "A body of {} bytes is larger than this function can return ({} bytes), and the store \
             cannot presign a URL; request smaller ranges",
            decision.body_len(info.size),
            self.config.max_inline_body.unwrap_or_default()
        );
        text(StatusCode::PAYLOAD_TOO_LARGE, &message).map(Body::Bytes)
    }
}

fn origin_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = status;
    r
}

fn text(status: StatusCode, message: &str) -> Response<Bytes> {
    let body = Bytes::from(message.to_string());
    let mut r = Response::new(body.clone());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}

fn not_found(path: &str) -> Response<Body> {
    text(StatusCode::NOT_FOUND, &format!("Not found: {path}")).map(Body::Bytes)
}

fn json_response(value: &serde_json::Value) -> Response<Body> {
    let body = Bytes::from(python_json(value));
    let mut r = Response::new(Body::Bytes(body.clone()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}

fn source_error(error: &SourceError) -> Response<Body> {
    tracing::warn!(target: "cellucid_edge::v09", "store failure: {error}");
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "The data store is unavailable; retry shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r.map(Body::Bytes)
}

/// The §1.3 responses: 304 (ETag only), 416 (text, `bytes */size`), 200/206 octet-stream.
fn bytes_response(decision: Decision, info: &ObjectInfo, body: Body) -> Response<Body> {
    let mut r = match decision {
        Decision::NotModified => empty(StatusCode::NOT_MODIFIED),
        Decision::Unsatisfiable => {
            let mut r = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Requested byte range is not satisfiable",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return r.map(Body::Bytes);
        }
        Decision::Full | Decision::Partial { .. } => {
            let mut r = Response::new(body);
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(decision.body_len(info.size)),
            );
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Decision::Partial { start, end } = decision {
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{}", info.size))
                {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            r
        }
    };
    if let Ok(v) = HeaderValue::from_str(&info.etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// Configure the 0.9 front-end of a local server: the Host rule, and optionally another store
/// for `/v0.9` (`ready`: a Cellucid-ready copy, an `.h5ad` or a `.zarr.zip` of the same atlas),
/// which keeps the id and name of the catalogue's first atlas. The store is checked at start-up
/// (its size read, or its consolidated metadata synthesised), as cellucid 0.9.5 does.
pub async fn configure_local(
    app: crate::http::App,
    ready: Option<&str>,
    host_check: Option<HostCheck>,
) -> Result<crate::http::App, SourceError> {
    let Some(frontend) = app.protocol_09() else {
        return Ok(app);
    };
    let config = FrontendConfig {
        host_check,
        ..frontend.config().clone()
    };
    let frontend = match ready {
        None => frontend.with_config(config),
        Some(url) => {
            let first = &frontend.sources()[0];
            let location = SourceLocation::open(url)?;
            let counts = if location.kind == StoreKind::ZarrFolder {
                first.counts
            } else {
                documents::Counts::default()
            };
            let source = Source::new(first.id.clone(), first.name.clone(), location, counts, None);
            source.file_size().await?;
            if source.location.kind == StoreKind::ZarrFolder {
                source.synthesised().await?;
            }
            Frontend {
                sources: vec![Arc::new(source)],
                config,
            }
        }
    };
    Ok(app.with_protocol_09(frontend))
}
