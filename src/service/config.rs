//! [`Config`]: the one configuration of the HTTP side, shared by `serve` (built from its flags)
//! and the Lambda (built from the environment by [`Config::from_env`]). It says what to serve
//! (data, 0.9 store, cache prefix, atlas options), the rules every request meets (CORS, share
//! links, Host rule, deadline) and the limits of buffered transports (body size, presigned URL
//! lifetime, deadline margin).

use std::sync::Arc;
use std::time::Duration;

use crate::cache::ArtifactCache;
use crate::dataset::DatasetOptions;
use crate::http::{CorsPolicy, ServerIdentity};
use crate::service::host::HostCheck;
use crate::share::{ShareError, ShareSecret};
use crate::store::{ReadMetrics, StoreUrlError, open_store_url};

/// Default [`Config::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Default [`Config::max_body_bytes`]: the largest raw body whose base64 form (4/3 of it) plus
/// headers still fits the 6 MB (6 291 456 bytes) buffered Lambda response.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4_500_000;

/// Default [`Config::presign_ttl`]: long enough for a slow download to start, short enough that
/// a leaked URL soon stops working.
pub const DEFAULT_PRESIGN_TTL: Duration = Duration::from_secs(300);

/// Default [`Config::deadline_margin`]: answered this long before the invocation's deadline, a
/// slow request still reaches the browser as a 503 with CORS instead of the gateway's bare
/// 502/504.
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// Environment variable names read by [`Config::from_env`].
pub mod env {
    /// Store URL of one atlas, or of a root holding several (default: the embedded demo).
    pub const DATA_URL: &str = "CELLUCID_DATA_URL";
    /// Store the 0.9 protocol serves instead of the data store (a Cellucid-ready copy, an
    /// `.h5ad` or a `.zarr.zip` of the same atlas).
    pub const READY_URL: &str = "CELLUCID_READY_URL";
    /// Cache prefix URL (derived artifacts memoised on object storage).
    pub const CACHE_URL: &str = "CELLUCID_CACHE_URL";
    /// Allowed CORS origins, comma-separated, same syntax as `serve --cors`.
    pub const ALLOWED_ORIGINS: &str = "CELLUCID_ALLOWED_ORIGINS";
    /// Largest raw response body returned inline (bytes).
    pub const MAX_BODY_BYTES: &str = "CELLUCID_MAX_BODY_BYTES";
    /// Longest life of the presigned URLs large responses redirect to (seconds, 1–604800).
    pub const PRESIGN_SECONDS: &str = "CELLUCID_PRESIGN_SECONDS";
    /// Secret for share links: when set, only `/s/<token>/…` paths signed with it are served
    /// (`cellucid-edge share`).
    pub const SHARE_SECRET: &str = "CELLUCID_SHARE_SECRET";
    /// The memory budget per container (bytes): every atlas's buffers and the rendered
    /// artifacts count against it.
    pub const MEMORY_CACHE_BYTES: &str = "CELLUCID_MEMORY_CACHE_BYTES";
    /// Longest time one request may take (`30s`, `1m`; humantime syntax).
    pub const REQUEST_TIMEOUT: &str = "CELLUCID_REQUEST_TIMEOUT";
    /// How long before the invocation's deadline a request is cut off (`2s`).
    pub const DEADLINE_MARGIN: &str = "CELLUCID_DEADLINE_MARGIN";
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
    /// Strict profile (#14): `8` or `16` to serve quantised gene and continuous obs values
    /// under `/strict` (float32 when unset).
    pub const QUANTIZE: &str = "CELLUCID_QUANTIZE";
}

