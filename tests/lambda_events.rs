//! The Lambda adapter exercised in-process (no AWS): every sample event in `events/` goes
//! through `LambdaHandler::handle_event` — the same envelope conversions as `lambda_http::run`
//! — against the embedded demo atlas, and the response envelopes are checked for status,
//! headers (CORS, Content-Type, Content-Encoding), base64 bodies, and byte-for-byte equality
//! with the reference goldens in `tests/fixtures/golden/pbmc68k` (the demo is the pbmc68k v3
//! fixture store).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use cellucid_edge::lambda::LambdaHandler;
use cellucid_edge::service::{Config, Service};

mod common;

const VIEWER: &str = "https://www.cellucid.com";
const DEMO_ID: &str = "pbmc68k_reduced";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_dir() -> PathBuf {
    root().join("tests/fixtures/golden/pbmc68k")
}

fn golden_meta() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(golden_dir().join("_meta.json")).expect("golden _meta.json");
    serde_json::from_str(&text).expect("golden _meta.json is JSON")
}

fn golden(route: &str) -> Vec<u8> {
    std::fs::read(golden_dir().join(route)).unwrap_or_else(|e| panic!("golden {route}: {e}"))
}

/// One handler per test binary, over the embedded demo (the atlas opens once, like a warm
/// container).
async fn demo_handler() -> &'static LambdaHandler {
    static HANDLER: OnceCell<LambdaHandler> = OnceCell::const_new();
    HANDLER
        .get_or_init(|| async { LambdaHandler::new(Config::default()) })
        .await
}

