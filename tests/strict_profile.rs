//! The strict profile (`/strict`) against its contract, `protocol-strict.md` (the data-loading
//! rules of the Cellucid web viewer build 2026-07-27.24): one test per rule, citing its
//! section, each judged on every fixture (zarr v2, v3 and, with the `h5ad` feature, `.h5ad`)
//! served through `serve` and through the Lambda handler, float32 and quantised (see
//! `strict_support`). The `s12_*` tests check that the strict documents carry the reference's
//! numbers and that every strict payload equals the reference's buffer for the same field.

mod common;
mod strict_support;

use std::collections::{BTreeSet, HashMap, HashSet};

use cellucid_edge::model::quantize::{QuantBits, QuantRange};
use serde_json::{Value, json};
use strict_support::{
    Failures, Snapshot, f32s, f64s, is_count, is_safe_relative_path, is_token, keys, snapshots,
    sorted, uints,
};

const MIB: usize = 1 << 20;

/// Run `check` on every snapshot and fail with everything it found.
fn each(rule: &str, check: impl Fn(&Snapshot, &mut Failures)) {
    let mut failures = Failures::default();
    for s in snapshots() {
        check(s, &mut failures);
    }
    failures.assert(rule);
}

fn all_datasets_files(s: &Snapshot) -> impl Iterator<Item = (&String, &strict_support::Reply)> {
    s.replies
        .iter()
        .filter(|(k, _)| !k.starts_with("_cellucid/"))
}

// §0 Transport and addressing ---------------------------------------------------------------

#[test]
fn s0_control_documents_are_exactly_200_application_json() {
    each("§0 control documents", |s, f| {
        for path in ["_cellucid/health", "_cellucid/info", "_cellucid/datasets"] {
            let r = s.get(path);
            f.check(r.status == 200, || {
                format!("{}: {path} status {}", s.label(), r.status)
            });
            f.check(r.header("content-type") == "application/json", || {
                format!(
                    "{}: {path} Content-Type {:?}",
                    s.label(),
                    r.header("content-type")
                )
            });
            f.check(r.body.len() <= 64 * MIB && r.json().is_object(), || {
                format!("{}: {path} is not a JSON object", s.label())
            });
        }
    });
}

#[test]
fn s0_dataset_files_are_2xx_and_within_the_size_limits() {
    each("§0 dataset files", |s, f| {
        let graph = s.json("dataset_identity.json")["stats"]["has_connectivity"] == true;
        for (path, r) in all_datasets_files(s) {
            if path == "connectivity_manifest.json" && !graph {
                continue; // §8: a graphless dataset answers 404 (checked there).
            }
            f.check((200..300).contains(&r.status), || {
                format!("{}: {path} status {}", s.label(), r.status)
            });
            let limit = if path.ends_with(".json") {
                64 * MIB
            } else {
                512 * MIB
            };
            f.check(r.body.len() <= limit, || {
                format!("{}: {path} too large", s.label())
            });
            if path.ends_with(".json") {
                f.check(r.json().is_object(), || {
                    format!("{}: {path} not JSON", s.label())
                });
            }
            // A binary with Content-Length and no Content-Encoding states its true length.
            if !r.headers.contains_key("content-encoding") {
                let declared = r.header("content-length");
                f.check(
                    declared.is_empty() || declared.parse::<usize>() == Ok(r.body.len()),
                    || format!("{}: {path} Content-Length {declared:?}", s.label()),
                );
            }
        }
    });
}

#[test]
fn s0_unadvertised_paths_are_not_found() {
    each("§0 only advertised paths exist", |s, f| {
        for (path, r) in &s.probes {
            f.check(r.status == 404, || {
                format!("{}: unadvertised {path} answered {}", s.label(), r.status)
            });
        }
    });
}

// §1 health ------------------------------------------------------------------------------------

#[test]
fn s1_health_has_the_anndata_keys_exactly() {
    each("§1 health", |s, f| {
        let h = s.json("_cellucid/health");
        f.check(
            keys(&h)
                == sorted(&[
                    "status",
                    "type",
                    "version",
                    "format",
                    "is_backed",
                    "n_cells",
                    "n_genes",
                ]),
            || format!("{}: health keys {:?}", s.label(), keys(&h)),
        );
        f.check(h["status"] == "ok" && h["type"] == "anndata", || {
            format!("{}: health status/type {h}", s.label())
        });
        f.check(
            ["h5ad", "zarr", "in-memory"].contains(&h["format"].as_str().unwrap_or("")),
            || format!("{}: health format {}", s.label(), h["format"]),
        );
        f.check(h["is_backed"].is_boolean(), || {
            format!("{}: is_backed", s.label())
        });
        f.check(is_count(&h["n_cells"]) && is_count(&h["n_genes"]), || {
            format!("{}: health counts", s.label())
        });
        f.check(is_token(&h["version"]), || {
            format!("{}: health version", s.label())
        });
    });
}

// §2 info --------------------------------------------------------------------------------------

#[test]
fn s2_info_matches_health() {
    each("§2 info", |s, f| {
        let h = s.json("_cellucid/health");
        let i = s.json("_cellucid/info");
        let expected = sorted(&[
            "version",
            "type",
            "format",
            "host",
            "port",
            "n_cells",
            "n_genes",
            "is_backed",
        ]);
        f.check(keys(&i) == expected, || {
            format!("{}: info keys {:?}", s.label(), keys(&i))
        });
        f.check(i["type"] == "anndata", || {
            format!("{}: info type", s.label())
        });
        for k in ["format", "is_backed", "n_cells", "n_genes", "version"] {
            f.check(i[k] == h[k], || {
                format!("{}: info.{k} {} != health's {}", s.label(), i[k], h[k])
            });
        }
        f.check(is_token(&i["host"]), || {
            format!("{}: info host {}", s.label(), i["host"])
        });
        f.check(
            i["port"].as_u64().is_some_and(|p| (1..=65535).contains(&p)),
            || format!("{}: info port {}", s.label(), i["port"]),
        );
        f.check(i.get("ws_port").is_none(), || {
            format!("{}: ws_port advertised", s.label())
        });
    });
}

// §3 datasets ----------------------------------------------------------------------------------

fn valid_dataset_dir(dir: &str) -> bool {
    const RESERVED: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    let stem = dir.split('.').next().unwrap_or("");
    (1..=180).contains(&dir.len())
        && dir.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !dir.ends_with('.')
        && dir
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem))
}

