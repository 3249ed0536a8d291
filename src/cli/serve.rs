//! `cellucid-edge serve`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use cellucid_edge::cache::ArtifactCache;
use cellucid_edge::http::{CorsPolicy, ServerIdentity};
use cellucid_edge::service::host::HostCheck;
use cellucid_edge::service::{Config, Service};
use cellucid_edge::share::ShareSecret;
use cellucid_edge::store::ReadMetrics;

use super::{AtlasArgs, open_cache_url};

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Store URL: a path, file://…, s3://bucket/prefix; a directory of stores becomes a
    /// catalogue. Default: the built-in demo atlas (pbmc68k_reduced).
    pub store: Option<String>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to bind (0 picks a free one).
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// Allowed CORS origins (repeat or comma-separate): `*`, `default`, or exact origins.
    #[arg(long, value_delimiter = ',')]
    pub cors: Vec<String>,
    /// The memory budget (bytes): everything the server keeps in memory — every atlas's
    /// buffers and the rendered artifacts — counts against it, least recently used evicted
    /// first. Also the largest single buffer an atlas may need.
    #[arg(long, env = "CELLUCID_MEMORY_CACHE_BYTES",
          default_value_t = cellucid_edge::memory::DEFAULT_BUDGET_BYTES)]
    pub memory_cache_bytes: u64,
    /// Cache prefix URL (a path, file://, s3://bucket/prefix): derived artifacts are read from
    /// and written back to it, and genes are served from the gene-major pack `precompute` builds.
    #[arg(long, env = "CELLUCID_CACHE_URL")]
    pub cache: Option<String>,
    /// Keep no cache: without `--cache`, a local store otherwise caches what it computes (and
    /// the gene-major pack) in the user cache directory, across restarts.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
    /// With `--cache` but no gene pack there yet, do not build the pack in the background on the
    /// first gene request (a CSR X small enough to scan is otherwise transposed once and
    /// memoised into the cache prefix; larger X always needs `precompute`).
    #[arg(long)]
    pub no_pack_on_demand: bool,
    /// Private atlas: name of the environment variable holding the share-link secret. Only
    /// `/s/<token>/…` requests signed with it are served (links from `cellucid-edge share`).
    #[arg(long, value_name = "VAR")]
    pub share_secret_env: Option<String>,
    /// Longest time one request may take (e.g. `30s`); a slower store gets a 503 + Retry-After.
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub request_timeout: std::time::Duration,
    /// The store the 0.9 protocol (under `/v0.9`) serves instead of STORE: a Cellucid-ready
    /// copy written by `cellucid-edge ready`, or an `.h5ad` / `.zarr.zip` of the same atlas.
    #[arg(long, value_name = "URL", env = "CELLUCID_READY_URL")]
    pub ready: Option<String>,
    /// Host names (a reverse proxy's) accepted in `Host` on any port; a loopback bind otherwise
    /// answers 421 to any host but this server's, on every route (DNS-rebinding guard).
    #[arg(long = "allowed-host", value_name = "NAME", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Strict profile (/strict, #14): serve gene and continuous obs values quantised to 8 or
    /// 16 bits (min/max in the manifests' tuples, NaN as the missing code) instead of float32.
    #[arg(long, value_name = "BITS", env = "CELLUCID_QUANTIZE")]
    pub quantize: Option<cellucid_edge::model::quantize::QuantBits>,
    #[command(flatten)]
    pub atlas: AtlasArgs,
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    cellucid_edge::share::parse_validity(text)
}

impl ServeArgs {
    /// The default local cache directory, used for a local store served without `--cache`
    /// or `--no-cache` (fast by default: artifacts and the gene pack survive restarts).
    fn default_cache(&self) -> Option<std::path::PathBuf> {
        if self.cache.is_some() || self.no_cache {
            return None;
        }
        let store = self.store.as_deref()?;
        let local = cellucid_edge::store::open_store_url(store).ok()?.is_local;
        local
            .then(cellucid_edge::cache::local::default_cache_dir)
            .flatten()
    }

