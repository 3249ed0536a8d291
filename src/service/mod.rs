//! The one front door: every transport (`serve`, the Lambda, the tests) hands each request to
//! [`Service::handle`], which runs it through
//!
//! 1. the [`gate`] — deadline, Host rule of a loopback bind (incl. HTTP/2 `:authority`), share
//!    token — for every path of every protocol;
//! 2. the [`router`] — path → a typed target of one protocol, the share token's dataset binding
//!    enforced for every target;
//! 3. the protocol handler — seed ([`crate::http::SeedProtocol`]), its strict profile
//!    (the same handler, [`crate::protocol::strict`] paths and documents), 0.9
//!    ([`crate::v09::Frontend`]) — within the deadline;
//!
//! and answers one `Response<`[`Body`]`>`: bytes, a length-checked stream, or a body withheld
//! from a buffered transport, each possibly with a [`Deliverable`] the transport may redirect
//! to. Transports translate envelopes and deliver bodies; they never look at paths.

pub mod body;
pub mod config;
pub mod context;
pub mod gate;
pub mod host;
pub mod router;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

pub use body::{Body, BodyError, ByteStream, DeliverError, Deliverable};
pub use config::{Config, ConfigError};
pub use context::{Admission, BodyLimit, Deadline, Grant};
pub use gate::{Gate, Refusal};
pub use router::{Miss, Mount, Mounts, Target};

use crate::catalog::{Catalog, CatalogError};
use crate::dataset::{DatasetContext, ErrorClass};
use crate::http::response::{forbidden, text, timed_out};
use crate::http::{SeedProtocol, ServerIdentity};
use crate::memory::MemoryBudget;
use crate::share;
use crate::store::confined::REQUEST_REFUSALS;
use crate::store::zarr_adapter_reads::REQUEST_READS;
use crate::store::{ReadMetrics, StoreUrlError, open_store_url};
use crate::v09::{Frontend, FrontendError};

/// Atlases of a catalogue that failed transiently are tried again at most this often.
const CATALOGUE_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Why the service could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The data URL is not usable.
    #[error(transparent)]
    Store(#[from] StoreUrlError),
    /// The catalogue could not be opened.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The 0.9 datasets could not be mounted (e.g. two atlases with one 0.9 id).
    #[error(transparent)]
    Frontend(#[from] FrontendError),
    /// Opening did not finish before the request's deadline.
    #[error("the store did not answer before the deadline while the atlas was opened")]
    OpenTimedOut,
}

impl ServiceError {
    /// What this failure means for the clients of a service that could not be opened, on typed
    /// variants ([`ErrorClass`]): the store URL's, the catalogue's or the 0.9 store's class,
    /// and [`ErrorClass::Transient`] for an open that outlived its deadline. Only a transient
    /// failure is worth opening again; the others stay until someone fixes the store or the
    /// configuration.
    pub fn class(&self) -> ErrorClass {
        match self {
            ServiceError::Store(e) => e.class(),
            ServiceError::Catalog(e) => e.class(),
            ServiceError::Frontend(e) => e.class(),
            ServiceError::OpenTimedOut => ErrorClass::Transient,
        }
    }

    /// Whether opening again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }
}

/// The service: configuration, gate and the mounted protocols.
pub struct Service {
    config: Config,
    gate: Gate,
    mounts: RwLock<Arc<Mounts>>,
    last_catalogue_retry: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .finish()
    }
}

impl Service {
    /// The service over an opened `catalog`: the seed protocol at the root, the catalogue's
    /// atlases under `/v0.9`. Rendered artifacts are held in the catalogue's memory budget
    /// (the one its atlases were opened with; [`Config::memory_cache_bytes`] is not used here).
    pub fn new(catalog: Catalog, config: Config) -> Result<Self, ServiceError> {
        let mounts = Mounts::new(catalog, &config)?;
        Ok(Service {
            gate: Gate::new(
                config.host_rule.clone(),
                config.share.clone(),
                config.request_timeout,
            ),
            config,
            mounts: RwLock::new(Arc::new(mounts)),
            last_catalogue_retry: tokio::sync::Mutex::new(None),
        })
    }

