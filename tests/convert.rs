//! `convert` (h5ad → AnnData-Zarr) and h5ad error handling: the written store opens in Python
//! anndata with equal content, conversion to S3 (moto) serves the goldens, an existing store is
//! never overwritten without `force`, an interrupted convert leaves no store root, and
//! malformed or truncated `.h5ad` files give clear errors (never a panic).
//!
//! (Conformance of the h5ad fixtures, served directly and after conversion to Zarr v2/v3, is in
//! `tests/conformance.rs`.)
#![cfg(feature = "h5ad")]

mod common;

use common::python;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use cellucid_edge::convert::{
    ConvertError, ConvertOptions, ConvertReport, NoProgress, Progress, convert_h5ad,
};
use cellucid_edge::store::open_store_url;
use common::{
    ATLASES, ORIGIN, TestServer, compare_body, fixture_source, golden_body, golden_meta,
    golden_name, location, open_dataset, quote_route,
};

/// A file under `tests/fixtures/`.
fn fixture_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

fn skipped_keys(report: &ConvertReport) -> Vec<String> {
    report
        .skipped
        .iter()
        .filter_map(|s| s.split_once(':').map(|(k, _)| k.to_string()))
        .collect()
}

async fn convert_to(atlas: &str, out: &Path, zarr_format: u8) -> ConvertReport {
    common::convert_fixture(atlas, out, zarr_format).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converted_stores_open_in_python_anndata_with_equal_content() {
    let Some(python) = python::python(
        python::Need::Anndata,
        "convert: anndata.read_zarr of converted stores",
    ) else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/anndata_equal.py");
    let dir = tempfile::tempdir().expect("tempdir");
    for atlas in ATLASES {
        for zarr_format in [2u8, 3] {
            let out = dir.path().join(format!("{atlas}.v{zarr_format}.zarr"));
            let report = convert_to(atlas, &out, zarr_format).await;
            let output = Command::new(&python)
                .arg(&script)
                .arg(fixture_source(atlas, "h5ad"))
                .arg(&out)
                .arg("--skip")
                .args(skipped_keys(&report))
                .output()
                .expect("run python");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                output.status.success(),
                "{atlas} v{zarr_format}: anndata.read_zarr differs from read_h5ad:\n{text}"
            );
            println!("python anndata: {}", text.trim());
        }
    }
}

/// Only pbmc68k's structured `uns/rank_genes_groups` arrays (rec-arrays) are skipped.
#[tokio::test]
async fn only_structured_uns_arrays_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = convert_to("pbmc68k", &dir.path().join("p.zarr"), 3).await;
    assert_eq!(
        skipped_keys(&report),
        [
            "uns/rank_genes_groups/names",
            "uns/rank_genes_groups/scores"
        ]
    );
    assert!(report.arrays > 40 && report.bytes > 1_000_000, "{report:?}");
}