    /// The service configuration these flags describe, for a server bound to `port`.
    fn config(&self, port: u16) -> anyhow::Result<Config> {
        let share = match &self.share_secret_env {
            Some(var) => Some(ShareSecret::from_env(var)?),
            None => None,
        };
        let cache_url = self
            .cache
            .clone()
            .or_else(|| self.default_cache().map(|d| d.display().to_string()));
        let cache = match &cache_url {
            Some(url) => Some(ArtifactCache::new(
                &open_cache_url(url).with_context(|| format!("opening cache {url}"))?,
                Arc::new(ReadMetrics::default()),
            )),
            None => None,
        };
        Ok(Config {
            data_url: self.store.clone(),
            ready_url: self.ready.clone(),
            dataset: self.atlas.options(),
            cache,
            cors: CorsPolicy::from_list(&self.cors),
            share,
            host_rule: HostCheck::for_bind(self.host, port, &self.allowed_hosts),
            identity: ServerIdentity {
                host: self.host.to_string(),
                port,
            },
            request_timeout: self.request_timeout,
            memory_cache_bytes: self.memory_cache_bytes,
            gene_pack_on_demand: !self.no_pack_on_demand,
            strict: cellucid_edge::protocol::strict::StrictConfig {
                quantize: self.quantize,
            },
            ..Config::default()
        })
    }
}

/// Run the server until Ctrl-C.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // The secret is checked before anything is opened or bound.
    if let Some(var) = &args.share_secret_env {
        ShareSecret::from_env(var)?;
    }
    let private = args.share_secret_env.is_some();
    let listener = cellucid_edge::serve::bind(SocketAddr::new(args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let local = listener.local_addr()?;
    let config = args.config(local.port())?;
    let shown = args
        .store
        .clone()
        .unwrap_or_else(|| "the demo atlas".into());
    let service = Service::open(config)
        .await
        .with_context(|| format!("opening {shown}"))?;
    let service = Arc::new(service);
    let catalog = service.catalog();
    if let (Some(dir), Some(cache)) = (args.default_cache(), &service.config().cache) {
        eprintln!(
            "cache:       {} (default for local stores: kept across restarts; --no-cache turns it \
             off)",
            dir.display()
        );
        cellucid_edge::cache::local::spawn_warm_up(catalog.datasets().to_vec(), cache.clone());
        service.mounts().seed().warm_gene_packs().await;
    }
    let host = if args.host.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        args.host.to_string()
    };
    let base = format!("http://{host}:{}", local.port());
    for ds in catalog.datasets() {
        eprintln!(
            "serving `{}` ({} cells, {} genes) from {shown}",
            ds.name(),
            ds.n_cells(),
            ds.n_genes()
        );
    }
    println!("local URL:   {base}");
    if private {
        println!(
            "private:     every request needs a share token; make links with \
             `cellucid-edge share --secret-env {} --base {base}`",
            args.share_secret_env.as_deref().unwrap_or_default()
        );
    } else {
        // One link per viewer generation (#14): root, /strict, /v0.9.
        let v09_bases = service.mounts().v09().base_paths();
        for link in cellucid_edge::links::viewer_links(&base, &catalog, Some(&v09_bases)) {
            println!("{}", link.line());
        }
        for (id, path) in &v09_bases {
            println!("0.9 base URL ({id}): {base}{path}");
        }
        eprintln!(
            "note: the 0.9 link is unverified: whether the hosted viewer accepts ?remote= for the \
             0.9 protocol could not be checked (protocol-0.9.md §7); cellucid 0.9.5 itself opens \
             the viewer from the data server's own origin (<base>/?anndata=true)."
        );
    }
    eprintln!(
        "note: the hosted viewer reaches http://127.0.0.1 only from this machine; to share with \
         collaborators serve over https (e.g. the Lambda deployment in infra/)."
    );
    eprintln!("press Ctrl-C to stop");
    cellucid_edge::serve::serve_until(listener, service, async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down");
    })
    .await?;
    Ok(())
}
