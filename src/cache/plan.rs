//! The precompute plan: phases run in order, the tasks of a phase in any order, anywhere.
//!
//! A plan is a pure function of the opened atlas (its fingerprint, shape, the row offsets of a
//! CSR X) and of this crate's constants — never of `--jobs`, memory settings, the machine or
//! the time — so every machine that computes it gets the same JSON, and the cache the tasks
//! write is the same whether one process runs them all or a thousand Lambda tasks do.
//!
//! Phases:
//! 1. `artifacts` — one task per artifact (documents, points, obs buffers, edges, vectors).
//! 2. `transpose` (CSR X only) — one task per row block of X (about [`row_block_target`]
//!    stored values, whole rows): writes one scratch shard holding the block's values grouped by
//!    gene block, sorted by gene.
//! 3. `pack` — one task per gene block: gathers its genes' values from every shard (or reads
//!    the columns of a CSC/dense X), densifies each gene, gzips it by the server's one policy and
//!    writes the block object whole, create-only.
//! 4. `index` — one task: reads every block header and writes the pack index last (its presence
//!    marks the pack complete).
//! 5. `ranges` (strict profile with `--quantize` only, #14) — one task per gene block: reads the
//!    block object and writes the quantisation range of each of its genes.
//! 6. `strict` (#14) — one task per artifact of the strict profile (its documents, edge
//!    weights, quantised obs payloads; what it shares with the seed is the seed's).
//! 7. `cleanup` — one task: deletes the scratch shards (never anything of the cache itself).
//!
//! The strict profile's `--quantize` setting is the one input besides the atlas: it changes
//! what is built, so a plan records it and is stored under a key of its own ([`plan_key`]).

use serde::{Deserialize, Serialize};

use super::gene_pack::{GeneBlocks, MAX_GENES_PER_BLOCK};
use crate::anndata::MatrixMeta;
use crate::dataset::Dataset;
use crate::model::quantize::QuantBits;

/// Version of the plan format and of the task semantics (2: the `ranges` and `strict` phases).
pub const PLAN_VERSION: u32 = 2;
/// Cache key of the stored plan of a run without `--quantize` (create-only, so every task of a
/// run uses one plan); see [`plan_key`].
pub const PLAN_KEY: &str = "precompute/plan.json";

/// Cache key of the stored plan of a run for a deployment serving `quantize` under `/strict`:
/// [`PLAN_KEY`] without, `precompute/plan.q8.json` / `plan.q16.json` with (each plan builds
/// everything the other builds, and the quantised artifacts too).
pub fn plan_key(quantize: Option<QuantBits>) -> String {
    match quantize {
        None => PLAN_KEY.to_string(),
        Some(bits) => format!("precompute/plan.q{}.json", bits.bits()),
    }
}

/// Fewest stored values per row block of a CSR X.
const ROW_BLOCK_MIN_NNZ: u64 = 1 << 20;
/// Most stored values per row block (a transpose task holds about 16 bytes per value).
const ROW_BLOCK_MAX_NNZ: u64 = 64 << 20;
/// Fewest stored values per gene block of a sparse X.
const GENE_BLOCK_MIN_NNZ: u64 = 2 << 20;
/// Most stored values per gene block (a pack task holds 8 bytes per value).
const GENE_BLOCK_MAX_NNZ: u64 = 64 << 20;
/// Dense column bytes per gene block when X is dense or absent.
const DENSE_BLOCK_BYTES: u64 = 64 << 20;

/// The name of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseName {
    /// Every artifact besides genes.
    Artifacts,
    /// Row blocks of a CSR X into scratch shards.
    Transpose,
    /// Gene blocks into pack objects.
    Pack,
    /// The pack index.
    Index,
    /// Quantisation ranges of the genes of each pack block (strict profile, `--quantize`).
    Ranges,
    /// The strict profile's own artifacts.
    Strict,
    /// Scratch removal.
    Cleanup,
}

impl PhaseName {
    /// Every phase, in run order.
    pub const ALL: [PhaseName; 7] = [
        PhaseName::Artifacts,
        PhaseName::Transpose,
        PhaseName::Pack,
        PhaseName::Index,
        PhaseName::Ranges,
        PhaseName::Strict,
        PhaseName::Cleanup,
    ];

