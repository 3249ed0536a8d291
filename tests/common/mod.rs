//! Shared helpers of the integration tests: fixture paths, the real server on an ephemeral
//! port, the transport matrix ([`transport`]: the same requests through hyper, the service
//! in-process and the Lambda handler's event formats), a small HTTP client, percent-encoding
//! like the Python tools, gzip and compare.py's comparison rules.

#![allow(dead_code)]

pub mod conformance;
pub mod moto;
pub mod python;
pub mod transport;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::{Dataset, DatasetOptions};
use cellucid_edge::service::{Config, Service};
use cellucid_edge::store::{ReadMetrics, StoreLocation, open_store_url};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The origin every conformance request carries (allowed by the default CORS policy).
pub const ORIGIN: &str = "https://www.cellucid.com";

/// The three fixture atlases.
pub const ATLASES: [&str; 3] = ["pbmc68k", "edge", "sparse"];

/// `tests/fixtures` of this crate.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// `tests/fixtures/stores/<atlas>.<version>.zarr` (`version` is `"v2"` or `"v3"`).
pub fn fixture_store(atlas: &str, version: &str) -> PathBuf {
    fixtures()
        .join("stores")
        .join(format!("{atlas}.{version}.zarr"))
}

/// `tests/fixtures/golden/<atlas>`.
pub fn golden_dir(atlas: &str) -> PathBuf {
    fixtures().join("golden").join(atlas)
}

