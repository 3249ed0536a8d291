//! Malformed and hostile stores: every failure is a clear error naming the store key involved,
//! never a panic, and the server keeps serving what it can. Also: a non-filesystem backend
//! (`memory://`) serves the same bytes as the fixture directory.

mod common;

use std::path::{Path, PathBuf};

use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::{DatasetContext, DatasetOptions};
use cellucid_edge::store::memory_store;
use common::{
    TestServer, copy_dir, files_below, fixture_store, golden_body, location, open_dataset,
    quote_route,
};
use http::StatusCode;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Map, Value};
use tempfile::TempDir;

/// A private copy of a fixture store.
fn copy_fixture(atlas: &str, version: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join(format!("{atlas}.{version}.zarr"));
    copy_dir(&fixture_store(atlas, version), &store);
    (dir, store)
}

fn url(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Edit the consolidated metadata entries of a store (`.zmetadata` → `metadata` for v2,
/// root `zarr.json` → `consolidated_metadata.metadata` for v3), keeping their order.
fn edit_consolidated(store: &Path, version: &str, edit: impl FnOnce(&mut Map<String, Value>)) {
    let file = store.join(if version == "v2" {
        ".zmetadata"
    } else {
        "zarr.json"
    });
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let entries = if version == "v2" {
        &mut doc["metadata"]
    } else {
        &mut doc["consolidated_metadata"]["metadata"]
    };
    edit(
        entries
            .as_object_mut()
            .expect("consolidated metadata object"),
    );
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// Remove node `key` (and everything below it) from the consolidated metadata and the disk.
fn remove_node(store: &Path, version: &str, key: &str) {
    edit_consolidated(store, version, |entries| {
        let below = format!("{key}/");
        entries.retain(|k, _| {
            let node = if version == "v2" {
                k.rsplit_once('/').map_or("", |(p, _)| p)
            } else {
                k.as_str()
            };
            node != key && !node.starts_with(&below)
        });
    });
    let dir = store.join(key);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Set attribute `name` of node `key` (consolidated metadata and the node's own document).
fn set_attribute(store: &Path, version: &str, key: &str, name: &str, value: Value) {
    edit_consolidated(store, version, |entries| {
        let attrs = if version == "v2" {
            entries
                .get_mut(&format!("{key}/.zattrs"))
                .expect("node attributes")
        } else {
            &mut entries.get_mut(key).expect("node")["attributes"]
        };
        attrs[name] = value.clone();
    });
    let (file, pointer) = if version == "v2" {
        (store.join(key).join(".zattrs"), "")
    } else {
        (store.join(key).join("zarr.json"), "/attributes")
    };
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    doc.pointer_mut(pointer).expect("attributes")[name] = value;
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// Cut a file to half its length.
fn truncate_half(file: &Path) {
    let len = std::fs::metadata(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .len();
    assert!(len > 8, "{} is too small to truncate", file.display());
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.set_len(len / 2).unwrap();
}

/// First chunk of a 1-D / 2-D array in either chunk-key layout.
fn first_chunk(store: &Path, version: &str, key: &str, dims: usize) -> PathBuf {
    let base = store.join(key);
    match (version, dims) {
        ("v2", 1) => base.join("0"),
        ("v2", _) => base.join("0.0"),
        (_, 1) => base.join("c").join("0"),
        _ => base.join("c").join("0").join("0"),
    }
}

#[tokio::test]
async fn truncated_chunks_give_500_and_errors_naming_the_key() {
    for version in ["v2", "v3"] {
        let (_dir, store) = copy_fixture("pbmc68k", version);
        truncate_half(&first_chunk(&store, version, "obs/n_counts", 1));
        truncate_half(&first_chunk(&store, version, "X", 2));

        // The dataset API: errors, not panics, each naming the array.
        let ds = open_dataset(url(&store)).await.expect("metadata is intact");
        let index = ds
            .resolve_obs_field("n_counts")
            .expect("n_counts is a field");
        let err = ds.obs_values(index).await.expect_err("truncated obs chunk");
        assert!(err.to_string().contains("obs/n_counts"), "{version}: {err}");
        let err = ds
            .obs_outliers(index)
            .await
            .expect_err("truncated obs chunk");
        assert!(err.to_string().contains("obs/n_counts"), "{version}: {err}");
        let err = ds.gene_values(0).await.expect_err("truncated X chunk");
        assert!(err.to_string().contains("`X`"), "{version}: {err}");
        // Other data still reads.
        assert!(ds.points(3).await.is_ok());
        let louvain = ds.resolve_obs_field("louvain").unwrap();
        assert!(ds.obs_codes(louvain).await.is_ok());

        // The server: 500 for the damaged artifacts (twice: failures are not cached as
        // successes), everything else still served.
        let server = TestServer::open(url(&store)).await;
        for path in [
            "/obs/n_counts.values.f32",
            "/obs/n_counts.codes.u8",
            "/var/HES4.values.f32",
            "/obs/n_counts.values.f32",
        ] {
            let r = server.get_viewer(path).await;
            assert_eq!(
                r.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{version} {path}"
            );
            assert_eq!(r.content_type(), "text/plain");
            let body = String::from_utf8_lossy(&r.body);
            assert!(
                !body.contains(url(&store)),
                "{version}: 500 body leaks the store path: {body}"
            );
            assert_eq!(r.header("access-control-allow-origin"), common::ORIGIN);
        }
        for route in [
            "points_3d.bin",
            "obs/louvain.codes.u8",
            "obs/n_genes.values.f32",
        ] {
            let r = server.get_viewer(&quote_route(route)).await;
            assert_eq!(r.status, StatusCode::OK, "{version} {route}");
            assert_eq!(
                r.decoded().unwrap(),
                golden_body("pbmc68k", route),
                "{version} {route}"
            );
        }
        // A gene in an intact chunk (column 300 lives in the second column chunk of 256).
        let genes = ds.genes().await.unwrap();
        let gene = &genes.ids()[300];
        let r = server
            .get_viewer(&quote_route(&format!("var/{gene}.values.f32")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{version} gene #{gene}");
        assert_eq!(
            server.get_viewer("/_cellucid/health").await.status,
            StatusCode::OK
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn corrupt_consolidated_metadata_is_reported() {
    let (_dir, store) = copy_fixture("sparse", "v2");
    std::fs::write(
        store.join(".zmetadata"),
        b"{\"metadata\": {\"obs/.zattrs\": ",
    )
    .unwrap();
    let err = open_dataset(url(&store))
        .await
        .expect_err("corrupt .zmetadata");
    assert!(err.to_string().contains(".zmetadata"), "{err}");
    let err = Catalog::open(
        location(url(&store)),
        &DatasetOptions::default(),
        &DatasetContext::default(),
    )
    .await
    .expect_err("corrupt .zmetadata");
    assert!(err.to_string().contains(".zmetadata"), "{err}");

    // Valid JSON of the wrong shape.
    std::fs::write(store.join(".zmetadata"), b"[1, 2, 3]").unwrap();
    let err = open_dataset(url(&store))
        .await
        .expect_err("no metadata object");
    assert!(err.to_string().contains(".zmetadata"), "{err}");

    let (_dir, store) = copy_fixture("sparse", "v3");
    std::fs::write(store.join("zarr.json"), b"not json at all").unwrap();
    let err = open_dataset(url(&store))
        .await
        .expect_err("corrupt zarr.json");
    assert!(err.to_string().contains("zarr.json"), "{err}");
}

#[tokio::test]
async fn missing_obs_index_is_reported() {
    for version in ["v2", "v3"] {
        for atlas in ["pbmc68k", "edge"] {
            let (_dir, store) = copy_fixture(atlas, version);
            // The index array is the one the `_index` attribute of obs names.
            let attrs_file = if version == "v2" {
                store.join("obs").join(".zattrs")
            } else {
                store.join("obs").join("zarr.json")
            };
            let doc: Value = serde_json::from_slice(&std::fs::read(&attrs_file).unwrap()).unwrap();
            let attrs = if version == "v2" {
                &doc
            } else {
                &doc["attributes"]
            };
            let index_name = attrs["_index"].as_str().unwrap_or("_index").to_string();
            let key = format!("obs/{index_name}");
            remove_node(&store, version, &key);
            let err = open_dataset(url(&store)).await.expect_err("no obs index");
            assert!(err.to_string().contains(&key), "{atlas}.{version}: {err}");
        }
    }
}

#[tokio::test]
async fn store_without_umap_is_refused() {
    for version in ["v2", "v3"] {
        let (_dir, store) = copy_fixture("pbmc68k", version);
        remove_node(&store, version, "obsm/X_umap");
        remove_node(&store, version, "obsm/X_umap_3d");
        let err = open_dataset(url(&store)).await.expect_err("no UMAP");
        let text = err.to_string();
        assert!(text.contains("X_umap"), "{version}: {text}");
        // The message lists what obsm does hold.
        assert!(text.contains("X_pca"), "{version}: {text}");
        let err = Catalog::open(
            location(url(&store)),
            &DatasetOptions::default(),
            &DatasetContext::default(),
        )
        .await
        .expect_err("no UMAP");
        assert!(err.to_string().contains("X_umap"), "{version}: {err}");
    }
}

#[tokio::test]
async fn unknown_column_encoding_is_skipped_with_a_warning() {
    for version in ["v2", "v3"] {
        let (_dir, store) = copy_fixture("pbmc68k", version);
        set_attribute(
            &store,
            version,
            "obs/n_counts",
            "encoding-type",
            Value::from("mystery-array"),
        );
        let ds = open_dataset(url(&store))
            .await
            .expect("other columns are fine");
        let warnings = &ds.layout().warnings;
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("n_counts") && w.contains("mystery-array")),
            "{version}: warnings {warnings:?}"
        );
        assert!(
            ds.resolve_obs_field("n_counts").is_none(),
            "{version}: column skipped"
        );
        assert_eq!(
            ds.obs_fields().len(),
            7,
            "{version}: the other 7 columns remain"
        );

        let server = TestServer::open(url(&store)).await;
        let r = server.get_viewer("/obs/n_counts.values.f32").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{version}");
        let manifest = server.get_viewer("/obs_manifest.json").await.json();
        let names: Vec<&str> = manifest["_continuousFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f[0].as_str())
            .collect();
        assert!(!names.contains(&"n_counts"), "{version}: {names:?}");
        let r = server.get_viewer("/obs/louvain.codes.u8").await;
        assert_eq!(r.status, StatusCode::OK);
        server.stop().await;
    }
}

#[tokio::test]
async fn empty_directory_is_not_a_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let err = Catalog::open(
        location(url(dir.path())),
        &DatasetOptions::default(),
        &DatasetContext::default(),
    )
    .await
    .expect_err("empty directory");
    let text = err.to_string();
    assert!(
        text.contains("neither an AnnData-Zarr store nor a directory of stores"),
        "{text}"
    );

    // Sub-directories that are not stores: still an error, naming the children.
    std::fs::create_dir_all(dir.path().join("junk.zarr")).unwrap();
    std::fs::write(dir.path().join("junk.zarr").join("readme.txt"), b"hello").unwrap();
    let err = Catalog::open(
        location(url(dir.path())),
        &DatasetOptions::default(),
        &DatasetContext::default(),
    )
    .await
    .expect_err("no stores");
    assert!(err.to_string().contains("junk.zarr"), "{err}");

    // A broken store next to a good one: the good one is served, the broken one skipped.
    copy_dir(
        &fixture_store("sparse", "v3"),
        &dir.path().join("sparse.v3.zarr"),
    );
    let catalog = Catalog::open(
        location(url(dir.path())),
        &DatasetOptions::default(),
        &DatasetContext::default(),
    )
    .await
    .expect("one good store");
    assert_eq!(catalog.datasets().len(), 1);

    // A path that does not exist is a clear error too.
    let missing = dir.path().join("does-not-exist");
    let err = cellucid_edge::store::open_store_url(url(&missing)).expect_err("missing path");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}

/// Copy a fixture store into the named in-memory store under `prefix`.
async fn fill_memory(name: &str, prefix: &str, atlas: &str, version: &str) {
    let store = memory_store(name);
    for (rel, bytes) in files_below(&fixture_store(atlas, version)) {
        let key = ObjectPath::from(format!("{prefix}/{rel}"));
        store.put(&key, PutPayload::from(bytes)).await.expect("put");
    }
}

#[tokio::test]
async fn in_memory_backend_serves_like_the_filesystem() {
    fill_memory("errors-test-single", "atlases/sparse", "sparse", "v3").await;
    let server = TestServer::open("memory://errors-test-single/atlases/sparse").await;
    assert!(!server.app.catalog().is_multi());
    for g in common::golden_meta("sparse") {
        let r = server.get_viewer(&quote_route(&g.route)).await;
        assert_eq!(r.status.as_u16(), g.status, "memory:// {}", g.route);
        if g.status == 200 {
            let body = r.decoded().unwrap();
            let diff = common::compare_body(&g.route, &golden_body("sparse", &g.route), &body);
            assert!(diff.is_none(), "memory:// {}: {diff:?}", g.route);
        }
    }
    server.stop().await;

    // A catalogue inside an in-memory store, one atlas per prefix.
    fill_memory("errors-test-multi", "root/edge.v2.zarr", "edge", "v2").await;
    fill_memory("errors-test-multi", "root/pbmc68k.v3.zarr", "pbmc68k", "v3").await;
    let server = TestServer::open("memory://errors-test-multi/root").await;
    assert!(server.app.catalog().is_multi());
    let doc = server.get_viewer("/_cellucid/datasets").await.json();
    let ids: Vec<&str> = doc["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{doc}");
    for (id, atlas) in ids.iter().zip(["edge", "pbmc68k"]) {
        let r = server.get_viewer(&format!("/{id}/points_3d.bin")).await;
        assert_eq!(r.status, StatusCode::OK, "{id}");
        assert_eq!(
            r.decoded().unwrap(),
            golden_body(atlas, "points_3d.bin"),
            "{id}"
        );
    }
    server.stop().await;

    // An empty in-memory prefix is an error, not a panic.
    let err = Catalog::open(
        location("memory://errors-test-empty/nothing"),
        &DatasetOptions::default(),
        &DatasetContext::default(),
    )
    .await
    .expect_err("empty memory store");
    assert!(
        err.to_string()
            .contains("memory://errors-test-empty/nothing"),
        "{err}"
    );
}

/// Hostile array metadata (edited in the consolidated document): each case is contained to the
/// element it damages — a skipped column or graph with a warning, a 500 for that artifact only,
/// or an open error naming the key — and nothing panics.
#[tokio::test]
async fn hostile_array_metadata_is_contained() {
    use serde_json::json;
    enum Expect {
        /// Open fails with an error naming this text.
        OpenError(&'static str),
        /// A layout warning containing this text; these routes are 404.
        Skipped(&'static str, &'static [&'static str]),
        /// These routes are 500.
        Fails(&'static [&'static str]),
    }
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, &str, Edit, Expect)> = vec![
        (
            "zero chunk shape",
            "obs/n_counts",
            |v| v["chunk_grid"]["configuration"]["chunk_shape"] = json!([0]),
            Expect::Skipped("n_counts", &["/obs/n_counts.values.f32"]),
        ),
        (
            "negative shape",
            "obs/n_counts",
            |v| v["shape"] = json!([-1]),
            Expect::Skipped("n_counts", &["/obs/n_counts.values.f32"]),
        ),
        (
            "unreadable data type",
            "obs/n_counts",
            |v| v["data_type"] = json!("complex128"),
            Expect::Skipped("n_counts", &["/obs/n_counts.values.f32"]),
        ),
        (
            "codes of the wrong length",
            "obs/bulk_labels/codes",
            |v| v["shape"] = json!([5]),
            Expect::Skipped("bulk_labels", &["/obs/bulk_labels.codes.u8"]),
        ),
        (
            "fewer categories than the codes use",
            "obs/bulk_labels/categories",
            |v| v["shape"] = json!([3]),
            Expect::Fails(&["/obs/bulk_labels.codes.u8", "/obs/bulk_labels.outliers.f32"]),
        ),
        (
            "chunk grid that does not match the chunks",
            "obsm/X_umap",
            |v| v["chunk_grid"]["configuration"]["chunk_shape"] = json!([7, 1]),
            Expect::Fails(&["/points_2d.bin"]),
        ),
        (
            "graph indptr of the wrong length",
            "obsp/connectivities/indptr",
            |v| v["shape"] = json!([5]),
            Expect::Skipped(
                "connectivities",
                &["/connectivity/edges.src.bin", "/connectivity_manifest.json"],
            ),
        ),
        (
            "string X",
            "X",
            |v| v["data_type"] = json!("string"),
            Expect::OpenError("`X`"),
        ),
    ];
    for (name, key, edit, expect) in cases {
        let (_dir, store) = copy_fixture("pbmc68k", "v3");
        edit_consolidated(&store, "v3", |entries| {
            edit(entries.get_mut(key).expect("node in consolidated metadata"))
        });
        let opened = open_dataset(url(&store)).await;
        let bad_routes: &[&str] = match (&expect, opened) {
            (Expect::OpenError(text), Err(e)) => {
                assert!(e.to_string().contains(text), "{name}: {e}");
                continue;
            }
            (Expect::OpenError(_), Ok(_)) => panic!("{name}: store opened"),
            (_, Err(e)) => panic!("{name}: open failed: {e}"),
            (Expect::Skipped(text, routes), Ok(ds)) => {
                let warnings = &ds.layout().warnings;
                assert!(
                    warnings.iter().any(|w| w.contains(text)),
                    "{name}: warnings {warnings:?}"
                );
                routes
            }
            (Expect::Fails(routes), Ok(_)) => routes,
        };
        let server = TestServer::open(url(&store)).await;
        for path in bad_routes {
            let r = server.get_viewer(path).await;
            let expected = match expect {
                Expect::Skipped(..) => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            assert_eq!(r.status, expected, "{name}: {path}");
        }
        for route in [
            "points_3d.bin",
            "obs/louvain.codes.u8",
            "var/HES4.values.f32",
        ] {
            let r = server.get_viewer(&quote_route(route)).await;
            assert_eq!(r.status, StatusCode::OK, "{name}: {route}");
            assert_eq!(
                r.decoded().unwrap(),
                golden_body("pbmc68k", route),
                "{name}: {route}"
            );
        }
        server.stop().await;
    }
}
