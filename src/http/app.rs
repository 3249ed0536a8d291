//! [`App`]: routes a request to an atlas artifact and builds the response with the reference's
//! headers, gzip negotiation, strong ETags and per-request read metering.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::cors::CorsPolicy;
use super::encoding::{accepts_gzip, gzip};
use crate::anndata::MatrixMeta;
use crate::cache::precompute::{PrecomputeOptions, build_gene_pack_on_demand};
use crate::cache::{ArtifactCache, GenePack, fingerprint};
use crate::catalog::Catalog;
use crate::dataset::{Dataset, DatasetError};
use crate::protocol::strict::{self, StrictTarget};
use crate::protocol::{Artifact, ArtifactKind, Route, decode_path, parse_route, resolve_artifact};
use crate::share::{self, ShareError, ShareSecret};
use crate::store::ReadMetrics;
use crate::store::zarr_adapter_reads::REQUEST_READS;

/// How the server presents itself in `/_cellucid/info`.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// Host the server is bound to / reached at.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Where a request path leads (see [`App::target`]).
enum Target<'a> {
    /// `/_cellucid/*`.
    Control(Route),
    /// An artifact of one atlas.
    Artifact(&'a Arc<Dataset>, Route),
}

/// The dataset a verified share token is bound to (`None`: every dataset), attached by
/// [`App::handle`] to the request it passes on.
#[derive(Debug, Clone)]
struct ShareScope(Option<String>);

/// Why a request path leads nowhere.
enum Miss {
    /// Longer than the protocol allows (414).
    TooLong,
    /// Not a decodable path (400), with the reason.
    BadPath(String),
    /// No such route, atlas or dataset prefix (404).
    NotFound,
    /// The share token is bound to another dataset (403).
    WrongDataset,
}

impl Miss {
    fn response(&self) -> Response<Bytes> {
        match self {
            Miss::TooLong => text(StatusCode::URI_TOO_LONG, "Request path too long"),
            Miss::BadPath(reason) => text(StatusCode::BAD_REQUEST, reason),
            Miss::NotFound => text(StatusCode::NOT_FOUND, "Not found"),
            Miss::WrongDataset => forbidden(&ShareError::WrongDataset),
        }
    }
}

/// Why a large artifact could not be handed out as a presigned URL.
#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    /// The artifact itself could not be produced.
    #[error("artifact unavailable: {0}")]
    Artifact(Arc<DatasetError>),
    /// The cache prefix could not be read or written.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

impl PresignError {
    /// The response a client should get for this failure.
    pub fn response(&self) -> Response<Bytes> {
        match self {
            PresignError::Artifact(e) => error_response(e),
            PresignError::Cache(e) => {
                tracing::warn!(target: "cellucid_edge::http", "large artifact not staged in the cache: {e}");
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The cache prefix is temporarily unavailable; retry shortly",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        }
    }
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// CORS allow-list.
    pub cors: CorsPolicy,
    /// Bytes of rendered artifacts kept in memory.
    pub memory_cache_bytes: u64,
    /// The cache prefix (derived artifacts memoised on object storage), if any.
    pub cache: Option<ArtifactCache>,
    /// `/_cellucid/info` host and port.
    pub identity: ServerIdentity,
    /// Share-link secret: when set, every request must carry a valid `/s/<token>/` prefix
    /// (see [`crate::share`]); anything else is answered 403.
    pub share: Option<ShareSecret>,
    /// Longest time one request may take; past it (a slow or hung store) the client gets a
    /// 503 with `Retry-After` and nothing is cached.
    pub request_timeout: Duration,
    /// With a cache prefix and no gene pack in it: build the pack in the background on the
    /// first gene request when X is CSR and small enough to scan (at most the dataset's
    /// `csr_scan_max_nnz`), so X is transposed once instead of scanned per gene. Genes are
    /// served by scanning until the pack is complete. Off for the Lambda (a frozen sandbox
    /// cannot run background work; run `precompute`).
    pub gene_pack_on_demand: bool,
    /// The strict profile under `/strict` (#14): e.g. quantised payloads.
    pub strict: crate::protocol::strict::StrictConfig,
}

/// Default [`AppConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            cors: CorsPolicy::default(),
            memory_cache_bytes: 256 << 20,
            cache: None,
            identity: ServerIdentity {
                host: "127.0.0.1".into(),
                port: 8765,
            },
            share: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            gene_pack_on_demand: false,
            strict: crate::protocol::strict::StrictConfig::default(),
        }
    }
}

