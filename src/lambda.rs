//! The AWS Lambda transport: API Gateway HTTP API (payload 2.0), REST API (payload 1.0, stage
//! prefix removed) and function URL events → [`Service::handle`] → a buffered Lambda response.
//!
//! Everything the viewer sees (routes, headers, CORS, gzip, ETags, share links, the Host and
//! dataset rules) comes from the same [`Service`] as `cellucid-edge serve`; this module only
//! translates envelopes and delivers bodies, and never looks at paths:
//!
//! * the event is decoded by `lambda_http` into an `http::Request`; the stage prefix that
//!   `lambda_http` puts in front of REST API (and named-stage HTTP API) paths is removed, so
//!   `/prod/points_3d.bin` is handed on as `/points_3d.bin`;
//! * the request carries the client's `Host` as the [`ServerIdentity`] `/_cellucid/info`
//!   reports, the invocation's deadline minus [`Config::deadline_margin`] as its [`Deadline`]
//!   (a slow store gets a 503 with `Retry-After` and CORS before the gateway gives up), and the
//!   [`BodyLimit`] of a buffered response;
//! * bodies are collected (a stream that fails or ends short is a 503, never a short 200) and
//!   leave as `Body::Binary` (base64 in the envelope) or text; a body over
//!   [`Config::max_body_bytes`] (6 MB of envelope hold about 4.5 MB after base64) is answered
//!   `307` to a presigned URL of its [`Deliverable`](crate::service::Deliverable) — the
//!   artifact in an S3 cache prefix, or the S3 store object — valid at most
//!   [`Config::presign_ttl`] and never past the share token's expiry; without a deliverable, a
//!   clear `413`. HEAD responses are headers only and always answered inline.
//!
//! Configuration comes from the environment ([`Config::from_env`]); the service is opened once
//! per container (at init by default, else on the first request) and every cache stays warm
//! across invocations. A failed open is answered by its [`ErrorClass`]: a transient one (the
//! store failed or was too slow) with `503` + `Retry-After`, and opened again on the next
//! request; a permanent one (no store at the URL, a damaged store, wrong credentials or
//! configuration) with a `500` (`507` for an atlas over the memory budget) naming the problem,
//! remembered for the container's life — nothing is gained by reading a broken store again on
//! every request; a fixed store is picked up by new containers (e.g. after updating the
//! function's configuration).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Body as LambdaBody, Context, LambdaEvent, RequestExt, Service as _, service_fn};
use tokio::sync::OnceCell;

use crate::http::{ServerIdentity, apply_common_headers};
use crate::service::{
    Body, BodyLimit, Config, ConfigError, Deadline, DeliverError, Service, ServiceError,
};
use crate::store::ErrorClass;

pub use crate::service::config::{DEFAULT_MAX_BODY_BYTES, DEFAULT_PRESIGN_TTL};

/// Largest raw body a buffered response can carry at all: 6 MiB of envelope, base64-encoded.
const HARD_MAX_BODY_BYTES: usize = 6 * 1024 * 1024 / 4 * 3;

/// Environment variable names of the function: the service's ([`crate::service::config::env`])
/// and the log settings.
pub mod env {
    pub use crate::service::config::env::*;
    /// Log filter (tracing-subscriber syntax); falls back to `AWS_LAMBDA_LOG_LEVEL`, then `info`.
    pub const LOG: &str = "CELLUCID_LOG";
    /// `json` (default, for CloudWatch) or `text`.
    pub const LOG_FORMAT: &str = "CELLUCID_LOG_FORMAT";
}

/// Log output format of the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (CloudWatch Logs Insights discovers the fields).
    Json,
    /// Human-readable lines without colours.
    Text,
}

/// How the function logs, read from the environment once per container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// Log filter.
    pub filter: String,
    /// Log format.
    pub format: LogFormat,
}

impl Logging {
    /// The log settings from the process environment ([`env::LOG`], [`env::LOG_FORMAT`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The log settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let format = match get(env::LOG_FORMAT).as_deref() {
            None => LogFormat::Json,
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(v) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    var: env::LOG_FORMAT,
                    value: v.to_string(),
                    reason: "expected `json` or `text`".into(),
                });
            }
        };
        let filter = get(env::LOG)
            .or_else(|| get("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_ascii_lowercase()))
            .unwrap_or_else(|| "info".into());
        Ok(Logging { filter, format })
    }
}

