//! Cellucid-ready copies (protocol-0.9.md §4): the same AnnData-Zarr store with X rewritten
//! gene-major (CSC, float32 `data`, int32 `indices`, chunks of 2^16; `indptr` chunks of 2^18),
//! `uns['cellucid']` = `{schema: 1, id, name}`, everything else copied object by object, and
//! fresh consolidated metadata. The copy keeps the source's Zarr format (2 or 3).
//!
//! Memory is bounded: X is read in row blocks. A CSR X is transposed through temporary spill
//! files, one per group of genes whose stored values fit `spill_entries`; each group is then
//! ordered in memory and appended to the output column by column.
//!
//! Codecs (all decoded natively by the browser, §3.5): v2 `zlib` level 6, with a `shuffle`
//! filter on `indices`/`indptr` (not on X values, as `prepare()` does); v3 `bytes` + `gzip`
//! level 6 (no shuffle, no sharding).

use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

use super::consolidate::synthesise;
use super::documents::{display_name_from, is_portable_id, portable_id_from};
use crate::anndata::{AnnDataError, MatrixMeta, ZarrFormat};
use crate::dataset::Dataset;
use crate::store::StoreLocation;

/// Elements per chunk of X `data` and `indices` (§4.2).
pub const DATA_CHUNK: u64 = 1 << 16;
/// Elements per chunk of X `indptr` (§4.2).
pub const INDPTR_CHUNK: u64 = 1 << 18;

