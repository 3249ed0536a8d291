//! Hostile stores, as data: each [`HostileCase`] damages a private copy of a fixture store
//! ([`Damage`] — a declared size that lies, a corrupt sparse structure, too many categories, an
//! obsm with the wrong row count …), then says what opening it must do, what each request must
//! answer ([`Check`]) and what `inspect` must report.
//!
//! The list knows no transport: a runner prepares the store ([`prepare`]), opens it, sends each
//! [`Check::route`] its own way (the service in-process, hyper, the Lambda handler, `inspect`)
//! and judges what came back with [`Outcome::judge`]. `tests/hostile_stores.rs` runs it
//! in-process and through `inspect`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cellucid_edge::store::{ObjectStoreZarr, ReadMetrics};
use object_store::local::LocalFileSystem;
use serde_json::{Map, Value};
use tempfile::TempDir;
use zarrs::array::Array;

use super::{compare_body, copy_dir, fixture_store, golden_body, json_diff};

/// One change to a store.
#[derive(Debug, Clone, Copy)]
pub enum Damage {
    /// Declare `n` cells: the first dimension of every per-cell array (obs columns, obsm, X,
    /// obsp) and the shapes of the sparse matrices say `n`; the chunks stay as they are.
    DeclareCells(u64),
    /// Declare `n` genes (var columns, X's second dimension).
    DeclareGenes(u64),
    /// Set the declared shape of array `key`.
    SetShape(&'static str, &'static [u64]),
    /// Set attribute `name` of node `key` to a JSON value.
    SetAttribute(&'static str, &'static str, &'static str),
    /// Overwrite value number `index` of the 1-D integer array `key` (its chunk is re-encoded
    /// with the array's own codecs, so only the value lies).
    SetValue(&'static str, u64, i64),
    /// Exchange values number `i` and `j` of the 1-D integer array `key`.
    SwapValues(&'static str, u64, u64),
    /// Set the declared chunk shape of array `key` (the chunks stay as they are).
    SetChunks(&'static str, &'static [u64]),
    /// Grow the consolidated metadata document to `n` bytes (trailing whitespace: still
    /// valid JSON).
    PadMetadata(u64),
}

/// What opening the damaged store must do.
#[derive(Debug, Clone, Copy)]
pub enum Opened {
    /// The atlas opens and is served; each text appears in one of its warnings (also the
    /// warnings `inspect` prints).
    Serves(&'static [&'static str]),
    /// Opening fails with an error containing this text (`inspect` fails with it too).
    Refused(&'static str),
}

/// What one request must get.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// This status, and a body containing this text.
    Status(u16, &'static str),
    /// 200 and the reference's body (compare.py's rules).
    Golden,
    /// 200 and the reference's body with obs field `0` left out (a document).
    GoldenWithoutField(&'static str),
}

/// One request of a case: a route below the atlas root (not percent-encoded; runners quote it
/// like compare.py) and its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// Route, e.g. `obs_manifest.json`.
    pub route: &'static str,
    /// What it must get.
    pub outcome: Outcome,
}

/// One hostile store.
#[derive(Debug, Clone)]
pub struct HostileCase {
    /// What is tried.
    pub name: &'static str,
    /// Fixture atlas damaged (`pbmc68k`, `edge`, `sparse`).
    pub atlas: &'static str,
    /// The changes, in order.
    pub damage: &'static [Damage],
    /// What opening must do.
    pub opened: Opened,
    /// Requests and their outcomes (when the atlas opens).
    pub checks: &'static [Check],
    /// Texts `inspect` must also report (it reads the embeddings, gene ids and text fields,
    /// so it finds what only a request would otherwise find).
    pub inspect: &'static [&'static str],
}

const fn check(route: &'static str, outcome: Outcome) -> Check {
    Check { route, outcome }
}

use Outcome::{Golden, GoldenWithoutField, Status};

/// Every case. Each runs on the zarr v2 and the zarr v3 copy of its fixture.
pub fn cases() -> &'static [HostileCase] {
    CASES
}

static CASES: &[HostileCase] = &[
    HostileCase {
        name: "10^12 declared cells",
        atlas: "pbmc68k",
        damage: &[Damage::DeclareCells(1_000_000_000_000)],
        opened: Opened::Serves(&[]),
        checks: &[
            check("obs_manifest.json", Status(507, "memory budget")),
            check("points_3d.bin", Status(507, "memory budget")),
            check("obs/n_counts.values.f32", Status(507, "obs/n_counts")),
            check("obs/louvain.codes.u8", Status(507, "obs/louvain/codes")),
            check("connectivity/edges.src.bin", Status(507, "memory budget")),
            check("var/HES4.values.f32", Status(503, "precompute")),
            check(
                "var_manifest.json",
                Status(200, "\"n_points\":1000000000000"),
            ),
            check("_cellucid/health", Status(200, "\"n_cells\":1000000000000")),
        ],
        inspect: &[
            "points_3d.bin cannot be served",
            "memory budget",
            "genes need `cellucid-edge precompute`",
        ],
    },
    HostileCase {
        name: "10^11 declared genes",
        atlas: "pbmc68k",
        damage: &[Damage::DeclareGenes(100_000_000_000)],
        opened: Opened::Serves(&[]),
        checks: &[
            check("var_manifest.json", Status(507, "var/index")),
            check("var/HES4.values.f32", Status(507, "var/index")),
            check("obs_manifest.json", Golden),
            check("points_3d.bin", Golden),
            check("obs/louvain.outliers.f32", Golden),
        ],
        inspect: &["gene ids cannot be served", "var/index", "memory budget"],
    },
    HostileCase {
        name: "a chunk of 10^12 values",
        atlas: "pbmc68k",
        damage: &[Damage::SetChunks("obs/n_counts", &[1_000_000_000_000])],
        opened: Opened::Serves(&[]),
        checks: &[
            check(
                "obs/n_counts.values.f32",
                Status(507, "one chunk of `obs/n_counts`"),
            ),
            check("obs_manifest.json", Status(507, "obs/n_counts")),
            check("obs/n_genes.values.f32", Golden),
            check("points_3d.bin", Golden),
        ],
        inspect: &[],
    },
    HostileCase {
        name: "a 65 MB metadata document",
        atlas: "sparse",
        damage: &[Damage::PadMetadata(65 << 20)],
        opened: Opened::Refused("metadata document"),
        checks: &[],
        inspect: &[],
    },
    HostileCase {
        name: "decreasing X indptr",
        atlas: "edge",
        damage: &[Damage::SwapValues("X/indptr", 100, 101)],
        opened: Opened::Serves(&[]),
        checks: &[
            check("var/GENE089.values.f32", Status(500, "damaged")),
            check("var/GENE030.values.f32", Status(500, "damaged")),
            check("obs_manifest.json", Golden),
            check("points_3d.bin", Golden),
        ],
        inspect: &[],
    },
    HostileCase {
        name: "X indptr past the stored values",
        atlas: "edge",
        damage: &[Damage::SetValue("X/indptr", 480, 1_000_000_000)],
        opened: Opened::Serves(&[]),
        checks: &[
            check("var/GENE089.values.f32", Status(500, "damaged")),
            check("var_manifest.json", Golden),
        ],
        inspect: &[],
    },
    HostileCase {
        name: "negative X indptr",
        atlas: "edge",
        damage: &[Damage::SetValue("X/indptr", 3, -5)],
        opened: Opened::Serves(&[]),
        checks: &[check("var/GENE089.values.f32", Status(500, "damaged"))],
        inspect: &[],
    },
    HostileCase {
        name: "X index outside the genes",
        atlas: "edge",
        damage: &[Damage::SetValue("X/indices", 10, 120 + 7)],
        opened: Opened::Serves(&[]),
        checks: &[
            check("var/GENE089.values.f32", Status(500, "damaged")),
            check("var/GENE030.values.f32", Status(500, "damaged")),
            check("obs_manifest.json", Golden),
        ],
        inspect: &[],
    },
    HostileCase {
        name: "negative X index",
        atlas: "edge",
        damage: &[Damage::SetValue("X/indices", 0, -1)],
        opened: Opened::Serves(&[]),
        checks: &[check("var/GENE089.values.f32", Status(500, "damaged"))],
        inspect: &[],
    },
    HostileCase {
        name: "X indptr of the wrong length",
        atlas: "edge",
        damage: &[Damage::SetShape("X/indptr", &[400])],
        opened: Opened::Refused("X/indptr"),
        checks: &[],
        inspect: &[],
    },
    HostileCase {
        name: "X indices and data of different lengths",
        atlas: "edge",
        damage: &[Damage::SetShape("X/indices", &[100])],
        opened: Opened::Refused("X/indices"),
        checks: &[],
        inspect: &[],
    },
    HostileCase {
        name: "decreasing connectivities indptr",
        atlas: "pbmc68k",
        damage: &[Damage::SwapValues("obsp/connectivities/indptr", 10, 11)],
        opened: Opened::Serves(&[]),
        checks: &[
            check("connectivity/edges.src.bin", Status(500, "damaged")),
            check("connectivity/edges.dst.bin", Status(500, "damaged")),
            check("connectivity_manifest.json", Status(500, "damaged")),
            check("points_3d.bin", Golden),
            check("obs_manifest.json", Golden),
        ],
        inspect: &[],
    },
    HostileCase {
        name: "connectivities index outside the cells",
        atlas: "pbmc68k",
        damage: &[Damage::SetValue("obsp/connectivities/indices", 5, 700)],
        opened: Opened::Serves(&[]),
        checks: &[
            check("connectivity/edges.src.bin", Status(500, "damaged")),
            check("var/HES4.values.f32", Golden),
        ],
        inspect: &[],
    },
    HostileCase {
        name: "connectivities of the wrong shape",
        atlas: "pbmc68k",
        damage: &[Damage::SetAttribute(
            "obsp/connectivities",
            "shape",
            "[701, 701]",
        )],
        opened: Opened::Serves(&["obsp `connectivities` skipped"]),
        checks: &[
            check("connectivity_manifest.json", Status(404, "")),
            check("points_3d.bin", Golden),
        ],
        inspect: &[],
    },
    HostileCase {
        name: "categorical with 70,000 categories",
        atlas: "edge",
        damage: &[Damage::SetShape("obs/many_cats_300/categories", &[70_000])],
        opened: Opened::Serves(&["`many_cats_300` left out of the manifests"]),
        checks: &[
            check("obs_manifest.json", GoldenWithoutField("many_cats_300")),
            check("dataset_identity.json", GoldenWithoutField("many_cats_300")),
            check("obs/many_cats_300.codes.u16", Status(404, "")),
            check("obs/many_cats_300.outliers.f32", Status(404, "")),
            check("obs/cats_255.codes.u16", Golden),
            check("points_3d.bin", Golden),
        ],
        inspect: &[],
    },
    HostileCase {
        name: "obsm latent space with the wrong row count",
        atlas: "pbmc68k",
        damage: &[Damage::SetShape("obsm/X_pca", &[500, 50])],
        opened: Opened::Serves(&["obsm `X_pca` has shape [500, 50]"]),
        checks: &[
            check("obs/louvain.outliers.f32", Status(500, "damaged")),
            check("obs/louvain.codes.u8", Golden),
            check("points_3d.bin", Golden),
        ],
        inspect: &[],
    },
    HostileCase {
        name: "obsm embedding with the wrong row count",
        atlas: "pbmc68k",
        damage: &[Damage::SetShape("obsm/velocity_umap_2d", &[699, 2])],
        opened: Opened::Serves(&["obsm `velocity_umap_2d` has shape [699, 2]"]),
        checks: &[check("points_2d.bin", Golden)],
        inspect: &[],
    },
];

/// A damaged private copy of a fixture store (removed on drop).
pub struct PreparedStore {
    /// The store's directory.
    pub path: PathBuf,
    _dir: TempDir,
}

/// Copy `atlas`'s fixture in zarr `version` (`v2`/`v3`) and apply `damage`.
pub async fn prepare(atlas: &str, version: &str, damage: &[Damage]) -> PreparedStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{atlas}.{version}.zarr"));
    copy_dir(&fixture_store(atlas, version), &path);
    for d in damage {
        apply(&path, version, *d).await;
    }
    PreparedStore { path, _dir: dir }
}

