//! One memory budget for the whole process: every atlas of a catalogue keeps its buffers
//! (embeddings, obs columns, latent space, edges, gene index, documents) and the HTTP layer its
//! rendered artifacts in the same byte-weighted LRU. Under a budget far smaller than the
//! catalogue's working set every answer stays right (evicted buffers are recomputed), and what
//! is held never exceeds the budget, however many atlases there are.

mod common;

use std::sync::Arc;

use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::{DatasetContext, DatasetOptions};
use cellucid_edge::memory::{BudgetUsage, MemoryBudget};
use cellucid_edge::service::{Config, Service};
use common::transport::{InProcess, TestTransport};
use common::{
    ATLASES, compare_body, copy_dir, fixture_store, golden_body, golden_meta, quote_route,
};

/// A directory holding every fixture atlas in zarr v2 and v3 (six atlases).
fn catalogue_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for atlas in ATLASES {
        for version in ["v2", "v3"] {
            copy_dir(
                &fixture_store(atlas, version),
                &dir.path().join(format!("{atlas}.{version}.zarr")),
            );
        }
    }
    dir
}

/// Request every route the reference answers 200 for, in every atlas, `rounds` times; every
/// body must match the reference. Returns the budget's use at the end.
async fn sweep(dir: &std::path::Path, budget_bytes: u64, rounds: usize) -> (BudgetUsage, usize) {
    let context = DatasetContext::new(Default::default(), MemoryBudget::new(budget_bytes));
    let catalog = Catalog::open(
        common::location(dir.to_str().expect("utf-8")),
        &DatasetOptions::default(),
        &context,
    )
    .await
    .expect("catalogue");
    assert_eq!(catalog.datasets().len(), 6);
    let service = Arc::new(Service::new(catalog, Config::default()).expect("service mounts"));
    let app = InProcess(service.clone());
    let mut requests = 0;
    for _ in 0..rounds {
        for ds in service.catalog().datasets() {
            let atlas = ATLASES
                .into_iter()
                .find(|a| ds.name().starts_with(a))
                .expect("fixture atlas");
            for g in golden_meta(atlas) {
                if g.status != 200 || g.route.starts_with("_cellucid/") {
                    continue;
                }
                let path = format!("/{}{}", ds.id(), quote_route(&g.route));
                let response = app.get(&path, &[]).await;
                assert_eq!(response.status, 200, "{path}: {:?}", response.body);
                let diff = compare_body(&g.route, &golden_body(atlas, &g.route), &response.body);
                assert!(diff.is_none(), "{path}: {diff:?}");
                requests += 1;
            }
        }
    }
    (context.budget.usage().await, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_budget_bounds_every_atlas_and_answers_stay_right() {
    let dir = catalogue_dir();
    // Roomy: the working set of six atlases (buffers, documents, rendered bodies).
    let (roomy, requests) = sweep(dir.path(), 256 << 20, 1).await;
    // Tight: a quarter of that, so buffers are evicted and recomputed all the time.
    let tight_budget = (roomy.used / 4).max(256 << 10);
    let (tight, _) = sweep(dir.path(), tight_budget, 2).await;
    eprintln!(
        "{requests} requests per sweep: working set {} KiB in {} entries; under a budget of \
         {} KiB: {} KiB in {} entries",
        roomy.used >> 10,
        roomy.entries,
        tight_budget >> 10,
        tight.used >> 10,
        tight.entries
    );
    assert!(roomy.used > 1 << 20, "buffers are counted: {roomy:?}");
    assert!(tight.used <= tight_budget, "{tight:?}");
    assert!(tight.entries < roomy.entries, "{tight:?} vs {roomy:?}");
}
