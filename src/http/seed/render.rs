//! Rendering seed artifacts: the process's memory budget → cache prefix (one GET; genes from
//! the gene-major pack) → compute, with computed artifacts written back create-only, and the
//! on-demand gene pack build. Artifacts derived from another one (the strict profile's
//! documents and quantised payloads, [`Artifact::derived_from`]) are computed from that
//! artifact's rendered body. Inflating, compressing and hashing bodies run through
//! [`crate::compute`] (off the executor when large, abandoned when the request's deadline
//! drops the future).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::anndata::MatrixMeta;
use crate::cache::precompute::{PrecomputeOptions, build_gene_pack_on_demand};
use crate::cache::{ArtifactCache, GenePack, fingerprint};
use crate::compute::run_sized;
use crate::dataset::{Dataset, DatasetError};
use crate::http::encoding::gzip;
use crate::memory::{BudgetScope, ItemKey, MemoryBudget, Weighed};
use crate::protocol::Artifact;

/// Largest computed body also kept uncompressed in the memory budget.
const KEEP_IDENTITY_BODY_MAX: usize = 64 << 10;

/// A missing gene pack is looked up again after this long (a precompute run is picked up).
const GENE_PACK_RECHECK: Duration = Duration::from_secs(60);

/// No on-demand pack build was started by this process.
const PACK_BUILD_IDLE: u8 = 0;
/// A build is running in the background.
const PACK_BUILD_RUNNING: u8 = 1;
/// The build finished: the pack index is to be loaded.
const PACK_BUILD_DONE: u8 = 2;
/// The build failed or its result was loaded: not started again by this process.
const PACK_BUILD_SETTLED: u8 = 3;

/// A rendered artifact: its gzip body (what is stored and usually sent), the identity body when
/// at hand, the digest of the identity bytes (fingerprint + artifact) and the tag of the gzip
/// bytes themselves, so that a strong ETag always names exactly the bytes sent (a gzip stream
/// read from the cache prefix may have been written by another compressor setting).
#[derive(Debug)]
pub(super) struct Rendered {
    pub(super) gzipped: Bytes,
    body: Option<Bytes>,
    pub(super) digest: String,
    pub(super) gzip_tag: String,
}

impl Weighed for Rendered {
    fn weight_bytes(&self) -> u64 {
        let body = self.body.as_ref().map_or(0, Bytes::len);
        (self.gzipped.len() + body + self.digest.len() + self.gzip_tag.len() + 96) as u64
    }
}

impl Rendered {
    /// The uncompressed body (inflated on demand, off the executor when large, when only the
    /// gzip form is held).
    pub(super) async fn identity(&self) -> Result<Bytes, DatasetError> {
        if let Some(body) = &self.body {
            return Ok(body.clone());
        }
        let gzipped = self.gzipped.clone();
        // Inflating touches about four bytes out per byte in.
        run_sized(gzipped.len().saturating_mul(4), move || gunzip(&gzipped)).await?
    }
}

fn gunzip(data: &[u8]) -> Result<Bytes, DatasetError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| {
            DatasetError::Unsupported(format!("cached artifact is not valid gzip: {e}"))
        })?;
    Ok(Bytes::from(out))
}

/// The tag of a gzip stream: 16 hex characters of its SHA-256.
fn gzip_tag(gzipped: &[u8]) -> String {
    hex::encode(&Sha256::digest(gzipped)[..8])
}

/// The memory-budget key of `artifact` of `dataset` (dataset ids are safe names, without NUL:
/// the key cannot be ambiguous).
fn rendered_key(dataset: &Dataset, artifact: &Artifact) -> ItemKey {
    ItemKey::text(format!("{}\0{}", dataset.id(), artifact.cache_key()))
}

fn etag_digest(fingerprint: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(fingerprint.as_bytes());
    hasher.update(b"\0");
    hasher.update(key.as_bytes());
    hex::encode(&hasher.finalize()[..12])
}

/// How an artifact was obtained (reported in `Server-Timing`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    /// In-process LRU.
    Memory,
    /// One GET of the cache prefix.
    Cache,
    /// Computed from the source store (milliseconds spent computing and compressing).
    Computed(f64),
}

impl Outcome {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Outcome::Memory => "memory",
            Outcome::Cache => "cache",
            Outcome::Computed(_) => "computed",
        }
    }
}

/// Per-atlas cache state: fingerprint and the gene pack index (loaded once per process; a
/// missing pack is looked up again after a minute, so a precompute run is picked up).
#[derive(Debug)]
pub(super) struct AtlasState {
    pub(super) fingerprint: String,
    gene_pack: tokio::sync::Mutex<Option<(Instant, Option<Arc<GenePack>>)>>,
    /// State of an on-demand pack build (`PACK_BUILD_*`).
    pack_build: Arc<AtomicU8>,
}

impl AtlasState {
    pub(super) fn of(dataset: &Dataset) -> Self {
        AtlasState {
            fingerprint: fingerprint(dataset),
            gene_pack: tokio::sync::Mutex::new(None),
            pack_build: Arc::new(AtomicU8::new(PACK_BUILD_IDLE)),
        }
    }
}

/// Rendered artifacts held in the process's memory budget and the cache prefix behind them,
/// shared by every atlas (and kept when the catalogue grows).
pub(super) struct Renderer {
    pub(super) cache: Option<ArtifactCache>,
    gene_pack_on_demand: bool,
    /// Rendered artifacts, keyed by dataset and artifact, in the budget the atlases' own
    /// buffers count against (one budget for everything the process retains).
    rendered: BudgetScope,
}