    /// The phase's name as on the command line and in the plan.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Artifacts => "artifacts",
            PhaseName::Transpose => "transpose",
            PhaseName::Pack => "pack",
            PhaseName::Index => "index",
            PhaseName::Ranges => "ranges",
            PhaseName::Strict => "strict",
            PhaseName::Cleanup => "cleanup",
        }
    }
}

impl std::fmt::Display for PhaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PhaseName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PhaseName::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown phase `{s}` (phases: {})",
                    PhaseName::ALL.map(PhaseName::as_str).join(", ")
                )
            })
    }
}

/// One phase of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhasePlan {
    /// Phase name.
    pub name: PhaseName,
    /// Number of tasks (`--task 0` … `--task tasks-1`).
    pub tasks: u64,
    /// What the tasks do.
    pub description: String,
}

/// The atlas a plan is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAtlas {
    /// Dataset id.
    pub id: String,
    /// Cells (rows of X).
    pub cells: u64,
    /// Genes (columns of X).
    pub genes: u64,
    /// Kind of X: `csr`, `csc`, `dense` or `none`.
    pub x: String,
    /// Stored values of a sparse X.
    pub nnz: Option<u64>,
}

/// A precompute plan (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_VERSION`].
    pub version: u32,
    /// Cache fingerprint every task writes under.
    pub fingerprint: String,
    /// The atlas.
    pub atlas: PlanAtlas,
    /// Genes per pack block (the last block may hold fewer).
    pub genes_per_block: u64,
    /// Cache keys of the `artifacts` phase, task `i` building `artifacts[i]`.
    pub artifacts: Vec<String>,
    /// Row boundaries of the `transpose` tasks (CSR X): task `i` reads rows
    /// `row_blocks[i]..row_blocks[i + 1]`.
    pub row_blocks: Vec<u64>,
    /// The strict profile's quantisation width (8 or 16) the plan builds for, if any.
    pub quantize: Option<u8>,
    /// Cache keys of the `strict` phase, task `i` building `strict[i]`.
    pub strict: Vec<String>,
    /// The phases, in run order.
    pub phases: Vec<PhasePlan>,
}

/// Why a plan could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// X's row offsets could not be read or are malformed.
    #[error("X is invalid: {0}")]
    InvalidX(String),
    /// A stored plan does not parse or is for another version.
    #[error("the stored plan is unusable: {0}")]
    Stored(String),
}

impl Plan {
    /// The gene blocks of the pack.
    pub fn gene_blocks(&self) -> GeneBlocks {
        GeneBlocks {
            n_genes: self.atlas.genes,
            genes_per_block: self.genes_per_block,
        }
    }

    /// The phase named `name`, if the plan has it.
    pub fn phase(&self, name: PhaseName) -> Option<&PhasePlan> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// Rows of transpose task `task`.
    pub fn row_block(&self, task: u64) -> Option<std::ops::Range<u64>> {
        let i = usize::try_from(task).ok()?;
        Some(*self.row_blocks.get(i)?..*self.row_blocks.get(i + 1)?)
    }

    /// The strict profile's quantisation width the plan builds for.
    pub fn quantize(&self) -> Option<QuantBits> {
        self.quantize
            .and_then(|b| QuantBits::from_bits(u64::from(b)))
    }

    /// Number of transpose tasks (0 unless X is CSR).
    pub fn n_row_blocks(&self) -> u64 {
        self.row_blocks.len().saturating_sub(1) as u64
    }

    /// The plan as pretty JSON (what `precompute --plan` prints and the cache stores).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parse a stored plan.
    pub fn from_json(bytes: &[u8]) -> Result<Plan, PlanError> {
        let plan: Plan =
            serde_json::from_slice(bytes).map_err(|e| PlanError::Stored(e.to_string()))?;
        if plan.version != PLAN_VERSION {
            return Err(PlanError::Stored(format!(
                "plan version {} (this build uses {PLAN_VERSION})",
                plan.version
            )));
        }
        if plan.quantize.is_some() && plan.quantize().is_none() {
            return Err(PlanError::Stored(format!(
                "quantisation to {:?} bits (8 or 16)",
                plan.quantize
            )));
        }
        Ok(plan)
    }
}

/// Block sizes of a plan. The defaults are what `precompute` uses; other values exist for tests
/// that need many small blocks (a plan records its blocks, so tasks follow whatever plan is
/// stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanLimits {
    /// Stored values per row block instead of [`row_block_target`].
    pub row_block_nnz: Option<u64>,
    /// Stored values per gene block instead of the default target of [`genes_per_block`].
    pub gene_block_nnz: Option<u64>,
}

