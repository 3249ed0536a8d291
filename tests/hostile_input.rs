//! Hostile input beyond `http_semantics.rs`: overlong paths, invalid and tricky
//! percent-encoding, huge and numerous headers, method confusion (bodies on GET/HEAD,
//! request smuggling framings, CONNECT, TRACE, unknown methods, absolute-form and asterisk
//! targets). Every one is answered with a 2xx/3xx/4xx or the connection is closed — never a
//! 5xx, never a hang, never a panic — and the server keeps serving afterwards.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ORIGIN, TestServer, fixture_store, golden_body};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn pbmc() -> TestServer {
    TestServer::open(fixture_store("pbmc68k", "v3").to_str().expect("utf-8 path")).await
}

async fn assert_still_serving(server: &TestServer) {
    let r = server.get("/_cellucid/health", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "server stopped answering");
    let r = server.get_viewer("/points_2d.bin").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.decoded().unwrap(),
        golden_body("pbmc68k", "points_2d.bin")
    );
}

/// Send `request` on a fresh connection and read until the server closes it (10 s at most);
/// return the statuses of every response found and the raw text.
async fn exchange_all(addr: SocketAddr, request: &[u8]) -> (Vec<u16>, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may refuse mid-write (e.g. headers over its limit): that is fine.
    let _ = stream.write_all(request).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 16384];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "server neither finished answering nor closed the connection"
    );
    let text = String::from_utf8_lossy(&buf).into_owned();
    let statuses = text
        .match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect();
    (statuses, text)
}

fn assert_no_5xx(statuses: &[u16], what: &str) {
    for s in statuses {
        assert!(*s < 500, "{what}: status {s}");
    }
}

