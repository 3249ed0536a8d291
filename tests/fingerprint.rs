//! The cache fingerprint follows the data: `adata.write_zarr()` over the same store with new
//! values but byte-identical metadata gets a new fingerprint, so a server with a cache prefix
//! serves the new values — never the artifacts cached for the old ones. Locally (zarr v2 and
//! v3) and on a real S3-protocol server (moto), where the metadata object's ETag — a content
//! hash — does not change, but its last-modified time does.
//!
//! The stores are written by the real `anndata` (`CELLUCID_TEST_PYTHON`, else the team's
//! venvs); without one the tests fail in CI and are skipped loudly elsewhere.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::Arc;

use cellucid_edge::cache::ArtifactCache;
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::{DatasetContext, DatasetOptions};
use cellucid_edge::service::{Config, Service};
use common::location;
use common::transport::{InProcess, TestTransport};
use object_store::ObjectStoreExt;

/// A Python with anndata (see `common::python`: provisioned by the tests, a failure in CI
/// when none can be had, one loud line elsewhere).
fn anndata_python() -> Option<std::path::PathBuf> {
    common::python::python(common::python::Need::Anndata, "the fingerprint tests")
}

/// Writes an AnnData whose values depend on SEED (shapes, dtypes, names do not) with
/// `write_zarr` over OUT, in zarr format FORMAT.
const WRITE: &str = r#"
import sys, warnings
import numpy as np, pandas as pd, anndata
warnings.simplefilter("ignore")
out, seed, fmt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
anndata.settings.zarr_write_format = fmt
rng = np.random.default_rng(seed)
n, g = 300, 12
obs = pd.DataFrame(
    {"score": rng.normal(size=n).astype(np.float32),
     "group": pd.Categorical(rng.choice(["a", "b", "c"], size=n), categories=["a", "b", "c"])},
    index=[f"cell{i}" for i in range(n)])
var = pd.DataFrame(index=[f"gene{j}" for j in range(g)])
adata = anndata.AnnData(X=rng.random((n, g), dtype=np.float32), obs=obs, var=var)
adata.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
adata.write_zarr(out)
"#;

fn write_atlas(python: &Path, out: &Path, seed: u32, format: u8) {
    let output = Command::new(python)
        .args([
            "-c",
            WRITE,
            out.to_str().expect("utf-8 path"),
            &seed.to_string(),
            &format.to_string(),
        ])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "anndata write_zarr failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The metadata document anndata wrote (`.zmetadata` for v2, `zarr.json` for v3).
fn metadata_name(format: u8) -> &'static str {
    if format == 2 {
        ".zmetadata"
    } else {
        "zarr.json"
    }
}

/// The f32 values of `score` as Python wrote them, read back through anndata.
fn expected_score(python: &Path, store: &Path) -> Vec<u8> {
    let output = Command::new(python)
        .args([
            "-c",
            "import sys, anndata; sys.stdout.buffer.write(anndata.read_zarr(sys.argv[1]).obs['score'].to_numpy().astype('<f4').tobytes())",
            store.to_str().expect("utf-8 path"),
        ])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A service over `store` with `cache`; its fingerprint, and `obs/score.values.f32` with how it
/// was obtained (from `Server-Timing`).
async fn serve_score(store: &str, cache: &str) -> (String, Vec<u8>, String) {
    let catalog = Catalog::open(
        location(store),
        &DatasetOptions::default(),
        &DatasetContext::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("open {store}: {e}"));
    let id = catalog.first().id().to_string();
    let service = Service::new(
        catalog,
        Config {
            cache: Some(ArtifactCache::new(&location(cache), Default::default())),
            ..Config::default()
        },
    )
    .expect("service mounts");
    let fingerprint = service.fingerprint(&id).expect("fingerprint");
    let response = InProcess(Arc::new(service))
        .get("/obs/score.values.f32", &[])
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let timing = response.header("server-timing").to_string();
    (fingerprint, response.body.to_vec(), timing)
}

#[tokio::test]
async fn rewriting_a_local_store_with_identical_metadata_changes_the_fingerprint() {
    let Some(python) = anndata_python() else {
        return;
    };
    for format in [2u8, 3] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("atlas.zarr");
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).expect("cache dir");
        let (store_url, cache_url) = (store.to_str().unwrap(), cache.to_str().unwrap());

        write_atlas(&python, &store, 1, format);
        let metadata = std::fs::read(store.join(metadata_name(format))).expect("metadata");
        let (first_fp, first, timing) = serve_score(store_url, cache_url).await;
        assert_eq!(first, expected_score(&python, &store), "v{format}");
        assert!(timing.contains("computed"), "{timing}");
        // A second process finds it in the cache prefix.
        let (fp, again, timing) = serve_score(store_url, cache_url).await;
        assert_eq!((fp.as_str(), &again), (first_fp.as_str(), &first));
        assert!(timing.contains("cache;desc=\"cache\""), "{timing}");

        write_atlas(&python, &store, 2, format);
        assert_eq!(
            std::fs::read(store.join(metadata_name(format))).expect("metadata"),
            metadata,
            "v{format}: the rewrite keeps the metadata byte for byte"
        );
        let (second_fp, second, timing) = serve_score(store_url, cache_url).await;
        assert_ne!(
            second_fp, first_fp,
            "v{format}: same fingerprint after new data"
        );
        assert_ne!(second, first, "v{format}: stale values served");
        assert_eq!(second, expected_score(&python, &store), "v{format}");
        assert!(timing.contains("computed"), "{timing}");
    }
}

