//! The Zarr metadata documents `convert` writes: per-array and per-group documents in the
//! layout zarr-python (and so anndata) writes, and the consolidated-metadata root.

use serde_json::{Map, Value, json};

use crate::anndata::ElementKind;

/// Bytes of one chunk `convert` aims for (uncompressed).
pub const CHUNK_BYTES: u64 = 1 << 20;
/// Bytes read from the h5ad and written per block (uncompressed): the memory bound of a copy.
pub const BLOCK_BYTES: u64 = 32 << 20;

/// Bytes per element used for chunk sizing (strings: a typical short label).
pub fn element_size(kind: ElementKind) -> u64 {
    match kind {
        ElementKind::Bool => 1,
        ElementKind::Int(n) | ElementKind::UInt(n) | ElementKind::Float(n) => u64::from(n),
        ElementKind::String | ElementKind::Other => 16,
    }
}

/// Chunk shape for an array of `shape`: 1-D arrays get ~1 MiB chunks; 2-D arrays get chunks
/// of `block_rows(shape)` rows (so a row block writes whole chunks) and as many columns as fit
/// in ~1 MiB. Every extent is at least 1 (Zarr forbids empty chunks).
pub fn chunk_shape(shape: &[u64], kind: ElementKind) -> Vec<u64> {
    let size = element_size(kind);
    match shape {
        [] => Vec::new(),
        [n] => vec![(CHUNK_BYTES / size).min(*n).max(1)],
        [_, cols, rest @ ..] => {
            let rows = block_rows(shape, kind);
            let inner: u64 = rest.iter().product::<u64>().max(1);
            let cols_chunk = (CHUNK_BYTES / (rows * inner * size).max(1))
                .min(*cols)
                .max(1);
            let mut chunks = vec![rows, cols_chunk];
            chunks.extend(rest.iter().map(|d| (*d).max(1)));
            chunks
        }
    }
}

/// Rows per copied block (and per chunk along axis 0) of an n-D array with n ≥ 2.
pub fn block_rows(shape: &[u64], kind: ElementKind) -> u64 {
    let row_bytes = shape[1..].iter().product::<u64>().max(1) * element_size(kind);
    (BLOCK_BYTES / row_bytes).min(shape[0]).max(1)
}

/// Elements per copied block of a 1-D array (a whole number of chunks).
pub fn block_len(chunk: u64, kind: ElementKind) -> u64 {
    let per_block = (BLOCK_BYTES / (chunk * element_size(kind)).max(1)).max(1);
    chunk * per_block
}

fn v3_data_type(kind: ElementKind) -> Option<&'static str> {
    Some(match kind {
        ElementKind::Bool => "bool",
        ElementKind::Int(1) => "int8",
        ElementKind::Int(2) => "int16",
        ElementKind::Int(4) => "int32",
        ElementKind::Int(8) => "int64",
        ElementKind::UInt(1) => "uint8",
        ElementKind::UInt(2) => "uint16",
        ElementKind::UInt(4) => "uint32",
        ElementKind::UInt(8) => "uint64",
        ElementKind::Float(4) => "float32",
        ElementKind::Float(8) => "float64",
        ElementKind::String => "string",
        _ => return None,
    })
}

fn v2_dtype(kind: ElementKind) -> Option<&'static str> {
    Some(match kind {
        ElementKind::Bool => "|b1",
        ElementKind::Int(1) => "|i1",
        ElementKind::Int(2) => "<i2",
        ElementKind::Int(4) => "<i4",
        ElementKind::Int(8) => "<i8",
        ElementKind::UInt(1) => "|u1",
        ElementKind::UInt(2) => "<u2",
        ElementKind::UInt(4) => "<u4",
        ElementKind::UInt(8) => "<u8",
        ElementKind::Float(4) => "<f4",
        ElementKind::Float(8) => "<f8",
        ElementKind::String => "|O",
        _ => return None,
    })
}

fn fill_value(kind: ElementKind) -> Value {
    match kind {
        ElementKind::Bool => json!(false),
        ElementKind::Float(_) => json!(0.0),
        ElementKind::String => json!(""),
        _ => json!(0),
    }
}

/// Whether `convert` can write arrays of this kind.
pub fn supported(kind: ElementKind) -> bool {
    v3_data_type(kind).is_some()
}

