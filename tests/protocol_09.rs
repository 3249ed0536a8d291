//! The Cellucid 0.9 protocol under `/v0.9` (shared/docs/protocol-0.9.md): range, ETag, 304,
//! 416 and If-Range semantics on Zarr folders (v2, v3), `.zarr.zip` and `.h5ad`, locally and
//! over a real moto S3 server; absent keys; synthesised consolidated metadata (checked against
//! zarrs, zarr-python and cellucid 0.9.5's own generator, in the Python `common/python.rs`
//! provisions); the datasets document against the 0.9.5 validator; a browser-style client
//! through `serve` and through the Lambda handler.

mod common;

use common::python;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use cellucid_edge::lambda::LambdaHandler;
use cellucid_edge::memory::MemoryBudget;
use cellucid_edge::service::{Config, Service};
use cellucid_edge::v09::documents::Counts;
use cellucid_edge::v09::source::{Source, SourceLocation};
use cellucid_edge::v09::{Frontend, FrontendConfig};
use common::{ORIGIN, copy_dir, fixture_store, fixtures, open_catalog};
use http::{Method, Request, Response, StatusCode};
use serde_json::Value;

const ID: &str = "demo-1";

fn v09_fixture(name: &str) -> PathBuf {
    fixtures().join("v09").join(name)
}

fn source(url: &str, id: &str) -> Arc<Source> {
    let location = SourceLocation::open(url).unwrap_or_else(|e| panic!("open {url}: {e}"));
    Arc::new(Source::new(
        id.to_string(),
        "Demo atlas".to_string(),
        location,
        Counts::default(),
        None,
        &MemoryBudget::default(),
    ))
}

/// A service whose seed protocol serves the `sparse` fixture and whose 0.9 protocol serves `url`.
async fn app_for(url: &str, config: FrontendConfig) -> Service {
    app_with(url, config, Config::default()).await
}

/// Like [`app_for`], with the service configured by `service`.
async fn app_with(url: &str, config: FrontendConfig, service: Config) -> Service {
    let catalog = open_catalog(&fixture_store("sparse", "v2").to_string_lossy()).await;
    let frontend = Frontend::new(vec![source(url, ID)], config).expect("one source");
    Service::new(catalog, service)
        .expect("service")
        .with_protocol_09(frontend)
}

/// One request through the service, its body collected (a short body fails the test).
async fn call(
    app: &Service,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Response<Bytes> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, body) = app.handle(b.body(()).expect("request")).await.into_parts();
    Response::from_parts(parts, body.collect().await.expect("whole body"))
}