/// Why a ready copy could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// Reading the source failed.
    #[error("reading the source: {0}")]
    Source(#[from] AnnDataError),
    /// Object storage failed.
    #[error("object storage at `{path}`: {source}")]
    Store {
        /// Object path.
        path: String,
        /// Cause.
        #[source]
        source: object_store::Error,
    },
    /// A temporary spill file failed.
    #[error("temporary spill file: {0}")]
    Spill(#[from] std::io::Error),
    /// The output is not empty.
    #[error("the output `{0}` is not empty; write a ready copy into a new location")]
    NotEmpty(String),
    /// The data cannot be made ready.
    #[error("{0}")]
    Unsupported(String),
    /// Consolidating the output failed.
    #[error(transparent)]
    Consolidate(#[from] super::consolidate::ConsolidateError),
}

/// Settings of [`write_ready`].
#[derive(Debug, Clone)]
pub struct ReadyOptions {
    /// Rows of X per read block.
    pub block_rows: u64,
    /// Stored values held in memory while transposing.
    pub spill_entries: u64,
    /// `uns['cellucid']['id']` (portable).
    pub id: String,
    /// `uns['cellucid']['name']`.
    pub name: String,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ReadyReport {
    /// `csc_matrix` or `array`.
    pub x_encoding: &'static str,
    /// Stored values of X.
    pub nnz: u64,
    /// Chunks written for X.
    pub x_chunks: u64,
    /// Objects copied unchanged.
    pub copied: u64,
}

/// The 0.9 id and name of a dataset: as the `/v0.9` front-end derives them from the seed
/// catalogue (explicit portable id, else a portable id derived from the seed id).
pub fn identity_of(dataset: &Dataset) -> (String, String) {
    let id = dataset
        .options()
        .dataset_id
        .as_deref()
        .filter(|id| is_portable_id(id))
        .map(str::to_string)
        .unwrap_or_else(|| portable_id_from(dataset.id()));
    let name = display_name_from(dataset.name(), &id);
    (id, name)
}

/// Writes objects under the output prefix.
struct Out {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    v3: bool,
}

impl Out {
    fn path(&self, key: &str) -> Path {
        super::source::join_key(&self.prefix, key)
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ReadyError> {
        let path = self.path(key);
        self.store
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|source| ReadyError::Store {
                path: path.to_string(),
                source,
            })?;
        Ok(())
    }

    async fn put_json(&self, key: &str, value: &Value) -> Result<(), ReadyError> {
        let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        self.put(key, Bytes::from(bytes)).await
    }

    /// Group metadata (+ attributes).
    async fn group(&self, key: &str, attrs: Value) -> Result<(), ReadyError> {
        let sep = if key.is_empty() { "" } else { "/" };
        if self.v3 {
            let doc = json!({"zarr_format": 3, "node_type": "group", "attributes": attrs});
            self.put_json(&format!("{key}{sep}zarr.json"), &doc).await
        } else {
            self.put_json(&format!("{key}{sep}.zgroup"), &json!({"zarr_format": 2}))
                .await?;
            self.put_json(&format!("{key}{sep}.zattrs"), &attrs).await
        }
    }

    /// 1-D numeric array metadata. `dtype`: `<f4`, `<i4`, `<i8`.
    async fn array_1d(
        &self,
        key: &str,
        len: u64,
        chunk: u64,
        dtype: &str,
        shuffle: bool,
        attrs: Value,
    ) -> Result<(), ReadyError> {
        let size = if dtype.ends_with('8') { 8 } else { 4 };
        if self.v3 {
            let data_type = match dtype {
                "<f4" => "float32",
                "<i4" => "int32",
                _ => "int64",
            };
            let fill: Value = if dtype == "<f4" { json!(0.0) } else { json!(0) };
            let doc = json!({
                "zarr_format": 3, "node_type": "array", "shape": [len], "data_type": data_type,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk.max(1)]}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": fill,
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                           {"name": "gzip", "configuration": {"level": 6}}],
                "attributes": attrs,
            });
            self.put_json(&format!("{key}/zarr.json"), &doc).await
        } else {
            let filters: Value = if shuffle {
                json!([{"id": "shuffle", "elementsize": size}])
            } else {
                Value::Null
            };
            let doc = json!({
                "zarr_format": 2, "shape": [len], "chunks": [chunk.max(1)], "dtype": dtype,
                "compressor": {"id": "zlib", "level": 6}, "filters": filters,
                "fill_value": 0, "order": "C",
            });
            self.put_json(&format!("{key}/.zarray"), &doc).await?;
            if attrs.as_object().is_some_and(|o| !o.is_empty()) {
                self.put_json(&format!("{key}/.zattrs"), &attrs).await?;
            }
            Ok(())
        }
    }

    /// One encoded chunk of a 1-D array.
    async fn chunk(
        &self,
        key: &str,
        index: u64,
        raw: &[u8],
        elem: usize,
        shuffle: bool,
    ) -> Result<(), ReadyError> {
        let bytes = if self.v3 {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            gz.write_all(raw)?;
            gz.finish()?
        } else {
            let shuffled;
            let input = if shuffle && elem > 1 {
                shuffled = byte_shuffle(raw, elem);
                &shuffled[..]
            } else {
                raw
            };
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
            z.write_all(input)?;
            z.finish()?
        };
        let name = if self.v3 {
            format!("{key}/c/{index}")
        } else {
            format!("{key}/{index}")
        };
        self.put(&name, Bytes::from(bytes)).await
    }

    /// A 0-d scalar: `kind` is `"string"` or `"int64"`.
    async fn scalar(&self, key: &str, value: &Value) -> Result<(), ReadyError> {
        let (attrs, is_text) = match value {
            Value::String(_) => (
                json!({"encoding-type": "string", "encoding-version": "0.2.0"}),
                true,
            ),
            _ => (
                json!({"encoding-type": "numeric-scalar", "encoding-version": "0.2.0"}),
                false,
            ),
        };
        let raw: Vec<u8> = match value {
            Value::String(s) => {
                let mut b = Vec::new();
                b.extend_from_slice(&1u32.to_le_bytes());
                b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                b.extend_from_slice(s.as_bytes());
                b
            }
            other => other.as_i64().unwrap_or_default().to_le_bytes().to_vec(),
        };
        if self.v3 {
            let (data_type, fill, codecs) = if is_text {
                (json!("string"), json!(""), json!([{"name": "vlen-utf8"}]))
            } else {
                (
                    json!("int64"),
                    json!(0),
                    json!([{"name": "bytes", "configuration": {"endian": "little"}}]),
                )
            };
            let doc = json!({
                "zarr_format": 3, "node_type": "array", "shape": [], "data_type": data_type,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": []}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": fill, "codecs": codecs, "attributes": attrs,
            });
            self.put_json(&format!("{key}/zarr.json"), &doc).await?;
            self.put(&format!("{key}/c"), Bytes::from(raw)).await
        } else {
            let (dtype, filters, fill) = if is_text {
                ("|O", json!([{"id": "vlen-utf8"}]), Value::Null)
            } else {
                ("<i8", Value::Null, json!(0))
            };
            let doc = json!({
                "zarr_format": 2, "shape": [], "chunks": [], "dtype": dtype,
                "compressor": null, "filters": filters, "fill_value": fill, "order": "C",
            });
            self.put_json(&format!("{key}/.zarray"), &doc).await?;
            self.put_json(&format!("{key}/.zattrs"), &attrs).await?;
            self.put(&format!("{key}/0"), Bytes::from(raw)).await
        }
    }
}