#[test]
fn s3_datasets_list_one_path_per_dataset_and_the_identity_names() {
    each("§3 datasets", |s, f| {
        let d = s.json("_cellucid/datasets");
        f.check(keys(&d) == sorted(&["datasets"]), || {
            format!("{}: keys {:?}", s.label(), keys(&d))
        });
        let list = d["datasets"].as_array().cloned().unwrap_or_default();
        f.check(!list.is_empty(), || format!("{}: no datasets", s.label()));
        let (mut ids, mut paths) = (HashSet::new(), HashSet::new());
        for e in &list {
            f.check(keys(e) == sorted(&["id", "path", "name"]), || {
                format!("{}: entry keys {:?}", s.label(), keys(e))
            });
            for k in ["id", "name"] {
                let v = e[k].as_str().unwrap_or("");
                f.check(!v.is_empty() && v.trim() == v, || {
                    format!("{}: {k} {v:?}", s.label())
                });
            }
            let path = e["path"].as_str().unwrap_or("");
            let ok = path == "/"
                || path
                    .strip_prefix('/')
                    .and_then(|p| p.strip_suffix('/'))
                    .is_some_and(valid_dataset_dir);
            f.check(ok, || format!("{}: path {path:?}", s.label()));
            f.check(ids.insert(e["id"].clone()), || {
                format!("{}: duplicate id", s.label())
            });
            f.check(paths.insert(e["path"].clone()), || {
                format!("{}: duplicate path", s.label())
            });
        }
        let identity = s.json("dataset_identity.json");
        f.check(
            list.first().is_some_and(|e| e["name"] == identity["name"]),
            || {
                format!(
                    "{}: catalogue name != identity name {}",
                    s.label(),
                    identity["name"]
                )
            },
        );
        f.check(
            list.first().is_some_and(|e| e["id"] == identity["id"]),
            || {
                format!(
                    "{}: catalogue id != identity id {}",
                    s.label(),
                    identity["id"]
                )
            },
        );
    });
}

// §4 dataset_identity.json --------------------------------------------------------------------

#[test]
fn s4_identity_has_no_member_beyond_the_allowed_ones() {
    let required = [
        "version",
        "id",
        "name",
        "description",
        "cellucid_data_version",
        "stats",
        "embeddings",
        "obs_fields",
    ];
    let optional = ["created_at", "export_settings", "source", "vector_fields"];
    each("§4 identity keys", |s, f| {
        let id = s.json("dataset_identity.json");
        let present: BTreeSet<String> = keys(&id).into_iter().collect();
        for k in required {
            f.check(present.contains(k), || {
                format!("{}: identity lacks {k}", s.label())
            });
        }
        for k in &present {
            f.check(
                required.contains(&k.as_str()) || optional.contains(&k.as_str()),
                || format!("{}: identity has unsupported member {k}", s.label()),
            );
        }
    });
}

/// `YYYY-MM-DDTHH:MM:SSZ` naming a real instant (so it round-trips).
fn is_utc_instant(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return false;
    }
    let (Some(y), Some(m), Some(d), Some(h), Some(mi), Some(sec)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    let Ok(month) = time::Month::try_from(m as u8) else {
        return false;
    };
    time::Date::from_calendar_date(y as i32, month, d as u8).is_ok()
        && h < 24
        && mi < 60
        && sec < 60
}

#[test]
fn s4_identity_scalars_and_created_at() {
    each("§4 identity scalars", |s, f| {
        let id = s.json("dataset_identity.json");
        f.check(id["version"] == 2, || {
            format!("{}: version {}", s.label(), id["version"])
        });
        f.check(id["name"].as_str().is_some_and(|n| !n.is_empty()), || {
            format!("{}: name", s.label())
        });
        f.check(id["description"].is_string(), || {
            format!("{}: description", s.label())
        });
        f.check(
            id["cellucid_data_version"]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            || format!("{}: cellucid_data_version", s.label()),
        );
        if let Some(t) = id.get("created_at") {
            let text = t.as_str().unwrap_or("");
            let parsed = is_utc_instant(text);
            f.check(parsed, || format!("{}: created_at {text:?}", s.label()));
        }
    });
}

#[test]
fn s4_stats_are_consistent() {
    each("§4 stats", |s, f| {
        let st = s.json("dataset_identity.json")["stats"].clone();
        f.check(
            keys(&st)
                == sorted(&[
                    "n_cells",
                    "n_genes",
                    "n_obs_fields",
                    "n_categorical_fields",
                    "n_continuous_fields",
                    "has_connectivity",
                    "n_edges",
                ]),
            || format!("{}: stats keys {:?}", s.label(), keys(&st)),
        );
        for k in [
            "n_cells",
            "n_genes",
            "n_obs_fields",
            "n_categorical_fields",
            "n_continuous_fields",
        ] {
            f.check(is_count(&st[k]), || format!("{}: stats.{k}", s.label()));
        }
        let sum = st["n_categorical_fields"].as_u64().unwrap_or(0)
            + st["n_continuous_fields"].as_u64().unwrap_or(0);
        f.check(st["n_obs_fields"].as_u64() == Some(sum), || {
            format!("{}: n_obs_fields", s.label())
        });
        match st["has_connectivity"].as_bool() {
            Some(true) => f.check(is_count(&st["n_edges"]), || {
                format!("{}: n_edges", s.label())
            }),
            Some(false) => f.check(st["n_edges"].is_null(), || {
                format!("{}: n_edges not null", s.label())
            }),
            None => f.fail(format!("{}: has_connectivity not boolean", s.label())),
        }
        f.check(st["n_cells"].as_u64().is_some_and(|n| n >= 1), || {
            format!("{}: n_cells < 1 (DimensionManager)", s.label())
        });
    });
}

#[test]
fn s4_embeddings_have_exact_keys_and_safe_files() {
    each("§4 embeddings", |s, f| {
        let e = s.json("dataset_identity.json")["embeddings"].clone();
        f.check(
            keys(&e) == sorted(&["available_dimensions", "default_dimension", "files"]),
            || format!("{}: embeddings keys {:?}", s.label(), keys(&e)),
        );
        let dims: Vec<u64> = e["available_dimensions"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        f.check(
            !dims.is_empty()
                && dims.windows(2).all(|w| w[0] < w[1])
                && dims.iter().all(|d| (1..=3).contains(d)),
            || format!("{}: dimensions {dims:?}", s.label()),
        );
        f.check(
            e["default_dimension"]
                .as_u64()
                .is_some_and(|d| dims.contains(&d)),
            || format!("{}: default_dimension", s.label()),
        );
        let expected: Vec<String> = dims.iter().map(|d| format!("{d}d")).collect::<Vec<_>>();
        let mut expected = expected;
        expected.sort();
        f.check(keys(&e["files"]) == expected, || {
            format!("{}: files {:?}", s.label(), keys(&e["files"]))
        });
        for path in e["files"].as_object().into_iter().flat_map(|m| m.values()) {
            f.check(path.as_str().is_some_and(is_safe_relative_path), || {
                format!("{}: unsafe embedding path {path}", s.label())
            });
        }
    });
}

fn expansion_order(s: &Snapshot) -> Vec<(String, String)> {
    let obs = s.json("obs_manifest.json");
    let mut out = Vec::new();
    for t in obs["_continuousFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        out.push((
            t[1].as_str().unwrap_or("").to_string(),
            "continuous".to_string(),
        ));
    }
    for t in obs["_categoricalFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        out.push((
            t[1].as_str().unwrap_or("").to_string(),
            "category".to_string(),
        ));
    }
    out
}

