//! Shared by `tests/strict_*.rs`: every fixture atlas (zarr v2, v3, and with the `h5ad`
//! feature the `.h5ad` copy) served under `/strict` through `serve` (hyper on an ephemeral
//! port) and through the Lambda handler (`LambdaHandler::handle_event` with function-URL
//! events), float32 and quantised, and crawled once per test binary the way the strict viewer
//! loads a dataset: control documents, identity, manifests, then every file they name. The
//! rule tests then judge the recorded replies, one rule of protocol-strict.md each.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cellucid_edge::catalog::Catalog;
use cellucid_edge::lambda::LambdaHandler;
use cellucid_edge::model::quantize::QuantBits;
use cellucid_edge::protocol::strict::StrictConfig;
use cellucid_edge::service::{Config as AppConfig, Service};
use serde_json::{Value, json};

use crate::common::{self, ORIGIN, TestServer, gunzip};

/// How a snapshot's requests reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `serve_until` (hyper) on 127.0.0.1:0.
    Serve,
    /// `LambdaHandler::handle_event` with function-URL events.
    Lambda,
}

/// One fixture store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// `pbmc68k`, `edge`, `sparse`.
    pub atlas: &'static str,
    /// `v2`, `v3`, `h5ad`.
    pub version: &'static str,
}

impl Fixture {
    /// The reference goldens of the seed routes for this fixture.
    pub fn golden(&self) -> String {
        common::golden_name(self.atlas, self.version)
    }

    /// The strict goldens directory (`golden/strict/<atlas>[.h5ad]`).
    pub fn strict_golden(&self) -> StrictGolden {
        StrictGolden::load(self.atlas, self.version == "h5ad")
    }
}

/// One reply, with the transport's gzip removed.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names; repeated headers joined with ", ").
    pub headers: BTreeMap<String, String>,
    /// Body after transport decoding.
    pub body: Vec<u8>,
    /// Bytes on the wire (before gunzip).
    pub wire_len: usize,
}

impl Reply {
    /// A header ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One fixture served one way and crawled.
#[derive(Debug)]
pub struct Snapshot {
    /// The store.
    pub fixture: Fixture,
    /// How it was reached.
    pub transport: Transport,
    /// The deployment's quantisation.
    pub quantize: Option<QuantBits>,
    /// The dataset's path in the strict catalogue (`/` for one atlas).
    pub dataset_path: String,
    /// Replies by path below `/strict` (`_cellucid/health`, `dataset_identity.json`, …,
    /// relative to the dataset path for dataset files).
    pub replies: BTreeMap<String, Reply>,
    /// Paths asked that the strict documents do not advertise (expected 404).
    pub probes: BTreeMap<String, Reply>,
}

impl Snapshot {
    /// A label for failure messages.
    pub fn label(&self) -> String {
        format!(
            "{}.{} via {:?}{}",
            self.fixture.atlas,
            self.fixture.version,
            self.transport,
            match self.quantize {
                Some(b) => format!(" (quantize {b})"),
                None => String::new(),
            }
        )
    }

    /// The reply of `path` (panics with the snapshot's label if it was not fetched).
    pub fn get(&self, path: &str) -> &Reply {
        self.replies
            .get(path)
            .unwrap_or_else(|| panic!("{}: `{path}` was not fetched", self.label()))
    }

    /// The JSON body of `path`.
    pub fn json(&self, path: &str) -> Value {
        self.get(path).json()
    }