/// The configuration of the service and its transports.
#[derive(Debug, Clone)]
pub struct Config {
    /// Store URL of the atlas or of a root of atlases; `None` serves the embedded demo.
    pub data_url: Option<String>,
    /// The store the 0.9 protocol serves instead of the data store (`serve --ready`).
    pub ready_url: Option<String>,
    /// How atlases are interpreted.
    pub dataset: DatasetOptions,
    /// The cache prefix (derived artifacts memoised on object storage), if any.
    pub cache: Option<ArtifactCache>,
    /// CORS allow-list.
    pub cors: CorsPolicy,
    /// Share-link secret: when set, every request must carry a valid `/s/<token>/` prefix;
    /// anything else is answered 403.
    pub share: Option<ShareSecret>,
    /// The Host rule (421) of a server bound to loopback, applied to every route.
    pub host_rule: Option<HostCheck>,
    /// `/_cellucid/info` host and port (a transport's [`ServerIdentity`] extension wins).
    pub identity: ServerIdentity,
    /// Longest time one request may take; past it the client gets a 503 with `Retry-After`
    /// and nothing is cached. A transport's [`Deadline`](super::Deadline) may shorten it.
    pub request_timeout: Duration,
    /// The memory budget (bytes) [`Service::open`](super::Service::open) opens the catalogue
    /// with: every atlas's buffers and the rendered artifacts count against it (see
    /// [`MemoryBudget`](crate::memory::MemoryBudget)). A service built over an already opened
    /// catalogue ([`Service::new`](super::Service::new)) uses the catalogue's budget.
    pub memory_cache_bytes: u64,
    /// With a cache prefix and no gene pack in it: build the pack in the background on the
    /// first gene request when X is CSR and small enough to scan (off for the Lambda: a frozen
    /// sandbox cannot run background work; run `precompute`).
    pub gene_pack_on_demand: bool,
    /// Largest raw body a buffered transport (the Lambda) returns inline; larger bodies are
    /// redirected to a presigned URL when they have a deliverable, else answered 413.
    pub max_body_bytes: usize,
    /// Longest life of a presigned URL (never past the share token's expiry).
    pub presign_ttl: Duration,
    /// How long before the invocation's deadline the Lambda cuts a request off.
    pub deadline_margin: Duration,
    /// Open the atlas during the Lambda's init (`true`) or on the first request.
    pub open_at_init: bool,
    /// The strict profile under `/strict` (#14): e.g. quantised payloads (`serve --quantize`,
    /// [`env::QUANTIZE`]).
    pub strict: crate::protocol::strict::StrictConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_url: None,
            ready_url: None,
            dataset: DatasetOptions::default(),
            cache: None,
            cors: CorsPolicy::default(),
            share: None,
            host_rule: None,
            identity: ServerIdentity {
                host: "127.0.0.1".into(),
                port: 8765,
            },
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            memory_cache_bytes: crate::memory::DEFAULT_BUDGET_BYTES,
            gene_pack_on_demand: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            presign_ttl: DEFAULT_PRESIGN_TTL,
            deadline_margin: DEFAULT_DEADLINE_MARGIN,
            open_at_init: true,
            strict: crate::protocol::strict::StrictConfig::default(),
        }
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable has an unusable value.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid {
        /// Variable name.
        var: &'static str,
        /// Value found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The share secret is unusable (e.g. too short): never serve unprotected.
    #[error("{var}: {source}")]
    Share {
        /// Variable name.
        var: &'static str,
        /// Why.
        #[source]
        source: ShareError,
    },
    /// The cache URL cannot be opened.
    #[error("{var}: {source}")]
    Cache {
        /// Variable name.
        var: &'static str,
        /// Why.
        #[source]
        source: StoreUrlError,
    },
}

