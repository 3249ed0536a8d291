//! `.h5ad` → AnnData-Zarr (format 2 or 3, consolidated metadata) on any object store.
//!
//! The h5ad file is walked node by node ([`H5adFile::walk`]); every group becomes a Zarr group
//! with the same attributes (anndata's element encodings are identical in both formats), and
//! every dataset is copied in bounded blocks along its first axis (rows of X, stretches of a
//! sparse matrix's `data`/`indices`): one block is read with an HDF5 hyperslab while the
//! previous one is encoded and written through `zarrs`, so memory stays near two blocks
//! ([`zarr_meta::BLOCK_BYTES`]) whatever the size of X.
//!
//! Root metadata is written last — v3 `zarr.json` (with the consolidated metadata), v2
//! `.zattrs`/`.zgroup`/`.zmetadata` — so an interrupted convert leaves no store root and
//! nothing that opens as an atlas.

pub mod zarr_meta;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use zarrs::array::{Array, ArrayMetadata, ArraySubset};
use zarrs::storage::{AsyncWritableStorageTraits, StoreKey};

use crate::anndata::hdf5::{H5Array, H5adFile};
use crate::anndata::{AnnDataError, ElementKind, Node, Numbers};
use crate::store::{ObjectStoreZarr, ReadMetrics, StoreLocation};

use zarr_meta::Consolidated;

/// Settings of one conversion.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Zarr format of the output: 2 or 3.
    pub zarr_format: u8,
    /// Replace an existing store at the output.
    pub force: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            zarr_format: 3,
            force: false,
        }
    }
}

/// What a conversion did.
#[derive(Debug, Clone, Default)]
pub struct ConvertReport {
    /// Groups written (root included).
    pub groups: usize,
    /// Arrays written.
    pub arrays: usize,
    /// Uncompressed bytes copied.
    pub bytes: u64,
    /// Datasets that could not be converted (key and reason), e.g. structured `uns` arrays.
    pub skipped: Vec<String>,
}

/// Progress callbacks (the CLI drives a progress bar with them).
pub trait Progress: Send + Sync {
    /// Total uncompressed bytes to copy.
    fn start(&self, total_bytes: u64);
    /// `bytes` more were copied while working on `key`.
    fn advance(&self, key: &str, bytes: u64);
}

/// No progress reporting.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total_bytes: u64) {}
    fn advance(&self, _key: &str, _bytes: u64) {}
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input cannot be read as AnnData.
    #[error("reading {input}: {source}")]
    Input {
        /// Input path.
        input: String,
        /// Cause.
        #[source]
        source: AnnDataError,
    },
    /// The input is HDF5 but not an AnnData file.
    #[error("{input} is not an AnnData .h5ad file: {reason}")]
    NotAnnData {
        /// Input path.
        input: String,
        /// What is missing.
        reason: String,
    },
    /// The output already holds data and `force` was not given.
    #[error("{url} already exists (use --force to replace it)")]
    Exists {
        /// Output URL.
        url: String,
    },
    /// Writing the output failed.
    #[error("writing `{key}` of {url}: {reason}")]
    Output {
        /// Output URL.
        url: String,
        /// Zarr key.
        key: String,
        /// Cause.
        reason: String,
    },
}

/// One dataset to copy.
struct Plan {
    key: String,
    source: H5Array,
    kind: ElementKind,
    shape: Vec<u64>,
    attributes: Map<String, Value>,
}

fn element_bytes(plan: &Plan) -> u64 {
    plan.shape.iter().product::<u64>() * zarr_meta::element_size(plan.kind)
}

/// The conversion of one file to one output.
struct Converter<'a> {
    url: String,
    storage: Arc<ObjectStoreZarr>,
    zarr_format: u8,
    progress: &'a dyn Progress,
}