    /// `n_cells` of the identity.
    pub fn n_cells(&self) -> u64 {
        self.json("dataset_identity.json")["stats"]["n_cells"]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Collected failures of one rule over every snapshot.
#[derive(Debug, Default)]
pub struct Failures(Vec<String>);

impl Failures {
    /// Record a failure when `ok` is false.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    /// Record a failure.
    pub fn fail(&mut self, what: String) {
        self.0.push(what);
    }

    /// Panic with every failure, naming the rule.
    pub fn assert(self, rule: &str) {
        assert!(
            self.0.is_empty(),
            "{rule}: {} failure(s):\n  {}",
            self.0.len(),
            self.0
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}

/// Every fixture store this build can read.
pub fn fixtures() -> Vec<Fixture> {
    let mut versions = vec!["v2", "v3"];
    if cfg!(feature = "h5ad") {
        versions.push("h5ad");
    }
    common::ATLASES
        .iter()
        .flat_map(|&atlas| {
            versions
                .iter()
                .map(move |&version| Fixture { atlas, version })
        })
        .collect()
}

/// The (transport, quantisation) pairs each fixture is crawled with: float32 through both
/// transports, 8-bit through serve and 16-bit through the Lambda.
pub const PROFILES: [(Transport, Option<QuantBits>); 4] = [
    (Transport::Serve, None),
    (Transport::Lambda, None),
    (Transport::Serve, Some(QuantBits::U8)),
    (Transport::Lambda, Some(QuantBits::U16)),
];

/// Every snapshot, built once per test binary (on a runtime of its own, so plain `#[test]`
/// functions can share it).
pub fn snapshots() -> &'static [Snapshot] {
    static SNAPSHOTS: OnceLock<Vec<Snapshot>> = OnceLock::new();
    SNAPSHOTS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async {
            let mut out = Vec::new();
            for fixture in fixtures() {
                let source = common::fixture_source(fixture.atlas, fixture.version);
                let catalog = common::open_catalog(source.to_str().expect("utf-8 path")).await;
                for (transport, quantize) in PROFILES {
                    out.push(crawl(&fixture, &catalog, transport, quantize).await);
                }
            }
            out
        })
    })
}

/// A function-URL event for `path` (already percent-encoded, starting with `/`).
pub fn url_event(path: &str) -> Value {
    let host = "abcdefghijklmnopqrstuvwxyz234567.lambda-url.us-east-1.on.aws";
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "host": host, "origin": ORIGIN, "x-forwarded-proto": "https",
            "accept-encoding": "gzip, deflate, br, zstd"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdefghijklmnopqrstuvwxyz234567",
            "domainName": host,
            "domainPrefix": "abcdefghijklmnopqrstuvwxyz234567",
            "http": { "method": "GET", "path": path, "protocol": "HTTP/1.1",
                      "sourceIp": "198.51.100.7", "userAgent": "strict-profile-test" },
            "requestId": "strict",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1793534400000u64
        },
        "isBase64Encoded": false
    })
}

fn reply_from_envelope(envelope: &Value) -> Reply {
    let mut headers = BTreeMap::new();
    if let Some(map) = envelope["headers"].as_object() {
        for (k, v) in map {
            headers.insert(
                k.to_ascii_lowercase(),
                v.as_str().unwrap_or_default().to_string(),
            );
        }
    }
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
    let wire = match envelope["body"].as_str() {
        None => Vec::new(),
        Some(s) if envelope["isBase64Encoded"].as_bool() == Some(true) => {
            BASE64.decode(s).expect("base64 body")
        }
        Some(s) => s.as_bytes().to_vec(),
    };
    finish(
        envelope["statusCode"].as_u64().expect("statusCode") as u16,
        headers,
        wire,
    )
}

fn finish(status: u16, headers: BTreeMap<String, String>, wire: Vec<u8>) -> Reply {
    let wire_len = wire.len();
    let body = if headers
        .get("content-encoding")
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
    {
        gunzip(&wire).expect("gzip body")
    } else {
        wire
    };
    Reply {
        status,
        headers,
        body,
        wire_len,
    }
}

/// A server under test: either transport, same requests.
pub enum Client {
    /// A running hyper server.
    Serve(Box<TestServer>),
    /// The Lambda handler around the same service.
    Lambda(Box<LambdaHandler>),
}

impl Client {
    /// Serve `catalog` with `config` over `transport`.
    pub async fn start(transport: Transport, catalog: Catalog, config: AppConfig) -> Client {
        match transport {
            Transport::Serve => {
                Client::Serve(Box::new(TestServer::start_with(catalog, config).await))
            }
            Transport::Lambda => {
                let service = Service::new(catalog, config.clone()).expect("service mounts");
                Client::Lambda(Box::new(LambdaHandler::with_service(
                    config,
                    Arc::new(service),
                )))
            }
        }
    }

    /// GET `path` (percent-encoded, from the origin root) as the viewer would.
    pub async fn get(&self, path: &str) -> Reply {
        match self {
            Client::Serve(server) => {
                let r = server.get_viewer(path).await;
                let headers = r
                    .headers
                    .keys()
                    .map(|k| {
                        let joined = r
                            .headers
                            .get_all(k)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .collect::<Vec<_>>()
                            .join(", ");
                        (k.as_str().to_string(), joined)
                    })
                    .collect();
                finish(r.status.as_u16(), headers, r.body.to_vec())
            }
            Client::Lambda(handler) => {
                let envelope = handler
                    .handle_event(url_event(path))
                    .await
                    .expect("the event is handled");
                reply_from_envelope(&envelope)
            }
        }
    }