    /// Open what `config` describes: the data URL (or the embedded demo) as a catalogue whose
    /// atlases share one memory budget of [`Config::memory_cache_bytes`], and the `ready_url`
    /// store for the 0.9 protocol when set.
    pub async fn open(config: Config) -> Result<Self, ServiceError> {
        let location = match &config.data_url {
            Some(url) => open_store_url(url)?,
            None => crate::demo::demo_location().await?,
        };
        // One memory budget for every atlas of the process and the rendered artifacts.
        let context = DatasetContext::new(
            Arc::new(ReadMetrics::default()),
            MemoryBudget::new(config.memory_cache_bytes),
        );
        let catalog = Catalog::open(location, &config.dataset, &context).await?;
        let ready = config.ready_url.clone();
        let service = Service::new(catalog, config)?;
        Ok(match ready {
            Some(url) => {
                let frontend = crate::v09::ready_frontend(service.mounts().v09(), &url).await?;
                service.with_protocol_09(frontend)
            }
            None => service,
        })
    }

    /// Serve `frontend` under `/v0.9` instead of the catalogue's atlases.
    pub fn with_protocol_09(self, frontend: Frontend) -> Self {
        let mounts = Mounts::clone(&self.mounts()).with_protocol_09(frontend);
        if let Ok(mut slot) = self.mounts.write() {
            *slot = Arc::new(mounts);
        }
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What is mounted now (the catalogue may grow while serving).
    pub fn mounts(&self) -> Arc<Mounts> {
        match self.mounts.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The catalogue served now.
    pub fn catalog(&self) -> Catalog {
        self.mounts().catalog().clone()
    }

    /// The cache fingerprint of atlas `id` (its artifacts' key prefix in the cache).
    pub fn fingerprint(&self, id: &str) -> Option<String> {
        self.mounts().seed().fingerprint(id).map(str::to_string)
    }

    /// Whether requests need a share token.
    pub fn is_private(&self) -> bool {
        self.gate.is_private()
    }

    /// Answer one request. Never panics on input; internal failures become a 500 without
    /// details (they go to the log).
    ///
    /// A transport may attach request extensions: a [`ServerIdentity`] (what
    /// `/_cellucid/info` reports; the Lambda sets the host the client used), a [`Deadline`]
    /// and a [`BodyLimit`].
    pub async fn handle(&self, mut request: Request<()>) -> Response<Body> {
        let started = Instant::now();
        // Background builds (the local cache's warm-up, an on-demand gene pack) start no new
        // task while this request is answered.
        let _foreground = crate::cache::background::ForegroundRequest::begin();
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let token = share_token(&request);
        let admission = match self.gate.admit(&mut request) {
            Ok(admission) => admission,
            Err(refusal) => return self.refused(&request, &refusal, origin.as_deref(), started),
        };
        let mount = Mount::of(request.uri().path());
        let reads = Arc::new(ReadMetrics::default());
        let refusals = Arc::new(AtomicU64::new(0));
        let work = REQUEST_READS.scope(
            reads.clone(),
            REQUEST_REFUSALS.scope(refusals, self.dispatch(&request, mount, &admission)),
        );
        let deadline = tokio::time::Instant::from_std(admission.deadline);
        // A hung store never hangs a request: past the deadline the work is dropped (nothing
        // was cached: the cache prefix is only written after a complete computation).
        let mut response = match tokio::time::timeout_at(deadline, work).await {
            Ok(response) => response,
            Err(_) => timed_out(
                admission
                    .deadline
                    .saturating_duration_since(started)
                    .as_millis(),
            ),
        };
        mount.decorate(&self.config.cors, response.headers_mut(), origin.as_deref());
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (outcome, compute_ms) = match mount {
            Mount::Seed | Mount::Strict => {
                SeedProtocol::server_timing(&mut response, reads.snapshot(), total_ms)
            }
            Mount::V09 => (None, None),
        };
        if request.method() == Method::HEAD {
            response.body_mut().strip();
        } else if let (Some(grant), Some(deliverable)) =
            (&admission.grant, response.body_mut().deliverable_mut())
        {
            deliverable.limit_to(grant.expires);
        }
        let r = reads.snapshot();
        tracing::info!(
            target: "cellucid_edge::http",
            method = %request.method(),
            path = %loggable_path(request.uri().path(), token.as_deref()),
            status = response.status().as_u16(),
            cache = outcome.as_deref().unwrap_or("-"),
            compute_ms = compute_ms.as_deref().unwrap_or("-"),
            store_gets = r.gets,
            store_bytes = r.bytes,
            ms = total_ms,
            "request"
        );
        let idle = self.config.request_timeout;
        response.map(|body| body.with_idle_timeout(idle))
    }

    /// Route and answer an admitted request (within its deadline).
    async fn dispatch(
        &self,
        request: &Request<()>,
        mount: Mount,
        admission: &Admission,
    ) -> Response<Body> {
        let mut mounts = self.mounts();
        if let Some(miss) = router::check_grant(&mounts, admission)
            && !(miss == Miss::Opening && mounts.catalog().has_pending())
        {
            return miss.response(mount);
        }
        if let Some(r) = mount.preflight(request) {
            return r;
        }
        if mounts.catalog().has_pending()
            && router::wants_fresh_catalogue(&router::route(&mounts, mount, request, admission))
        {
            mounts = self.retry_catalogue(mounts).await;
        }
        let identity = request
            .extensions()
            .get::<ServerIdentity>()
            .unwrap_or(&self.config.identity);
        match router::route(&mounts, mount, request, admission) {
            Target::SeedControl(route) => {
                mounts
                    .seed()
                    .control(&route, Some(identity), admission.bound_dataset())
            }
            Target::SeedArtifact(dataset, route) => {
                mounts
                    .seed()
                    .artifact(request.headers(), dataset, &route)
                    .await
            }
            Target::V09 {
                frontend,
                source,
                route,
                shown,
            } => {
                frontend
                    .serve(request, source, &route, &shown, admission, identity)
                    .await
            }
            Target::StrictControl(control) => {
                mounts
                    .seed()
                    .strict_control(control, Some(identity), admission.bound_dataset())
            }
            Target::StrictArtifact(dataset, route) => {
                mounts
                    .seed()
                    .strict_artifact(request.headers(), dataset, &route, &self.config.strict)
                    .await
            }
            Target::Miss(miss) => miss.response(mount),
        }
    }

    /// Open the catalogue's pending atlases again (at most once per
    /// [`CATALOGUE_RETRY_INTERVAL`], one attempt at a time); the mounts to answer with.
    async fn retry_catalogue(&self, current: Arc<Mounts>) -> Arc<Mounts> {
        let mut last = self.last_catalogue_retry.lock().await;
        let latest = self.mounts();
        if !Arc::ptr_eq(&latest, &current) {
            return latest;
        }
        if last.is_some_and(|t| t.elapsed() < CATALOGUE_RETRY_INTERVAL) {
            return current;
        }
        *last = Some(Instant::now());
        let Some(catalog) = current.catalog().retry_pending().await else {
            return current;
        };
        match current.grown(catalog, &self.config) {
            Ok(mounts) => {
                let mounts = Arc::new(mounts);
                if let Ok(mut slot) = self.mounts.write() {
                    *slot = mounts.clone();
                }
                mounts
            }
            Err(e) => {
                tracing::error!(target: "cellucid_edge::catalog", "cannot mount the reopened atlases: {e}");
                current
            }
        }
    }

    /// The answer to a request the gate refused (in the seed protocol's style: the gate runs
    /// before any protocol is known). The path is not logged: it may hold a token.
    fn refused(
        &self,
        request: &Request<()>,
        refusal: &Refusal,
        origin: Option<&str>,
        started: Instant,
    ) -> Response<Body> {
        let mut response = match refusal {
            Refusal::ForeignHost => {
                let mut r = text(StatusCode::MISDIRECTED_REQUEST, &refusal.to_string());
                // HTTP/2 has no `Connection` header.
                if request.version() <= Version::HTTP_11 {
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                r
            }
            Refusal::Share(e) => forbidden(e),
            Refusal::BadTarget => text(StatusCode::BAD_REQUEST, &refusal.to_string()),
        };
        Mount::Seed.decorate(&self.config.cors, response.headers_mut(), origin);
        if request.method() == Method::HEAD {
            response.body_mut().strip();
        }
        tracing::info!(
            target: "cellucid_edge::http",
            method = %request.method(),
            status = response.status().as_u16(),
            reason = %refusal,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "request refused by the gate"
        );
        response
    }
}

/// The share token of a `/s/<token>/…` request, if any (to keep it out of the logs).
fn share_token(request: &Request<()>) -> Option<String> {
    let target = request.uri().path_and_query()?.as_str();
    share::split_target(target)
        .ok()
        .map(|(token, _)| token.to_string())
}

/// `path` for the log: a `/s/<token>/` prefix and every occurrence of the request's token
/// replaced by `<token>`.
fn loggable_path(path: &str, token: Option<&str>) -> String {
    let redacted = share::redact(path).into_owned();
    match token.filter(|t| !t.is_empty()) {
        Some(token) => redacted.replace(token, "<token>"),
        None => redacted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_reach_the_log() {
        assert_eq!(loggable_path("/s/abc.def/x", None), "/s/<token>/x");
        assert_eq!(
            loggable_path("/abc.def/x/abc.def", Some("abc.def")),
            "/<token>/x/<token>"
        );
        assert_eq!(loggable_path("/points_3d.bin", None), "/points_3d.bin");
    }
}
