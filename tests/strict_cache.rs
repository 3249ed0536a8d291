//! The strict profile with the cache prefix: `precompute` builds the strict-only artifacts
//! (documents, quantised manifests and obs payloads) through its strict hook, shares everything
//! else with the seed (no strict copy of a float32 payload, no per-gene object besides the
//! gene-major pack), and afterwards every strict request is one GET of the cache prefix —
//! quantised genes included, which are derived from the float32 gene in the pack.

mod common;

use std::sync::Arc;

use cellucid_edge::cache::precompute::{PrecomputeOptions, precompute};
use cellucid_edge::cache::{ArtifactCache, fingerprint};
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::{DatasetContext, DatasetOptions};
use cellucid_edge::model::quantize::{QuantBits, QuantRange, quantize};
use cellucid_edge::protocol::strict::StrictConfig;
use cellucid_edge::service::Config as AppConfig;
use cellucid_edge::store::ReadMetrics;
use common::{Resp, TestServer, files_below, fixture_store, location};
use indicatif::{MultiProgress, ProgressDrawTarget};

/// A catalogue of `atlas` that refuses to scan CSR X (so genes and gene ranges can only come
/// from the cache prefix).
async fn catalog(atlas: &str) -> Catalog {
    let options = DatasetOptions {
        csr_scan_max_nnz: 1,
        ..DatasetOptions::default()
    };
    let url = fixture_store(atlas, "v3");
    Catalog::open(
        location(url.to_str().expect("utf-8")),
        &options,
        &DatasetContext::default(),
    )
    .await
    .expect("open fixture")
}

fn cache_at(dir: &std::path::Path) -> ArtifactCache {
    ArtifactCache::new(
        &location(dir.to_str().expect("utf-8")),
        Arc::new(ReadMetrics::default()),
    )
}

fn store_gets(r: &Resp) -> Option<u64> {
    let timing = r.header("server-timing");
    let start = timing.find("gets=")? + 5;
    timing[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn outcome(r: &Resp) -> &str {
    let timing = r.header("server-timing");
    timing
        .split("cache;desc=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("")
}

async fn serve(catalog: Catalog, cache: &std::path::Path, bits: Option<QuantBits>) -> TestServer {
    TestServer::start_with(
        catalog,
        AppConfig {
            cache: Some(cache_at(cache)),
            strict: StrictConfig { quantize: bits },
            ..AppConfig::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_precompute_every_strict_request_is_one_get_and_nothing_is_stored_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_dir = dir.path().join("cache");
    std::fs::create_dir_all(&cache_dir).expect("cache dir");
    let atlas = catalog("edge").await;
    let dataset = atlas.first().clone();
    let fp = fingerprint(&dataset);

    // Before precompute, a quantised var manifest of a CSR X above the scan limit is refused
    // like a gene is (it needs every gene's range).
    let server = serve(atlas.clone(), &cache_dir, Some(QuantBits::U8)).await;
    let refused = server.get_viewer("/strict/var_manifest.json").await;
    assert_eq!(
        refused.status,
        503,
        "{:?}",
        String::from_utf8_lossy(&refused.body)
    );
    server.stop().await;

    let options = PrecomputeOptions {
        jobs: 2,
        spill_dir: dir.path().to_path_buf(),
        strict: StrictConfig {
            quantize: Some(QuantBits::U8),
        },
        ..PrecomputeOptions::default()
    };
    let hidden = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    let summary = precompute(
        dataset.clone(),
        &cache_at(&cache_dir),
        &fp,
        &options,
        &hidden,
    )
    .await
    .expect("precompute");
    assert!(
        summary
            .refused
            .iter()
            .all(|(k, _)| !k.starts_with("strict/q8")),
        "{summary:?}"
    );

    let files: Vec<String> = files_below(&cache_dir.join(&fp))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for expected in [
        "strict/dataset_identity.json",
        "strict/obs_manifest.json",
        "strict/var_manifest.json",
        "strict/q8/obs_manifest.json",
        "strict/q8/var_manifest.json",
        "genes/blocks/000000.bin",
        "genes/pack.index",
    ] {
        assert!(
            files.contains(&expected.to_string()),
            "{expected} missing: {files:?}"
        );
    }
    // Float32 payloads exist once, under the seed's keys; quantised genes are not stored.
    assert!(
        files
            .iter()
            .filter(|f| f.starts_with("strict/"))
            .all(|f| !f.ends_with(".f32") && !f.contains("/var/")),
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f.starts_with("var/")), "{files:?}");

    // A fresh process: each strict document and payload is one GET of the cache prefix.
    for bits in [None, Some(QuantBits::U8)] {
        let server = serve(catalog("edge").await, &cache_dir, bits).await;
        let ext = bits.map_or("f32", QuantBits::ext);
        let var = server.get_viewer("/strict/var_manifest.json").await;
        let obs = server.get_viewer("/strict/obs_manifest.json").await;
        let identity = server.get_viewer("/strict/dataset_identity.json").await;
        for (name, r) in [("var", &var), ("obs", &obs), ("identity", &identity)] {
            assert_eq!(r.status, 200, "{name} {bits:?}");
            assert_eq!(
                (outcome(r), store_gets(r)),
                ("cache", Some(1)),
                "{name} {bits:?}"
            );
        }
        let obs = obs.json();
        let var = var.json();
        let continuous = obs["_continuousFields"][0][0]
            .as_u64()
            .expect("a continuous field");
        let payload = server
            .get_viewer(&format!("/strict/obs/{continuous}.values.{ext}"))
            .await;
        assert_eq!(
            (payload.status.as_u16(), store_gets(&payload)),
            (200, Some(1))
        );
        // The first gene of a process also reads the pack's index (once per process, like the
        // root's); every gene after it is exactly one ranged GET.
        let first = server
            .get_viewer(&format!("/strict/var/1.values.{ext}"))
            .await;
        assert_eq!((first.status.as_u16(), store_gets(&first)), (200, Some(2)));
        for gene in [0usize, 8, 17, 119] {
            let r = server
                .get_viewer(&format!("/strict/var/{gene}.values.{ext}"))
                .await;
            assert_eq!(r.status, 200, "gene {gene} {bits:?}");
            assert_eq!(
                store_gets(&r),
                Some(1),
                "gene {gene} {bits:?}: one GET of the pack"
            );
            if let Some(bits) = bits {
                // Derived from the float32 gene in the pack, with the manifest's bounds.
                let f32_gene = server
                    .get_viewer(&format!("/strict/var/{gene}.values.f32"))
                    .await;
                assert_eq!(f32_gene.status, 404, "only the served width exists");
                let seed = serve(catalog("edge").await, &cache_dir, None).await;
                let values: Vec<f32> = seed
                    .get_viewer(&format!("/strict/var/{gene}.values.f32"))
                    .await
                    .decoded()
                    .expect("body")
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                seed.stop().await;
                let range = QuantRange::of(&values);
                let tuple = &var["fields"][gene];
                assert_eq!(
                    (tuple[2].as_f64(), tuple[3].as_f64()),
                    (Some(range.min), Some(range.max)),
                    "gene {gene}: manifest bounds"
                );
                assert_eq!(
                    r.decoded().expect("body"),
                    quantize(&values, range, bits),
                    "gene {gene}"
                );
            }
        }
        server.stop().await;
    }
}