    /// Stop the server (no-op for the Lambda).
    pub async fn stop(self) {
        if let Client::Serve(server) = self {
            server.stop().await;
        }
    }
}

/// Crawl one fixture like the strict viewer: control documents, identity, the manifests, and
/// every file they name; then a few paths they do not name.
async fn crawl(
    fixture: &Fixture,
    catalog: &Catalog,
    transport: Transport,
    quantize: Option<QuantBits>,
) -> Snapshot {
    let config = AppConfig {
        strict: StrictConfig { quantize },
        ..AppConfig::default()
    };
    let client = Client::start(transport, catalog.clone(), config).await;
    let mut replies = BTreeMap::new();
    for control in ["_cellucid/health", "_cellucid/info", "_cellucid/datasets"] {
        replies.insert(
            control.to_string(),
            client.get(&format!("/strict/{control}")).await,
        );
    }
    let datasets = replies["_cellucid/datasets"].json();
    let dataset_path = datasets["datasets"][0]["path"]
        .as_str()
        .unwrap_or("/")
        .to_string();
    let base = format!("/strict{dataset_path}");
    let fetch = |rel: String| {
        let url = format!(
            "{}{}",
            base.trim_end_matches('/'),
            common::quote_route(&rel)
        );
        let client = &client;
        async move { (rel, client.get(&url).await) }
    };
    for doc in [
        "dataset_identity.json",
        "obs_manifest.json",
        "var_manifest.json",
        "connectivity_manifest.json",
    ] {
        let (k, v) = fetch(doc.to_string()).await;
        replies.insert(k, v);
    }
    let identity = replies["dataset_identity.json"].json();
    let obs = replies["obs_manifest.json"].json();
    let var = replies["var_manifest.json"].json();
    let connectivity = replies["connectivity_manifest.json"].json();

    let mut files: Vec<String> = Vec::new();
    if let Some(map) = identity["embeddings"]["files"].as_object() {
        files.extend(map.values().filter_map(Value::as_str).map(str::to_string));
    }
    if let Some(fields) = identity["vector_fields"]["fields"].as_object() {
        for field in fields.values() {
            if let Some(map) = field["files"].as_object() {
                files.extend(map.values().filter_map(Value::as_str).map(str::to_string));
            }
        }
    }
    let schema = &obs["_obsSchemas"];
    let expand = |pattern: &Value, index: &Value, ext: Option<&str>| -> Option<String> {
        let mut p = pattern.as_str()?.replace("{index}", &index.to_string());
        if let Some(ext) = ext {
            p = p.replace("{ext}", ext);
        }
        Some(p)
    };
    for t in obs["_continuousFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        files.extend(expand(&schema["continuous"]["pathPattern"], &t[0], None));
    }
    for t in obs["_categoricalFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let ext = if t[3] == "uint16" { "u16" } else { "u8" };
        files.extend(expand(
            &schema["categorical"]["codesPathPattern"],
            &t[0],
            Some(ext),
        ));
        files.extend(expand(
            &schema["categorical"]["outlierPathPattern"],
            &t[0],
            None,
        ));
    }
    for t in var["fields"].as_array().cloned().unwrap_or_default() {
        files.extend(expand(&var["_varSchema"]["pathPattern"], &t[0], None));
    }
    for key in ["sourcesPath", "destinationsPath", "weightsPath"] {
        if let Some(p) = connectivity[key].as_str() {
            files.push(p.to_string());
        }
    }
    // Four at a time, like a browser's connection pool.
    use futures::StreamExt;
    let fetched: Vec<(String, Reply)> = futures::stream::iter(files.into_iter().map(fetch))
        .buffer_unordered(4)
        .collect()
        .await;
    replies.extend(fetched);

    // Paths no strict document names.
    let n_obs = obs["_continuousFields"].as_array().map_or(0, Vec::len)
        + obs["_categoricalFields"].as_array().map_or(0, Vec::len);
    let n_genes = var["fields"].as_array().map_or(0, Vec::len);
    let value_ext = quantize.map_or("f32", QuantBits::ext);
    let other_ext = if value_ext == "f32" { "u8" } else { "f32" };
    let mut probes: Vec<String> = vec![
        format!("obs/{n_obs}.values.{value_ext}"),
        format!("obs/{n_obs}.codes.u8"),
        format!("var/{n_genes}.values.{value_ext}"),
        format!("var/0.values.{other_ext}"),
        format!("var/00.values.{value_ext}"),
        format!("var/0.values.{value_ext}.gz"),
        "points_4d.bin".into(),
        "points_3d.bin.gz".into(),
        "connectivity/edges.src.bin.gz".into(),
        "obs_manifest.json.gz".into(),
    ];
    if let Some(first) = var["fields"][0][1].as_str() {
        // The seed's name-addressed gene path does not exist under /strict.
        probes.push(format!("var/{first}.values.f32"));
    }
    if let Some(t) = obs["_categoricalFields"].as_array().and_then(|l| l.first()) {
        let wrong = if t[3] == "uint16" { "u8" } else { "u16" };
        probes.push(format!("obs/{}.codes.{wrong}", t[0]));
        probes.push(format!("obs/{}.values.{value_ext}", t[0]));
    }
    if let Some(t) = obs["_continuousFields"].as_array().and_then(|l| l.first()) {
        probes.push(format!("obs/{}.codes.u8", t[0]));
        probes.push(format!("obs/{}.values.{other_ext}", t[0]));
    }
    if identity["stats"]["has_connectivity"] != true {
        for p in [
            "connectivity/edges.src.bin",
            "connectivity/edges.dst.bin",
            "connectivity/edges.weights.f64.bin",
        ] {
            probes.push(p.into());
        }
    }
    let probes: BTreeMap<String, Reply> = futures::stream::iter(probes.into_iter().map(fetch))
        .buffer_unordered(4)
        .collect()
        .await;
    client.stop().await;
    Snapshot {
        fixture: fixture.clone(),
        transport,
        quantize,
        dataset_path,
        replies,
        probes,
    }
}

