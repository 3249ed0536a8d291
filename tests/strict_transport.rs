//! The strict profile behind the same front door as the seed: catalogues of several atlases
//! (one clean path per dataset, §3), share tokens (the `/s/<token>/` gate and dataset-bound
//! scope hold under `/strict` too), HEAD and OPTIONS, and the Lambda's body limit.

mod common;

use std::time::{Duration, SystemTime};

use cellucid_edge::lambda::LambdaHandler;
use cellucid_edge::protocol::strict::naming::is_clean_id;
use cellucid_edge::service::{Config, Service};
use cellucid_edge::share::{self, ShareSecret};
use common::{TestServer, copy_dir, fixture_store, open_catalog};
use http::Method;

const SECRET: &str = "strict-secret-0123456789abcdef-0123456789";

fn secret() -> ShareSecret {
    ShareSecret::new(SECRET.as_bytes().to_vec()).expect("secret")
}

/// A directory holding two atlases, one of them under a name that is not a clean id.
fn two_atlases() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &fixture_store("pbmc68k", "v3"),
        &dir.path().join("pbmc68k.zarr"),
    );
    copy_dir(
        &fixture_store("sparse", "v2"),
        &dir.path().join("-sparse.zarr"),
    );
    dir
}

/// §3: several atlases get one clean path each; identity id and name equal the catalogue's;
/// every dataset is served at its path (and not at the seed's unclean one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_catalogue_lists_one_clean_path_per_dataset() {
    let dir = two_atlases();
    let server = TestServer::open(dir.path().to_str().expect("utf-8")).await;
    let list = server.get_viewer("/strict/_cellucid/datasets").await.json();
    let entries = list["datasets"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2, "{list}");
    for entry in &entries {
        let id = entry["id"].as_str().expect("id");
        assert!(is_clean_id(id), "{id}");
        assert_eq!(entry["path"], format!("/{id}/"));
        let identity = server
            .get_viewer(&format!("/strict/{id}/dataset_identity.json"))
            .await;
        assert_eq!(identity.status, 200, "{id}");
        let identity = identity.json();
        assert_eq!(identity["id"], entry["id"]);
        assert_eq!(identity["name"], entry["name"]);
        let points = server
            .get_viewer(&format!("/strict/{id}/points_2d.bin"))
            .await;
        assert_eq!(points.status, 200, "{id}: points");
    }
    assert!(
        entries.iter().any(|e| e["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("ds-sparse.zarr-"))),
        "{list}"
    );
    // The seed's own (unclean) path is not a strict path.
    let seed_path = server
        .get_viewer("/strict/-sparse.zarr/dataset_identity.json")
        .await;
    assert_eq!(seed_path.status, 404);
    server.stop().await;
}

fn token(dataset: Option<&str>) -> String {
    share::issue_for(
        &secret(),
        SystemTime::now(),
        Duration::from_secs(3600),
        dataset,
    )
}

/// Share tokens gate `/strict` like the root: nothing without a token, everything with one,
/// only its dataset with a dataset-bound one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_tokens_gate_the_strict_profile() {
    let dir = two_atlases();
    let config = Config {
        share: Some(secret()),
        ..Config::default()
    };
    let server =
        TestServer::start_with(open_catalog(dir.path().to_str().unwrap()).await, config).await;
    for path in [
        "/strict/_cellucid/health",
        "/strict/_cellucid/datasets",
        "/strict/pbmc68k.zarr/dataset_identity.json",
    ] {
        assert_eq!(server.get_viewer(path).await.status, 403, "{path}");
    }
    let open = token(None);
    let all = server
        .get_viewer(&format!("/s/{open}/strict/_cellucid/datasets"))
        .await
        .json();
    assert_eq!(all["datasets"].as_array().map(Vec::len), Some(2));
    let bound = token(Some("pbmc68k.zarr"));
    let listed = server
        .get_viewer(&format!("/s/{bound}/strict/_cellucid/datasets"))
        .await
        .json();
    let ids: Vec<&str> = listed["datasets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, ["pbmc68k.zarr"]);
    let own = server
        .get_viewer(&format!("/s/{bound}/strict/pbmc68k.zarr/var/0.values.f32"))
        .await;
    assert_eq!(own.status, 200);
    let other: Vec<&str> = all["datasets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str())
        .filter(|id| *id != "pbmc68k.zarr")
        .collect();
    let other = other.first().copied().unwrap_or_default();
    let refused = server
        .get_viewer(&format!("/s/{bound}/strict/{other}/dataset_identity.json"))
        .await;
    assert_eq!(refused.status, 403, "{other}");
    server.stop().await;
}

/// HEAD carries the GET's headers without a body; OPTIONS is a 204 preflight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_options_under_strict() {
    let server = TestServer::open(fixture_store("pbmc68k", "v3").to_str().unwrap()).await;
    let get = server.get("/strict/var/3.values.f32", &[]).await;
    let head = server
        .request(Method::HEAD, "/strict/var/3.values.f32", &[])
        .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(head.header("etag"), get.header("etag"));
    let options = server
        .request(Method::OPTIONS, "/strict/dataset_identity.json", &[])
        .await;
    assert_eq!(options.status, 204);
    let post = server
        .request(Method::POST, "/strict/dataset_identity.json", &[])
        .await;
    assert_eq!(post.status, 405);
    server.stop().await;
}

/// Through the Lambda handler a strict body above the buffered limit gets the same clear 413
/// as the root's (no cache prefix to redirect to), never a broken envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_body_limit_applies_to_strict_artifacts() {
    let catalog = open_catalog(fixture_store("pbmc68k", "v3").to_str().unwrap()).await;
    let config = Config {
        max_body_bytes: 1000,
        ..Config::default()
    };
    let service = Service::new(catalog, config.clone()).expect("service mounts");
    let handler = LambdaHandler::with_service(config, std::sync::Arc::new(service));
    let event = |path: &str| {
        serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "x.lambda-url.us-east-1.on.aws"},
            "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7", "userAgent": "t"}, "stage": "$default",
                "accountId": "1", "apiId": "x", "domainName": "x.lambda-url.us-east-1.on.aws",
                "domainPrefix": "x", "requestId": "r", "routeKey": "$default",
                "time": "01/Nov/2026:12:00:00 +0000", "timeEpoch": 1u64},
            "isBase64Encoded": false
        })
    };
    for (path, status) in [
        ("/strict/points_3d.bin", 413),
        ("/points_3d.bin", 413),
        ("/strict/_cellucid/health", 200),
    ] {
        let envelope = handler.handle_event(event(path)).await.expect("handled");
        assert_eq!(envelope["statusCode"], status, "{path}: {envelope}");
    }
}
