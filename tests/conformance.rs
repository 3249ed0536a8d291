//! Conformance against the reference (`cellucid==0.0.9`) goldens, without Python: for every
//! fixture atlas in zarr v2 and v3, start the real server in-process, replay the viewer's
//! request sequence (protocol.md §2) and then every route of `golden/<atlas>/_meta.json`, and
//! check statuses, headers and bodies with the rules of `shared/tools/compare.py`.

mod common;

use common::conformance::{assert_failures, check_server};
use common::{TestServer, fixture_store, quote_route};
use serde_json::Value;

/// Serve fixture `stores/<atlas>.<version>` (`v2`/`v3` Zarr, or `h5ad`) against its goldens.
async fn conformance(atlas: &str, version: &str) {
    let store = common::fixture_source(atlas, version);
    let label = store
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    conformance_at(&common::golden_name(atlas, version), &label, &store).await;
}

async fn conformance_at(atlas: &str, label: &str, store: &std::path::Path) {
    let server = TestServer::open(store.to_str().expect("utf-8 path")).await;
    let failures = check_server(atlas, label, &server).await;
    server.stop().await;
    assert_failures(label, &failures);
}

/// Per atlas: the Zarr v2 and v3 fixtures, and (feature `h5ad`) the `.h5ad` fixture served
/// directly and converted to Zarr v2 / v3 by `convert` and then served.
macro_rules! conformance_tests {
    ($($atlas:ident),* $(,)?) => {
        $(
            mod $atlas {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn v2() {
                    super::conformance(stringify!($atlas), "v2").await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn v3() {
                    super::conformance(stringify!($atlas), "v3").await;
                }

                #[cfg(feature = "h5ad")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn h5ad() {
                    super::conformance(stringify!($atlas), "h5ad").await;
                }

                #[cfg(feature = "h5ad")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn h5ad_converted_to_v2() {
                    super::converted(stringify!($atlas), 2).await;
                }

                #[cfg(feature = "h5ad")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn h5ad_converted_to_v3() {
                    super::converted(stringify!($atlas), 3).await;
                }
            }
        )*
    };
}

conformance_tests!(pbmc68k, edge, sparse);

/// Round trip: `convert` the `.h5ad` fixture to AnnData-Zarr, then serve the result against
/// the h5ad goldens (the converted store keeps h5ad's element order, so the same latent).
#[cfg(feature = "h5ad")]
async fn converted(atlas: &str, zarr_format: u8) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join(format!("{atlas}.v{zarr_format}.zarr"));
    let report = common::convert_fixture(atlas, &out, zarr_format).await;
    assert!(
        report.skipped.is_empty() || atlas == "pbmc68k",
        "{atlas}: elements skipped: {:?}",
        report.skipped
    );
    conformance_at(
        &common::golden_name(atlas, "h5ad"),
        &format!("{atlas}.h5ad -> zarr v{zarr_format}"),
        &out,
    )
    .await;
}

/// Without consolidated metadata the reader walks per-node metadata and directory listings.
/// For `pbmc68k` and `edge` the obsm listing order picks the same latent as the consolidated
/// order, so the goldens still hold (`sparse` differs by design: README surprise 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unconsolidated_stores_match_goldens() {
    for atlas in ["pbmc68k", "edge"] {
        for version in ["v2", "v3"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = dir.path().join(format!("{atlas}.{version}.zarr"));
            common::copy_dir(&fixture_store(atlas, version), &store);
            if version == "v2" {
                std::fs::remove_file(store.join(".zmetadata")).expect("remove .zmetadata");
            } else {
                let root = store.join("zarr.json");
                let mut doc: Value =
                    serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
                doc.as_object_mut()
                    .unwrap()
                    .remove("consolidated_metadata")
                    .expect("v3 fixture is consolidated");
                std::fs::write(&root, serde_json::to_vec(&doc).unwrap()).unwrap();
            }
            conformance_at(
                atlas,
                &format!("{atlas}.{version}.zarr (unconsolidated)"),
                &store,
            )
            .await;
        }
    }
}

/// The same conformance run through every transport: hyper, the service in-process, and the
/// Lambda handler with function-URL, HTTP API (named stage) and REST API events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_through_every_transport() {
    use cellucid_edge::service::{Config, Service};
    use common::transport::{ALL, connect};
    let config = Config::default();
    for (atlas, version) in [("pbmc68k", "v3"), ("edge", "v2")] {
        let store = fixture_store(atlas, version);
        let catalog = common::open_catalog(store.to_str().expect("utf-8 path")).await;
        let service = std::sync::Arc::new(Service::new(catalog, config.clone()).expect("service"));
        for via in ALL {
            let transport = connect(via, service.clone(), &config).await;
            let label = format!("{atlas}.{version}.zarr via {via:?}");
            let failures = check_server(atlas, &label, transport.as_ref()).await;
            assert_failures(&label, &failures);
        }
    }
}

