//! The AWS Lambda transport: API Gateway HTTP API (payload 2.0), REST API (payload 1.0, stage
//! prefix removed) and function URL events → [`App::handle`] → a buffered Lambda response.
//!
//! Everything the viewer sees (routes, headers, CORS, gzip, ETags) comes from the same [`App`]
//! as `cellucid-edge serve`; this module only translates envelopes:
//!
//! * the event is decoded by `lambda_http` into an `http::Request`; the stage prefix that
//!   `lambda_http` puts in front of REST API (and named-stage HTTP API) paths is removed, so
//!   `/prod/points_3d.bin` is routed as `/points_3d.bin`;
//! * `/_cellucid/info` reports the request's `Host` (and forwarded port), not a bound address;
//! * binary bodies leave as `Body::Binary`, which `lambda_http` base64-encodes in the envelope;
//!   JSON and `text/plain` bodies leave as text;
//! * a body that would not fit a buffered Lambda response (6 MB of envelope, about 4.5 MB of raw
//!   body after base64; [`LambdaConfig::max_body_bytes`]) goes through
//!   [`LambdaHandler::oversized`] instead of making the gateway answer 502.
//!
//! Configuration comes from the environment ([`LambdaConfig::from_env`]); the atlas is opened
//! once per container (at init by default, else on the first request) and every cache stays
//! warm across invocations.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Body, Context, LambdaEvent, RequestExt, Service, service_fn};
use tokio::sync::OnceCell;

use crate::cache::ArtifactCache;
use crate::catalog::{Catalog, CatalogError};
use crate::dataset::DatasetOptions;
use crate::http::{App, AppConfig, CorsPolicy, ServerIdentity};
use crate::store::{ReadMetrics, StoreUrlError, open_store_url};

/// Default [`LambdaConfig::max_body_bytes`]: the largest raw body whose base64 form (4/3 of it)
/// plus headers still fits the 6 MB (6 291 456 bytes) buffered response limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4_500_000;

/// Default [`LambdaConfig::presign_expires`]: long enough for a slow download to start, short
/// enough that a leaked URL soon stops working.
pub const DEFAULT_PRESIGN_EXPIRES: std::time::Duration = std::time::Duration::from_secs(300);

/// Largest raw body a buffered response can carry at all: 6 MiB of envelope, base64-encoded.
const HARD_MAX_BODY_BYTES: usize = 6 * 1024 * 1024 / 4 * 3;

/// Environment variable names read by [`LambdaConfig::from_env`].
pub mod env {
    /// Store URL of one atlas, or of a root holding several (default: the embedded demo).
    pub const DATA_URL: &str = "CELLUCID_DATA_URL";
    /// Cache prefix URL (derived artifacts memoised on object storage).
    pub const CACHE_URL: &str = "CELLUCID_CACHE_URL";
    /// Allowed CORS origins, comma-separated, same syntax as `serve --cors`.
    pub const ALLOWED_ORIGINS: &str = "CELLUCID_ALLOWED_ORIGINS";
    /// Largest raw response body returned inline (bytes).
    pub const MAX_BODY_BYTES: &str = "CELLUCID_MAX_BODY_BYTES";
    /// Lifetime of the presigned URLs large responses redirect to (seconds, 1–604800).
    pub const PRESIGN_SECONDS: &str = "CELLUCID_PRESIGN_SECONDS";
    /// Secret for share links: when set, only `/s/<token>/…` paths signed with it are served
    /// (`cellucid-edge share`).
    pub const SHARE_SECRET: &str = "CELLUCID_SHARE_SECRET";
    /// Bytes of rendered artifacts kept in memory per container.
    pub const MEMORY_CACHE_BYTES: &str = "CELLUCID_MEMORY_CACHE_BYTES";
    /// `1` (default): open the atlas during init; `0`: on the first request.
    pub const OPEN_AT_INIT: &str = "CELLUCID_OPEN_AT_INIT";
    /// Dataset name shown in the viewer.
    pub const DATASET_NAME: &str = "CELLUCID_DATASET_NAME";
    /// Dataset id.
    pub const DATASET_ID: &str = "CELLUCID_DATASET_ID";
    /// obsm key of the latent space.
    pub const LATENT_KEY: &str = "CELLUCID_LATENT_KEY";
    /// var column holding gene ids.
    pub const GENE_ID_COLUMN: &str = "CELLUCID_GENE_ID_COLUMN";
    /// Log filter (tracing-subscriber syntax); falls back to `AWS_LAMBDA_LOG_LEVEL`, then `info`.
    pub const LOG: &str = "CELLUCID_LOG";
    /// `json` (default, for CloudWatch) or `text`.
    pub const LOG_FORMAT: &str = "CELLUCID_LOG_FORMAT";
    /// Strict profile (#14): `8` or `16` to serve quantised gene and continuous obs values
    /// under `/strict` (float32 when unset).
    pub const QUANTIZE: &str = "CELLUCID_QUANTIZE";
}

