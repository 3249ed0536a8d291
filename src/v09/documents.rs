//! The 0.9 JSON documents (protocol-0.9.md §2): health, info, protocol and datasets; the
//! portable-id rule; and Python `json.dumps` formatting (`", "` / `": "` separators, non-ASCII
//! escaped), which is what the 0.9.5 server sends.

use serde::Serialize;
use serde_json::{Value, json};

/// The package version the documents announce (the protocol generation they follow).
pub const PROTOCOL_VERSION: &str = "0.9.5";

/// The `/_cellucid/protocol` document of 0.9.5 (§2.3). Only served when configured, since a
/// data-only server has no WebSocket channel (the default answers 404).
pub fn protocol_document() -> Value {
    json!({
        "channel": "_cellucid/ws",
        "commands": ["clearHighlights", "debug_snapshot", "freeze", "highlight", "ping",
                     "requestSessionBundle", "resetCamera", "setColorBy", "setDataMapping",
                     "setVisibility"],
        "binaryCommands": ["highlight", "setVisibility"],
        "events": ["click", "command_error", "data_mapping", "debug_snapshot", "hover", "pong",
                   "ready", "selection", "session_bundle"],
    })
}

/// What kind of store a dataset is, as the datasets document names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// One `.h5ad` file (`kind: "h5ad"`, `layout: "file"`).
    H5ad,
    /// One zipped Zarr store (`kind: "zarr"`, `layout: "zip"`).
    ZarrZip,
    /// A Zarr folder (`kind: "zarr"`, `layout: "folder"`).
    ZarrFolder,
}

impl StoreKind {
    /// Registry kind (`format` in health/info, `kind` in the datasets document).
    pub fn kind(self) -> &'static str {
        match self {
            StoreKind::H5ad => "h5ad",
            StoreKind::ZarrZip | StoreKind::ZarrFolder => "zarr",
        }
    }

    /// `layout` in the datasets document.
    pub fn layout(self) -> &'static str {
        match self {
            StoreKind::H5ad => "file",
            StoreKind::ZarrZip => "zip",
            StoreKind::ZarrFolder => "folder",
        }
    }

    /// The ending of the route name after the dataset id (§1.2).
    pub fn route_suffix(self) -> &'static str {
        match self {
            StoreKind::H5ad => ".h5ad",
            StoreKind::ZarrZip => ".zarr.zip",
            StoreKind::ZarrFolder => ".zarr",
        }
    }

    /// The kind a store URL names, from its ending (`.h5ad`, `.zip`; anything else a folder).
    pub fn of_url(url: &str) -> StoreKind {
        let lower = url.trim_end_matches('/').to_ascii_lowercase();
        if lower.ends_with(".h5ad") {
            StoreKind::H5ad
        } else if lower.ends_with(".zip") {
            StoreKind::ZarrZip
        } else {
            StoreKind::ZarrFolder
        }
    }
}

/// Counts announced in health/info (`null` when unknown, e.g. an unparsed `.h5ad`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Cells.
    pub n_cells: Option<u64>,
    /// Genes.
    pub n_genes: Option<u64>,
}

/// `GET /_cellucid/health` (§2.1).
pub fn health_document(kind: StoreKind, counts: Counts) -> Value {
    json!({
        "status": "ok",
        "type": "anndata",
        "version": PROTOCOL_VERSION,
        "format": kind.kind(),
        "n_cells": counts.n_cells,
        "n_genes": counts.n_genes,
    })
}

/// `GET /_cellucid/info` (§2.2).
pub fn info_document(kind: StoreKind, counts: Counts, host: &str, port: u16) -> Value {
    json!({
        "version": PROTOCOL_VERSION,
        "type": "anndata",
        "format": kind.kind(),
        "host": host,
        "port": port,
        "n_cells": counts.n_cells,
        "n_genes": counts.n_genes,
        "runtime": "python",
    })
}

/// One entry of the datasets document.
#[derive(Debug, Clone)]
pub struct DatasetEntry<'a> {
    /// Portable id.
    pub id: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Store kind.
    pub kind: StoreKind,
    /// Exact byte length (file and zip layouts only).
    pub size: Option<u64>,
}

/// `file.url` of a dataset: relative to the base URL, `/` appended for a folder (§2.4).
pub fn file_url(id: &str, kind: StoreKind) -> String {
    let slash = if kind == StoreKind::ZarrFolder {
        "/"
    } else {
        ""
    };
    format!("_cellucid/anndata/{id}{}{slash}", kind.route_suffix())
}

/// `GET /_cellucid/datasets` (§2.4): exactly `{datasets:[{id,name,anndata:{file,defaults}}]}`.
pub fn datasets_document(entries: &[DatasetEntry<'_>]) -> Value {
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut file = serde_json::Map::new();
            file.insert("url".into(), json!(file_url(e.id, e.kind)));
            file.insert("kind".into(), json!(e.kind.kind()));
            file.insert("layout".into(), json!(e.kind.layout()));
            if e.kind != StoreKind::ZarrFolder
                && let Some(size) = e.size
            {
                file.insert("size".into(), json!(size));
            }
            json!({
                "id": e.id,
                "name": e.name,
                "anndata": { "file": Value::Object(file), "defaults": {} },
            })
        })
        .collect();
    json!({ "datasets": list })
}