/// Set up logging for the function: JSON lines by default (CloudWatch), with the invocation's
/// `requestId` span attached to every line. Call once, before the first log line.
pub fn init_logging(logging: &Logging) {
    let filter = tracing_subscriber::EnvFilter::try_new(&logging.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    let result = match logging.format {
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

/// Why an event could not be handled by [`LambdaHandler::handle_event`].
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The JSON is not an API Gateway (REST or HTTP API) or function URL event.
    #[error("not an API Gateway or function URL event")]
    NotAnHttpEvent(#[source] serde_json::Error),
    /// The response envelope could not be serialised.
    #[error("cannot serialise the response envelope")]
    Envelope(#[source] serde_json::Error),
}

/// The per-container state: configuration plus the [`Service`], opened once and kept warm.
pub struct LambdaHandler {
    config: Config,
    service: OnceCell<Arc<Service>>,
    /// A permanent open failure, remembered: it is answered without opening again.
    failure: std::sync::OnceLock<Arc<ServiceError>>,
}

impl std::fmt::Debug for LambdaHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaHandler")
            .field("config", &self.config)
            .field("opened", &self.service.initialized())
            .field("failed", &self.failure.get().map(|e| e.to_string()))
            .finish()
    }
}

impl LambdaHandler {
    /// A handler that opens the service on first use ([`LambdaHandler::service`]).
    pub fn new(config: Config) -> Self {
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
            config,
            service: OnceCell::new(),
            failure: std::sync::OnceLock::new(),
        }
    }

    /// A handler around an already built [`Service`] (tests, embedding). The transport's
    /// settings (body limit, presigned URL lifetime, deadline margin) come from `config`.
    pub fn with_service(config: Config, service: Arc<Service>) -> Self {
        let handler = Self::new(config);
        // A fresh cell is empty, so this cannot fail.
        let _ = handler.service.set(service);
        handler
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The service, opened on first call. A transient failure ([`ServiceError::is_transient`])
    /// is not remembered: the next call (the next request) tries again, so a store hiccup at
    /// init does not poison the container. A permanent one is remembered and returned again
    /// without touching the store.
    pub async fn service(&self) -> Result<&Arc<Service>, Arc<ServiceError>> {
        if let Some(failure) = self.failure.get() {
            return Err(failure.clone());
        }
        let opened = self
            .service
            .get_or_try_init(|| async {
                let started = Instant::now();
                let service = Service::open(self.config.clone()).await?;
                for ds in service.catalog().datasets() {
                    tracing::info!(
                        target: "cellucid_edge::lambda",
                        dataset = ds.id(),
                        n_cells = ds.n_cells(),
                        n_genes = ds.n_genes(),
                        open_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "atlas opened"
                    );
                }
                Ok(Arc::new(service))
            })
            .await;
        opened.map_err(|e: ServiceError| {
            let e = Arc::new(e);
            if !e.is_transient() {
                tracing::error!(
                    target: "cellucid_edge::lambda",
                    class = ?e.class(),
                    "the atlas cannot be opened and will not be retried in this container: {e}"
                );
                return self.failure.get_or_init(|| e).clone();
            }
            e
        })
    }

    /// Answer one decoded Lambda HTTP request.
    pub async fn handle(&self, request: lambda_http::Request) -> Response<LambdaBody> {
        let deadline = self.deadline_of(request.lambda_context_ref());
        let opened = match (self.service.get(), deadline) {
            (Some(service), _) => Ok(service),
            // No time left to open the atlas: answer at once (a timeout would first poll the
            // open, which may read a whole local store before yielding).
            (None, Some(by)) if by <= Instant::now() => Err(Arc::new(ServiceError::OpenTimedOut)),
            (None, Some(by)) => tokio::time::timeout_at(by.into(), self.service())
                .await
                .unwrap_or_else(|_| Err(Arc::new(ServiceError::OpenTimedOut))),
            (None, None) => self.service().await,
        };
        let service = match opened {
            Ok(service) => service,
            Err(e) => {
                tracing::error!(target: "cellucid_edge::lambda", class = ?e.class(), "cannot open the atlas: {e}");
                let mut r = self.open_failed(&e, request.headers());
                if request.method() == http::Method::HEAD {
                    *r.body_mut() = Bytes::new();
                }
                return into_lambda_response(r);
            }
        };
        let service_request = match self.service_request(&request, deadline) {
            Ok(r) => r,
            Err(message) => {
                let mut r = text_response(StatusCode::BAD_REQUEST, message.to_string());
                self.add_common_headers(r.headers_mut(), request.headers());
                return into_lambda_response(r);
            }
        };
        let response = service.handle(service_request).await;
        into_lambda_response(self.deliver(response, deadline).await)
    }

    /// Decode `event` (the JSON a Lambda receives from API Gateway or a function URL), answer
    /// it, and return the response envelope exactly as the function would send it back — the
    /// same conversions as `lambda_http::run`, without the Runtime API loop (tests, benchmarks).
    /// The invocation has no deadline: the configured request timeout applies.
    pub async fn handle_event(
        &self,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, EventError> {
        self.handle_event_with(event, Context::default()).await
    }

    /// Like [`handle_event`](Self::handle_event) for an invocation that must be answered by
    /// `deadline` (what the Runtime API announces for each invocation).
    pub async fn handle_event_by(
        &self,
        event: serde_json::Value,
        deadline: SystemTime,
    ) -> Result<serde_json::Value, EventError> {
        let mut context = Context::default();
        context.deadline = deadline
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.handle_event_with(event, context).await
    }

    async fn handle_event_with(
        &self,
        event: serde_json::Value,
        context: Context,
    ) -> Result<serde_json::Value, EventError> {
        let payload: LambdaRequest =
            serde_json::from_value(event).map_err(EventError::NotAnHttpEvent)?;
        let service = service_fn(|request: lambda_http::Request| async move {
            Ok::<_, Infallible>(self.handle(request).await)
        });
        let mut adapter = lambda_http::Adapter::from(service);
        let envelope = match adapter.call(LambdaEvent::new(payload, context)).await {
            Ok(envelope) => envelope,
            Err(never) => match never {},
        };
        serde_json::to_value(&envelope).map_err(EventError::Envelope)
    }

    /// The instant by which this invocation must be answered: its deadline minus the margin
    /// (`None` when the runtime announced none).
    fn deadline_of(&self, context: Option<&Context>) -> Option<Instant> {
        let deadline_ms = context.map(|c| c.deadline).filter(|&ms| ms > 0)?;
        let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(self.config.deadline_margin);
        Some(Instant::now() + left)
    }

    /// Deliver the service's response as a buffered Lambda response: inline when it fits,
    /// else by redirect to its deliverable, else 413.
    async fn deliver(
        &self,
        response: Response<Body>,
        deadline: Option<Instant>,
    ) -> Response<Bytes> {
        let (parts, body) = response.into_parts();
        if self.too_large(&parts.headers, &body) {
            return self.oversized(&parts.headers, body, deadline).await;
        }
        let collected = match deadline {
            Some(by) => tokio::time::timeout_at(by.into(), body.collect())
                .await
                .unwrap_or(Err(crate::service::BodyError::Stalled(Duration::ZERO))),
            None => body.collect().await,
        };
        match collected {
            Ok(bytes) => Response::from_parts(parts, bytes),
            Err(e) => {
                tracing::warn!(target: "cellucid_edge::lambda", "the body could not be read whole: {e}");
                let mut r = text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The data store failed while reading; retry shortly".to_string(),
                );
                copy_cors(&parts.headers, r.headers_mut());
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
        }
    }

    /// Whether a body cannot travel inline. Binary bodies are base64 in the envelope, so their
    /// raw size is compared with [`Config::max_body_bytes`]; text bodies are JSON-escaped, so
    /// their escaped size is compared with the same envelope budget (4/3 of it). A withheld
    /// body never fits; an empty one (HEAD, 304) always does.
    fn too_large(&self, headers: &HeaderMap, body: &Body) -> bool {
        let max = self.config.max_body_bytes;
        if body.is_withheld() {
            return true;
        }
        match body.as_bytes() {
            Some(bytes) if is_text(headers) => json_escaped_len(bytes) > max.saturating_mul(4) / 3,
            _ => body.len() > max as u64,
        }
    }

    /// A body too large for a buffered response: `307 Temporary Redirect` to a presigned URL of
    /// its deliverable (the browser follows it: the bucket's CORS rule must allow origin `*`
    /// for GET/HEAD, since browsers send `Origin: null` after a cross-origin redirect; see
    /// `infra/README.md`), carrying the response's CORS headers and ETag; without one, a clear
    /// `413` with the same CORS headers — never the gateway's bare 502.
    async fn oversized(
        &self,
        headers: &HeaderMap,
        body: Body,
        deadline: Option<Instant>,
    ) -> Response<Bytes> {
        let declared = body.len();
        let mut r = match body.deliverable() {
            Some(deliverable) => {
                let presigning = deliverable.presign(self.config.presign_ttl);
                let presigned = match deadline {
                    Some(by) => tokio::time::timeout_at(by.into(), presigning).await.ok(),
                    None => Some(presigning.await),
                };
                match presigned {
                    Some(Ok(url)) => self.redirect(&url, headers, declared),
                    Some(Err(DeliverError::Expired)) => text_response(
                        StatusCode::FORBIDDEN,
                        "Forbidden: the share token expires too soon to hand out this body"
                            .to_string(),
                    ),
                    Some(Err(e)) => {
                        tracing::warn!(target: "cellucid_edge::lambda", "a large body could not be redirected: {e}");
                        retry_later_response(
                            "The cache prefix is temporarily unavailable; retry shortly",
                        )
                    }
                    None => {
                        retry_later_response("The data store did not answer in time; retry shortly")
                    }
                }
            }
            None => {
                tracing::warn!(
                    target: "cellucid_edge::lambda",
                    body_bytes = declared,
                    max_body_bytes = self.config.max_body_bytes,
                    cache = self.config.cache.is_some(),
                    "response body too large for a buffered Lambda response and nothing to redirect to"
                );
                self.too_large_response(declared)
            }
        };
        copy_cors(headers, r.headers_mut());
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    fn redirect(&self, url: &str, headers: &HeaderMap, declared: u64) -> Response<Bytes> {
        let Ok(location) = HeaderValue::from_str(url) else {
            return self.too_large_response(declared);
        };
        tracing::info!(
            target: "cellucid_edge::lambda",
            body_bytes = declared,
            "large body redirected to a presigned URL"
        );
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        r.headers_mut().insert(header::LOCATION, location);
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        if let Some(etag) = headers.get(header::ETAG) {
            r.headers_mut().insert(header::ETAG, etag.clone());
        }
        r
    }

    fn too_large_response(&self, declared: u64) -> Response<Bytes> {
        let message = format!(
            "Response body of {declared} bytes is larger than a buffered Lambda response can carry \
             ({} = {} bytes; the 6 MB envelope holds about 4.5 MB after base64). Large artifacts \
             are redirected to presigned URLs when {} is an s3:// prefix, and large store objects \
             when the atlas is on S3; otherwise request smaller ranges.",
            env::MAX_BODY_BYTES,
            self.config.max_body_bytes,
            env::CACHE_URL
        );
        text_response(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// The request as the service sees it: stage prefix removed, identity from `Host`,
    /// deadline and body limit attached.
    fn service_request(
        &self,
        request: &lambda_http::Request,
        deadline: Option<Instant>,
    ) -> Result<Request<()>, &'static str> {
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
        let mut service_request = builder.body(()).map_err(|_| "Invalid request")?;
        let extensions = service_request.extensions_mut();
        extensions.insert(identity_of(
            request.headers(),
            request.request_context_ref(),
        ));
        extensions.insert(BodyLimit(self.config.max_body_bytes as u64));
        if let Some(by) = deadline {
            extensions.insert(Deadline(by));
        }
        Ok(service_request)
    }

    fn add_common_headers(&self, headers: &mut HeaderMap, request_headers: &HeaderMap) {
        let origin = request_headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        apply_common_headers(&self.config.cors, headers, origin);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    /// The answer while the service cannot be opened, by the failure's class: `503` +
    /// `Retry-After` for a transient one, else `500` (`507` for an atlas over the memory
    /// budget) saying what is wrong — never the store's URL or a local path (those go to the
    /// log). CORS headers always, so the viewer can show the message.
    fn open_failed(&self, error: &ServiceError, request_headers: &HeaderMap) -> Response<Bytes> {
        let class = error.class();
        let (status, message) = match class {
            ErrorClass::Transient => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The atlas store is temporarily unavailable; retry shortly".to_string(),
            ),
            ErrorClass::NotFound => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "Internal server error: the function's atlas store does not exist (check {}; \
                     see the function's logs)",
                    env::DATA_URL
                ),
            ),
            ErrorClass::BadStore => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error: the function's atlas store is damaged or is not an \
                 AnnData store (see the function's logs)"
                    .to_string(),
            ),
            ErrorClass::Refused => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error: the function's atlas store refers outside itself (see \
                 the function's logs)"
                    .to_string(),
            ),
            ErrorClass::TooLarge => (
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "The atlas is too large for this function's memory budget (raise {}; see the \
                     function's logs)",
                    env::MEMORY_CACHE_BYTES
                ),
            ),
            ErrorClass::Internal | ErrorClass::NeedsPrecompute => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error: the function cannot open its atlas store with its \
                 configuration or credentials (see the function's logs)"
                    .to_string(),
            ),
        };
        let mut r = text_response(status, message);
        self.add_common_headers(r.headers_mut(), request_headers);
        if class.is_transient() {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
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

fn retry_later_response(message: &str) -> Response<Bytes> {
    let mut r = text_response(StatusCode::SERVICE_UNAVAILABLE, message.to_string());
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
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

/// `Response<Bytes>` → the `lambda_http` response: binary bodies as [`LambdaBody::Binary`]
/// (base64 in the envelope), text bodies as [`LambdaBody::Text`], empty bodies as
/// [`LambdaBody::Empty`].
fn into_lambda_response(response: Response<Bytes>) -> Response<LambdaBody> {
    let text = is_text(response.headers());
    response.map(|bytes| {
        if bytes.is_empty() {
            LambdaBody::Empty
        } else if text {
            match String::from_utf8(bytes.to_vec()) {
                Ok(s) => LambdaBody::Text(s),
                Err(e) => LambdaBody::Binary(e.into_bytes()),
            }
        } else {
            LambdaBody::Binary(bytes.to_vec())
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