/// Log output format of the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (CloudWatch Logs Insights discovers the fields).
    Json,
    /// Human-readable lines without colours.
    Text,
}

/// The function's configuration, read from the environment once per container.
#[derive(Clone)]
pub struct LambdaConfig {
    /// Store URL of the atlas or of a root of atlases; `None` serves the embedded demo.
    pub data_url: Option<String>,
    /// Cache prefix URL, if any.
    pub cache_url: Option<String>,
    /// CORS allow-list entries (`*`, `default`, or exact origins); empty = built-in list.
    pub allowed_origins: Vec<String>,
    /// Largest raw body answered inline; larger ones go through [`LambdaHandler::oversized`].
    pub max_body_bytes: usize,
    /// Lifetime of the presigned URL a large response redirects to.
    pub presign_expires: std::time::Duration,
    /// Share-link secret (never logged): when set, every request needs a valid share token.
    pub share_secret: Option<String>,
    /// Bytes of rendered artifacts kept in memory.
    pub memory_cache_bytes: u64,
    /// Open the atlas during init (`true`) or on the first request.
    pub open_at_init: bool,
    /// How the atlas is interpreted.
    pub dataset: DatasetOptions,
    /// Log filter.
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
    /// The strict profile under `/strict` (#14).
    pub strict: crate::protocol::strict::StrictConfig,
}

impl std::fmt::Debug for LambdaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaConfig")
            .field("data_url", &self.data_url)
            .field("cache_url", &self.cache_url)
            .field("allowed_origins", &self.allowed_origins)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("presign_expires", &self.presign_expires)
            .field(
                "share_secret",
                &self.share_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("memory_cache_bytes", &self.memory_cache_bytes)
            .field("open_at_init", &self.open_at_init)
            .field("dataset", &self.dataset)
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .field("strict", &self.strict)
            .finish()
    }
}

impl Default for LambdaConfig {
    fn default() -> Self {
        LambdaConfig {
            data_url: None,
            cache_url: None,
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            presign_expires: DEFAULT_PRESIGN_EXPIRES,
            share_secret: None,
            memory_cache_bytes: AppConfig::default().memory_cache_bytes,
            open_at_init: true,
            dataset: DatasetOptions::default(),
            log: "info".into(),
            log_format: LogFormat::Json,
            strict: crate::protocol::strict::StrictConfig::default(),
        }
    }
}