/// A rendered artifact: its gzip body (what is stored and usually sent), the identity body when
/// at hand, and the ETag digest (a function of the cache fingerprint and the artifact, so it
/// never changes for the same source data).
#[derive(Debug)]
struct Rendered {
    gzipped: Bytes,
    body: Option<Bytes>,
    digest: String,
}

impl Rendered {
    fn weight(&self) -> u32 {
        let body = self.body.as_ref().map_or(0, Bytes::len);
        u32::try_from(self.gzipped.len() + body + 64).unwrap_or(u32::MAX)
    }

    /// The uncompressed body (inflated on demand when only the gzip form is held).
    fn identity(&self) -> Result<Bytes, DatasetError> {
        if let Some(body) = &self.body {
            return Ok(body.clone());
        }
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&self.gzipped[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                DatasetError::Unsupported(format!("cached artifact is not valid gzip: {e}"))
            })?;
        Ok(Bytes::from(out))
    }
}

fn etag_digest(fingerprint: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(fingerprint.as_bytes());
    hasher.update(b"\0");
    hasher.update(key.as_bytes());
    hex::encode(&hasher.finalize()[..12])
}

/// Per-atlas cache state: fingerprint and the gene pack index (loaded once per process; a
/// missing pack is looked up again after a minute, so a precompute run is picked up).
#[derive(Debug)]
struct AtlasCacheState {
    fingerprint: String,
    gene_pack: tokio::sync::Mutex<Option<(Instant, Option<Arc<GenePack>>)>>,
    /// State of an on-demand pack build (`PACK_BUILD_*`).
    pack_build: Arc<AtomicU8>,
}

/// No on-demand pack build was started by this process.
const PACK_BUILD_IDLE: u8 = 0;
/// A build is running in the background.
const PACK_BUILD_RUNNING: u8 = 1;
/// The build finished: the pack index is to be loaded.
const PACK_BUILD_DONE: u8 = 2;
/// The build failed or its result was loaded: not started again by this process.
const PACK_BUILD_SETTLED: u8 = 3;

const GENE_PACK_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Largest computed body also kept uncompressed in the in-memory LRU.
const KEEP_IDENTITY_BODY_MAX: usize = 64 << 10;

/// Memory of the dense gene blocks of an on-demand pack build (one job).
const ON_DEMAND_PACK_MEMORY: u64 = 128 << 20;

/// The application: a catalogue plus the HTTP rules around it.
pub struct App {
    catalog: Catalog,
    config: AppConfig,
    rendered: moka::future::Cache<(String, Artifact), Arc<Rendered>>,
    atlases: std::collections::HashMap<String, AtlasCacheState>,
    /// The 0.9 protocol front-end under `/v0.9` (see [`crate::v09`]).
    v09: Option<Arc<crate::v09::Frontend>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("config", &self.config).finish()
    }
}

/// How an artifact was obtained (reported in `Server-Timing`).
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// In-process LRU.
    Memory,
    /// One GET of the cache prefix.
    Cache,
    /// Computed from the source store (milliseconds spent computing and compressing).
    Computed(f64),
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Memory => "memory",
            Outcome::Cache => "cache",
            Outcome::Computed(_) => "computed",
        }
    }
}

struct Ctx<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
}

impl App {
    /// Build an app over `catalog`.
    pub fn new(catalog: Catalog, config: AppConfig) -> Self {
        let rendered = moka::future::Cache::builder()
            .max_capacity(config.memory_cache_bytes)
            .weigher(|_k: &(String, Artifact), v: &Arc<Rendered>| v.weight())
            .build();
        let atlases: std::collections::HashMap<String, AtlasCacheState> = catalog
            .datasets()
            .iter()
            .map(|d| {
                (
                    d.id().to_string(),
                    AtlasCacheState {
                        fingerprint: fingerprint(d),
                        gene_pack: tokio::sync::Mutex::new(None),
                        pack_build: Arc::new(AtomicU8::new(PACK_BUILD_IDLE)),
                    },
                )
            })
            .collect();
        let v09 = crate::v09::Frontend::from_catalog(
            &catalog,
            config.cache.as_ref(),
            |id| {
                atlases
                    .get(id)
                    .map(|a: &AtlasCacheState| a.fingerprint.clone())
            },
            crate::v09::FrontendConfig {
                cors: config.cors.clone(),
                identity: config.identity.clone(),
                ..crate::v09::FrontendConfig::default()
            },
        )
        .map(Arc::new);
        App {
            catalog,
            config,
            rendered,
            atlases,
            v09,
        }
    }

    /// Replace the 0.9 front-end (by default the catalogue's Zarr folders under `/v0.9`).
    pub fn with_protocol_09(mut self, frontend: crate::v09::Frontend) -> Self {
        self.v09 = Some(Arc::new(frontend));
        self
    }