/// Recursively copy a directory (a fixture store into a temp dir, to damage it).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("create {}: {e}", dst.display()));
    for entry in std::fs::read_dir(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display())) {
        let entry = entry.expect("directory entry");
        let target = dst.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// Every file below `root` as (relative path with `/` separators, contents).
pub fn files_below(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("below root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, std::fs::read(&path).expect("read file")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Open a store URL (path, `file://`, `memory://`) as a location, panicking with the error.
pub fn location(url: &str) -> StoreLocation {
    open_store_url(url).unwrap_or_else(|e| panic!("open_store_url({url}): {e}"))
}

/// Open `url` as a catalogue with default options.
pub async fn open_catalog(url: &str) -> Catalog {
    Catalog::open(
        location(url),
        &DatasetOptions::default(),
        Arc::new(ReadMetrics::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("Catalog::open({url}): {e}"))
}

/// Open `url` as one dataset with default options.
pub async fn open_dataset(url: &str) -> Result<Dataset, cellucid_edge::dataset::DatasetError> {
    Dataset::open(
        location(url),
        DatasetOptions::default(),
        Arc::new(ReadMetrics::default()),
    )
    .await
}

/// A listener on 127.0.0.1 at a free port.
pub async fn bind_loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// A real server (`serve_until` on 127.0.0.1:0) running in the test's runtime.
pub struct TestServer {
    /// Bound address.
    pub addr: SocketAddr,
    /// The service being served (to inspect the catalogue).
    pub app: Arc<Service>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    client: LegacyClient<HttpConnector, Full<Bytes>>,
}

impl TestServer {
    /// Serve `catalog` with the default configuration.
    pub async fn start(catalog: Catalog) -> Self {
        Self::start_with(catalog, Config::default()).await
    }

    /// Serve `catalog` with `config`.
    pub async fn start_with(catalog: Catalog, config: Config) -> Self {
        Self::start_service(Service::new(catalog, config).expect("service mounts")).await
    }

    /// Serve an already built `service` (e.g. with a custom 0.9 front-end).
    pub async fn start_service(service: Service) -> Self {
        Self::start_shared(Arc::new(service)).await
    }

    /// Serve a shared `service` (the transport matrix reaches it several ways).
    pub async fn start_shared(service: Arc<Service>) -> Self {
        Self::start_on(bind_loopback().await, service).await
    }

    /// Serve `service` on an already bound `listener` (a Host rule needs the port first).
    pub async fn start_on(listener: TcpListener, app: Arc<Service>) -> Self {
        let addr = listener.local_addr().expect("local_addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(cellucid_edge::serve::serve_until(
            listener,
            app.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        let client = LegacyClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build_http();
        TestServer {
            addr,
            app,
            shutdown: Some(tx),
            task: Some(task),
            client,
        }
    }

    /// Serve the store (or directory of stores) at `url`.
    pub async fn open(url: &str) -> Self {
        Self::start(open_catalog(url).await).await
    }

    /// `GET` `raw_path` (already percent-encoded, starting with `/`).
    pub async fn get(&self, raw_path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::GET, raw_path, headers).await
    }

    /// `GET` with `Accept-Encoding: gzip` and `Origin: https://www.cellucid.com`, like compare.py.
    pub async fn get_viewer(&self, raw_path: &str) -> Resp {
        self.get(raw_path, &[("accept-encoding", "gzip"), ("origin", ORIGIN)])
            .await
    }

    /// Any method on `raw_path` with `headers`; panics on transport errors (the server must
    /// always answer).
    pub async fn request(&self, method: Method, raw_path: &str, headers: &[(&str, &str)]) -> Resp {
        self.try_request(method.clone(), raw_path, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {raw_path}: {e}"))
    }

    /// Like [`request`](Self::request) but reporting transport errors.
    pub async fn try_request(
        &self,
        method: Method,
        raw_path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let uri = format!("http://{}{}", self.addr, raw_path);
        let mut builder = Request::builder().method(method).uri(&uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("building request for {uri}: {e}"))?;
        let response = tokio::time::timeout(Duration::from_secs(120), self.client.request(request))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("request failed: {e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Stop the server (graceful shutdown) and wait for `serve_until` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("serve_until returns after shutdown")
                .expect("server task did not panic")
                .expect("serve_until returned Ok");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// One request to an absolute URL (e.g. a presigned object-store URL), body read.
pub async fn fetch(method: Method, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
    let client: LegacyClient<HttpConnector, Full<Bytes>> =
        LegacyClient::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder().method(method.clone()).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|e| panic!("building {method} {url}: {e}"));
    let response = tokio::time::timeout(Duration::from_secs(120), client.request(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {url} timed out"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("reading body of {url}: {e}"))
        .to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `PUT url` with `body`; the status code.
pub async fn http_put(url: &str, body: Vec<u8>) -> u16 {
    fetch(Method::PUT, url, &[], body).await.status.as_u16()
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as received (possibly gzip-encoded).
    pub body: Bytes,
}

impl Resp {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Whether the header is present.
    pub fn has(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }

    /// Content-Type without parameters.
    pub fn content_type(&self) -> &str {
        self.header("content-type")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
    }

    /// The body with transport gzip removed.
    pub fn decoded(&self) -> Result<Vec<u8>, String> {
        if self.header("content-encoding").eq_ignore_ascii_case("gzip") {
            gunzip(&self.body)
        } else {
            Ok(self.body.to_vec())
        }
    }

    /// The decoded body as JSON.
    pub fn json(&self) -> Value {
        let body = self.decoded().expect("decodable body");
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&body))
        })
    }

    /// Whether `Vary` lists `token` (case-insensitive, across all Vary headers).
    pub fn vary_has(&self, token: &str) -> bool {
        self.headers
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Inflate a gzip stream.
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| format!("invalid gzip stream: {e}"))?;
    Ok(out)
}

/// Python's `urllib.parse.quote(route, safe="/._-")`: everything except ASCII alphanumerics,
/// `_.-~` (always safe in Python 3.7+) and `/` is percent-encoded as UTF-8.
const QUOTE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'.')
    .remove(b'_')
    .remove(b'-')
    .remove(b'~');

/// Percent-encode a route like golden.py / compare.py and make it absolute.
pub fn quote_route(route: &str) -> String {
    format!("/{}", utf8_percent_encode(route, QUOTE_SET))
}

// ---------------------------------------------------------------------------------------------
// compare.py's comparison rules

/// Keys of `dataset_identity.json` that legitimately differ between runs and stores.
pub const IGNORED_IDENTITY_KEYS: [&str; 4] = ["id", "name", "created_at", "source"];

/// compare.py `close`: numbers within a relative tolerance (NaN equals NaN), bools exactly,
/// containers element-wise, everything else by equality.
pub fn json_close(a: &Value, b: &Value, tol: f64) -> bool {
    json_diff(a, b, tol, "$").is_none()
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// compare.py `json_diff`: the first difference between golden `a` and ours `b`, or `None`.
pub fn json_diff(a: &Value, b: &Value, tol: f64, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (ma.get(k), mb.get(k)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = json_diff(x, y, tol, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                    (None, _) => return Some(format!("{path}.{k}: present in ours only")),
                    (_, None) => return Some(format!("{path}.{k}: present in golden only")),
                }
            }
            None
        }
        (Value::Array(la), Value::Array(lb)) => {
            if la.len() != lb.len() {
                return Some(format!(
                    "{path}: length {} (ours) vs {} (golden)",
                    lb.len(),
                    la.len()
                ));
            }
            la.iter()
                .zip(lb)
                .enumerate()
                .find_map(|(i, (x, y))| json_diff(x, y, tol, &format!("{path}[{i}]")))
        }
        _ => {
            let same = match (number(a), number(b)) {
                (Some(x), Some(y)) => {
                    if x.is_nan() || y.is_nan() {
                        x.is_nan() && y.is_nan()
                    } else {
                        (x - y).abs() <= tol * 1f64.max(x.abs()).max(y.abs())
                    }
                }
                _ => a == b,
            };
            (!same).then(|| format!("{path}: {b} (ours) vs {a} (golden)"))
        }
    }
}

/// compare.py `compare_outliers`: same length; each value equal (NaN = NaN) or within 0.02,
/// and at most max(1, n/200) values may differ.
pub fn compare_outliers(golden: &[u8], ours: &[u8]) -> Option<String> {
    if golden.len() != ours.len() {
        return Some(format!("length {} vs {}", ours.len(), golden.len()));
    }
    let floats = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let (g, o) = (floats(golden), floats(ours));
    let n = g.len();
    let mut bad = 0usize;
    for (x, y) in g.iter().zip(&o) {
        if x.is_nan() && y.is_nan() {
            continue;
        }
        if x == y {
            continue;
        }
        if x.is_nan() || y.is_nan() || (f64::from(*x) - f64::from(*y)).abs() > 0.02 {
            return Some(format!("value {y} vs {x}"));
        }
        bad += 1;
    }
    if bad > 1usize.max(n / 200) {
        return Some(format!("{bad} of {n} values differ"));
    }
    None
}

/// Byte-identity with a helpful message.
pub fn compare_bytes(golden: &[u8], ours: &[u8]) -> Option<String> {
    if golden == ours {
        return None;
    }
    if golden.len() != ours.len() {
        return Some(format!(
            "body length {}, reference {}",
            ours.len(),
            golden.len()
        ));
    }
    let first = golden
        .iter()
        .zip(ours)
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    Some(format!("bodies differ from byte {first}"))
}

/// compare.py's body rule for `route` (decoded `ours` against the golden file's bytes).
pub fn compare_body(route: &str, golden: &[u8], ours: &[u8]) -> Option<String> {
    let parse = |what: &str, bytes: &[u8]| -> Result<Value, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("{what} body is not JSON: {e}"))
    };
    let json_pair = || -> Result<(Value, Value), String> {
        Ok((parse("golden", golden)?, parse("our", ours)?))
    };
    if route == "dataset_identity.json" {
        let (mut a, mut b) = match json_pair() {
            Ok(p) => p,
            Err(e) => return Some(e),
        };
        for k in IGNORED_IDENTITY_KEYS {
            if let Some(o) = a.as_object_mut() {
                o.remove(k);
            }
            if let Some(o) = b.as_object_mut() {
                o.remove(k);
            }
        }
        return json_diff(&a, &b, 1e-6, "$");
    }
    if route.starts_with("_cellucid/") {
        let (a, b) = match json_pair() {
            Ok(p) => p,
            Err(e) => return Some(e),
        };
        if route.ends_with("datasets") {
            let ok = b
                .get("datasets")
                .and_then(Value::as_array)
                .and_then(|l| l.first())
                .is_some_and(|d| d.get("path").is_some());
            return (!ok).then(|| format!("unexpected datasets document {b}"));
        }
        for k in ["status", "type", "n_cells", "n_genes"] {
            if let Some(x) = a.get(k)
                && Some(x) != b.get(k)
            {
                return Some(format!("{k}: {:?} vs {x}", b.get(k)));
            }
        }
        return None;
    }
    if route.ends_with(".json") {
        return match json_pair() {
            Ok((a, b)) => json_diff(&a, &b, 1e-5, "$"),
            Err(e) => Some(e),
        };
    }
    if route.ends_with(".outliers.f32") {
        return compare_outliers(golden, ours);
    }
    compare_bytes(golden, ours)
}

/// Golden `_meta.json` entries in file order: (route, status, content type, gzip expected).
pub fn golden_meta(atlas: &str) -> Vec<GoldenRoute> {
    let path = golden_dir(atlas).join("_meta.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let meta: serde_json::Map<String, Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.into_iter()
        .map(|(route, m)| GoldenRoute {
            status: m["status"].as_u64().expect("status") as u16,
            content_type: m["content_type"].as_str().unwrap_or_default().to_string(),
            gzip: m["content_encoding_when_gzip_accepted"].as_str() == Some("gzip"),
            route,
        })
        .collect()
}

/// One route of a golden `_meta.json`.
#[derive(Debug, Clone)]
pub struct GoldenRoute {
    /// Route relative to the dataset root (not encoded).
    pub route: String,
    /// Reference status.
    pub status: u16,
    /// Reference Content-Type.
    pub content_type: String,
    /// Whether the reference gzip-encodes it when gzip is accepted.
    pub gzip: bool,
}

/// The golden body of `route`.
pub fn golden_body(atlas: &str, route: &str) -> Vec<u8> {
    let mut path = golden_dir(atlas).join(route);
    // `<atlas>.h5ad/` holds only the bodies that differ from the Zarr goldens of `<atlas>/`.
    if let Some(base) = atlas.strip_suffix(".h5ad")
        && !path.exists()
    {
        path = golden_dir(base).join(route);
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Send `request` verbatim on a fresh TCP connection and return the status code of the first
/// response (`None` if the server closed the connection without answering).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "server neither answered nor closed the connection"
    );
    let text = String::from_utf8_lossy(&buf);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    status.parse().ok()
}

/// A fixture source: `stores/<atlas>.<version>.zarr` for `v2`/`v3`, `stores/<atlas>.h5ad` for
/// `h5ad`.
pub fn fixture_source(atlas: &str, version: &str) -> PathBuf {
    if version == "h5ad" {
        fixtures().join("stores").join(format!("{atlas}.h5ad"))
    } else {
        fixture_store(atlas, version)
    }
}

/// The golden directory name for a fixture source: `<atlas>.h5ad` when the reference answered
/// differently for the h5ad copy (extra columns, h5py's element order), else `<atlas>`.
pub fn golden_name(atlas: &str, version: &str) -> String {
    let h5ad = format!("{atlas}.h5ad");
    if version == "h5ad" && golden_dir(&h5ad).is_dir() {
        h5ad
    } else {
        atlas.to_string()
    }
}

/// Convert the `.h5ad` fixture of `atlas` to a Zarr store at `out` (a local directory).
#[cfg(feature = "h5ad")]
pub async fn convert_fixture(
    atlas: &str,
    out: &Path,
    zarr_format: u8,
) -> cellucid_edge::convert::ConvertReport {
    std::fs::create_dir_all(out).expect("create output dir");
    let output = location(out.to_str().expect("utf-8 path"));
    cellucid_edge::convert::convert_h5ad(
        &fixture_source(atlas, "h5ad"),
        &output,
        &cellucid_edge::convert::ConvertOptions {
            zarr_format,
            force: false,
        },
        &cellucid_edge::convert::NoProgress,
    )
    .await
    .unwrap_or_else(|e| panic!("convert {atlas}.h5ad: {e}"))
}