/// A configuration variable with an unusable value.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {var}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    /// Variable name.
    pub var: &'static str,
    /// Value found.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl LambdaConfig {
    /// Read the configuration from the process environment (see [`env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the configuration through `lookup` (a variable name → its value). Empty values
    /// count as unset, so infrastructure code may always pass every variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let defaults = LambdaConfig::default();
        let max_body_bytes = match get(env::MAX_BODY_BYTES) {
            Some(v) => parse_size(env::MAX_BODY_BYTES, &v)?,
            None => defaults.max_body_bytes,
        };
        if max_body_bytes == 0 {
            return Err(ConfigError {
                var: env::MAX_BODY_BYTES,
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let presign_expires = match get(env::PRESIGN_SECONDS) {
            Some(v) => {
                let seconds = parse_size(env::PRESIGN_SECONDS, &v)?;
                // SigV4 presigned URLs live at most seven days.
                if !(1..=604_800).contains(&seconds) {
                    return Err(ConfigError {
                        var: env::PRESIGN_SECONDS,
                        value: v,
                        reason: "must be between 1 and 604800 seconds (7 days)".into(),
                    });
                }
                std::time::Duration::from_secs(seconds as u64)
            }
            None => defaults.presign_expires,
        };
        let memory_cache_bytes = match get(env::MEMORY_CACHE_BYTES) {
            Some(v) => parse_size(env::MEMORY_CACHE_BYTES, &v)? as u64,
            None => defaults.memory_cache_bytes,
        };
        let open_at_init = match get(env::OPEN_AT_INIT) {
            Some(v) => parse_bool(env::OPEN_AT_INIT, &v)?,
            None => defaults.open_at_init,
        };
        let log_format = match get(env::LOG_FORMAT).as_deref() {
            None => LogFormat::Json,
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(v) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(v) => {
                return Err(ConfigError {
                    var: env::LOG_FORMAT,
                    value: v.to_string(),
                    reason: "expected `json` or `text`".into(),
                });
            }
        };
        let log = get(env::LOG)
            .or_else(|| get("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_ascii_lowercase()))
            .unwrap_or(defaults.log);
        let allowed_origins = get(env::ALLOWED_ORIGINS)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut dataset = DatasetOptions {
            dataset_name: get(env::DATASET_NAME),
            dataset_id: get(env::DATASET_ID),
            latent_key: get(env::LATENT_KEY),
            ..DatasetOptions::default()
        };
        if let Some(column) = get(env::GENE_ID_COLUMN) {
            dataset.gene_id_column = column;
        }
        let strict = crate::protocol::strict::StrictConfig {
            quantize: match get(env::QUANTIZE) {
                Some(v) => Some(
                    v.parse()
                        .map_err(|e: crate::model::quantize::BadQuantBits| ConfigError {
                            var: env::QUANTIZE,
                            value: v.clone(),
                            reason: e.to_string(),
                        })?,
                ),
                None => None,
            },
        };
        Ok(LambdaConfig {
            data_url: get(env::DATA_URL),
            cache_url: get(env::CACHE_URL),
            allowed_origins,
            max_body_bytes,
            presign_expires,
            share_secret: get(env::SHARE_SECRET),
            memory_cache_bytes,
            open_at_init,
            dataset,
            log,
            log_format,
            strict,
        })
    }
}

fn parse_size(var: &'static str, value: &str) -> Result<usize, ConfigError> {
    value
        .replace('_', "")
        .parse::<usize>()
        .map_err(|e| ConfigError {
            var,
            value: value.to_string(),
            reason: format!("expected a byte count: {e}"),
        })
}

fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError {
            var,
            value: value.to_string(),
            reason: "expected 1/0, true/false".into(),
        }),
    }
}