    /// The 0.9 front-end mounted under `/v0.9`, if any.
    pub fn protocol_09(&self) -> Option<&Arc<crate::v09::Frontend>> {
        self.v09.as_ref()
    }

    /// The catalogue served.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The configuration.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// Answer one request. Never panics on input; internal failures become a 500 without
    /// details (they go to the log).
    ///
    /// A transport may attach a [`ServerIdentity`] request extension: `/_cellucid/info` then
    /// reports it instead of [`AppConfig::identity`] (the Lambda adapter does, from the
    /// request's `Host`, since behind a gateway the bound address means nothing to a client).
    pub async fn handle<B>(&self, request: &Request<B>) -> Response<Bytes> {
        if self.config.share.is_none() {
            return self.handle_gated(request).await;
        }
        // Private atlas: every path must start with `/s/<token>/`; what follows is served as
        // if it were the whole path (both protocols), bound to the token's dataset if any.
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let refused = match self.share_gate(target) {
            Ok((below, scope)) => match Request::builder()
                .method(request.method().clone())
                .version(request.version())
                .uri(below.as_ref())
                .body(())
            {
                Ok(mut inner) => {
                    *inner.headers_mut() = request.headers().clone();
                    if let Some(identity) = request.extensions().get::<ServerIdentity>() {
                        inner.extensions_mut().insert(identity.clone());
                    }
                    inner.extensions_mut().insert(ShareScope(scope));
                    return self.handle_gated(&inner).await;
                }
                Err(_) => text(StatusCode::BAD_REQUEST, "Invalid request path"),
            },
            Err(refused) => forbidden(&refused),
        };
        let mut response = refused;
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        self.add_common_headers(response.headers_mut(), origin);
        tracing::info!(
            target: "cellucid_edge::http",
            method = %request.method(),
            path = %share::redact(request.uri().path()),
            status = response.status().as_u16(),
            "request refused by the share gate"
        );
        if request.method() == Method::HEAD {
            *response.body_mut() = Bytes::new();
        }
        response
    }

    /// [`handle`](Self::handle) once the share gate (if any) has passed.
    async fn handle_gated<B>(&self, request: &Request<B>) -> Response<Bytes> {
        // The 0.9 protocol lives under `/v0.9`: its own headers, no gzip, no seed routes.
        if let Some(v09) = &self.v09
            && crate::v09::is_v09_path(request.uri().path())
        {
            return v09.handle_buffered(request).await;
        }
        let started = Instant::now();
        let reads = Arc::new(ReadMetrics::default());
        let dispatched = REQUEST_READS.scope(reads.clone(), self.dispatch(request));
        // A hung store never hangs a request: past the deadline the work is dropped (nothing
        // was cached, the cache prefix is only written after a complete computation).
        let mut response = match tokio::time::timeout(self.config.request_timeout, dispatched).await
        {
            Ok(response) => response,
            Err(_) => timed_out(self.config.request_timeout),
        };
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        self.add_common_headers(response.headers_mut(), origin);
        let r = reads.snapshot();
        let header_text = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let outcome = header_text("x-cellucid-outcome");
        let compute_ms = header_text("x-cellucid-compute-ms");
        // `store` counts every object-store GET of the request (source and cache prefix).
        let timing = format!(
            "{}store;desc=\"gets={} bytes={}\", {}total;dur={:.2}",
            outcome
                .as_deref()
                .map(|o| format!("cache;desc=\"{o}\", "))
                .unwrap_or_default(),
            r.gets,
            r.bytes,
            compute_ms
                .as_deref()
                .map(|ms| format!("compute;dur={ms}, "))
                .unwrap_or_default(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        response.headers_mut().remove("x-cellucid-outcome");
        response.headers_mut().remove("x-cellucid-compute-ms");
        if let Ok(v) = HeaderValue::from_str(&timing) {
            response.headers_mut().insert("server-timing", v);
        }
        tracing::info!(
            target: "cellucid_edge::http",
            method = %request.method(),
            path = %share::redact(request.uri().path()),
            status = response.status().as_u16(),
            cache = outcome.as_deref().unwrap_or("-"),
            compute_ms = compute_ms.as_deref().unwrap_or("-"),
            store_gets = r.gets,
            store_bytes = r.bytes,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        if request.method() == Method::HEAD {
            *response.body_mut() = Bytes::new();
        }
        response
    }

    fn add_common_headers(&self, headers: &mut HeaderMap, origin: Option<&str>) {
        apply_common_headers(&self.config.cors, headers, origin);
    }

    /// With a share secret: check the `/s/<token>/` prefix of `target` and strip it, returning
    /// the target below it and the dataset the token is bound to (if any). Without one: the
    /// target unchanged.
    fn share_gate<'t>(
        &self,
        target: &'t str,
    ) -> Result<(Cow<'t, str>, Option<String>), ShareError> {
        let Some(secret) = &self.config.share else {
            return Ok((Cow::Borrowed(target), None));
        };
        share::split_target(target).and_then(|(token, below)| {
            let claims = share::verify(secret, token, SystemTime::now())?;
            if let Some(id) = &claims.dataset {
                let served = if self.catalog.is_multi() {
                    self.catalog.get(id).is_some()
                } else {
                    self.catalog.first().id() == id
                };
                if !served {
                    return Err(ShareError::WrongDataset);
                }
            }
            Ok((Cow::Owned(below), claims.dataset))
        })
    }

    async fn dispatch<B>(&self, request: &Request<B>) -> Response<Bytes> {
        let ctx = Ctx {
            method: request.method(),
            headers: request.headers(),
        };
        match *request.method() {
            Method::GET | Method::HEAD => {}
            Method::OPTIONS => {
                let mut r = empty(StatusCode::NO_CONTENT);
                if request
                    .headers()
                    .contains_key("access-control-request-private-network")
                {
                    r.headers_mut().insert(
                        "access-control-allow-private-network",
                        HeaderValue::from_static("true"),
                    );
                }
                return r;
            }
            _ => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                return r;
            }
        }
        // ── strict profile (#14): one arm; the router takes it over at merge ──────────────
        if let Some(response) = self.strict_dispatch(&ctx, request).await {
            return response;
        }
        let (dataset, route) = match self.target(request) {
            Ok(Target::Control(route)) => {
                let scope = request
                    .extensions()
                    .get::<ShareScope>()
                    .and_then(|s| s.0.as_deref());
                return self.control(&route, request.extensions().get::<ServerIdentity>(), scope);
            }
            Ok(Target::Artifact(dataset, route)) => (dataset, route),
            Err(miss) => return miss.response(),
        };
        match self.artifact_response(&ctx, dataset, &route).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        }
    }

