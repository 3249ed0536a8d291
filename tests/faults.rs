//! Fault injection: the source store (and the cache prefix) wrapped in `FaultyStore`, served by
//! the real server. A failing, slow, hung or truncating store gives a clear 503 with
//! `Retry-After` (never a 500, a hung request or wrong bytes), nothing failed or partial is
//! cached (neither in memory nor in the cache prefix), and the next request after the fault
//! clears is answered correctly.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cellucid_edge::cache::ArtifactCache;
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::{DatasetContext, DatasetOptions};
use cellucid_edge::http::AppConfig;
use cellucid_edge::store::{Fault, FaultRule, FaultyStore, KeyMatch, ReadMetrics, StoreLocation};
use common::{
    ORIGIN, Resp, TestServer, files_below, fixture_store, golden_body, gunzip, location,
    quote_route,
};
use http::StatusCode;

const ROUTES: [&str; 6] = [
    "var/HES4.values.f32",
    "obs/louvain.codes.u8",
    "obs/n_counts.values.f32",
    "points_2d.bin",
    "connectivity/edges.src.bin",
    "obs/bulk_labels.outliers.f32",
];

/// A server over the pbmc68k v3 fixture whose source store is a `FaultyStore` (no faults
/// yet), optionally with a cache prefix (whose store may itself be faulty).
struct Rig {
    server: TestServer,
    source: Arc<FaultyStore>,
}

fn faulty(url: &str) -> (StoreLocation, Arc<FaultyStore>) {
    let mut loc = location(url);
    let faulty = Arc::new(FaultyStore::new(loc.store.clone()));
    loc.store = faulty.clone();
    (loc, faulty)
}

async fn rig(config: AppConfig) -> Rig {
    let (loc, source) = faulty(fixture_store("pbmc68k", "v3").to_str().unwrap());
    let catalog = Catalog::open(loc, &DatasetOptions::default(), &DatasetContext::default())
        .await
        .expect("open through FaultyStore without faults");
    Rig {
        server: TestServer::start_with(catalog, config).await,
        source,
    }
}

async fn get(server: &TestServer, route: &str) -> Resp {
    server
        .get(
            &quote_route(route),
            &[("accept-encoding", "gzip"), ("origin", ORIGIN)],
        )
        .await
}

/// How the artifact was obtained (`memory`, `cache`, `computed`), from `Server-Timing`.
fn outcome(r: &Resp) -> &str {
    let timing = r.header("server-timing");
    ["memory", "cache", "computed"]
        .into_iter()
        .find(|o| timing.contains(&format!("cache;desc=\"{o}\"")))
        .unwrap_or("")
}

fn assert_retry_later(r: &Resp, what: &str) {
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
    let retry: u64 = r
        .header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {:?}", r.header("retry-after")));
    assert!(retry >= 1, "{what}");
    assert_eq!(r.header("access-control-allow-origin"), ORIGIN, "{what}");
    assert_eq!(r.header("cache-control"), "no-store", "{what}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("retry"),
        "{what}: body {:?}",
        String::from_utf8_lossy(&r.body)
    );
}

