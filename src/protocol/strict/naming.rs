//! How the strict profile names things: obs payload indices, unique gene names, vector-field
//! file stems and catalogue ids / paths (protocol-strict.md §3, §4, §6, §7, §12.2, §12.3).
//! Pure functions of the atlas's metadata.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::dataset::{FieldKind, ObsField};
use crate::model::vectors::VectorFields;

/// The payload index of every obs field: the continuous fields `0..C-1` in obs column order,
/// then the categorical fields `C..N-1` in obs column order. Index order is therefore the
/// viewer's expansion order of the manifest (`_continuousFields`, then `_categoricalFields`)
/// and the order of the identity's `obs_fields` (protocol-strict.md §12.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsNumbering {
    /// Payload index → obs field (column) index.
    by_payload: Vec<usize>,
    /// Obs field index → payload index.
    by_field: Vec<usize>,
    n_continuous: usize,
}

impl ObsNumbering {
    /// Number the fields of an atlas.
    pub fn new(fields: &[ObsField]) -> Self {
        let kinds: Vec<FieldKind> = fields.iter().map(|f| f.kind).collect();
        Self::from_kinds(&kinds)
    }

    /// Number fields of the given kinds (in column order).
    pub fn from_kinds(kinds: &[FieldKind]) -> Self {
        let continuous = kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| **k == FieldKind::Continuous)
            .map(|(i, _)| i);
        let categorical = kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| **k == FieldKind::Category)
            .map(|(i, _)| i);
        let by_payload: Vec<usize> = continuous.chain(categorical).collect();
        let mut by_field = vec![0; kinds.len()];
        for (payload, &field) in by_payload.iter().enumerate() {
            by_field[field] = payload;
        }
        let n_continuous = kinds
            .iter()
            .filter(|k| **k == FieldKind::Continuous)
            .count();
        ObsNumbering {
            by_payload,
            by_field,
            n_continuous,
        }
    }

    /// The obs field (column index) of payload `payload`.
    pub fn field(&self, payload: usize) -> Option<usize> {
        self.by_payload.get(payload).copied()
    }

    /// The payload index of obs field `field`.
    pub fn payload(&self, field: usize) -> Option<usize> {
        self.by_field.get(field).copied()
    }

    /// Obs field indices in payload order.
    pub fn fields_in_payload_order(&self) -> &[usize] {
        &self.by_payload
    }

    /// Number of continuous fields (the first categorical payload index).
    pub fn n_continuous(&self) -> usize {
        self.n_continuous
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.by_payload.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.by_payload.is_empty()
    }
}

/// Gene names made unique the way `anndata`'s `var_names_make_unique()` does
/// (`anndata.utils.make_index_unique`, join `"-"`): the first occurrence keeps its name, the
/// k-th repeat becomes `<name>-<k>` (skipping candidates that already exist). The strict var
/// manifest needs unique names (protocol-strict.md §7); the payload index still addresses
/// each gene's own column.
pub fn unique_gene_names<S: AsRef<str>>(ids: &[S]) -> Vec<String> {
    let mut names: Vec<String> = ids.iter().map(|s| s.as_ref().to_string()).collect();
    let mut taken: HashSet<String> = names.iter().cloned().collect();
    if taken.len() == names.len() {
        return names;
    }
    let mut first_seen: HashSet<String> = HashSet::with_capacity(names.len());
    let mut counter: HashMap<String, u64> = HashMap::new();
    for name in names.iter_mut() {
        if first_seen.insert(name.clone()) {
            continue;
        }
        let base = name.clone();
        let count = counter.entry(base.clone()).or_insert(0);
        loop {
            *count += 1;
            let candidate = format!("{base}-{count}");
            if taken.insert(candidate.clone()) {
                *name = candidate;
                break;
            }
        }
    }
    names
}

/// Whether `path` is a relative file path the strict viewer accepts without doubt: segments
/// of `[A-Za-z0-9._-]`, none empty, `.` or `..` (a conservative subset of §4's safe paths).
pub fn is_plain_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// The file stem of every vector field in the strict profile (`vectors/<stem>_<d>d.bin`), in
/// field order: the field id, as the seed names the file, when every id makes a plain path;
/// otherwise every field is addressed by its position (`vectors/<k>_<d>d.bin`).
pub fn vector_stems(fields: &VectorFields) -> Vec<String> {
    let by_id: Vec<String> = fields.fields.iter().map(|f| f.id.clone()).collect();
    let plain = by_id
        .iter()
        .all(|id| is_plain_relative_path(&format!("vectors/{id}_1d.bin")));
    let unique = by_id.iter().collect::<HashSet<_>>().len() == by_id.len();
    if plain && unique {
        by_id
    } else {
        (0..by_id.len()).map(|k| k.to_string()).collect()
    }
}

