//! The precompute-task Lambda handler in-process (no AWS): the sample events of
//! `events/precompute/`, a whole plan driven event by event the way the state machine drives it
//! (plan → item lists → every task of every phase, out of order), byte-identical to the
//! single-process `precompute`, and the error types the state machine retries on or not. The
//! state machine definition of `infra/` is checked against the events the handler accepts.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cellucid_edge::cache::precompute::{PrecomputeOptions, precompute};
use cellucid_edge::cache::{ArtifactCache, fingerprint};
use cellucid_edge::precompute_lambda::{PlanAnswer, TaskConfig, TaskEvent, TaskHandler, env};
use cellucid_edge::store::{ReadMetrics, open_store_url};
use indicatif::{MultiProgress, ProgressDrawTarget};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn handler(store: &Path, cache: &Path) -> TaskHandler {
    let (store, cache) = (
        store.to_str().unwrap().to_string(),
        cache.to_str().unwrap().to_string(),
    );
    let config = TaskConfig::from_lookup(|k| match k {
        env::DATA_URL => Some(store.clone()),
        env::CACHE_URL => Some(cache.clone()),
        _ => None,
    })
    .expect("config");
    TaskHandler::new(config).expect("handler")
}

fn objects(dir: &Path) -> Vec<(String, Vec<u8>)> {
    common::files_below(dir)
        .into_iter()
        .filter(|(n, _)| !n.contains('#'))
        .collect()
}

