//! The shape-only view of `adata.obsm` that the detection rules work on.

/// One `obsm` entry: its key and its shape, in `obsm` order.
///
/// Only the shape matters for UMAP resolution, vector-field detection and latent-key detection;
/// the data is read later by the caller. `shape` may have any number of axes (1-D, 2-D, 3-D …),
/// exactly as the stored array declares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObsmEntry {
    /// The obsm key (e.g. `"X_umap"`).
    pub key: String,
    /// The array's shape (e.g. `[n_cells, 2]`).
    pub shape: Vec<u64>,
}

impl ObsmEntry {
    /// Builds an entry from a key and a shape.
    pub fn new(key: impl Into<String>, shape: impl Into<Vec<u64>>) -> Self {
        Self {
            key: key.into(),
            shape: shape.into(),
        }
    }
}

/// Returns the first entry with exactly this key (Python's `obsm[key]`; keys are unique in a
/// real AnnData, the first one wins if a caller passes duplicates).
pub fn find_entry<'a>(entries: &'a [ObsmEntry], key: &str) -> Option<&'a ObsmEntry> {
    entries.iter().find(|e| e.key == key)
}

/// Formats a string like Python's `repr(str)` (best effort: control and non-ASCII whitespace
/// characters are escaped; other non-ASCII characters are kept, as Python does for printable
/// ones).
pub fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || (c != ' ' && c.is_whitespace()) => {
                let v = u32::from(c);
                if v < 0x100 {
                    out.push_str(&format!("\\x{v:02x}"));
                } else if v < 0x10000 {
                    out.push_str(&format!("\\u{v:04x}"));
                } else {
                    out.push_str(&format!("\\U{v:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Formats a list of strings like Python's `repr(list_of_str)`, e.g. `['a', 'b']`.
pub fn py_str_list_repr<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| py_str_repr(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        // python: repr("a"), repr("it's"), repr('say "hi"'), repr("both'\""), repr("a\tb\n")
        assert_eq!(py_str_repr("a"), "'a'");
        assert_eq!(py_str_repr("it's"), "\"it's\"");
        assert_eq!(py_str_repr("say \"hi\""), "'say \"hi\"'");
        assert_eq!(py_str_repr("both'\""), "'both\\'\"'");
        assert_eq!(py_str_repr("a\tb\n"), "'a\\tb\\n'");
        assert_eq!(py_str_repr("\u{1}é"), "'\\x01é'");
        assert_eq!(
            py_str_list_repr(&["X_pca", "X_umap"]),
            "['X_pca', 'X_umap']"
        );
        assert_eq!(py_str_list_repr::<&str>(&[]), "[]");
    }

    #[test]
    fn find_entry_first_wins() {
        let e = vec![
            ObsmEntry::new("a", vec![1]),
            ObsmEntry::new("a", vec![2]),
            ObsmEntry::new("b", vec![3]),
        ];
        assert_eq!(find_entry(&e, "a").map(|x| x.shape.clone()), Some(vec![1]));
        assert!(find_entry(&e, "c").is_none());
    }
}