/// numcodecs `shuffle`: byte `j` of element `i` goes to `j * count + i`.
pub fn byte_shuffle(raw: &[u8], elem: usize) -> Vec<u8> {
    let count = raw.len() / elem;
    let mut out = vec![0u8; raw.len()];
    for i in 0..count {
        for j in 0..elem {
            out[j * count + i] = raw[i * elem + j];
        }
    }
    out
}

/// Appends values to a chunked 1-D array, writing each chunk when full.
struct ChunkedWriter<T> {
    key: String,
    buffer: Vec<T>,
    next: u64,
    written: u64,
    shuffle: bool,
}

trait Le: Copy {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
}
impl Le for f32 {
    const SIZE: usize = 4;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl Le for i32 {
    const SIZE: usize = 4;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl Le for i64 {
    const SIZE: usize = 8;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl<T: Le> ChunkedWriter<T> {
    fn new(key: &str, shuffle: bool) -> Self {
        ChunkedWriter {
            key: key.to_string(),
            buffer: Vec::with_capacity(DATA_CHUNK as usize),
            next: 0,
            written: 0,
            shuffle,
        }
    }

    async fn push(&mut self, out: &Out, value: T, chunk: u64) -> Result<(), ReadyError> {
        self.buffer.push(value);
        if self.buffer.len() as u64 >= chunk {
            self.flush(out).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, out: &Out) -> Result<(), ReadyError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let mut raw = Vec::with_capacity(DATA_CHUNK as usize * T::SIZE);
        for v in self.buffer.drain(..) {
            v.put(&mut raw);
        }
        // Zarr stores every chunk at the full chunk shape: the last one is padded with zeros.
        raw.resize(DATA_CHUNK as usize * T::SIZE, 0);
        out.chunk(&self.key, self.next, &raw, T::SIZE, self.shuffle)
            .await?;
        self.written += 1;
        self.next += 1;
        Ok(())
    }
}

fn finite(v: f32, what: &str) -> Result<f32, ReadyError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ReadyError::Unsupported(format!(
            "X holds a non-finite value ({v}) in {what}; a Cellucid-ready X must be finite"
        )))
    }
}

