//! S3 end to end, against a real S3-protocol server this test starts itself:
//! `moto_server -H 127.0.0.1 -p <free port>` (from PATH, else from the test venv that
//! `tests/common/python.rs` provisions).
//!
//! The fixture stores are uploaded through object_store; the atlas and the cache prefix are
//! opened as `s3://` URLs with the standard AWS environment (`AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, fake credentials). Without any `moto_server` the tests say so in one loud
//! line — unless `CI` is set, where they fail.

mod common;

use common::python;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cellucid_edge::cache::{ArtifactCache, PutOutcome};
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::DatasetOptions;
use cellucid_edge::http::AppConfig;
use cellucid_edge::store::{ReadMetrics, open_store_url};
use common::conformance::{assert_failures, check_server};
use common::{
    ATLASES, Resp, TestServer, compare_body, files_below, fixture_store, golden_body, location,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The moto server of this test binary (one per process; it dies with the process).
struct Moto {
    endpoint: String,
    /// `sh` holding moto; its stdin closes when this process exits, and `sh` then kills moto.
    _guard: Mutex<Child>,
}

static MOTO: OnceLock<Option<Moto>> = OnceLock::new();

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn start_moto() -> Option<Moto> {
    // From PATH, else the test venv (tests/common/python.rs); a failure under CI, one loud
    // line elsewhere.
    let moto_server = python::moto_server("the S3 tests (moto_server)")?;
    let port = free_port();
    let log = std::env::temp_dir().join(format!("cellucid-edge-moto-{port}.log"));
    // `sh` starts moto and waits on its stdin; when this test process exits (however), the
    // pipe closes and `sh` stops moto.
    let child = Command::new("sh")
        .args([
            "-c",
            "\"$3\" -H 127.0.0.1 -p \"$1\" >\"$2\" 2>&1 & m=$!; read _; kill $m",
            "sh",
            &port.to_string(),
            &log.display().to_string(),
            &moto_server.display().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh for moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {endpoint} within 60 s (log: {})",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: runs once, inside the OnceLock initialiser that every test calls before doing
    // anything else, so no other thread of this binary reads the environment concurrently.
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
        std::env::set_var("AWS_ALLOW_HTTP", "true");
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_SESSION_TOKEN");
    }
    Some(Moto {
        endpoint,
        _guard: Mutex::new(child),
    })
}

/// The shared moto server, or `None` when the tests are skipped.
fn moto() -> Option<&'static Moto> {
    MOTO.get_or_init(start_moto).as_ref()
}

/// Create `bucket` (object_store has no bucket API: a plain S3 `PUT /<bucket>`).
async fn create_bucket(moto: &Moto, bucket: &str) {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::put(format!("{}/{bucket}", moto.endpoint))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("PUT bucket");
    assert!(
        response.status().is_success(),
        "creating bucket {bucket}: {}",
        response.status()
    );
}

/// The object path of `rel` below `prefix`, verbatim like the zarr adapter reads it.
fn object_path(prefix: &str, rel: &str) -> Path {
    let full = format!("{}/{rel}", prefix.trim_matches('/'));
    Path::parse(&full).unwrap_or_else(|_| Path::from(full.as_str()))
}

fn bucket_store(bucket: &str) -> Arc<dyn ObjectStore> {
    open_store_url(&format!("s3://{bucket}"))
        .expect("open bucket")
        .store
}

/// Upload fixture `<atlas>.<version>.zarr` to `s3://<bucket>/<prefix>`.
async fn upload_fixture(bucket: &str, prefix: &str, atlas: &str, version: &str) {
    let store = bucket_store(bucket);
    for (rel, bytes) in files_below(&fixture_store(atlas, version)) {
        store
            .put(&object_path(prefix, &rel), PutPayload::from(bytes))
            .await
            .unwrap_or_else(|e| panic!("upload {rel}: {e}"));
    }
}

async fn delete_prefix(bucket: &str, prefix: &str) {
    use futures::TryStreamExt;
    let store = bucket_store(bucket);
    let keys: Vec<Path> = store
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .expect("list");
    for key in keys {
        store.delete(&key).await.expect("delete");
    }
}

fn cache_at(url: &str) -> ArtifactCache {
    ArtifactCache::new(&location(url), Arc::new(ReadMetrics::default()))
}

async fn serve_s3(store_url: &str, cache_url: Option<&str>, options: DatasetOptions) -> TestServer {
    let catalog = Catalog::open(
        location(store_url),
        &options,
        Arc::new(ReadMetrics::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("open {store_url}: {e}"));
    let config = AppConfig {
        cache: cache_url.map(cache_at),
        ..AppConfig::default()
    };
    TestServer::start_with(catalog, config).await
}

/// `Server-Timing` as (cache outcome, store GETs, bytes read).
fn timing(r: &Resp) -> (String, u64, u64) {
    let header = r.header("server-timing");
    let outcome = header
        .split("cache;desc=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string();
    let number = |key: &str| -> u64 {
        header
            .split(key)
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in Server-Timing {header:?}"))
    };
    (outcome, number("gets="), number("bytes="))
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellucid-edge"))
}

/// `cellucid-edge precompute STORE --cache CACHE` in its own process; its stdout.
fn run_precompute(store: &str, cache: &str) -> String {
    let out = binary()
        .args([
            "precompute",
            store,
            "--cache",
            cache,
            "--jobs",
            "2",
            "--quiet",
        ])
        .output()
        .expect("run precompute");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "precompute failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_golden(atlas: &str, route: &str, r: &Resp) {
    assert_eq!(
        r.status,
        200,
        "{route}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.decoded().expect("decodable body");
    if let Some(diff) = compare_body(route, &golden_body(atlas, route), &body) {
        panic!("{atlas} {route}: {diff}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_inspect_from_s3() {
    let Some(moto) = moto() else { return };
    create_bucket(moto, "t-open").await;
    upload_fixture("t-open", "atlases/edge.v3.zarr", "edge", "v3").await;
    let url = "s3://t-open/atlases/edge.v3.zarr";
    let ds = common::open_dataset(url).await.expect("open from S3");
    assert_eq!((ds.n_cells(), ds.n_genes()), (480, 120));
    assert_eq!(ds.name(), "edge.v3.zarr");

    let out = binary()
        .args(["inspect", url, "--json"])
        .output()
        .expect("run inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["n_cells"], 480);
    assert_eq!(report["x"], "csr");
    assert_eq!(report["store"], url);
    // A missing store is a clear error, not a panic.
    let missing = binary()
        .args(["inspect", "s3://t-open/nothing-here.zarr"])
        .output()
        .expect("run inspect");
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(message.contains("nothing-here.zarr"), "{message}");
}

/// Every fixture atlas (zarr v2 and v3) served from S3 with an S3 cache prefix passes the
/// conformance check twice: cold (computed, written back) and from a fresh App (read from the
/// cache prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_over_s3_with_an_s3_cache() {
    let Some(moto) = moto() else { return };
    create_bucket(moto, "t-conf").await;
    create_bucket(moto, "t-conf-cache").await;
    for atlas in ATLASES {
        for version in ["v2", "v3"] {
            let label = format!("{atlas}.{version}.zarr on S3");
            upload_fixture("t-conf", &format!("{atlas}.{version}.zarr"), atlas, version).await;
            let url = format!("s3://t-conf/{atlas}.{version}.zarr");
            let cache = "s3://t-conf-cache/cache";
            for pass in ["cold", "from the cache prefix"] {
                let server = serve_s3(&url, Some(cache), DatasetOptions::default()).await;
                let failures = check_server(atlas, &format!("{label} ({pass})"), &server).await;
                if pass != "cold" {
                    // A fresh App: the manifest comes from the cache prefix in one GET.
                    let r = server.get_viewer("/obs_manifest.json").await;
                    let (outcome, _, _) = timing(&r);
                    assert!(
                        outcome == "cache" || outcome == "memory",
                        "{label}: obs_manifest outcome {outcome}"
                    );
                }
                server.stop().await;
                assert_failures(&format!("{label} ({pass})"), &failures);
            }
        }
    }
}

/// After `precompute`, any gene of a CSR atlas is exactly one ranged GET of the response's
/// size (after the one-time index read); before it, a large CSR X answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gene_after_precompute_is_one_get() {
    let Some(moto) = moto() else { return };
    create_bucket(moto, "t-gene").await;
    create_bucket(moto, "t-gene-cache").await;
    upload_fixture("t-gene", "edge.v3.zarr", "edge", "v3").await;
    let url = "s3://t-gene/edge.v3.zarr";
    let cache = "s3://t-gene-cache/c";
    // Pretend X is large: no scan of X is allowed inside a request.
    let options = DatasetOptions {
        csr_scan_max_nnz: 0,
        ..DatasetOptions::default()
    };

    let before = serve_s3(url, Some(cache), options.clone()).await;
    let r = before.get_viewer("/var/1234.values.f32").await;
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("precompute"));
    before.stop().await;

    let summary = run_precompute(url, cache);
    assert!(summary.contains("120 genes"), "{summary}");
    // Resumable and idempotent: a second run finds everything.
    let again = run_precompute(url, cache);
    assert!(again.contains("written      0 artifacts"), "{again}");
    assert!(again.contains("already present"), "{again}");

    let server = serve_s3(url, Some(cache), options).await;
    // The first gene also reads the gene names and the pack index (once per process).
    let first = server.get_viewer("/var/1234.values.f32").await;
    assert_golden("edge", "var/1234.values.f32", &first);
    for gene in ["GENE000", "DUP", "-dash-lead", "%%"] {
        let route = format!("var/{gene}.values.f32");
        let r = server.get_viewer(&common::quote_route(&route)).await;
        assert_golden("edge", &route, &r);
        let (outcome, gets, bytes) = timing(&r);
        assert_eq!(outcome, "cache", "{route}");
        assert_eq!(gets, 1, "{route}: {}", r.header("server-timing"));
        assert_eq!(r.header("content-encoding"), "gzip");
        assert_eq!(
            bytes,
            r.body.len() as u64,
            "{route}: bytes read = response bytes"
        );
    }
    server.stop().await;
}

/// A fresh `serve` process answers from the cache prefix that another process filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit_from_a_fresh_process() {
    let Some(moto) = moto() else { return };
    create_bucket(moto, "t-fresh").await;
    upload_fixture("t-fresh", "pbmc68k.v3.zarr", "pbmc68k", "v3").await;
    let url = "s3://t-fresh/pbmc68k.v3.zarr";
    let cache = "s3://t-fresh/cache";
    run_precompute(url, cache);

    let mut child = binary()
        .args([
            "serve", url, "--cache", cache, "--port", "0", "--log", "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    // Keep draining stdout (the server prints more lines after the URL).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("local URL:") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(60)).ok();
    let result = async {
        let base = base.ok_or("serve printed no local URL")?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<Bytes>>();
        let mut seen = Vec::new();
        for route in [
            "dataset_identity.json",
            "obs_manifest.json",
            "points_3d.bin",
        ] {
            let request = http::Request::get(format!("{base}/{route}"))
                .header("accept-encoding", "gzip")
                .body(http_body_util::Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let response = client.request(request).await.map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            use http_body_util::BodyExt;
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            seen.push((
                route,
                Resp {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                },
            ));
        }
        Ok::<_, String>(seen)
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    for (route, r) in result.expect("requests to the fresh process") {
        assert_golden("pbmc68k", route, &r);
        let (outcome, gets, _) = timing(&r);
        assert_eq!(outcome, "cache", "{route}: {}", r.header("server-timing"));
        assert_eq!(gets, 1, "{route}: {}", r.header("server-timing"));
    }
}

/// A changed source gets a new fingerprint and never stale data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_source_gets_a_new_fingerprint() {
    let Some(moto) = moto() else { return };
    create_bucket(moto, "t-fp").await;
    let url = "s3://t-fp/atlas.zarr";
    let cache = "s3://t-fp/cache";
    upload_fixture("t-fp", "atlas.zarr", "edge", "v3").await;
    let first = serve_s3(url, Some(cache), DatasetOptions::default()).await;
    let r = first.get_viewer("/obs_manifest.json").await;
    assert_golden("edge", "obs_manifest.json", &r);
    let id = first.app.catalog().first().id().to_string();
    let fp_edge = first.app.fingerprint(&id);
    assert!(fp_edge.is_some());
    first.stop().await;

    // Same URL, different atlas.
    delete_prefix("t-fp", "atlas.zarr").await;
    upload_fixture("t-fp", "atlas.zarr", "sparse", "v3").await;
    let second = serve_s3(url, Some(cache), DatasetOptions::default()).await;
    let id = second.app.catalog().first().id().to_string();
    let fp_sparse = second.app.fingerprint(&id);
    assert_ne!(fp_edge, fp_sparse);
    let r = second.get_viewer("/obs_manifest.json").await;
    assert_golden("sparse", "obs_manifest.json", &r);
    assert_eq!(timing(&r).0, "computed");
    second.stop().await;

    // Only the metadata document's bytes change (same content, re-serialised): still a new
    // fingerprint — the cache never guesses that a rewritten source is unchanged.
    let store = bucket_store("t-fp");
    let root = object_path("atlas.zarr", "zarr.json");
    let doc: serde_json::Value =
        serde_json::from_slice(&store.get(&root).await.unwrap().bytes().await.unwrap()).unwrap();
    store
        .put(&root, PutPayload::from(serde_json::to_vec(&doc).unwrap()))
        .await
        .unwrap();
    let third = serve_s3(url, Some(cache), DatasetOptions::default()).await;
    let fp_third = third.app.fingerprint(&id);
    assert_ne!(fp_sparse, fp_third);
    third.stop().await;
}

/// Concurrent writers of one cache entry: create-only puts, so the first complete write wins
/// and nobody corrupts it; concurrent cold servers all answer correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_corrupt_an_entry() {
    let Some(moto) = moto() else { return };
    create_bucket(moto, "t-conc").await;
    let cache = cache_at("s3://t-conc/cache");
    let bodies: Vec<Bytes> = (0..8u8)
        .map(|i| Bytes::from(vec![i; 300_000 + usize::from(i)]))
        .collect();
    let results = futures::future::join_all(bodies.iter().map(|b| {
        let cache = cache.clone();
        let b = b.clone();
        async move {
            cache
                .put("fp", "obs/0.codes", b, "application/octet-stream")
                .await
        }
    }))
    .await;
    let written = results
        .iter()
        .filter(|r| matches!(r, Ok(PutOutcome::Written)))
        .count();
    assert!(
        results.iter().all(Result::is_ok),
        "a concurrent writer failed: {results:?}"
    );
    assert!(written >= 1, "no writer won: {results:?}");
    let stored = cache
        .get("fp", "obs/0.codes")
        .await
        .unwrap()
        .expect("entry");
    assert!(
        bodies.contains(&stored),
        "the entry is not one writer's complete body ({} bytes)",
        stored.len()
    );
    // Once present, a later writer never replaces it.
    let late = cache
        .put(
            "fp",
            "obs/0.codes",
            Bytes::from_static(b"late"),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(late, PutOutcome::AlreadyPresent);
    assert_eq!(cache.get("fp", "obs/0.codes").await.unwrap(), Some(stored));

    // Four cold servers race to compute and write the same artifacts.
    upload_fixture("t-conc", "sparse.v2.zarr", "sparse", "v2").await;
    let url = "s3://t-conc/sparse.v2.zarr";
    let mut servers = Vec::new();
    for _ in 0..4 {
        servers.push(serve_s3(url, Some("s3://t-conc/cache"), DatasetOptions::default()).await);
    }
    let routes = [
        "obs_manifest.json",
        "points_2d.bin",
        "dataset_identity.json",
    ];
    let responses = futures::future::join_all(servers.iter().flat_map(|s| {
        routes
            .iter()
            .map(move |route| async move { (*route, s.get_viewer(&format!("/{route}")).await) })
    }))
    .await;
    for (route, r) in &responses {
        assert_golden("sparse", route, r);
    }
    for s in servers {
        s.stop().await;
    }
    // And what they left behind serves a fresh server correctly.
    let fresh = serve_s3(url, Some("s3://t-conc/cache"), DatasetOptions::default()).await;
    for route in routes {
        let r = fresh.get_viewer(&format!("/{route}")).await;
        assert_golden("sparse", route, &r);
        assert_eq!(timing(&r).0, "cache", "{route}");
    }
    fresh.stop().await;
}

/// A cache prefix that cannot be written (its bucket does not exist) never fails a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_write_failure_is_tolerated() {
    let Some(moto) = moto() else { return };
    create_bucket(moto, "t-fail").await;
    upload_fixture("t-fail", "edge.v2.zarr", "edge", "v2").await;
    let server = serve_s3(
        "s3://t-fail/edge.v2.zarr",
        Some("s3://no-such-bucket-for-cellucid/cache"),
        DatasetOptions::default(),
    )
    .await;
    for route in [
        "dataset_identity.json",
        "obs_manifest.json",
        "points_3d.bin",
        "var/1234.values.f32",
    ] {
        let r = server.get_viewer(&common::quote_route(route)).await;
        assert_golden("edge", route, &r);
        assert_eq!(timing(&r).0, "computed", "{route}");
        // Computed responses also report the compute time.
        assert!(
            r.header("server-timing").contains("compute;dur="),
            "{route}: {}",
            r.header("server-timing")
        );
    }
    server.stop().await;
}