async fn apply(store: &Path, version: &str, damage: Damage) {
    match damage {
        Damage::DeclareCells(n) => declare(store, version, Axis::Cells, n),
        Damage::DeclareGenes(n) => declare(store, version, Axis::Genes, n),
        Damage::SetShape(key, shape) => {
            let shape: Vec<u64> = shape.to_vec();
            edit_node(store, version, key, |node| {
                node["shape"] = serde_json::json!(shape)
            });
        }
        Damage::SetAttribute(key, name, json) => {
            let value: Value = serde_json::from_str(json).expect("attribute JSON");
            edit_attributes(store, version, key, |attrs| {
                attrs.insert(name.to_string(), value.clone());
            });
        }
        Damage::SetValue(key, index, value) => {
            rewrite_values(store, key, |values| values[index as usize] = value).await;
        }
        Damage::SetChunks(key, chunks) => {
            let chunks: Vec<u64> = chunks.to_vec();
            edit_node(store, version, key, |node| {
                if version == "v2" {
                    node["chunks"] = serde_json::json!(chunks);
                } else {
                    node["chunk_grid"]["configuration"]["chunk_shape"] = serde_json::json!(chunks);
                }
            });
        }
        Damage::PadMetadata(n) => {
            let (file, _) = consolidated(store, version);
            let mut bytes = std::fs::read(&file).expect("metadata");
            bytes.resize(n as usize, b' ');
            std::fs::write(&file, bytes).expect("write metadata");
        }
        Damage::SwapValues(key, i, j) => {
            rewrite_values(store, key, |values| values.swap(i as usize, j as usize)).await;
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Axis {
    Cells,
    Genes,
}

/// The consolidated document of a store and the map of its node documents.
fn consolidated(store: &Path, version: &str) -> (PathBuf, Value) {
    let file = store.join(if version == "v2" {
        ".zmetadata"
    } else {
        "zarr.json"
    });
    let doc = serde_json::from_slice(&std::fs::read(&file).expect("read metadata"))
        .expect("metadata JSON");
    (file, doc)
}

fn entries<'a>(doc: &'a mut Value, version: &str) -> &'a mut Map<String, Value> {
    let entries = if version == "v2" {
        &mut doc["metadata"]
    } else {
        &mut doc["consolidated_metadata"]["metadata"]
    };
    entries.as_object_mut().expect("consolidated entries")
}

fn write_json(file: &Path, doc: &Value) {
    std::fs::write(file, serde_json::to_vec(doc).expect("JSON")).expect("write metadata");
}

/// Edit the array document of `key` (consolidated and its own file): `.zarray` for v2, the
/// node's `zarr.json` for v3 (both hold `shape`).
fn edit_node(store: &Path, version: &str, key: &str, edit: impl Fn(&mut Value)) {
    let (file, mut doc) = consolidated(store, version);
    let name = if version == "v2" {
        format!("{key}/.zarray")
    } else {
        key.to_string()
    };
    edit(
        entries(&mut doc, version)
            .get_mut(&name)
            .expect("node in consolidated metadata"),
    );
    write_json(&file, &doc);
    let own = store.join(key).join(if version == "v2" {
        ".zarray"
    } else {
        "zarr.json"
    });
    let mut node: Value =
        serde_json::from_slice(&std::fs::read(&own).expect("node metadata")).expect("JSON");
    edit(&mut node);
    write_json(&own, &node);
}

/// Edit the attributes of node `key` (consolidated and its own file).
fn edit_attributes(store: &Path, version: &str, key: &str, edit: impl Fn(&mut Map<String, Value>)) {
    let (file, mut doc) = consolidated(store, version);
    let entries = entries(&mut doc, version);
    let attrs = if version == "v2" {
        entries
            .get_mut(&format!("{key}/.zattrs"))
            .expect("node attributes")
    } else {
        &mut entries.get_mut(key).expect("node")["attributes"]
    };
    edit(attrs.as_object_mut().expect("attribute object"));
    write_json(&file, &doc);
    let (own, pointer) = if version == "v2" {
        (store.join(key).join(".zattrs"), "")
    } else {
        (store.join(key).join("zarr.json"), "/attributes")
    };
    let mut node: Value =
        serde_json::from_slice(&std::fs::read(&own).expect("node metadata")).expect("JSON");
    edit(
        node.pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .expect("attributes"),
    );
    write_json(&own, &node);
}

/// Make every per-cell (or per-gene) element declare `n` along that axis.
fn declare(store: &Path, version: &str, axis: Axis, n: u64) {
    let (_, mut doc) = consolidated(store, version);
    let entries = entries(&mut doc, version).clone();
    let (frame, matrix_dim) = match axis {
        Axis::Cells => ("obs/", 0usize),
        Axis::Genes => ("var/", 1usize),
    };
    for (name, value) in &entries {
        let (path, is_array) = if version == "v2" {
            match name.strip_suffix("/.zarray") {
                Some(p) => (p.to_string(), true),
                None => match name.strip_suffix("/.zattrs") {
                    Some(p) => (p.to_string(), false),
                    None => continue,
                },
            }
        } else {
            (
                name.clone(),
                value.get("node_type").and_then(Value::as_str) == Some("array"),
            )
        };
        let last = path.rsplit('/').next().unwrap_or_default();
        let attrs_shape = |store: &Path, key: &str, dims: &[usize]| {
            edit_attributes(store, version, key, |attrs| {
                if let Some(shape) = attrs.get_mut("shape").and_then(Value::as_array_mut) {
                    for &d in dims {
                        shape[d] = serde_json::json!(n);
                    }
                }
            })
        };
        if is_array {
            if path.starts_with(frame) && last != "categories" {
                edit_node(store, version, &path, |node| {
                    node["shape"][0] = serde_json::json!(n)
                });
            } else if axis == Axis::Cells && path.starts_with("obsm/") {
                edit_node(store, version, &path, |node| {
                    node["shape"][0] = serde_json::json!(n)
                });
            } else if path == "X" {
                edit_node(store, version, &path, |node| {
                    node["shape"][matrix_dim] = serde_json::json!(n)
                });
            } else if axis == Axis::Cells && path.starts_with("obsp/") && last == "indptr" {
                edit_node(store, version, &path, |node| {
                    node["shape"][0] = serde_json::json!(n + 1)
                });
            } else if path == "X/indptr" && axis == Axis::Cells {
                edit_node(store, version, &path, |node| {
                    node["shape"][0] = serde_json::json!(n + 1)
                });
            }
        } else if path == "X" {
            attrs_shape(store, &path, &[matrix_dim]);
        } else if axis == Axis::Cells && path.starts_with("obsp/") && path.matches('/').count() == 1
        {
            attrs_shape(store, &path, &[0, 1]);
        }
    }
}

/// Read the 1-D integer array `key`, change its values, and write them back with the array's
/// own metadata (codecs, chunks).
async fn rewrite_values(store: &Path, key: &str, change: impl FnOnce(&mut Vec<i64>)) {
    let fs = Arc::new(LocalFileSystem::new_with_prefix(store).expect("local store"));
    let storage = Arc::new(ObjectStoreZarr::new(
        fs,
        object_store::path::Path::default(),
        Arc::new(ReadMetrics::default()),
    ));
    let array = Array::async_open(storage, &format!("/{key}"))
        .await
        .unwrap_or_else(|e| panic!("open {key}: {e}"));
    let n = array.shape()[0];
    let chunk = array
        .chunk_shape(&[0])
        .expect("chunk shape")
        .first()
        .map(|d| d.get())
        .expect("1-D chunks");
    assert!(n <= chunk, "{key}: one chunk expected");
    let dtype = array.data_type().to_string();
    macro_rules! rewrite {
        ($t:ty) => {{
            let stored: Vec<$t> = array
                .async_retrieve_chunk::<Vec<$t>>(&[0])
                .await
                .unwrap_or_else(|e| panic!("read {key}: {e}"));
            let mut values: Vec<i64> = stored.iter().map(|&v| v as i64).collect();
            change(&mut values);
            let back: Vec<$t> = values.iter().map(|&v| v as $t).collect();
            array
                .async_store_chunk(&[0], back)
                .await
                .unwrap_or_else(|e| panic!("write {key}: {e}"));
        }};
    }
    // zarrs names v2 types like `int32 / <i4`.
    match dtype.split(' ').next().unwrap_or_default() {
        "int32" => rewrite!(i32),
        "int64" => rewrite!(i64),
        "uint32" => rewrite!(u32),
        "uint64" => rewrite!(u64),
        other => panic!("{key}: integer array expected, found {other}"),
    }
}

impl Outcome {
    /// `Ok` when `status` and the (decoded) `body` answered to `route` of `atlas` are what this
    /// outcome requires.
    pub fn judge(&self, atlas: &str, route: &str, status: u16, body: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(body);
        match *self {
            Outcome::Status(expected, needle) => {
                if status != expected {
                    return Err(format!("status {status}, expected {expected}: {text:.300}"));
                }
                if !text.contains(needle) {
                    return Err(format!("body lacks `{needle}`: {text:.300}"));
                }
                Ok(())
            }
            Outcome::Golden => {
                if status != 200 {
                    return Err(format!("status {status}, expected 200: {text:.300}"));
                }
                match compare_body(route, &golden_body(atlas, route), body) {
                    None => Ok(()),
                    Some(diff) => Err(format!("differs from the reference: {diff}")),
                }
            }
            Outcome::GoldenWithoutField(field) => {
                if status != 200 {
                    return Err(format!("status {status}, expected 200: {text:.300}"));
                }
                let expected = without_field(route, &golden_body(atlas, route), field);
                let ours: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
                let (mut a, mut b) = (expected, ours);
                for doc in [&mut a, &mut b] {
                    if let Some(o) = doc.as_object_mut() {
                        for k in super::IGNORED_IDENTITY_KEYS {
                            o.remove(k);
                        }
                    }
                }
                match json_diff(&a, &b, 1e-5, "$") {
                    None => Ok(()),
                    Some(diff) => Err(format!(
                        "differs from the reference without `{field}`: {diff}"
                    )),
                }
            }
        }
    }
}

/// The reference's document `route` with obs field `field` left out (and counted out).
fn without_field(route: &str, golden: &[u8], field: &str) -> Value {
    let mut doc: Value = serde_json::from_slice(golden).expect("golden JSON");
    let named = |v: &Value| v.get(0).and_then(Value::as_str) == Some(field);
    if route == "obs_manifest.json" {
        for list in ["_categoricalFields", "_continuousFields"] {
            if let Some(items) = doc[list].as_array_mut() {
                items.retain(|v| !named(v));
            }
        }
    } else if route == "dataset_identity.json" {
        let mut kind = None;
        if let Some(items) = doc["obs_fields"].as_array_mut() {
            kind = items
                .iter()
                .find(|v| v["key"].as_str() == Some(field))
                .and_then(|v| v["kind"].as_str().map(str::to_string));
            items.retain(|v| v["key"].as_str() != Some(field));
        }
        let stats = &mut doc["stats"];
        let dec = |v: &mut Value| *v = serde_json::json!(v.as_u64().unwrap_or(1) - 1);
        dec(&mut stats["n_obs_fields"]);
        match kind.as_deref() {
            Some("category") => dec(&mut stats["n_categorical_fields"]),
            Some("continuous") => dec(&mut stats["n_continuous_fields"]),
            _ => {}
        }
    } else {
        panic!("{route}: not a document with obs fields");
    }
    doc
}
