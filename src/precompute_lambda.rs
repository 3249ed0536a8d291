//! The precompute-task Lambda (`cellucid-precompute`): the worker of the Step Functions state
//! machine in `infra/`, one invocation per plan or task. It is a function of its own, beside the
//! serving one, because its limits differ (15 min, up to 10 GB of memory) and it needs write
//! access the serving function never gets (the scratch under the cache prefix).
//!
//! Events (JSON, see `events/precompute-*.json`):
//!
//! * `{"action": "plan"}` — make (or load) the plan, store it in the cache, write one item list
//!   per phase (`[{"task": 0}, …]`) to the scratch for the Distributed Map's `ItemReader`, and
//!   answer `{"fingerprint", "dataset", "phase_count", "phases": [{"name", "tasks",
//!   "items_bucket", "items_key", "results_prefix"}], …}`.
//! * `{"action": "task", "phase": "pack", "task": 7, "fingerprint": "…"}` — run one task and
//!   answer its report. A fingerprint other than the atlas's fails the task (the source changed
//!   since the plan).
//!
//! Either may name `"dataset": "<id>"` when `CELLUCID_DATA_URL` is a directory of atlases.
//! Failures carry an `errorType` the state machine retries on: `cellucid.Transient` (store or
//! cache unavailable, throttled: [`ErrorClass::Transient`](crate::store::ErrorClass), decided on
//! typed error variants) or not: `cellucid.Failed` (also a store or cache that refuses the
//! function's credentials: retrying cannot fix an IAM policy), `cellucid.StalePlan`,
//! `cellucid.BadEvent`.
//!
//! The atlas is opened exactly as the serving function opens it (same environment variables),
//! so the fingerprint — and with it every cache key — is the one the serving function reads.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::cache::plan::{PhaseName, Plan, PlanLimits};
use crate::cache::precompute::{PrecomputeError, load_or_make_plan};
use crate::cache::scratch::Scratch;
use crate::cache::tasks::{TaskEnv, TaskReport, run_task};
use crate::cache::{ArtifactCache, PutOutcome, fingerprint};
use crate::catalog::Catalog;
use crate::dataset::{Dataset, DatasetContext, DatasetOptions};
use crate::memory::MemoryBudget;
use crate::model::quantize::QuantBits;
use crate::store::{ReadMetrics, open_store_url};

/// Environment variables of the function. The dataset ones must equal the serving function's.
pub mod env {
    /// The atlas (or a directory of atlases), as for the serving function.
    pub const DATA_URL: &str = "CELLUCID_DATA_URL";
    /// The cache prefix the tasks write (and the serving function reads).
    pub const CACHE_URL: &str = "CELLUCID_CACHE_URL";
    /// Scratch of the run (default `<cache>/_work/<fingerprint>`).
    pub const SCRATCH_URL: &str = "CELLUCID_SCRATCH_URL";
    /// Dataset name shown in the viewer (as the serving function).
    pub const DATASET_NAME: &str = "CELLUCID_DATASET_NAME";
    /// Dataset id (as the serving function).
    pub const DATASET_ID: &str = "CELLUCID_DATASET_ID";
    /// obsm key of the latent space (as the serving function).
    pub const LATENT_KEY: &str = "CELLUCID_LATENT_KEY";
    /// var column holding gene ids (as the serving function).
    pub const GENE_ID_COLUMN: &str = "CELLUCID_GENE_ID_COLUMN";
    /// The strict profile's quantisation (8 or 16) the serving function uses (#14): the plan
    /// also builds the quantised documents and payloads.
    pub const QUANTIZE: &str = "CELLUCID_QUANTIZE";
    /// Memory budget (bytes) of the opened atlas's retained buffers (embeddings, obs columns,
    /// latent, edges …), as for the serving function. Default: half of the function's memory
    /// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`), else 256 MiB.
    pub const MEMORY_CACHE_BYTES: &str = crate::service::config::env::MEMORY_CACHE_BYTES;
    /// Set by the Lambda runtime: the function's memory in MB.
    pub const FUNCTION_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
}

/// Configuration of the function.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// Store URL (one atlas or a directory of atlases).
    pub data_url: String,
    /// Cache prefix URL.
    pub cache_url: String,
    /// Scratch URL, if not the default under the cache prefix.
    pub scratch_url: Option<String>,
    /// How atlases are interpreted (must match the serving function).
    pub dataset: DatasetOptions,
    /// The serving function's strict quantisation (#14).
    pub quantize: Option<QuantBits>,
    /// Capacity of the memory budget the atlas is opened with ([`env::MEMORY_CACHE_BYTES`]).
    pub memory_cache_bytes: u64,
}