    /// Where a request path leads: a control document, or an artifact of one atlas. A path
    /// that leads nowhere is answered with the response to send (400, 404, 414).
    fn target<B>(&self, request: &Request<B>) -> Result<Target<'_>, Miss> {
        let raw = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let decoded = match decode_path(raw) {
            Ok(p) => p,
            Err(crate::protocol::PathError::TooLong) => return Err(Miss::TooLong),
            Err(e) => return Err(Miss::BadPath(e.to_string())),
        };
        let path = decoded.trim_start_matches('/');
        let (dataset, rest) = if self.catalog.is_multi() {
            match path.split_once('/') {
                Some((id, rest)) if !path.starts_with("_cellucid/") => match self.catalog.get(id) {
                    Some(ds) => (Some(ds), rest),
                    None => return Err(Miss::NotFound),
                },
                _ => (None, path),
            }
        } else {
            let ds = self.catalog.first();
            let rest = path
                .strip_prefix(ds.id())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(path);
            (Some(ds), rest)
        };
        if let Some(ShareScope(Some(scope))) = request.extensions().get::<ShareScope>()
            && dataset.is_some_and(|ds| ds.id() != scope)
        {
            return Err(Miss::WrongDataset);
        }
        let route = parse_route(rest).ok_or(Miss::NotFound)?;
        if route.is_control() {
            return Ok(Target::Control(route));
        }
        match dataset {
            Some(dataset) => Ok(Target::Artifact(dataset, route)),
            None => Err(Miss::NotFound),
        }
    }

    /// A short-lived presigned GET URL of the artifact `request` asks for, stored in the cache
    /// prefix exactly as it would be sent: gzip with `Content-Encoding: gzip` and the artifact's
    /// `Content-Type` (a raw `.gz` file route gets an object without `Content-Encoding`, so the
    /// client receives the gzip file itself). The object is written (create-only) when missing.
    ///
    /// `Ok(None)` when the request is not an artifact, no cache prefix is configured, or the
    /// cache backend cannot presign (only S3 can). This is how a transport with a body limit
    /// (the Lambda: 6 MB) answers a large artifact with a redirect.
    pub async fn presigned_artifact<B>(
        &self,
        request: &Request<B>,
        expires_in: std::time::Duration,
    ) -> Result<Option<String>, PresignError> {
        let Some(cache) = &self.config.cache else {
            return Ok(None);
        };
        if !cache.can_presign() {
            return Ok(None);
        }
        // ── strict profile (#14) ──
        let (dataset, artifact, raw_gzip) = match self.strict_target(request) {
            Some(Ok(StrictTarget::Dataset(dataset, route))) => {
                let artifact = strict::resolve(dataset, &route, &self.config.strict)
                    .await
                    .map_err(|e| PresignError::Artifact(Arc::new(e)))?;
                (dataset, artifact, false)
            }
            Some(_) => return Ok(None),
            None => {
                let Ok(Target::Artifact(dataset, route)) = self.target(request) else {
                    return Ok(None);
                };
                let artifact = resolve_artifact(dataset, &route)
                    .await
                    .map_err(|e| PresignError::Artifact(Arc::new(e)))?;
                (dataset, artifact, route.is_raw_gzip())
            }
        };
        let (rendered, _) = self
            .render(dataset, &artifact)
            .await
            .map_err(PresignError::Artifact)?;
        let fingerprint = self.fingerprint(dataset.id()).unwrap_or_default();
        let content_type = artifact.kind().content_type();
        let (key, encoding) = if raw_gzip {
            (format!("{}.gzfile", artifact.cache_key()), None)
        } else {
            (artifact.cache_key(), Some("gzip"))
        };
        if !cache.exists(fingerprint, &key).await? {
            cache
                .put_encoded(
                    fingerprint,
                    &key,
                    rendered.gzipped.clone(),
                    content_type,
                    encoding,
                )
                .await?;
        }
        Ok(cache.presigned_get(fingerprint, &key, expires_in).await)
    }

    // ── strict profile (#14) ─────────────────────────────────────────────────────────────
    // The strict profile's arm (see `crate::protocol::strict`): the router takes these two
    // methods over at merge; everything they call is the strict module's plain functions and
    // the shared artifact path above.

    /// The strict target of `request` when its path is under `/strict` (`Err`: the response
    /// for a path that leads nowhere); `None` for any other path.
    fn strict_target<B>(&self, request: &Request<B>) -> Option<Result<StrictTarget<'_>, Miss>> {
        let raw = request.uri().path();
        strict::below_base(raw)?;
        let decoded = match decode_path(raw) {
            Ok(p) => p,
            Err(crate::protocol::PathError::TooLong) => return Some(Err(Miss::TooLong)),
            Err(e) => return Some(Err(Miss::BadPath(e.to_string()))),
        };
        let Some(below) = strict::below_base(&decoded) else {
            return Some(Err(Miss::NotFound));
        };
        let target = match strict::parse_target(&self.catalog, below) {
            Some(target) => target,
            None => return Some(Err(Miss::NotFound)),
        };
        if let (StrictTarget::Dataset(dataset, _), Some(ShareScope(Some(scope)))) =
            (&target, request.extensions().get::<ShareScope>())
            && dataset.id() != scope
        {
            return Some(Err(Miss::WrongDataset));
        }
        Some(Ok(target))
    }

    /// The response to a request under `/strict`; `None` for any other path.
    async fn strict_dispatch<B>(
        &self,
        ctx: &Ctx<'_>,
        request: &Request<B>,
    ) -> Option<Response<Bytes>> {
        let target = match self.strict_target(request)? {
            Ok(target) => target,
            Err(miss) => return Some(miss.response()),
        };
        let scope = request
            .extensions()
            .get::<ShareScope>()
            .and_then(|s| s.0.as_deref());
        Some(match target {
            StrictTarget::Control(control) => {
                match strict::control_document(&self.catalog, control, scope) {
                    Some(document) => json_response(&document),
                    None => {
                        let route = match control {
                            strict::StrictControl::Info => Route::Info,
                            _ => Route::Health,
                        };
                        self.control(&route, request.extensions().get::<ServerIdentity>(), scope)
                    }
                }
            }
            StrictTarget::Dataset(dataset, route) => {
                match strict::resolve(dataset, &route, &self.config.strict).await {
                    Ok(artifact) => self
                        .rendered_response(ctx, dataset, &artifact, false)
                        .await
                        .unwrap_or_else(|e| error_response(&e)),
                    Err(e) => error_response(&e),
                }
            }
        })
    }
    // ── end of the strict profile's arm ──────────────────────────────────────────────────

    /// A control document; a dataset-bound share token (`scope`) lists only its dataset.
    fn control(
        &self,
        route: &Route,
        identity: Option<&ServerIdentity>,
        scope: Option<&str>,
    ) -> Response<Bytes> {
        let identity = identity.unwrap_or(&self.config.identity);
        let first = self.catalog.first();
        let version = env!("CARGO_PKG_VERSION");
        let body = match route {
            Route::Health => json!({
                "status": "ok",
                "type": "anndata",
                "version": version,
                "format": first.source_format(),
                "is_backed": first.is_backed(),
                "n_cells": first.n_cells(),
                "n_genes": first.n_genes(),
            }),
            Route::Info => json!({
                "version": version,
                "type": "anndata",
                "format": first.source_format(),
                "host": identity.host,
                "port": identity.port,
                "n_cells": first.n_cells(),
                "n_genes": first.n_genes(),
                "is_backed": first.is_backed(),
            }),
            _ => {
                let multi = self.catalog.is_multi();
                let list: Vec<_> = self
                    .catalog
                    .datasets()
                    .iter()
                    .filter(|d| scope.is_none_or(|id| d.id() == id))
                    .map(|d| {
                        json!({
                            "id": d.id(),
                            "path": if multi { format!("/{}/", d.id()) } else { "/".to_string() },
                            "name": d.name(),
                        })
                    })
                    .collect();
                json!({ "datasets": list })
            }
        };
        json_response(&body)
    }

    /// The fingerprint of atlas `id` (cache key prefix).
    pub fn fingerprint(&self, id: &str) -> Option<&str> {
        self.atlases.get(id).map(|a| a.fingerprint.as_str())
    }

    async fn gene_pack(&self, dataset: &Arc<Dataset>) -> Option<Arc<GenePack>> {
        let cache = self.config.cache.as_ref()?;
        let state = self.atlases.get(dataset.id())?;
        let mut slot = state.gene_pack.lock().await;
        let build_done = state
            .pack_build
            .compare_exchange(
                PACK_BUILD_DONE,
                PACK_BUILD_SETTLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if let Some((checked, pack)) = slot.as_ref()
            && (pack.is_some() || (checked.elapsed() < GENE_PACK_RECHECK && !build_done))
        {
            return pack.clone();
        }
        let pack = match GenePack::load(cache, &state.fingerprint, dataset.n_genes()).await {
            Ok(pack) => pack.map(Arc::new),
            Err(e) => {
                tracing::warn!(target: "cellucid_edge::cache", "gene pack unavailable: {e}");
                None
            }
        };
        *slot = Some((Instant::now(), pack.clone()));
        if pack.is_none() {
            self.start_pack_build(dataset, cache, state);
        }
        pack
    }

    /// Starts the on-demand gene pack build of `dataset` (see
    /// [`AppConfig::gene_pack_on_demand`]) unless this process already started one.
    fn start_pack_build(
        &self,
        dataset: &Arc<Dataset>,
        cache: &ArtifactCache,
        state: &AtlasCacheState,
    ) {
        let small_csr = matches!(&dataset.layout().x,
            MatrixMeta::Csr(meta) if meta.nnz <= dataset.options().csr_scan_max_nnz);
        if !self.config.gene_pack_on_demand
            || !small_csr
            || state
                .pack_build
                .compare_exchange(
                    PACK_BUILD_IDLE,
                    PACK_BUILD_RUNNING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
        {
            return;
        }
        let (dataset, cache, fingerprint, flag) = (
            dataset.clone(),
            cache.clone(),
            state.fingerprint.clone(),
            state.pack_build.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            tracing::info!(target: "cellucid_edge::cache", dataset = dataset.id(),
                "no gene pack in the cache prefix: building it from X in the background");
            let options = PrecomputeOptions {
                jobs: 1,
                memory_budget: ON_DEMAND_PACK_MEMORY,
                ..PrecomputeOptions::default()
            };
            match build_gene_pack_on_demand(dataset.clone(), &cache, &fingerprint, &options).await {
                Ok(_) => {
                    tracing::info!(target: "cellucid_edge::cache", dataset = dataset.id(),
                        seconds = started.elapsed().as_secs_f64(), "gene pack built on demand");
                    flag.store(PACK_BUILD_DONE, Ordering::Release);
                }
                Err(e) => {
                    tracing::warn!(target: "cellucid_edge::cache", dataset = dataset.id(),
                        "building the gene pack on demand failed (genes stay served by scanning X; \
                         run `cellucid-edge precompute`): {e}");
                    flag.store(PACK_BUILD_SETTLED, Ordering::Release);
                }
            }
        });
    }

    /// Memory → cache prefix (one GET) → compute, writing computed artifacts back create-only.
    async fn load_or_compute(
        &self,
        dataset: &Arc<Dataset>,
        artifact: &Artifact,
    ) -> Result<(Rendered, Outcome), DatasetError> {
        let key = artifact.cache_key();
        let fingerprint = self
            .fingerprint(dataset.id())
            .unwrap_or_default()
            .to_string();
        let digest = etag_digest(&fingerprint, &key);
        if let Some(cache) = &self.config.cache {
            let cached = match artifact {
                Artifact::Gene(index) => match self.gene_pack(dataset).await {
                    Some(pack) => match pack.read(cache, &fingerprint, *index).await {
                        Ok(bytes) => Some(bytes),
                        Err(e) => {
                            tracing::warn!(target: "cellucid_edge::cache", "gene pack read failed: {e}");
                            None
                        }
                    },
                    None => None,
                },
                // Never stored (derived from a gene on every cold request): no GET.
                a if !a.write_back() => None,
                _ => match cache.get(&fingerprint, &key).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(target: "cellucid_edge::cache", "cache read failed: {e}");
                        None
                    }
                },
            };
            if let Some(gzipped) = cached {
                let rendered = Rendered {
                    gzipped,
                    body: None,
                    digest,
                };
                return Ok((rendered, Outcome::Cache));
            }
        }
        let computing = Instant::now();
        let body = match artifact.derived_from() {
            // Strict documents and quantised payloads (#14): translated from the seed
            // artifact's body, itself from memory, the cache prefix or the source.
            Some(source) => {
                let source_body = self.source_body(dataset, &source).await?;
                artifact.derive(dataset, source_body).await?
            }
            None => artifact.compute(dataset).await?,
        };
        let gzipped = {
            let body = body.clone();
            tokio::task::spawn_blocking(move || gzip(&body))
                .await
                .map_err(|e| DatasetError::Unsupported(format!("compression task failed: {e}")))?
        };
        let compute_ms = computing.elapsed().as_secs_f64() * 1000.0;
        // Genes are not written one by one: precompute builds the gene-major pack.
        if let Some(cache) = &self.config.cache
            && artifact.write_back()
            && let Err(e) = cache
                .put(
                    &fingerprint,
                    &key,
                    gzipped.clone(),
                    artifact.kind().content_type(),
                )
                .await
        {
            tracing::warn!(target: "cellucid_edge::cache", "cache write failed (request still served): {e}");
        }
        Ok((
            Rendered {
                gzipped,
                // Large bodies are held gzip-only (the viewer always accepts gzip; another
                // client gets them inflated on demand): the LRU's bytes hold twice the artifacts.
                body: (body.len() <= KEEP_IDENTITY_BODY_MAX).then_some(body),
                digest,
            },
            Outcome::Computed(compute_ms),
        ))
    }

    /// The uncompressed body of `source` for a derived artifact: from the in-memory LRU, else
    /// loaded or computed (and then kept in the LRU like any rendered artifact).
    async fn source_body(
        &self,
        dataset: &Arc<Dataset>,
        source: &Artifact,
    ) -> Result<Bytes, DatasetError> {
        let key = (dataset.id().to_string(), source.clone());
        if let Some(found) = self.rendered.get(&key).await {
            return found.identity();
        }
        let (rendered, _) = Box::pin(self.load_or_compute(dataset, source)).await?;
        let body = rendered.identity()?;
        self.rendered.insert(key, Arc::new(rendered)).await;
        Ok(body)
    }

    async fn render(
        &self,
        dataset: &Arc<Dataset>,
        artifact: &Artifact,
    ) -> Result<(Arc<Rendered>, Outcome), Arc<DatasetError>> {
        let key = (dataset.id().to_string(), artifact.clone());
        if let Some(found) = self.rendered.get(&key).await {
            return Ok((found, Outcome::Memory));
        }
        let outcome = std::sync::Mutex::new(Outcome::Memory);
        let rendered = self
            .rendered
            .try_get_with(key, async {
                let (rendered, how) = self.load_or_compute(dataset, artifact).await?;
                if let Ok(mut slot) = outcome.lock() {
                    *slot = how;
                }
                Ok::<_, DatasetError>(Arc::new(rendered))
            })
            .await?;
        let how = outcome.lock().map(|o| *o).unwrap_or(Outcome::Memory);
        Ok((rendered, how))
    }

    async fn artifact_response(
        &self,
        ctx: &Ctx<'_>,
        dataset: &Arc<Dataset>,
        route: &Route,
    ) -> Result<Response<Bytes>, Arc<DatasetError>> {
        let artifact = resolve_artifact(dataset, route).await.map_err(Arc::new)?;
        self.rendered_response(ctx, dataset, &artifact, route.is_raw_gzip())
            .await
    }

    /// The response carrying `artifact` (rendered from memory, the cache prefix or the
    /// source), with gzip negotiation, ETag and 304; `raw_gzip`: the URL asked for the gzip
    /// file itself (served without Content-Encoding).
    async fn rendered_response(
        &self,
        ctx: &Ctx<'_>,
        dataset: &Arc<Dataset>,
        artifact: &Artifact,
        raw_gzip: bool,
    ) -> Result<Response<Bytes>, Arc<DatasetError>> {
        let (rendered, outcome) = self.render(dataset, artifact).await?;
        let kind = artifact.kind();
        let gzip_ok = accepts_gzip(
            ctx.headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        );
        let (body, encoding, etag) = if raw_gzip {
            (
                rendered.gzipped.clone(),
                None,
                format!("\"{}-gzfile\"", rendered.digest),
            )
        } else if gzip_ok {
            (
                rendered.gzipped.clone(),
                Some("gzip"),
                format!("\"{}-gz\"", rendered.digest),
            )
        } else {
            (
                rendered.identity().map_err(Arc::new)?,
                None,
                format!("\"{}\"", rendered.digest),
            )
        };
        let compute_ms = match outcome {
            Outcome::Computed(ms) => Some(ms),
            _ => None,
        };
        let outcome = outcome.as_str();
        let not_modified = ctx
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut r = if not_modified {
            empty(StatusCode::NOT_MODIFIED)
        } else {
            let len = body.len();
            let mut r = Response::new(body);
            set_len_and_type(&mut r, kind_content_type(kind, raw_gzip), len);
            if let Some(enc) = encoding {
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
            }
            r
        };
        let _ = ctx.method;
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        r.headers_mut()
            .insert("x-cellucid-outcome", HeaderValue::from_static(outcome));
        if let Some(ms) = compute_ms
            && let Ok(v) = HeaderValue::from_str(&format!("{ms:.2}"))
        {
            r.headers_mut().insert("x-cellucid-compute-ms", v);
        }
        Ok(r)
    }
}

