//! `precompute` on local files: the out-of-core transposition of CSR X with many row blocks
//! and many gene blocks serves every gene byte-identical to the reference goldens, from the
//! pack alone (CSR scans are forbidden), and a second run is a no-op.

mod common;

use std::path::Path;
use std::sync::Arc;

use cellucid_edge::cache::precompute::{PrecomputeOptions, precompute};
use cellucid_edge::cache::{ArtifactCache, fingerprint};
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::DatasetOptions;
use cellucid_edge::http::AppConfig;
use cellucid_edge::store::{ReadMetrics, open_store_url};
use common::{TestServer, compare_body, fixture_store, golden_body, golden_meta, quote_route};
use indicatif::{MultiProgress, ProgressDrawTarget};

/// The `edge` fixture in zarr `version` (CSR scans allowed up to `scan_limit` stored values) and
/// a cache prefix in `cache_dir`.
async fn open_edge(version: &str, scan_limit: u64, cache_dir: &Path) -> (Catalog, ArtifactCache) {
    let store = fixture_store("edge", version);
    let options = DatasetOptions {
        csr_scan_max_nnz: scan_limit,
        ..DatasetOptions::default()
    };
    let catalog = Catalog::open(
        common::location(store.to_str().unwrap()),
        &options,
        Arc::new(ReadMetrics::default()),
    )
    .await
    .expect("open edge");
    let cache = ArtifactCache::new(
        &open_store_url(cache_dir.to_str().unwrap()).unwrap(),
        Arc::new(ReadMetrics::default()),
    );
    (catalog, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_pack_in_small_blocks_matches_the_goldens() {
    for version in ["v2", "v3"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir_all(&cache_dir).unwrap();
        let spill = dir.path().join("spill");
        std::fs::create_dir_all(&spill).unwrap();
        let (catalog, cache) = open_edge(version, 0, &cache_dir).await;
        let dataset = catalog.first().clone();
        let fp = fingerprint(&dataset);
        let run = PrecomputeOptions {
            jobs: 3,
            // 480 cells × 4 bytes × 7 genes per block → 18 gene blocks of 120 genes.
            memory_budget: 3 * 480 * 4 * 7,
            row_block_nnz: 500,
            spill_dir: spill.clone(),
            ..PrecomputeOptions::default()
        };
        let hidden = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        let first = precompute(dataset.clone(), &cache, &fp, &run, &hidden)
            .await
            .expect("precompute");
        assert_eq!(first.genes_packed, 120);
        assert!(first.written > 10, "{first:?}");
        // Spill files are removed.
        assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
        let second = precompute(dataset.clone(), &cache, &fp, &run, &hidden)
            .await
            .expect("second precompute");
        assert_eq!(second.written, 0, "{second:?}");
        assert!(second.gene_pack_existed);

        let server = TestServer::start_with(
            catalog,
            AppConfig {
                cache: Some(cache),
                ..AppConfig::default()
            },
        )
        .await;
        let mut genes = 0;
        for g in golden_meta("edge") {
            if !g.route.starts_with("var/") || g.status != 200 {
                continue;
            }
            let r = server.get_viewer(&quote_route(&g.route)).await;
            assert_eq!(
                r.status,
                200,
                "{}: {}",
                g.route,
                String::from_utf8_lossy(&r.body)
            );
            let body = r.decoded().expect("gzip body");
            if let Some(diff) = compare_body(&g.route, &golden_body("edge", &g.route), &body) {
                panic!("edge.{version} {}: {diff}", g.route);
            }
            genes += 1;
        }
        assert!(genes >= 5, "only {genes} gene goldens checked");
        server.stop().await;
    }
}

/// A gene request on a small CSR X with a cache prefix but no pack: served by a scan, and the
/// pack is built once in the background; later genes are one GET of the pack, byte-identical to
/// the reference. A CSR X over the scan limit never starts a build (it needs `precompute`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_csr_x_is_packed_on_demand_and_large_x_is_not() {
    for (scan_limit, builds) in [(u64::MAX, true), (0, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir_all(&cache_dir).unwrap();
        let (catalog, cache) = open_edge("v3", scan_limit, &cache_dir).await;
        let fp = fingerprint(catalog.first());
        let server = TestServer::start_with(
            catalog,
            AppConfig {
                cache: Some(cache),
                gene_pack_on_demand: true,
                ..AppConfig::default()
            },
        )
        .await;
        let genes: Vec<_> = golden_meta("edge")
            .into_iter()
            .filter(|g| g.route.starts_with("var/GENE") && g.status == 200)
            .collect();
        let first = server.get_viewer(&quote_route(&genes[0].route)).await;
        let index = cache_dir.join(&fp).join(cellucid_edge::cache::PACK_INDEX);
        if !builds {
            assert_eq!(first.status, 503, "over the scan limit: precompute needed");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            assert!(!index.exists(), "no pack may be built over the scan limit");
            server.stop().await;
            continue;
        }
        assert_eq!(first.status, 200);
        assert!(
            first.header("server-timing").contains("computed"),
            "{}",
            first.header("server-timing")
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !index.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the pack was not built on demand"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The first of them also reads the pack index (once per process).
        for (i, g) in genes[1..].iter().enumerate() {
            let r = server.get_viewer(&quote_route(&g.route)).await;
            assert_eq!(r.status, 200, "{}", g.route);
            let timing = r.header("server-timing");
            assert!(
                timing.contains("cache;desc=\"cache\"")
                    && timing.contains(if i == 0 { "gets=2 " } else { "gets=1 " }),
                "{}: {timing}",
                g.route
            );
            let body = r.decoded().expect("gzip body");
            if let Some(diff) = compare_body(&g.route, &golden_body("edge", &g.route), &body) {
                panic!("{}: {diff}", g.route);
            }
        }
        server.stop().await;
    }
}
