//! HTTP semantics of the real server (hyper over a TCP socket): HEAD, OPTIONS/CORS, ETags and
//! conditional requests, gzip negotiation, dataset prefixes, unknown routes and methods,
//! hostile paths, raw `.gz` files, a catalogue of several atlases, concurrency and the
//! embedded demo atlas.

mod common;

use std::sync::Arc;

use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::DatasetOptions;
use cellucid_edge::store::ReadMetrics;
use common::{
    ORIGIN, Resp, TestServer, copy_dir, fixture_store, golden_body, gunzip, quote_route,
    raw_exchange,
};
use http::{Method, StatusCode};

const GZIP: (&str, &str) = ("accept-encoding", "gzip");
const FROM_VIEWER: (&str, &str) = ("origin", ORIGIN);

async fn pbmc() -> TestServer {
    TestServer::open(fixture_store("pbmc68k", "v3").to_str().expect("utf-8 path")).await
}

/// The single atlas's id (the `<dataset_id>/` prefix).
async fn dataset_id(server: &TestServer) -> String {
    let doc = server.get("/_cellucid/datasets", &[]).await.json();
    doc["datasets"][0]["id"]
        .as_str()
        .expect("dataset id")
        .to_string()
}

fn assert_cors(r: &Resp, origin: &str, what: &str) {
    assert_eq!(
        r.header("access-control-allow-origin"),
        origin,
        "{what}: Access-Control-Allow-Origin"
    );
    assert!(
        r.vary_has("Origin"),
        "{what}: Vary {:?} lacks Origin",
        r.header("vary")
    );
    assert!(
        r.vary_has("Accept-Encoding"),
        "{what}: Vary {:?} lacks Accept-Encoding",
        r.header("vary")
    );
}

async fn assert_still_serving(server: &TestServer) {
    let r = server.get("/_cellucid/health", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "server stopped answering");
    assert_eq!(r.json()["status"], "ok");
    let r = server.get_viewer("/points_2d.bin").await;
    assert_eq!(r.status, StatusCode::OK, "server stopped serving artifacts");
    assert_eq!(
        r.decoded().unwrap(),
        golden_body("pbmc68k", "points_2d.bin")
    );
}

#[tokio::test]
async fn head_has_get_headers_and_no_body() {
    let server = pbmc().await;
    let cases: [(&str, &[(&str, &str)]); 6] = [
        ("/points_3d.bin", &[GZIP, FROM_VIEWER]),
        ("/points_3d.bin", &[FROM_VIEWER]),
        ("/obs_manifest.json", &[GZIP, FROM_VIEWER]),
        ("/var/HES4.values.f32", &[GZIP]),
        ("/vectors/velocity_umap_2d.bin.gz", &[GZIP, FROM_VIEWER]),
        ("/obs/__no_such_field__.values.f32", &[FROM_VIEWER]),
    ];
    for (path, headers) in cases {
        let get = server.get(path, headers).await;
        let head = server.request(Method::HEAD, path, headers).await;
        let what = format!("HEAD {path} {headers:?}");
        assert_eq!(head.status, get.status, "{what}: status");
        assert!(
            head.body.is_empty(),
            "{what}: body of {} bytes",
            head.body.len()
        );
        assert_eq!(
            head.header("content-length"),
            get.body.len().to_string(),
            "{what}: Content-Length must be the full body's"
        );
        assert_eq!(
            get.header("content-length"),
            get.body.len().to_string(),
            "{what}"
        );
        for name in [
            "content-type",
            "content-encoding",
            "etag",
            "access-control-allow-origin",
            "vary",
            "access-control-allow-methods",
            "access-control-expose-headers",
            "cache-control",
        ] {
            assert_eq!(head.header(name), get.header(name), "{what}: header {name}");
        }
    }
    // HEAD of a gzip-encoded body announces the compressed length.
    let head = server
        .request(Method::HEAD, "/points_3d.bin", &[GZIP])
        .await;
    assert_eq!(head.header("content-encoding"), "gzip");
    let get = server.get("/points_3d.bin", &[GZIP]).await;
    assert!(
        get.body.len() < 8400,
        "gzip body should be smaller than 8400 bytes"
    );
    assert_eq!(head.header("content-length"), get.body.len().to_string());
    server.stop().await;
}

