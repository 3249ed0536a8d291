//! The connectivity graph as the strict profile sees it (protocol-strict.md §8, §12.4): the
//! seed's edge list, the float64 weight of every edge read from `obsp['connectivities']`, the
//! edge degree, and whether a valid strict form exists.
//!
//! One read of the graph serves both this check and the seed's edge list in the memory budget
//! (when the seed has not read it yet), so the strict identity costs what the seed's does. The
//! weights themselves are not retained (8 bytes per edge): [`Dataset::strict_edge_weights`]
//! reads the graph again when the weights file is asked for, and the HTTP layer keeps its body
//! in the budget. The arrays read are reserved as working memory while they are held, and the
//! CPU work runs through [`crate::compute`] (interrupted when the request ends).

use std::sync::Arc;

use bytes::Bytes;

use super::{Dataset, DatasetError, edges_from_arrays, items};
use crate::anndata::MatrixMeta;
use crate::anndata::matrix::SparseArrays;
use crate::compute::run_sized;
use crate::model::edges::{Edges, IndexDtype};
use crate::model::weights::{
    NoStrictForm, SparseLayout, WeightCheck, WeightValue, check_size, csr_fast_verdict, max_degree,
    visit_edge_weights,
};

/// The strict profile's view of an atlas's graph (small; memoised per dataset).
#[derive(Debug, Clone, PartialEq)]
pub struct StrictGraph {
    /// Cells.
    pub n_cells: u64,
    /// Edges of the seed's edge list.
    pub n_edges: usize,
    /// Largest number of edges touching one cell (the strict `max_neighbors`).
    pub max_degree: usize,
    /// `Ok(index dtype)` when the graph has a valid strict form, else why not.
    pub verdict: Result<IndexDtype, NoStrictForm>,
}

impl StrictGraph {
    /// The strict index dtype, when the graph has a strict form.
    pub fn index_dtype(&self) -> Option<IndexDtype> {
        self.verdict.as_ref().ok().copied()
    }

    fn unusable(n_cells: u64, reason: String) -> Self {
        StrictGraph {
            n_cells,
            n_edges: 0,
            max_degree: 0,
            verdict: Err(NoStrictForm::Unreadable { reason }),
        }
    }
}

/// Check the weights of `edges` (read from the arrays they were built from) and, with
/// `encode`, return the weights file; `Err`: the graph has no strict form.
fn strict_weights(
    n_cells: u64,
    edges: &Edges,
    arrays: &SparseArrays,
    layout: SparseLayout,
    encode: bool,
) -> Result<(IndexDtype, Option<Vec<u8>>), NoStrictForm> {
    let dtype = check_size(n_cells, edges.n_edges())?;
    let unreadable = |e: crate::model::ModelError| NoStrictForm::Unreadable {
        reason: e.to_string(),
    };
    let mut check = WeightCheck::default();
    let mut bytes = encode.then(|| Vec::with_capacity(edges.n_edges() * 8));
    // The verdict alone of a CSR graph usually needs no walk over the edges.
    macro_rules! run {
        ($data:expr) => {
            if !encode
                && layout == SparseLayout::Csr
                && let Some(verdict) =
                    csr_fast_verdict(edges, &arrays.indptr, &arrays.indices, $data)
            {
                return verdict.map(|()| (dtype, None));
            } else {
                visit_edge_weights(
                    edges,
                    &arrays.indptr,
                    &arrays.indices,
                    $data,
                    layout,
                    |edge, weight| {
                        let weight = weight.map(WeightValue::widen);
                        check.visit(edge, weight);
                        if let Some(out) = bytes.as_mut() {
                            out.extend_from_slice(&weight.unwrap_or(0.0).to_le_bytes());
                        }
                    },
                )
                .map_err(unreadable)?
            }
        };
    }
    crate::anndata::array::map_numbers!(&arrays.data, v => run!(v));
    check.finish()?;
    Ok((dtype, bytes))
}

impl Dataset {
    /// The sparse layout of `obsp['connectivities']`, `None` without a graph, or the reason it
    /// cannot be a graph (dense).
    fn connectivity_layout(
        &self,
    ) -> Option<Result<(&crate::anndata::SparseMeta, SparseLayout), String>> {
        match &self.layout.connectivities {
            MatrixMeta::Absent => None,
            MatrixMeta::Csr(meta) => Some(Ok((meta, SparseLayout::Csr))),
            MatrixMeta::Csc(meta) => Some(Ok((meta, SparseLayout::Csc))),
            MatrixMeta::Dense { .. } => Some(Err(
                "obsp['connectivities'] is dense; expected a sparse matrix".into(),
            )),
        }
    }

