//! The Cellucid **0.9** protocol (`shared/docs/protocol-0.9.md`): the raw AnnData store served
//! to the browser with single-range reads, strong ETags and 304s, beside the seed 0.0.9
//! protocol.
//!
//! Both protocols come from one deployment: the seed stays at the origin root (the oldest
//! viewer drops path prefixes) and this protocol is mounted by the service's router under
//! [`BASE_PATH`] (`/v0.9`), so its base URL is `<origin>/v0.9` and its routes are
//! `/v0.9/_cellucid/health|info|datasets` and `/v0.9/_cellucid/anndata/<id>.zarr/<key>` (or
//! `<id>.h5ad`, `<id>.zarr.zip`). With several datasets each also has its own base URL
//! `<origin>/v0.9/<id>` (a portable id never starts with `_`, so the two forms cannot collide).
//!
//! Layers: [`range`] (Range/If-None-Match/If-Range as pure functions), [`keys`] (key and route
//! validation), [`documents`] (JSON documents, portable ids, Python JSON formatting),
//! [`consolidate`] (synthesised consolidated metadata), [`source`] (one dataset over object
//! storage: metadata, one ranged GET per range), and [`Frontend`] (the protocol handler the
//! router calls once the gate has admitted the request and the dataset is known).

pub mod consolidate;
pub mod documents;
pub mod keys;
pub mod range;
pub mod ready;
pub mod source;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::cache::ArtifactCache;
use crate::catalog::Catalog;
use crate::http::response::{empty, text};
use crate::http::{CorsPolicy, ServerIdentity};
use crate::service::{Admission, Body, Deliverable};
use documents::{DatasetEntry, StoreKind, python_json};
use keys::{AnnDataRoute, is_valid_store_key, parse_anndata_route};
use range::{Decision, decide};
use source::{Lookup, ObjectInfo, Source, SourceError, SourceLocation};

/// Where the 0.9 protocol is mounted on the origin.
pub const BASE_PATH: &str = "/v0.9";

/// Whether a request path (raw, before decoding) belongs to the 0.9 protocol.
pub fn is_v09_path(path: &str) -> bool {
    path == BASE_PATH || path.starts_with("/v0.9/")
}

/// The base URL of the 0.9 protocol for a server reachable at `origin` (no trailing `/`).
pub fn base_url(origin: &str) -> String {
    format!("{}{BASE_PATH}", origin.trim_end_matches('/'))
}

/// Settings of the 0.9 protocol itself (the HTTP rules around it are the service's).
#[derive(Debug, Clone, Default)]
pub struct FrontendConfig {
    /// Serve the notebook-channel `/_cellucid/protocol` document (off: 404, as a data-only
    /// server has no channel; §2.3).
    pub protocol_document: bool,
}

/// Why a 0.9 front-end cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// No dataset to serve.
    #[error("the 0.9 protocol needs at least one dataset")]
    Empty,
    /// Two datasets would share one 0.9 id (and one URL).
    #[error(
        "two atlases get the same 0.9 dataset id `{id}` ({first} and {second}); rename one of \
         them (0.9 ids keep only ASCII letters, digits, `.`, `_` and `-`, and start with a \
         letter or digit)"
    )]
    DuplicateId {
        /// The id.
        id: String,
        /// The first atlas (its catalogue id or location).
        first: String,
        /// The second.
        second: String,
    },
    /// The 0.9 store could not be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl FrontendError {
    /// What this failure means: the store's class for a source that could not be opened;
    /// [`ErrorClass::Internal`](crate::store::ErrorClass::Internal) for a front-end that
    /// cannot be mounted as configured.
    pub fn class(&self) -> crate::store::ErrorClass {
        match self {
            FrontendError::Source(e) => e.class(),
            FrontendError::Empty | FrontendError::DuplicateId { .. } => {
                crate::store::ErrorClass::Internal
            }
        }
    }
}