// ---------------------------------------------------------------------------------------------
// Reference goldens

/// `golden/strict/<atlas>[.h5ad]` (see `tests/fixtures/generate_strict.py`).
#[derive(Debug, Clone)]
pub struct StrictGolden {
    /// `_meta.json`.
    pub meta: Value,
    dir: std::path::PathBuf,
    fallback: std::path::PathBuf,
}

impl StrictGolden {
    /// Load the goldens of `atlas` (its `.h5ad` copy when `h5ad`).
    pub fn load(atlas: &str, h5ad: bool) -> Self {
        let root = common::fixtures().join("golden").join("strict");
        let fallback = root.join(atlas);
        let h5ad_dir = root.join(format!("{atlas}.h5ad"));
        let dir = if h5ad && h5ad_dir.is_dir() {
            h5ad_dir
        } else {
            fallback.clone()
        };
        let meta: Value = serde_json::from_slice(
            &std::fs::read(dir.join("_meta.json")).expect("strict golden _meta.json"),
        )
        .expect("strict golden _meta.json is JSON");
        StrictGolden {
            meta,
            dir,
            fallback,
        }
    }

    /// A whole golden file (from the `.h5ad` directory when it has one, else the atlas's).
    pub fn file(&self, name: &str) -> Vec<u8> {
        let path = self.dir.join(name);
        let path = if path.exists() {
            path
        } else {
            self.fallback.join(name)
        };
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// `[offset, length]` of a golden slice inside `file`.
    pub fn slice(&self, file: &str, at: &Value) -> Vec<u8> {
        let data = self.file(file);
        let (o, n) = (
            at[0].as_u64().unwrap_or(0) as usize,
            at[1].as_u64().unwrap_or(0) as usize,
        );
        data.get(o..o + n)
            .unwrap_or_else(|| panic!("golden slice {o}+{n} of {file}"))
            .to_vec()
    }
}

/// Little-endian f32 values.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Little-endian f64 values.
pub fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

/// Little-endian unsigned integers of `width` bytes (1, 2, 4).
pub fn uints(bytes: &[u8], width: usize) -> Vec<u64> {
    bytes
        .chunks_exact(width.max(1))
        .map(|c| {
            c.iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        })
        .collect()
}

/// The object's keys, sorted.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// `names`, sorted, as owned strings (to compare with [`keys`]).
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Non-empty text without whitespace or control characters (§1 version, §2 host).
pub fn is_token(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()))
}

/// A non-negative integer no larger than 2^53 - 1.
pub fn is_count(v: &Value) -> bool {
    v.as_u64().is_some_and(|n| n < (1u64 << 53))
}

/// A safe relative path (§4): no leading `/`, `\`, `?`, `#`, control characters, drive
/// letter, empty / `.` / `..` segment, and only canonical percent-encoding.
pub fn is_safe_relative_path(p: &str) -> bool {
    if p.is_empty()
        || p.starts_with('/')
        || p.chars()
            .any(|c| c == '\\' || c == '?' || c == '#' || c.is_control())
    {
        return false;
    }
    let bytes = p.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return false;
    }
    if p.contains('%') {
        return false;
    }
    p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}