/// Why the configuration is unusable (the function stops at init).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl TaskConfig {
    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any lookup (tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let required = |k: &str| get(k).ok_or_else(|| ConfigError(format!("{k} must be set")));
        let mut dataset = DatasetOptions {
            dataset_name: get(env::DATASET_NAME),
            dataset_id: get(env::DATASET_ID),
            latent_key: get(env::LATENT_KEY),
            ..DatasetOptions::default()
        };
        if let Some(column) = get(env::GENE_ID_COLUMN) {
            dataset.gene_id_column = column;
        }
        let quantize = match get(env::QUANTIZE) {
            Some(v) => Some(
                v.parse::<QuantBits>()
                    .map_err(|e| ConfigError(format!("{}: {e}", env::QUANTIZE)))?,
            ),
            None => None,
        };
        let bytes = |var: &str| -> Result<Option<u64>, ConfigError> {
            get(var)
                .map(|v| {
                    v.trim()
                        .replace('_', "")
                        .parse::<u64>()
                        .map_err(|e| ConfigError(format!("{var}: expected a number: {e}")))
                })
                .transpose()
        };
        let memory_cache_bytes = match bytes(env::MEMORY_CACHE_BYTES)? {
            Some(0) => {
                return Err(ConfigError(format!(
                    "{}: the memory budget must be more than 0 bytes",
                    env::MEMORY_CACHE_BYTES
                )));
            }
            Some(n) => n,
            None => match bytes(env::FUNCTION_MEMORY_SIZE)? {
                // Half of the function's memory: the rest is the tasks' working memory.
                Some(mb) if mb > 0 => mb.saturating_mul(1 << 20) / 2,
                _ => crate::memory::DEFAULT_BUDGET_BYTES,
            },
        };
        Ok(TaskConfig {
            data_url: required(env::DATA_URL)?,
            cache_url: required(env::CACHE_URL)?,
            scratch_url: get(env::SCRATCH_URL),
            dataset,
            quantize,
            memory_cache_bytes,
        })
    }
}

/// An event of the function.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskEvent {
    /// Make the plan and the item lists.
    Plan {
        /// Atlas id within a directory of atlases.
        #[serde(default)]
        dataset: Option<String>,
    },
    /// Run one task.
    Task {
        /// Phase.
        phase: PhaseName,
        /// Task index.
        task: u64,
        /// Fingerprint of the plan the task belongs to (checked against the atlas).
        #[serde(default)]
        fingerprint: Option<String>,
        /// Atlas id within a directory of atlases.
        #[serde(default)]
        dataset: Option<String>,
    },
}

/// A phase of the plan answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseItems {
    /// Phase name.
    pub name: PhaseName,
    /// Tasks in the phase.
    pub tasks: u64,
    /// Bucket of the item list (S3 caches), for the Distributed Map's `ItemReader`.
    pub items_bucket: Option<String>,
    /// Key of the item list: a JSON array of `{"task": i}`.
    pub items_key: Option<String>,
    /// Key prefix where the Distributed Map writes the phase's results (`ResultWriter`).
    pub results_prefix: Option<String>,
}

/// The answer to a `plan` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanAnswer {
    /// Cache fingerprint.
    pub fingerprint: String,
    /// Dataset id.
    pub dataset: String,
    /// Cells, genes.
    pub cells: u64,
    /// Genes.
    pub genes: u64,
    /// Number of phases (the state machine's loop bound).
    pub phase_count: usize,
    /// Phases in run order.
    pub phases: Vec<PhaseItems>,
    /// Where the plan is stored.
    pub plan_key: String,
}

/// Why an invocation failed; [`TaskError::error_type`] is what Step Functions matches.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The event is not one of ours.
    #[error("bad event: {0}")]
    BadEvent(String),
    /// The store, cache or catalogue could not be opened.
    #[error("opening {what}: {reason}")]
    Open {
        /// What.
        what: String,
        /// Why.
        reason: String,
        /// Whether retrying may help.
        transient: bool,
    },
    /// The task failed.
    #[error(transparent)]
    Precompute(#[from] PrecomputeError),
}