/// Write a Cellucid-ready copy of `dataset` at `out` (which must be empty).
pub async fn write_ready(
    dataset: &Dataset,
    out: &StoreLocation,
    options: &ReadyOptions,
) -> Result<ReadyReport, ReadyError> {
    let source = dataset.store();
    let src = source.location();
    let v3 = match source.format() {
        crate::anndata::SourceFormat::Zarr(format) => format == ZarrFormat::V3,
        crate::anndata::SourceFormat::H5ad => {
            return Err(ReadyError::Unsupported(
                "a ready copy is made from AnnData-Zarr: `convert` the .h5ad first, then `ready` \
                 the converted store"
                    .into(),
            ));
        }
    };
    let o = Out {
        store: out.store.clone(),
        prefix: out.prefix.clone(),
        v3,
    };
    let mut existing = out.store.list(Some(&out.prefix));
    if existing.try_next().await.ok().flatten().is_some() {
        return Err(ReadyError::NotEmpty(out.display.clone()));
    }
    drop(existing);

    // 1. Everything but X, uns/cellucid and consolidated metadata, object by object.
    let mut copied = 0u64;
    let mut listing = src.store.list(Some(&src.prefix));
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|source| ReadyError::Store {
            path: src.prefix.to_string(),
            source,
        })?
    {
        let Some(rel) = meta.location.prefix_match(&src.prefix).map(|parts| {
            parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        }) else {
            continue;
        };
        if rel == "X"
            || rel.starts_with("X/")
            || rel.starts_with("uns/cellucid/")
            || rel == ".zmetadata"
        {
            continue;
        }
        let store_error = |source| ReadyError::Store {
            path: meta.location.to_string(),
            source,
        };
        let bytes = src
            .store
            .get(&meta.location)
            .await
            .map_err(store_error)?
            .bytes()
            .await
            .map_err(store_error)?;
        let bytes = if rel == "zarr.json" {
            // The root document without its (now stale) consolidated metadata.
            let mut doc: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ReadyError::Unsupported(format!("root zarr.json is not JSON: {e}")))?;
            if let Some(obj) = doc.as_object_mut() {
                obj.remove("consolidated_metadata");
            }
            Bytes::from(serde_json::to_vec_pretty(&doc).unwrap_or_default())
        } else {
            bytes
        };
        o.put(&rel, bytes).await?;
        copied += 1;
    }

    // 2. uns['cellucid'].
    if source.node("uns").await?.is_none() {
        o.group(
            "uns",
            json!({"encoding-type": "dict", "encoding-version": "0.1.0"}),
        )
        .await?;
    }
    o.group(
        "uns/cellucid",
        json!({"encoding-type": "dict", "encoding-version": "0.1.0"}),
    )
    .await?;
    o.scalar("uns/cellucid/schema", &json!(1)).await?;
    o.scalar("uns/cellucid/id", &json!(options.id)).await?;
    o.scalar("uns/cellucid/name", &json!(options.name)).await?;

    // 3. X, gene-major.
    let report = match &dataset.layout().x {
        MatrixMeta::Csr(meta) => write_csc_from_csr(dataset, &o, meta, options).await?,
        MatrixMeta::Csc(meta) => write_csc_from_csc(dataset, &o, meta, options).await?,
        MatrixMeta::Dense { key, shape, .. } => {
            write_dense_strips(dataset, &o, key, *shape, options).await?
        }
        MatrixMeta::Absent => {
            return Err(ReadyError::Unsupported("the store has no X".into()));
        }
    };

    // 4. Consolidated metadata of the copy.
    if let Some(doc) = synthesise(&out.store, &out.prefix).await? {
        o.put(doc.key, doc.bytes).await?;
    }
    Ok(ReadyReport { copied, ..report })
}

async fn x_attrs(o: &Out, encoding: &str, shape: [u64; 2]) -> Result<(), ReadyError> {
    let attrs = json!({"encoding-type": encoding, "encoding-version": "0.1.0", "shape": shape});
    if encoding == "array" {
        return Ok(());
    }
    o.group("X", attrs).await
}

/// Write `indptr` (int32, or int64 when nnz ≥ 2^31) in chunks of 2^18.
async fn write_indptr(o: &Out, indptr: &[i64]) -> Result<u64, ReadyError> {
    let nnz = indptr.last().copied().unwrap_or(0);
    let wide = nnz >= i64::from(i32::MAX);
    o.array_1d(
        "X/indptr",
        indptr.len() as u64,
        INDPTR_CHUNK,
        if wide { "<i8" } else { "<i4" },
        true,
        json!({}),
    )
    .await?;
    let mut chunks = 0;
    for (i, block) in indptr.chunks(INDPTR_CHUNK as usize).enumerate() {
        let mut raw = Vec::new();
        for &v in block {
            if wide {
                v.put(&mut raw);
            } else {
                (v as i32).put(&mut raw);
            }
        }
        raw.resize(INDPTR_CHUNK as usize * if wide { 8 } else { 4 }, 0);
        o.chunk("X/indptr", i as u64, &raw, if wide { 8 } else { 4 }, true)
            .await?;
        chunks += 1;
    }
    Ok(chunks)
}