#[tokio::test]
async fn existing_store_is_kept_unless_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("edge.zarr");
    convert_to("edge", &out, 3).await;
    let input = fixture_source("sparse", "h5ad");
    let output = location(out.to_str().expect("utf-8"));
    let err = convert_h5ad(&input, &output, &ConvertOptions::default(), &NoProgress)
        .await
        .expect_err("second convert without force");
    assert!(matches!(err, ConvertError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    // Still the edge atlas.
    assert_eq!(
        open_dataset(out.to_str().unwrap()).await.unwrap().n_genes(),
        120
    );

    let force = ConvertOptions {
        zarr_format: 2,
        force: true,
    };
    convert_h5ad(&input, &output, &force, &NoProgress)
        .await
        .expect("convert with force");
    let ds = open_dataset(out.to_str().unwrap()).await.unwrap();
    assert_eq!((ds.n_cells(), ds.n_genes()), (360, 100));
    assert!(!out.join("zarr.json").exists(), "old v3 root removed");
    assert!(out.join(".zmetadata").exists());
}

/// Stops the conversion (drops its future) once some data has been written.
struct StopAfterFirstBlock(AtomicBool, tokio::sync::Notify);

impl Progress for StopAfterFirstBlock {
    fn start(&self, _total_bytes: u64) {}
    fn advance(&self, _key: &str, _bytes: u64) {
        if !self.0.swap(true, Ordering::SeqCst) {
            self.1.notify_one();
        }
    }
}

#[tokio::test]
async fn interrupted_convert_leaves_no_store_root() {
    for zarr_format in [2u8, 3] {
        let url = format!("memory://convert-interrupted/v{zarr_format}.zarr");
        let output = location(&url);
        let input = fixture_source("pbmc68k", "h5ad");
        let stop = StopAfterFirstBlock(AtomicBool::new(false), tokio::sync::Notify::new());
        let options = ConvertOptions {
            zarr_format,
            force: false,
        };
        tokio::select! {
            r = convert_h5ad(&input, &output, &options, &stop) => panic!("convert finished first: {r:?}"),
            () = stop.1.notified() => {}
        }
        let written =
            futures::TryStreamExt::try_collect::<Vec<_>>(output.store.list(Some(&output.prefix)))
                .await
                .expect("list");
        assert!(!written.is_empty(), "some objects were written");
        for root in ["zarr.json", ".zgroup", ".zmetadata", ".zattrs"] {
            assert!(
                !written
                    .iter()
                    .any(|m| m.location.as_ref() == format!("v{zarr_format}.zarr/{root}")),
                "root {root} written before the data"
            );
        }
        let err = open_dataset(&url)
            .await
            .expect_err("incomplete store opens");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}

async fn open_error(path: &Path) -> String {
    open_dataset(path.to_str().expect("utf-8"))
        .await
        .expect_err("malformed h5ad opened")
        .to_string()
}

async fn convert_error(path: &Path, out: &Path) -> ConvertError {
    std::fs::create_dir_all(out).expect("mkdir");
    let output = location(out.to_str().expect("utf-8"));
    convert_h5ad(path, &output, &ConvertOptions::default(), &NoProgress)
        .await
        .expect_err("malformed h5ad converted")
}

#[tokio::test]
async fn malformed_h5ad_files_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");

    // Not HDF5 at all, and empty.
    let text = dir.path().join("text.h5ad");
    std::fs::write(&text, "obs,var\n1,2\n").unwrap();
    let empty = dir.path().join("empty.h5ad");
    std::fs::write(&empty, b"").unwrap();
    for path in [&text, &empty] {
        let msg = open_error(path).await;
        assert!(msg.contains("not a readable HDF5 file"), "{msg}");
        let err = convert_error(path, &out).await;
        assert!(
            err.to_string().contains("not a readable HDF5 file"),
            "{err}"
        );
    }

    // Truncated: the superblock survives, the objects it points to do not.
    let bytes = std::fs::read(fixture_source("pbmc68k", "h5ad")).unwrap();
    for keep in [bytes.len() / 2, 4096, 100] {
        let cut = dir.path().join(format!("cut{keep}.h5ad"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let msg = open_error(&cut).await;
        assert!(
            msg.contains("cut") && (msg.contains("HDF5") || msg.contains("cannot read")),
            "truncated at {keep}: {msg}"
        );
        let err = convert_error(&cut, &out).await;
        assert!(!err.to_string().is_empty());
        assert!(
            !out.join("zarr.json").exists(),
            "no store root after a failed convert"
        );
    }

    // Valid HDF5, not AnnData (h5py: one empty group `foo`).
    let other = dir.path().join("other.h5ad");
    std::fs::copy(fixture_path("hdf5/not_anndata.h5"), &other).unwrap();
    let msg = open_error(&other).await;
    assert!(msg.contains("obs") && msg.contains("missing"), "{msg}");
    let err = convert_error(&other, &out).await;
    assert!(matches!(err, ConvertError::NotAnnData { .. }), "{err}");
}

/// `convert atlas.h5ad s3://…` against a real S3-protocol server (moto on 127.0.0.1), then
/// serve the S3 store: every golden route of the h5ad atlas matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn convert_to_s3_then_serve_matches_goldens() {
    let Some(moto) = common::moto::moto().await else {
        return;
    };
    let bucket = moto.bucket("convert-h5ad").await;
    let url = format!("{bucket}/atlases/edge.zarr");
    let output = open_store_url(&url).expect("s3 url");
    let report = convert_h5ad(
        &fixture_source("edge", "h5ad"),
        &output,
        &ConvertOptions::default(),
        &NoProgress,
    )
    .await
    .expect("convert to s3");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let err = convert_h5ad(
        &fixture_source("edge", "h5ad"),
        &output,
        &ConvertOptions::default(),
        &NoProgress,
    )
    .await
    .expect_err("s3 store exists");
    assert!(matches!(err, ConvertError::Exists { .. }), "{err}");

    let server = TestServer::open(&url).await;
    let golden = golden_name("edge", "h5ad");
    let mut failures = Vec::new();
    let routes = golden_meta(&golden);
    for g in &routes {
        let r = server
            .get(
                &quote_route(&g.route),
                &[("accept-encoding", "gzip"), ("origin", ORIGIN)],
            )
            .await;
        if r.status.as_u16() != g.status {
            failures.push(format!("{}: status {}", g.route, r.status));
            continue;
        }
        if g.status == 200 {
            let body = r.decoded().expect("decoded body");
            if let Some(diff) = compare_body(&g.route, &golden_body(&golden, &g.route), &body) {
                failures.push(format!("{}: {diff}", g.route));
            }
        }
    }
    server.stop().await;
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("s3 convert: {} golden routes match", routes.len());
}

/// A local directory serves `.h5ad` files next to Zarr stores, each as `/<id>/…`.
#[tokio::test]
async fn directory_catalogue_lists_h5ad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixture_source("edge", "h5ad"), dir.path().join("edge.h5ad")).unwrap();
    common::copy_dir(
        &fixture_source("sparse", "v3"),
        &dir.path().join("sparse.v3.zarr"),
    );
    std::fs::write(dir.path().join("broken.h5ad"), b"not hdf5").unwrap();
    let catalog = common::open_catalog(dir.path().to_str().unwrap()).await;
    let names: Vec<&str> = catalog.datasets().iter().map(|d| d.name()).collect();
    assert_eq!(names, ["edge", "sparse.v3.zarr"]);
    assert!(catalog.is_multi());
    assert_eq!(catalog.datasets()[0].source_format(), "h5ad");
}

/// The CLI end to end: `convert IN.h5ad OUT --precompute CACHE` writes the store and fills the
/// cache prefix (the precompute subcommand's work) in one run; a second run refuses OUT.
#[test]
fn cli_convert_with_precompute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sparse.zarr");
    let cache = dir.path().join("cache");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_cellucid-edge"))
            .arg("convert")
            .arg(fixture_source("sparse", "h5ad"))
            .arg(&out)
            .arg("--precompute")
            .arg(&cache)
            .arg("--quiet")
            .output()
            .expect("run cellucid-edge")
    };
    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(out.join("zarr.json").is_file(), "{stderr}");
    let cached = walk_files(&cache);
    assert!(cached > 10, "only {cached} cache objects:\n{stderr}");
    let second = run();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
}

fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}
