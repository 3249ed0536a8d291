//! A real S3-protocol server for the tests: `moto_server` (`pip install 'moto[server]'`) on
//! 127.0.0.1, started once per test binary and stopped when the binary exits.
//!
//! The S3 backend reads its configuration from the standard AWS environment, so [`moto`] sets
//! `AWS_ENDPOINT_URL`, fake credentials and a region for the whole process before the first
//! store is opened. Each test makes its own bucket ([`Moto::bucket`]), so tests stay
//! independent while sharing one server.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::OnceCell;

use super::python;

/// Credentials and region every test client uses (moto accepts any).
pub const ACCESS_KEY: &str = "testing";
/// Secret key.
pub const SECRET_KEY: &str = "testing";
/// Region.
pub const REGION: &str = "us-east-1";

/// A running moto server.
pub struct Moto {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    // Keeps the watchdog's stdin open: when the test binary exits, the pipe closes and the
    // watchdog stops moto (no server outlives the tests).
    _watchdog: Child,
}

static MOTO: OnceCell<Option<Moto>> = OnceCell::const_new();

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The shared moto server, started on first use (`moto_server` from PATH, else from the test
/// venv). `None` (with a loud line) when there is none and this is not CI; in CI it fails.
pub async fn moto() -> Option<&'static Moto> {
    MOTO.get_or_init(|| async { start() }).await.as_ref()
}

fn start() -> Option<Moto> {
    // From PATH, else the test venv; a failure under CI, one loud line elsewhere.
    let moto_server = python::moto_server("the S3 tests (moto_server)")?;
    let port = free_port();
    let script = "\"$1\" -H 127.0.0.1 -p \"$2\" >/dev/null 2>&1 & pid=$!; \
         trap 'kill $pid 2>/dev/null' EXIT; read _ignored; kill $pid 2>/dev/null; wait $pid";
    let watchdog = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&moto_server)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    // SAFETY-free: these are set once, before any S3 store is built, and every test that
    // uses S3 goes through this function first.
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::set_var("AWS_REGION", REGION);
        std::env::set_var("AWS_DEFAULT_REGION", REGION);
        std::env::set_var("AWS_ALLOW_HTTP", "true");
    }
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto_server did not start on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Moto {
        endpoint,
        _watchdog: watchdog,
    })
}

impl Moto {
    /// Create bucket `name` (path-style `PUT /<name>`), returning `s3://<name>`.
    pub async fn bucket(&self, name: &str) -> String {
        let status = super::http_put(&format!("{}/{name}", self.endpoint), Vec::new()).await;
        assert!(
            status == 200 || status == 409,
            "creating bucket {name}: HTTP {status}"
        );
        format!("s3://{name}")
    }

    /// An object_store client for `bucket` on this server (for filling it as a user would).
    pub fn client(&self, bucket: &str) -> Arc<AmazonS3> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_region(REGION)
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .expect("S3 client for moto"),
        )
    }

    /// Upload a local file, or every file below a local directory, to `bucket/prefix`.
    pub async fn upload(&self, bucket: &str, prefix: &str, local: &Path) {
        let client = self.client(bucket);
        let mut files = Vec::new();
        if local.is_file() {
            files.push((prefix.to_string(), local.to_path_buf()));
        } else {
            for (rel, _) in super::files_below(local) {
                files.push((format!("{prefix}/{rel}"), local.join(&rel)));
            }
        }
        for (key, path) in files {
            let bytes = Bytes::from(std::fs::read(&path).expect("read fixture"));
            client
                .put(
                    &ObjectPath::from(key.as_str()),
                    PutPayload::from_bytes(bytes),
                )
                .await
                .unwrap_or_else(|e| panic!("upload {key}: {e}"));
        }
    }
}