impl Converter<'_> {
    fn output_error(&self, key: &str, reason: impl ToString) -> ConvertError {
        ConvertError::Output {
            url: self.url.clone(),
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }

    async fn put_json(&self, key: &str, doc: &Value) -> Result<(), ConvertError> {
        let bytes = serde_json::to_vec_pretty(doc).map_err(|e| self.output_error(key, e))?;
        let store_key = StoreKey::new(key).map_err(|e| self.output_error(key, e))?;
        self.storage
            .set(&store_key, bytes.into())
            .await
            .map_err(|e| self.output_error(key, e))
    }

    async fn put_documents(
        &self,
        node: &str,
        docs: &[(&'static str, Value)],
    ) -> Result<(), ConvertError> {
        for (name, doc) in docs {
            self.put_json(&zarr_meta::doc_key(node, name), doc).await?;
        }
        Ok(())
    }

    /// Create the array and copy its data block by block (read of the next block overlaps the
    /// write of the current one).
    async fn copy_array(
        &self,
        plan: &Plan,
        docs: &[(&'static str, Value)],
    ) -> Result<(), ConvertError> {
        let key = plan.key.as_str();
        let meta_doc = docs
            .first()
            .map(|d| d.1.clone())
            .ok_or_else(|| self.output_error(key, "no metadata"))?;
        let metadata = if self.zarr_format == 2 {
            ArrayMetadata::V2(
                serde_json::from_value(meta_doc).map_err(|e| self.output_error(key, e))?,
            )
        } else {
            ArrayMetadata::V3(
                serde_json::from_value(meta_doc).map_err(|e| self.output_error(key, e))?,
            )
        };
        let array = Array::new_with_metadata(self.storage.clone(), &format!("/{key}"), metadata)
            .map_err(|e| self.output_error(key, e))?;
        let blocks = blocks(&plan.shape, plan.kind);
        let row_bytes =
            plan.shape.iter().skip(1).product::<u64>() * zarr_meta::element_size(plan.kind);
        let read = |ranges: Vec<Range<u64>>| read_block(plan, ranges);
        let mut pending = match blocks.first() {
            Some(first) => Some(read(first.clone()).await?),
            None => None,
        };
        for (i, ranges) in blocks.iter().enumerate() {
            let Some(data) = pending.take() else { break };
            let write = write_block(&array, ranges, data);
            let next = async {
                match blocks.get(i + 1) {
                    Some(r) => read(r.clone()).await.map(Some),
                    None => Ok(None),
                }
            };
            let (written, next) = futures::join!(write, next);
            written.map_err(|e| self.output_error(key, e))?;
            pending = next?;
            let rows = ranges.first().map_or(1, |r| r.end - r.start);
            self.progress.advance(
                key,
                rows * row_bytes.max(zarr_meta::element_size(plan.kind)),
            );
        }
        Ok(())
    }
}

/// Block ranges (one per dimension) covering an array of `shape`.
fn blocks(shape: &[u64], kind: ElementKind) -> Vec<Vec<Range<u64>>> {
    match shape {
        [] => vec![Vec::new()],
        dims if dims.contains(&0) => Vec::new(),
        [n] => {
            let chunk = zarr_meta::chunk_shape(shape, kind)[0];
            let step = zarr_meta::block_len(chunk, kind);
            (0..n.div_ceil(step))
                .map(|b| std::iter::once(b * step..((b + 1) * step).min(*n)).collect())
                .collect()
        }
        [n, rest @ ..] => {
            let step = zarr_meta::block_rows(shape, kind);
            (0..n.div_ceil(step))
                .map(|b| {
                    std::iter::once(b * step..((b + 1) * step).min(*n))
                        .chain(rest.iter().map(|d| 0..*d))
                        .collect()
                })
                .collect()
        }
    }
}

/// Data of one block in its stored type.
enum Block {
    Numbers(Numbers),
    Strings(Vec<String>),
}

async fn read_block(plan: &Plan, ranges: Vec<Range<u64>>) -> Result<Block, ConvertError> {
    let input_error = |source| ConvertError::Input {
        input: plan.key.clone(),
        source,
    };
    if plan.kind == ElementKind::String {
        let range = match ranges.as_slice() {
            [r] => r.clone(),
            [] => 0..1,
            _ => {
                return Err(input_error(AnnDataError::Shape {
                    key: plan.key.clone(),
                    expected: "a 1-D string array".into(),
                    found: plan.shape.clone(),
                }));
            }
        };
        let values = if ranges.is_empty() {
            plan.source.read_scalar_string().await
        } else {
            plan.source.read_strings(range).await
        };
        return values.map(Block::Strings).map_err(input_error);
    }
    plan.source
        .read_numbers(ranges)
        .await
        .map(Block::Numbers)
        .map_err(input_error)
}

async fn write_block(
    array: &Array<ObjectStoreZarr>,
    ranges: &[Range<u64>],
    block: Block,
) -> Result<(), zarrs::array::ArrayError> {
    let subset = ArraySubset::new_with_ranges(ranges);
    match block {
        Block::Strings(v) => array.async_store_array_subset(&subset, v).await,
        Block::Numbers(n) => match n {
            Numbers::Bool(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::I8(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::I16(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::I32(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::I64(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::U8(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::U16(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::U32(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::U64(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::F16(v) | Numbers::F32(v) => array.async_store_array_subset(&subset, v).await,
            Numbers::F64(v) => array.async_store_array_subset(&subset, v).await,
        },
    }
}

/// Refuse a non-empty output unless `force`; with `force`, remove the old store (its root
/// metadata first, so it stops looking like a store before its data goes).
async fn prepare_output(
    output: &StoreLocation,
    storage: &ObjectStoreZarr,
    force: bool,
) -> Result<(), ConvertError> {
    let url = output.display.clone();
    let store_error = |key: &str, e: object_store::Error| ConvertError::Output {
        url: url.clone(),
        key: key.to_string(),
        reason: e.to_string(),
    };
    let prefix = (!output.prefix.as_ref().is_empty()).then_some(&output.prefix);
    let mut listing = output.store.list(prefix);
    let existing = listing
        .next()
        .await
        .transpose()
        .map_err(|e| store_error("", e))?;
    drop(listing);
    if existing.is_none() {
        return Ok(());
    }
    if !force {
        return Err(ConvertError::Exists { url });
    }
    for root in [".zmetadata", "zarr.json", ".zgroup", ".zattrs"] {
        if let Ok(key) = StoreKey::new(root) {
            storage
                .erase(&key)
                .await
                .map_err(|e| ConvertError::Output {
                    url: url.clone(),
                    key: root.into(),
                    reason: e.to_string(),
                })?;
        }
    }
    let locations = output
        .store
        .list(prefix)
        .map_ok(|meta| meta.location)
        .boxed();
    output
        .store
        .delete_stream(locations)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| store_error("", e))?;
    Ok(())
}

/// Convert the `.h5ad` at `input` to AnnData-Zarr at `output`.
pub async fn convert_h5ad(
    input: &Path,
    output: &StoreLocation,
    options: &ConvertOptions,
    progress: &dyn Progress,
) -> Result<ConvertReport, ConvertError> {
    let shown = input.display().to_string();
    let input_error = |source| ConvertError::Input {
        input: shown.clone(),
        source,
    };
    if options.zarr_format != 2 && options.zarr_format != 3 {
        return Err(ConvertError::Output {
            url: output.display.clone(),
            key: String::new(),
            reason: format!("zarr format {} (use 2 or 3)", options.zarr_format),
        });
    }
    let file = H5adFile::open(input).map_err(input_error)?;
    let root_attributes = match file.node("").map_err(input_error)? {
        Some(node) => node.attributes().clone(),
        None => Map::new(),
    };
    if let Some(enc) = root_attributes.get("encoding-type").and_then(Value::as_str)
        && enc != "anndata"
    {
        return Err(ConvertError::NotAnnData {
            input: shown,
            reason: format!("root encoding-type is \"{enc}\""),
        });
    }
    for required in ["obs", "var"] {
        if !matches!(
            file.node(required).map_err(input_error)?,
            Some(Node::Group(_))
        ) {
            return Err(ConvertError::NotAnnData {
                input: shown,
                reason: format!("no `{required}` dataframe"),
            });
        }
    }

    let storage = Arc::new(ObjectStoreZarr::new(
        output.store.clone(),
        output.prefix.clone(),
        Arc::new(ReadMetrics::default()),
    ));
    prepare_output(output, &storage, options.force).await?;

    let mut report = ConvertReport::default();
    let mut groups: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    // Consolidated order = walk order; groups and arrays interleave as in the file.
    let mut order: Vec<(bool, usize)> = Vec::new();
    for (key, is_group) in file.walk().map_err(input_error)? {
        let attributes = file
            .node(&key)
            .map_err(input_error)?
            .map(|n| n.attributes().clone())
            .unwrap_or_default();
        if is_group {
            order.push((true, groups.len()));
            groups.push((key, attributes));
            continue;
        }
        let source = file.dataset(&key).map_err(input_error)?;
        let kind = source.kind();
        let shape = source.shape().to_vec();
        if !zarr_meta::supported(kind) || (kind == ElementKind::String && shape.len() > 1) {
            report.skipped.push(format!(
                "{key}: HDF5 type {} not convertible",
                source.descriptor()
            ));
            continue;
        }
        order.push((false, plans.len()));
        plans.push(Plan {
            key,
            source,
            kind,
            shape,
            attributes,
        });
    }
    report.bytes = plans.iter().map(element_bytes).sum();
    progress.start(report.bytes);

    let converter = Converter {
        url: output.display.clone(),
        storage,
        zarr_format: options.zarr_format,
        progress,
    };
    let mut consolidated = Consolidated::default();
    for (is_group, index) in order {
        if is_group {
            let (key, attributes) = &groups[index];
            let docs = zarr_meta::group_documents(options.zarr_format, attributes);
            converter.put_documents(key, &docs).await?;
            consolidated.add(options.zarr_format, key, &docs);
            report.groups += 1;
        } else {
            let plan = &plans[index];
            let chunks = zarr_meta::chunk_shape(&plan.shape, plan.kind);
            let docs = zarr_meta::array_documents(
                options.zarr_format,
                &plan.shape,
                &chunks,
                plan.kind,
                &plan.attributes,
            )
            .ok_or_else(|| converter.output_error(&plan.key, "unsupported data type"))?;
            converter.copy_array(plan, &docs).await?;
            converter.put_documents(&plan.key, &docs).await?;
            consolidated.add(options.zarr_format, &plan.key, &docs);
            report.arrays += 1;
        }
    }
    // Last: the root, which makes the store visible (and consolidated) at once.
    let root_docs = consolidated.root_documents(options.zarr_format, &root_attributes);
    converter.put_documents("", &root_docs).await?;
    report.groups += 1;
    Ok(report)
}