/// The 0.9 protocol over one or more datasets, each a [`Source`].
#[derive(Debug, Clone)]
pub struct Frontend {
    sources: Vec<Arc<Source>>,
    config: FrontendConfig,
}

impl Frontend {
    /// A front-end over `sources` (at least one, ids unique; the first is served at the base
    /// URL).
    pub fn new(sources: Vec<Arc<Source>>, config: FrontendConfig) -> Result<Self, FrontendError> {
        if sources.is_empty() {
            return Err(FrontendError::Empty);
        }
        let mut seen: HashSet<&str> = HashSet::new();
        for (i, s) in sources.iter().enumerate() {
            if !seen.insert(s.id.as_str()) {
                let first = sources
                    .iter()
                    .take(i)
                    .find(|o| o.id == s.id)
                    .map(|o| o.origin())
                    .unwrap_or_default();
                return Err(FrontendError::DuplicateId {
                    id: s.id.clone(),
                    first,
                    second: s.origin(),
                });
            }
        }
        Ok(Frontend { sources, config })
    }

    /// The seed catalogue's Zarr folders served as 0.9 datasets. Ids: the seed's explicit
    /// `dataset_id` when portable, else a portable id derived from the seed id; two atlases
    /// deriving the same id are an error. `cache` + `fingerprint(id)` memoise synthesised
    /// metadata in the cache prefix. Sources already built for the same catalogue atlas (in
    /// `reuse`) are kept, with their memoised metadata.
    pub fn from_catalog(
        catalog: &Catalog,
        cache: Option<&ArtifactCache>,
        fingerprint: impl Fn(&str) -> Option<String>,
        config: FrontendConfig,
        reuse: &[Arc<Source>],
    ) -> Result<Self, FrontendError> {
        let sources = catalog
            .datasets()
            .iter()
            .map(|ds| {
                if let Some(found) = reuse
                    .iter()
                    .find(|s| s.catalog_id.as_deref() == Some(ds.id()))
                {
                    return found.clone();
                }
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
                Arc::new(
                    Source::new(
                        id,
                        name,
                        location,
                        documents::Counts {
                            n_cells: Some(ds.n_cells()),
                            n_genes: Some(ds.n_genes()),
                        },
                        cache,
                        catalog.budget(),
                    )
                    .for_catalog_atlas(ds.id()),
                )
            })
            .collect();
        Self::new(sources, config)
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

    /// The dataset and route of a decoded path below [`BASE_PATH`] (leading `/` removed):
    /// `<id>/<route>` (a dataset's own base URL) or `<route>` (the first dataset). `None`: an
    /// unknown dataset id.
    pub fn locate<'a>(&self, below: &'a str) -> Option<(&Arc<Source>, &'a str)> {
        match below.split_once('/') {
            Some((first, tail)) if !first.starts_with('_') => self
                .sources
                .iter()
                .find(|s| s.id == first)
                .map(|s| (s, tail.trim_start_matches('/'))),
            _ => Some((&self.sources[0], below)),
        }
    }

