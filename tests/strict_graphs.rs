//! The strict profile's graph rules on purpose-made stores (`stores/strict_graphs`, made by
//! `tests/fixtures/generate_strict_graphs.py`): the uint16 width at exactly 65 536 cells, the edge
//! degree instead of the seed's self-loop-counting `max_neighbors` (protocol-strict.md §8,
//! §12.4), weights read at (source, destination) of a CSC graph, and graphs with no strict
//! form (NaN, negative or zero weights, a dense matrix) left out of the strict profile while
//! the root keeps serving the seed's.

mod common;

use cellucid_edge::protocol::strict::report;
use common::{TestServer, fixtures};

fn store(name: &str) -> String {
    fixtures()
        .join("stores")
        .join("strict_graphs")
        .join(format!("{name}.zarr"))
        .to_string_lossy()
        .into_owned()
}

fn u_ints(bytes: &[u8], width: usize) -> Vec<u64> {
    bytes
        .chunks_exact(width)
        .map(|c| c.iter().rev().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
        .collect()
}

fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

async fn body(server: &TestServer, path: &str) -> Vec<u8> {
    let r = server.get_viewer(path).await;
    assert_eq!(r.status, 200, "{path}");
    r.decoded().expect("decodable")
}

/// §8 index width and degree rule, §12.4: at 65 536 cells the seed writes uint32 indices and
/// counts the stored diagonal; the strict profile serves the same pairs as uint16 and the edge
/// degree, with one float64 weight per edge in edge order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_cells_65536_get_uint16_indices_and_the_edge_degree() {
    let server = TestServer::open(&store("cells65536")).await;
    let seed = server
        .get_viewer("/connectivity_manifest.json")
        .await
        .json();
    assert_eq!(seed["index_dtype"], "uint32");
    assert_eq!(
        seed["max_neighbors"], 3,
        "the seed counts the self-loop of cell 2"
    );
    let strict = server
        .get_viewer("/strict/connectivity_manifest.json")
        .await
        .json();
    assert_eq!(strict["index_dtype"], "uint16");
    assert_eq!(strict["index_bytes"], 2);
    assert_eq!(
        strict["max_neighbors"], 2,
        "cells 0, 2 and 65 535 touch two edges"
    );
    assert_eq!(strict["n_edges"], 5);

    let seed_src = u_ints(&body(&server, "/connectivity/edges.src.bin").await, 4);
    let seed_dst = u_ints(&body(&server, "/connectivity/edges.dst.bin").await, 4);
    let src = u_ints(
        &body(&server, "/strict/connectivity/edges.src.bin").await,
        2,
    );
    let dst = u_ints(
        &body(&server, "/strict/connectivity/edges.dst.bin").await,
        2,
    );
    assert_eq!(
        (src.clone(), dst.clone()),
        (seed_src, seed_dst),
        "the same pairs"
    );
    assert_eq!(
        src.iter()
            .zip(&dst)
            .map(|(a, b)| (*a, *b))
            .collect::<Vec<_>>(),
        [(0, 65_535), (1, 2), (2, 3), (5, 6), (40_000, 65_535)]
    );
    let weights = f64s(&body(&server, "/strict/connectivity/edges.weights.f64.bin").await);
    assert_eq!(weights, [0.5, 0.25, 0.75, 1.0, 0.125]);
    let identity = server
        .get_viewer("/strict/dataset_identity.json")
        .await
        .json();
    assert_eq!(identity["stats"]["has_connectivity"], true);
    assert_eq!(identity["stats"]["n_edges"], 5);
    server.stop().await;
}

/// §12.4: the weight of (s, d) is the stored value at row s, column d, also when the matrix is
/// stored as CSC and C[s, d] != C[d, s].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_weights_are_read_at_source_row_destination_column() {
    let server = TestServer::open(&store("csc")).await;
    let src = u_ints(
        &body(&server, "/strict/connectivity/edges.src.bin").await,
        2,
    );
    let dst = u_ints(
        &body(&server, "/strict/connectivity/edges.dst.bin").await,
        2,
    );
    let weights = f64s(&body(&server, "/strict/connectivity/edges.weights.f64.bin").await);
    let pairs: Vec<(u64, u64)> = src.into_iter().zip(dst).collect();
    assert_eq!(pairs, [(0, 1), (1, 4), (2, 3)]);
    assert_eq!(
        weights,
        [f64::from(0.2f32), f64::from(0.3f32), f64::from(0.7f32)]
    );
    server.stop().await;
}

/// §8 / §12.4: a graph whose weights are not all finite and > 0, or that is not a sparse
/// matrix, has no strict form: the strict identity says `has_connectivity: false`, `n_edges:
/// null`, and the manifest and buffers answer 404; `inspect` says why. The root is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_graphs_without_a_strict_form_are_left_out() {
    for (name, reason) in [
        ("nan_weight", "non-finite weight"),
        ("negative", "not > 0"),
        ("zero_weight", "not > 0"),
        ("dense_graph", "dense"),
    ] {
        let server = TestServer::open(&store(name)).await;
        let identity = server
            .get_viewer("/strict/dataset_identity.json")
            .await
            .json();
        assert_eq!(identity["stats"]["has_connectivity"], false, "{name}");
        assert!(identity["stats"]["n_edges"].is_null(), "{name}");
        for path in [
            "/strict/connectivity_manifest.json",
            "/strict/connectivity/edges.src.bin",
            "/strict/connectivity/edges.dst.bin",
            "/strict/connectivity/edges.weights.f64.bin",
        ] {
            assert_eq!(server.get_viewer(path).await.status, 404, "{name}: {path}");
        }
        if name != "dense_graph" {
            // The seed keeps its graph (it has no weights to check).
            let seed = server.get_viewer("/connectivity_manifest.json").await;
            assert_eq!(seed.status, 200, "{name}: root connectivity");
        }
        let notes = report::notes(server.app.catalog().first())
            .await
            .expect("inspect notes");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("connectivity is left out") && n.contains(reason)),
            "{name}: {notes:?}"
        );
        server.stop().await;
    }
}
