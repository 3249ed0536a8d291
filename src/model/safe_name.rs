//! The safe file-name rule and its reverse lookups (protocol §6.9, §6.10).

use std::collections::HashMap;

fn is_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

/// The reference's `_safe_filename_component`: every maximal run of characters (Unicode code
/// points) outside `[A-Za-z0-9._-]` becomes one `_`; then leading and trailing `.`/`_`
/// characters are stripped; an empty result becomes `"field"`.
pub fn safe_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if is_safe_char(c) {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    let trimmed = out.trim_matches(|c| c == '.' || c == '_');
    if trimmed.is_empty() {
        "field".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Index of the first name whose safe name equals `component` (the server's obs-field reverse
/// lookup).
pub fn first_matching_safe_name<S: AsRef<str>>(names: &[S], component: &str) -> Option<usize> {
    names
        .iter()
        .position(|n| safe_name(n.as_ref()) == component)
}

/// Groups of indices whose names share the same safe name (only groups with ≥ 2 members),
/// ordered by first appearance; indices ascending within a group.
pub fn collisions<S: AsRef<str>>(names: &[S]) -> Vec<(String, Vec<usize>)> {
    let safe: Vec<String> = names.iter().map(|n| safe_name(n.as_ref())).collect();
    group_repeats(&safe)
}

/// Groups of indices holding the same id (only ids occurring ≥ 2 times), ordered by first
/// appearance; indices ascending within a group.
pub fn duplicates<S: AsRef<str>>(ids: &[S]) -> Vec<(String, Vec<usize>)> {
    group_repeats(ids)
}

fn group_repeats<S: AsRef<str>>(items: &[S]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    let mut pos: HashMap<&str, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let key = item.as_ref();
        match pos.get(key) {
            Some(&g) => groups[g].1.push(i),
            None => {
                pos.insert(key, groups.len());
                groups.push((key.to_string(), vec![i]));
            }
        }
    }
    groups.retain(|(_, idx)| idx.len() > 1);
    groups
}

/// Reverse lookup from a URL component to a gene (var) column, replicating the reference.
///
/// The reference finds the first gene id (var order) whose safe name equals the component,
/// else a gene id exactly equal to the component; the id *string* is then resolved through an
/// id → index dict built in var order, so for duplicated ids the **last** occurrence wins.
#[derive(Debug, Clone, Default)]
pub struct GeneIndex {
    ids: Vec<String>,
    first_by_safe: HashMap<String, usize>,
    last_by_id: HashMap<String, usize>,
}

impl GeneIndex {
    /// Builds the index from the gene ids in var order.
    pub fn new<S: AsRef<str>>(ids: &[S]) -> Self {
        let ids: Vec<String> = ids.iter().map(|s| s.as_ref().to_string()).collect();
        let mut first_by_safe = HashMap::with_capacity(ids.len());
        let mut last_by_id = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            first_by_safe.entry(safe_name(id)).or_insert(i);
            last_by_id.insert(id.clone(), i);
        }
        Self {
            ids,
            first_by_safe,
            last_by_id,
        }
    }

    /// The var column index serving `var/<component>.values.f32`, if any.
    pub fn lookup(&self, component: &str) -> Option<usize> {
        let id: &str = match self.first_by_safe.get(component) {
            Some(&i) => self.ids.get(i)?.as_str(),
            None => component,
        };
        self.last_by_id.get(id).copied()
    }

    /// Bytes held by the index (ids and both lookup tables), approximately.
    pub fn heap_bytes(&self) -> u64 {
        let header = std::mem::size_of::<String>() + std::mem::size_of::<usize>();
        let ids: usize = self.ids.iter().map(|id| id.capacity() + header).sum();
        let safe: usize = self
            .first_by_safe
            .keys()
            .map(|k| k.capacity() + header)
            .sum();
        let by_id: usize = self.last_by_id.keys().map(|k| k.capacity() + header).sum();
        // Hash tables keep about one spare slot per entry.
        (ids + 2 * (safe + by_id)) as u64
    }

    /// The gene ids in var order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Number of genes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no genes.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_name_matches_python() {
        // python: re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._") or "field"
        let cases = [
            ("pct mito", "pct_mito"),
            ("pct_mito", "pct_mito"),
            ("a/b\\c", "a_b_c"),
            ("aéèb c\u{1F600}d", "a_b_c_d"),
            ("__x__", "x"),
            ("._.x-._", "x-"),
            ("-x-", "-x-"),
            ("...", "field"),
            ("", "field"),
            ("%%%", "field"),
            ("é", "field"),
            ("leiden (res=1.0)", "leiden_res_1.0"),
            ("CD4+ T", "CD4_T"),
            ("a\u{0}b", "a_b"),
            ("_ a", "a"),
        ];
        for (input, expected) in cases {
            assert_eq!(safe_name(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn first_match_and_collisions() {
        let names = ["pct mito", "pct_mito", "x", "%%", "@@", "pct/mito"];
        assert_eq!(first_matching_safe_name(&names, "pct_mito"), Some(0));
        assert_eq!(first_matching_safe_name(&names, "field"), Some(3));
        assert_eq!(first_matching_safe_name(&names, "nope"), None);
        assert_eq!(
            collisions(&names),
            vec![
                ("pct_mito".to_string(), vec![0, 1, 5]),
                ("field".to_string(), vec![3, 4]),
            ]
        );
        assert!(collisions::<&str>(&[]).is_empty());
    }

    #[test]
    fn duplicate_ids() {
        assert_eq!(
            duplicates(&["a", "b", "a", "c", "b", "a"]),
            vec![
                ("a".to_string(), vec![0, 2, 5]),
                ("b".to_string(), vec![1, 4])
            ]
        );
        assert!(duplicates(&["a", "b"]).is_empty());
    }

    #[test]
    fn gene_lookup_replicates_reference() {
        // safe-name match first (var order), then exact id; duplicates resolve to the last.
        let g = GeneIndex::new(&["CD4", "HLA-A", "a b", "a_b", "CD4", "x/y", "x_y"]);
        assert_eq!(g.lookup("CD4"), Some(4)); // duplicated id -> last occurrence
        assert_eq!(g.lookup("HLA-A"), Some(1));
        assert_eq!(g.lookup("a_b"), Some(2)); // "a b" comes first and has safe name a_b
        assert_eq!(g.lookup("x_y"), Some(5)); // "x/y" first, safe name x_y
        assert_eq!(g.lookup("a b"), Some(2)); // exact id fallback
        assert_eq!(g.lookup("x/y"), Some(5)); // exact id fallback
        assert_eq!(g.lookup("nope"), None);
        assert_eq!(g.len(), 7);
        assert!(!g.is_empty());
        assert!(GeneIndex::new::<&str>(&[]).lookup("field").is_none());
    }

    #[test]
    fn gene_lookup_safe_name_of_duplicate() {
        // ids "g 1" twice: safe "g_1" -> first "g 1" -> id "g 1" -> last index 2
        let g = GeneIndex::new(&["g 1", "other", "g 1"]);
        assert_eq!(g.lookup("g_1"), Some(2));
    }
}
