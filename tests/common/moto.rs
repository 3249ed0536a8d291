//! A real S3-protocol server for tests: `moto_server` (pip install 'moto[server]') started on
//! 127.0.0.1 at a free port, killed when dropped. Buckets are created and filled through plain
//! HTTP and object_store, so what the code under test reads is real S3 wire traffic.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// Credentials and region every test client uses (moto accepts any).
pub const ACCESS_KEY: &str = "testing";
/// Secret key.
pub const SECRET_KEY: &str = "testing";
/// Region.
pub const REGION: &str = "us-east-1";

impl Moto {
    /// Start `moto_server` (or `python3 -m moto.server`); `None` with a printed reason when
    /// neither is installed.
    pub fn start() -> Option<Moto> {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let attempts: [(&str, &[&str]); 2] =
            [("moto_server", &[]), ("python3", &["-m", "moto.server"])];
        for (program, prefix) in attempts {
            let mut args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
            args.extend([
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ]);
            let Ok(child) = Command::new(program)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let mut moto = Moto {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(moto);
                }
                if let Ok(Some(_)) = moto.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = moto.child.kill();
        }
        eprintln!("SKIPPED: moto_server is not installed (pip install 'moto[server]')");
        None
    }

    /// Point the process's AWS environment at this server, so `s3://` URLs opened through
    /// `open_store_url` reach it. Call once per test binary, before any S3 URL is opened.
    pub fn export_env(&self) {
        // SAFETY: tests call this before starting any thread that reads the environment.
        unsafe {
            std::env::set_var("AWS_ENDPOINT_URL", &self.endpoint);
            std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
            std::env::set_var("AWS_REGION", REGION);
            std::env::set_var("AWS_ALLOW_HTTP", "true");
        }
    }

    /// An object_store client for `bucket` on this server.
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

    /// Create `bucket` (moto takes an unsigned `PUT /<bucket>`).
    pub fn create_bucket(&self, bucket: &str) {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).expect("connect to moto");
        use std::io::{Read, Write};
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "create bucket: {answer}"
        );
    }

    /// Upload a local file or every file below a local directory to `bucket/prefix`.
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

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