/// Set up logging for the function: JSON lines by default (CloudWatch), with the invocation's
/// `requestId` span attached to every line. Call once, before the first log line.
pub fn init_logging(config: &LambdaConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// Why the atlas could not be opened (logged; the client gets a 503).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data or cache URL is not usable.
    #[error(transparent)]
    Store(#[from] StoreUrlError),
    /// The catalogue could not be opened.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The share secret is unusable (e.g. too short).
    #[error("CELLUCID_SHARE_SECRET: {0}")]
    Share(#[from] crate::share::ShareError),
}

/// Why an event could not be handled by [`LambdaHandler::handle_event`].
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The JSON is not an API Gateway (REST or HTTP API) or function URL event.
    #[error("not an API Gateway or function URL event: {0}")]
    NotAnHttpEvent(#[source] serde_json::Error),
    /// The response envelope could not be serialised.
    #[error("cannot serialise the response envelope: {0}")]
    Envelope(#[source] serde_json::Error),
}

/// Open the atlas (or catalogue) and build the [`App`] described by `config`.
pub async fn open_app(config: &LambdaConfig) -> Result<App, OpenError> {
    let metrics = Arc::new(ReadMetrics::default());
    let location = match &config.data_url {
        Some(url) => open_store_url(url)?,
        None => crate::demo::demo_location().await?,
    };
    let catalog = Catalog::open(location, &config.dataset, metrics.clone()).await?;
    let cache = match &config.cache_url {
        Some(url) => Some(ArtifactCache::new(&open_store_url(url)?, metrics)),
        None => None,
    };
    let app_config = AppConfig {
        cors: CorsPolicy::from_list(&config.allowed_origins),
        memory_cache_bytes: config.memory_cache_bytes,
        cache,
        // Replaced per request by the Host the client used (see `identity_of`).
        identity: ServerIdentity {
            host: "localhost".into(),
            port: 443,
        },
        share: match &config.share_secret {
            Some(secret) => Some(crate::share::ShareSecret::new(secret.as_bytes().to_vec())?),
            None => None,
        },
        strict: config.strict,
        ..AppConfig::default()
    };
    let app = App::new(catalog, app_config);
    // 0.9 store bytes too large for a buffered response: redirect to S3 (see `crate::v09`).
    Ok(crate::v09::for_buffered_transport(
        app,
        config.max_body_bytes,
    ))
}

/// The per-container state: configuration plus the [`App`], opened once and kept warm.
pub struct LambdaHandler {
    config: LambdaConfig,
    cors: CorsPolicy,
    app: OnceCell<Arc<App>>,
}

impl std::fmt::Debug for LambdaHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaHandler")
            .field("config", &self.config)
            .field("opened", &self.app.initialized())
            .finish()
    }
}

impl LambdaHandler {
    /// A handler that opens the atlas on first use ([`LambdaHandler::app`]).
    pub fn new(config: LambdaConfig) -> Self {
        if config.max_body_bytes > HARD_MAX_BODY_BYTES {
            tracing::warn!(
                target: "cellucid_edge::lambda",
                max_body_bytes = config.max_body_bytes,
                hard_limit = HARD_MAX_BODY_BYTES,
                "{} is above what a buffered Lambda response can carry; larger bodies will fail at the gateway",
                env::MAX_BODY_BYTES
            );
        }
        LambdaHandler {
            cors: CorsPolicy::from_list(&config.allowed_origins),
            config,
            app: OnceCell::new(),
        }
    }

    /// A handler around an already built [`App`] (tests, embedding).
    pub fn with_app(config: LambdaConfig, app: Arc<App>) -> Self {
        let handler = Self::new(config);
        // A fresh cell is empty, so this cannot fail.
        let _ = handler.app.set(app);
        handler
    }

    /// The configuration.
    pub fn config(&self) -> &LambdaConfig {
        &self.config
    }

    /// The app, opened on first call. A failed open is not remembered: the next call (the next
    /// request) tries again, so a transient store failure at init does not poison the container.
    pub async fn app(&self) -> Result<&Arc<App>, OpenError> {
        self.app
            .get_or_try_init(|| async {
                let started = Instant::now();
                let app = open_app(&self.config).await?;
                for ds in app.catalog().datasets() {
                    tracing::info!(
                        target: "cellucid_edge::lambda",
                        dataset = ds.id(),
                        n_cells = ds.n_cells(),
                        n_genes = ds.n_genes(),
                        open_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "atlas opened"
                    );
                }
                Ok(Arc::new(app))
            })
            .await
    }

    /// Answer one decoded Lambda HTTP request.
    pub async fn handle(&self, request: lambda_http::Request) -> Response<Body> {
        let app = match self.app().await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(target: "cellucid_edge::lambda", "cannot open the atlas: {e}");
                let mut r = self.unavailable(request.headers());
                if request.method() == http::Method::HEAD {
                    *r.body_mut() = Bytes::new();
                }
                return into_lambda_response(r);
            }
        };
        let app_request = match self.app_request(&request) {
            Ok(r) => r,
            Err(message) => {
                let mut r = text_response(StatusCode::BAD_REQUEST, message.to_string());
                self.add_common_headers(r.headers_mut(), request.headers());
                return into_lambda_response(r);
            }
        };
        let response = app.handle(&app_request).await;
        // The 0.9 front-end applies its own limit (redirect to the store object) and answers
        // HEAD from metadata, so its responses are never judged here.
        let v09 = crate::v09::is_v09_path(app_request.uri().path());
        let response = if !v09 && self.too_large(&response) {
            self.oversized(app, &app_request, response).await
        } else {
            response
        };
        into_lambda_response(response)
    }

    /// Decode `event` (the JSON a Lambda receives from API Gateway or a function URL), answer
    /// it, and return the response envelope exactly as the function would send it back — the
    /// same conversions as `lambda_http::run`, without the Runtime API loop (tests, benchmarks).
    pub async fn handle_event(
        &self,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, EventError> {
        let payload: LambdaRequest =
            serde_json::from_value(event).map_err(EventError::NotAnHttpEvent)?;
        let service = service_fn(|request: lambda_http::Request| async move {
            Ok::<_, Infallible>(self.handle(request).await)
        });
        let mut adapter = lambda_http::Adapter::from(service);
        let envelope = match adapter
            .call(LambdaEvent::new(payload, Context::default()))
            .await
        {
            Ok(envelope) => envelope,
            Err(never) => match never {},
        };
        serde_json::to_value(&envelope).map_err(EventError::Envelope)
    }

    /// Whether `response` cannot travel inline. Binary bodies are base64 in the envelope, so
    /// their raw size is compared with [`LambdaConfig::max_body_bytes`]; text bodies are
    /// JSON-escaped, so their escaped size is compared with the same envelope budget (4/3 of
    /// it). HEAD responses are judged by their `Content-Length`, so HEAD and GET agree.
    pub fn too_large(&self, response: &Response<Bytes>) -> bool {
        let body = response.body();
        let max = self.config.max_body_bytes;
        if body.is_empty() {
            let declared = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            return declared > max;
        }
        if is_text(response.headers()) {
            json_escaped_len(body) > max.saturating_mul(4) / 3
        } else {
            body.len() > max
        }
    }

    /// Answer for a response too large for a buffered Lambda response: `307 Temporary
    /// Redirect` to a short-lived presigned GET URL of the artifact in the cache prefix (stored
    /// gzip, with `Content-Encoding`/`Content-Type` metadata; written there first when
    /// missing), carrying the CORS headers of `response` so the browser follows it. The bucket's
    /// CORS rule must allow origin `*` for GET/HEAD: after a cross-origin redirect browsers send
    /// `Origin: null` (see `infra/README.md`).
    ///
    /// When no cache URL is configured, the cache backend cannot presign (not S3), or the
    /// response is not an artifact, the client gets a clear `413` with the same CORS headers,
    /// never the gateway's bare 502.
    pub async fn oversized(
        &self,
        app: &App,
        request: &Request<()>,
        response: Response<Bytes>,
    ) -> Response<Bytes> {
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .max(response.body().len());
        let mut r = match app
            .presigned_artifact(request, self.config.presign_expires)
            .await
        {
            Ok(Some(url)) => match HeaderValue::from_str(&url) {
                Ok(location) => {
                    tracing::info!(
                        target: "cellucid_edge::lambda",
                        path = %request.uri().path(),
                        body_bytes = declared,
                        "large response redirected to the cache prefix"
                    );
                    let mut r = Response::new(Bytes::new());
                    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
                    r.headers_mut().insert(header::LOCATION, location);
                    r.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                    r
                }
                Err(_) => self.too_large_response(declared),
            },
            Ok(None) => {
                tracing::warn!(
                    target: "cellucid_edge::lambda",
                    path = %request.uri().path(),
                    body_bytes = declared,
                    max_body_bytes = self.config.max_body_bytes,
                    cache = self.config.cache_url.is_some(),
                    "response body too large for a buffered Lambda response and no presigning cache"
                );
                self.too_large_response(declared)
            }
            Err(e) => e.response(),
        };
        copy_cors(response.headers(), r.headers_mut());
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if request.method() == http::Method::HEAD {
            *r.body_mut() = Bytes::new();
        }
        r
    }

    fn too_large_response(&self, declared: usize) -> Response<Bytes> {
        let message = format!(
            "Response body of {declared} bytes is larger than a buffered Lambda response can carry \
             ({} = {} bytes; the 6 MB envelope holds about 4.5 MB after base64). Set {} to an \
             s3:// prefix so that large artifacts are answered with a redirect to the cache prefix.",
            env::MAX_BODY_BYTES,
            self.config.max_body_bytes,
            env::CACHE_URL
        );
        text_response(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// The request as the [`App`] sees it: stage prefix removed, identity from `Host`.
    fn app_request(&self, request: &lambda_http::Request) -> Result<Request<()>, &'static str> {
        let stage = stage_of(request.request_context_ref());
        let path = strip_stage(request.uri().path(), stage.as_deref());
        let path_and_query = match request.uri().query() {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path.to_string(),
        };
        let uri: Uri = path_and_query.parse().map_err(|_| "Invalid request path")?;
        let mut builder = Request::builder().method(request.method().clone()).uri(uri);
        if let Some(headers) = builder.headers_mut() {
            *headers = request.headers().clone();
        }
        let mut app_request = builder.body(()).map_err(|_| "Invalid request")?;
        app_request.extensions_mut().insert(identity_of(
            request.headers(),
            request.request_context_ref(),
        ));
        Ok(app_request)
    }

    fn add_common_headers(&self, headers: &mut HeaderMap, request_headers: &HeaderMap) {
        let origin = request_headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        crate::http::apply_common_headers(&self.cors, headers, origin);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    fn unavailable(&self, request_headers: &HeaderMap) -> Response<Bytes> {
        let mut r = text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "The atlas could not be opened; see the function's logs".to_string(),
        );
        self.add_common_headers(r.headers_mut(), request_headers);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        r
    }
}

/// Run the Lambda runtime loop with `handler` until the sandbox is shut down.
pub async fn run(handler: Arc<LambdaHandler>) -> Result<(), lambda_http::Error> {
    lambda_http::run(service_fn(move |request: lambda_http::Request| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(request).await) }
    }))
    .await
}

