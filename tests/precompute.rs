//! `precompute` on local files: the plan of phases and tasks, run in one process or task by task
//! (out of order, in parallel, repeated, from separately opened atlases, from processes killed
//! mid-task), always gives the same cache bytes, and that cache serves every route of the
//! reference goldens (genes from the pack alone: CSR scans are forbidden).

mod common;

use std::path::Path;
use std::sync::Arc;

use cellucid_edge::cache::plan::{PhaseName, Plan, PlanLimits};
use cellucid_edge::cache::precompute::{PrecomputeOptions, load_or_make_plan, precompute};
use cellucid_edge::cache::scratch::Scratch;
use cellucid_edge::cache::tasks::{TaskEnv, TaskOutcome, run_task};
use cellucid_edge::cache::{ArtifactCache, fingerprint};
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::{DatasetContext, DatasetOptions};
use cellucid_edge::http::AppConfig;
use cellucid_edge::store::{
    Fault, FaultRule, FaultyStore, ReadMetrics, StoreLocation, open_store_url,
};
use common::conformance::{assert_failures, check_server};
use common::{TestServer, compare_body, fixture_store, golden_body, golden_meta, quote_route};
use indicatif::{MultiProgress, ProgressDrawTarget};

/// Small blocks, so the 480 × 120 `edge` fixture (21,745 stored values) makes many tasks:
/// 12 row blocks and 11 gene blocks of 11 genes (the last of 10).
const BLOCK_NNZ: u64 = 2_000;

fn limits() -> PlanLimits {
    PlanLimits {
        row_block_nnz: Some(BLOCK_NNZ),
        gene_block_nnz: Some(BLOCK_NNZ),
    }
}

/// The `edge` fixture in zarr `version` (CSR scans allowed up to `scan_limit` stored values) and
/// a cache prefix in `cache_dir`.
async fn open_edge(version: &str, scan_limit: u64, cache_dir: &Path) -> (Catalog, ArtifactCache) {
    let store = fixture_store("edge", version);
    let options = DatasetOptions {
        csr_scan_max_nnz: scan_limit,
        ..DatasetOptions::default()
    };
    let catalog = Catalog::open(
        common::location(store.to_str().unwrap()),
        &options,
        &DatasetContext::default(),
    )
    .await
    .expect("open edge");
    std::fs::create_dir_all(cache_dir).unwrap();
    let cache = ArtifactCache::new(
        &open_store_url(cache_dir.to_str().unwrap()).unwrap(),
        Arc::new(ReadMetrics::default()),
    );
    (catalog, cache)
}

fn hidden() -> MultiProgress {
    MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
}

/// Every complete object of the cache under `fp` (object_store's local staging files, named
/// `…#n`, are invisible to readers and left out), and the shared scratch apart.
fn cache_objects(cache_dir: &Path, fp: &str) -> Vec<(String, Vec<u8>)> {
    common::files_below(&cache_dir.join(fp))
        .into_iter()
        .filter(|(name, _)| !name.contains('#'))
        .collect()
}

fn scratch_objects(cache_dir: &Path, fp: &str) -> Vec<String> {
    let dir = cache_dir.join("_work").join(fp);
    if !dir.exists() {
        return Vec::new();
    }
    common::files_below(&dir)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !name.contains('#'))
        .collect()
}

/// The single-process reference cache of `edge` `version` with the test's small blocks.
async fn single_process_cache(version: &str, dir: &Path, jobs: usize) -> Vec<(String, Vec<u8>)> {
    let cache_dir = dir.join(format!("single-{jobs}"));
    let (catalog, cache) = open_edge(version, 0, &cache_dir).await;
    let dataset = catalog.first().clone();
    let fp = fingerprint(&dataset);
    let options = PrecomputeOptions {
        jobs,
        spill_dir: dir.join("spill"),
        limits: limits(),
        ..PrecomputeOptions::default()
    };
    let summary = precompute(dataset, &cache, &fp, &options, &hidden())
        .await
        .expect("precompute");
    assert_eq!(summary.genes_packed, 120, "{summary:?}");
    cache_objects(&cache_dir, &fp)
}

