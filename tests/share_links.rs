//! Private atlases: capability share links (`/s/<token>/…`). With a secret configured the
//! server answers only under a valid, unexpired, correctly signed token (and, for a
//! dataset-bound token, only that dataset); everything else is a 403 that carries CORS headers
//! and no data. Checked over the real server (hyper), the Lambda adapter and the `share` CLI.

mod common;

use std::time::{Duration, SystemTime};

use cellucid_edge::lambda::LambdaHandler;
use cellucid_edge::service::Config;
use cellucid_edge::share::{self, ShareClaims, ShareSecret};
use common::{ORIGIN, Resp, TestServer, copy_dir, fixture_store, golden_body, open_catalog};
use http::{Method, StatusCode};

const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
const GZIP: (&str, &str) = ("accept-encoding", "gzip");
const FROM_VIEWER: (&str, &str) = ("origin", ORIGIN);

fn secret() -> ShareSecret {
    ShareSecret::new(SECRET.as_bytes().to_vec()).expect("secret")
}

fn token(valid_for: Duration, dataset: Option<&str>) -> String {
    share::issue_for(&secret(), SystemTime::now(), valid_for, dataset)
}

const WEEK: Duration = Duration::from_secs(7 * 86400);

async fn private_server(url: &str) -> TestServer {
    let config = Config {
        share: Some(secret()),
        ..Config::default()
    };
    TestServer::start_with(open_catalog(url).await, config).await
}

fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        ORIGIN,
        "{what}: a 403 carries CORS so the viewer can show it"
    );
    assert_eq!(r.header("cache-control"), "no-store", "{what}");
    assert!(
        String::from_utf8_lossy(&r.body).starts_with("Forbidden"),
        "{what}: body {:?}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test]
async fn valid_tokens_open_the_atlas() {
    let server = private_server(fixture_store("pbmc68k", "v3").to_str().unwrap()).await;
    for tok in [token(WEEK, None), token(WEEK, Some("pbmc68k.v3.zarr"))] {
        for route in [
            "points_3d.bin",
            "obs/louvain.codes.u8",
            "var/HES4.values.f32",
        ] {
            for path in [
                format!("/s/{tok}/{route}"),
                format!("/s/{tok}/pbmc68k.v3.zarr/{route}"),
                format!("/s/{tok}//{route}?v=1"),
            ] {
                let r = server.get(&path, &[GZIP, FROM_VIEWER]).await;
                assert_eq!(r.status, StatusCode::OK, "{path}");
                assert_eq!(
                    r.decoded().unwrap(),
                    golden_body("pbmc68k", route),
                    "{path}"
                );
            }
        }
        let r = server
            .get(&format!("/s/{tok}/_cellucid/health"), &[FROM_VIEWER])
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["status"], "ok");
        let r = server
            .request(Method::HEAD, &format!("/s/{tok}/points_2d.bin"), &[GZIP])
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.is_empty());
        // Unknown routes below a valid token are ordinary 404s.
        let r = server.get(&format!("/s/{tok}/nope.bin"), &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    server.stop().await;
}

#[tokio::test]
async fn everything_else_is_403() {
    let server = private_server(fixture_store("pbmc68k", "v3").to_str().unwrap()).await;
    let good = token(WEEK, None);
    let (payload, tag) = good.split_once('.').unwrap();
    // Flip the last character of the tag: same length, wrong MAC.
    let mut flipped = tag.to_string();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    let other_secret =
        ShareSecret::new(b"a different secret of sufficient length".to_vec()).unwrap();
    let forged_claims = share::issue(
        &other_secret,
        &ShareClaims {
            expires: u64::MAX,
            dataset: None,
        },
    );
    let expired = share::issue_for(
        &secret(),
        SystemTime::now() - Duration::from_secs(2 * 86400),
        Duration::from_secs(86400),
        None,
    );
    let other_dataset = token(WEEK, Some("some-other-atlas"));
    let cases: Vec<(String, &str)> = vec![
        ("/points_3d.bin".into(), "no token"),
        ("/_cellucid/health".into(), "no token, control route"),
        ("/".into(), "root"),
        ("/s/".into(), "empty token"),
        ("/s//points_3d.bin".into(), "empty token segment"),
        ("/s".into(), "bare /s"),
        (format!("/S/{good}/points_3d.bin"), "upper-case prefix"),
        (
            format!("/%73/{good}/points_3d.bin"),
            "percent-encoded prefix",
        ),
        (
            format!("//s/{good}/points_3d.bin"),
            "double slash before prefix",
        ),
        (format!("/x/s/{good}/points_3d.bin"), "prefix not first"),
        (
            format!("/s/{payload}.{flipped}/points_3d.bin"),
            "tampered tag",
        ),
        (format!("/s/{payload}/points_3d.bin"), "no tag"),
        (format!("/s/{forged_claims}/points_3d.bin"), "other secret"),
        (format!("/s/{expired}/points_3d.bin"), "expired"),
        (format!("/s/{other_dataset}/points_3d.bin"), "other dataset"),
        (
            format!("/s/{other_dataset}/_cellucid/health"),
            "other dataset, control",
        ),
        ("/s/not-a-token/points_3d.bin".into(), "garbage token"),
        (
            format!("/s/{}/points_3d.bin", "A".repeat(5000)),
            "huge token",
        ),
        ("/s/%zz/points_3d.bin".into(), "bad percent-encoding"),
    ];
    for (path, what) in &cases {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::POST] {
            let r = server
                .request(method.clone(), path, &[GZIP, FROM_VIEWER])
                .await;
            let what = format!("{method} {what}");
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}");
            if method == Method::GET {
                assert_refused(&r, &what);
            }
        }
    }
    // The good token still works after all that.
    let r = server
        .get(&format!("/s/{good}/points_3d.bin"), &[FROM_VIEWER])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn dataset_bound_tokens_in_a_catalogue() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &fixture_store("pbmc68k", "v3"),
        &dir.path().join("pbmc68k.v3.zarr"),
    );
    copy_dir(
        &fixture_store("sparse", "v2"),
        &dir.path().join("sparse.v2.zarr"),
    );
    let server = private_server(dir.path().to_str().unwrap()).await;
    let ids: Vec<String> = server
        .app
        .catalog()
        .datasets()
        .iter()
        .map(|d| d.id().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let (a, b) = (&ids[0], &ids[1]);
    let bound = token(WEEK, Some(a));
    let r = server
        .get(&format!("/s/{bound}/{a}/points_2d.bin"), &[FROM_VIEWER])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = server
        .get(&format!("/s/{bound}/{b}/points_2d.bin"), &[FROM_VIEWER])
        .await;
    assert_refused(&r, "token for A used on B");
    let r = server
        .get(
            &format!("/s/{bound}/%2e%2e/{b}/points_2d.bin"),
            &[FROM_VIEWER],
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    // The 0.9 protocol's paths are bound the same way (its own base URL per dataset, and the
    // unprefixed base meaning the first dataset).
    let r = server
        .get(
            &format!("/s/{bound}/v0.9/{a}/_cellucid/health"),
            &[FROM_VIEWER],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "0.9 health of the bound dataset");
    for path in [
        format!("/s/{bound}/v0.9/{b}/_cellucid/health"),
        format!("/s/{bound}/v0.9/{b}/_cellucid/anndata/{b}/zarr/.zattrs"),
    ] {
        let r = server.get(&path, &[FROM_VIEWER]).await;
        // The 0.9 front-end's own headers (its CORS set, `Cache-Control: no-cache` on all).
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "0.9 path of another dataset: {path}"
        );
        assert_eq!(r.header("access-control-allow-origin"), ORIGIN, "{path}");
        assert!(
            String::from_utf8_lossy(&r.body).starts_with("Forbidden"),
            "{path}"
        );
    }
    // The listing shows only the bound dataset.
    let doc = server
        .get(&format!("/s/{bound}/_cellucid/datasets"), &[FROM_VIEWER])
        .await
        .json();
    let list = doc["datasets"].as_array().expect("datasets");
    assert_eq!(list.len(), 1, "{doc}");
    assert_eq!(list[0]["id"], a.as_str());

    // An unbound token opens both and lists both.
    let open = token(WEEK, None);
    for id in [a, b] {
        let r = server
            .get(&format!("/s/{open}/{id}/points_2d.bin"), &[FROM_VIEWER])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{id}");
    }
    let doc = server
        .get(&format!("/s/{open}/_cellucid/datasets"), &[])
        .await
        .json();
    assert_eq!(doc["datasets"].as_array().map(Vec::len), Some(2));
    server.stop().await;
}

fn url_event(raw_path: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {
            "host": "abc.lambda-url.us-east-1.on.aws",
            "origin": ORIGIN,
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc",
            "http": {
                "method": "GET",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "test"
            },
            "requestId": "id",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1793534400000u64
        },
        "isBase64Encoded": false
    })
}