fn stage_of(context: Option<&RequestContext>) -> Option<String> {
    match context? {
        RequestContext::ApiGatewayV1(c) => c.stage.clone(),
        RequestContext::ApiGatewayV2(c) => c.stage.clone(),
        _ => None,
    }
}

/// Remove the `/<stage>` prefix `lambda_http` puts in front of paths of named stages (unless
/// `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` told it not to).
fn strip_stage<'a>(path: &'a str, stage: Option<&str>) -> &'a str {
    let Some(stage) = stage.filter(|s| !s.is_empty() && *s != "$default") else {
        return path;
    };
    if std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some() {
        return path;
    }
    match path.strip_prefix('/').and_then(|p| p.strip_prefix(stage)) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// `/_cellucid/info`'s host and port: what the client used (`Host`, `X-Forwarded-Port`), else
/// the gateway's domain name, port 443.
fn identity_of(headers: &HeaderMap, context: Option<&RequestContext>) -> ServerIdentity {
    let host_header = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|h| !h.is_empty());
    let (host, host_port) = match host_header {
        Some(h) => split_host_port(h),
        None => {
            let domain = match context {
                Some(RequestContext::ApiGatewayV1(c)) => c.domain_name.clone(),
                Some(RequestContext::ApiGatewayV2(c)) => c.domain_name.clone(),
                _ => None,
            };
            (domain.unwrap_or_else(|| "localhost".into()), None)
        }
    };
    let forwarded_port = headers
        .get("x-forwarded-port")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse::<u16>().ok());
    let scheme_port = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|p| {
            if p.trim().eq_ignore_ascii_case("http") {
                80
            } else {
                443
            }
        });
    ServerIdentity {
        host,
        port: host_port.or(forwarded_port).or(scheme_port).unwrap_or(443),
    }
}

