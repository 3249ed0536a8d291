//! Front-door fuzzing: arbitrary method, path (route-shaped for both protocols, or raw bytes),
//! share-token prefix and headers → `Service::handle` — the entry point every transport calls,
//! gate included — over the embedded demo atlas: public, private (share secret) and behind the
//! Host rule of a loopback bind. Properties: never a panic, never a 5xx for client-side
//! garbage (but the 0.9 contract's 501 and viewer-UI 503), a body always delivered whole, HEAD
//! without a body, every response with CORS headers, a private service refusing every path of
//! every protocol without a valid token, and a loopback service refusing (421) every host that
//! does not name it.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use bytes::Bytes;
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::DatasetOptions;
use cellucid_edge::service::host::HostCheck;
use cellucid_edge::service::{Config, Service};
use cellucid_edge::share::{self, ShareSecret};
use cellucid_edge::store::ReadMetrics;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";

const ROUTES: &[&str] = &[
    "/",
    "/_cellucid/health",
    "/_cellucid/info",
    "/_cellucid/datasets",
    "/dataset_identity.json",
    "/obs_manifest.json",
    "/var_manifest.json",
    "/connectivity_manifest.json",
    "/points_1d.bin",
    "/points_2d.bin",
    "/points_3d.bin",
    "/points_3d.bin.gz",
    "/obs/louvain.codes.u8",
    "/obs/louvain.outliers.f32",
    "/obs/bulk_labels.codes.u8",
    "/obs/n_counts.values.f32",
    "/var/HES4.values.f32",
    "/var/CD2.values.f32",
    "/connectivity/edges.src.bin",
    "/connectivity/edges.dst.bin",
    "/vectors/velocity_umap_2d.bin",
    "/vectors/velocity_umap_2d.bin.gz",
    "/pbmc68k_reduced/points_2d.bin",
    "/pbmc68k_reduced/_cellucid/health",
    "/v0.9",
    "/v0.9/_cellucid/health",
    "/v0.9/_cellucid/datasets",
    "/v0.9/_cellucid/anndata/pbmc68k_reduced.zarr/zarr.json",
    "/v0.9/_cellucid/anndata/pbmc68k_reduced.zarr/X/c/0/0",
    "/v0.9/pbmc68k_reduced/_cellucid/anndata/pbmc68k_reduced.zarr/obs/louvain/codes/c/0",
    "/strict/_cellucid/health",
];