fn invalid(var: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    /// The configuration of the Lambda function, from the process environment (see [`mod@env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration through `lookup` (a variable name → its value). Empty values count
    /// as unset, so infrastructure code may always pass every variable. Defaults are the
    /// Lambda's: no Host rule (a gateway's host names vary), no background pack builds.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let defaults = Config::default();
        let max_body_bytes = match get(env::MAX_BODY_BYTES) {
            Some(v) => match parse_count(env::MAX_BODY_BYTES, &v)? {
                0 => return Err(invalid(env::MAX_BODY_BYTES, &v, "must be at least 1")),
                n => n,
            },
            None => defaults.max_body_bytes,
        };
        let presign_ttl = match get(env::PRESIGN_SECONDS) {
            Some(v) => {
                let seconds = parse_count(env::PRESIGN_SECONDS, &v)?;
                // SigV4 presigned URLs live at most seven days.
                if !(1..=604_800).contains(&seconds) {
                    return Err(invalid(
                        env::PRESIGN_SECONDS,
                        &v,
                        "must be between 1 and 604800 seconds (7 days)",
                    ));
                }
                Duration::from_secs(seconds as u64)
            }
            None => defaults.presign_ttl,
        };
        let duration = |var: &'static str, default: Duration| match get(var) {
            Some(v) => crate::share::parse_validity(&v).map_err(|reason| invalid(var, &v, reason)),
            None => Ok(default),
        };
        let request_timeout = duration(env::REQUEST_TIMEOUT, defaults.request_timeout)?;
        let deadline_margin = match get(env::DEADLINE_MARGIN) {
            Some(v) if v == "0" => Duration::ZERO,
            _ => duration(env::DEADLINE_MARGIN, defaults.deadline_margin)?,
        };
        let memory_cache_bytes = match get(env::MEMORY_CACHE_BYTES) {
            Some(v) => parse_count(env::MEMORY_CACHE_BYTES, &v)? as u64,
            None => defaults.memory_cache_bytes,
        };
        let open_at_init = match get(env::OPEN_AT_INIT) {
            Some(v) => parse_bool(env::OPEN_AT_INIT, &v)?,
            None => defaults.open_at_init,
        };
        let origins: Vec<String> = get(env::ALLOWED_ORIGINS)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let share = match get(env::SHARE_SECRET) {
            Some(secret) => Some(ShareSecret::new(secret.into_bytes()).map_err(|source| {
                ConfigError::Share {
                    var: env::SHARE_SECRET,
                    source,
                }
            })?),
            None => None,
        };
        let cache = match get(env::CACHE_URL) {
            Some(url) => Some(ArtifactCache::new(
                &open_store_url(&url).map_err(|source| ConfigError::Cache {
                    var: env::CACHE_URL,
                    source,
                })?,
                Arc::new(ReadMetrics::default()),
            )),
            None => None,
        };
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
                    v.parse::<crate::model::quantize::QuantBits>()
                        .map_err(|e| invalid(env::QUANTIZE, &v, e.to_string()))?,
                ),
                None => None,
            },
        };
        Ok(Config {
            data_url: get(env::DATA_URL),
            ready_url: get(env::READY_URL),
            dataset,
            cache,
            cors: CorsPolicy::from_list(&origins),
            share,
            host_rule: None,
            // Replaced per request by the host the client used (the Lambda adapter's
            // `ServerIdentity` extension).
            identity: ServerIdentity {
                host: "localhost".into(),
                port: 443,
            },
            request_timeout,
            memory_cache_bytes,
            gene_pack_on_demand: false,
            max_body_bytes,
            presign_ttl,
            deadline_margin,
            open_at_init,
            strict,
        })
    }
}

fn parse_count(var: &'static str, value: &str) -> Result<usize, ConfigError> {
    value
        .replace('_', "")
        .parse::<usize>()
        .map_err(|e| invalid(var, value, format!("expected a number: {e}")))
}

fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(var, value, "expected 1/0, true/false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn from_the_environment() {
        let vars = [
            (env::DATA_URL, "s3://bucket/atlases/"),
            (env::ALLOWED_ORIGINS, "https://a.example, default"),
            (env::MAX_BODY_BYTES, "1_000_000"),
            (env::SHARE_SECRET, "a secret of sufficient length"),
            (env::OPEN_AT_INIT, "0"),
            (env::CACHE_URL, ""),
            (env::PRESIGN_SECONDS, "120"),
            (env::REQUEST_TIMEOUT, "25s"),
            (env::QUANTIZE, "16"),
        ];
        let config = Config::from_lookup(lookup(&vars)).expect("valid config");
        assert_eq!(config.data_url.as_deref(), Some("s3://bucket/atlases/"));
        assert!(config.cache.is_none());
        assert!(config.cors.allows("https://a.example"));
        assert!(config.cors.allows("http://localhost:1"));
        assert_eq!(config.max_body_bytes, 1_000_000);
        assert_eq!(config.presign_ttl, Duration::from_secs(120));
        assert_eq!(config.request_timeout, Duration::from_secs(25));
        assert!(!config.open_at_init);
        assert!(config.share.is_some());
        assert_eq!(
            config.strict.quantize,
            Some(crate::model::quantize::QuantBits::U16)
        );
        assert!(!format!("{config:?}").contains("sufficient"));
    }

    #[test]
    fn unusable_values_are_errors() {
        for (var, value) in [
            (env::MAX_BODY_BYTES, "lots"),
            (env::MAX_BODY_BYTES, "0"),
            (env::PRESIGN_SECONDS, "0"),
            (env::PRESIGN_SECONDS, "604801"),
            (env::SHARE_SECRET, "short"),
            (env::REQUEST_TIMEOUT, "soon"),
            (env::OPEN_AT_INIT, "maybe"),
            (env::QUANTIZE, "12"),
        ] {
            let vars = [(var, value)];
            assert!(Config::from_lookup(lookup(&vars)).is_err(), "{var}={value}");
        }
    }
}