impl TaskError {
    /// `cellucid.Transient` (retry), `cellucid.StalePlan`, `cellucid.BadEvent` or
    /// `cellucid.Failed`.
    pub fn error_type(&self) -> &'static str {
        match self {
            TaskError::BadEvent(_) => "cellucid.BadEvent",
            TaskError::Open {
                transient: true, ..
            } => "cellucid.Transient",
            TaskError::Precompute(PrecomputeError::StaleFingerprint { .. }) => "cellucid.StalePlan",
            TaskError::Precompute(e) if e.is_transient() => "cellucid.Transient",
            _ => "cellucid.Failed",
        }
    }
}

impl From<TaskError> for lambda_http::lambda_runtime::Diagnostic {
    fn from(e: TaskError) -> Self {
        lambda_http::lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// The function's state: the catalogue (opened once per container, reopened when the source
/// changed) and the plans it loaded.
pub struct TaskHandler {
    config: TaskConfig,
    cache: ArtifactCache,
    catalog: Mutex<Option<Arc<Catalog>>>,
    plans: Mutex<HashMap<String, Arc<Plan>>>,
    /// Read metrics and the memory budget the opened atlases share.
    context: DatasetContext,
}

impl std::fmt::Debug for TaskHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandler")
            .field("config", &self.config)
            .finish()
    }
}

impl TaskHandler {
    /// A handler for `config`.
    pub fn new(config: TaskConfig) -> Result<Self, TaskError> {
        let url = &config.cache_url;
        if !url.contains("://") || url.starts_with("file://") {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            std::fs::create_dir_all(dir).map_err(|e| TaskError::Open {
                what: format!("cache {dir}"),
                reason: e.to_string(),
                transient: false,
            })?;
        }
        let location = open_store_url(url).map_err(|e| TaskError::Open {
            what: format!("cache {url}"),
            reason: e.to_string(),
            transient: false,
        })?;
        let context = DatasetContext::new(
            Arc::new(ReadMetrics::default()),
            MemoryBudget::new(config.memory_cache_bytes),
        );
        Ok(TaskHandler {
            cache: ArtifactCache::new(&location, Arc::new(ReadMetrics::default())),
            config,
            catalog: Mutex::new(None),
            plans: Mutex::new(HashMap::new()),
            context,
        })
    }

    async fn catalog(&self, reopen: bool) -> Result<Arc<Catalog>, TaskError> {
        let mut slot = self.catalog.lock().await;
        if let Some(catalog) = slot.as_ref().filter(|_| !reopen) {
            return Ok(catalog.clone());
        }
        let location = open_store_url(&self.config.data_url).map_err(|e| TaskError::Open {
            what: format!("store {}", self.config.data_url),
            reason: e.to_string(),
            transient: false,
        })?;
        let catalog = Catalog::open(location, &self.config.dataset, &self.context)
            .await
            .map_err(|e| TaskError::Open {
                what: format!("store {}", self.config.data_url),
                reason: e.to_string(),
                // A damaged store fails every retry: only store failures are retried.
                transient: e.is_transient(),
            })?;
        let catalog = Arc::new(catalog);
        *slot = Some(catalog.clone());
        Ok(catalog)
    }