struct World {
    runtime: tokio::runtime::Runtime,
    public: Service,
    private: Service,
    loopback: Service,
    token: String,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let open = |share: Option<ShareSecret>, host_rule: Option<HostCheck>| {
            runtime.block_on(async {
                let location = cellucid_edge::demo::demo_location().await.expect("demo");
                let catalog = Catalog::open(
                    location,
                    &DatasetOptions::default(),
                    Arc::new(ReadMetrics::default()),
                )
                .await
                .expect("demo catalogue");
                let config = Config {
                    memory_cache_bytes: 32 << 20,
                    share,
                    host_rule,
                    ..Config::default()
                };
                Service::new(catalog, config).expect("the demo mounts")
            })
        };
        let secret = ShareSecret::new(SECRET.to_vec()).expect("secret");
        let token = share::issue_for(
            &secret,
            SystemTime::now(),
            Duration::from_secs(365 * 86400),
            None,
        );
        World {
            public: open(None, None),
            private: open(Some(secret), None),
            loopback: open(None, HostCheck::for_bind([127, 0, 0, 1].into(), 8765, &[])),
            token,
            runtime,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum MethodChoice {
    Get,
    Head,
    Options,
    Post,
    Put,
    Delete,
    Patch,
    Connect,
    Trace,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Shape {
    /// A known route.
    Route,
    /// A known route with fuzz text appended.
    Suffix,
    /// Fuzz text, then a known route.
    Prefix,
    /// The fuzz text replaces the last segment's stem.
    Stem,
    /// Raw bytes as the whole request target.
    Raw,
}

#[derive(Arbitrary, Debug)]
enum TokenChoice {
    None,
    Valid,
    Fuzzed(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: MethodChoice,
    route: u8,
    shape: Shape,
    text: String,
    raw: Vec<u8>,
    token: TokenChoice,
    service: ServiceChoice,
    headers: Vec<(String, Vec<u8>)>,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceChoice {
    Public,
    Private,
    Loopback,
}

fuzz_target!(|input: Input| {
    let world = world();
    let route = ROUTES[usize::from(input.route) % ROUTES.len()];
    let path: Vec<u8> = match input.shape {
        Shape::Route => route.as_bytes().to_vec(),
        Shape::Suffix => format!("{route}{}", input.text).into_bytes(),
        Shape::Prefix => format!("/{}{route}", input.text).into_bytes(),
        Shape::Stem => {
            let (dir, name) = route.rsplit_once('/').unwrap_or(("", route));
            let ext = name.split_once('.').map(|(_, e)| e).unwrap_or("");
            format!("{dir}/{}.{ext}", input.text).into_bytes()
        }
        Shape::Raw => input.raw.clone(),
    };
    let with_token = |token: &str| {
        let mut p = format!("/s/{token}").into_bytes();
        p.extend_from_slice(&path);
        p
    };
    let target = match &input.token {
        TokenChoice::None => path.clone(),
        TokenChoice::Valid => with_token(&world.token),
        TokenChoice::Fuzzed(t) => with_token(t),
    };
    // What hyper would refuse never reaches the App.
    let Ok(uri) = http::Uri::from_maybe_shared(Bytes::from(target)) else {
        return;
    };
    let method = match &input.method {
        MethodChoice::Get => Method::GET,
        MethodChoice::Head => Method::HEAD,
        MethodChoice::Options => Method::OPTIONS,
        MethodChoice::Post => Method::POST,
        MethodChoice::Put => Method::PUT,
        MethodChoice::Delete => Method::DELETE,
        MethodChoice::Patch => Method::PATCH,
        MethodChoice::Connect => Method::CONNECT,
        MethodChoice::Trace => Method::TRACE,
        MethodChoice::Other(m) => match Method::from_bytes(m.as_bytes()) {
            Ok(m) => m,
            Err(_) => return,
        },
    };
    let mut request = Request::new(());
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    for (name, value) in input.headers.iter().take(16) {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            request.headers_mut().append(n, v);
        }
    }
    let service = match input.service {
        ServiceChoice::Public => &world.public,
        ServiceChoice::Private => &world.private,
        ServiceChoice::Loopback => &world.loopback,
    };
    let shown = format!("{method} {:?}", request.uri());
    let host_passes = {
        let check = HostCheck::for_bind([127, 0, 0, 1].into(), 8765, &[]).expect("loopback");
        check.allows_request(&request)
    };
    let (response, body) = world.runtime.block_on(async {
        let (parts, body) = service.handle(request).await.into_parts();
        (parts, body.collect().await)
    });
    let status = response.status;
    let body = body.unwrap_or_else(|e| panic!("{shown}: body not delivered whole: {e}"));
    // The 0.9 contract's own 5xx (protocol-0.9.md §1.1): 501 for methods it does not know,
    // 503 for its viewer UI, which a data server does not carry (a HEAD says so by length).
    let says = |message: &str| {
        if method == Method::HEAD {
            response
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                == Some(message.len().to_string().as_str())
        } else {
            body == message.as_bytes()
        }
    };
    let contract_5xx = (status == StatusCode::NOT_IMPLEMENTED && says("Unsupported method"))
        || (status == StatusCode::SERVICE_UNAVAILABLE && says("Cellucid viewer UI unavailable"));
    assert!(
        !status.is_server_error() || contract_5xx,
        "{shown}: status {status}"
    );
    assert!(
        response
            .headers
            .contains_key(http::header::ACCESS_CONTROL_ALLOW_METHODS)
    );
    if method == Method::HEAD {
        assert!(body.is_empty(), "HEAD with a body");
    }
    if input.service == ServiceChoice::Loopback && !host_passes {
        assert_eq!(
            status,
            StatusCode::MISDIRECTED_REQUEST,
            "{shown}: served to a foreign host"
        );
    }
    if input.service == ServiceChoice::Private && !matches!(input.token, TokenChoice::Valid) {
        // A fuzzed token is valid only if it is the real one (or the real one plus text the
        // path parser cuts at `/` or `?`).
        let forged = match &input.token {
            TokenChoice::Fuzzed(t) => !t.starts_with(&world.token),
            _ => true,
        };
        if forged {
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "private service served {shown} without a valid token"
            );
        }
    }
});