#[tokio::test]
async fn options_preflight_and_private_network() {
    let server = pbmc().await;
    let r = server
        .request(
            Method::OPTIONS,
            "/points_3d.bin",
            &[FROM_VIEWER, ("access-control-request-method", "GET")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert_cors(&r, ORIGIN, "OPTIONS");
    let methods = r.header("access-control-allow-methods");
    for m in ["GET", "HEAD", "OPTIONS"] {
        assert!(methods.contains(m), "Allow-Methods {methods:?} lacks {m}");
    }
    assert!(r.has("access-control-allow-headers"));
    assert!(!r.has("access-control-allow-private-network"));
    assert!(!r.has("access-control-allow-credentials"));

    let r = server
        .request(
            Method::OPTIONS,
            "/var/HES4.values.f32",
            &[
                ("origin", "http://localhost:5173"),
                ("access-control-request-method", "GET"),
                ("access-control-request-private-network", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_cors(&r, "http://localhost:5173", "OPTIONS private network");
    assert_eq!(r.header("access-control-allow-private-network"), "true");

    // OPTIONS on a route that does not exist is still a successful preflight.
    let r = server
        .request(Method::OPTIONS, "/nope", &[FROM_VIEWER])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_cors(&r, ORIGIN, "OPTIONS unknown route");
    server.stop().await;
}

#[tokio::test]
async fn etags_and_if_none_match() {
    let server = pbmc().await;
    let path = "/obs/bulk_labels.codes.u8";
    let gz = server.get(path, &[GZIP, FROM_VIEWER]).await;
    let plain = server.get(path, &[FROM_VIEWER]).await;
    assert_eq!(gz.status, StatusCode::OK);
    assert_eq!(plain.status, StatusCode::OK);
    let (etag_gz, etag_plain) = (
        gz.header("etag").to_string(),
        plain.header("etag").to_string(),
    );
    assert!(
        etag_gz.starts_with('"') && etag_gz.ends_with('"'),
        "strong ETag: {etag_gz}"
    );
    assert!(!etag_plain.is_empty(), "identity response has an ETag");
    assert_ne!(
        etag_gz, etag_plain,
        "gzip and identity representations need different ETags"
    );
    // Stable across requests.
    assert_eq!(server.get(path, &[GZIP]).await.header("etag"), etag_gz);

    let r = server
        .get(path, &[GZIP, FROM_VIEWER, ("if-none-match", &etag_gz)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), etag_gz);
    assert_cors(&r, ORIGIN, "304");

    let r = server.get(path, &[("if-none-match", &etag_plain)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);

    let list = format!("\"nope\", {etag_gz}");
    let r = server.get(path, &[GZIP, ("if-none-match", &list)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "ETag in a list");

    // The gzip ETag does not validate the identity representation (and vice versa).
    let r = server.get(path, &[("if-none-match", &etag_gz)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, plain.body);
    let r = server
        .get(path, &[GZIP, ("if-none-match", &etag_plain)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.decoded().unwrap(), plain.body.to_vec());

    let r = server
        .get(path, &[("if-none-match", "\"something-else\"")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn gzip_is_negotiated() {
    let server = pbmc().await;
    let golden = golden_body("pbmc68k", "points_3d.bin");
    let path = "/points_3d.bin";

    let r = server.get(path, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.has("content-encoding"), "no Accept-Encoding → identity");
    assert_eq!(r.body.to_vec(), golden);
    assert_eq!(r.content_type(), "application/octet-stream");

    for refuse in ["gzip;q=0", "identity", "br", "*;q=0", "gzip;q=0, *"] {
        let r = server.get(path, &[("accept-encoding", refuse)]).await;
        assert!(!r.has("content-encoding"), "{refuse:?} must get identity");
        assert_eq!(r.body.to_vec(), golden, "{refuse:?}");
    }
    for accept in [
        "gzip",
        "gzip, deflate, br",
        "br;q=1.0, gzip;q=0.8",
        "*",
        "GZIP",
    ] {
        let r = server.get(path, &[("accept-encoding", accept)]).await;
        assert_eq!(
            r.header("content-encoding"),
            "gzip",
            "{accept:?} must get gzip"
        );
        assert_eq!(gunzip(&r.body).unwrap(), golden, "{accept:?}");
        assert_eq!(r.header("content-length"), r.body.len().to_string());
    }
    // JSON documents: identity unless gzip is accepted; either way the same document.
    let plain = server.get("/obs_manifest.json", &[]).await;
    assert!(!plain.has("content-encoding"));
    assert_eq!(plain.content_type(), "application/json");
    let gz = server.get("/obs_manifest.json", &[GZIP]).await;
    assert_eq!(gz.content_type(), "application/json");
    assert_eq!(gz.json(), plain.json());
    // Control routes are small and never encoded.
    let r = server.get("/_cellucid/health", &[GZIP]).await;
    assert!(!r.has("content-encoding"));
    server.stop().await;
}

#[tokio::test]
async fn cors_echoes_only_allowed_origins() {
    let server = pbmc().await;
    for origin in [
        ORIGIN,
        "http://localhost:5173",
        "http://127.0.0.1:8080",
        "https://beta.cellucid.com",
    ] {
        for path in ["/points_3d.bin", "/_cellucid/health", "/no/such/route"] {
            let r = server.get(path, &[("origin", origin)]).await;
            assert_cors(&r, origin, &format!("GET {path} from {origin}"));
        }
    }
    for origin in [
        "https://evil.example",
        "http://beta.cellucid.com",
        "https://cellucid.com.evil.org",
        "null",
    ] {
        for path in ["/points_3d.bin", "/no/such/route"] {
            let r = server.get(path, &[("origin", origin)]).await;
            assert!(
                !r.has("access-control-allow-origin"),
                "GET {path} from {origin}: ACAO {:?}",
                r.header("access-control-allow-origin")
            );
            assert!(r.vary_has("Origin"), "Vary: Origin even when not echoed");
        }
    }
    let r = server.get("/points_3d.bin", &[]).await;
    assert!(!r.has("access-control-allow-origin"), "no Origin → no ACAO");
    server.stop().await;
}

#[tokio::test]
async fn dataset_id_prefix_and_leading_slashes() {
    let server = pbmc().await;
    let id = dataset_id(&server).await;
    assert_eq!(id, "pbmc68k.v3.zarr");
    for route in [
        "points_3d.bin",
        "obs/louvain.codes.u8",
        "var/HES4.values.f32",
    ] {
        let plain = server.get(&quote_route(route), &[GZIP]).await;
        let prefixed = server
            .get(&format!("/{id}{}", quote_route(route)), &[GZIP])
            .await;
        let slashes = server.get(&format!("//{}", route), &[GZIP]).await;
        assert_eq!(plain.status, StatusCode::OK, "{route}");
        assert_eq!(prefixed.status, StatusCode::OK, "/{id}/{route}");
        assert_eq!(slashes.status, StatusCode::OK, "//{route}");
        assert_eq!(prefixed.decoded().unwrap(), plain.decoded().unwrap());
        assert_eq!(slashes.decoded().unwrap(), plain.decoded().unwrap());
        assert_eq!(plain.decoded().unwrap(), golden_body("pbmc68k", route));
    }
    let r = server
        .get(&format!("/{id}/dataset_identity.json"), &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["stats"]["n_cells"], 700);
    // The query string is ignored.
    let r = server.get("/points_3d.bin?v=1&x=%zz", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.to_vec(), golden_body("pbmc68k", "points_3d.bin"));
    server.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_404_with_cors() {
    let server = pbmc().await;
    for path in [
        "/",
        "/index.html",
        "/nonexistent_route.json",
        "/points_4d.bin",
        "/points_1d.bin",
        "/points_3d.bin.gz",
        "/obs/__no_such_field__.values.f32",
        "/obs/louvain.bogus.u8",
        "/obs/louvain",
        "/var/__no_such_gene__.values.f32",
        "/var/HES4.codes.u8",
        "/vectors/nope_2d.bin",
        "/vectors/velocity_umap_3d.bin",
        "/connectivity/edges.bogus.bin",
        "/_cellucid/nope",
        "/_cellucid/events",
        "/other-dataset/points_3d.bin",
    ] {
        let r = server.get(path, &[FROM_VIEWER, GZIP]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "GET {path}");
        assert_eq!(r.content_type(), "text/plain", "GET {path}");
        assert!(
            !r.has("content-encoding"),
            "GET {path}: error bodies are not gzipped"
        );
        assert_cors(&r, ORIGIN, &format!("GET {path}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn other_methods_are_405() {
    let server = pbmc().await;
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        for path in ["/points_3d.bin", "/_cellucid/events", "/nope"] {
            let r = server.request(method.clone(), path, &[FROM_VIEWER]).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let allow = r.header("allow");
            assert!(
                allow.contains("GET") && allow.contains("HEAD"),
                "{method} {path}: Allow {allow:?}"
            );
            assert_cors(&r, ORIGIN, &format!("{method} {path}"));
        }
    }
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn hostile_paths_are_client_errors() {
    let server = pbmc().await;
    let long = format!("/var/{}.values.f32", "a".repeat(8192));
    let cases: Vec<(String, Option<u16>)> = vec![
        ("/..".into(), None),
        ("/../../etc/passwd".into(), None),
        ("/%2e%2e/%2e%2e/etc/passwd".into(), None),
        ("/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd".into(), None),
        ("/obs/..%2f..%2fetc.values.f32".into(), None),
        ("/obs/../../../etc/passwd.values.f32".into(), None),
        ("/var/..%2f..%2f..%2fetc%2fpasswd.values.f32".into(), None),
        ("/var/%2e%2e.values.f32".into(), None),
        ("/var/%2e.values.f32".into(), None),
        ("/var/%2F.values.f32".into(), None),
        ("/obs/%2e%2e.codes.u8".into(), None),
        ("/vectors/..%2f..%2fetc_2d.bin".into(), None),
        ("/connectivity/..%2f..%2f/edges.src.bin.gz.gz".into(), None),
        ("/%00".into(), None),
        ("/obs/%00.values.f32".into(), None),
        ("/var/a%00b.values.f32".into(), None),
        ("/points_%00d.bin".into(), None),
        ("/%5c..%5c..%5cwindows%5cwin.ini".into(), None),
        ("/file:%2F%2F%2Fetc%2Fpasswd".into(), None),
        ("/s3:%2F%2Fbucket%2Fkey".into(), None),
        (long, Some(414)),
        ("/%zz".into(), Some(400)),
        ("/var/%zz.values.f32".into(), Some(400)),
        ("/var/%4.values.f32".into(), Some(400)),
        ("/%".into(), Some(400)),
        ("/%ff".into(), Some(400)),
        ("/var/%ff%fe.values.f32".into(), Some(400)),
        ("/var/%c3.values.f32".into(), Some(400)),
    ];
    for (path, expected) in &cases {
        let shown: String = path.chars().take(80).collect();
        for method in [Method::GET, Method::HEAD] {
            let r = server
                .try_request(method.clone(), path, &[FROM_VIEWER, GZIP])
                .await
                .unwrap_or_else(|e| panic!("{method} {shown}: no answer ({e})"));
            let status = r.status.as_u16();
            assert!(
                (400..500).contains(&status),
                "{method} {shown}: status {status}, expected a 4xx"
            );
            if let Some(expected) = expected {
                assert_eq!(status, *expected, "{method} {shown}");
            }
            assert_cors(&r, ORIGIN, &format!("{method} {shown}"));
        }
    }
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_raw_requests_never_break_the_server() {
    let server = pbmc().await;
    let long_header = format!(
        "GET /points_3d.bin HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let cases: Vec<Vec<u8>> = vec![
        // Raw (not percent-encoded) non-ASCII and control bytes in the request target.
        b"GET /var/\xff\xfe.values.f32 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /var/\xe5\x90\x8d.values.f32 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /obs/\x01.values.f32 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        // Not a path at all.
        b"GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET http://elsewhere.example/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            .to_vec(),
        // Broken framing.
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET /points_3d.bin HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /points_3d.bin HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n"
            .to_vec(),
        long_header.into_bytes(),
    ];
    for request in &cases {
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        if let Some(status) = raw_exchange(server.addr, request).await {
            assert!(
                (200..500).contains(&status),
                "{shown:?}: status {status}, never a 5xx"
            );
        }
    }
    // Absolute-form targets are routed by their path.
    let status = raw_exchange(
        server.addr,
        b"GET http://127.0.0.1/_cellucid/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, Some(200));
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn raw_gz_vectors_are_gzip_files_without_content_encoding() {
    let server = pbmc().await;
    let plain = server.get("/vectors/velocity_umap_2d.bin", &[GZIP]).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.header("content-encoding"), "gzip");
    let plain_body = plain.decoded().unwrap();
    assert_eq!(
        plain_body,
        golden_body("pbmc68k", "vectors/velocity_umap_2d.bin")
    );

    for headers in [&[GZIP, FROM_VIEWER][..], &[FROM_VIEWER][..], &[][..]] {
        let r = server
            .get("/vectors/velocity_umap_2d.bin.gz", headers)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}");
        assert!(
            !r.has("content-encoding"),
            "{headers:?}: a .gz file is not transport-encoded"
        );
        assert_eq!(r.content_type(), "application/octet-stream");
        assert_eq!(&r.body[..2], &[0x1f, 0x8b], "{headers:?}: gzip magic");
        assert_eq!(gunzip(&r.body).unwrap(), plain_body, "{headers:?}");
        assert_eq!(r.header("content-length"), r.body.len().to_string());
        assert_ne!(
            r.header("etag"),
            plain.header("etag"),
            "raw .gz has its own ETag"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn catalogue_of_two_atlases() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &fixture_store("pbmc68k", "v3"),
        &dir.path().join("pbmc68k.v3.zarr"),
    );
    copy_dir(
        &fixture_store("sparse", "v2"),
        &dir.path().join("sparse.v2.zarr"),
    );
    // Hidden entries are not atlases.
    std::fs::create_dir_all(dir.path().join(".cache")).unwrap();
    let server = TestServer::open(dir.path().to_str().unwrap()).await;
    assert!(server.app.catalog().is_multi());

    let doc = server.get_viewer("/_cellucid/datasets").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_cors(&doc, ORIGIN, "datasets");
    let doc = doc.json();
    let list = doc["datasets"].as_array().expect("datasets list");
    assert_eq!(list.len(), 2, "{doc}");
    let expected = [("pbmc68k", 700, 765), ("sparse", 360, 100)];
    for (entry, (atlas, n_cells, n_genes)) in list.iter().zip(expected) {
        let id = entry["id"].as_str().expect("id");
        assert!(id.starts_with(atlas), "{entry}");
        assert_eq!(entry["path"], format!("/{id}/"), "{entry}");
        assert!(entry["name"].is_string(), "{entry}");

        let r = server
            .get_viewer(&format!("/{id}/dataset_identity.json"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "/{id}/dataset_identity.json");
        let identity = r.json();
        assert_eq!(identity["id"], id);
        assert_eq!(identity["stats"]["n_cells"], n_cells);
        assert_eq!(identity["stats"]["n_genes"], n_genes);

        for route in ["points_2d.bin", "obs_manifest.json"] {
            let r = server.get_viewer(&format!("/{id}/{route}")).await;
            assert_eq!(r.status, StatusCode::OK, "/{id}/{route}");
            let golden = golden_body(atlas, route);
            if route.ends_with(".json") {
                let a: serde_json::Value = serde_json::from_slice(&golden).unwrap();
                assert!(common::json_close(&a, &r.json(), 1e-5), "/{id}/{route}");
            } else {
                assert_eq!(r.decoded().unwrap(), golden, "/{id}/{route}");
            }
        }
    }
    // Control routes answer for the catalogue; un-prefixed artifacts and unknown ids do not.
    let health = server.get_viewer("/_cellucid/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        server.get_viewer("/points_2d.bin").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get_viewer("/dataset_identity.json").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server
            .get_viewer("/no-such-atlas/dataset_identity.json")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_requests() {
    let server = pbmc().await;
    let routes = [
        "points_3d.bin",
        "points_2d.bin",
        "obs/bulk_labels.codes.u8",
        "obs/bulk_labels.outliers.f32",
        "obs/n_counts.values.f32",
        "obs/louvain.codes.u8",
        "var/HES4.values.f32",
        "var/CD2.values.f32",
        "connectivity/edges.src.bin",
        "connectivity/edges.dst.bin",
        "vectors/velocity_umap_2d.bin",
        "obs_manifest.json",
        "var_manifest.json",
        "connectivity_manifest.json",
        "dataset_identity.json",
        "_cellucid/health",
    ];
    let requests = (0..64).map(|i| {
        let route = routes[i % routes.len()];
        let server = &server;
        async move {
            let gzip = i % 3 != 0;
            let headers: &[(&str, &str)] = if gzip {
                &[GZIP, FROM_VIEWER]
            } else {
                &[FROM_VIEWER]
            };
            (
                route,
                server
                    .try_request(Method::GET, &quote_route(route), headers)
                    .await,
            )
        }
    });
    let results = futures::future::join_all(requests).await;
    let mut failures = Vec::new();
    for (route, result) in results {
        match result {
            Err(e) => failures.push(format!("{route}: {e}")),
            Ok(r) if r.status != StatusCode::OK => {
                failures.push(format!("{route}: status {}", r.status))
            }
            Ok(r) => {
                let body = r.decoded().unwrap();
                let golden = golden_body("pbmc68k", route);
                let diff = common::compare_body(route, &golden, &body);
                if let Some(diff) = diff {
                    failures.push(format!("{route}: {diff}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.stop().await;
}

#[tokio::test]
async fn embedded_demo_atlas_is_served() {
    let location = cellucid_edge::demo::demo_location()
        .await
        .expect("demo location");
    let catalog = Catalog::open(
        location,
        &DatasetOptions::default(),
        Arc::new(ReadMetrics::default()),
    )
    .await
    .expect("demo catalogue");
    let server = TestServer::start(catalog).await;
    let id = dataset_id(&server).await;
    assert_eq!(id, "pbmc68k_reduced");
    for route in [
        "points_3d.bin",
        "obs/bulk_labels.codes.u8",
        "var/HES4.values.f32",
    ] {
        for path in [quote_route(route), format!("/{id}{}", quote_route(route))] {
            let r = server.get_viewer(&path).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert_eq!(
                r.decoded().unwrap(),
                golden_body("pbmc68k", route),
                "{path}"
            );
        }
    }
    server.stop().await;
}

/// Control documents are `Cache-Control: no-cache` (revalidated, not forbidden to store:
/// Chromium reports streamed `no-store` bodies read by the viewer as `net::ERR_ABORTED`), on
/// both protocols and every transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_documents_are_no_cache_everywhere() {
    use cellucid_edge::service::{Config, Service};
    use common::transport::{ALL, connect};
    let config = Config::default();
    let catalog =
        common::open_catalog(fixture_store("pbmc68k", "v3").to_str().expect("utf-8")).await;
    let service = Arc::new(Service::new(catalog, config.clone()).expect("service"));
    for via in ALL {
        let t = connect(via, service.clone(), &config).await;
        for path in [
            "/_cellucid/health",
            "/_cellucid/info",
            "/_cellucid/datasets",
            "/v0.9/_cellucid/health",
            "/v0.9/_cellucid/datasets",
        ] {
            let r = t.get(path, &[FROM_VIEWER]).await;
            assert_eq!(r.status, StatusCode::OK, "{via:?} {path}");
            assert_eq!(r.header("cache-control"), "no-cache", "{via:?} {path}");
        }
    }
}

/// One gzip policy for ETags: a strong ETag names exactly the bytes sent. An artifact served
/// from a cache prefix whose gzip stream was written with other compressor settings gets
/// another tag than the same artifact compressed here, and the same bytes always get the same
/// tag (also across processes).
#[tokio::test]
async fn a_strong_etag_always_names_the_same_bytes() {
    use std::io::Write;

    use cellucid_edge::cache::ArtifactCache;
    use cellucid_edge::service::Config;
    let store = fixture_store("pbmc68k", "v3");
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let cache = ArtifactCache::new(
        &common::location(cache_dir.path().to_str().unwrap()),
        Arc::new(ReadMetrics::default()),
    );
    let config = Config {
        cache: Some(cache.clone()),
        ..Config::default()
    };
    let route = "/obs_manifest.json";
    let serve = || async {
        TestServer::start_with(
            common::open_catalog(store.to_str().unwrap()).await,
            config.clone(),
        )
        .await
    };
    // Computed here: written to the cache prefix and served.
    let first = serve().await;
    let computed = first.get(route, &[GZIP]).await;
    let id = first.app.catalog().first().id().to_string();
    let fingerprint = first.app.fingerprint(&id).expect("fingerprint");
    first.stop().await;
    // A fresh process reads the same cache object: same bytes, same tag.
    let second = serve().await;
    let cached = second.get(route, &[GZIP]).await;
    assert_eq!(cached.body, computed.body);
    assert_eq!(cached.header("etag"), computed.header("etag"));
    second.stop().await;
    // The cache object rewritten by another compressor setting (same inflated bytes).
    let object = cache_dir
        .path()
        .join(&fingerprint)
        .join("obs_manifest.json");
    let identity = gunzip(&std::fs::read(&object).expect("cached object")).expect("gzip");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    encoder.write_all(&identity).unwrap();
    let regzipped = encoder.finish().unwrap();
    assert_ne!(regzipped, computed.body.to_vec(), "another gzip stream");
    std::fs::write(&object, &regzipped).unwrap();
    let third = serve().await;
    let other = third.get(route, &[GZIP]).await;
    assert_eq!(&other.body[..], &regzipped[..]);
    assert_ne!(
        other.header("etag"),
        computed.header("etag"),
        "different bytes under one strong ETag"
    );
    // The identity representation is the same bytes, so the same tag.
    let plain_then = third.get(route, &[]).await;
    assert_eq!(plain_then.body.to_vec(), identity);
    third.stop().await;
}