fn event_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("events"))
        .expect("events/ exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// What a test needs to know about an event.
#[derive(Debug)]
struct Probe {
    method: String,
    /// Route as the App sees it: no stage, no dataset prefix, no leading slash.
    route: String,
    host: String,
    origin: Option<String>,
    gzip: bool,
}

fn lower_headers(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn probe(event: &Value) -> Probe {
    let headers;
    let (method, path) = if event["version"] == "2.0" {
        headers = lower_headers(&event["headers"]);
        let ctx = &event["requestContext"];
        let raw = event["rawPath"].as_str().expect("rawPath");
        let stage = ctx["stage"].as_str().unwrap_or("$default");
        let path = if stage == "$default" {
            raw.to_string()
        } else {
            raw.strip_prefix(&format!("/{stage}"))
                .expect("rawPath carries the stage")
                .to_string()
        };
        (
            ctx["http"]["method"].as_str().expect("method").to_string(),
            path,
        )
    } else {
        headers = lower_headers(&event["headers"]);
        (
            event["httpMethod"]
                .as_str()
                .expect("httpMethod")
                .to_string(),
            event["path"].as_str().expect("path").to_string(),
        )
    };
    let path = percent_encoding::percent_decode_str(&path)
        .decode_utf8()
        .expect("UTF-8 path")
        .into_owned();
    let path = path.trim_start_matches('/');
    let route = path
        .strip_prefix(&format!("{DEMO_ID}/"))
        .unwrap_or(path)
        .to_string();
    Probe {
        method,
        route,
        host: headers.get("host").cloned().unwrap_or_default(),
        origin: headers.get("origin").cloned(),
        gzip: headers
            .get("accept-encoding")
            .is_some_and(|v| v.contains("gzip")),
    }
}

/// A response envelope, normalised across payload formats.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    base64: bool,
    /// Body as sent on the wire (base64 decoded; not yet gunzipped).
    body: Vec<u8>,
}

impl Answer {
    fn from_envelope(envelope: &Value) -> Answer {
        let mut headers = lower_headers(&envelope["headers"]);
        if let Some(multi) = envelope["multiValueHeaders"].as_object() {
            for (k, values) in multi {
                let joined = values
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                headers.insert(k.to_ascii_lowercase(), joined);
            }
        }
        let base64 = envelope["isBase64Encoded"].as_bool().unwrap_or(false);
        let body = match envelope["body"].as_str() {
            None => Vec::new(),
            Some(s) if base64 => BASE64.decode(s).expect("base64 body decodes"),
            Some(s) => s.as_bytes().to_vec(),
        };
        Answer {
            status: envelope["statusCode"].as_u64().expect("statusCode") as u16,
            headers,
            base64,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body after transport decoding.
    fn decoded(&self) -> Vec<u8> {
        if self.header("content-encoding") == Some("gzip") {
            gunzip(&self.body)
        } else {
            self.body.clone()
        }
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip body");
    out
}

async fn invoke(handler: &LambdaHandler, event: Value) -> Answer {
    let envelope = handler.handle_event(event).await.expect("event is handled");
    Answer::from_envelope(&envelope)
}

fn check_cors(name: &str, probe: &Probe, a: &Answer, errors: &mut Vec<String>) {
    let expected = probe.origin.as_deref().filter(|o| *o == VIEWER);
    if a.header("access-control-allow-origin") != expected {
        errors.push(format!(
            "{name}: Access-Control-Allow-Origin {:?}, expected {expected:?}",
            a.header("access-control-allow-origin")
        ));
    }
    if a.header("access-control-allow-methods") != Some("GET, HEAD, OPTIONS") {
        errors.push(format!("{name}: Access-Control-Allow-Methods missing"));
    }
    if !a.header("vary").is_some_and(|v| v.contains("Origin")) {
        errors.push(format!("{name}: Vary: Origin missing"));
    }
}

/// Compare a JSON document with its golden, ignoring what legitimately differs between the
/// reference run and the demo (dataset id/name, creation time, source, server version).
fn same_json(name: &str, ours: &[u8], golden: &[u8], errors: &mut Vec<String>) {
    fn scrub(v: &mut Value) {
        if let Some(m) = v.as_object_mut() {
            for key in [
                "id",
                "name",
                "created_at",
                "source",
                "version",
                "host",
                "port",
            ] {
                m.remove(key);
            }
            for (_, child) in m.iter_mut() {
                scrub(child);
            }
        } else if let Some(a) = v.as_array_mut() {
            a.iter_mut().for_each(scrub);
        }
    }
    let (Ok(mut a), Ok(mut b)) = (
        serde_json::from_slice::<Value>(ours),
        serde_json::from_slice::<Value>(golden),
    ) else {
        errors.push(format!("{name}: body is not JSON"));
        return;
    };
    scrub(&mut a);
    scrub(&mut b);
    if a != b {
        errors.push(format!("{name}: JSON differs from the golden"));
    }
}

fn check_event(name: &str, p: &Probe, a: &Answer, meta: &BTreeMap<String, Value>) -> Vec<String> {
    let mut errors = Vec::new();
    check_cors(name, p, a, &mut errors);
    let binary_type = a.header("content-type") == Some("application/octet-stream");
    // lambda_http decides from the headers alone (an empty binary body is still "base64").
    let expect_base64 = binary_type || a.header("content-encoding").is_some();
    if a.base64 != expect_base64 {
        errors.push(format!(
            "{name}: isBase64Encoded {}, expected {expect_base64}",
            a.base64
        ));
    }
    if let Some(enc) = a.header("content-encoding")
        && (enc != "gzip" || !p.gzip)
    {
        errors.push(format!(
            "{name}: Content-Encoding {enc} without Accept-Encoding gzip"
        ));
    }
    match p.method.as_str() {
        "OPTIONS" => {
            if a.status != 204 || !a.body.is_empty() {
                errors.push(format!(
                    "{name}: OPTIONS answered {} with {} bytes",
                    a.status,
                    a.body.len()
                ));
            }
            return errors;
        }
        "POST" => {
            if a.status != 405 || a.header("allow") != Some("GET, HEAD, OPTIONS") {
                errors.push(format!(
                    "{name}: POST answered {} (Allow {:?})",
                    a.status,
                    a.header("allow")
                ));
            }
            return errors;
        }
        "GET" | "HEAD" => {}
        other => {
            errors.push(format!("{name}: no expectation for method {other}"));
            return errors;
        }
    }
    let head = p.method == "HEAD";
    if head && !a.body.is_empty() {
        errors.push(format!("{name}: HEAD answered with a body"));
    }
    if let Some(control) = p.route.strip_prefix("_cellucid/") {
        if a.status != 200 || a.header("content-type") != Some("application/json") {
            errors.push(format!(
                "{name}: {} {:?}",
                a.status,
                a.header("content-type")
            ));
            return errors;
        }
        let doc: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        let ok = match control {
            "health" => doc["status"] == "ok" && doc["n_cells"] == 700 && doc["n_genes"] == 765,
            "info" => {
                let host = p.host.split(':').next().unwrap_or_default();
                doc["host"] == host && doc["port"] == 443 && doc["n_cells"] == 700
            }
            "datasets" => {
                doc["datasets"] == json!([{ "id": DEMO_ID, "path": "/", "name": DEMO_ID }])
            }
            _ => false,
        };
        if !ok {
            errors.push(format!("{name}: unexpected document {doc}"));
        }
        return errors;
    }
    // `X.bin.gz` vectors: the raw gzip file, never transport-encoded.
    if let Some(plain) = p.route.strip_suffix(".gz") {
        if a.status != 200
            || a.header("content-encoding").is_some()
            || (!head && gunzip(&a.body) != golden(plain))
        {
            errors.push(format!(
                "{name}: raw gzip file does not match golden {plain}"
            ));
        }
        return errors;
    }
    let Some(m) = meta.get(&p.route) else {
        errors.push(format!("{name}: route {} has no golden", p.route));
        return errors;
    };
    let status = m["status"].as_u64().unwrap_or(0) as u16;
    if a.status != status {
        errors.push(format!("{name}: status {}, golden {status}", a.status));
        return errors;
    }
    if a.header("content-type") != m["content_type"].as_str() {
        errors.push(format!(
            "{name}: Content-Type {:?}, golden {}",
            a.header("content-type"),
            m["content_type"]
        ));
    }
    if status != 200 {
        return errors;
    }
    let golden_body = golden(&p.route);
    if m["content_type"] == "application/octet-stream" {
        let want = (p.gzip && m["content_encoding_when_gzip_accepted"] == "gzip").then_some("gzip");
        if a.header("content-encoding") != want {
            errors.push(format!(
                "{name}: Content-Encoding {:?}, expected {want:?}",
                a.header("content-encoding")
            ));
        }
    }
    if head {
        let len: usize = a
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if a.header("content-encoding").is_none() && len != golden_body.len() {
            errors.push(format!(
                "{name}: HEAD Content-Length {len}, golden {}",
                golden_body.len()
            ));
        }
        if len == 0 {
            errors.push(format!("{name}: HEAD without Content-Length"));
        }
        return errors;
    }
    let len: Option<usize> = a.header("content-length").and_then(|v| v.parse().ok());
    if len != Some(a.body.len()) {
        errors.push(format!(
            "{name}: Content-Length {len:?} for {} body bytes",
            a.body.len()
        ));
    }
    let body = a.decoded();
    if m["content_type"] == "application/json" {
        same_json(name, &body, &golden_body, &mut errors);
    } else if body != golden_body {
        errors.push(format!(
            "{name}: body ({} bytes) differs from golden {} ({} bytes)",
            body.len(),
            p.route,
            golden_body.len()
        ));
    }
    errors
}

#[tokio::test]
async fn every_event_file_is_answered_as_expected() {
    let handler = demo_handler().await;
    let meta = golden_meta();
    let files = event_files();
    assert!(
        files.len() >= 40,
        "expected the sample events, found {}",
        files.len()
    );
    let mut errors = Vec::new();
    let mut formats = BTreeMap::<&str, usize>::new();
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let event: Value = serde_json::from_str(&std::fs::read_to_string(file).expect("readable"))
            .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        let format = if event["version"] == "2.0" {
            if event["requestContext"]["domainName"]
                .as_str()
                .is_some_and(|d| d.contains(".lambda-url."))
            {
                "function URL"
            } else {
                "HTTP API v2"
            }
        } else {
            "REST v1"
        };
        *formats.entry(format).or_default() += 1;
        let p = probe(&event);
        let a = invoke(handler, event).await;
        errors.extend(check_event(&name, &p, &a, &meta));
    }
    assert!(
        errors.is_empty(),
        "{} problems:\n{}",
        errors.len(),
        errors.join("\n")
    );
    for format in ["HTTP API v2", "function URL", "REST v1"] {
        assert!(
            formats.get(format).copied().unwrap_or(0) >= 5,
            "few {format} events: {formats:?}"
        );
    }
}

/// A function URL event (what `cargo lambda watch` sends) for `route`.
fn url_event(method: &str, route: &str, gzip: bool) -> Value {
    let host = "abcdefghijklmnopqrstuvwxyz234567.lambda-url.us-east-1.on.aws";
    let mut headers = json!({ "host": host, "origin": VIEWER, "x-forwarded-proto": "https" });
    if gzip {
        headers["accept-encoding"] = json!("gzip, deflate, br, zstd");
    }
    let encoded: String = route
        .split('/')
        .map(|seg| {
            percent_encoding::utf8_percent_encode(seg, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("/");
    let path = format!("/{encoded}");
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdefghijklmnopqrstuvwxyz234567",
            "domainName": host,
            "domainPrefix": "abcdefghijklmnopqrstuvwxyz234567",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7", "userAgent": "test" },
            "requestId": "conformance",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1793534400000u64
        },
        "isBase64Encoded": false
    })
}

/// Every golden route of pbmc68k (binary bodies byte for byte, JSON structurally, 404s by
/// status) through the Lambda path, with and without gzip.
#[tokio::test]
async fn golden_routes_through_the_lambda_path() {
    let handler = demo_handler().await;
    let meta = golden_meta();
    let mut errors = Vec::new();
    let mut binary_routes = 0;
    for route in meta.keys().filter(|r| !r.starts_with("_cellucid/")) {
        for gzip in [false, true] {
            let event = url_event("GET", route, gzip);
            let p = probe(&event);
            let a = invoke(handler, event).await;
            errors.extend(check_event(
                &format!("{route} (gzip={gzip})"),
                &p,
                &a,
                &meta,
            ));
        }
        if meta[route]["content_type"] == "application/octet-stream" && meta[route]["status"] == 200
        {
            binary_routes += 1;
        }
    }
    assert!(
        binary_routes >= 30,
        "only {binary_routes} binary golden routes"
    );
    assert!(
        errors.is_empty(),
        "{} problems:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// Bodies over the limit without a presigning cache prefix: a clear 413 with CORS headers —
/// never the gateway's 502. A HEAD response is headers only, so it is always answered.
#[tokio::test]
async fn oversized_bodies_are_refused_clearly_with_cors() {
    let config = Config {
        max_body_bytes: 5_000,
        ..Config::default()
    };
    let service = Service::open(config.clone()).await.expect("demo opens");
    let handler = LambdaHandler::with_service(config, Arc::new(service));
    // points_3d.bin is 8 400 bytes raw; points_2d.bin gzip-encoded is under 5 000.
    let a = invoke(&handler, url_event("GET", "points_3d.bin", false)).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.header("access-control-allow-origin"), Some(VIEWER));
    assert_eq!(a.header("content-type"), Some("text/plain"));
    assert!(String::from_utf8_lossy(&a.body).contains("CELLUCID_CACHE_URL"));
    let head = invoke(&handler, url_event("HEAD", "points_3d.bin", false)).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("8400"));
    assert!(head.body.is_empty());
    let small = invoke(&handler, url_event("GET", "obs/bulk_labels.codes.u8", true)).await;
    assert_eq!(small.status, 200);
    // A JSON document is judged by its escaped size in the envelope.
    let doc = invoke(&handler, url_event("GET", "var_manifest.json", false)).await;
    assert_eq!(doc.status, 413, "var_manifest.json is 8 922 bytes");
}

/// The function's configuration for data `store` and cache `cache_url`, as from its environment.
fn lambda_config(store: &std::path::Path, cache_url: &str) -> Config {
    let data = store.to_string_lossy().into_owned();
    Config::from_lookup(|k| match k {
        "CELLUCID_DATA_URL" => Some(data.clone()),
        "CELLUCID_CACHE_URL" => Some(cache_url.to_string()),
        _ => None,
    })
    .expect("config")
}

/// Write a minimal AnnData-Zarr v2 store of `n_cells` cells whose only data is a 3-D UMAP
/// (uncompressed, one chunk), with consolidated metadata: a real store of the size where
/// buffered Lambda responses break (`points_3d.bin` of 1M cells is 12 MB).
fn write_large_umap_store(dir: &std::path::Path, n_cells: u64) {
    let group = json!({ "zarr_format": 2 });
    let frame = |order: Value| {
        json!({ "_index": "index", "column-order": order,
                "encoding-type": "dataframe", "encoding-version": "0.2.0" })
    };
    let strings = |n: u64| {
        json!({ "shape": [n], "chunks": [n.max(1)], "dtype": "|O", "fill_value": "", "order": "C",
                "filters": [{ "id": "vlen-utf8" }], "dimension_separator": ".",
                "compressor": null, "zarr_format": 2 })
    };
    let array_attrs = |kind: &str| json!({ "encoding-type": kind, "encoding-version": "0.2.0" });
    let dict_attrs = json!({ "encoding-type": "dict", "encoding-version": "0.1.0" });
    let metadata = json!({
        ".zgroup": group,
        ".zattrs": { "encoding-type": "anndata", "encoding-version": "0.1.0" },
        "obs/.zgroup": group, "obs/.zattrs": frame(json!([])),
        "obs/index/.zarray": strings(n_cells), "obs/index/.zattrs": array_attrs("string-array"),
        "var/.zgroup": group, "var/.zattrs": frame(json!([])),
        "var/index/.zarray": strings(1), "var/index/.zattrs": array_attrs("string-array"),
        "obsm/.zgroup": group, "obsm/.zattrs": dict_attrs,
        "obsm/X_umap_3d/.zarray": {
            "shape": [n_cells, 3], "chunks": [n_cells, 3], "dtype": "<f4", "fill_value": 0.0,
            "order": "C", "filters": null, "dimension_separator": ".", "compressor": null,
            "zarr_format": 2 },
        "obsm/X_umap_3d/.zattrs": array_attrs("array"),
    });
    let map = metadata.as_object().expect("metadata object");
    for (key, value) in map {
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, serde_json::to_vec(value).expect("json")).expect("write");
    }
    let consolidated = json!({ "metadata": metadata, "zarr_consolidated_format": 1 });
    std::fs::write(
        dir.join(".zmetadata"),
        serde_json::to_vec(&consolidated).expect("json"),
    )
    .expect("write .zmetadata");
    // Deterministic coordinates (an LCG), not all equal, so normalisation has work to do.
    let mut state: u32 = 0x2545_f491;
    let mut chunk = Vec::with_capacity(n_cells as usize * 12);
    for _ in 0..n_cells * 3 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let v = (state >> 8) as f32 / (1u32 << 24) as f32 * 20.0 - 10.0;
        chunk.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(dir.join("obsm/X_umap_3d/0.0"), chunk).expect("write chunk");
}

/// A 1M-cell `points_3d.bin` (12 MB, over the buffered-response limit) through the handler is
/// a 307 to a presigned URL of the artifact in an S3 cache prefix (a real S3-protocol server,
/// moto, on 127.0.0.1) — never an error — with CORS headers on the redirect; following the
/// redirect yields the gzip object with `Content-Encoding`/`Content-Type`, byte-identical to
/// what the service serves inline. HEAD is answered inline (headers only); without a
/// presigning cache, a clear 413.
#[tokio::test]
async fn large_body_redirects_to_a_presigned_cache_object() {
    let Some(moto) = common::moto::moto().await else {
        return;
    };
    let bucket = moto.bucket("lambda-large").await;
    let data = tempfile::tempdir().expect("tempdir");
    let store = data.path().join("million.zarr");
    write_large_umap_store(&store, 1_000_000);
    let config = lambda_config(&store, &format!("{bucket}/cache"));
    let app = Arc::new(
        Service::open(config.clone())
            .await
            .expect("1M-cell store opens"),
    );
    let handler = LambdaHandler::with_service(config, app.clone());

    let a = invoke(&handler, url_event("GET", "points_3d.bin", true)).await;
    assert_eq!(a.status, 307, "body: {}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("access-control-allow-origin"), Some(VIEWER));
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let location = a.header("location").expect("Location").to_string();
    assert!(
        location.starts_with(&moto.endpoint) && location.contains("X-Amz-Signature="),
        "not a presigned URL of the cache bucket: {location}"
    );
    assert!(location.contains("X-Amz-Expires=300"), "{location}");

    let object = common::fetch(http::Method::GET, &location, &[], Vec::new()).await;
    assert_eq!(
        object.status,
        200,
        "{}",
        String::from_utf8_lossy(&object.body)
    );
    assert_eq!(object.header("content-encoding"), "gzip");
    assert_eq!(object.content_type(), "application/octet-stream");
    let points = object.decoded().expect("gzip object");
    assert_eq!(points.len(), 12_000_000);
    // The same bytes the App serves inline (through `serve`).
    let request = http::Request::get("/points_3d.bin")
        .body(())
        .expect("request");
    let inline = app.handle(request).await;
    assert_eq!(inline.status(), 200);
    let inline = inline.into_body().collect().await.expect("whole body");
    assert!(inline[..] == points[..], "redirected body differs");

    // HEAD is headers only: answered by the function; a second GET reuses the object.
    let head = invoke(&handler, url_event("HEAD", "points_3d.bin", true)).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(head.header("content-length").is_some());
    let again = invoke(&handler, url_event("GET", "points_3d.bin", false)).await;
    assert_eq!(again.status, 307);

    // Small artifacts still travel inline.
    let small = invoke(&handler, url_event("GET", "dataset_identity.json", true)).await;
    assert_eq!(small.status, 200);

    // A cache prefix on local disk cannot presign: a clear 413, not an error page.
    let local_cache = tempfile::tempdir().expect("tempdir");
    let config = lambda_config(&store, &local_cache.path().to_string_lossy());
    let app = Service::open(config.clone()).await.expect("opens");
    let handler = LambdaHandler::with_service(config, Arc::new(app));
    let refused = invoke(&handler, url_event("GET", "points_3d.bin", true)).await;
    assert_eq!(refused.status, 413);
    assert_eq!(refused.header("access-control-allow-origin"), Some(VIEWER));
}

/// `CELLUCID_ALLOWED_ORIGINS=*` answers every origin with `*`, like `serve --cors '*'`.
#[tokio::test]
async fn allowed_origins_follow_the_configuration() {
    let config =
        Config::from_lookup(|k| (k == "CELLUCID_ALLOWED_ORIGINS").then(|| "*".to_string()))
            .expect("config");
    let app = Service::open(config.clone()).await.expect("demo opens");
    let handler = LambdaHandler::with_service(config, Arc::new(app));
    let mut event = url_event("GET", "_cellucid/health", false);
    event["headers"]["origin"] = json!("https://anywhere.example");
    let a = invoke(&handler, event).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
}

/// A store that fails transiently while it is opened (here: too slow, the invocation's
/// deadline passes before the atlas is open) gives a 503 with `Retry-After` and CORS headers —
/// not a crashed container — and is opened again on the next invocation, which then succeeds.
#[tokio::test]
async fn transiently_unopenable_store_answers_503_with_cors_and_is_retried() {
    let config = Config {
        data_url: Some(
            common::fixture_store("edge", "v3")
                .to_string_lossy()
                .into_owned(),
        ),
        ..Config::default()
    };
    let handler = LambdaHandler::new(config);
    for _ in 0..2 {
        let envelope = handler
            .handle_event_by(
                url_event("GET", "dataset_identity.json", true),
                std::time::SystemTime::now(),
            )
            .await
            .expect("event is handled");
        let a = Answer::from_envelope(&envelope);
        assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("access-control-allow-origin"), Some(VIEWER));
        assert!(a.header("retry-after").is_some());
        assert_eq!(a.header("cache-control"), Some("no-store"));
    }
    let a = invoke(&handler, url_event("GET", "dataset_identity.json", true)).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.decoded()));
}

