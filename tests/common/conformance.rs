//! The conformance check shared by the conformance and S3 tests: the viewer's request
//! sequence (protocol.md §2) and every route of `golden/<atlas>/_meta.json`, checked with the
//! rules of `shared/tools/compare.py`.

use std::collections::HashMap;

use cellucid_edge::model::safe_name::safe_name;
use serde_json::Value;

use super::transport::TestTransport;
use super::{
    GoldenRoute, ORIGIN, Resp, compare_body, compare_bytes, golden_body, golden_meta, gunzip,
    quote_route,
};

/// Collects failures of one store run.
struct Run<'a> {
    atlas: &'a str,
    golden: HashMap<String, GoldenRoute>,
    checked: usize,
    failures: Vec<String>,
}

impl Run<'_> {
    fn fail(&mut self, route: &str, what: impl std::fmt::Display) {
        self.failures.push(format!("{route}: {what}"));
    }

    /// Headers every response must carry: CORS echo and `Vary`.
    fn check_common(&mut self, route: &str, r: &Resp) {
        let acao = r.header("access-control-allow-origin");
        if acao != ORIGIN && acao != "*" {
            self.fail(route, format!("CORS: Access-Control-Allow-Origin={acao:?}"));
        }
        for token in ["Origin", "Accept-Encoding"] {
            if !r.vary_has(token) {
                self.fail(route, format!("Vary {:?} lacks {token}", r.header("vary")));
            }
        }
    }

    /// compare.py's `check` for a golden route, plus exact Content-Type on every status.
    fn check_golden(&mut self, g: &GoldenRoute, r: &Resp) {
        self.checked += 1;
        let route = g.route.as_str();
        if r.status.as_u16() != g.status {
            self.fail(
                route,
                format!("status {}, reference {}", r.status.as_u16(), g.status),
            );
            return;
        }
        self.check_common(route, r);
        if r.content_type() != g.content_type {
            self.fail(
                route,
                format!(
                    "Content-Type {:?}, reference {:?}",
                    r.content_type(),
                    g.content_type
                ),
            );
        }
        if g.status != 200 {
            return;
        }
        if g.gzip && r.header("content-encoding") != "gzip" {
            self.fail(
                route,
                "binary body not gzip-encoded although the client accepts gzip",
            );
        }
        // JSON may be gzip-encoded too (0.0.9 never compresses it; compare.py decodes either),
        // but nothing but gzip is acceptable.
        if r.has("content-encoding") && r.header("content-encoding") != "gzip" {
            self.fail(
                route,
                format!("Content-Encoding {:?}", r.header("content-encoding")),
            );
        }
        let body = match r.decoded() {
            Ok(b) => b,
            Err(e) => return self.fail(route, e),
        };
        let golden = golden_body(self.atlas, route);
        if let Some(diff) = compare_body(route, &golden, &body) {
            self.fail(route, diff);
        }
    }

    /// A route of the viewer sequence: checked against its golden if there is one.
    fn check_viewer(&mut self, route: &str, r: &Resp) {
        match self.golden.get(route).cloned() {
            Some(g) => self.check_golden(&g, r),
            None => {
                self.checked += 1;
                self.check_common(route, r);
            }
        }
    }

    fn expect_status(&mut self, route: &str, r: &Resp, status: u16) -> bool {
        if r.status.as_u16() == status {
            true
        } else {
            self.fail(
                route,
                format!("status {}, expected {status}", r.status.as_u16()),
            );
            false
        }
    }
}

fn join(base: &str, route: &str) -> String {
    // `base` is a dataset path like "/" or "/<id>/"; routes are relative to it.
    format!("{}{}", base.trim_end_matches('/'), quote_route(route))
}

