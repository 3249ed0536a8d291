//! Hostile stores (the data-driven list of `common::hostile_stores`) through the service
//! in-process (`Service::handle`) and through `cellucid-edge inspect`: every declared size is
//! checked, corrupt sparse structure is an error, fields that cannot be served are left out
//! with a warning — and nothing aborts the process. Also: a huge declared shape fails fast
//! without growing the server's memory (measured on the real binary), a gene of a row-chunked
//! dense X is guarded like a CSR scan, and a CSR scan reads X's `indptr` once per process.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::{DatasetContext, DatasetOptions};
use cellucid_edge::service::{Config, Service};
use common::hostile_stores::{Damage, Opened, cases, prepare};
use common::transport::{InProcess, TestTransport};
use common::{Resp, location, quote_route};

const VERSIONS: [&str; 2] = ["v2", "v3"];

fn url(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The service over `catalog`, called in-process.
fn in_process(catalog: Catalog, config: Config) -> InProcess {
    InProcess(Arc::new(
        Service::new(catalog, config).expect("service mounts"),
    ))
}

/// One viewer request through the service in-process; the status and the decoded body.
async fn ask(app: &InProcess, route: &str) -> (u16, Vec<u8>) {
    let response = app.get_viewer(&quote_route(route)).await;
    let body = response.decoded().expect("gzip body");
    (response.status.as_u16(), body)
}

#[tokio::test]
async fn hostile_stores_through_the_service_in_process() {
    let mut failures = Vec::new();
    for case in cases() {
        for version in VERSIONS {
            let store = prepare(case.atlas, version, case.damage).await;
            let opened = Catalog::open(
                location(url(&store.path)),
                &DatasetOptions::default(),
                &DatasetContext::default(),
            )
            .await;
            let label = format!("{} ({version})", case.name);
            let catalog = match (case.opened, opened) {
                (Opened::Refused(text), Err(e)) => {
                    if !e.to_string().contains(text) {
                        failures.push(format!("{label}: open error lacks `{text}`: {e}"));
                    }
                    continue;
                }
                (Opened::Refused(_), Ok(_)) => {
                    failures.push(format!("{label}: opened, expected a refusal"));
                    continue;
                }
                (Opened::Serves(_), Err(e)) => {
                    failures.push(format!("{label}: open failed: {e}"));
                    continue;
                }
                (Opened::Serves(warnings), Ok(catalog)) => {
                    let found = catalog.first().warnings();
                    for w in warnings {
                        if !found.iter().any(|f| f.contains(w)) {
                            failures.push(format!("{label}: no warning `{w}` in {found:?}"));
                        }
                    }
                    catalog
                }
            };
            let app = in_process(catalog, Config::default());
            for check in case.checks {
                let started = Instant::now();
                let (status, body) = ask(&app, check.route).await;
                if let Err(e) = check.outcome.judge(case.atlas, check.route, status, &body) {
                    failures.push(format!("{label}: {}: {e}", check.route));
                }
                // Huge declared sizes are refused before any work, never after a long one.
                if started.elapsed() > Duration::from_secs(10) {
                    failures.push(format!(
                        "{label}: {} took {:?}",
                        check.route,
                        started.elapsed()
                    ));
                }
            }
            // Whatever the damage, the rest of the service answers.
            let (status, _) = ask(&app, "_cellucid/health").await;
            if status != 200 {
                failures.push(format!("{label}: health answered {status}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `cellucid-edge inspect --json STORE`: exit status, stdout, stderr.
fn inspect(store: &std::path::Path) -> (std::process::ExitStatus, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cellucid-edge"))
        .args(["inspect", "--json", url(store)])
        .env("CELLUCID_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run cellucid-edge inspect");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn hostile_stores_through_inspect() {
    use std::os::unix::process::ExitStatusExt;
    let mut failures = Vec::new();
    for case in cases() {
        for version in VERSIONS {
            let store = prepare(case.atlas, version, case.damage).await;
            let label = format!("{} ({version})", case.name);
            let (status, stdout, stderr) = inspect(&store.path);
            if let Some(signal) = status.signal() {
                failures.push(format!(
                    "{label}: inspect killed by signal {signal}: {stderr}"
                ));
                continue;
            }
            match case.opened {
                Opened::Refused(text) => {
                    if status.success() || !stderr.contains(text) {
                        failures.push(format!(
                            "{label}: inspect should fail naming `{text}` ({status}): {stderr}"
                        ));
                    }
                }
                Opened::Serves(warnings) => {
                    if !status.success() {
                        failures.push(format!("{label}: inspect failed ({status}): {stderr}"));
                        continue;
                    }
                    let report: serde_json::Value =
                        serde_json::from_str(&stdout).expect("inspect --json prints JSON");
                    let found: Vec<&str> = report["warnings"]
                        .as_array()
                        .map(|w| w.iter().filter_map(|v| v.as_str()).collect())
                        .unwrap_or_default();
                    for w in warnings.iter().chain(case.inspect) {
                        if !found.iter().any(|f| f.contains(w)) {
                            failures.push(format!("{label}: inspect lacks `{w}`: {found:?}"));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Peak resident memory (VmHWM) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM")
}

/// A running `cellucid-edge serve` (killed on drop).
struct Served {
    child: std::process::Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(store: &std::path::Path) -> Served {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellucid-edge"))
        .args(["serve", url(store), "--port", "0", "--log", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cellucid-edge serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep reading stdout after the URL: a closed pipe would end the server at its next line.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("local URL:") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(60)).ok();
    Served {
        base: base.expect("serve printed its URL"),
        child,
    }
}

#[tokio::test]
async fn a_huge_declared_shape_fails_fast_without_growing_memory() {
    let store = prepare("pbmc68k", "v3", &[Damage::DeclareCells(1_000_000_000_000)]).await;
    let served = serve(&store.path);
    let pid = served.child.id();
    let settled = peak_rss(pid);
    let mut timings = Vec::new();
    for route in [
        "obs_manifest.json",
        "points_3d.bin",
        "obs/n_counts.values.f32",
        "connectivity/edges.src.bin",
        "dataset_identity.json",
    ] {
        let started = Instant::now();
        let r = common::fetch(
            http::Method::GET,
            &format!("{}/{route}", served.base),
            &[],
            Vec::new(),
        )
        .await;
        timings.push((route, r.status.as_u16(), started.elapsed()));
    }
    let peak = peak_rss(pid);
    eprintln!(
        "10^12 declared cells: RSS after start {:.1} MiB, peak after the requests {:.1} MiB; {timings:?}",
        settled as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    assert!(
        served.child.id() == pid && std::fs::metadata(format!("/proc/{pid}")).is_ok(),
        "the server died"
    );
    for (route, status, took) in &timings {
        assert!(
            *status == 507 || *route == "dataset_identity.json",
            "{route}: {status}"
        );
        assert!(*took < Duration::from_secs(2), "{route} took {took:?}");
    }
    assert!(
        peak < settled + (64 << 20),
        "memory grew from {settled} to {peak} bytes"
    );
}

#[tokio::test]
async fn a_gene_of_a_row_chunked_dense_x_is_guarded_like_a_csr_scan_and_served_from_the_pack() {
    // pbmc68k's X is dense with chunks of 128 x 256: a gene decodes 700 x 256 values.
    let fixture = common::fixture_store("pbmc68k", "v3");
    let options = DatasetOptions {
        csr_scan_max_nnz: 100_000,
        ..DatasetOptions::default()
    };
    let catalog = Catalog::open(
        location(url(&fixture)),
        &options,
        &DatasetContext::default(),
    )
    .await
    .expect("open");
    let ds = catalog.first().clone();
    assert_eq!(
        ds.gene_read_cost(),
        Some((700 * 256, "dense, chunks of 256 columns".to_string()))
    );
    let app = in_process(catalog.clone(), Config::default());
    let (status, body) = ask(&app, "var/HES4.values.f32").await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("precompute") && text.contains("179200"),
        "{text}"
    );

    // With the gene-major pack in a cache prefix, the same gene is served from it.
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let cache = cellucid_edge::cache::ArtifactCache::new(
        &location(url(cache_dir.path())),
        std::sync::Arc::default(),
    );
    let fingerprint = cellucid_edge::cache::fingerprint(&ds);
    cellucid_edge::cache::precompute::precompute(
        ds.clone(),
        &cache,
        &fingerprint,
        &cellucid_edge::cache::precompute::PrecomputeOptions::default(),
        &indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden()),
    )
    .await
    .expect("precompute reads every gene without the on-demand guard");
    let app = in_process(
        catalog,
        Config {
            cache: Some(cache),
            ..Config::default()
        },
    );
    let (status, body) = ask(&app, "var/HES4.values.f32").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, common::golden_body("pbmc68k", "var/HES4.values.f32"));
}

/// `store;desc="gets=N …"` of a response's Server-Timing.
fn store_gets(response: &Resp) -> u64 {
    let timing = response.header("server-timing");
    timing
        .split("gets=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no store gets in `{timing}`"))
}

#[tokio::test]
async fn a_csr_scan_reads_indptr_once_per_process() {
    let fixture = common::fixture_store("edge", "v3");
    let catalog = common::open_catalog(url(&fixture)).await;
    let genes = catalog.first().genes().await.expect("genes");
    let app = in_process(catalog, Config::default());
    // Three distinct genes with stored values (so each scan reads indices and data).
    let mut seen = std::collections::HashSet::new();
    let routes: Vec<String> = common::golden_meta("edge")
        .into_iter()
        .filter(|g| g.route.starts_with("var/") && g.status == 200)
        .filter(|g| {
            common::golden_body("edge", &g.route)
                .iter()
                .any(|&b| b != 0)
        })
        .filter(|g| {
            let id = &g.route["var/".len()..g.route.len() - ".values.f32".len()];
            genes.lookup(id).is_some_and(|i| seen.insert(i))
        })
        .map(|g| g.route)
        .take(3)
        .collect();
    assert_eq!(routes.len(), 3, "{routes:?}");
    let mut gets = Vec::new();
    for route in &routes {
        let response = app.get(&quote_route(route), &[]).await;
        assert_eq!(response.status, 200, "{route}");
        gets.push(store_gets(&response));
    }
    // X is CSR with one chunk per array: the first scan reads indptr, indices and data; the
    // next ones only indices and data (indptr is kept in the memory budget).
    assert_eq!(gets, vec![3, 2, 2], "GETs of three gene scans: {routes:?}");
}

/// A Python with anndata (see `common::python`: provisioned by the tests, a failure in CI
/// when none can be had, one loud line elsewhere).
fn anndata_python() -> Option<std::path::PathBuf> {
    common::python::python(
        common::python::Need::Anndata,
        "the >65535-values text field test",
    )
}

/// A text column whose distinct values only show once read (70,000 unique barcodes among
/// 70,000 cells): the reference would send wrapped-around uint16 codes; here the field is left
/// out of both documents with a warning (log, `inspect`), and the rest is served.
#[tokio::test]
async fn a_text_field_with_more_than_65535_values_is_left_out_with_a_warning() {
    let Some(python) = anndata_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("barcodes.zarr");
    let script = r#"
import sys, warnings
import numpy as np, pandas as pd, anndata, scipy.sparse as sp
warnings.simplefilter("ignore")
n = 70_000
rng = np.random.default_rng(3)
obs = pd.DataFrame({
    "barcode": np.array([f"AAAC{i:07d}-1" for i in range(n)], dtype=object),
    "group": pd.Categorical(rng.choice(["x", "y"], size=n)),
    "score": rng.normal(size=n).astype(np.float32),
}, index=[str(i) for i in range(n)])
adata = anndata.AnnData(X=sp.random(n, 4, density=0.01, format="csr", dtype=np.float32, random_state=1), obs=obs)
adata.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
adata.write_zarr(sys.argv[1])
"#;
    let output = Command::new(&python)
        .args(["-c", script, url(&store)])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let catalog = common::open_catalog(url(&store)).await;
    let ds = catalog.first().clone();
    let app = in_process(catalog, Config::default());
    let (status, body) = ask(&app, "obs_manifest.json").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let manifest: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let names = |list: &str| -> Vec<String> {
        manifest[list]
            .as_array()
            .expect("field list")
            .iter()
            .filter_map(|f| f[0].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(names("_categoricalFields"), vec!["group"]);
    assert_eq!(names("_continuousFields"), vec!["score"]);
    let (status, body) = ask(&app, "dataset_identity.json").await;
    assert_eq!(status, 200);
    let identity: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(identity["stats"]["n_obs_fields"], 2, "{identity}");
    assert_eq!(identity["stats"]["n_categorical_fields"], 1, "{identity}");
    let keys: Vec<&str> = identity["obs_fields"]
        .as_array()
        .expect("obs_fields")
        .iter()
        .filter_map(|f| f["key"].as_str())
        .collect();
    assert_eq!(keys, vec!["group", "score"]);
    let (status, body) = ask(&app, "obs/barcode.codes.u16").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _) = ask(&app, "obs/group.codes.u8").await;
    assert_eq!(status, 200);
    assert!(
        ds.warnings()
            .iter()
            .any(|w| w.contains("`barcode` left out") && w.contains("70000 categories")),
        "{:?}",
        ds.warnings()
    );
    let (status, stdout, stderr) = inspect(&store);
    assert!(status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert!(
        report["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("`barcode` left out"))),
        "{report}"
    );
}