    /// Read the graph's arrays and its seed edge list (from the seed's memo, or computed from
    /// these arrays and memoised for the seed). `Ok(Err(reason))`: the graph is unusable.
    async fn graph_arrays(
        &self,
        meta: &crate::anndata::SparseMeta,
        layout: SparseLayout,
    ) -> Result<Result<(Arc<SparseArrays>, Arc<Edges>), String>, DatasetError> {
        let arrays = match self.store.read_sparse(meta).await {
            Ok(arrays) => Arc::new(arrays),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => return Ok(Err(e.to_string())),
        };
        if let Some(edges) = self.memory.get::<Edges>(&items::EDGES).await {
            return Ok(Ok((arrays, edges)));
        }
        let n = self.layout.n_obs as usize;
        let csc = layout == SparseLayout::Csc;
        let computed = {
            let arrays = arrays.clone();
            run_sized(arrays.indices.len() + n, move || {
                edges_from_arrays(n, &arrays, csc)
            })
            .await?
        };
        match computed {
            Ok(edges) => {
                let edges = Arc::new(edges);
                // The seed's identity and edge files reuse this read (from the budget).
                self.memory.insert(items::EDGES, edges.clone()).await;
                Ok(Ok((arrays, edges)))
            }
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// The graph as the strict profile sees it (`None`: no `obsp['connectivities']`).
    /// Transient store failures are errors (and not memoised); a graph that cannot be used is
    /// a [`StrictGraph`] whose verdict says why.
    pub async fn strict_graph(&self) -> Result<Option<Arc<StrictGraph>>, DatasetError> {
        self.strict_graph
            .get_or_try_init(|| async {
                let n_cells = self.n_cells();
                let (meta, layout) = match self.connectivity_layout() {
                    None => return Ok(None),
                    Some(Err(reason)) => {
                        return Ok(Some(Arc::new(StrictGraph::unusable(n_cells, reason))));
                    }
                    Some(Ok(found)) => found,
                };
                // The graph's arrays and edge list, while they are held here.
                let _working = self.working(meta.nnz, 40).await;
                let (arrays, edges) = match self.graph_arrays(meta, layout).await? {
                    Ok(pair) => pair,
                    Err(reason) => {
                        return Ok(Some(Arc::new(StrictGraph::unusable(n_cells, reason))));
                    }
                };
                let graph = run_sized(arrays.indices.len() + n_cells as usize, move || {
                    StrictGraph {
                        n_cells,
                        n_edges: edges.n_edges(),
                        max_degree: max_degree(&edges),
                        verdict: strict_weights(n_cells, &edges, &arrays, layout, false)
                            .map(|(d, _)| d),
                    }
                })
                .await?;
                Ok::<_, DatasetError>(Some(Arc::new(graph)))
            })
            .await
            .cloned()
    }

    /// The strict graph verdict if this process already knows it (never reads the store).
    pub fn known_strict_graph(&self) -> Option<Option<Arc<StrictGraph>>> {
        self.strict_graph.get().cloned()
    }

    /// The strict weights file: one little-endian float64 per edge, in edge order
    /// (`NotFound` when the graph is absent or has no strict form).
    pub async fn strict_edge_weights(&self) -> Result<Bytes, DatasetError> {
        let no_graph = || DatasetError::NotFound("Connectivity data not available".into());
        let graph = self.strict_graph().await?.ok_or_else(no_graph)?;
        if graph.verdict.is_err() {
            return Err(no_graph());
        }
        let Some(Ok((meta, layout))) = self.connectivity_layout() else {
            return Err(no_graph());
        };
        // The arrays, the edge list and the weights file, while they are held here.
        let _working = self.working(meta.nnz, 48).await;
        let (arrays, edges) = self
            .graph_arrays(meta, layout)
            .await?
            .map_err(DatasetError::Unsupported)?;
        let n_cells = self.n_cells();
        let weights = run_sized(arrays.indices.len(), move || {
            strict_weights(n_cells, &edges, &arrays, layout, true)
        })
        .await?;
        match weights {
            Ok((_, Some(bytes))) => Ok(Bytes::from(bytes)),
            Ok((_, None)) => Err(no_graph()),
            // The memoised verdict said the graph was fine: the store changed under us.
            Err(e) => Err(DatasetError::Unsupported(format!(
                "the connectivity graph changed while being served: {e}"
            ))),
        }
    }
}