async fn viewer_sequence(server: &dyn TestTransport, run: &mut Run<'_>) {
    // 1-3: control routes.
    for route in ["_cellucid/health", "_cellucid/info", "_cellucid/datasets"] {
        let r = server.get_viewer(&quote_route(route)).await;
        run.check_viewer(route, &r);
    }
    let health = server.get_viewer("/_cellucid/health").await;
    if health.json()["status"] != "ok" {
        run.fail(
            "_cellucid/health",
            format!("status is not \"ok\": {}", health.json()),
        );
    }
    let info = server.get_viewer("/_cellucid/info").await.json();
    if info.get("ws_port").is_some() {
        run.fail(
            "_cellucid/info",
            "carries ws_port (the viewer would open a WebSocket)",
        );
    }
    let datasets = server.get_viewer("/_cellucid/datasets").await.json();
    let base = datasets["datasets"][0]["path"]
        .as_str()
        .unwrap_or("/")
        .to_string();
    if base != "/" {
        run.fail(
            "_cellucid/datasets",
            format!("single-atlas path is {base:?}, expected \"/\""),
        );
    }
    let base = base.as_str();

    // 4: identity alone (version check), then 5: the four documents in parallel.
    let identity = server
        .get_viewer(&join(base, "dataset_identity.json"))
        .await;
    run.check_viewer("dataset_identity.json", &identity);
    let identity = identity.json();
    if identity["version"] != 2 {
        run.fail(
            "dataset_identity.json",
            format!("version {}, expected 2", identity["version"]),
        );
    }
    let docs = [
        "dataset_identity.json",
        "obs_manifest.json",
        "var_manifest.json",
        "connectivity_manifest.json",
    ];
    let responses = futures::future::join_all(
        docs.iter()
            .map(|d| async move { server.get_viewer(&join(base, d)).await }),
    )
    .await;
    for (doc, r) in docs.iter().zip(&responses) {
        run.check_viewer(doc, r);
    }
    let obs_manifest = responses[1].json();
    let var_manifest = responses[2].json();
    let has_connectivity = responses[3].status == 200;

    // 6 + 11: points for the default dimension first, then the others; `.gz` first (404).
    let default_dim = identity["embeddings"]["default_dimension"]
        .as_u64()
        .unwrap_or(3);
    let mut dims: Vec<u64> = vec![default_dim];
    for d in identity["embeddings"]["available_dimensions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if let Some(d) = d.as_u64()
            && !dims.contains(&d)
        {
            dims.push(d);
        }
    }
    for d in &dims {
        let gz = format!("points_{d}d.bin.gz");
        let r = server.get_viewer(&join(base, &gz)).await;
        run.checked += 1;
        run.check_common(&gz, &r);
        run.expect_status(&gz, &r, 404);
        let plain = format!("points_{d}d.bin");
        let r = server.get_viewer(&join(base, &plain)).await;
        run.check_viewer(&plain, &r);
        run.expect_status(&plain, &r, 200);
    }

    // 7: colour by the first categorical field (codes + outliers), 7': first continuous field.
    if let Some(field) = obs_manifest["_categoricalFields"]
        .as_array()
        .and_then(|l| l.first())
    {
        let key = safe_name(field[0].as_str().unwrap_or_default());
        let ext = if field[2] == "uint16" { "u16" } else { "u8" };
        for route in [
            format!("obs/{key}.codes.{ext}"),
            format!("obs/{key}.outliers.f32"),
        ] {
            let r = server.get_viewer(&join(base, &route)).await;
            run.check_viewer(&route, &r);
            run.expect_status(&route, &r, 200);
        }
    }
    if let Some(field) = obs_manifest["_continuousFields"]
        .as_array()
        .and_then(|l| l.first())
    {
        let route = format!(
            "obs/{}.values.f32",
            safe_name(field[0].as_str().unwrap_or_default())
        );
        let r = server.get_viewer(&join(base, &route)).await;
        run.check_viewer(&route, &r);
        run.expect_status(&route, &r, 200);
    }

    // 8: colour by the first gene.
    if let Some(gene) = var_manifest["fields"].as_array().and_then(|l| l.first()) {
        let route = format!(
            "var/{}.values.f32",
            safe_name(gene[0].as_str().unwrap_or_default())
        );
        let r = server.get_viewer(&join(base, &route)).await;
        run.check_viewer(&route, &r);
        run.expect_status(&route, &r, 200);
    }

    // 9: edges in parallel.
    let edge_routes = ["connectivity/edges.src.bin", "connectivity/edges.dst.bin"];
    let responses = futures::future::join_all(
        edge_routes
            .iter()
            .map(|route| async move { server.get_viewer(&join(base, route)).await }),
    )
    .await;
    for (route, r) in edge_routes.iter().zip(&responses) {
        run.check_viewer(route, r);
        run.expect_status(route, r, if has_connectivity { 200 } else { 404 });
    }

    // 10: vector field overlay: `.bin.gz` is raw gzip without Content-Encoding.
    if let Some(fields) = identity["vector_fields"]["fields"].as_object() {
        let default_field = identity["vector_fields"]["default_field"]
            .as_str()
            .unwrap_or_default();
        let mut ordered: Vec<(&String, &Value)> = fields.iter().collect();
        ordered.sort_by_key(|(id, _)| id.as_str() != default_field);
        for (id, field) in ordered {
            for d in field["available_dimensions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let plain = format!("vectors/{id}_{d}d.bin");
                let gz = format!("{plain}.gz");
                let r = server.get_viewer(&join(base, &gz)).await;
                run.checked += 1;
                run.check_common(&gz, &r);
                if !run.expect_status(&gz, &r, 200) {
                    continue;
                }
                if r.has("content-encoding") {
                    run.fail(
                        &gz,
                        format!(
                            "Content-Encoding {:?} on a raw .gz",
                            r.header("content-encoding")
                        ),
                    );
                }
                if r.content_type() != "application/octet-stream" {
                    run.fail(&gz, format!("Content-Type {:?}", r.content_type()));
                }
                match gunzip(&r.body) {
                    Ok(inflated) => {
                        if run.golden.contains_key(&plain)
                            && let Some(diff) =
                                compare_bytes(&golden_body(run.atlas, &plain), &inflated)
                        {
                            run.fail(&gz, diff);
                        }
                    }
                    Err(e) => run.fail(&gz, e),
                }
            }
        }
    }
}

/// Replay the viewer's request sequence and every golden route of `atlas` against `server`;
/// the failures found (empty when conformant).
pub async fn check_server(atlas: &str, label: &str, server: &dyn TestTransport) -> Vec<String> {
    let routes = golden_meta(atlas);
    let mut run = Run {
        atlas,
        golden: routes
            .iter()
            .map(|g| (g.route.clone(), g.clone()))
            .collect(),
        checked: 0,
        failures: Vec::new(),
    };

    viewer_sequence(server, &mut run).await;
    let viewer_checked = run.checked;

    for g in &routes {
        match server
            .try_request(
                http::Method::GET,
                &quote_route(&g.route),
                &[("accept-encoding", "gzip"), ("origin", ORIGIN)],
            )
            .await
        {
            Ok(r) => run.check_golden(g, &r),
            Err(e) => {
                run.checked += 1;
                run.fail(&g.route, e);
            }
        }
    }

    println!(
        "conformance {label}: {} viewer-sequence + {} golden checks, {} failed",
        viewer_checked,
        routes.len(),
        run.failures.len()
    );
    run.failures
}

/// Panic with every failure of a conformance run.
pub fn assert_failures(label: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{label}: {} failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