async fn single_process(store: &Path, cache_dir: &Path) -> (String, Vec<(String, Vec<u8>)>) {
    let catalog = common::open_catalog(store.to_str().unwrap()).await;
    let dataset = catalog.first().clone();
    let fp = fingerprint(&dataset);
    std::fs::create_dir_all(cache_dir).unwrap();
    let cache = ArtifactCache::new(
        &open_store_url(cache_dir.to_str().unwrap()).unwrap(),
        Arc::new(ReadMetrics::default()),
    );
    let hidden = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    let options = PrecomputeOptions {
        spill_dir: cache_dir.join("..").join("spill"),
        ..PrecomputeOptions::default()
    };
    precompute(dataset, &cache, &fp, &options, &hidden)
        .await
        .expect("precompute");
    (fp.clone(), objects(&cache_dir.join(&fp)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_events_run_through_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::fixture_store("edge", "v3");
    let h = handler(&store, &dir.path().join("cache"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("events/precompute"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    // plan.json sorts first; the others need no earlier phase.
    assert_eq!(files.len(), 3, "{files:?}");
    for file in files {
        let event: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let answer = h
            .handle_json(event)
            .await
            .unwrap_or_else(|e| panic!("{}: {} {e}", file.display(), e.error_type()));
        if file.ends_with("plan.json") {
            let plan: PlanAnswer = serde_json::from_value(answer).expect("plan answer");
            assert_eq!(plan.phase_count, plan.phases.len());
            assert_eq!(plan.cells, 480);
            // A local cache is no S3 bucket: no item lists for a Distributed Map.
            assert!(plan.phases.iter().all(|p| p.items_bucket.is_none()));
        } else {
            assert_eq!(answer["outcome"], "written", "{}: {answer}", file.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_driven_event_by_event_gives_the_single_process_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::fixture_store("edge", "v2");
    let (fp, reference) = single_process(&store, &dir.path().join("single")).await;
    let cache_dir = dir.path().join("lambda");
    let h = handler(&store, &cache_dir);
    let plan: PlanAnswer = serde_json::from_value(
        h.handle_json(json!({"action": "plan"}))
            .await
            .expect("plan"),
    )
    .unwrap();
    assert_eq!(plan.fingerprint, fp);
    // The item lists a Distributed Map reads: [{"task": 0}, …] per phase.
    for phase in &plan.phases {
        let items: Vec<Value> = serde_json::from_slice(
            &std::fs::read(
                cache_dir
                    .join("_work")
                    .join(&fp)
                    .join("items")
                    .join(format!("{}.json", phase.name)),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(items.len() as u64, phase.tasks);
        assert!(
            items
                .iter()
                .enumerate()
                .all(|(i, v)| v == &json!({"task": i}))
        );
        // Tasks in reverse order, the first one twice, as a retried Map iteration would.
        let mut tasks: Vec<u64> = (0..phase.tasks).rev().collect();
        tasks.push(tasks.last().copied().unwrap_or(0));
        for task in tasks {
            let event = json!({"action": "task", "phase": phase.name, "task": task,
                               "fingerprint": plan.fingerprint});
            let report = h
                .handle_json(event)
                .await
                .unwrap_or_else(|e| panic!("{} {task}: {} {e}", phase.name, e.error_type()));
            assert_eq!(report["phase"], json!(phase.name));
        }
    }
    let lambda = objects(&cache_dir.join(&fp));
    assert_eq!(
        lambda.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        reference.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(lambda == reference, "the Lambda-built cache differs");
    // The cleanup phase emptied the scratch except the item lists' own directory.
    let work = objects(&cache_dir.join("_work").join(&fp));
    assert!(
        work.is_empty(),
        "{:?}",
        work.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_the_error_types_the_state_machine_matches() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::fixture_store("edge", "v3");
    let h = handler(&store, &dir.path().join("cache"));
    let stale = h
        .handle_json(json!({"action": "task", "phase": "artifacts", "task": 0,
                            "fingerprint": "000000000000000000000000"}))
        .await
        .unwrap_err();
    assert_eq!(stale.error_type(), "cellucid.StalePlan", "{stale}");
    let bad = h
        .handle_json(json!({"action": "reduce"}))
        .await
        .unwrap_err();
    assert_eq!(bad.error_type(), "cellucid.BadEvent");
    let early = h
        .handle_json(json!({"action": "task", "phase": "index", "task": 0}))
        .await
        .unwrap_err();
    assert_eq!(early.error_type(), "cellucid.Failed", "{early}");
    let missing = h
        .handle_json(json!({"action": "task", "phase": "pack", "task": 99}))
        .await
        .unwrap_err();
    assert_eq!(missing.error_type(), "cellucid.Failed", "{missing}");
    let other = h
        .handle_json(json!({"action": "plan", "dataset": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(other.error_type(), "cellucid.BadEvent", "{other}");
    // A store that cannot be reached is worth a retry.
    let h = handler(Path::new("/nonexistent/store.zarr"), &dir.path().join("c2"));
    let e = h.handle_json(json!({"action": "plan"})).await.unwrap_err();
    assert_ne!(e.error_type(), "cellucid.BadEvent", "{e}");
}

/// The state machine of `infra/` (one ASL file for Terraform and CDK) sends exactly the events
/// the handler accepts, reads the plan answer's fields, and retries on `cellucid.Transient`.
#[test]
fn the_state_machine_sends_what_the_handler_accepts() {
    let asl: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("infra/statemachine/precompute.asl.json"))
            .expect("infra/statemachine/precompute.asl.json"),
    )
    .expect("ASL is JSON");
    let states = asl["States"].as_object().expect("States");
    let plan = &states["Plan"];
    assert_eq!(plan["Parameters"]["Payload"]["action"], "plan");
    // The plan event the state machine builds parses.
    let sample: TaskEvent =
        serde_json::from_value(json!({"action": "plan", "dataset": "x"})).unwrap();
    assert!(matches!(sample, TaskEvent::Plan { .. }));
    let run = &states["RunPhase"];
    assert_eq!(run["Type"], "Map");
    assert_eq!(
        run["ItemProcessor"]["ProcessorConfig"]["Mode"],
        "DISTRIBUTED"
    );
    assert_eq!(
        run["ItemReader"]["Parameters"]["Bucket.$"],
        "$.current.phase.items_bucket"
    );
    assert_eq!(
        run["ItemReader"]["Parameters"]["Key.$"],
        "$.current.phase.items_key"
    );
    let selector = run["ItemSelector"].as_object().expect("ItemSelector");
    let keys: Vec<&str> = selector.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["action", "phase.$", "task.$", "fingerprint.$", "dataset.$"],
        "the task event's fields"
    );
    // The event the selector produces (with the plan answer's values) parses.
    let event: TaskEvent = serde_json::from_value(json!({
        "action": selector["action"], "phase": "pack", "task": 3,
        "fingerprint": "abc", "dataset": "d"
    }))
    .expect("task event");
    assert!(matches!(event, TaskEvent::Task { task: 3, .. }));
    let worker = &run["ItemProcessor"]["States"]["RunTask"];
    assert_eq!(worker["Resource"], "arn:aws:states:::lambda:invoke");
    let retried: Vec<String> = worker["Retry"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ErrorEquals"].as_array().unwrap().clone())
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    for needed in [
        "cellucid.Transient",
        "Lambda.TooManyRequestsException",
        "Lambda.ServiceException",
    ] {
        assert!(retried.iter().any(|e| e == needed), "no retry on {needed}");
    }
    assert!(
        !retried
            .iter()
            .any(|e| e == "cellucid.StalePlan" || e == "States.ALL")
    );
    // The fields the state machine reads from the plan answer exist in it.
    let answer = serde_json::to_value(PlanAnswer {
        fingerprint: "f".into(),
        dataset: "d".into(),
        cells: 1,
        genes: 1,
        phase_count: 0,
        phases: Vec::new(),
        plan_key: "k".into(),
    })
    .unwrap();
    for field in ["fingerprint", "dataset", "phase_count", "phases"] {
        assert!(answer.get(field).is_some(), "{field}");
    }
}