/// Genes and every other golden route served from `cache_dir` alone.
async fn assert_serves_goldens(version: &str, cache_dir: &Path, label: &str) {
    let (catalog, cache) = open_edge(version, 0, cache_dir).await;
    let server = TestServer::start_with(
        catalog,
        AppConfig {
            cache: Some(cache),
            ..AppConfig::default()
        },
    )
    .await;
    let mut genes = 0;
    for g in golden_meta("edge") {
        if !g.route.starts_with("var/") || g.status != 200 {
            continue;
        }
        let r = server.get_viewer(&quote_route(&g.route)).await;
        assert_eq!(r.status, 200, "{label} {}", g.route);
        assert!(
            r.header("server-timing").contains("cache;desc=\"cache\"")
                || r.header("server-timing").contains("cache;desc=\"memory\""),
            "{label} {}: {}",
            g.route,
            r.header("server-timing")
        );
        let body = r.decoded().expect("gzip body");
        if let Some(diff) = compare_body(&g.route, &golden_body("edge", &g.route), &body) {
            panic!("{label} {}: {diff}", g.route);
        }
        genes += 1;
    }
    assert!(genes >= 5, "only {genes} gene goldens checked");
    let failures = check_server("edge", label, &server).await;
    server.stop().await;
    assert_failures(label, &failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_process_run_serves_the_goldens_and_is_idempotent() {
    for version in ["v2", "v3"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = dir.path().join("cache");
        let spill = dir.path().join("spill");
        let (catalog, cache) = open_edge(version, 0, &cache_dir).await;
        let dataset = catalog.first().clone();
        let fp = fingerprint(&dataset);
        let run = PrecomputeOptions {
            jobs: 3,
            spill_dir: spill.clone(),
            limits: limits(),
            ..PrecomputeOptions::default()
        };
        let first = precompute(dataset.clone(), &cache, &fp, &run, &hidden())
            .await
            .expect("precompute");
        assert_eq!(first.genes_packed, 120);
        assert!(first.written > 10, "{first:?}");
        // The private scratch is removed.
        assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
        let second = precompute(dataset.clone(), &cache, &fp, &run, &hidden())
            .await
            .expect("second precompute");
        assert_eq!(second.written, 0, "{second:?}");
        assert!(second.gene_pack_existed);
        assert!(
            second
                .phases
                .values()
                .all(|(name, p)| p.skipped
                    || matches!(name, PhaseName::Artifacts | PhaseName::Strict)),
            "{second:?}"
        );
        assert_serves_goldens(version, &cache_dir, &format!("edge.{version} single")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_are_deterministic_and_runs_do_not_depend_on_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plans = Vec::new();
    for i in 0..2 {
        let (catalog, cache) = open_edge("v3", 0, &dir.path().join(format!("p{i}"))).await;
        let dataset = catalog.first().clone();
        let plan = load_or_make_plan(&dataset, &cache, &fingerprint(&dataset), limits(), None)
            .await
            .expect("plan");
        plans.push(plan.to_json());
    }
    assert_eq!(plans[0], plans[1], "two plans of one atlas differ");
    let plan: Plan = Plan::from_json(plans[0].as_bytes()).unwrap();
    let names: Vec<_> = plan.phases.iter().map(|p| (p.name, p.tasks)).collect();
    assert_eq!(
        names,
        vec![
            (PhaseName::Artifacts, plan.artifacts.len() as u64),
            (PhaseName::Transpose, 12),
            (PhaseName::Pack, 11),
            (PhaseName::Index, 1),
            (PhaseName::Strict, plan.strict.len() as u64),
            (PhaseName::Cleanup, 1),
        ]
    );
    assert_eq!(plan.row_blocks.first(), Some(&0));
    assert_eq!(plan.row_blocks.last(), Some(&480));
    let one = single_process_cache("v3", dir.path(), 1).await;
    let four = single_process_cache("v3", dir.path(), 4).await;
    assert!(one.len() > 20, "{} objects", one.len());
    assert_same_objects(&one, &four, "jobs=1 vs jobs=4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_out_of_order_in_parallel_and_repeated_give_the_single_process_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = single_process_cache("v2", dir.path(), 2).await;
    let cache_dir = dir.path().join("distributed");
    // Three "machines": each opens the atlas itself; they share the cache prefix and scratch.
    let mut envs = Vec::new();
    for _ in 0..3 {
        let (catalog, cache) = open_edge("v2", 0, &cache_dir).await;
        let dataset = catalog.first().clone();
        let fp = fingerprint(&dataset);
        let plan = load_or_make_plan(&dataset, &cache, &fp, limits(), None)
            .await
            .expect("plan");
        envs.push(TaskEnv {
            scratch: Scratch::shared(&cache, &fp),
            dataset,
            cache,
            plan: Arc::new(plan),
            priority: Default::default(),
        });
    }
    let plan = envs[0].plan.clone();
    let fp = plan.fingerprint.clone();
    let mut rng = fastrand::Rng::with_seed(16);
    let mut outcomes = Vec::new();
    for phase in &plan.phases {
        // Every task twice, shuffled, all at once, spread over the machines.
        let mut tasks: Vec<u64> = (0..phase.tasks).chain(0..phase.tasks).collect();
        rng.shuffle(&mut tasks);
        let runs = tasks.iter().enumerate().map(|(i, &task)| {
            let env = &envs[i % envs.len()];
            async move { run_task(env, phase.name, task).await }
        });
        for report in futures::future::join_all(runs).await {
            let report = report.unwrap_or_else(|e| panic!("{} task: {e}", phase.name));
            outcomes.push((report.phase, report.outcome));
        }
        if phase.name == PhaseName::Transpose {
            assert_eq!(
                scratch_objects(&cache_dir, &fp).len(),
                12,
                "one shard per row block"
            );
        }
    }
    let repeated = outcomes
        .iter()
        .filter(|(_, o)| *o == TaskOutcome::AlreadyDone)
        .count();
    assert!(repeated > 0, "no repeated task found its output done");
    assert!(
        scratch_objects(&cache_dir, &fp).is_empty(),
        "cleanup left {:?}",
        scratch_objects(&cache_dir, &fp)
    );
    let distributed = cache_objects(&cache_dir, &fp);
    assert_eq!(
        distributed.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        reference.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in distributed.iter().zip(&reference) {
        assert!(a == b, "{name} differs from the single-process run");
    }
    assert_serves_goldens("v2", &cache_dir, "edge.v2 distributed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_before_its_inputs_fails_clearly_and_bad_tasks_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, cache) = open_edge("v3", 0, &dir.path().join("cache")).await;
    let dataset = catalog.first().clone();
    let fp = fingerprint(&dataset);
    let plan = load_or_make_plan(&dataset, &cache, &fp, limits(), None)
        .await
        .unwrap();
    let env = TaskEnv {
        scratch: Scratch::shared(&cache, &fp),
        dataset,
        cache,
        plan: Arc::new(plan),
        priority: Default::default(),
    };
    let e = run_task(&env, PhaseName::Index, 0).await.unwrap_err();
    assert!(e.to_string().contains("run every `pack` task"), "{e}");
    assert!(!e.is_transient());
    let e = run_task(&env, PhaseName::Pack, 0).await.unwrap_err();
    assert!(e.to_string().contains("shards/000000.bin"), "{e}");
    let e = run_task(&env, PhaseName::Pack, 11).await.unwrap_err();
    assert!(e.to_string().contains("there is no task 11"), "{e}");
}

/// A CSC X (the `sparse` fixture) has no transpose phase: pack tasks read its columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csc_x_is_packed_from_its_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fixture_store("sparse", "v3");
    let catalog = common::open_catalog(store.to_str().unwrap()).await;
    let cache_dir = dir.path().join("cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let cache = ArtifactCache::new(
        &open_store_url(cache_dir.to_str().unwrap()).unwrap(),
        Arc::new(ReadMetrics::default()),
    );
    let dataset = catalog.first().clone();
    let fp = fingerprint(&dataset);
    let options = PrecomputeOptions {
        spill_dir: dir.path().join("spill"),
        limits: limits(),
        ..PrecomputeOptions::default()
    };
    let summary = precompute(dataset, &cache, &fp, &options, &hidden())
        .await
        .expect("precompute");
    assert_eq!(summary.genes_packed, 100);
    assert!(
        summary
            .phases
            .values()
            .all(|(name, _)| *name != PhaseName::Transpose)
    );
    let server = TestServer::start_with(
        catalog,
        AppConfig {
            cache: Some(cache),
            ..AppConfig::default()
        },
    )
    .await;
    let failures = check_server("sparse", "sparse.v3 packed", &server).await;
    server.stop().await;
    assert_failures("sparse.v3 packed", &failures);
}

/// A cache prefix that refuses the function's credentials fails for good (the state machine
/// must not retry an IAM mistake four times per task), and one that fails in transit is worth
/// a retry: decided on the typed error class, whatever the messages say.
#[tokio::test]
async fn refused_cache_credentials_are_permanent_and_store_failures_transient() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, _) = open_edge("v3", 0, &dir.path().join("cache")).await;
    let dataset = catalog.first().clone();
    let fp = fingerprint(&dataset);
    for (fault, transient) in [(Fault::Denied, false), (Fault::Error, true)] {
        let store = Arc::new(FaultyStore::new(Arc::new(
            object_store::memory::InMemory::new(),
        )));
        store.inject(FaultRule::always(fault.clone()).including_writes());
        let location = StoreLocation {
            store: store.clone(),
            prefix: "cache".into(),
            display: "memory://faulty/cache".into(),
            name: "cache".into(),
            is_local: false,
            signer: None,
        };
        let cache = ArtifactCache::new(&location, Arc::new(ReadMetrics::default()));
        let e = load_or_make_plan(&dataset, &cache, &fp, limits(), None)
            .await
            .expect_err("the cache fails");
        assert!(store.injected() > 0, "{fault:?}: no fault injected");
        assert_eq!(e.is_transient(), transient, "{fault:?}: {e}");
        let reported = cellucid_edge::precompute_lambda::TaskError::Precompute(e);
        let expected = if transient {
            "cellucid.Transient"
        } else {
            "cellucid.Failed"
        };
        assert_eq!(reported.error_type(), expected, "{fault:?}: {reported}");
    }
}

/// `precompute --memory-mb` is the memory budget the atlas is opened with: a 120,000-cell
/// atlas whose 3-D embedding alone needs 1.4 MiB is refused with a clear message under
/// `--memory-mb 1` (never a larger default taken silently), and precomputed under 16.
#[tokio::test]
async fn precompute_memory_mb_is_the_atlas_budget() {
    let Some(python) = common::python::python(
        common::python::Need::Anndata,
        "the precompute --memory-mb test",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("cells120k.zarr");
    let script = r#"
import sys, warnings
import numpy as np, pandas as pd, anndata, scipy.sparse as sp
warnings.simplefilter("ignore")
n = 120_000
rng = np.random.default_rng(5)
obs = pd.DataFrame({"score": rng.normal(size=n).astype(np.float32)},
                   index=[str(i) for i in range(n)])
adata = anndata.AnnData(X=sp.random(n, 3, density=0.01, format="csr", dtype=np.float32,
                                     random_state=1), obs=obs)
adata.obsm["X_umap"] = rng.normal(size=(n, 3)).astype(np.float32)
adata.write_zarr(sys.argv[1])
"#;
    let output = std::process::Command::new(&python)
        .args(["-c", script, store.to_str().expect("utf-8 path")])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = |mb: &str, cache: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cellucid-edge"))
            .args(["--log", "warn", "precompute", "--quiet", "--memory-mb", mb])
            .arg(&store)
            .arg("--cache")
            .arg(dir.path().join(cache))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run precompute")
    };
    let small = run("1", "cache-small");
    let stderr = String::from_utf8_lossy(&small.stderr);
    assert!(
        !small.status.success(),
        "precomputed within 1 MiB: {stderr}"
    );
    assert!(
        stderr.contains("memory budget of 1.0 MiB"),
        "the refusal names the budget: {stderr}"
    );
    let enough = run("16", "cache-16");
    assert!(
        enough.status.success(),
        "{}",
        String::from_utf8_lossy(&enough.stderr)
    );
}

/// `precompute --plan` and `--phase P --task I` as separate processes, each killed at some
/// point before it could finish, then run again: no object is ever visible half-written and
/// the end result is the single-process cache, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_task_processes_then_rerun_give_the_single_process_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = single_process_cache("v3", dir.path(), 2).await;
    let cache_dir = dir.path().join("killed");
    let store = fixture_store("edge", "v3");
    let bin = env!("CARGO_BIN_EXE_cellucid-edge");
    let base = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["--log", "warn", "precompute"])
            .arg(&store)
            .arg("--cache")
            .arg(&cache_dir)
            .args([
                "--block-nnz",
                &BLOCK_NNZ.to_string(),
                "--csr-scan-max-nnz",
                "0",
            ])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        cmd
    };
    let output = base(&["--plan"]).output().expect("run --plan");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("plan JSON");
    let fp = plan["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let phases = plan["phases"].as_array().expect("phases").clone();
    assert!(
        phases
            .iter()
            .all(|p| p["name"].is_string() && p["tasks"].is_u64())
    );
    let mut kills = 0;
    for (k, phase) in phases.iter().enumerate() {
        let name = phase["name"].as_str().unwrap();
        let tasks = phase["tasks"].as_u64().unwrap();
        for task in 0..tasks {
            let args = ["--phase", name, "--task", &task.to_string()];
            // Killed after 0-30 ms: at start-up, while reading, computing or writing.
            let mut child = base(&args).spawn().expect("spawn task");
            std::thread::sleep(std::time::Duration::from_millis(
                (task * 7 + k as u64 * 3) % 31,
            ));
            if child.kill().is_ok() {
                kills += 1;
            }
            let _ = child.wait();
            assert_no_partial_objects(&cache_dir, &fp);
        }
        for task in 0..tasks {
            let args = ["--phase", name, "--task", &task.to_string()];
            let out = base(&args).output().expect("run task");
            assert!(
                out.status.success(),
                "{name} {task}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("task report JSON");
            assert_eq!(report["phase"], name);
            assert_eq!(report["task"], task);
            assert_no_partial_objects(&cache_dir, &fp);
        }
    }
    assert!(kills > 0);
    let killed = cache_objects(&cache_dir, &fp);
    assert_eq!(
        killed.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        reference.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert_same_objects(&killed, &reference, "killed and rerun vs single process");
    assert!(scratch_objects(&cache_dir, &fp).is_empty());
}

fn assert_same_objects(a: &[(String, Vec<u8>)], b: &[(String, Vec<u8>)], label: &str) {
    let names = |x: &[(String, Vec<u8>)]| x.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "{label}: different objects");
    let differ: Vec<&String> = a
        .iter()
        .zip(b)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((n, _), _)| n)
        .collect();
    assert!(differ.is_empty(), "{label}: {differ:?} differ");
}

/// Every visible gene block is whole: its header (11 genes per block here, 10 in the last)
/// spans exactly the object.
fn assert_no_partial_objects(cache_dir: &Path, fp: &str) {
    use cellucid_edge::cache::gene_pack::{block_header_len, decode_block_header};
    let blocks = cache_dir.join(fp).join("genes").join("blocks");
    let Ok(entries) = std::fs::read_dir(&blocks) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains('#') {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let block: u64 = name.trim_end_matches(".bin").parse().unwrap();
        let count = if block == 10 { 10 } else { 11 };
        let header = &bytes[..block_header_len(count) as usize];
        if let Err(e) = decode_block_header(header, count, bytes.len() as u64) {
            panic!("{name} is visible but incomplete: {e}");
        }
    }
}

/// A gene request on a small CSR X with a cache prefix but no pack: served by a scan, and the
/// pack is built once in the background; later genes are one GET of the pack, byte-identical to
/// the reference. A CSR X over the scan limit never starts a build (it needs `precompute`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_csr_x_is_packed_on_demand_and_large_x_is_not() {
    for (scan_limit, builds) in [(u64::MAX, true), (0, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = dir.path().join("cache");
        let (catalog, cache) = open_edge("v3", scan_limit, &cache_dir).await;
        let fp = fingerprint(catalog.first());
        let server = TestServer::start_with(
            catalog,
            AppConfig {
                cache: Some(cache),
                gene_pack_on_demand: true,
                ..AppConfig::default()
            },
        )
        .await;
        let genes: Vec<_> = golden_meta("edge")
            .into_iter()
            .filter(|g| g.route.starts_with("var/GENE") && g.status == 200)
            .collect();
        let first = server.get_viewer(&quote_route(&genes[0].route)).await;
        let index = cache_dir.join(&fp).join(cellucid_edge::cache::PACK_INDEX);
        if !builds {
            assert_eq!(first.status, 503, "over the scan limit: precompute needed");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            assert!(!index.exists(), "no pack may be built over the scan limit");
            server.stop().await;
            continue;
        }
        assert_eq!(first.status, 200);
        assert!(
            first.header("server-timing").contains("computed"),
            "{}",
            first.header("server-timing")
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !index.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the pack was not built on demand"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The build task returns right after writing the index.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // The first of them also reads the pack index (once per process).
        for (i, g) in genes[1..].iter().enumerate() {
            let r = server.get_viewer(&quote_route(&g.route)).await;
            assert_eq!(r.status, 200, "{}", g.route);
            let timing = r.header("server-timing");
            assert!(
                timing.contains("cache;desc=\"cache\"")
                    && timing.contains(if i == 0 { "gets=2 " } else { "gets=1 " }),
                "{}: {timing}",
                g.route
            );
            let body = r.decoded().expect("gzip body");
            if let Some(diff) = compare_body(&g.route, &golden_body("edge", &g.route), &body) {
                panic!("{}: {diff}", g.route);
            }
        }
        server.stop().await;
    }
}

/// Plain `serve STORE` of a local store keeps the default local cache (the user cache
/// directory, here `$XDG_CACHE_HOME`), says so, and fills it in the background with every
/// artifact and the gene pack; `--no-cache` leaves no trace.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_of_a_local_store_warms_the_default_local_cache() {
    use tokio::io::AsyncReadExt;
    let store = fixture_store("edge", "v3");
    for no_cache in [false, true] {
        let home = tempfile::tempdir().expect("tempdir");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cellucid-edge"));
        cmd.args(["--log", "warn", "serve"])
            .arg(&store)
            .args(["--port", "0"])
            .env("XDG_CACHE_HOME", home.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if no_cache {
            cmd.arg("--no-cache");
        }
        let mut child = cmd.spawn().expect("spawn serve");
        let dir = home.path().join("cellucid-edge");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let warm = |dir: &Path| {
            std::fs::read_dir(dir).ok().is_some_and(|mut fps| {
                fps.any(|fp| {
                    let fp = fp.unwrap().path();
                    fp.join(cellucid_edge::cache::PACK_INDEX).exists()
                        && fp.join("dataset_identity.json").exists()
                        && fp.join("obs").exists()
                })
            })
        };
        if no_cache {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            assert!(!dir.exists(), "--no-cache wrote {}", dir.display());
        } else {
            while !warm(&dir) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the local cache was not warmed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        let _ = child.kill().await;
        let mut stderr = String::new();
        let _ = child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr)
            .await;
        assert_eq!(
            stderr.contains(&format!("cache:       {}", dir.display())),
            !no_cache,
            "{stderr}"
        );
    }
}