#[tokio::test]
async fn lambda_with_a_secret_requires_tokens() {
    let config = Config::from_lookup(|name| match name {
        "CELLUCID_SHARE_SECRET" => Some(SECRET.to_string()),
        _ => None,
    })
    .expect("config");
    let handler = LambdaHandler::new(config);
    let good = token(WEEK, Some("pbmc68k_reduced"));
    let status = |v: &serde_json::Value| v["statusCode"].as_u64().unwrap_or_default();
    let r = handler
        .handle_event(url_event(&format!("/s/{good}/_cellucid/health")))
        .await
        .expect("envelope");
    assert_eq!(status(&r), 200, "{r}");
    let r = handler
        .handle_event(url_event(&format!("/s/{good}/points_3d.bin")))
        .await
        .expect("envelope");
    assert_eq!(status(&r), 200);
    let expired = share::issue_for(
        &secret(),
        SystemTime::now() - Duration::from_secs(3600),
        Duration::from_secs(60),
        None,
    );
    for path in [
        "/points_3d.bin".to_string(),
        "/_cellucid/health".to_string(),
        format!("/s/{expired}/points_3d.bin"),
        format!("/s/{}/points_3d.bin", token(WEEK, Some("elsewhere"))),
    ] {
        let r = handler
            .handle_event(url_event(&path))
            .await
            .expect("envelope");
        assert_eq!(status(&r), 403, "{path}: {r}");
        assert_eq!(
            r["headers"]["access-control-allow-origin"], ORIGIN,
            "{path}: {r}"
        );
    }
    // A too-short secret never serves unprotected: the configuration is refused (the function
    // stops at init).
    let weak = Config::from_lookup(|name| match name {
        "CELLUCID_SHARE_SECRET" => Some("short".to_string()),
        _ => None,
    });
    let error = weak.expect_err("a weak secret is refused");
    assert!(
        error.to_string().contains("CELLUCID_SHARE_SECRET"),
        "{error}"
    );
}

fn cli() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_cellucid-edge"))
}

#[test]
fn share_command_prints_a_verifiable_link() {
    let out = cli()
        .args([
            "share",
            "--secret-env",
            "CELLUCID_TEST_SHARE_SECRET",
            "--expires",
            "7d",
            "--dataset",
            "pbmc68k_reduced",
            "--base",
            "https://atlas.example.org/",
        ])
        .env("CELLUCID_TEST_SHARE_SECRET", SECRET)
        .output()
        .expect("run cellucid-edge share");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let url = url::Url::parse(&link).expect("a URL");
    assert_eq!(url.host_str(), Some("www.cellucid.com"));
    let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(params["dataset"], "pbmc68k_reduced");
    let remote = &params["remote"];
    let token = remote
        .strip_prefix("https://atlas.example.org/s/")
        .unwrap_or_else(|| panic!("remote {remote}"));
    let claims = share::verify(&secret(), token, SystemTime::now()).expect("valid token");
    assert_eq!(claims.dataset.as_deref(), Some("pbmc68k_reduced"));
    let week = share::unix_seconds(SystemTime::now() + WEEK);
    assert!(claims.expires.abs_diff(week) <= 5, "{claims:?}");
    // The encoded remote is one query value (no raw `/` or `:`).
    assert!(link.contains("remote=https%3A%2F%2Fatlas.example.org%2Fs%2F"));

    for (env, expires, what) in [
        (None, "7d", "secret variable unset"),
        (Some("short"), "7d", "weak secret"),
        (Some(SECRET), "soon", "bad duration"),
    ] {
        let mut cmd = cli();
        cmd.args([
            "share",
            "--secret-env",
            "CELLUCID_TEST_SHARE_SECRET",
            "--expires",
            expires,
        ]);
        match env {
            Some(v) => cmd.env("CELLUCID_TEST_SHARE_SECRET", v),
            None => cmd.env_remove("CELLUCID_TEST_SHARE_SECRET"),
        };
        let out = cmd.output().expect("run");
        assert!(!out.status.success(), "{what}: must fail");
        assert!(out.stdout.is_empty(), "{what}: no link printed");
        assert!(!out.stderr.is_empty(), "{what}: an explanation");
    }
}

/// `serve --share-secret-env` end to end: the real binary refuses untokened requests and
/// serves a link made by `share`.
#[tokio::test]
async fn serve_binary_with_a_secret() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cellucid-edge"))
        .args([
            "serve",
            fixture_store("pbmc68k", "v3").to_str().unwrap(),
            "--port",
            "0",
            "--share-secret-env",
            "CELLUCID_TEST_SHARE_SECRET",
            "--log",
            "warn",
        ])
        .env("CELLUCID_TEST_SHARE_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(url) = line.strip_prefix("local URL:") {
                return url.trim().to_string();
            }
        }
        panic!("serve exited without printing its URL");
    })
    .await
    .expect("serve starts within 60 s");
    let addr = base.trim_start_matches("http://").to_string();
    let get = |path: String| {
        let addr = addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.expect("read");
            String::from_utf8_lossy(&buf).into_owned()
        }
    };
    assert!(
        get("/points_3d.bin".into())
            .await
            .starts_with("HTTP/1.1 403")
    );
    let tok = token(WEEK, None);
    let ok = get(format!("/s/{tok}/_cellucid/health")).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let _ = child.kill().await;

    // A weak secret stops serve before it binds.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cellucid-edge"))
        .args([
            "serve",
            "--port",
            "0",
            "--share-secret-env",
            "CELLUCID_TEST_SHARE_SECRET",
        ])
        .env("CELLUCID_TEST_SHARE_SECRET", "short")
        .output()
        .await
        .expect("run serve");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least"));
}