fn assert_golden(r: &Resp, route: &str) {
    assert_eq!(r.status, StatusCode::OK, "{route}");
    let body = r.decoded().unwrap();
    let golden = golden_body("pbmc68k", route);
    assert!(
        common::compare_body(route, &golden, &body).is_none(),
        "{route}: wrong bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_errors_and_damaged_bodies_are_503_and_never_cached() {
    for fault in [Fault::Error, Fault::Truncate, Fault::Interrupt] {
        let rig = rig(AppConfig::default()).await;
        rig.source.inject(FaultRule::always(fault.clone()));
        for route in ROUTES {
            let r = get(&rig.server, route).await;
            assert_retry_later(&r, &format!("{fault:?} {route}"));
        }
        assert!(rig.source.injected() >= ROUTES.len() as u64, "{fault:?}");
        // Still failing: nothing from the failed attempts was remembered as a success.
        let r = get(&rig.server, ROUTES[0]).await;
        assert_retry_later(&r, &format!("{fault:?} again"));

        rig.source.clear();
        for route in ROUTES {
            let r = get(&rig.server, route).await;
            assert_golden(&r, route);
            assert_eq!(outcome(&r), "computed", "{fault:?} {route}: first success");
            let again = get(&rig.server, route).await;
            assert_golden(&again, route);
            assert_eq!(outcome(&again), "memory", "{fault:?} {route}");
        }
        rig.server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_prefix_never_stores_a_failed_or_partial_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_loc = location(dir.path().to_str().unwrap());
    let config = AppConfig {
        cache: Some(ArtifactCache::new(
            &cache_loc,
            Arc::new(ReadMetrics::default()),
        )),
        ..AppConfig::default()
    };
    let rig = rig(config).await;
    // Only the X chunks and the obsm chunks fail: metadata reads succeed, so the computation
    // gets far before the body is cut short.
    rig.source
        .inject(FaultRule::always(Fault::Truncate).on(KeyMatch::Contains("/c/".into())));
    for route in ROUTES {
        assert_retry_later(&get(&rig.server, route).await, route);
    }
    assert!(
        files_below(dir.path()).is_empty(),
        "a failed computation wrote {:?}",
        files_below(dir.path())
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    );
    rig.source.clear();
    for route in ROUTES {
        assert_golden(&get(&rig.server, route).await, route);
    }
    // Now the cache prefix holds complete gzip artifacts (genes go to the gene pack, which
    // precompute builds; they are not written one by one).
    let written = files_below(dir.path());
    assert_eq!(written.len(), ROUTES.len() - 1, "{written:?}");
    for (key, bytes) in &written {
        let body = gunzip(bytes).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(
            ROUTES.iter().any(|route| common::compare_body(
                route,
                &golden_body("pbmc68k", route),
                &body
            )
            .is_none()),
            "cache object {key} is none of the artifacts served"
        );
    }
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_cache_prefix_falls_back_to_the_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache_loc, cache_store) = faulty(dir.path().to_str().unwrap());
    let make_config = || AppConfig {
        cache: Some(ArtifactCache::new(
            &cache_loc,
            Arc::new(ReadMetrics::default()),
        )),
        ..AppConfig::default()
    };
    // Fill the cache prefix.
    let warm = rig(make_config()).await;
    for route in ROUTES {
        assert_golden(&get(&warm.server, route).await, route);
    }
    warm.server.stop().await;
    assert!(!files_below(dir.path()).is_empty());

    for fault in [Fault::Error, Fault::Truncate, Fault::Interrupt] {
        // A cold process (empty memory cache) whose cache prefix misbehaves on every call,
        // writes included: every answer still comes, correct, from the source.
        let cold = rig(make_config()).await;
        cache_store.clear();
        cache_store.inject(FaultRule::always(fault.clone()).including_writes());
        let before = cache_store.injected();
        for route in ROUTES {
            let r = get(&cold.server, route).await;
            assert_golden(&r, route);
            assert_eq!(outcome(&r), "computed", "{fault:?} {route}");
        }
        assert!(cache_store.injected() > before, "{fault:?} was injected");
        cold.server.stop().await;
    }
    // Healthy again: a cold process answers from the cache prefix.
    cache_store.clear();
    let cold = rig(make_config()).await;
    let r = get(&cold.server, "points_2d.bin").await;
    assert_golden(&r, "points_2d.bin");
    assert_eq!(outcome(&r), "cache");
    cold.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_never_hangs_a_request() {
    let deadline = Duration::from_millis(500);
    let rig = rig(AppConfig {
        request_timeout: deadline,
        ..AppConfig::default()
    })
    .await;
    rig.source.inject(FaultRule::always(Fault::Hang));
    for route in ROUTES {
        let started = Instant::now();
        let r = get(&rig.server, route).await;
        let took = started.elapsed();
        assert_retry_later(&r, &format!("hang {route}"));
        assert!(
            took >= deadline && took < deadline * 10,
            "{route}: answered after {took:?} (deadline {deadline:?})"
        );
    }
    // Health needs no store: it answers while the store hangs.
    let r = rig.server.get("/_cellucid/health", &[]).await;
    assert_eq!(r.status, StatusCode::OK);

    // Slow but within the deadline: served; slower than the deadline: 503.
    rig.source.clear();
    rig.source.inject(
        FaultRule::always(Fault::Latency(Duration::from_millis(5)))
            .on(KeyMatch::Contains("obs".into())),
    );
    assert_golden(
        &get(&rig.server, "obs/phase.codes.u8").await,
        "obs/phase.codes.u8",
    );
    rig.source.clear();
    rig.source
        .inject(FaultRule::always(Fault::Latency(Duration::from_secs(2))));
    assert_retry_later(&get(&rig.server, "var/CD2.values.f32").await, "latency");

    rig.source.clear();
    for route in ROUTES {
        let r = get(&rig.server, route).await;
        assert_golden(&r, route);
        assert_eq!(
            outcome(&r),
            "computed",
            "{route}: the hung attempt cached nothing"
        );
    }
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intermittent_faults_recover_on_the_next_request() {
    let rig = rig(AppConfig::default()).await;
    // The next two reads fail: the request that meets them gets a 503, the next one succeeds.
    rig.source.inject(FaultRule::always(Fault::Error).times(2));
    let first = get(&rig.server, "var/HES4.values.f32").await;
    assert_retry_later(&first, "first");
    let mut tries = 1;
    loop {
        let r = get(&rig.server, "var/HES4.values.f32").await;
        tries += 1;
        if r.status == StatusCode::OK {
            assert_golden(&r, "var/HES4.values.f32");
            break;
        }
        assert_retry_later(&r, "retry");
        assert!(tries <= 3, "still failing after {tries} tries");
    }
    assert_eq!(rig.source.injected(), 2);

    // One read in five fails, at random (fixed seed): every answer is either right or a 503,
    // and a client that retries on 503 gets every artifact right.
    rig.source
        .inject(FaultRule::always(Fault::Error).with_probability(0.2));
    let genes = [
        "CD2", "ACAA2", "BAD", "DEK", "TKT", "TCP1", "HSPB1", "NEDD8",
    ];
    let mut unavailable = 0;
    for gene in genes {
        let route = format!("var/{gene}.values.f32");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let r = get(&rig.server, &route).await;
            if r.status == StatusCode::OK {
                assert_golden(&r, &route);
                break;
            }
            assert_retry_later(&r, &route);
            unavailable += 1;
            assert!(attempts < 30, "{route}: no success in {attempts} attempts");
        }
    }
    assert!(rig.source.injected() > 2, "probabilistic faults fired");
    println!(
        "intermittent: {} faults injected, {unavailable} requests answered 503",
        rig.source.injected()
    );
    rig.server.stop().await;
}

/// A store the server may not read (PermissionDenied) is a permanent failure: 500, without
/// `Retry-After` (a client told to retry would retry for ever) — decided on the error's
/// variant, whatever its text says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_denied_is_a_500_never_a_503_for_ever() {
    let rig = rig(AppConfig::default()).await;
    rig.source.inject(FaultRule::always(Fault::Denied));
    for route in ROUTES {
        for attempt in 0..2 {
            let r = get(&rig.server, route).await;
            assert_eq!(
                r.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{route} #{attempt}"
            );
            assert!(
                !r.has("retry-after"),
                "{route}: Retry-After on a permanent failure"
            );
            assert_eq!(r.header("access-control-allow-origin"), ORIGIN, "{route}");
        }
    }
    // Transient failures (network, 5xx, a body cut short) still ask for a retry.
    rig.source.clear();
    rig.source
        .inject(FaultRule::always(Fault::Error).on(KeyMatch::Contains("X/".into())));
    assert_retry_later(
        &get(&rig.server, "var/HES4.values.f32").await,
        "store error",
    );
    rig.source.clear();
    assert_golden(
        &get(&rig.server, "var/HES4.values.f32").await,
        "var/HES4.values.f32",
    );
    rig.server.stop().await;
}