/// The metadata documents of one array, as `(key suffix, document)` pairs (`zarr.json` for
/// v3; `.zarray` and `.zattrs` for v2), or `None` for an unsupported kind.
pub fn array_documents(
    zarr_format: u8,
    shape: &[u64],
    chunks: &[u64],
    kind: ElementKind,
    attributes: &Map<String, Value>,
) -> Option<Vec<(&'static str, Value)>> {
    if zarr_format == 2 {
        let filters = if kind == ElementKind::String {
            json!([{"id": "vlen-utf8"}])
        } else {
            Value::Null
        };
        let zarray = json!({
            "shape": shape,
            "chunks": chunks,
            "dtype": v2_dtype(kind)?,
            "fill_value": fill_value(kind),
            "order": "C",
            "filters": filters,
            "dimension_separator": ".",
            "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0},
            "zarr_format": 2,
        });
        return Some(vec![
            (".zarray", zarray),
            (".zattrs", Value::Object(attributes.clone())),
        ]);
    }
    let first = match kind {
        ElementKind::String => json!({"name": "vlen-utf8", "configuration": {}}),
        ElementKind::Bool | ElementKind::Int(1) | ElementKind::UInt(1) => {
            json!({"name": "bytes", "configuration": {}})
        }
        _ => json!({"name": "bytes", "configuration": {"endian": "little"}}),
    };
    let doc = json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": v3_data_type(kind)?,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value(kind),
        "codecs": [first, {"name": "zstd", "configuration": {"level": 0, "checksum": false}}],
        "attributes": attributes,
    });
    Some(vec![("zarr.json", doc)])
}

/// The metadata documents of one group (not the root).
pub fn group_documents(
    zarr_format: u8,
    attributes: &Map<String, Value>,
) -> Vec<(&'static str, Value)> {
    if zarr_format == 2 {
        vec![
            (".zgroup", json!({"zarr_format": 2})),
            (".zattrs", Value::Object(attributes.clone())),
        ]
    } else {
        vec![(
            "zarr.json",
            json!({"zarr_format": 3, "node_type": "group", "attributes": attributes}),
        )]
    }
}

/// Join a node key and a document name.
pub fn doc_key(node: &str, doc: &str) -> String {
    if node.is_empty() {
        doc.to_string()
    } else {
        format!("{node}/{doc}")
    }
}

/// Consolidated metadata, accumulated in the order nodes are written (depth-first, children in
/// h5ad name order — the order anndata lists them, e.g. for the obsm latent fallback).
#[derive(Debug, Default)]
pub struct Consolidated {
    /// v2: `path/.zarray` etc. → document; v3: `path` → node document.
    entries: Map<String, Value>,
}

impl Consolidated {
    /// Record the documents of the node at `key`.
    pub fn add(&mut self, zarr_format: u8, key: &str, docs: &[(&'static str, Value)]) {
        for (name, doc) in docs {
            if zarr_format == 2 {
                self.entries.insert(doc_key(key, name), doc.clone());
            } else {
                self.entries.insert(key.to_string(), doc.clone());
            }
        }
    }

    /// The root documents, in the order they must be written (the last one makes the store
    /// complete): v2 `.zattrs`, `.zgroup`, `.zmetadata`; v3 `zarr.json` with inline
    /// consolidated metadata.
    pub fn root_documents(
        self,
        zarr_format: u8,
        root_attributes: &Map<String, Value>,
    ) -> Vec<(&'static str, Value)> {
        if zarr_format == 2 {
            let mut metadata = Map::new();
            metadata.insert(".zattrs".into(), Value::Object(root_attributes.clone()));
            metadata.insert(".zgroup".into(), json!({"zarr_format": 2}));
            metadata.extend(self.entries);
            vec![
                (".zattrs", Value::Object(root_attributes.clone())),
                (".zgroup", json!({"zarr_format": 2})),
                (
                    ".zmetadata",
                    json!({"metadata": metadata, "zarr_consolidated_format": 1}),
                ),
            ]
        } else {
            vec![(
                "zarr.json",
                json!({
                    "zarr_format": 3,
                    "node_type": "group",
                    "attributes": root_attributes,
                    "consolidated_metadata": {
                        "kind": "inline",
                        "must_understand": false,
                        "metadata": self.entries,
                    },
                }),
            )]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_bound_blocks_and_are_never_empty() {
        let f4 = ElementKind::Float(4);
        assert_eq!(chunk_shape(&[0], f4), vec![1]);
        assert_eq!(chunk_shape(&[10], f4), vec![10]);
        assert_eq!(chunk_shape(&[100_000_000], f4), vec![262_144]);
        // 100k x 20k f32: 419 rows per 32 MiB block, ~1 MiB chunks.
        let c = chunk_shape(&[100_000, 20_000], f4);
        assert_eq!(c[0], block_rows(&[100_000, 20_000], f4));
        assert!(c[0] * 20_000 * 4 <= BLOCK_BYTES);
        assert!(c[0] * c[1] * 4 <= CHUNK_BYTES);
        assert_eq!(chunk_shape(&[], f4), Vec::<u64>::new());
        assert_eq!(block_len(262_144, f4) % 262_144, 0);
    }

    #[test]
    fn v2_root_metadata_comes_last() {
        let mut c = Consolidated::default();
        c.add(2, "obs", &group_documents(2, &Map::new()));
        let docs = c.root_documents(2, &Map::new());
        assert_eq!(docs.last().map(|d| d.0), Some(".zmetadata"));
        let meta = &docs[2].1["metadata"];
        assert!(meta.get("obs/.zgroup").is_some() && meta.get(".zgroup").is_some());
    }
}