async fn write_csc_from_csc(
    dataset: &Dataset,
    o: &Out,
    meta: &crate::anndata::SparseMeta,
    options: &ReadyOptions,
) -> Result<ReadyReport, ReadyError> {
    let store = dataset.store();
    let [n_obs, _] = meta.shape;
    if n_obs > i32::MAX as u64 {
        return Err(ReadyError::Unsupported("more than 2^31-1 cells".into()));
    }
    let key = &meta.key;
    let indptr = store
        .array(&format!("{key}/indptr"), "X indptr")
        .await?
        .read_numbers(None)
        .await?
        .to_i64();
    let data = store.array(&format!("{key}/data"), "X data").await?;
    let indices = store.array(&format!("{key}/indices"), "X indices").await?;
    let nnz = indptr.last().copied().unwrap_or(0).max(0) as u64;
    x_attrs(o, "csc_matrix", meta.shape).await?;
    o.array_1d("X/data", nnz, DATA_CHUNK, "<f4", false, json!({}))
        .await?;
    o.array_1d("X/indices", nnz, DATA_CHUNK, "<i4", true, json!({}))
        .await?;
    let mut dw = ChunkedWriter::<f32>::new("X/data", false);
    let mut iw = ChunkedWriter::<i32>::new("X/indices", true);
    let step = (options.spill_entries / DATA_CHUNK).max(1) * DATA_CHUNK;
    let mut start = 0;
    while start < nnz {
        let end = (start + step).min(nnz);
        let values = data.read_numbers(Some(start..end)).await?.to_f32();
        let rows = indices.read_numbers(Some(start..end)).await?.to_i64();
        for (v, r) in values.into_iter().zip(rows) {
            dw.push(o, finite(v, "X/data")?, DATA_CHUNK).await?;
            iw.push(o, r as i32, DATA_CHUNK).await?;
        }
        start = end;
    }
    dw.flush(o).await?;
    iw.flush(o).await?;
    let p = write_indptr(o, &indptr).await?;
    Ok(ReadyReport {
        x_encoding: "csc_matrix",
        nnz,
        x_chunks: dw.written + iw.written + p,
        copied: 0,
    })
}