    /// The answer to a method the protocol does not route (§1.1): `OPTIONS` → 204, `POST` →
    /// 405, anything else but GET/HEAD → 501, the last two closing the connection.
    pub fn preflight<B>(request: &Request<B>) -> Option<Response<Body>> {
        let close = |mut r: Response<Body>| {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Some(r)
        };
        match *request.method() {
            Method::GET | Method::HEAD => None,
            Method::OPTIONS => Some(empty(StatusCode::NO_CONTENT)),
            Method::POST => close(text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")),
            _ => close(text(StatusCode::NOT_IMPLEMENTED, "Unsupported method")),
        }
    }

    /// Answer `route` (below the dataset's base URL) of `source`. `shown` is the decoded
    /// request path for messages. Store bytes stream from object storage (a deliverable
    /// attached when the store can presign); over the transport's body limit they are not read
    /// at all.
    pub async fn serve<B>(
        &self,
        request: &Request<B>,
        source: &Source,
        route: &str,
        shown: &str,
        admission: &Admission,
        identity: &ServerIdentity,
    ) -> Response<Body> {
        match route {
            "" | "index.html" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cellucid viewer UI unavailable",
            ),
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
                Some(rest) => self.anndata(request, source, rest, shown, admission).await,
                None => not_found(shown),
            },
        }
    }

    async fn anndata<B>(
        &self,
        request: &Request<B>,
        source: &Source,
        rest: &str,
        shown: &str,
        admission: &Admission,
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
                        ),
                        None => not_found(shown),
                    };
                }
                Lookup::Generated(bytes, info) => {
                    let decision = decide(request.headers(), info.size, &info.etag);
                    let body = match decision {
                        Decision::Full => Body::bytes(bytes),
                        Decision::Partial { start, end } => {
                            // Bounds come from `decide`, within the generated bytes.
                            Body::bytes(bytes.slice(start as usize..=end as usize))
                        }
                        _ => Body::empty(),
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
                    return bytes_response(decision, &info, Body::empty());
                }
            };
            let len = decision.body_len(info.size);
            if request.method() == Method::HEAD {
                return bytes_response(decision, &info, Body::empty());
            }
            // The object itself, by redirect, when the transport cannot carry it (S3 serves the
            // same bytes, range and ETag).
            let deliverable = source
                .location
                .signer
                .clone()
                .map(|signer| Deliverable::store_object(signer, path.clone()));
            if admission.body_limit.is_some_and(|limit| len > limit) {
                return bytes_response(
                    decision,
                    &info,
                    Body::withheld(len).with_deliverable(deliverable),
                );
            }
            match source.get_range(&path, &info, range).await {
                Ok(Some(stream)) => {
                    let body = Body::stream(stream, len).with_deliverable(deliverable);
                    return bytes_response(decision, &info, body);
                }
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
        r
    }
}

/// The headers every 0.9 response carries (§1.4): CORS echo for allowed origins with `Vary:
/// Origin`, allowed methods and headers, the exposed headers, `Cache-Control: no-cache`.
pub fn common_headers(cors: &CorsPolicy, headers: &mut HeaderMap, origin: Option<&str>) {
    if let Some(origin) = origin
        && cors.allows(origin)
        && let Ok(v) = HeaderValue::from_str(origin)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    } else if cors.allows_any() {
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

/// `404 Not found: <path>` (§1.1).
pub fn not_found(path: &str) -> Response<Body> {
    text(StatusCode::NOT_FOUND, &format!("Not found: {path}"))
}

fn json_response(value: &serde_json::Value) -> Response<Body> {
    crate::http::response::json_bytes(Bytes::from(python_json(value)))
}

fn source_error(error: &SourceError) -> Response<Body> {
    tracing::warn!(target: "cellucid_edge::v09", "store failure: {error}");
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "The data store is unavailable; retry shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
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
            return r;
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

/// The 0.9 datasets of a `--ready` store: the catalogue's first atlas served from another
/// store (a Cellucid-ready copy, an `.h5ad` or a `.zarr.zip` of it), keeping its id and name.
/// The store is checked now (its size read, or its consolidated metadata synthesised), as
/// cellucid 0.9.5 does at start-up.
pub async fn ready_frontend(
    catalogue_frontend: &Frontend,
    ready: &str,
) -> Result<Frontend, FrontendError> {
    let first = &catalogue_frontend.sources()[0];
    let location = SourceLocation::open(ready)?;
    let counts = if location.kind == StoreKind::ZarrFolder {
        first.counts
    } else {
        documents::Counts::default()
    };
    let mut source = Source::new(
        first.id.clone(),
        first.name.clone(),
        location,
        counts,
        None,
        first.budget(),
    );
    if let Some(id) = &first.catalog_id {
        source = source.for_catalog_atlas(id);
    }
    source.file_size().await?;
    if source.location.kind == StoreKind::ZarrFolder {
        source.synthesised().await?;
    }
    Frontend::new(vec![Arc::new(source)], catalogue_frontend.config().clone())
}