const WINDOWS_RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Whether `id` can be a catalogue directory and a clean dataset id (protocol-strict.md §3):
/// 1–180 characters of `[A-Za-z0-9._-]`, starting alphanumeric, not ending in `.`, not a
/// Windows reserved device name (with or without an extension).
pub fn is_clean_id(id: &str) -> bool {
    let stem = id.split('.').next().unwrap_or_default();
    (1..=180).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !id.ends_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !WINDOWS_RESERVED
            .iter()
            .any(|r| r.eq_ignore_ascii_case(stem))
}

/// The dataset id (and catalogue directory) of an atlas in the strict profile: its id when
/// clean, otherwise `ds-<cleaned prefix>-<8 hex digits of its SHA-256>` (deterministic, so
/// the identity and the catalogue agree without knowing each other).
pub fn strict_dataset_id(id: &str) -> String {
    if is_clean_id(id) {
        return id.to_string();
    }
    let cleaned: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(160)
        .collect();
    let digest = hex::encode(&Sha256::digest(id.as_bytes())[..4]);
    let prefix = cleaned.trim_matches(|c| c == '.' || c == '_' || c == '-');
    if prefix.is_empty() {
        format!("ds-{digest}")
    } else {
        format!("ds-{prefix}-{digest}")
    }
}

/// The dataset name in the strict profile: trimmed (§3 wants trimmed, non-empty text), the
/// strict id when nothing is left.
pub fn strict_dataset_name(name: &str, id: &str) -> String {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        strict_dataset_id(id)
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_fields_are_numbered_first() {
        use FieldKind::{Category as K, Continuous as C};
        let n = ObsNumbering::from_kinds(&[K, C, K, C, C]);
        assert_eq!(n.fields_in_payload_order(), [1, 3, 4, 0, 2]);
        assert_eq!(n.n_continuous(), 3);
        assert_eq!(n.payload(0), Some(3));
        assert_eq!(n.field(4), Some(2));
        assert_eq!(n.field(5), None);
        for p in 0..n.len() {
            assert_eq!(n.payload(n.field(p).unwrap()), Some(p));
        }
    }

    #[test]
    fn gene_names_are_made_unique_like_anndata() {
        // anndata.utils.make_index_unique(pd.Index(["a", "b", "a", "a-1", "a"]))
        //   -> ["a", "b", "a-2", "a-1", "a-3"]
        assert_eq!(
            unique_gene_names(&["a", "b", "a", "a-1", "a"]),
            ["a", "b", "a-2", "a-1", "a-3"]
        );
        assert_eq!(unique_gene_names(&["x", "X"]), ["x", "X"]);
        assert_eq!(unique_gene_names(&["DUP", "DUP"]), ["DUP", "DUP-1"]);
    }

    #[test]
    fn clean_ids_and_their_replacements() {
        for ok in ["pbmc68k", "a.b-c_d", "9lives", "CONSOLE", "x"] {
            assert!(is_clean_id(ok), "{ok}");
            assert_eq!(strict_dataset_id(ok), ok);
        }
        for bad in [
            "-lead",
            "ends.",
            "con",
            "Com1.zarr",
            "",
            "a b",
            &"a".repeat(181),
        ] {
            assert!(!is_clean_id(bad), "{bad:?}");
            let replaced = strict_dataset_id(bad);
            assert!(is_clean_id(&replaced), "{bad:?} -> {replaced}");
            assert_eq!(replaced, strict_dataset_id(bad));
        }
        assert!(strict_dataset_id("-lead").starts_with("ds-lead-"));
        assert_eq!(strict_dataset_name("  My atlas ", "x"), "My atlas");
        assert_eq!(strict_dataset_name(" ", "x"), "x");
    }

    #[test]
    fn plain_paths() {
        assert!(is_plain_relative_path("vectors/velocity_umap_2d.bin"));
        for bad in [
            "", "/a", "a//b", "a/../b", "a?b", "a#b", "a b", "a\\b", "%41",
        ] {
            assert!(!is_plain_relative_path(bad), "{bad}");
        }
    }
}