#[test]
fn quote_matches_python() {
    // urllib.parse.quote(route, safe="/._-")
    assert_eq!(quote_route("var/a b.values.f32"), "/var/a%20b.values.f32");
    assert_eq!(quote_route("var/%%.values.f32"), "/var/%25%25.values.f32");
    assert_eq!(
        quote_route("var/名前遺伝子.values.f32"),
        "/var/%E5%90%8D%E5%89%8D%E9%81%BA%E4%BC%9D%E5%AD%90.values.f32"
    );
    assert_eq!(
        quote_route("obs/-lead-dash.codes.u8"),
        "/obs/-lead-dash.codes.u8"
    );
    assert_eq!(
        quote_route("var/x~y+z.values.f32"),
        "/var/x~y%2Bz.values.f32"
    );
}

#[test]
fn compare_rules_follow_compare_py() {
    use serde_json::json;
    // Relative tolerance, NaN-free JSON, bools strict, key sets must match.
    assert!(common::json_close(
        &json!({"a": [1.0, 2]}),
        &json!({"a": [1.000001, 2.0]}),
        1e-5
    ));
    assert!(!common::json_close(
        &json!({"a": 1.0}),
        &json!({"a": 1.001}),
        1e-5
    ));
    assert!(!common::json_close(
        &json!({"a": true}),
        &json!({"a": 1}),
        1e-5
    ));
    assert!(!common::json_close(
        &json!({"a": 1}),
        &json!({"a": 1, "b": 2}),
        1e-5
    ));
    // Outliers: one rank step on < 0.5 % of cells is fine, more is not.
    let golden: Vec<u8> = (0..400)
        .flat_map(|i| (i as f32 / 400.0).to_le_bytes())
        .collect();
    let mut ours = golden.clone();
    ours[0..4].copy_from_slice(&(0.005f32).to_le_bytes());
    assert_eq!(common::compare_outliers(&golden, &ours), None);
    ours[4..8].copy_from_slice(&(0.0f32).to_le_bytes());
    ours[8..12].copy_from_slice(&(0.0f32).to_le_bytes());
    assert!(common::compare_outliers(&golden, &ours).is_some());
    let nan = f32::NAN.to_le_bytes();
    let mut ours = golden.clone();
    ours[0..4].copy_from_slice(&nan);
    assert!(common::compare_outliers(&golden, &ours).is_some());
}

/// The source store is never written: served through a `ReadOnlyStore` (which refuses and
/// counts every write) with a cache prefix configured elsewhere, the whole conformance
/// sequence passes and not one write reaches the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_store_is_never_written() {
    use std::sync::Arc;

    use cellucid_edge::cache::ArtifactCache;
    use cellucid_edge::catalog::Catalog;
    use cellucid_edge::dataset::DatasetOptions;
    use cellucid_edge::service::Config;
    use cellucid_edge::store::{ReadMetrics, ReadOnlyStore};

    for (atlas, version) in [("pbmc68k", "v3"), ("sparse", "v2")] {
        let mut source = common::location(fixture_store(atlas, version).to_str().unwrap());
        let read_only = Arc::new(ReadOnlyStore::new(source.store.clone()));
        source.store = read_only.clone();
        let catalog = Catalog::open(
            source,
            &DatasetOptions::default(),
            Arc::new(ReadMetrics::default()),
        )
        .await
        .expect("open read-only");
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            cache: Some(ArtifactCache::new(
                &common::location(cache_dir.path().to_str().unwrap()),
                Arc::new(ReadMetrics::default()),
            )),
            ..Config::default()
        };
        let server = TestServer::start_with(catalog, config).await;
        let label = format!("{atlas}.{version}.zarr (read-only)");
        let failures = check_server(atlas, &label, &server).await;
        server.stop().await;
        assert_failures(&label, &failures);
        assert_eq!(
            read_only.write_attempts(),
            0,
            "{atlas}.{version}: the server tried to write the source store"
        );
        // The run did write — to the cache prefix, not the source.
        assert!(!common::files_below(cache_dir.path()).is_empty());
    }
}