    /// The dataset named by `id` (or the only one), with its fingerprint; when `expected` is
    /// given and differs, the catalogue is reopened once (the source may have changed since this
    /// container opened it).
    async fn dataset(
        &self,
        id: Option<&str>,
        expected: Option<&str>,
    ) -> Result<(Arc<Dataset>, String), TaskError> {
        for reopen in [false, true] {
            let catalog = self.catalog(reopen).await?;
            let dataset = match id {
                Some(id) => catalog.get(id).cloned().ok_or_else(|| {
                    TaskError::BadEvent(format!("no atlas `{id}` in {}", self.config.data_url))
                })?,
                None => match catalog.datasets() {
                    [one] => one.clone(),
                    many => {
                        return Err(TaskError::BadEvent(format!(
                            "{} holds {} atlases: name one with \"dataset\"",
                            self.config.data_url,
                            many.len()
                        )));
                    }
                },
            };
            let fp = fingerprint(&dataset);
            if expected.is_none_or(|e| e == fp) || reopen {
                return Ok((dataset, fp));
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    fn scratch(&self, fp: &str) -> Result<Scratch, TaskError> {
        Ok(match &self.config.scratch_url {
            Some(url) => Scratch::at(&open_store_url(url).map_err(|e| TaskError::Open {
                what: format!("scratch {url}"),
                reason: e.to_string(),
                transient: false,
            })?),
            None => Scratch::shared(&self.cache, fp),
        })
    }

    async fn plan(&self, dataset: &Dataset, fp: &str) -> Result<Arc<Plan>, TaskError> {
        let mut plans = self.plans.lock().await;
        if let Some(plan) = plans.get(fp) {
            return Ok(plan.clone());
        }
        let plan = Arc::new(
            load_or_make_plan(
                dataset,
                &self.cache,
                fp,
                PlanLimits::default(),
                self.config.quantize,
            )
            .await?,
        );
        plans.insert(fp.to_string(), plan.clone());
        Ok(plan)
    }

    /// Handle one event (the JSON answer, or an error whose type the state machine matches).
    pub async fn handle(&self, event: TaskEvent) -> Result<serde_json::Value, TaskError> {
        match event {
            TaskEvent::Plan { dataset } => {
                let answer = self.make_plan(dataset.as_deref()).await?;
                serde_json::to_value(answer).map_err(|e| TaskError::BadEvent(e.to_string()))
            }
            TaskEvent::Task {
                phase,
                task,
                fingerprint,
                dataset,
            } => {
                let report = self
                    .run(phase, task, fingerprint.as_deref(), dataset.as_deref())
                    .await?;
                serde_json::to_value(report).map_err(|e| TaskError::BadEvent(e.to_string()))
            }
        }
    }

    /// Handle a raw JSON event.
    pub async fn handle_json(
        &self,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, TaskError> {
        let event: TaskEvent =
            serde_json::from_value(event).map_err(|e| TaskError::BadEvent(e.to_string()))?;
        self.handle(event).await
    }

    async fn make_plan(&self, id: Option<&str>) -> Result<PlanAnswer, TaskError> {
        let (dataset, fp) = self.dataset(id, None).await?;
        let plan = self.plan(&dataset, &fp).await?;
        let scratch = self.scratch(&fp)?;
        let bucket = s3_bucket(&self.config.cache_url);
        let mut phases = Vec::new();
        // A plan for `--quantize` has other phases: its item lists and results apart (#14).
        let variant = match self.config.quantize {
            Some(bits) => format!("q{}/", bits.bits()),
            None => String::new(),
        };
        for phase in &plan.phases {
            let key = format!("items/{variant}{}.json", phase.name);
            let items: Vec<serde_json::Value> = (0..phase.tasks)
                .map(|t| serde_json::json!({ "task": t }))
                .collect();
            let body =
                serde_json::to_vec(&items).map_err(|e| TaskError::BadEvent(e.to_string()))?;
            let _: PutOutcome = scratch
                .put(&key, Bytes::from(body))
                .await
                .map_err(PrecomputeError::from)?;
            let s3 = bucket.is_some();
            phases.push(PhaseItems {
                name: phase.name,
                tasks: phase.tasks,
                items_key: s3.then(|| scratch.path(&key).to_string()),
                results_prefix: s3.then(|| {
                    scratch
                        .path(&format!("results/{variant}{}", phase.name))
                        .to_string()
                }),
                items_bucket: bucket.clone(),
            });
        }
        Ok(PlanAnswer {
            fingerprint: fp.clone(),
            dataset: dataset.id().to_string(),
            cells: plan.atlas.cells,
            genes: plan.atlas.genes,
            phase_count: phases.len(),
            phases,
            plan_key: self
                .cache
                .path(&fp, &crate::cache::plan::plan_key(self.config.quantize))
                .to_string(),
        })
    }

    async fn run(
        &self,
        phase: PhaseName,
        task: u64,
        expected: Option<&str>,
        id: Option<&str>,
    ) -> Result<TaskReport, TaskError> {
        let (dataset, fp) = self.dataset(id, expected).await?;
        if let Some(planned) = expected.filter(|e| *e != fp) {
            return Err(PrecomputeError::StaleFingerprint {
                planned: planned.to_string(),
                actual: fp,
            }
            .into());
        }
        let plan = self.plan(&dataset, &fp).await?;
        let env = TaskEnv {
            scratch: self.scratch(&fp)?,
            dataset,
            cache: self.cache.clone(),
            plan,
            priority: Default::default(),
        };
        Ok(run_task(&env, phase, task).await?)
    }
}

/// The bucket of an `s3://bucket/prefix` URL.
fn s3_bucket(url: &str) -> Option<String> {
    let rest = url.strip_prefix("s3://")?;
    Some(rest.split('/').next()?.to_string()).filter(|b| !b.is_empty())
}

/// Serve events from the Lambda runtime until it stops.
pub async fn run(handler: Arc<TaskHandler>) -> Result<(), lambda_http::Error> {
    use lambda_http::lambda_runtime::{LambdaEvent, service_fn};
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let handler = handler.clone();
        async move {
            let started = std::time::Instant::now();
            let result = handler.handle_json(event.payload).await;
            match &result {
                Ok(answer) => tracing::info!(
                    target: "cellucid_edge::precompute",
                    seconds = started.elapsed().as_secs_f64(),
                    answer = %answer,
                    "invocation done"
                ),
                Err(e) => tracing::error!(
                    target: "cellucid_edge::precompute",
                    error_type = e.error_type(),
                    "invocation failed: {e}"
                ),
            }
            result
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_strictly() {
        let e: TaskEvent = serde_json::from_str(
            r#"{"action":"task","phase":"pack","task":3,"fingerprint":"abc"}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            TaskEvent::Task {
                phase: PhaseName::Pack,
                task: 3,
                fingerprint: Some("abc".into()),
                dataset: None
            }
        );
        assert!(serde_json::from_str::<TaskEvent>(r#"{"action":"plan"}"#).is_ok());
        assert!(
            serde_json::from_str::<TaskEvent>(r#"{"action":"task","phase":"x","task":1}"#).is_err()
        );
        assert!(serde_json::from_str::<TaskEvent>(r#"{"action":"plan","extra":1}"#).is_err());
        assert_eq!(s3_bucket("s3://b/p/q").as_deref(), Some("b"));
        assert_eq!(s3_bucket("/tmp/c"), None);
    }

    #[test]
    fn configuration_needs_both_urls() {
        let lookup = |k: &str| match k {
            env::DATA_URL => Some("s3://b/atlases".to_string()),
            env::GENE_ID_COLUMN => Some("symbol".to_string()),
            _ => None,
        };
        assert!(TaskConfig::from_lookup(lookup).is_err());
        let config = TaskConfig::from_lookup(|k| match k {
            env::CACHE_URL => Some("s3://b/cache".to_string()),
            other => lookup(other),
        })
        .unwrap();
        assert_eq!(config.dataset.gene_id_column, "symbol");
        assert!(config.scratch_url.is_none());
        assert_eq!(
            config.memory_cache_bytes,
            crate::memory::DEFAULT_BUDGET_BYTES
        );
    }

    #[test]
    fn the_memory_budget_comes_from_the_environment() {
        let with = |extra: &'static [(&'static str, &'static str)]| {
            TaskConfig::from_lookup(move |k| match k {
                env::DATA_URL => Some("s3://b/atlas.zarr".to_string()),
                env::CACHE_URL => Some("s3://b/cache".to_string()),
                other => extra
                    .iter()
                    .find(|(name, _)| *name == other)
                    .map(|(_, v)| v.to_string()),
            })
        };
        let explicit = with(&[
            (env::MEMORY_CACHE_BYTES, "1_073_741_824"),
            (env::FUNCTION_MEMORY_SIZE, "3008"),
        ])
        .unwrap();
        assert_eq!(explicit.memory_cache_bytes, 1 << 30);
        let derived = with(&[(env::FUNCTION_MEMORY_SIZE, "3008")]).unwrap();
        assert_eq!(derived.memory_cache_bytes, 3008 << 19);
        assert!(with(&[(env::MEMORY_CACHE_BYTES, "lots")]).is_err());
        assert!(with(&[(env::MEMORY_CACHE_BYTES, "0")]).is_err());
    }

    #[test]
    fn refused_credentials_are_not_retried() {
        use crate::cache::CacheError;
        let failed = |source: object_store::Error| {
            TaskError::Precompute(PrecomputeError::Cache(CacheError::Store {
                path: "cache/x".into(),
                source,
            }))
            .error_type()
        };
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "AccessDenied (retry later?)".into(),
        };
        assert_eq!(failed(denied), "cellucid.Failed");
        let unauthenticated = object_store::Error::Unauthenticated {
            path: "x".into(),
            source: "InvalidAccessKeyId".into(),
        };
        assert_eq!(failed(unauthenticated), "cellucid.Failed");
        let throttled = object_store::Error::Generic {
            store: "S3",
            source: "SlowDown after 10 retries".into(),
        };
        assert_eq!(failed(throttled), "cellucid.Transient");
    }
}