#[test]
fn s4_obs_fields_follow_the_manifest_expansion_order() {
    each("§4 obs_fields", |s, f| {
        let id = s.json("dataset_identity.json");
        let fields = id["obs_fields"].as_array().cloned().unwrap_or_default();
        f.check(
            Some(fields.len() as u64) == id["stats"]["n_obs_fields"].as_u64(),
            || format!("{}: obs_fields length", s.label()),
        );
        let (mut cat, mut cont, mut seen) = (0u64, 0u64, HashSet::new());
        for e in &fields {
            match e["kind"].as_str() {
                Some("category") => {
                    cat += 1;
                    f.check(
                        keys(e) == sorted(&["key", "kind", "n_categories"])
                            && is_count(&e["n_categories"]),
                        || format!("{}: category entry {e}", s.label()),
                    );
                }
                Some("continuous") => {
                    cont += 1;
                    f.check(keys(e) == sorted(&["key", "kind"]), || {
                        format!("{}: continuous entry {e}", s.label())
                    });
                }
                _ => f.fail(format!("{}: kind {}", s.label(), e["kind"])),
            }
            let key = e["key"].as_str().unwrap_or("");
            f.check(!key.is_empty() && seen.insert(key.to_string()), || {
                format!("{}: key {key:?} empty or repeated", s.label())
            });
        }
        f.check(
            id["stats"]["n_categorical_fields"].as_u64() == Some(cat)
                && id["stats"]["n_continuous_fields"].as_u64() == Some(cont),
            || format!("{}: kind tallies", s.label()),
        );
        let listed: Vec<(String, String)> = fields
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap_or("").to_string(),
                    e["kind"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        f.check(listed == expansion_order(s), || {
            format!(
                "{}: obs_fields order differs from the manifest's expansion order",
                s.label()
            )
        });
    });
}

#[test]
fn s4_export_settings_and_source_are_absent_or_valid() {
    each("§4 export_settings/source", |s, f| {
        let id = s.json("dataset_identity.json");
        if let Some(e) = id.get("export_settings") {
            f.check(
                keys(e)
                    == sorted(&[
                        "compression",
                        "var_quantization",
                        "obs_continuous_quantization",
                        "obs_categorical_dtype",
                    ])
                    && ["uint8", "uint16"]
                        .contains(&e["obs_categorical_dtype"].as_str().unwrap_or("")),
                || format!("{}: export_settings {e}", s.label()),
            );
        }
        if let Some(src) = id.get("source") {
            f.check(
                src["name"].as_str().is_some_and(|n| !n.is_empty())
                    && keys(src)
                        .iter()
                        .all(|k| ["name", "url", "citation", "filename"].contains(&k.as_str())),
                || format!("{}: source {src}", s.label()),
            );
        }
    });
}

#[test]
fn s4_vector_fields_have_exact_keys_and_dimensions() {
    each("§4 vector_fields", |s, f| {
        let id = s.json("dataset_identity.json");
        let Some(v) = id.get("vector_fields") else {
            return;
        };
        let emb: Vec<u64> = id["embeddings"]["available_dimensions"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        f.check(keys(v) == sorted(&["default_field", "fields"]), || {
            format!("{}: {:?}", s.label(), keys(v))
        });
        let fields = v["fields"].as_object().cloned().unwrap_or_default();
        f.check(!fields.is_empty(), || {
            format!("{}: no vector fields", s.label())
        });
        f.check(
            v["default_field"].is_null()
                || v["default_field"]
                    .as_str()
                    .is_some_and(|d| fields.contains_key(d)),
            || format!("{}: default_field", s.label()),
        );
        for (name, field) in &fields {
            f.check(
                keys(field)
                    == sorted(&[
                        "label",
                        "basis",
                        "available_dimensions",
                        "default_dimension",
                        "files",
                    ]),
                || format!("{}: vector field {name} keys {:?}", s.label(), keys(field)),
            );
            let dims: Vec<u64> = field["available_dimensions"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            f.check(
                !dims.is_empty()
                    && dims.windows(2).all(|w| w[0] < w[1])
                    && dims.iter().all(|d| emb.contains(d)),
                || format!("{}: {name} dims {dims:?}", s.label()),
            );
            f.check(
                field["default_dimension"].as_u64() == dims.iter().max().copied(),
                || format!("{}: {name} default is not the largest", s.label()),
            );
            for k in ["label", "basis"] {
                f.check(field[k].as_str().is_some_and(|x| !x.is_empty()), || {
                    format!("{}: {name}.{k}", s.label())
                });
            }
            let files = field["files"].as_object().cloned().unwrap_or_default();
            f.check(files.len() == dims.len(), || {
                format!("{}: {name} files", s.label())
            });
            for p in files.values() {
                f.check(p.as_str().is_some_and(is_safe_relative_path), || {
                    format!("{}: {name} file {p}", s.label())
                });
            }
        }
    });
}

// §5 points --------------------------------------------------------------------------------------

#[test]
fn s5_points_are_finite_float32_of_every_cell() {
    each("§5 points", |s, f| {
        let id = s.json("dataset_identity.json");
        let n = s.n_cells() as usize;
        for (slot, path) in id["embeddings"]["files"]
            .as_object()
            .cloned()
            .unwrap_or_default()
        {
            let d: usize = slot.trim_end_matches('d').parse().unwrap_or(0);
            let body = &s.get(path.as_str().unwrap_or("")).body;
            f.check(body.len() == n * d * 4, || {
                format!("{}: {path} length {}", s.label(), body.len())
            });
            f.check(f32s(body).iter().all(|v| v.is_finite()), || {
                format!("{}: {path} not finite", s.label())
            });
        }
    });
}

// §6 obs_manifest.json ----------------------------------------------------------------------------

#[test]
fn s6_obs_manifest_has_exact_keys_and_valid_scalars() {
    each("§6 obs manifest", |s, f| {
        let m = s.json("obs_manifest.json");
        f.check(
            keys(&m)
                == sorted(&[
                    "_format",
                    "n_points",
                    "centroid_outlier_quantile",
                    "latent_key",
                    "compression",
                    "_obsSchemas",
                    "_continuousFields",
                    "_categoricalFields",
                ]),
            || format!("{}: keys {:?}", s.label(), keys(&m)),
        );
        f.check(m["_format"] == "compact_v1", || {
            format!("{}: _format", s.label())
        });
        f.check(
            m["n_points"].as_u64() == Some(s.n_cells()) && s.n_cells() > 0,
            || format!("{}: n_points", s.label()),
        );
        f.check(
            m["compression"].is_null()
                || m["compression"]
                    .as_u64()
                    .is_some_and(|c| (1..=9).contains(&c)),
            || format!("{}: compression", s.label()),
        );
        f.check(
            m["centroid_outlier_quantile"].is_null()
                || m["centroid_outlier_quantile"]
                    .as_f64()
                    .is_some_and(|q| q > 0.0 && q < 1.0),
            || format!("{}: centroid_outlier_quantile", s.label()),
        );
        f.check(
            m["latent_key"].is_null() || m["latent_key"].as_str().is_some_and(|k| !k.is_empty()),
            || format!("{}: latent_key", s.label()),
        );
        let cont = m["_continuousFields"].as_array().map(Vec::len);
        let cat = m["_categoricalFields"].as_array().map(Vec::len);
        f.check(cont.is_some() && cat.is_some(), || {
            format!("{}: field lists", s.label())
        });
        let mut expected = Vec::new();
        if cont.unwrap_or(0) > 0 {
            expected.push("continuous");
        }
        if cat.unwrap_or(0) > 0 {
            expected.push("categorical");
        }
        f.check(keys(&m["_obsSchemas"]) == sorted(&expected), || {
            format!("{}: _obsSchemas {:?}", s.label(), keys(&m["_obsSchemas"]))
        });
    });
}

/// §6: a pattern with exactly one `{index}` (plus `{ext}` where allowed), ending in `suffix`
/// (`.gz` iff compression), a clean relative POSIX path.
fn pattern_ok(pattern: &Value, suffix: &str, ext_placeholder: bool) -> bool {
    let Some(p) = pattern.as_str() else {
        return false;
    };
    let braces_ok = p.matches("{index}").count() == 1
        && p.matches("{ext}").count() == usize::from(ext_placeholder)
        && p.replace("{index}", "")
            .replace("{ext}", "")
            .chars()
            .all(|c| c != '{' && c != '}');
    braces_ok
        && p.ends_with(suffix)
        && is_safe_relative_path(&p.replace("{index}", "0").replace("{ext}", "u8"))
}

#[test]
fn s6_continuous_schema_addresses_payloads_by_index() {
    each("§6 continuous schema", |s, f| {
        let m = s.json("obs_manifest.json");
        let Some(c) = m["_obsSchemas"].get("continuous") else {
            return;
        };
        let quantized = c["quantized"].as_bool();
        let (ext, dtype, bits) = match s.quantize {
            None => ("f32", "float32", None),
            Some(b) => (b.ext(), b.dtype(), Some(b.bits())),
        };
        let mut expected = vec!["pathPattern", "ext", "dtype", "quantized"];
        if bits.is_some() {
            expected.push("quantizationBits");
        }
        f.check(keys(c) == sorted(&expected), || {
            format!("{}: keys {:?}", s.label(), keys(c))
        });
        f.check(quantized == Some(bits.is_some()), || {
            format!("{}: quantized", s.label())
        });
        f.check(c["ext"] == ext && c["dtype"] == dtype, || {
            format!("{}: ext/dtype {c}", s.label())
        });
        if let Some(b) = bits {
            f.check(c["quantizationBits"] == b, || {
                format!("{}: quantizationBits", s.label())
            });
        }
        f.check(
            pattern_ok(&c["pathPattern"], &format!("{{index}}.values.{ext}"), false),
            || format!("{}: pathPattern {}", s.label(), c["pathPattern"]),
        );
    });
}

#[test]
fn s6_categorical_schema_addresses_payloads_by_index() {
    each("§6 categorical schema", |s, f| {
        let m = s.json("obs_manifest.json");
        let Some(c) = m["_obsSchemas"].get("categorical") else {
            return;
        };
        f.check(
            keys(c)
                == sorted(&[
                    "codesPathPattern",
                    "outlierPathPattern",
                    "outlierExt",
                    "outlierDtype",
                    "outlierQuantized",
                ]),
            || format!("{}: keys {:?}", s.label(), keys(c)),
        );
        f.check(
            pattern_ok(&c["codesPathPattern"], "{index}.codes.{ext}", true),
            || format!("{}: codesPathPattern {}", s.label(), c["codesPathPattern"]),
        );
        // Outliers stay float32 (never quantised here), so no outlier bounds anywhere.
        f.check(
            c["outlierQuantized"] == false
                && c["outlierExt"] == "f32"
                && c["outlierDtype"] == "float32",
            || format!("{}: outlier trio {c}", s.label()),
        );
        f.check(
            pattern_ok(&c["outlierPathPattern"], "{index}.outliers.f32", false),
            || {
                format!(
                    "{}: outlierPathPattern {}",
                    s.label(),
                    c["outlierPathPattern"]
                )
            },
        );
    });
}

#[test]
fn s6_continuous_tuples_carry_bounds_only_when_quantised() {
    each("§6 continuous tuples", |s, f| {
        let m = s.json("obs_manifest.json");
        for t in m["_continuousFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let t = t.as_array().cloned().unwrap_or_default();
            match (s.quantize, t.as_slice()) {
                (None, [i, k]) => f.check(i.is_u64() && k.is_string(), || {
                    format!("{}: tuple {t:?}", s.label())
                }),
                (Some(_), [i, k, lo, hi]) => f.check(
                    i.is_u64()
                        && k.is_string()
                        && lo.as_f64().is_some_and(f64::is_finite)
                        && hi.as_f64().is_some_and(f64::is_finite)
                        && lo.as_f64() <= hi.as_f64(),
                    || format!("{}: tuple {t:?}", s.label()),
                ),
                _ => f.fail(format!("{}: tuple shape {t:?}", s.label())),
            }
        }
    });
}

#[test]
fn s6_categorical_tuples_have_unique_categories_and_valid_centroids() {
    each("§6 categorical tuples", |s, f| {
        let m = s.json("obs_manifest.json");
        let n_points = m["n_points"].as_u64().unwrap_or(0);
        for t in m["_categoricalFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let Some([index, key, categories, dtype, missing, centroids]) = t
                .as_array()
                .map(Vec::as_slice)
                .and_then(|a| <&[Value; 6]>::try_from(a).ok())
            else {
                f.fail(format!("{}: tuple is not 6 long: {t}", s.label()));
                continue;
            };
            let label = format!("{}: {key}", s.label());
            f.check(
                index.is_u64() && key.as_str().is_some_and(|k| !k.is_empty()),
                || format!("{label}: index/key"),
            );
            let cats = categories.as_array().cloned().unwrap_or_default();
            let unique: HashSet<String> = cats.iter().map(Value::to_string).collect();
            f.check(
                unique.len() == cats.len()
                    && cats.iter().all(|c| {
                        c.is_string() || c.as_f64().is_some_and(f64::is_finite) || c.is_boolean()
                    }),
                || format!("{label}: categories not unique finite scalars"),
            );
            let (ok_dtype, limit) = match (dtype.as_str(), missing.as_u64()) {
                (Some("uint8"), Some(255)) => (true, 255),
                (Some("uint16"), Some(65535)) => (true, 65535),
                _ => (false, 0),
            };
            f.check(ok_dtype && cats.len() <= limit, || {
                format!("{label}: dtype {dtype} missing {missing}")
            });
            let by_dim = centroids.as_object().cloned().unwrap_or_default();
            for (d, list) in &by_dim {
                let dim: usize = match d.as_str() {
                    "1" => 1,
                    "2" => 2,
                    "3" => 3,
                    _ => {
                        f.fail(format!("{label}: centroid dimension {d}"));
                        continue;
                    }
                };
                let mut seen = HashSet::new();
                for c in list.as_array().cloned().unwrap_or_default() {
                    let pos = c["position"].as_array().cloned().unwrap_or_default();
                    f.check(
                        keys(&c) == sorted(&["category", "position", "n_points"])
                            && cats.contains(&c["category"])
                            && seen.insert(c["category"].to_string())
                            && pos.len() == dim
                            && pos.iter().all(|p| p.as_f64().is_some_and(f64::is_finite))
                            && c["n_points"].as_u64().is_some_and(|n| n <= n_points),
                        || format!("{label}: centroid {c}"),
                    );
                }
            }
        }
    });
}

#[test]
fn s6_field_keys_are_unique_and_payload_indices_dense() {
    each("§6 keys and indices", |s, f| {
        let m = s.json("obs_manifest.json");
        let tuples: Vec<Value> = m["_continuousFields"]
            .as_array()
            .into_iter()
            .chain(m["_categoricalFields"].as_array())
            .flatten()
            .cloned()
            .collect();
        let mut indices: Vec<u64> = tuples.iter().filter_map(|t| t[0].as_u64()).collect();
        indices.sort_unstable();
        f.check(
            indices == (0..tuples.len() as u64).collect::<Vec<_>>(),
            || format!("{}: payload indices {indices:?}", s.label()),
        );
        let keys: HashSet<&str> = tuples.iter().filter_map(|t| t[1].as_str()).collect();
        f.check(keys.len() == tuples.len() && !keys.contains(""), || {
            format!("{}: keys not unique", s.label())
        });
    });
}

// §7 payloads and var_manifest.json -------------------------------------------------------------

#[test]
fn s7_obs_payloads_have_exact_lengths() {
    each("§7 obs payload lengths", |s, f| {
        let n = s.n_cells() as usize;
        let value_width = s.quantize.map_or(4, QuantBits::width);
        for (path, r) in all_datasets_files(s).filter(|(p, _)| p.starts_with("obs/")) {
            let width = if path.ends_with(".codes.u16") {
                2
            } else if path.ends_with(".codes.u8") {
                1
            } else if path.contains(".values.") {
                value_width
            } else {
                4
            };
            f.check(r.body.len() == n * width, || {
                format!(
                    "{}: {path} is {} bytes, expected {}",
                    s.label(),
                    r.body.len(),
                    n * width
                )
            });
        }
    });
}

#[test]
fn s7_codes_are_categories_or_the_missing_sentinel() {
    each("§7 codes", |s, f| {
        let m = s.json("obs_manifest.json");
        for t in m["_categoricalFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let (wide, missing) = if t[3] == "uint16" {
                (true, 65535)
            } else {
                (false, 255)
            };
            let path = format!("obs/{}.codes.{}", t[0], if wide { "u16" } else { "u8" });
            let n_cat = t[2].as_array().map_or(0, Vec::len) as u64;
            let codes = uints(&s.get(&path).body, if wide { 2 } else { 1 });
            f.check(codes.iter().all(|&c| c < n_cat || c == missing), || {
                format!(
                    "{}: {path} has a code outside its {n_cat} categories",
                    s.label()
                )
            });
        }
    });
}

#[test]
fn s7_outliers_are_nan_or_within_the_unit_interval() {
    each("§7 outliers", |s, f| {
        for (path, r) in all_datasets_files(s).filter(|(p, _)| p.ends_with(".outliers.f32")) {
            f.check(
                f32s(&r.body)
                    .iter()
                    .all(|v| v.is_nan() || (0.0..=1.0).contains(v)),
                || format!("{}: {path} outside [0, 1]", s.label()),
            );
        }
    });
}

#[test]
fn s7_var_manifest_has_exact_keys_and_dense_unique_genes() {
    each("§7 var manifest", |s, f| {
        let m = s.json("var_manifest.json");
        f.check(
            keys(&m)
                == sorted(&[
                    "_format",
                    "n_points",
                    "var_gene_id_column",
                    "compression",
                    "quantization",
                    "_varSchema",
                    "fields",
                ]),
            || format!("{}: keys {:?}", s.label(), keys(&m)),
        );
        f.check(
            m["_format"] == "compact_v1" && m["n_points"].as_u64() == Some(s.n_cells()),
            || format!("{}: _format/n_points", s.label()),
        );
        f.check(
            m["var_gene_id_column"].is_null()
                || m["var_gene_id_column"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty()),
            || format!("{}: var_gene_id_column", s.label()),
        );
        let schema = &m["_varSchema"];
        let (ext, dtype, bits) = match s.quantize {
            None => ("f32", "float32", Value::Null),
            Some(b) => (b.ext(), b.dtype(), json!(b.bits())),
        };
        f.check(m["quantization"] == bits, || {
            format!("{}: quantization {}", s.label(), m["quantization"])
        });
        let mut expected = vec!["kind", "pathPattern", "ext", "dtype", "quantized"];
        if !bits.is_null() {
            expected.push("quantizationBits");
            f.check(schema["quantizationBits"] == bits, || {
                format!("{}: quantizationBits", s.label())
            });
        }
        f.check(keys(schema) == sorted(&expected), || {
            format!("{}: schema keys {:?}", s.label(), keys(schema))
        });
        f.check(
            schema["kind"] == "continuous"
                && schema["ext"] == ext
                && schema["dtype"] == dtype
                && schema["quantized"] == !bits.is_null(),
            || format!("{}: schema {schema}", s.label()),
        );
        f.check(
            pattern_ok(
                &schema["pathPattern"],
                &format!("{{index}}.values.{ext}"),
                false,
            ),
            || format!("{}: pathPattern {}", s.label(), schema["pathPattern"]),
        );
        let fields = m["fields"].as_array().cloned().unwrap_or_default();
        let n_genes = s.json("dataset_identity.json")["stats"]["n_genes"]
            .as_u64()
            .unwrap_or(0);
        f.check(fields.len() as u64 == n_genes, || {
            format!("{}: {} fields for {n_genes} genes", s.label(), fields.len())
        });
        let mut names = HashSet::new();
        for (i, t) in fields.iter().enumerate() {
            let t = t.as_array().cloned().unwrap_or_default();
            let shape_ok = match (s.quantize, t.as_slice()) {
                (None, [idx, name]) => idx.as_u64() == Some(i as u64) && name.is_string(),
                (Some(_), [idx, name, lo, hi]) => {
                    idx.as_u64() == Some(i as u64)
                        && name.is_string()
                        && lo.as_f64().is_some_and(f64::is_finite)
                        && hi.as_f64().is_some_and(f64::is_finite)
                        && lo.as_f64() <= hi.as_f64()
                }
                _ => false,
            };
            f.check(shape_ok, || format!("{}: gene tuple {t:?}", s.label()));
            f.check(
                names.insert(t.get(1).cloned().unwrap_or_default().to_string()),
                || format!("{}: gene name {:?} repeated", s.label(), t.get(1)),
            );
        }
    });
}

#[test]
fn s7_var_payloads_have_exact_lengths() {
    each("§7 var payload lengths", |s, f| {
        let n = s.n_cells() as usize * s.quantize.map_or(4, QuantBits::width);
        let genes = s.json("var_manifest.json")["fields"]
            .as_array()
            .map_or(0, Vec::len);
        let fetched: Vec<_> = all_datasets_files(s)
            .filter(|(p, _)| p.starts_with("var/"))
            .collect();
        f.check(fetched.len() == genes, || {
            format!("{}: {} of {genes} genes fetched", s.label(), fetched.len())
        });
        for (path, r) in fetched {
            f.check(r.body.len() == n, || {
                format!("{}: {path} {} bytes", s.label(), r.body.len())
            });
        }
    });
}

#[test]
fn s7_quantised_values_decode_within_their_bounds() {
    each("§7 quantised values", |s, f| {
        let Some(bits) = s.quantize else { return };
        let obs = s.json("obs_manifest.json");
        let var = s.json("var_manifest.json");
        let mut payloads: Vec<(String, Value, Value)> = Vec::new();
        for t in obs["_continuousFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            payloads.push((
                format!("obs/{}.values.{}", t[0], bits.ext()),
                t[2].clone(),
                t[3].clone(),
            ));
        }
        for t in var["fields"].as_array().cloned().unwrap_or_default() {
            payloads.push((
                format!("var/{}.values.{}", t[0], bits.ext()),
                t[2].clone(),
                t[3].clone(),
            ));
        }
        for (path, lo, hi) in payloads {
            let codes = uints(&s.get(&path).body, bits.width());
            let range = QuantRange {
                min: lo.as_f64().unwrap_or(0.0),
                max: hi.as_f64().unwrap_or(0.0),
            };
            f.check(
                codes
                    .iter()
                    .all(|&c| c <= u64::from(bits.max_code()) || c == u64::from(bits.missing())),
                || {
                    format!(
                        "{}: {path} has codes between max and the sentinel",
                        s.label()
                    )
                },
            );
            let decoded_ok = codes.iter().all(|&c| {
                let v = range.decode(c as u16, bits);
                v.is_nan() || (v >= range.min - 1e-9 && v <= range.max + 1e-9)
            });
            f.check(decoded_ok, || {
                format!("{}: {path} decodes outside [{lo}, {hi}]", s.label())
            });
        }
    });
}