/// Target stored values per row block of a CSR X with `nnz` values: about 128 row blocks,
/// within [1 Mi, 64 Mi] values.
pub fn row_block_target(nnz: u64) -> u64 {
    (nnz / 128).clamp(ROW_BLOCK_MIN_NNZ, ROW_BLOCK_MAX_NNZ)
}

/// Genes per pack block: about 256 blocks of a sparse X (within [2 Mi, 64 Mi] stored values
/// per block, or `block_nnz`), or 64 MiB of dense columns per block otherwise.
pub fn genes_per_block(
    n_cells: u64,
    n_genes: u64,
    nnz: Option<u64>,
    block_nnz: Option<u64>,
) -> u64 {
    let per = match nnz {
        Some(nnz) if n_genes > 0 => {
            let target = block_nnz
                .unwrap_or_else(|| (nnz / 256).clamp(GENE_BLOCK_MIN_NNZ, GENE_BLOCK_MAX_NNZ));
            let per_gene = (nnz / n_genes).max(1);
            target / per_gene
        }
        _ => DENSE_BLOCK_BYTES / (n_cells.max(1) * 4),
    };
    per.clamp(1, MAX_GENES_PER_BLOCK).min(n_genes.max(1))
}

/// Row boundaries of blocks of about `target` stored values of whole rows (a longer row is a
/// block of its own) from a validated `indptr`.
pub fn row_blocks(indptr: &[u64], target: u64) -> Vec<u64> {
    let n = indptr.len().saturating_sub(1);
    let mut bounds = vec![0u64];
    let mut row = 0usize;
    while row < n {
        let first = indptr[row];
        row += 1;
        while row < n && indptr[row + 1] - first <= target.max(1) {
            row += 1;
        }
        bounds.push(row as u64);
    }
    bounds
}

/// Read and validate the row offsets of a CSR X of `n_rows` rows and `nnz` stored values.
pub async fn read_indptr(
    dataset: &Dataset,
    key: &str,
    n_rows: u64,
    nnz: u64,
    rows: Option<std::ops::Range<u64>>,
) -> Result<Vec<u64>, PlanError> {
    let invalid = |e: String| PlanError::InvalidX(e);
    let range = rows.unwrap_or(0..n_rows);
    let raw = dataset
        .store()
        .array(&format!("{key}/indptr"), "sparse indptr")
        .await
        .map_err(|e| invalid(e.to_string()))?
        .read_numbers(Some(range.start..range.end + 1))
        .await
        .map_err(|e| invalid(e.to_string()))?
        .to_i64();
    if raw.len() as u64 != range.end - range.start + 1 {
        return Err(invalid(format!(
            "{key}/indptr has {} entries for rows {range:?}",
            raw.len()
        )));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, &v) in raw.iter().enumerate() {
        let ok = v >= 0 && v as u64 <= nnz && out.last().is_none_or(|&prev| prev <= v as u64);
        if !ok {
            return Err(invalid(format!(
                "{key}/indptr is not ascending within 0..={nnz} at row {}",
                range.start + i as u64
            )));
        }
        out.push(v as u64);
    }
    if range.start == 0 && out.first() != Some(&0) {
        return Err(invalid(format!("{key}/indptr does not start at 0")));
    }
    Ok(out)
}

/// What a plan builds besides the gene pack: the cache keys of the `artifacts` phase, and of
/// the `strict` phase for a deployment serving `quantize` (which adds the `ranges` phase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanArtifacts {
    /// Keys of the seed's artifacts.
    pub seed: Vec<String>,
    /// Keys of the strict profile's own artifacts.
    pub strict: Vec<String>,
    /// The strict profile's quantisation width.
    pub quantize: Option<QuantBits>,
}

