//! A real S3-protocol server for the tests: `moto_server` (`pip install 'moto[server]'`) on
//! 127.0.0.1, started once per test binary and stopped when the binary exits.
//!
//! The S3 backend reads its configuration from the standard AWS environment, so [`moto`] sets
//! `AWS_ENDPOINT_URL`, fake credentials and a region for the whole process before the first
//! store is opened. Each test makes its own bucket ([`Moto::bucket`]), so tests stay
//! independent while sharing one server.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

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

fn moto_installed() -> bool {
    Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The shared moto server, started on first use. `None` (with a loud message) when
/// `moto_server` is not installed and this is not CI; in CI (`CI` set) a missing moto fails.
pub async fn moto() -> Option<&'static Moto> {
    MOTO.get_or_init(|| async { start() }).await.as_ref()
}

fn start() -> Option<Moto> {
    if !moto_installed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server is not installed (pip install 'moto[server]'); CI must run the S3 tests"
        );
        eprintln!(
            "\n!!! moto_server NOT FOUND: SKIPPING the S3 tests (pip install 'moto[server]')\n"
        );
        return None;
    }
    let port = free_port();
    let script = format!(
        "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; \
         trap 'kill $pid 2>/dev/null' EXIT; read _ignored; kill $pid 2>/dev/null; wait $pid"
    );
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
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
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_DEFAULT_REGION", "us-east-1");
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
}