/// CSR → canonical CSC (sorted rows per gene, duplicates summed, explicit zeros dropped), in
/// row blocks, through spill files of gene groups.
async fn write_csc_from_csr(
    dataset: &Dataset,
    o: &Out,
    meta: &crate::anndata::SparseMeta,
    options: &ReadyOptions,
) -> Result<ReadyReport, ReadyError> {
    let store = dataset.store();
    let [n_obs, n_vars] = meta.shape;
    if n_obs > i32::MAX as u64 || n_vars > u32::MAX as u64 {
        return Err(ReadyError::Unsupported(
            "more than 2^31-1 cells or 2^32 genes".into(),
        ));
    }
    let key = &meta.key;
    let indptr = store
        .array(&format!("{key}/indptr"), "X indptr")
        .await?
        .read_numbers(None)
        .await?
        .to_i64();
    if indptr.len() as u64 != n_obs + 1 {
        return Err(ReadyError::Unsupported(format!(
            "X/indptr has {} entries for {n_obs} rows",
            indptr.len()
        )));
    }
    let data = store.array(&format!("{key}/data"), "X data").await?;
    let indices = store.array(&format!("{key}/indices"), "X indices").await?;
    let blocks = |rows: u64| -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut r = 0;
        while r < n_obs {
            let end = (r + rows).min(n_obs);
            out.push((r, end));
            r = end;
        }
        out
    };
    let row_blocks = blocks(options.block_rows);
    let span = |a: u64, b: u64| -> Result<(u64, u64), ReadyError> {
        let (s, e) = (indptr[a as usize], indptr[b as usize]);
        if s < 0 || e < s {
            return Err(ReadyError::Unsupported(
                "X/indptr is not non-decreasing".into(),
            ));
        }
        Ok((s as u64, e as u64))
    };
    // Pass 1: stored values per gene (an upper bound: duplicates and zeros go in pass 3).
    let mut counts = vec![0u64; n_vars as usize];
    for &(a, b) in &row_blocks {
        let (s, e) = span(a, b)?;
        if s == e {
            continue;
        }
        for g in indices.read_numbers(Some(s..e)).await?.to_i64() {
            let slot = usize::try_from(g)
                .ok()
                .and_then(|g| counts.get_mut(g))
                .ok_or_else(|| {
                    ReadyError::Unsupported(format!("X/indices holds {g}, outside 0..{n_vars}"))
                })?;
            *slot += 1;
        }
    }
    // Gene groups of at most `spill_entries` values (a single gene may exceed it).
    let mut group_of = vec![0u32; n_vars as usize];
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let (mut start, mut acc) = (0usize, 0u64);
    for g in 0..n_vars as usize {
        if acc > 0 && acc + counts[g] > options.spill_entries {
            groups.push((start, g));
            start = g;
            acc = 0;
        }
        acc += counts[g];
        group_of[g] = groups.len() as u32;
    }
    groups.push((start, n_vars as usize));
    // Pass 2: (gene, row, value) into one spill file per group (skipped with one group).
    let single = groups.len() == 1;
    let tmp = tempfile::tempdir()?;
    let mut spills: Vec<BufWriter<std::fs::File>> = Vec::new();
    let mut held: Vec<(u32, u32, f32)> = Vec::new();
    if !single {
        for i in 0..groups.len() {
            spills.push(BufWriter::new(std::fs::File::create(
                tmp.path().join(format!("group-{i}")),
            )?));
        }
    }
    for &(a, b) in &row_blocks {
        let (s, e) = span(a, b)?;
        if s == e {
            continue;
        }
        let genes = indices.read_numbers(Some(s..e)).await?.to_i64();
        let values = data.read_numbers(Some(s..e)).await?.to_f32();
        let mut k = 0usize;
        for row in a..b {
            let (rs, re) = span(row, row + 1)?;
            for _ in rs..re {
                let (g, v) = (genes[k] as u32, finite(values[k], "X/data")?);
                k += 1;
                if v == 0.0 {
                    continue;
                }
                if single {
                    held.push((g, row as u32, v));
                } else {
                    let w = &mut spills[group_of[g as usize] as usize];
                    w.write_all(&g.to_le_bytes())?;
                    w.write_all(&(row as u32).to_le_bytes())?;
                    w.write_all(&v.to_le_bytes())?;
                }
            }
        }
    }
    for w in &mut spills {
        w.flush()?;
    }
    drop(spills);
    // Pass 3: each group ordered by (gene, row) and appended; indptr from the final counts.
    let mut indptr_out: Vec<i64> = Vec::with_capacity(n_vars as usize + 1);
    indptr_out.push(0);
    let mut dw = ChunkedWriter::<f32>::new("X/data", false);
    let mut iw = ChunkedWriter::<i32>::new("X/indices", true);
    // nnz is known only at the end: write chunk objects first, metadata after.
    let mut nnz: u64 = 0;
    for (i, &(g0, g1)) in groups.iter().enumerate() {
        let mut entries = if single {
            std::mem::take(&mut held)
        } else {
            let mut r = BufReader::new(std::fs::File::open(tmp.path().join(format!("group-{i}")))?);
            let mut v = Vec::new();
            let mut rec = [0u8; 12];
            loop {
                match r.read_exact(&mut rec) {
                    Ok(()) => v.push((
                        u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]),
                        u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]),
                        f32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]),
                    )),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e.into()),
                }
            }
            v
        };
        // Stable: rows arrive in increasing order per gene.
        entries.sort_by_key(|&(g, r, _)| (g, r));
        let mut it = entries.into_iter().peekable();
        for g in g0..g1 {
            while let Some(&(eg, row, mut v)) = it.peek() {
                if eg as usize != g {
                    break;
                }
                it.next();
                while let Some(&(ng, nr, nv)) = it.peek() {
                    if ng == eg && nr == row {
                        v += nv;
                        it.next();
                    } else {
                        break;
                    }
                }
                if v == 0.0 {
                    continue;
                }
                dw.push(o, v, DATA_CHUNK).await?;
                iw.push(o, row as i32, DATA_CHUNK).await?;
                nnz += 1;
            }
            indptr_out.push(nnz as i64);
        }
    }
    dw.flush(o).await?;
    iw.flush(o).await?;
    x_attrs(o, "csc_matrix", meta.shape).await?;
    o.array_1d("X/data", nnz, DATA_CHUNK, "<f4", false, json!({}))
        .await?;
    o.array_1d("X/indices", nnz, DATA_CHUNK, "<i4", true, json!({}))
        .await?;
    let p = write_indptr(o, &indptr_out).await?;
    Ok(ReadyReport {
        x_encoding: "csc_matrix",
        nnz,
        x_chunks: dw.written + iw.written + p,
        copied: 0,
    })
}