impl Renderer {
    pub(super) fn new(
        cache: Option<ArtifactCache>,
        budget: &MemoryBudget,
        gene_pack_on_demand: bool,
    ) -> Self {
        Renderer {
            cache,
            gene_pack_on_demand,
            rendered: budget.scope(),
        }
    }

    /// The rendered artifact, from memory, the cache prefix or computed; failures are not
    /// remembered.
    pub(super) async fn render(
        &self,
        state: &AtlasState,
        dataset: &Arc<Dataset>,
        artifact: &Artifact,
    ) -> Result<(Arc<Rendered>, Outcome), Arc<DatasetError>> {
        let key = rendered_key(dataset, artifact);
        if let Some(found) = self.rendered.get::<Rendered>(&key).await {
            return Ok((found, Outcome::Memory));
        }
        let outcome = std::sync::Mutex::new(Outcome::Memory);
        let rendered = self
            .rendered
            .get_or_try_insert(key, async {
                let (rendered, how) = self.load_or_compute(state, dataset, artifact).await?;
                if let Ok(mut slot) = outcome.lock() {
                    *slot = how;
                }
                Ok::<_, DatasetError>(rendered)
            })
            .await?;
        let how = outcome.lock().map(|o| *o).unwrap_or(Outcome::Memory);
        Ok((rendered, how))
    }

    /// Cache prefix (one GET) → compute, writing computed artifacts back create-only.
    async fn load_or_compute(
        &self,
        state: &AtlasState,
        dataset: &Arc<Dataset>,
        artifact: &Artifact,
    ) -> Result<(Rendered, Outcome), DatasetError> {
        let key = artifact.cache_key();
        let fingerprint = &state.fingerprint;
        let digest = etag_digest(fingerprint, &key);
        if let Some(cache) = &self.cache {
            let cached = match artifact {
                Artifact::Gene(index) => match self.gene_pack(state, dataset).await {
                    Some(pack) => match pack.read(cache, fingerprint, *index).await {
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
                _ => match cache.get(fingerprint, &key).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(target: "cellucid_edge::cache", "cache read failed: {e}");
                        None
                    }
                },
            };
            if let Some(gzipped) = cached {
                let tag = {
                    let gzipped = gzipped.clone();
                    run_sized(gzipped.len(), move || gzip_tag(&gzipped)).await?
                };
                let rendered = Rendered {
                    gzipped,
                    body: None,
                    digest,
                    gzip_tag: tag,
                };
                return Ok((rendered, Outcome::Cache));
            }
        }
        let computing = Instant::now();
        let body = match artifact.derived_from() {
            // Strict documents and quantised payloads (#14): translated from the source
            // artifact's body, itself from memory, the cache prefix or computed.
            Some(source) => {
                let source_body = self.source_body(state, dataset, &source).await?;
                artifact.derive(dataset, source_body).await?
            }
            None => artifact.compute(dataset).await?,
        };
        let (gzipped, tag) = {
            let body = body.clone();
            run_sized(body.len(), move || {
                let gzipped = gzip(&body);
                let tag = gzip_tag(&gzipped);
                (gzipped, tag)
            })
            .await?
        };
        let compute_ms = computing.elapsed().as_secs_f64() * 1000.0;
        // Genes (and what is derived from one) are not written one by one: precompute builds
        // the gene-major pack.
        if let Some(cache) = &self.cache
            && artifact.write_back()
            && let Err(e) = cache
                .put(
                    fingerprint,
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
                // client gets them inflated on demand): the budget's bytes hold twice the
                // artifacts.
                body: (body.len() <= KEEP_IDENTITY_BODY_MAX).then_some(body),
                digest,
                gzip_tag: tag,
            },
            Outcome::Computed(compute_ms),
        ))
    }

    /// The uncompressed body of `source` for a derived artifact: from the in-memory LRU, else
    /// loaded or computed (and then kept in the LRU like any rendered artifact).
    async fn source_body(
        &self,
        state: &AtlasState,
        dataset: &Arc<Dataset>,
        source: &Artifact,
    ) -> Result<Bytes, DatasetError> {
        let key = rendered_key(dataset, source);
        if let Some(found) = self.rendered.get::<Rendered>(&key).await {
            return found.identity().await;
        }
        let (rendered, _) = Box::pin(self.load_or_compute(state, dataset, source)).await?;
        let body = rendered.identity().await?;
        self.rendered.insert(key, Arc::new(rendered)).await;
        Ok(body)
    }

    /// Load the gene pack index of `dataset` now (starting its on-demand build when allowed)
    /// instead of at its first gene request.
    pub(super) async fn warm_gene_pack(&self, state: &AtlasState, dataset: &Arc<Dataset>) {
        let _ = self.gene_pack(state, dataset).await;
    }

    async fn gene_pack(&self, state: &AtlasState, dataset: &Arc<Dataset>) -> Option<Arc<GenePack>> {
        let cache = self.cache.as_ref()?;
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
    /// [`Config::gene_pack_on_demand`](crate::service::Config::gene_pack_on_demand)) unless
    /// this process already started one.
    fn start_pack_build(&self, dataset: &Arc<Dataset>, cache: &ArtifactCache, state: &AtlasState) {
        let small_csr = matches!(&dataset.layout().x,
            MatrixMeta::Csr(meta) if meta.nnz <= dataset.options().csr_scan_max_nnz);
        if !self.gene_pack_on_demand
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
            // Two tasks at once: the build is CPU-bound and runs once.
            let options = PrecomputeOptions::default();
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
}