/// A store that cannot be opened for a permanent reason — nothing at the data URL, damaged
/// metadata — gives a clear 500 with CORS headers and without `Retry-After`, naming the
/// problem (never the path); the failure is remembered for the container's life (the store is
/// not read again on every request), and a new container opens the store once it is fixed.
#[tokio::test]
async fn permanently_unopenable_store_answers_500_with_cors_and_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("does-not-exist.zarr");
    let damaged = dir.path().join("damaged.zarr");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(damaged.join("zarr.json"), b"{ not json").unwrap();
    for (store, reason) in [(&missing, "does not exist"), (&damaged, "damaged")] {
        let config = Config {
            data_url: Some(store.to_string_lossy().into_owned()),
            ..Config::default()
        };
        let handler = LambdaHandler::new(config);
        for method in ["GET", "GET", "HEAD"] {
            let a = invoke(&handler, url_event(method, "dataset_identity.json", true)).await;
            let body = String::from_utf8_lossy(&a.body).into_owned();
            assert_eq!(a.status, 500, "{}: {body}", store.display());
            assert_eq!(a.header("access-control-allow-origin"), Some(VIEWER));
            assert_eq!(
                a.header("retry-after"),
                None,
                "a permanent failure is not retried"
            );
            if method == "GET" {
                assert!(body.contains(reason), "{}: {body}", store.display());
                assert!(
                    !body.contains(&*dir.path().to_string_lossy()),
                    "the body shows a local path: {body}"
                );
            }
        }
    }
    // Remembered: fixing the store does not change what this container answers …
    let config = Config {
        data_url: Some(missing.to_string_lossy().into_owned()),
        ..Config::default()
    };
    let handler = LambdaHandler::new(config.clone());
    let a = invoke(&handler, url_event("GET", "dataset_identity.json", true)).await;
    assert_eq!(a.status, 500);
    common::copy_dir(&common::fixture_store("edge", "v3"), &missing);
    let a = invoke(&handler, url_event("GET", "dataset_identity.json", true)).await;
    assert_eq!(a.status, 500, "the store was opened again");
    // … and a new container serves it.
    let handler = LambdaHandler::new(config);
    let a = invoke(&handler, url_event("GET", "dataset_identity.json", true)).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.decoded()));
}

/// Anything that is not an HTTP event is refused before reaching the app.
#[tokio::test]
async fn non_http_events_are_rejected() {
    let handler = demo_handler().await;
    assert!(
        handler
            .handle_event(json!({ "hello": "world" }))
            .await
            .is_err()
    );
}

#[test]
fn events_match_their_generator() {
    // The events are generated; a hand-edited file would drift from the script.
    let script = root().join("events/generate.py");
    match std::process::Command::new("python3")
        .arg(&script)
        .arg("--check")
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "python3 must run in CI: {e}"
            );
            // Straight to stderr: the test harness captures `eprintln!` of a passing test.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("!!! NOT RUN: events/ against events/generate.py (python3: {e})\n")
                    .as_bytes(),
            );
        }
    }
}
