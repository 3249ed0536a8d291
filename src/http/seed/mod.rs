//! The seed protocol (cellucid 0.0.9) as a handler behind the router: its method rules, its
//! control documents and its artifacts, byte-exact, with gzip negotiation and strong ETags.
//! The router has already resolved the dataset and the route, and checked the share grant.
//!
//! The strict profile (#14, [`crate::protocol::strict`]) is served by the same handler: its
//! paths resolve to artifacts rendered by the same renderer (its documents and quantised
//! payloads derived from the seed's bodies), answered like the seed's.

mod render;

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::encoding::accepts_gzip;
use super::errors::error_response;
use super::response::{ServerIdentity, empty, json_bytes, set_len_and_type, text};
use crate::catalog::Catalog;
use crate::dataset::Dataset;
use crate::protocol::strict::{self, StrictConfig, StrictControl, StrictRoute};
use crate::protocol::{Artifact, Route, resolve_artifact};
use crate::service::{Body, Config, Deliverable};
use crate::store::ReadMetricsSnapshot;
use render::{AtlasState, Outcome, Renderer};

/// Internal headers the artifact handler leaves for [`SeedProtocol::server_timing`].
const OUTCOME_HEADER: &str = "x-cellucid-outcome";
const COMPUTE_MS_HEADER: &str = "x-cellucid-compute-ms";

/// The seed protocol over one catalogue.
#[derive(Clone)]
pub struct SeedProtocol {
    renderer: Arc<Renderer>,
    catalog: Catalog,
    atlases: HashMap<String, Arc<AtlasState>>,
    identity: ServerIdentity,
}

