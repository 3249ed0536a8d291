//! [`App`]: routes a request to an atlas artifact and builds the response with the reference's
//! headers, gzip negotiation, strong ETags and per-request read metering.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::cors::CorsPolicy;
use super::encoding::{accepts_gzip, gzip};
use crate::catalog::Catalog;
use crate::dataset::{Dataset, DatasetError};
use crate::protocol::{Artifact, ArtifactKind, Route, decode_path, parse_route, resolve_artifact};
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

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// CORS allow-list.
    pub cors: CorsPolicy,
    /// Bytes of rendered artifacts kept in memory.
    pub memory_cache_bytes: u64,
    /// `/_cellucid/info` host and port.
    pub identity: ServerIdentity,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            cors: CorsPolicy::default(),
            memory_cache_bytes: 256 << 20,
            identity: ServerIdentity {
                host: "127.0.0.1".into(),
                port: 8765,
            },
        }
    }
}

/// A rendered artifact: the body, its gzip form, and their ETags.
#[derive(Debug)]
struct Rendered {
    body: Bytes,
    gzipped: Bytes,
    digest: String,
}

impl Rendered {
    fn new(body: Bytes) -> Self {
        let digest = hex::encode(&Sha256::digest(&body)[..16]);
        let gzipped = gzip(&body);
        Rendered {
            body,
            gzipped,
            digest,
        }
    }

    fn weight(&self) -> u32 {
        u32::try_from(self.body.len() + self.gzipped.len() + 64).unwrap_or(u32::MAX)
    }
}

/// The application: a catalogue plus the HTTP rules around it.
pub struct App {
    catalog: Catalog,
    config: AppConfig,
    rendered: moka::future::Cache<(String, Artifact), Arc<Rendered>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("config", &self.config).finish()
    }
}

/// How an artifact was obtained (reported in `Server-Timing`).
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Memory,
    Computed,
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
        App {
            catalog,
            config,
            rendered,
        }
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
    pub async fn handle<B>(&self, request: &Request<B>) -> Response<Bytes> {
        let started = Instant::now();
        let reads = Arc::new(ReadMetrics::default());
        let mut response = REQUEST_READS
            .scope(reads.clone(), self.dispatch(request))
            .await;
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        self.add_common_headers(response.headers_mut(), origin);
        let r = reads.snapshot();
        let timing = format!(
            "{}store;desc=\"gets={} bytes={}\", total;dur={:.2}",
            response
                .headers()
                .get("x-cellucid-outcome")
                .and_then(|v| v.to_str().ok())
                .map(|o| format!("cache;desc=\"{o}\", "))
                .unwrap_or_default(),
            r.gets,
            r.bytes,
            started.elapsed().as_secs_f64() * 1000.0
        );
        response.headers_mut().remove("x-cellucid-outcome");
        if let Ok(v) = HeaderValue::from_str(&timing) {
            response.headers_mut().insert("server-timing", v);
        }
        tracing::info!(
            target: "cellucid_edge::http",
            method = %request.method(),
            path = %request.uri().path(),
            status = response.status().as_u16(),
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
        if self.config.cors.allows_any() {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else if let Some(origin) = origin
            && self.config.cors.allows(origin)
            && let Ok(v) = HeaderValue::from_str(origin)
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        headers.insert(header::VARY, HeaderValue::from_static("Origin, Accept-Encoding"));
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
            HeaderValue::from_static("Content-Length, Content-Encoding, Content-Range, ETag, Server-Timing"),
        );
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-cache"));
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
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
                return r;
            }
        }
        let raw = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let decoded = match decode_path(raw) {
            Ok(p) => p,
            Err(crate::protocol::PathError::TooLong) => {
                return text(StatusCode::URI_TOO_LONG, "Request path too long");
            }
            Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let path = decoded.trim_start_matches('/');
        let (dataset, rest) = if self.catalog.is_multi() {
            match path.split_once('/') {
                Some((id, rest)) if !path.starts_with("_cellucid/") => match self.catalog.get(id) {
                    Some(ds) => (Some(ds), rest),
                    None => return text(StatusCode::NOT_FOUND, "Not found"),
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
        let Some(route) = parse_route(rest) else {
            return text(StatusCode::NOT_FOUND, "Not found");
        };
        if route.is_control() {
            return self.control(&route);
        }
        let Some(dataset) = dataset else {
            return text(StatusCode::NOT_FOUND, "Not found");
        };
        match self.artifact_response(&ctx, dataset, &route).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        }
    }

    fn control(&self, route: &Route) -> Response<Bytes> {
        let first = self.catalog.first();
        let version = env!("CARGO_PKG_VERSION");
        let body = match route {
            Route::Health => json!({
                "status": "ok",
                "type": "anndata",
                "version": version,
                "format": "zarr",
                "is_backed": false,
                "n_cells": first.n_cells(),
                "n_genes": first.n_genes(),
            }),
            Route::Info => json!({
                "version": version,
                "type": "anndata",
                "format": "zarr",
                "host": self.config.identity.host,
                "port": self.config.identity.port,
                "n_cells": first.n_cells(),
                "n_genes": first.n_genes(),
                "is_backed": false,
            }),
            _ => {
                let multi = self.catalog.is_multi();
                let list: Vec<_> = self
                    .catalog
                    .datasets()
                    .iter()
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
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let mut r = Response::new(bytes.clone());
        set_len_and_type(&mut r, "application/json", bytes.len());
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
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
        let rendered = self
            .rendered
            .try_get_with(key, async {
                let body = artifact.compute(dataset).await?;
                let rendered = tokio::task::spawn_blocking(move || Rendered::new(body))
                    .await
                    .map_err(|e| DatasetError::Unsupported(format!("render task failed: {e}")))?;
                Ok::<_, DatasetError>(Arc::new(rendered))
            })
            .await?;
        Ok((rendered, Outcome::Computed))
    }

    async fn artifact_response(
        &self,
        ctx: &Ctx<'_>,
        dataset: &Arc<Dataset>,
        route: &Route,
    ) -> Result<Response<Bytes>, Arc<DatasetError>> {
        let artifact = resolve_artifact(dataset, route).await.map_err(Arc::new)?;
        let (rendered, outcome) = self.render(dataset, &artifact).await?;
        let kind = artifact.kind();
        let raw_gzip = route.is_raw_gzip();
        let gzip_ok = accepts_gzip(ctx.headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
        let (body, encoding, etag) = if raw_gzip {
            (rendered.gzipped.clone(), None, format!("\"{}-gzfile\"", rendered.digest))
        } else if gzip_ok {
            (rendered.gzipped.clone(), Some("gzip"), format!("\"{}-gz\"", rendered.digest))
        } else {
            (rendered.body.clone(), None, format!("\"{}\"", rendered.digest))
        };
        let outcome = match outcome {
            Outcome::Memory => "memory",
            Outcome::Computed => "computed",
        };
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
        Ok(r)
    }
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

fn error_response(error: &DatasetError) -> Response<Bytes> {
    match error {
        DatasetError::NotFound(message) => text(StatusCode::NOT_FOUND, message),
        DatasetError::NeedsPrecompute { .. } => {
            tracing::warn!(target: "cellucid_edge::http", "{error}");
            text(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
        }
        e if e.is_transient() => {
            tracing::warn!(target: "cellucid_edge::http", "transient store failure: {e}");
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "The data store is temporarily unavailable; retry shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        e => {
            tracing::error!(target: "cellucid_edge::http", "internal error: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }
}