// §8 connectivity ------------------------------------------------------------------------------------

#[test]
fn s8_connectivity_manifest_has_exact_keys_and_weights() {
    each("§8 connectivity manifest", |s, f| {
        let id = s.json("dataset_identity.json");
        if id["stats"]["has_connectivity"] != true {
            return;
        }
        let m = s.json("connectivity_manifest.json");
        f.check(
            keys(&m)
                == sorted(&[
                    "format",
                    "n_cells",
                    "n_edges",
                    "max_neighbors",
                    "index_bytes",
                    "index_dtype",
                    "sourcesPath",
                    "destinationsPath",
                    "weightsPath",
                    "weight_bytes",
                    "weight_dtype",
                    "compression",
                ]),
            || format!("{}: keys {:?}", s.label(), keys(&m)),
        );
        let n = m["n_cells"].as_u64().unwrap_or(0);
        let e = m["n_edges"].as_u64().unwrap_or(u64::MAX);
        let k = m["max_neighbors"].as_u64().unwrap_or(u64::MAX);
        f.check(m["format"] == "edge_pairs", || {
            format!("{}: format", s.label())
        });
        f.check((1..=1 << 32).contains(&n) && n == s.n_cells(), || {
            format!("{}: n_cells {n}", s.label())
        });
        f.check(
            e <= n * (n - 1) / 2 && Some(e) == id["stats"]["n_edges"].as_u64(),
            || format!("{}: n_edges {e}", s.label()),
        );
        f.check(k <= (n - 1).min(e) && ((k == 0) == (e == 0)), || {
            format!("{}: max_neighbors {k}", s.label())
        });
        f.check(
            m["weight_dtype"] == "float64" && m["weight_bytes"] == 8,
            || format!("{}: weight dtype", s.label()),
        );
        f.check(m["compression"].is_null(), || {
            format!("{}: compression", s.label())
        });
        let paths: Vec<&str> = ["sourcesPath", "destinationsPath", "weightsPath"]
            .iter()
            .filter_map(|p| m[*p].as_str())
            .collect();
        f.check(
            paths.len() == 3
                && paths
                    .iter()
                    .all(|p| is_safe_relative_path(p) && !p.ends_with(".gz"))
                && paths.iter().collect::<HashSet<_>>().len() == 3,
            || format!("{}: paths {paths:?}", s.label()),
        );
        let width = m["index_bytes"].as_u64().unwrap_or(0);
        f.check(e * (2 * width + 8) <= 512 << 20, || {
            format!("{}: working set", s.label())
        });
    });
}

