//! `cellucid-edge serve`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use cellucid_edge::cache::ArtifactCache;
use cellucid_edge::catalog::Catalog;
use cellucid_edge::http::{App, AppConfig, CorsPolicy, ServerIdentity};
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
    /// Bytes of rendered artifacts kept in memory.
    #[arg(long, default_value_t = 256 << 20)]
    pub memory_cache_bytes: u64,
    /// Cache prefix URL (a path, file://, s3://bucket/prefix): derived artifacts are read from
    /// and written back to it, and genes are served from the gene-major pack `precompute` builds.
    #[arg(long, env = "CELLUCID_CACHE_URL")]
    pub cache: Option<String>,
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
    /// Host names (a reverse proxy's) accepted in `Host` by the 0.9 protocol on any port; a
    /// loopback bind otherwise answers 421 to any Host but this server's (DNS-rebinding guard).
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

/// Run the server until Ctrl-C.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let share = match &args.share_secret_env {
        Some(var) => Some(ShareSecret::from_env(var)?),
        None => None,
    };
    let private = share.is_some();
    let location = super::open_location(args.store.as_deref()).await?;
    let shown = location.display.clone();
    let metrics = Arc::new(ReadMetrics::default());
    let catalog = Catalog::open(location, &args.atlas.options(), metrics)
        .await
        .with_context(|| format!("opening {shown}"))?;
    let listener = cellucid_edge::serve::bind(SocketAddr::new(args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let local = listener.local_addr()?;
    let cache = match &args.cache {
        Some(url) => Some(ArtifactCache::new(
            &open_cache_url(url).with_context(|| format!("opening cache {url}"))?,
            Arc::new(ReadMetrics::default()),
        )),
        None => None,
    };
    let config = AppConfig {
        cors: CorsPolicy::from_list(&args.cors),
        memory_cache_bytes: args.memory_cache_bytes,
        cache,
        identity: ServerIdentity {
            host: args.host.to_string(),
            port: local.port(),
        },
        share,
        request_timeout: args.request_timeout,
        gene_pack_on_demand: !args.no_pack_on_demand,
        strict: cellucid_edge::protocol::strict::StrictConfig {
            quantize: args.quantize,
        },
    };
    let app = super::ready::with_protocol_09(
        App::new(catalog, config),
        args.ready.as_deref(),
        cellucid_edge::v09::host::HostCheck::for_bind(args.host, local.port(), &args.allowed_hosts),
    )
    .await?;
    let app = Arc::new(app);
    let host = if args.host.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        args.host.to_string()
    };
    let base = format!("http://{host}:{}", local.port());
    for ds in app.catalog().datasets() {
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
        let v09_bases = app.protocol_09().map(|v09| v09.base_paths());
        for link in cellucid_edge::links::viewer_links(&base, app.catalog(), v09_bases.as_deref()) {
            println!("{}", link.line());
        }
    }
    if app.protocol_09().is_some() && !private {
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
    cellucid_edge::serve::serve_until(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down");
    })
    .await?;
    Ok(())
}