fn split_host_port(host: &str) -> (String, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        if let Some((addr, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (format!("[{addr}]"), port);
        }
        return (host.to_string(), None);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(port) => (name.to_string(), Some(port)),
            Err(_) => (host.to_string(), None),
        },
        _ => (host.to_string(), None),
    }
}

/// Whether `lambda_http` will send this body as text (it decides from the same headers).
fn is_text(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::CONTENT_ENCODING) {
        return false;
    }
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    [
        "text",
        "application/json",
        "application/javascript",
        "application/xml",
        "application/yaml",
    ]
    .iter()
    .any(|p| content_type.starts_with(p))
        || {
            let mime = content_type.split(';').next().unwrap_or_default().trim();
            ["+xml", "+yaml", "+json"].iter().any(|s| mime.ends_with(s))
        }
}

/// Length of `body` once written as a JSON string (quotes excluded).
fn json_escaped_len(body: &[u8]) -> usize {
    body.iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

fn text_response(status: StatusCode, message: String) -> Response<Bytes> {
    let body = Bytes::from(message);
    let len = body.len();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn copy_cors(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if is_cors_header(name) {
            to.insert(name.clone(), value.clone());
        }
    }
}

fn is_cors_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("access-control-") || name == header::VARY
}

/// `Response<Bytes>` → the `lambda_http` response: binary bodies as [`Body::Binary`] (base64 in
/// the envelope), text bodies as [`Body::Text`], empty bodies as [`Body::Empty`].
fn into_lambda_response(response: Response<Bytes>) -> Response<Body> {
    let text = is_text(response.headers());
    response.map(|bytes| {
        if bytes.is_empty() {
            Body::Empty
        } else if text {
            match String::from_utf8(bytes.to_vec()) {
                Ok(s) => Body::Text(s),
                Err(e) => Body::Binary(e.into_bytes()),
            }
        } else {
            Body::Binary(bytes.to_vec())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_prefix_is_removed_once() {
        assert_eq!(
            strip_stage("/prod/points_3d.bin", Some("prod")),
            "/points_3d.bin"
        );
        assert_eq!(strip_stage("/prod", Some("prod")), "/");
        assert_eq!(strip_stage("/prod/prod/x", Some("prod")), "/prod/x");
        assert_eq!(strip_stage("/production/x", Some("prod")), "/production/x");
        assert_eq!(
            strip_stage("/points_3d.bin", Some("$default")),
            "/points_3d.bin"
        );
        assert_eq!(strip_stage("/points_3d.bin", None), "/points_3d.bin");
    }

    #[test]
    fn host_and_port() {
        assert_eq!(
            split_host_port("127.0.0.1:9000"),
            ("127.0.0.1".into(), Some(9000))
        );
        assert_eq!(
            split_host_port("abc.lambda-url.eu-west-1.on.aws"),
            ("abc.lambda-url.eu-west-1.on.aws".into(), None)
        );
        assert_eq!(split_host_port("[::1]:8080"), ("[::1]".into(), Some(8080)));
        assert_eq!(
            split_host_port("host:notaport"),
            ("host:notaport".into(), None)
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("api.example.org"));
        headers.insert("x-forwarded-port", HeaderValue::from_static("443"));
        let id = identity_of(&headers, None);
        assert_eq!((id.host.as_str(), id.port), ("api.example.org", 443));
    }

    #[test]
    fn config_from_lookup() {
        let vars = [
            (env::DATA_URL, "s3://bucket/atlases/"),
            (env::ALLOWED_ORIGINS, "https://a.example, default"),
            (env::MAX_BODY_BYTES, "1_000_000"),
            (env::SHARE_SECRET, "hunter2"),
            (env::OPEN_AT_INIT, "0"),
            (env::CACHE_URL, ""),
        ];
        let lookup = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let config = LambdaConfig::from_lookup(lookup).expect("valid config");
        assert_eq!(config.data_url.as_deref(), Some("s3://bucket/atlases/"));
        assert_eq!(config.cache_url, None);
        assert_eq!(config.allowed_origins, vec!["https://a.example", "default"]);
        assert_eq!(config.max_body_bytes, 1_000_000);
        assert!(!config.open_at_init);
        assert!(!format!("{config:?}").contains("hunter2"));
        let bad = |k: &str| (k == env::MAX_BODY_BYTES).then(|| "lots".to_string());
        assert!(LambdaConfig::from_lookup(bad).is_err());
    }

    #[test]
    fn text_and_binary_sizes() {
        assert_eq!(json_escaped_len(br#"{"a":"b\c"}"#), 11 + 4 + 1);
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(is_text(&h));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!is_text(&h));
        h.remove(header::CONTENT_ENCODING);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        assert!(!is_text(&h));
    }
}
