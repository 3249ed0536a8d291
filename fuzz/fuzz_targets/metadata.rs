//! Metadata and chunk fuzzing: one object of a small AnnData-Zarr store (the `sparse` fixture,
//! zarr v2 or v3, consolidated or not) is replaced by the fuzz bytes — a `.zattrs`, `.zarray`,
//! `.zgroup`, `.zmetadata`, `zarr.json` or a chunk — and the store is opened from an in-memory
//! object store; if it opens, a fixed set of artifacts is requested through the service.
//! Properties: never a panic (errors are fine: a corrupt store answers 4xx/5xx), and every
//! request returns.

#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use cellucid_edge::catalog::Catalog;
use cellucid_edge::dataset::{Dataset, DatasetOptions};
use cellucid_edge::service::{Config, Service};
use cellucid_edge::store::{ReadMetrics, StoreLocation};
use http::Request;
use libfuzzer_sys::fuzz_target;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const ROUTES: &[&str] = &[
    "/dataset_identity.json",
    "/obs_manifest.json",
    "/var_manifest.json",
    "/connectivity_manifest.json",
    "/points_2d.bin",
    "/points_3d.bin",
    "/obs/leiden.codes.u8",
    "/obs/leiden.outliers.f32",
    "/obs/score.values.f32",
    "/obs/sample.codes.u8",
    "/var/G0.values.f32",
    "/var/G50.values.f32",
    "/connectivity/edges.src.bin",
    "/vectors/velocity_umap_2d.bin",
];

/// One fixture store: its objects (key, bytes), sorted by key.
struct Fixture {
    files: Vec<(String, Bytes)>,
    /// The key holding consolidated metadata (`.zmetadata` / `zarr.json`).
    consolidated_key: &'static str,
    /// That key's replacement when the store is to be read unconsolidated (`None`: delete).
    unconsolidated: Option<Bytes>,
}

struct World {
    runtime: tokio::runtime::Runtime,
    fixtures: Vec<Fixture>,
}

fn load(dir: &std::path::Path) -> Vec<(String, Bytes)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, Bytes)>) {
        for entry in std::fs::read_dir(dir).expect("fixture dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let key = path
                    .strip_prefix(root)
                    .expect("below root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((key, Bytes::from(std::fs::read(&path).expect("read"))));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let stores =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/stores");
        let v2 = load(&stores.join("sparse.v2.zarr"));
        let v3 = load(&stores.join("sparse.v3.zarr"));
        let root = v3
            .iter()
            .find(|(k, _)| k == "zarr.json")
            .map(|(_, b)| b.clone())
            .expect("v3 root");
        let mut doc: serde_json::Value = serde_json::from_slice(&root).expect("v3 root json");
        if let Some(o) = doc.as_object_mut() {
            o.remove("consolidated_metadata");
        }
        let stripped = Bytes::from(serde_json::to_vec(&doc).expect("json"));
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            fixtures: vec![
                Fixture {
                    files: v2,
                    consolidated_key: ".zmetadata",
                    unconsolidated: None,
                },
                Fixture {
                    files: v3,
                    consolidated_key: "zarr.json",
                    unconsolidated: Some(stripped),
                },
            ],
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: [selector lo, selector hi, flags, payload...].
    if data.len() < 3 {
        return;
    }
    let world = world();
    let selector = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let flags = data[2];
    let payload = Bytes::copy_from_slice(&data[3..]);
    let fixture = &world.fixtures[usize::from(flags & 1)];
    let unconsolidated = flags & 2 != 0;
    let target = selector % fixture.files.len();

    let store = Arc::new(InMemory::new());
    world.runtime.block_on(async {
        for (i, (key, bytes)) in fixture.files.iter().enumerate() {
            let mut value = Some(bytes.clone());
            if unconsolidated && key == fixture.consolidated_key {
                value = fixture.unconsolidated.clone();
            }
            if i == target {
                value = Some(payload.clone());
            }
            if let Some(value) = value {
                let path = Path::from(format!("atlas/{key}"));
                store
                    .put(&path, PutPayload::from_bytes(value))
                    .await
                    .expect("in-memory put");
            }
        }
        let location = StoreLocation {
            store: store.clone() as Arc<dyn ObjectStore>,
            prefix: Path::from("atlas"),
            display: "memory://fuzz/atlas".into(),
            name: "atlas".into(),
            is_local: false,
            signer: None,
        };
        let Ok(dataset) = Dataset::open(
            location,
            DatasetOptions::default(),
            Arc::new(ReadMetrics::default()),
        )
        .await
        else {
            return;
        };
        // A hostile store may make the 0.9 ids unmountable: that is a clear error, not a panic.
        let Ok(service) = Service::new(
            Catalog::single(Arc::new(dataset)),
            Config {
                memory_cache_bytes: 8 << 20,
                ..Config::default()
            },
        ) else {
            return;
        };
        for route in ROUTES {
            let request = Request::get(*route)
                .header("accept-encoding", "gzip")
                .body(())
                .expect("static request");
            let _ = service.handle(request).await.into_body().collect().await;
        }
    });
});