/// Whether `id` satisfies the portable-id rule (§2.4): `^[A-Za-z0-9][A-Za-z0-9._-]{0,179}$`,
/// not ending in `.`, and no Windows device name before the first `.`.
pub fn is_portable_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    if bytes.len() > 180 || !first.is_ascii_alphanumeric() || id.ends_with('.') {
        return false;
    }
    if !bytes
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        return false;
    }
    let stem = id.split('.').next().unwrap_or(id).to_ascii_uppercase();
    !is_device_name(&stem)
}

fn is_device_name(stem: &str) -> bool {
    if matches!(stem, "CON" | "PRN" | "AUX" | "NUL") {
        return true;
    }
    let b = stem.as_bytes();
    b.len() == 4
        && (stem.starts_with("COM") || stem.starts_with("LPT"))
        && (b'1'..=b'9').contains(&b[3])
}

/// A portable id derived from any text (our seed dataset id, a file name): characters outside
/// `[A-Za-z0-9._-]` become `_`, a leading non-alphanumeric gets an `x` in front, trailing dots
/// go, the length is capped at 180, and a device-name stem gets a `_` appended.
pub fn portable_id_from(text: &str) -> String {
    let mut id: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !id.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric) {
        id.insert(0, 'x');
    }
    id.truncate(180);
    while id.ends_with('.') {
        id.pop();
    }
    let stem_len = id.find('.').unwrap_or(id.len());
    if is_device_name(&id[..stem_len].to_ascii_uppercase()) {
        id.insert(stem_len, '_');
        id.truncate(180);
    }
    if id.is_empty() {
        id.push_str("dataset");
    }
    id
}

/// Whether `name` is a valid display name (§2.4): non-empty, no C0/C1 controls, no
/// U+200B/U+2060/U+FEFF, no Unicode whitespace at either end.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.trim() == name
        && !name
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}'))
}

/// A valid display name from any text (controls and invisible characters dropped, trimmed),
/// or `fallback` when nothing is left.
pub fn display_name_from(text: &str, fallback: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}'))
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        fallback.to_string()
    } else {
        trimmed.to_string()
    }
}

/// Serialise like Python's `json.dumps(value)`: `", "` and `": "` separators, every non-ASCII
/// character escaped as `\uXXXX` (surrogate pairs above the BMP).
pub fn python_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Serialising a `Value` into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    out
}

struct PythonFormatter;

/// Python's `json.dumps` item separator `", "`, written before every item but the first.
fn comma_unless_first<W: ?Sized + std::io::Write>(
    writer: &mut W,
    first: bool,
) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        comma_unless_first(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        comma_unless_first(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_ids() {
        for ok in [
            "demo-1",
            "plain",
            "pbmc68k.v3.zarr",
            "a",
            "A.b_c-d",
            "COM0",
            "CONS.x",
        ] {
            assert!(is_portable_id(ok), "{ok}");
        }
        let long = "a".repeat(181);
        for bad in [
            "", "_x", ".x", "x.", "a b", "é", "CON", "con.zarr", "LPT9", "com3.x", &long,
        ] {
            assert!(!is_portable_id(bad), "{bad}");
        }
        for text in [
            "",
            "_cellucid",
            "My atlas (2024)",
            "con",
            "nul.x",
            "x...",
            "名前",
            &long,
        ] {
            let id = portable_id_from(text);
            assert!(is_portable_id(&id), "{text:?} → {id:?}");
        }
        assert_eq!(portable_id_from("pbmc68k.v3.zarr"), "pbmc68k.v3.zarr");
        assert_eq!(portable_id_from("My atlas"), "My_atlas");
    }

    #[test]
    fn names() {
        assert!(is_valid_name("Demo atlas"));
        assert!(!is_valid_name(" x"));
        assert!(!is_valid_name("a\u{200B}b"));
        assert!(!is_valid_name("a\nb"));
        assert_eq!(display_name_from(" a\u{FEFF}b\n", "f"), "ab");
        assert_eq!(display_name_from("\u{200B}", "f"), "f");
    }

    #[test]
    fn python_formatting() {
        let v = json!({"a": [1, 2], "b": "é😀", "c": {"d": null}});
        assert_eq!(
            String::from_utf8(python_json(&v)).unwrap(),
            r#"{"a": [1, 2], "b": "\u00e9\ud83d\ude00", "c": {"d": null}}"#
        );
    }

    #[test]
    fn datasets_shapes() {
        let folder = datasets_document(&[DatasetEntry {
            id: "demo-1",
            name: "Demo atlas",
            kind: StoreKind::ZarrFolder,
            size: Some(5),
        }]);
        assert_eq!(
            folder,
            json!({"datasets":[{"id":"demo-1","name":"Demo atlas","anndata":{"file":{"url":"_cellucid/anndata/demo-1.zarr/","kind":"zarr","layout":"folder"},"defaults":{}}}]})
        );
        let zip = datasets_document(&[DatasetEntry {
            id: "demo-1",
            name: "Demo atlas",
            kind: StoreKind::ZarrZip,
            size: Some(66204),
        }]);
        assert_eq!(
            zip["datasets"][0]["anndata"]["file"],
            json!({"url":"_cellucid/anndata/demo-1.zarr.zip","kind":"zarr","layout":"zip","size":66204})
        );
        assert_eq!(StoreKind::of_url("s3://b/x.H5AD"), StoreKind::H5ad);
        assert_eq!(StoreKind::of_url("/a/x.zarr.zip"), StoreKind::ZarrZip);
        assert_eq!(StoreKind::of_url("/a/x.zarr/"), StoreKind::ZarrFolder);
    }
}