fn h<'a>(r: &'a Response<Bytes>, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Every §1.3 rule on one resource whose bytes are `expected`.
async fn check_byte_semantics(app: &Service, path: &str, expected: &[u8]) {
    let size = expected.len() as u64;
    assert!(size > 40, "{path}: fixture too small for the checks");
    let full = call(
        app,
        Method::GET,
        path,
        &[("accept-encoding", "gzip"), ("origin", ORIGIN)],
    )
    .await;
    assert_eq!(full.status(), StatusCode::OK, "{path}");
    assert_eq!(&full.body()[..], expected, "{path}: full body");
    assert_eq!(h(&full, "content-type"), "application/octet-stream");
    assert_eq!(h(&full, "content-length"), size.to_string());
    assert_eq!(h(&full, "accept-ranges"), "bytes");
    assert!(
        !full.headers().contains_key("content-encoding"),
        "{path}: never encoded"
    );
    assert!(!full.headers().contains_key("last-modified"));
    assert_eq!(h(&full, "access-control-allow-origin"), ORIGIN);
    assert_eq!(h(&full, "vary"), "Origin");
    assert_eq!(
        h(&full, "access-control-expose-headers"),
        "Accept-Ranges, Content-Encoding, Content-Length, Content-Range, ETag"
    );
    assert_eq!(
        h(&full, "access-control-allow-headers"),
        "Content-Type, Range"
    );
    assert_eq!(h(&full, "cache-control"), "no-cache");
    let etag = h(&full, "etag").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{path}: strong tag {etag}"
    );

    let r = call(app, Method::GET, path, &[("range", "bytes=3-12")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body()[..], &expected[3..13]);
    assert_eq!(h(&r, "content-range"), format!("bytes 3-12/{size}"));
    assert_eq!(h(&r, "content-length"), "10");
    assert_eq!(h(&r, "etag"), etag, "{path}: one tag per version");

    let r = call(app, Method::GET, path, &[("range", "bytes=-16")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body()[..], &expected[expected.len() - 16..]);
    assert_eq!(
        h(&r, "content-range"),
        format!("bytes {}-{}/{size}", size - 16, size - 1)
    );

    let r = call(
        app,
        Method::GET,
        path,
        &[("range", &format!("bytes={}-", size - 5))],
    )
    .await;
    assert_eq!(&r.body()[..], &expected[expected.len() - 5..]);
    let r = call(
        app,
        Method::GET,
        path,
        &[("range", &format!("bytes=0-{}", size * 9))],
    )
    .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        h(&r, "content-range"),
        format!("bytes 0-{}/{size}", size - 1)
    );

    for bad in [
        format!("bytes={size}-"),
        "bytes=0-1,4-5".into(),
        "bytes= 0-1".into(),
        "bytes=-".into(),
        "bytes=-0".into(),
        "bytes=5-4".into(),
        "items=0-1".into(),
    ] {
        let r = call(
            app,
            Method::GET,
            path,
            &[("range", &bad), ("origin", ORIGIN)],
        )
        .await;
        assert_eq!(
            r.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{path}: {bad}"
        );
        assert_eq!(h(&r, "content-range"), format!("bytes */{size}"));
        assert_eq!(h(&r, "content-type"), "text/plain");
        assert_eq!(&r.body()[..], b"Requested byte range is not satisfiable");
        assert_eq!(h(&r, "access-control-allow-origin"), ORIGIN);
    }
    let r = call(
        app,
        Method::GET,
        path,
        &[("range", "bytes=0-1"), ("range", "bytes=2-3")],
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        "two Range lines"
    );

    // If-None-Match runs before Range; weak comparison.
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".into(),
    ] {
        let r = call(
            app,
            Method::GET,
            path,
            &[("if-none-match", &inm), ("range", "bytes=0-3")],
        )
        .await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{path}: {inm}");
        assert!(r.body().is_empty());
        assert_eq!(h(&r, "etag"), etag);
        assert!(!r.headers().contains_key("content-type"));
        assert!(!r.headers().contains_key("content-length"));
    }
    let r = call(app, Method::GET, path, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status(), StatusCode::OK);

    // If-Range: strong and exact, else the whole resource.
    let r = call(
        app,
        Method::GET,
        path,
        &[("range", "bytes=0-3"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    for stale in [
        "\"stale\"".to_string(),
        format!("W/{etag}"),
        "Wed, 21 Oct 2015 07:28:00 GMT".into(),
    ] {
        let r = call(
            app,
            Method::GET,
            path,
            &[("range", "bytes=0-3"), ("if-range", &stale)],
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{path}: If-Range {stale}");
        assert_eq!(&r.body()[..], expected);
    }

    // HEAD: the same status line and headers, no body.
    let r = call(app, Method::HEAD, path, &[("range", "bytes=1-2")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(h(&r, "content-range"), format!("bytes 1-2/{size}"));
    assert_eq!(h(&r, "content-length"), "2");
    assert!(r.body().is_empty());
    let r = call(app, Method::HEAD, path, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, "content-length"), size.to_string());
    assert_eq!(h(&r, "etag"), etag);
}

#[tokio::test]
async fn zarr_folders_v2_and_v3_key_by_key() {
    for (version, chunk) in [("v2", "X/data/0"), ("v3", "X/data/c/0")] {
        let store = fixture_store("sparse", version);
        let app = app_for(&store.to_string_lossy(), FrontendConfig::default()).await;
        let expected = std::fs::read(store.join(chunk)).expect("chunk");
        check_byte_semantics(
            &app,
            &format!("/v0.9/_cellucid/anndata/{ID}.zarr/{chunk}"),
            &expected,
        )
        .await;
        let meta = if version == "v2" {
            ".zmetadata"
        } else {
            "zarr.json"
        };
        let expected = std::fs::read(store.join(meta)).expect("metadata");
        check_byte_semantics(
            &app,
            &format!("/v0.9/_cellucid/anndata/{ID}.zarr/{meta}"),
            &expected,
        )
        .await;
        // Absent keys: 404 (never 403), with CORS.
        let other = if version == "v2" {
            "zarr.json"
        } else {
            ".zmetadata"
        };
        for key in [
            other,
            "X/data/999",
            "nope/.zarray",
            "../x",
            "X//a",
            "",
            "X/./data",
            "X/data/",
        ] {
            let path = format!("/v0.9/_cellucid/anndata/{ID}.zarr/{key}");
            let r = call(&app, Method::GET, &path, &[("origin", ORIGIN)]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{version} {key:?}");
            assert_eq!(h(&r, "access-control-allow-origin"), ORIGIN);
            assert_eq!(h(&r, "content-type"), "text/plain");
        }
        let r = call(
            &app,
            Method::GET,
            &format!("/v0.9/_cellucid/anndata/{ID}.zarr/nope"),
            &[],
        )
        .await;
        assert_eq!(&r.body()[..], b"No key 'nope' in the store");
        for wrong in [
            "other.zarr/.zattrs",
            "demo-1.h5ad",
            "demo-1.zarr.zip",
            "demo-1.zarr",
        ] {
            let r = call(
                &app,
                Method::GET,
                &format!("/v0.9/_cellucid/anndata/{wrong}"),
                &[],
            )
            .await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{wrong}");
        }
    }
}

#[tokio::test]
async fn zarr_zip_and_h5ad_files_with_ranges() {
    for (file, route) in [
        ("sparse.zarr.zip", "demo-1.zarr.zip"),
        ("sparse.h5ad", "demo-1.h5ad"),
    ] {
        let path = v09_fixture(file);
        let app = app_for(&path.to_string_lossy(), FrontendConfig::default()).await;
        let expected = std::fs::read(&path).expect("fixture");
        check_byte_semantics(&app, &format!("/v0.9/_cellucid/anndata/{route}"), &expected).await;
        let r = call(
            &app,
            Method::GET,
            &format!("/v0.9/_cellucid/anndata/{route}/"),
            &[],
        )
        .await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "trailing slash on a file store"
        );
        let r = call(&app, Method::GET, "/v0.9/_cellucid/datasets", &[]).await;
        let doc: Value = serde_json::from_slice(r.body()).expect("json");
        assert_eq!(
            doc["datasets"][0]["anndata"]["file"]["size"],
            expected.len() as u64
        );
        assert_eq!(
            doc["datasets"][0]["anndata"]["file"]["url"],
            format!("_cellucid/anndata/{route}")
        );
    }
}

#[tokio::test]
async fn documents_control_routes_and_the_seed_beside() {
    let store = fixture_store("sparse", "v3");
    let app = app_for(&store.to_string_lossy(), FrontendConfig::default()).await;
    let r = call(
        &app,
        Method::GET,
        "/v0.9/_cellucid/datasets?x=1",
        &[("origin", ORIGIN)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, "content-type"), "application/json");
    assert_eq!(
        std::str::from_utf8(r.body()).unwrap(),
        r#"{"datasets": [{"id": "demo-1", "name": "Demo atlas", "anndata": {"file": {"url": "_cellucid/anndata/demo-1.zarr/", "kind": "zarr", "layout": "folder"}, "defaults": {}}}]}"#
    );
    let r = call(&app, Method::GET, "/v0.9/_cellucid/health", &[]).await;
    let doc: Value = serde_json::from_slice(r.body()).unwrap();
    let keys: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["status", "type", "version", "format", "n_cells", "n_genes"]
    );
    let r = call(&app, Method::GET, "/v0.9/_cellucid/info", &[]).await;
    let doc: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(doc["runtime"], "python");
    assert!(doc.get("is_backed").is_none());
    for (method, path, status) in [
        (
            Method::GET,
            "/v0.9/_cellucid/protocol",
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/v0.9/_cellucid/ws", StatusCode::NOT_FOUND),
        (Method::GET, "/v0.9/", StatusCode::SERVICE_UNAVAILABLE),
        (Method::GET, "/v0.9/anything", StatusCode::NOT_FOUND),
        (
            Method::OPTIONS,
            "/v0.9/_cellucid/anndata/demo-1.zarr/zarr.json",
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            "/v0.9/_cellucid/health",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::PUT,
            "/v0.9/_cellucid/health",
            StatusCode::NOT_IMPLEMENTED,
        ),
    ] {
        let r = call(&app, method.clone(), path, &[("origin", ORIGIN)]).await;
        assert_eq!(r.status(), status, "{method} {path}");
        assert_eq!(
            h(&r, "access-control-allow-origin"),
            ORIGIN,
            "{method} {path}"
        );
        assert_eq!(h(&r, "access-control-allow-methods"), "GET, HEAD, OPTIONS");
    }
    let r = call(
        &app,
        Method::GET,
        "/v0.9/_cellucid/health",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    // The seed protocol keeps answering at the root with its own documents.
    let r = call(&app, Method::GET, "/_cellucid/datasets", &[]).await;
    let doc: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(doc["datasets"][0]["path"], "/");
    let r = call(&app, Method::GET, "/_cellucid/health", &[]).await;
    let doc: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(doc["is_backed"], false);
}

#[tokio::test]
async fn host_allow_list_answers_421_on_loopback() {
    let store = fixture_store("sparse", "v2");
    let config = Config {
        host_rule: cellucid_edge::service::host::HostCheck::for_bind(
            "127.0.0.1".parse().unwrap(),
            8765,
            &["hub.example.org".into()],
        ),
        ..Config::default()
    };
    let app = app_with(&store.to_string_lossy(), FrontendConfig::default(), config).await;
    for (host, status) in [
        ("127.0.0.1:8765", StatusCode::OK),
        ("localhost:8765", StatusCode::OK),
        ("hub.example.org:443", StatusCode::OK),
        ("127.0.0.1", StatusCode::MISDIRECTED_REQUEST),
        ("attacker.example:8765", StatusCode::MISDIRECTED_REQUEST),
    ] {
        let r = call(
            &app,
            Method::GET,
            "/v0.9/_cellucid/health",
            &[("host", host), ("origin", ORIGIN)],
        )
        .await;
        assert_eq!(r.status(), status, "{host}");
        if status == StatusCode::MISDIRECTED_REQUEST {
            assert_eq!(&r.body()[..], b"Host header does not name this server");
            assert_eq!(h(&r, "access-control-allow-origin"), ORIGIN);
        }
    }
}

/// A copy of a fixture store without consolidated metadata.
fn unconsolidated(version: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("sparse.{version}.zarr"));
    copy_dir(&fixture_store("sparse", version), &out);
    if version == "v2" {
        std::fs::remove_file(out.join(".zmetadata")).expect("remove .zmetadata");
    } else {
        let path = out.join("zarr.json");
        let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        doc.as_object_mut().unwrap().remove("consolidated_metadata");
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }
    out
}

fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Synthesised consolidated metadata (megabytes for a large atlas) is held in the memory
/// budget the dataset was given — it counts against it — and stays correct when the budget
/// cannot keep it: built again on every call, or reloaded from the cache prefix when there is
/// one (the store is not listed again).
#[tokio::test]
async fn synthesised_metadata_lives_in_the_memory_budget() {
    use cellucid_edge::cache::ArtifactCache;
    use cellucid_edge::store::{ReadMetrics, open_store_url};
    use cellucid_edge::v09::source::Lookup;

    async fn generated(source: &Source) -> Bytes {
        match source.lookup_key("zarr.json", false).await.expect("lookup") {
            Lookup::Generated(bytes, info) => {
                assert_eq!(info.size, bytes.len() as u64);
                bytes
            }
            other => panic!("not synthesised: {other:?}"),
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = unconsolidated("v3", tmp.path());
    let url = store.to_string_lossy().into_owned();
    let open = |budget: &MemoryBudget, cache: Option<(ArtifactCache, String)>| {
        let location = SourceLocation::open(&url).expect("open the store");
        Source::new(
            ID.into(),
            "Demo atlas".into(),
            location,
            Counts::default(),
            cache,
            budget,
        )
    };

    let budget = MemoryBudget::new(64 << 20);
    let before = budget.usage().await;
    let source = open(&budget, None);
    let doc = generated(&source).await;
    assert!(doc.len() > 1024, "a document of {} bytes", doc.len());
    let held = budget.usage().await;
    assert!(
        held.used >= before.used + doc.len() as u64 && held.entries > before.entries,
        "not counted: {before:?} -> {held:?} for {} bytes",
        doc.len()
    );
    assert_eq!(generated(&source).await, doc);
    drop(source);

    // A budget smaller than the document cannot keep it: same bytes every time, nothing held.
    let tiny = MemoryBudget::new(1024);
    let source = open(&tiny, None);
    for _ in 0..2 {
        assert_eq!(generated(&source).await, doc);
    }
    assert!(tiny.usage().await.used <= tiny.capacity());

    // With a cache prefix, an evicted document is reloaded from it, not synthesised again:
    // what the store holds now (a node renamed) does not show.
    let cache_dir = tmp.path().join("cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let cache = ArtifactCache::new(
        &open_store_url(&cache_dir.to_string_lossy()).unwrap(),
        Arc::new(ReadMetrics::default()),
    );
    let source = open(&tiny, Some((cache, "fingerprint".into())));
    assert_eq!(generated(&source).await, doc);
    std::fs::rename(store.join("obs"), store.join("obs_renamed")).unwrap();
    assert_eq!(
        generated(&source).await,
        doc,
        "reloaded from the cache prefix"
    );
    drop(source);
    let fresh = open(&tiny, None);
    assert_ne!(
        generated(&fresh).await,
        doc,
        "synthesised from the store as it is now"
    );
}

#[tokio::test]
async fn synthesised_consolidated_metadata_opens_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let c095 = python::python(
        python::Need::Cellucid095,
        "protocol_09: cellucid 0.9.5's consolidated metadata, byte for byte",
    );
    let zarr_py = python::python(
        python::Need::Anndata,
        "protocol_09: zarr-python opens the synthesised consolidated metadata",
    );
    for version in ["v2", "v3"] {
        let store = unconsolidated(version, tmp.path());
        let app = app_for(&store.to_string_lossy(), FrontendConfig::default()).await;
        let key = if version == "v2" {
            ".zmetadata"
        } else {
            "zarr.json"
        };
        let path = format!("/v0.9/_cellucid/anndata/{ID}.zarr/{key}");
        let r = call(&app, Method::GET, &path, &[]).await;
        assert_eq!(r.status(), StatusCode::OK, "{version}");
        let ours = r.body().clone();
        check_byte_semantics(&app, &path, &ours).await;
        let etag = h(&r, "etag").to_string();
        assert_eq!(etag.len(), 34, "SHA-256 tag: {etag}");

        // Same entries as the consolidated metadata anndata wrote.
        let original: Value = serde_json::from_slice(
            &std::fs::read(fixture_store("sparse", version).join(key)).unwrap(),
        )
        .unwrap();
        let mine: Value = serde_json::from_slice(&ours).unwrap();
        let (a, b) = if version == "v2" {
            (&original["metadata"], &mine["metadata"])
        } else {
            (
                &original["consolidated_metadata"]["metadata"],
                &mine["consolidated_metadata"]["metadata"],
            )
        };
        let mut ka: Vec<&String> = a.as_object().unwrap().keys().collect();
        let mut kb: Vec<&String> = b.as_object().unwrap().keys().collect();
        ka.sort();
        kb.sort();
        assert_eq!(ka, kb, "{version}: consolidated entries");
        // Each entry is the node's own document as stored.
        for k in ka {
            let file = if version == "v2" {
                store.join(k.as_str())
            } else {
                store.join(k.as_str()).join("zarr.json")
            };
            let on_disk: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            assert_eq!(b[k.as_str()], on_disk, "{version}: entry {k}");
        }

        // Write it into a copy and open that with the zarrs-based reader: consolidated, same layout.
        let copy = tmp.path().join(format!("copy.{version}.zarr"));
        copy_dir(&store, &copy);
        std::fs::write(copy.join(key), &ours).unwrap();
        let reopened = common::open_dataset(&copy.to_string_lossy())
            .await
            .expect("opens");
        assert!(
            reopened.store().is_consolidated(),
            "{version}: read as consolidated"
        );
        let plain = common::open_dataset(&fixture_store("sparse", version).to_string_lossy())
            .await
            .unwrap();
        let (l1, l2) = (reopened.layout(), plain.layout());
        assert_eq!(
            format!("{:?}", (&l1.x, &l1.obs, &l1.var)),
            format!("{:?}", (&l2.x, &l2.obs, &l2.var))
        );
        // obsm order follows the consolidated key order (sorted here, as cellucid 0.9.5 writes it).
        let names = |l: &cellucid_edge::anndata::AnnDataLayout| {
            let mut v: Vec<String> = l.obsm.iter().map(|e| format!("{e:?}")).collect();
            v.sort();
            v
        };
        assert_eq!(names(l1), names(l2));

        if let Some(python) = &zarr_py {
            let out = run_python(
                python,
                "import sys, zarr\ng = zarr.open_consolidated(sys.argv[1], mode='r')\nprint(sorted(g['X'].array_keys()), g['X/data'].shape)",
                &[&copy.to_string_lossy()],
            );
            assert!(
                out.contains("['data', 'indices', 'indptr']"),
                "zarr-python: {out}"
            );
        }
        if let Some(python) = &c095 {
            // cellucid 0.9.5's own generator must produce the same bytes.
            let out = run_python(
                python,
                "import sys\nfrom cellucid._anndata_files import classify_anndata_path, consolidated_zarr_metadata\nk, b = consolidated_zarr_metadata(classify_anndata_path(sys.argv[1]))\nsys.stdout.write(k + '\\n' + b.decode())",
                &[&store.to_string_lossy()],
            );
            let (k, body) = out.split_once('\n').unwrap();
            assert_eq!(k, key);
            assert_eq!(
                body.as_bytes(),
                &ours[..],
                "{version}: byte-identical to cellucid 0.9.5"
            );
        }
    }
}

#[tokio::test]
async fn datasets_document_passes_the_095_validator() {
    let Some(python) = python::python(
        python::Need::Cellucid095,
        "protocol_09: cellucid 0.9.5's validator on /v0.9/_cellucid/datasets",
    ) else {
        return;
    };
    let mut docs = Vec::new();
    for (url, kind) in [
        (fixture_store("sparse", "v2"), "folder"),
        (v09_fixture("sparse.zarr.zip"), "zip"),
        (v09_fixture("sparse.h5ad"), "file"),
    ] {
        let app = app_for(&url.to_string_lossy(), FrontendConfig::default()).await;
        let r = call(&app, Method::GET, "/v0.9/_cellucid/datasets", &[]).await;
        let body = String::from_utf8(r.body().to_vec()).unwrap();
        assert!(body.contains(kind));
        docs.push(body);
    }
    // And the default front-end the App derives from the seed catalogue (its ids are derived).
    let app = Service::new(
        open_catalog(&fixture_store("edge", "v3").to_string_lossy()).await,
        Config::default(),
    )
    .expect("service");
    let r = call(&app, Method::GET, "/v0.9/_cellucid/datasets", &[]).await;
    docs.push(String::from_utf8(r.body().to_vec()).unwrap());
    for doc in docs {
        let out = run_python(
            &python,
            "import sys, json\nfrom cellucid.jupyter._wire import _require_debug_dataset_list\nfrom cellucid._contracts import _require_dataset_id, _require_dataset_name\nd = _require_debug_dataset_list(json.loads(sys.argv[1]))\nfor e in d:\n    _require_dataset_id(e['id']); _require_dataset_name(e['name'])\nprint('ok', len(d))",
            &[&doc],
        );
        assert_eq!(out.trim(), "ok 1", "{doc}");
    }
}

/// A browser-style client: datasets → consolidated metadata → ranged reads of one gene of a
/// CSC X (indptr, then a data range), keeping bytes by ETag and revalidating with
/// If-None-Match; a changed object must come back with a new tag (never mixed).
#[tokio::test]
async fn browser_style_client_through_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("sparse.v2.zarr");
    copy_dir(&fixture_store("sparse", "v2"), &store);
    let app = app_for(&store.to_string_lossy(), FrontendConfig::default()).await;
    let server = common::TestServer::start_service(app).await;
    let base = "/v0.9";
    let viewer = [("origin", ORIGIN)];
    let r = server
        .get(&format!("{base}/_cellucid/datasets"), &viewer)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let url = r.json()["datasets"][0]["anndata"]["file"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let root = format!("{base}/{url}");
    // The Python probe tries .zmetadata first and falls back to zarr.json on a 404.
    let meta = server
        .get(&format!("{root}.zmetadata"), &[("range", "bytes=0-524287")])
        .await;
    assert_eq!(meta.status, StatusCode::PARTIAL_CONTENT);
    let doc: Value = serde_json::from_slice(&meta.body).unwrap();
    assert_eq!(doc["metadata"]["X/.zattrs"]["encoding-type"], "csc_matrix");

    // One gene: indptr[g..g+2], then the data range of that column.
    let indptr_key = format!("{root}X/indptr/0");
    let head = server.request(Method::HEAD, &indptr_key, &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    let indptr_len: usize = head.header("content-length").parse().unwrap();
    let file = std::fs::read(store.join("X/indptr/0")).unwrap();
    assert_eq!(indptr_len, file.len());
    let r = server.get(&indptr_key, &[("range", "bytes=0-")]).await;
    let etag = r.header("etag").to_string();
    let mut cache = std::collections::HashMap::new();
    cache.insert(indptr_key.clone(), (etag.clone(), r.body.clone()));
    // Revalidation: 304 with the same tag, nothing re-sent.
    let again = server
        .get(
            &indptr_key,
            &[("if-none-match", &etag), ("range", "bytes=0-")],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.header("etag"), etag);
    assert!(again.body.is_empty());

    // Two halves of a chunk, read as two ranged requests, join to the stored bytes.
    let data_key = format!("{root}X/data/0");
    let stored = std::fs::read(store.join("X/data/0")).unwrap();
    let half = stored.len() / 2;
    let a = server
        .get(&data_key, &[("range", &format!("bytes=0-{}", half - 1))])
        .await;
    let b = server
        .get(&data_key, &[("range", &format!("bytes={half}-"))])
        .await;
    assert_eq!(a.header("etag"), b.header("etag"), "one tag per version");
    assert_eq!([a.body.clone(), b.body.clone()].concat(), stored);

    // The object changes: the next revalidation gets 200 and a new tag.
    std::fs::write(store.join("X/indptr/0"), [&file[..], b"x"].concat()).unwrap();
    let changed = server.get(&indptr_key, &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.header("etag"), etag);
    assert_eq!(changed.body.len(), file.len() + 1);
    // HEAD over the real server keeps Content-Length and sends no body.
    let head = server
        .request(Method::HEAD, &data_key, &[("range", "bytes=0-9")])
        .await;
    assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.header("content-length"), "10");
    assert!(head.body.is_empty());
    // The seed protocol at the root of the same server.
    let seed = server.get("/_cellucid/health", &[]).await;
    assert_eq!(seed.json()["is_backed"], false);
    server.stop().await;
}

fn event(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events/v09")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn envelope_body(envelope: &Value) -> Vec<u8> {
    use base64::Engine;
    let body = envelope["body"].as_str().unwrap_or_default();
    if envelope["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    } else {
        body.as_bytes().to_vec()
    }
}

fn envelope_header<'a>(envelope: &'a Value, name: &str) -> &'a str {
    envelope["headers"][name]
        .as_str()
        .or_else(|| envelope["multiValueHeaders"][name][0].as_str())
        .unwrap_or_default()
}

/// (event file, status, body when checked, Content-Range when checked).
type EventCase = (&'static str, u16, Option<Vec<u8>>, Option<String>);

/// The sample events of events/v09 through `LambdaHandler::handle_event` (the demo atlas, as
/// the default deployment serves it).
#[tokio::test]
async fn lambda_events_for_the_09_protocol() {
    let handler = LambdaHandler::new(Config::default());
    let demo = fixture_store("pbmc68k", "v3");
    let zarr_json = std::fs::read(demo.join("zarr.json")).unwrap();
    let chunk = std::fs::read(demo.join("X/c/0/0")).unwrap();
    let chunk10 = std::fs::read(demo.join("X/c/1/0")).unwrap();
    let cases: [EventCase; 9] = [
        ("url-v09-datasets", 200, None, None),
        (
            "url-v09-range-zarr-json",
            206,
            Some(zarr_json[..100].to_vec()),
            Some(format!("bytes 0-99/{}", zarr_json.len())),
        ),
        (
            "url-v09-range-suffix-chunk",
            206,
            Some(chunk[chunk.len() - 64..].to_vec()),
            None,
        ),
        ("url-v09-head-chunk", 200, Some(Vec::new()), None),
        (
            "url-v09-head-range",
            206,
            Some(Vec::new()),
            Some(format!("bytes 0-9/{}", chunk.len())),
        ),
        ("url-v09-absent-key", 404, None, None),
        (
            "v2-v09-range-zarr-json",
            206,
            Some(zarr_json[10..20].to_vec()),
            None,
        ),
        (
            "rest-v09-range-chunk",
            206,
            Some(chunk10[..32].to_vec()),
            None,
        ),
        ("rest-v09-head-chunk", 200, Some(Vec::new()), None),
    ];
    for (name, status, body, range) in cases {
        let envelope = handler.handle_event(event(name)).await.expect("handled");
        assert_eq!(envelope["statusCode"], status, "{name}: {envelope}");
        assert_eq!(
            envelope_header(&envelope, "access-control-allow-origin"),
            ORIGIN,
            "{name}"
        );
        assert!(
            envelope_header(&envelope, "content-encoding").is_empty(),
            "{name}: never gzip"
        );
        if let Some(body) = body {
            assert_eq!(envelope_body(&envelope), body, "{name}");
        }
        if let Some(range) = range {
            assert_eq!(envelope_header(&envelope, "content-range"), range, "{name}");
        }
        if name.contains("head-chunk") {
            let stored = if name.starts_with("rest") {
                chunk10.len()
            } else {
                chunk.len()
            };
            assert_eq!(
                envelope_header(&envelope, "content-length"),
                stored.to_string(),
                "{name}"
            );
            assert!(!envelope_header(&envelope, "etag").is_empty());
        }
        if name == "url-v09-datasets" {
            let doc: Value = serde_json::from_slice(&envelope_body(&envelope)).unwrap();
            assert_eq!(
                doc["datasets"][0]["anndata"]["file"]["url"],
                "_cellucid/anndata/pbmc68k_reduced.zarr/"
            );
        }
    }
}

/// Everything over a real S3 protocol server (moto on 127.0.0.1): range semantics on zarr
/// (v2 consolidated, v3 unconsolidated → synthesised), zarr.zip and h5ad objects; ETags are the
/// objects' own; absent keys 404; `size` is the object's length; a body over the function's
/// limit is a 307 to a presigned URL of the object, which serves the same bytes.
#[tokio::test]
async fn over_s3_with_moto() {
    let Some(moto) = common::moto::moto().await else {
        return;
    };
    moto.bucket("atlas").await;
    let tmp = tempfile::tempdir().unwrap();
    let v3u = unconsolidated("v3", tmp.path());
    moto.upload("atlas", "v2/sparse.zarr", &fixture_store("sparse", "v2"))
        .await;
    moto.upload("atlas", "v3u/sparse.zarr", &v3u).await;
    moto.upload(
        "atlas",
        "files/sparse.zarr.zip",
        &v09_fixture("sparse.zarr.zip"),
    )
    .await;
    moto.upload("atlas", "files/sparse.h5ad", &v09_fixture("sparse.h5ad"))
        .await;
    let client = moto.client("atlas");

    // Zarr v2 (consolidated): chunk and metadata keys.
    let app = app_for("s3://atlas/v2/sparse.zarr", FrontendConfig::default()).await;
    let chunk = std::fs::read(fixture_store("sparse", "v2").join("X/data/0")).unwrap();
    let path = format!("/v0.9/_cellucid/anndata/{ID}.zarr/X/data/0");
    check_byte_semantics(&app, &path, &chunk).await;
    let r = call(&app, Method::GET, &path, &[]).await;
    use object_store::ObjectStoreExt;
    let meta = client
        .head(&"v2/sparse.zarr/X/data/0".into())
        .await
        .unwrap();
    assert_eq!(
        Some(h(&r, "etag")),
        meta.e_tag.as_deref(),
        "the object's own ETag"
    );
    for key in ["zarr.json", "X/data/7", "nope/.zarray"] {
        let r = call(
            &app,
            Method::GET,
            &format!("/v0.9/_cellucid/anndata/{ID}.zarr/{key}"),
            &[],
        )
        .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{key}");
    }

    // Zarr v3 without consolidated metadata: synthesised from listings, same bytes as locally.
    let app = app_for("s3://atlas/v3u/sparse.zarr", FrontendConfig::default()).await;
    let local = app_for(&v3u.to_string_lossy(), FrontendConfig::default()).await;
    let path = format!("/v0.9/_cellucid/anndata/{ID}.zarr/zarr.json");
    let ours = call(&app, Method::GET, &path, &[]).await;
    let expected = call(&local, Method::GET, &path, &[]).await;
    assert_eq!(ours.body(), expected.body());
    assert_eq!(h(&ours, "etag"), h(&expected, "etag"));
    check_byte_semantics(&app, &path, expected.body()).await;

    // Single-file stores, and `size` equal to the object's length.
    for (key, file, route) in [
        (
            "files/sparse.zarr.zip",
            "sparse.zarr.zip",
            "demo-1.zarr.zip",
        ),
        ("files/sparse.h5ad", "sparse.h5ad", "demo-1.h5ad"),
    ] {
        let app = app_for(&format!("s3://atlas/{key}"), FrontendConfig::default()).await;
        let bytes = std::fs::read(v09_fixture(file)).unwrap();
        check_byte_semantics(&app, &format!("/v0.9/_cellucid/anndata/{route}"), &bytes).await;
        let r = call(&app, Method::GET, "/v0.9/_cellucid/datasets", &[]).await;
        let doc: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            doc["datasets"][0]["anndata"]["file"]["size"],
            bytes.len() as u64
        );
    }

    // The Lambda: a body over its limit is redirected to the object itself; smaller ranges,
    // HEAD and 304 are answered by the function.
    let app = app_for("s3://atlas/files/sparse.h5ad", FrontendConfig::default()).await;
    let config = Config {
        max_body_bytes: 64 * 1024,
        ..Config::default()
    };
    let handler = LambdaHandler::with_service(config, Arc::new(app));
    let bytes = std::fs::read(v09_fixture("sparse.h5ad")).unwrap();
    let mk = |method: &str, headers: Value| {
        let mut e = event("url-v09-range-zarr-json");
        e["rawPath"] = "/v0.9/_cellucid/anndata/demo-1.h5ad".into();
        e["requestContext"]["http"]["path"] = e["rawPath"].clone();
        e["requestContext"]["http"]["method"] = method.into();
        let h = e["headers"].as_object_mut().unwrap();
        h.remove("range");
        for (k, v) in headers.as_object().unwrap() {
            h.insert(k.clone(), v.clone());
        }
        e
    };
    let full = handler
        .handle_event(mk("GET", serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(full["statusCode"], 307, "{full}");
    assert_eq!(
        envelope_header(&full, "access-control-allow-origin"),
        ORIGIN
    );
    let location = envelope_header(&full, "location").to_string();
    assert!(location.starts_with(&moto.endpoint), "{location}");
    let etag = envelope_header(&full, "etag").to_string();
    let fetched = fetch(&location, &[("range", "bytes=0-")]).await;
    assert_eq!(fetched.0, 206);
    assert_eq!(fetched.2, bytes, "the presigned URL serves the object");
    assert_eq!(
        fetched.1.get("etag").and_then(|v| v.to_str().ok()),
        Some(etag.as_str())
    );
    let small = handler
        .handle_event(mk("GET", serde_json::json!({"range": "bytes=100-1099"})))
        .await
        .unwrap();
    assert_eq!(small["statusCode"], 206);
    assert_eq!(envelope_body(&small), &bytes[100..1100]);
    let head = handler
        .handle_event(mk("HEAD", serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(head["statusCode"], 200, "HEAD is never redirected");
    assert_eq!(
        envelope_header(&head, "content-length"),
        bytes.len().to_string()
    );
    let revalidate = handler
        .handle_event(mk("GET", serde_json::json!({"if-none-match": etag})))
        .await
        .unwrap();
    assert_eq!(revalidate["statusCode"], 304, "304 before any redirect");
}

/// A plain GET of an absolute URL: (status, headers, body).
async fn fetch(url: &str, headers: &[(&str, &str)]) -> (u16, http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let mut b = Request::builder().uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let response = client
        .request(b.body(http_body_util::Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status.as_u16(), parts.headers, body)
}

/// `ready` on a CSR atlas (v2 and v3), with tiny row blocks and spill budget so the transpose
/// goes through several spill files: the copy is CSC float32 with §4 chunking, every gene the
/// seed protocol serves from it equals the reference golden, cellucid 0.9.5 sees it as ready
/// (identity, browser-decodable codecs, consolidated) and anndata reads the same X; `serve
/// --ready` serves it under /v0.9 with the catalogue's id.
#[tokio::test]
async fn ready_copy_of_a_csr_atlas() {
    use cellucid_edge::v09::ready::{ReadyOptions, identity_of, write_ready};
    let tmp = tempfile::tempdir().unwrap();
    let c095 = python::python(
        python::Need::Cellucid095,
        "protocol_09: cellucid 0.9.5 reads the ready copy as ready",
    );
    for version in ["v2", "v3"] {
        let src = fixture_store("edge", version);
        let dataset = common::open_dataset(&src.to_string_lossy()).await.unwrap();
        let out_dir = tmp.path().join(format!("edge.{version}.ready.zarr"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = common::location(&out_dir.to_string_lossy());
        let (id, name) = identity_of(&dataset);
        let options = ReadyOptions {
            block_rows: 37,
            spill_entries: 300,
            id: id.clone(),
            name: name.clone(),
        };
        let report = write_ready(&dataset, &out, &options)
            .await
            .expect("ready copy");
        assert_eq!(report.x_encoding, "csc_matrix");
        // A second run into the same place is refused, never a partial overwrite.
        assert!(write_ready(&dataset, &out, &options).await.is_err());

        let ready = common::open_dataset(&out_dir.to_string_lossy())
            .await
            .expect("opens");
        let x = format!("{:?}", ready.layout().x);
        assert!(x.starts_with("Csc("), "{x}");
        assert!(x.contains("Float(4)"), "{x}");
        assert!(ready.store().is_consolidated());
        // Every gene served by the seed protocol from the copy equals the reference's bytes.
        let app = Service::new(
            cellucid_edge::catalog::Catalog::single(Arc::new(ready)),
            Config::default(),
        )
        .expect("service");
        let golden = common::golden_dir("edge").join("var");
        let mut checked = 0;
        for entry in std::fs::read_dir(&golden).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            let route = format!("var/{file}");
            let r = call(
                &app,
                Method::GET,
                &format!("/{}", common::quote_route(&route)),
                &[],
            )
            .await;
            let expected = std::fs::read(golden.join(&file)).unwrap();
            if let Some(diff) = common::compare_body(&route, &expected, r.body()) {
                panic!("{version} {route}: {diff}");
            }
            checked += 1;
        }
        assert!(checked > 100);

        // Served under /v0.9 by `serve --ready`, keeping the catalogue's id.
        let seed = Service::new(
            open_catalog(&src.to_string_lossy()).await,
            Config::default(),
        )
        .expect("service");
        let ready =
            cellucid_edge::v09::ready_frontend(seed.mounts().v09(), &out_dir.to_string_lossy())
                .await
                .expect("serve --ready");
        let served = seed.with_protocol_09(ready);
        let r = call(&served, Method::GET, "/v0.9/_cellucid/datasets", &[]).await;
        let doc: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(doc["datasets"][0]["id"], id);
        let chunk = if version == "v2" {
            "X/data/0"
        } else {
            "X/data/c/0"
        };
        let r = call(
            &served,
            Method::GET,
            &format!("/v0.9/_cellucid/anndata/{id}.zarr/{chunk}"),
            &[("range", "bytes=0-15")],
        )
        .await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);

        if let Some(python) = &c095 {
            let out = run_python(
                python,
                r#"
import sys, json
import numpy as np, anndata as ad, zarr
from cellucid._anndata_files import classify_anndata_path, browser_undecodable, read_cellucid_identity, consolidated_zarr_metadata
src, out, want_id, want_name = sys.argv[1:5]
store = classify_anndata_path(out)
assert store.kind == "zarr" and store.layout == "folder", (store.kind, store.layout)
assert browser_undecodable(store) == [], browser_undecodable(store)
assert read_cellucid_identity(store) == (want_id, want_name), read_cellucid_identity(store)
assert consolidated_zarr_metadata(store) is None, "has consolidated metadata"
a = ad.read_zarr(out)
b = ad.read_zarr(src)
assert a.X.format == "csc", a.X.format
assert a.X.dtype == np.float32
assert a.X.has_canonical_format
assert np.array_equal(a.X.toarray(), b.X.toarray().astype(np.float32))
assert int(a.uns["cellucid"]["schema"]) == 1
assert list(a.obs.columns) == list(b.obs.columns) and list(a.obsm) == list(b.obsm)
g = zarr.open_group(out, mode="r")
assert g["X/data"].chunks == (65536,) or g["X/data"].shape[0] < 65536
print("ready", a.X.nnz)
"#,
                &[
                    &src.to_string_lossy(),
                    &out_dir.to_string_lossy(),
                    &id,
                    &name,
                ],
            );
            assert!(out.starts_with("ready"), "{out}");
        }
    }
}