#[tokio::test]
async fn rewriting_a_store_on_s3_with_identical_metadata_changes_the_fingerprint() {
    let Some(python) = anndata_python() else {
        return;
    };
    let Some(moto) = common::moto::moto().await else {
        return;
    };
    let bucket = "fingerprint-rewrite";
    let root = moto.bucket(bucket).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("atlas.zarr");
    let (store_url, cache_url) = (format!("{root}/atlas.zarr"), format!("{root}/cache"));
    let metadata_key = object_store::path::Path::from("atlas.zarr/zarr.json");
    let client = moto.client(bucket);

    write_atlas(&python, &local, 1, 3);
    moto.upload(bucket, "atlas.zarr", &local).await;
    let uploaded = Instant::now();
    let first_meta = client.head(&metadata_key).await.expect("head zarr.json");
    let (first_fp, first, _) = serve_score(&store_url, &cache_url).await;
    assert_eq!(first, expected_score(&python, &local));

    // `aws s3 sync` of a rewrite: new chunks, the same metadata bytes. S3's Last-Modified has
    // a resolution of one second; the upload happens in a later second.
    write_atlas(&python, &local, 2, 3);
    if let Some(wait) = Duration::from_millis(1100).checked_sub(uploaded.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    moto.upload(bucket, "atlas.zarr", &local).await;
    let second_meta = client.head(&metadata_key).await.expect("head zarr.json");
    assert_eq!(
        first_meta.e_tag, second_meta.e_tag,
        "identical metadata keeps its ETag (a content hash)"
    );
    assert_ne!(first_meta.last_modified, second_meta.last_modified);

    let (second_fp, second, timing) = serve_score(&store_url, &cache_url).await;
    assert_ne!(second_fp, first_fp, "same fingerprint after new data");
    assert_ne!(second, first, "stale values served from the cache prefix");
    assert_eq!(second, expected_score(&python, &local));
    assert!(timing.contains("computed"), "{timing}");
}

#[tokio::test]
async fn on_a_versioned_bucket_even_an_immediate_rewrite_changes_the_fingerprint() {
    let Some(python) = anndata_python() else {
        return;
    };
    let Some(moto) = common::moto::moto().await else {
        return;
    };
    let bucket = "fingerprint-versioned";
    let root = moto.bucket(bucket).await;
    let versioning = common::fetch(
        http::Method::PUT,
        &format!("{}/{bucket}?versioning", moto.endpoint),
        &[],
        br#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#.to_vec(),
    )
    .await;
    assert_eq!(versioning.status, 200, "enable versioning");
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("atlas.zarr");
    let (store_url, cache_url) = (format!("{root}/atlas.zarr"), format!("{root}/cache"));
    let metadata_key = object_store::path::Path::from("atlas.zarr/zarr.json");
    let client = moto.client(bucket);

    write_atlas(&python, &local, 1, 3);
    moto.upload(bucket, "atlas.zarr", &local).await;
    let first_meta = client.head(&metadata_key).await.expect("head zarr.json");
    let (first_fp, first, _) = serve_score(&store_url, &cache_url).await;
    write_atlas(&python, &local, 2, 3);
    moto.upload(bucket, "atlas.zarr", &local).await;
    let second_meta = client.head(&metadata_key).await.expect("head zarr.json");
    assert_eq!(first_meta.e_tag, second_meta.e_tag);
    assert!(first_meta.version.is_some(), "{first_meta:?}");
    assert_ne!(first_meta.version, second_meta.version);
    let (second_fp, second, _) = serve_score(&store_url, &cache_url).await;
    assert_ne!(second_fp, first_fp);
    assert_ne!(second, first);
    assert_eq!(second, expected_score(&python, &local));
}