#[test]
fn s8_index_dtype_is_the_smallest_width() {
    each("§8 index dtype", |s, f| {
        if s.json("dataset_identity.json")["stats"]["has_connectivity"] != true {
            return;
        }
        let m = s.json("connectivity_manifest.json");
        let n = m["n_cells"].as_u64().unwrap_or(0);
        let expected = if n <= 65_536 {
            ("uint16", 2)
        } else {
            ("uint32", 4)
        };
        f.check(
            m["index_dtype"] == expected.0 && m["index_bytes"] == expected.1,
            || {
                format!(
                    "{}: {} / {} for {n} cells",
                    s.label(),
                    m["index_dtype"],
                    m["index_bytes"]
                )
            },
        );
    });
}

#[test]
fn s8_edges_are_ordered_weighted_and_match_the_degree() {
    each("§8 edge buffers", |s, f| {
        if s.json("dataset_identity.json")["stats"]["has_connectivity"] != true {
            return;
        }
        let m = s.json("connectivity_manifest.json");
        let (n, e) = (
            m["n_cells"].as_u64().unwrap_or(0),
            m["n_edges"].as_u64().unwrap_or(0) as usize,
        );
        let width = m["index_bytes"].as_u64().unwrap_or(0) as usize;
        let path = |k: &str| m[k].as_str().unwrap_or("").to_string();
        let (src_body, dst_body, w_body) = (
            &s.get(&path("sourcesPath")).body,
            &s.get(&path("destinationsPath")).body,
            &s.get(&path("weightsPath")).body,
        );
        f.check(
            src_body.len() == e * width && dst_body.len() == e * width && w_body.len() == e * 8,
            || format!("{}: buffer lengths", s.label()),
        );
        let (src, dst, w) = (uints(src_body, width), uints(dst_body, width), f64s(w_body));
        let pairs: Vec<(u64, u64)> = src.iter().copied().zip(dst.iter().copied()).collect();
        f.check(pairs.iter().all(|&(a, b)| a < b && b < n), || {
            format!("{}: source < destination < n_cells", s.label())
        });
        f.check(pairs.windows(2).all(|p| p[0] < p[1]), || {
            format!("{}: edges not strictly ordered", s.label())
        });
        f.check(w.iter().all(|x| x.is_finite() && *x > 0.0), || {
            format!("{}: weights not finite and > 0", s.label())
        });
        let mut degree: HashMap<u64, u64> = HashMap::new();
        for (a, b) in &pairs {
            *degree.entry(*a).or_default() += 1;
            *degree.entry(*b).or_default() += 1;
        }
        let max = degree.values().copied().max().unwrap_or(0);
        f.check(m["max_neighbors"].as_u64() == Some(max), || {
            format!(
                "{}: max_neighbors {} but the largest degree is {max}",
                s.label(),
                m["max_neighbors"]
            )
        });
    });
}