/// A control document: exactly `application/json`, never stored by caches.
fn json_response(body: &serde_json::Value) -> Response<Bytes> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut r = Response::new(bytes.clone());
    set_len_and_type(&mut r, "application/json", bytes.len());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn kind_content_type(kind: ArtifactKind, _raw_gzip: bool) -> &'static str {
    kind.content_type()
}

fn set_len_and_type<B>(r: &mut Response<B>, content_type: &'static str, len: usize) {
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

fn empty(status: StatusCode) -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = status;
    r
}

fn text(status: StatusCode, message: &str) -> Response<Bytes> {
    let body = Bytes::from(message.to_string());
    let len = body.len();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    set_len_and_type(&mut r, "text/plain", len);
    r
}

/// 403 for a request without a valid share token (CORS headers are added like on every
/// response, so the viewer can show why).
/// The 403 for a request whose verified share token is bound to a dataset other than
/// `dataset_id`, if it is; used by front-ends that resolve the dataset themselves (`/v0.9`).
pub(crate) fn wrong_dataset_refusal<B>(
    request: &Request<B>,
    dataset_id: &str,
) -> Option<Response<Bytes>> {
    match request.extensions().get::<ShareScope>() {
        Some(ShareScope(Some(bound))) if bound != dataset_id => {
            Some(forbidden(&ShareError::WrongDataset))
        }
        _ => None,
    }
}