#[tokio::test]
async fn overlong_paths_are_414_or_refused() {
    let server = pbmc().await;
    // The App's limit (4096 bytes) answers 414, with CORS.
    for (path, what) in [
        (format!("/{}", "a".repeat(4096)), "4 KiB"),
        (
            format!("/var/{}.values.f32", "%e5%90%8d".repeat(1000)),
            "9 KiB of escapes",
        ),
        (format!("/{}", "../".repeat(15_000)), "45 KiB of ../"),
    ] {
        let r = server
            .request(Method::GET, &path, &[("origin", ORIGIN)])
            .await;
        assert_eq!(r.status, StatusCode::URI_TOO_LONG, "{what}");
        assert_eq!(r.header("access-control-allow-origin"), ORIGIN, "{what}");
    }
    // Longer than HTTP clients send (64 KiB+): raw requests, still 414.
    for (path, what) in [
        (
            format!("/obs/{}.values.f32", "x".repeat(64 * 1024)),
            "64 KiB",
        ),
        (format!("/{}", "a/".repeat(100_000)), "200 KiB of segments"),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (statuses, _) = exchange_all(server.addr, request.as_bytes()).await;
        assert_eq!(statuses, vec![414], "{what}");
    }
    // Just under the limit: an ordinary 404.
    let r = server.get(&format!("/{}", "a/".repeat(2000)), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Beyond what hyper buffers (~400 KiB): refused by the transport, not a 5xx.
    let huge = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let (statuses, _) = exchange_all(server.addr, huge.as_bytes()).await;
    assert_no_5xx(&statuses, "1 MiB request target");
    assert!(
        statuses.iter().all(|s| (400..500).contains(s)),
        "1 MiB request target: {statuses:?}"
    );
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_percent_encoding_is_400() {
    let server = pbmc().await;
    let invalid = [
        "/var/%c0%af.values.f32",          // overlong UTF-8 for '/'
        "/var/%c0%ae%c0%ae.values.f32",    // overlong '..'
        "/var/%ed%a0%80.values.f32",       // UTF-16 surrogate
        "/var/%f4%90%80%80.values.f32",    // beyond U+10FFFF
        "/var/%f8%88%80%80%80.values.f32", // 5-byte form
        "/var/%e5%90.values.f32",          // truncated sequence
        "/obs/%80.codes.u8",               // lone continuation byte
        "/%",                              // dangling
        "/%0",                             // one hex digit
        "/var/%g0.values.f32",             // not hex
        "/var/%%30.values.f32",            // percent of percent
        "/var/%u002e%u002e.values.f32",    // IIS-style %u escapes
        "/points_3d.bin%",                 // dangling after a valid route
    ];
    for path in invalid {
        let r = server.get(path, &[("origin", ORIGIN)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.header("access-control-allow-origin"), ORIGIN, "{path}");
    }
    // Valid but tricky encodings decode once and are ordinary lookups.
    for (path, status) in [
        ("/var/%252e%252e%252fetc.values.f32", StatusCode::NOT_FOUND), // double-encoded
        ("/var/HES4%2evalues%2ef32", StatusCode::OK),                  // encoded dots
        ("/var/%48%45%53%34.values.f32", StatusCode::OK),              // encoded letters
        ("/var/HES4.values.f32%00", StatusCode::NOT_FOUND),
        ("/var/HES4.values.f32%20", StatusCode::NOT_FOUND),
        ("/var/+HES4.values.f32", StatusCode::NOT_FOUND), // `+` is not a space
    ] {
        let r = server.get(path, &[]).await;
        assert_eq!(r.status, status, "{path}");
    }
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn huge_and_numerous_headers_never_5xx() {
    let server = pbmc().await;
    // Large but within hyper's limits: parsed by our own header logic, answered normally.
    let accept = vec!["br;q=0.1"; 8000].join(", ") + ", gzip";
    let inm = (0..4000)
        .map(|i| format!("\"etag-{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let origin = format!("https://{}.example", "a".repeat(30_000));
    for (name, value) in [
        ("accept-encoding", accept.as_str()),
        ("if-none-match", inm.as_str()),
        ("origin", origin.as_str()),
        ("x-filler", &"z".repeat(60_000)),
    ] {
        let r = server
            .try_request(Method::GET, "/points_3d.bin", &[(name, value)])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status, StatusCode::OK, "{name} of {} bytes", value.len());
        assert_eq!(
            r.decoded().unwrap(),
            golden_body("pbmc68k", "points_3d.bin"),
            "{name}"
        );
    }
    // Beyond hyper's limits: 431 (or the connection is closed), never a 5xx.
    let one_huge = format!(
        "GET /points_3d.bin HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /points_3d.bin HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    for (request, what) in [(one_huge, "1 MiB header"), (many, "500 headers")] {
        let (statuses, _) = exchange_all(server.addr, request.as_bytes()).await;
        assert_no_5xx(&statuses, what);
        assert!(
            statuses.iter().all(|s| *s == 431),
            "{what}: expected 431, got {statuses:?}"
        );
    }
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn method_confusion_is_4xx_and_never_desynchronises() {
    let server = pbmc().await;
    let health_then = |first: &str| {
        format!("{first}GET /_cellucid/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    };
    // A body on GET/HEAD is never parsed as a request: the request is answered and the body
    // skipped or the connection closed — a smuggled `GET /points_3d.bin` inside it is never
    // answered (no octet-stream response appears).
    let smuggled = "GET /points_3d.bin HTTP/1.1\r\nHost: y\r\n\r\n";
    for first in [
        format!(
            "GET /_cellucid/health HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
        format!(
            "HEAD /_cellucid/health HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
        format!(
            "GET /_cellucid/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
    ] {
        let (statuses, text) = exchange_all(server.addr, health_then(&first).as_bytes()).await;
        assert_eq!(statuses.first(), Some(&200), "{first:?}");
        assert!(
            statuses.len() <= 2 && statuses.iter().all(|s| *s == 200),
            "{first:?}: {statuses:?}"
        );
        assert!(
            !text.contains("application/octet-stream"),
            "{first:?}: the smuggled request was answered"
        );
    }
    // Ambiguous framing (duplicate lengths, length plus chunked, unknown codings) is refused
    // (400) or answered once with the connection closed: nothing after it is interpreted.
    for first in [
        "GET /_cellucid/health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        "GET /_cellucid/health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /_cellucid/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        "GET /_cellucid/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
    ] {
        let (statuses, _) = exchange_all(server.addr, health_then(first).as_bytes()).await;
        assert_no_5xx(&statuses, first);
        assert!(
            statuses.first().is_none_or(|s| *s == 400 || *s == 200) && statuses.len() <= 1,
            "{first:?}: {statuses:?}"
        );
    }
    // Methods that are not GET/HEAD/OPTIONS: 405 with Allow (or 400 when not a method at
    // all). TRACE never echoes the request.
    for (request, expect) in [
        (
            "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n",
            405,
        ),
        ("CONNECT /points_3d.bin HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (
            "TRACE /points_3d.bin HTTP/1.1\r\nHost: x\r\nX-Secret: hunter2\r\n\r\n",
            405,
        ),
        ("FOO /points_3d.bin HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        ("get /points_3d.bin HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        ("PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (
            "POST /points_3d.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            405,
        ),
        ("G(T /points_3d.bin HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET\t/points_3d.bin HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ] {
        let request = request.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        let (statuses, text) = exchange_all(server.addr, request.as_bytes()).await;
        assert_no_5xx(&statuses, &request);
        let method = request.split(' ').next().unwrap_or_default();
        let status = statuses.first().copied().unwrap_or_default();
        if expect == 405 {
            assert_eq!(status, 405, "{method}: {text:.300}");
        } else {
            // Not a usable request: some 4xx (hyper's 400, or our 405).
            assert!((400..500).contains(&status), "{method}: {text:.300}");
        }
        assert!(
            !text.contains("hunter2"),
            "{method} echoed a request header"
        );
        if expect == 405 {
            assert!(
                text.to_ascii_lowercase()
                    .contains("allow: get, head, options")
            );
        }
    }
    // Unusual targets.
    let long_method = format!(
        "{} /points_3d.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "X".repeat(4000)
    );
    for request in [
        "GET http://evil.example/points_3d.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "GET https://evil.example/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "GET //evil.example/points_3d.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "GET /points_3d.bin HTTP/1.0\r\n\r\n".to_string(),
        "GET /points_3d.bin\r\n\r\n".to_string(),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\ngarbage-not-a-frame".to_string(),
        long_method,
    ] {
        let (statuses, _) = exchange_all(server.addr, request.as_bytes()).await;
        assert_no_5xx(&statuses, &request[..request.len().min(60)]);
    }
    // Absolute-form is routed by its path; an escape attempt in it is a 4xx.
    let (statuses, _) = exchange_all(
        server.addr,
        b"GET http://evil.example/points_3d.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses, vec![200]);
    let (statuses, _) = exchange_all(
        server.addr,
        b"GET https://evil.example/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        statuses.iter().all(|s| (400..500).contains(s)),
        "{statuses:?}"
    );
    assert_still_serving(&server).await;
    server.stop().await;
}