#[test]
fn s8_datasets_without_a_strict_graph_publish_no_manifest() {
    each("§8 graphless datasets", |s, f| {
        let st = s.json("dataset_identity.json")["stats"].clone();
        if st["has_connectivity"] == true {
            f.check(s.get("connectivity_manifest.json").status == 200, || {
                format!("{}: manifest missing", s.label())
            });
            return;
        }
        f.check(st["n_edges"].is_null(), || {
            format!("{}: n_edges {}", s.label(), st["n_edges"])
        });
        f.check(s.get("connectivity_manifest.json").status == 404, || {
            format!(
                "{}: graphless manifest answered {}",
                s.label(),
                s.get("connectivity_manifest.json").status
            )
        });
    });
}

// §9 vector fields --------------------------------------------------------------------------------

#[test]
fn s9_vector_buffers_are_finite_and_sized_like_their_embedding() {
    each("§9 vectors", |s, f| {
        let id = s.json("dataset_identity.json");
        let n = s.n_cells() as usize;
        for field in id["vector_fields"]["fields"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .values()
        {
            for (slot, path) in field["files"].as_object().cloned().unwrap_or_default() {
                let d: usize = slot.trim_end_matches('d').parse().unwrap_or(0);
                f.check(id["embeddings"]["files"].get(&slot).is_some(), || {
                    format!("{}: no embedding for vector dimension {slot}", s.label())
                });
                let body = &s.get(path.as_str().unwrap_or("")).body;
                f.check(
                    body.len() == n * d * 4 && f32s(body).iter().all(|v| v.is_finite()),
                    || format!("{}: {path}", s.label()),
                );
            }
        }
    });
}

// §12 the same numbers as the reference ----------------------------------------------------------

fn golden_json(s: &Snapshot, route: &str) -> Value {
    serde_json::from_slice(&common::golden_body(&s.fixture.golden(), route)).expect("golden JSON")
}

/// Whether the fixture's graph has a strict form according to the reference's weights.
fn reference_graph_is_strict(s: &Snapshot) -> Option<bool> {
    let meta = s.fixture.strict_golden().meta;
    let edges = meta.get("edges").filter(|e| !e.is_null())?;
    Some(edges["invalid_weights"] == 0)
}

#[test]
fn s12_identity_is_the_reference_reshaped() {
    each("§12.1 identity", |s, f| {
        let mut expected = golden_json(s, "dataset_identity.json");
        let obj = expected.as_object_mut().expect("object");
        for k in [
            "_anndata_adapter",
            "export_settings",
            "source",
            "id",
            "name",
            "created_at",
        ] {
            obj.remove(k);
        }
        if let Some(e) = obj.get_mut("embeddings").and_then(Value::as_object_mut) {
            e.remove("umap_resolution");
        }
        if let Some(fields) = obj
            .get_mut("vector_fields")
            .and_then(|v| v.get_mut("fields"))
            .and_then(Value::as_object_mut)
        {
            for field in fields.values_mut() {
                if let Some(o) = field.as_object_mut() {
                    o.remove("obsm_keys");
                }
            }
        }
        let mut ordered: Vec<Value> = obj["obs_fields"].as_array().cloned().unwrap_or_default();
        ordered.sort_by_key(|e| e["kind"] != "continuous"); // stable: column order within kinds
        obj.insert("obs_fields".into(), Value::Array(ordered));
        if reference_graph_is_strict(s) == Some(false) {
            obj["stats"]["has_connectivity"] = json!(false);
            obj["stats"]["n_edges"] = Value::Null;
        }
        let mut ours = s.json("dataset_identity.json");
        for k in ["id", "name", "created_at"] {
            ours.as_object_mut().map(|o| o.remove(k));
        }
        if let Some(diff) = common::json_diff(&expected, &ours, 1e-6, "$") {
            f.fail(format!("{}: {diff}", s.label()));
        }
    });
}

#[test]
fn s12_obs_manifest_is_the_reference_reshaped() {
    each("§12.2 obs manifest", |s, f| {
        let golden = golden_json(s, "obs_manifest.json");
        let cont = golden["_continuousFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let cat = golden["_categoricalFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let c = cont.len();
        let expected_cont: Vec<Value> = cont
            .iter()
            .enumerate()
            .map(|(i, t)| match s.quantize {
                None => json!([i, t[0]]),
                Some(_) => {
                    let (lo, hi) = (t[1].as_f64().unwrap_or(0.0), t[2].as_f64().unwrap_or(0.0));
                    // The exporter's rule for a constant field: max := min + 1.
                    json!([i, t[0], lo, if hi == lo { lo + 1.0 } else { hi }])
                }
            })
            .collect();
        let expected_cat: Vec<Value> = cat
            .iter()
            .enumerate()
            .map(|(i, t)| json!([c + i, t[0], t[1], t[2], t[3], t[4]]))
            .collect();
        let ours = s.json("obs_manifest.json");
        for (name, exp, got) in [
            (
                "_continuousFields",
                expected_cont,
                &ours["_continuousFields"],
            ),
            (
                "_categoricalFields",
                expected_cat,
                &ours["_categoricalFields"],
            ),
        ] {
            if let Some(diff) = common::json_diff(&Value::Array(exp), got, 1e-5, name) {
                f.fail(format!("{}: {diff}", s.label()));
            }
        }
        for k in [
            "n_points",
            "centroid_outlier_quantile",
            "latent_key",
            "_format",
        ] {
            f.check(ours[k] == golden[k], || format!("{}: {k}", s.label()));
        }
    });
}

#[test]
fn s12_var_manifest_is_the_reference_reshaped() {
    each("§12.3 var manifest", |s, f| {
        let golden = golden_json(s, "var_manifest.json");
        let ours = s.json("var_manifest.json");
        let ids: Vec<String> = golden["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| t[0].as_str().unwrap_or("").to_string())
            .collect();
        let fields = ours["fields"].as_array().cloned().unwrap_or_default();
        f.check(fields.len() == ids.len(), || {
            format!("{}: gene count", s.label())
        });
        // Names are the reference's, made unique like anndata's var_names_make_unique.
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for (i, (t, id)) in fields.iter().zip(&ids).enumerate() {
            let count = seen.entry(id).or_default();
            let expected = if *count == 0 {
                id.clone()
            } else {
                format!("{id}-{count}")
            };
            *count += 1;
            f.check(t[0] == i && t[1] == expected, || {
                format!("{}: gene {i} {t} (reference {id})", s.label())
            });
        }
        for k in ["n_points", "var_gene_id_column"] {
            f.check(ours[k] == golden[k], || format!("{}: {k}", s.label()));
        }
    });
}

#[test]
fn s12_connectivity_is_the_reference_with_weights() {
    each("§12.4 connectivity", |s, f| {
        let meta = s.fixture.strict_golden().meta;
        let Some(edges) = meta.get("edges").filter(|e| !e.is_null()) else {
            f.check(s.get("connectivity_manifest.json").status == 404, || {
                format!("{}: no graph", s.label())
            });
            return;
        };
        if edges["invalid_weights"] != 0 {
            // No strict form (the reference's own weights are zero or negative somewhere).
            f.check(
                s.json("dataset_identity.json")["stats"]["has_connectivity"] == false,
                || format!("{}: a graph without a strict form is published", s.label()),
            );
            return;
        }
        let golden = golden_json(s, "connectivity_manifest.json");
        let ours = s.json("connectivity_manifest.json");
        f.check(
            ours["n_edges"] == golden["n_edges"] && ours["n_cells"] == golden["n_cells"],
            || format!("{}: counts", s.label()),
        );
        f.check(ours["max_neighbors"] == edges["max_degree"], || {
            format!("{}: max_neighbors", s.label())
        });
        for (k, route) in [
            ("sourcesPath", "connectivity/edges.src.bin"),
            ("destinationsPath", "connectivity/edges.dst.bin"),
        ] {
            let body = &s.get(ours[k].as_str().unwrap_or("")).body;
            f.check(
                *body == common::golden_body(&s.fixture.golden(), route),
                || format!("{}: {k} differs from the reference's {route}", s.label()),
            );
        }
        let weights = &s.get(ours["weightsPath"].as_str().unwrap_or("")).body;
        f.check(
            *weights == s.fixture.strict_golden().file("weights.f64.bin"),
            || {
                format!(
                    "{}: weights differ from obsp['connectivities'][src, dst]",
                    s.label()
                )
            },
        );
    });
}

/// The strict obs field payload index of every obs key.
fn obs_indices(s: &Snapshot) -> HashMap<String, u64> {
    let m = s.json("obs_manifest.json");
    m["_continuousFields"]
        .as_array()
        .into_iter()
        .chain(m["_categoricalFields"].as_array())
        .flatten()
        .filter_map(|t| Some((t[1].as_str()?.to_string(), t[0].as_u64()?)))
        .collect()
}

#[test]
fn s12_obs_payloads_equal_the_reference_buffers_of_the_same_field() {
    each("§12.2 obs payloads", |s, f| {
        let golden = s.fixture.strict_golden();
        let indices = obs_indices(s);
        let obs = golden.meta["obs"].as_object().cloned().unwrap_or_default();
        for (key, entry) in &obs {
            let Some(&i) = indices.get(key) else {
                f.fail(format!("{}: obs field {key} missing", s.label()));
                continue;
            };
            if entry["kind"] == "continuous" {
                let path = format!(
                    "obs/{i}.values.{}",
                    s.quantize.map_or("f32", QuantBits::ext)
                );
                let expected = match s.quantize {
                    None => golden.slice("obs.bin", &entry["values"]),
                    Some(b) => golden.slice(
                        &format!("q{}.bin", b.bits()),
                        &entry[format!("q{}", b.bits())]["at"],
                    ),
                };
                f.check(s.get(&path).body == expected, || {
                    format!("{}: {path} ({key})", s.label())
                });
            } else {
                let codes = golden.slice("obs.bin", &entry["codes"]);
                let ext = if codes.len() == 2 * s.n_cells() as usize {
                    "u16"
                } else {
                    "u8"
                };
                let path = format!("obs/{i}.codes.{ext}");
                f.check(s.get(&path).body == codes, || {
                    format!("{}: {path} ({key})", s.label())
                });
                let path = format!("obs/{i}.outliers.f32");
                let outliers = golden.slice("obs.bin", &entry["outliers"]);
                if let Some(diff) = common::compare_outliers(&outliers, &s.get(&path).body) {
                    f.fail(format!("{}: {path} ({key}): {diff}", s.label()));
                }
            }
        }
    });
}

#[test]
fn s12_gene_payloads_equal_the_reference_columns() {
    each("§12.3 gene payloads", |s, f| {
        let golden = s.fixture.strict_golden();
        let var = s.json("var_manifest.json");
        for (gene, entry) in golden.meta["genes"]
            .as_object()
            .cloned()
            .unwrap_or_default()
        {
            let (path, expected) = match s.quantize {
                None => (
                    format!("var/{gene}.values.f32"),
                    golden.slice("genes.f32.bin", &entry["f32"]),
                ),
                Some(b) => {
                    let q = &entry[format!("q{}", b.bits())];
                    let i: usize = gene.parse().unwrap_or(0);
                    let tuple = &var["fields"][i];
                    f.check(
                        tuple[2] == q["range"][0] && tuple[3] == q["range"][1],
                        || {
                            format!(
                                "{}: var tuple {tuple} vs the exporter's range {}",
                                s.label(),
                                q["range"]
                            )
                        },
                    );
                    (
                        format!("var/{gene}.values.{}", b.ext()),
                        golden.slice(&format!("q{}.bin", b.bits()), &q["at"]),
                    )
                }
            };
            f.check(s.get(&path).body == expected, || {
                format!("{}: {path}", s.label())
            });
        }
    });
}

#[test]
fn s12_seed_routes_and_strict_payloads_carry_the_same_bytes() {
    // Every float32 golden route of the seed maps (by the reference's own name lookup) to the
    // strict payload of the same field: the two profiles serve one computation.
    each("§12 seed routes", |s, f| {
        if s.quantize.is_some() {
            return;
        }
        let atlas = s.fixture.golden();
        let indices = obs_indices(s);
        let reference_names: Vec<String> = golden_json(s, "var_manifest.json")["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t[0].as_str().unwrap_or("").to_string())
            .collect();
        let genes = cellucid_edge::model::safe_name::GeneIndex::new(&reference_names);
        let seed_obs_order: Vec<String> = golden_json(s, "dataset_identity.json")["obs_fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["key"].as_str().unwrap_or("").to_string())
            .collect();
        let mut checked = 0;
        for g in common::golden_meta(&atlas)
            .into_iter()
            .filter(|g| g.status == 200)
        {
            let route = g.route.as_str();
            let strict_path = if let Some(rest) = route.strip_prefix("var/") {
                let Some(component) = rest.strip_suffix(".values.f32") else {
                    continue;
                };
                genes
                    .lookup(component)
                    .map(|i| format!("var/{i}.values.f32"))
            } else if let Some(rest) = route.strip_prefix("obs/") {
                let mut parts = rest.rsplitn(3, '.');
                let (ext, kind, component) = (parts.next(), parts.next(), parts.next());
                let (Some(ext), Some(kind), Some(component)) = (ext, kind, component) else {
                    continue;
                };
                // The reference serves the first column in obs order with that safe name.
                let field = cellucid_edge::model::safe_name::first_matching_safe_name(
                    &seed_obs_order,
                    component,
                )
                .and_then(|i| seed_obs_order.get(i));
                field.and_then(|name| Some(format!("obs/{}.{kind}.{ext}", indices.get(name)?)))
            } else if route.starts_with("points_") || route.starts_with("connectivity/edges.") {
                Some(route.to_string())
            } else {
                None
            };
            let Some(strict_path) = strict_path else {
                continue;
            };
            let Some(reply) = s.replies.get(&strict_path) else {
                // e.g. `obs/field.codes.u8` of a continuous column (the reference's surprise 4)
                // has no strict counterpart; nor do edges of a graph without a strict form.
                continue;
            };
            checked += 1;
            let golden = common::golden_body(&atlas, route);
            if let Some(diff) = common::compare_body(route, &golden, &reply.body) {
                f.fail(format!(
                    "{}: {strict_path} vs reference {route}: {diff}",
                    s.label()
                ));
            }
        }
        f.check(checked >= 10, || {
            format!("{}: only {checked} routes compared", s.label())
        });
    });
}

// Names: collisions and case ---------------------------------------------------------------------

#[test]
fn colliding_and_case_differing_names_are_distinct_payloads() {
    each("distinct payloads", |s, f| {
        if s.fixture.atlas != "edge" || s.quantize.is_some() {
            return;
        }
        let golden = s.fixture.strict_golden();
        let indices = obs_indices(s);
        // `pct mito` / `pct_mito` share the seed file `obs/pct_mito.values.f32`.
        for key in ["pct mito", "pct_mito", "%%"] {
            let i = indices.get(key).copied().unwrap_or(u64::MAX);
            let expected = golden.slice("obs.bin", &golden.meta["obs"][key]["values"]);
            f.check(
                s.replies
                    .get(&format!("obs/{i}.values.f32"))
                    .is_some_and(|r| r.body == expected),
                || format!("{}: {key} is not its own payload", s.label()),
            );
        }
        let var = s.json("var_manifest.json");
        let names: Vec<&str> = var["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t[1].as_str())
            .collect();
        // Duplicate ids, safe-name collisions and case variants: each gene its own column.
        for name in [
            "DUP", "DUP-1", "a b", "a_b", ".dotgene", "dotgene", "MiXeD", "mixed",
        ] {
            let Some(i) = names.iter().position(|n| *n == name) else {
                f.fail(format!("{}: gene {name} not listed", s.label()));
                continue;
            };
            let expected =
                golden.slice("genes.f32.bin", &golden.meta["genes"][i.to_string()]["f32"]);
            f.check(
                s.get(&format!("var/{i}.values.f32")).body == expected,
                || format!("{}: gene {name} (var/{i}) is not its own column", s.label()),
            );
        }
    });
}