impl std::fmt::Debug for SeedProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedProtocol")
            .field("atlases", &self.atlases.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SeedProtocol {
    /// The seed protocol over `catalog` with the cache prefix and identity of `config`; rendered
    /// artifacts are held in the catalogue's memory budget ([`Catalog::budget`]).
    pub fn new(catalog: Catalog, config: &Config) -> Self {
        // Rendered artifacts count against the catalogue's memory budget, next to the
        // atlases' own buffers.
        let renderer = Arc::new(Renderer::new(
            config.cache.clone(),
            catalog.budget(),
            config.gene_pack_on_demand,
        ));
        let atlases = catalog
            .datasets()
            .iter()
            .map(|d| (d.id().to_string(), Arc::new(AtlasState::of(d))))
            .collect();
        SeedProtocol {
            renderer,
            catalog,
            atlases,
            identity: config.identity.clone(),
        }
    }

    /// The same protocol over a grown catalogue (opened with the same budget): rendered
    /// artifacts and per-atlas state are kept.
    pub fn with_catalog(&self, catalog: Catalog) -> Self {
        let atlases = catalog
            .datasets()
            .iter()
            .map(|d| {
                let state = self
                    .atlases
                    .get(d.id())
                    .cloned()
                    .unwrap_or_else(|| Arc::new(AtlasState::of(d)));
                (d.id().to_string(), state)
            })
            .collect();
        SeedProtocol {
            renderer: self.renderer.clone(),
            catalog,
            atlases,
            identity: self.identity.clone(),
        }
    }

    /// The catalogue served.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Load every atlas's gene pack index now, starting the on-demand pack builds that
    /// [`Config::gene_pack_on_demand`] allows, instead of at the first gene request (`serve`
    /// with its default local cache: fast by default).
    pub async fn warm_gene_packs(&self) {
        for dataset in self.catalog.datasets() {
            if let Some(state) = self.atlases.get(dataset.id()) {
                self.renderer.warm_gene_pack(state, dataset).await;
            }
        }
    }

    /// The fingerprint of atlas `id` (cache key prefix).
    pub fn fingerprint(&self, id: &str) -> Option<&str> {
        self.atlases.get(id).map(|a| a.fingerprint.as_str())
    }

    /// The answer to a method the protocol does not route: `OPTIONS` → 204 (with the Private
    /// Network Access grant when asked), anything but GET/HEAD → 405 with `Allow`.
    pub fn preflight<B>(request: &Request<B>) -> Option<Response<Body>> {
        match *request.method() {
            Method::GET | Method::HEAD => None,
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
                Some(r)
            }
            _ => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                Some(r)
            }
        }
    }

    /// A control document. `scope` (a share token's dataset) restricts the listing to it, and
    /// health/info then describe it.
    pub fn control(
        &self,
        route: &Route,
        identity: Option<&ServerIdentity>,
        scope: Option<&str>,
    ) -> Response<Body> {
        let identity = identity.unwrap_or(&self.identity);
        let first = scope
            .and_then(|id| self.catalog.get(id))
            .unwrap_or_else(|| self.catalog.first());
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
        // Serialising a `Value` of plain fields cannot fail.
        json_bytes(serde_json::to_vec(&body).unwrap_or_default().into())
    }

    /// An artifact of `dataset`: gzip when accepted (or the raw `.gz` file), strong ETags
    /// naming the exact bytes, 304 on a matching `If-None-Match`, and — when the cache prefix
    /// can presign — a deliverable a buffered transport may redirect to.
    pub async fn artifact(
        &self,
        headers: &HeaderMap,
        dataset: &Arc<Dataset>,
        route: &Route,
    ) -> Response<Body> {
        match resolve_artifact(dataset, route).await {
            Ok(artifact) => {
                self.respond(headers, dataset, &artifact, route.is_raw_gzip())
                    .await
            }
            Err(e) => error_response(&e),
        }
    }

    // ── strict profile (#14) ─────────────────────────────────────────────────────────────

    /// A strict control document: the strict `_cellucid/datasets` (each atlas at its strict
    /// path; a share token's dataset only), or the seed's health and info (already strict).
    pub fn strict_control(
        &self,
        control: StrictControl,
        identity: Option<&ServerIdentity>,
        scope: Option<&str>,
    ) -> Response<Body> {
        match strict::control_document(&self.catalog, control, scope) {
            Some(document) => json_bytes(serde_json::to_vec(&document).unwrap_or_default().into()),
            None => {
                let route = match control {
                    StrictControl::Info => Route::Info,
                    _ => Route::Health,
                };
                self.control(&route, identity, scope)
            }
        }
    }

    /// A strict document or payload of `dataset`, answered like a seed artifact (gzip, ETag,
    /// 304, deliverable); what the strict documents do not advertise is a 404.
    pub async fn strict_artifact(
        &self,
        headers: &HeaderMap,
        dataset: &Arc<Dataset>,
        route: &StrictRoute,
        config: &StrictConfig,
    ) -> Response<Body> {
        match strict::resolve(dataset, route, config).await {
            Ok(artifact) => self.respond(headers, dataset, &artifact, false).await,
            Err(e) => error_response(&e),
        }
    }

    // ── end of the strict profile ────────────────────────────────────────────────────────

    /// The response carrying `artifact`; `raw_gzip`: the URL asked for the gzip file itself
    /// (sent without `Content-Encoding`).
    async fn respond(
        &self,
        headers: &HeaderMap,
        dataset: &Arc<Dataset>,
        artifact: &Artifact,
        raw_gzip: bool,
    ) -> Response<Body> {
        let Some(state) = self.atlases.get(dataset.id()) else {
            return text(StatusCode::NOT_FOUND, "Not found");
        };
        let (rendered, outcome) = match self.renderer.render(state, dataset, artifact).await {
            Ok(r) => r,
            Err(e) => return error_response(&e),
        };
        let content_type = artifact.kind().content_type();
        let gzip_ok = accepts_gzip(
            headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        );
        let (body, encoding, etag) = if raw_gzip {
            (
                rendered.gzipped.clone(),
                None,
                format!("\"{}-gzfile-{}\"", rendered.digest, rendered.gzip_tag),
            )
        } else if gzip_ok {
            (
                rendered.gzipped.clone(),
                Some("gzip"),
                format!("\"{}-gz-{}\"", rendered.digest, rendered.gzip_tag),
            )
        } else {
            match rendered.identity().await {
                Ok(body) => (body, None, format!("\"{}\"", rendered.digest)),
                Err(e) => return error_response(&e),
            }
        };
        let not_modified = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut r = if not_modified {
            empty(StatusCode::NOT_MODIFIED)
        } else {
            // Stored exactly as sent: gzip with `Content-Encoding` (the browser inflates it,
            // whatever it accepted), or the raw `.gz` file without it.
            let deliverable = self.renderer.cache.as_ref().and_then(|cache| {
                let key = artifact.cache_key();
                let (key, stored_encoding) = if raw_gzip {
                    (format!("{key}.gzfile"), None)
                } else {
                    (key, Some("gzip"))
                };
                Deliverable::cache_artifact(
                    cache,
                    &state.fingerprint,
                    key,
                    rendered.gzipped.clone(),
                    content_type,
                    stored_encoding,
                )
            });
            let len = body.len() as u64;
            let mut r = Response::new(Body::bytes(body).with_deliverable(deliverable));
            set_len_and_type(&mut r, content_type, len);
            if let Some(enc) = encoding {
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
            }
            r
        };
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        r.headers_mut()
            .insert(OUTCOME_HEADER, HeaderValue::from_static(outcome.as_str()));
        if let Outcome::Computed(ms) = outcome
            && let Ok(v) = HeaderValue::from_str(&format!("{ms:.2}"))
        {
            r.headers_mut().insert(COMPUTE_MS_HEADER, v);
        }
        r
    }

    /// Replace the handler's internal headers by `Server-Timing` (cache outcome, store reads of
    /// the request, compute and total time); returns the outcome and compute time for the log.
    pub fn server_timing(
        response: &mut Response<Body>,
        reads: ReadMetricsSnapshot,
        total_ms: f64,
    ) -> (Option<String>, Option<String>) {
        let take = |r: &mut Response<Body>, name: &str| {
            r.headers_mut()
                .remove(name)
                .and_then(|v| v.to_str().ok().map(str::to_string))
        };
        let outcome = take(response, OUTCOME_HEADER);
        let compute_ms = take(response, COMPUTE_MS_HEADER);
        // `store` counts every object-store GET of the request (source and cache prefix).
        let timing = format!(
            "{}store;desc=\"gets={} bytes={}\", {}total;dur={total_ms:.2}",
            outcome
                .as_deref()
                .map(|o| format!("cache;desc=\"{o}\", "))
                .unwrap_or_default(),
            reads.gets,
            reads.bytes,
            compute_ms
                .as_deref()
                .map(|ms| format!("compute;dur={ms}, "))
                .unwrap_or_default(),
        );
        if let Ok(v) = HeaderValue::from_str(&timing) {
            response.headers_mut().insert("server-timing", v);
        }
        (outcome, compute_ms)
    }
}