fn forbidden(error: &ShareError) -> Response<Bytes> {
    let mut r = text(StatusCode::FORBIDDEN, &format!("Forbidden: {error}"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 503 for a request that outlived its deadline.
fn timed_out(deadline: Duration) -> Response<Bytes> {
    tracing::warn!(
        target: "cellucid_edge::http",
        deadline_ms = deadline.as_millis() as u64,
        "request deadline exceeded (slow or hung store)"
    );
    retry_later("The data store did not answer in time; retry shortly")
}

/// 503 + `Retry-After: 1`, never stored by caches: the store failed or was too slow, and the
/// next request may well succeed.
fn retry_later(message: &str) -> Response<Bytes> {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_response(error: &DatasetError) -> Response<Bytes> {
    match error {
        DatasetError::NotFound(message) => text(StatusCode::NOT_FOUND, message),
        DatasetError::NeedsPrecompute { .. } => {
            tracing::warn!(target: "cellucid_edge::http", "{error}");
            text(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
        }
        e if e.is_transient() => {
            tracing::warn!(target: "cellucid_edge::http", "transient store failure: {e}");
            retry_later("The data store is temporarily unavailable; retry shortly")
        }
        e => {
            tracing::error!(target: "cellucid_edge::http", "internal error: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }
}

/// The headers every response carries (CORS echo, Vary, allowed methods and headers, exposed
/// headers, default Cache-Control); shared by the App and the Lambda adapter.
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