/// Dense X stays dense, rechunked into tall strips: rows = min(n, 2^18), columns =
/// max(1, min(G, 2^18 / rows)), float32, not shuffled (§4.2).
async fn write_dense_strips(
    dataset: &Dataset,
    o: &Out,
    key: &str,
    shape: [u64; 2],
    _options: &ReadyOptions,
) -> Result<ReadyReport, ReadyError> {
    let [n, g] = shape;
    let rows = n.clamp(1, 1 << 18);
    let cols = g.min((1u64 << 18) / rows).max(1);
    let array = dataset.store().array(key, "dense X").await?;
    let attrs = json!({"encoding-type": "array", "encoding-version": "0.2.0"});
    if o.v3 {
        let doc = json!({
            "zarr_format": 3, "node_type": "array", "shape": [n, g], "data_type": "float32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [rows, cols]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0.0,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                       {"name": "gzip", "configuration": {"level": 6}}],
            "attributes": attrs,
        });
        o.put_json("X/zarr.json", &doc).await?;
    } else {
        let doc = json!({
            "zarr_format": 2, "shape": [n, g], "chunks": [rows, cols], "dtype": "<f4",
            "compressor": {"id": "zlib", "level": 6}, "filters": null, "fill_value": 0.0,
            "order": "C",
        });
        o.put_json("X/.zarray", &doc).await?;
        o.put_json("X/.zattrs", &attrs).await?;
    }
    let mut chunks = 0;
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + rows).min(n);
        let mut c0 = 0;
        while c0 < g {
            let c1 = (c0 + cols).min(g);
            let block = array.read_numbers_2d(r0..r1, c0..c1).await?.to_f32();
            // Edge chunks are padded to the full chunk shape (row-major).
            let mut raw = Vec::with_capacity((rows * cols * 4) as usize);
            for r in 0..rows {
                for c in 0..cols {
                    let v = if r < r1 - r0 && c < c1 - c0 {
                        finite(block[(r * (c1 - c0) + c) as usize], "X")?
                    } else {
                        0.0
                    };
                    v.put(&mut raw);
                }
            }
            let bytes = if o.v3 {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
                gz.write_all(&raw)?;
                gz.finish()?
            } else {
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
                z.write_all(&raw)?;
                z.finish()?
            };
            let (ri, ci) = (r0 / rows, c0 / cols);
            let name = if o.v3 {
                format!("X/c/{ri}/{ci}")
            } else {
                format!("X/{ri}.{ci}")
            };
            o.put(&name, Bytes::from(bytes)).await?;
            chunks += 1;
            c0 = c1;
        }
        r0 = r1;
    }
    Ok(ReadyReport {
        x_encoding: "array",
        nnz: n * g,
        x_chunks: chunks,
        copied: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_matches_numcodecs() {
        let raw = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(byte_shuffle(&raw, 4), vec![1, 5, 2, 6, 3, 7, 4, 8]);
        assert_eq!(byte_shuffle(&raw, 1), raw.to_vec());
    }
}
