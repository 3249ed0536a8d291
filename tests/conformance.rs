//! Conformance against the reference (`cellucid==0.0.9`) goldens, without Python: for every
//! fixture atlas in zarr v2 and v3, start the real server in-process, replay the viewer's
//! request sequence (protocol.md §2) and then every route of `golden/<atlas>/_meta.json`, and
//! check statuses, headers and bodies with the rules of `shared/tools/compare.py`.

mod common;

use common::conformance::{assert_failures, check_server};
use common::{TestServer, fixture_store, quote_route};
use serde_json::Value;

async fn conformance(atlas: &str, version: &str) {
    let store = fixture_store(atlas, version);
    conformance_at(atlas, &format!("{atlas}.{version}.zarr"), &store).await;
}

async fn conformance_at(atlas: &str, label: &str, store: &std::path::Path) {
    let server = TestServer::open(store.to_str().expect("utf-8 path")).await;
    let failures = check_server(atlas, label, &server).await;
    server.stop().await;
    assert_failures(label, &failures);
}

macro_rules! conformance_tests {
    ($($name:ident => ($atlas:literal, $version:literal)),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                conformance($atlas, $version).await;
            }
        )*
    };
}

conformance_tests! {
    pbmc68k_v2 => ("pbmc68k", "v2"),
    pbmc68k_v3 => ("pbmc68k", "v3"),
    edge_v2 => ("edge", "v2"),
    edge_v3 => ("edge", "v3"),
    sparse_v2 => ("sparse", "v2"),
    sparse_v3 => ("sparse", "v3"),
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