/// Make the plan of `dataset` under `fingerprint`: reads X's row offsets when X is CSR, nothing
/// else.
pub async fn make_plan(
    dataset: &Dataset,
    fingerprint: &str,
    artifacts: PlanArtifacts,
    limits: PlanLimits,
) -> Result<Plan, PlanError> {
    let (cells, genes) = (dataset.n_cells(), dataset.n_genes());
    let x = &dataset.layout().x;
    let nnz = match x {
        MatrixMeta::Csr(m) | MatrixMeta::Csc(m) => Some(m.nnz),
        _ => None,
    };
    let row_blocks = match x {
        MatrixMeta::Csr(meta) => {
            let indptr = read_indptr(dataset, &meta.key, cells, meta.nnz, None).await?;
            let target = limits
                .row_block_nnz
                .unwrap_or_else(|| row_block_target(meta.nnz));
            row_blocks(&indptr, target)
        }
        _ => Vec::new(),
    };
    let per = genes_per_block(cells, genes, nnz, limits.gene_block_nnz);
    let blocks = GeneBlocks {
        n_genes: genes,
        genes_per_block: per,
    };
    let mut phases = vec![PhasePlan {
        name: PhaseName::Artifacts,
        tasks: artifacts.seed.len() as u64,
        description:
            "compute, gzip and store one artifact (documents, points, obs, edges, vectors)".into(),
    }];
    let csr = matches!(x, MatrixMeta::Csr(_));
    if csr {
        phases.push(PhasePlan {
            name: PhaseName::Transpose,
            tasks: row_blocks.len().saturating_sub(1) as u64,
            description: "read one row block of CSR X and write its values grouped by gene block \
                          to a scratch shard"
                .into(),
        });
    }
    phases.push(PhasePlan {
        name: PhaseName::Pack,
        tasks: blocks.count(),
        description: format!(
            "densify and gzip the {per} genes of one block {} and write the block object",
            if csr {
                "from every shard"
            } else {
                "from X's columns"
            }
        ),
    });
    phases.push(PhasePlan {
        name: PhaseName::Index,
        tasks: 1,
        description: "read every block header and write the pack index (marks the pack complete)"
            .into(),
    });
    if artifacts.quantize.is_some() {
        phases.push(PhasePlan {
            name: PhaseName::Ranges,
            tasks: blocks.count(),
            description: "read one gene block of the pack and write the quantisation range of \
                          each of its genes (strict profile, --quantize)"
                .into(),
        });
    }
    phases.push(PhasePlan {
        name: PhaseName::Strict,
        tasks: artifacts.strict.len() as u64,
        description: "compute, gzip and store one artifact of the strict profile (documents, \
                      edge weights, quantised obs values)"
            .into(),
    });
    if csr {
        phases.push(PhasePlan {
            name: PhaseName::Cleanup,
            tasks: 1,
            description: "delete the scratch shards".into(),
        });
    }
    Ok(Plan {
        version: PLAN_VERSION,
        fingerprint: fingerprint.to_string(),
        atlas: PlanAtlas {
            id: dataset.id().to_string(),
            cells,
            genes,
            x: x.kind_name().to_string(),
            nnz,
        },
        genes_per_block: per,
        artifacts: artifacts.seed,
        row_blocks,
        quantize: artifacts.quantize.map(QuantBits::bits),
        strict: artifacts.strict,
        phases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_blocks_cover_every_row_once() {
        let indptr = [0u64, 3, 3, 10, 11, 12, 20];
        let b = row_blocks(&indptr, 4);
        assert_eq!(b, vec![0, 2, 3, 5, 6]);
        assert_eq!(row_blocks(&[0], 4), vec![0]);
        assert_eq!(row_blocks(&[0, 0, 0], 4), vec![0, 2]);
    }

    #[test]
    fn block_sizes_follow_the_atlas_not_the_machine() {
        // 1M cells x 20k genes x 1e9 values: 78 genes (3.9 M values) per block.
        assert_eq!(
            genes_per_block(1_000_000, 20_000, Some(1_000_000_000), None),
            78
        );
        assert_eq!(row_block_target(1_000_000_000), 7_812_500);
        // Small atlases: one block of every gene.
        assert_eq!(genes_per_block(480, 120, Some(5_000), None), 120);
        assert_eq!(genes_per_block(480, 120, Some(6_000), Some(500)), 10);
        // Dense X: 64 MiB of columns per block, at least one gene.
        assert_eq!(genes_per_block(1_000_000, 50, None, None), 16);
        assert_eq!(genes_per_block(100_000_000, 50, None, None), 1);
        assert_eq!(genes_per_block(10, 0, Some(0), None), 1);
    }

    #[test]
    fn phase_names_parse() {
        for p in PhaseName::ALL {
            assert_eq!(p.as_str().parse::<PhaseName>().unwrap(), p);
        }
        assert!("reduce".parse::<PhaseName>().is_err());
    }
}
