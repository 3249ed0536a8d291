//! Store-key validation (protocol-0.9.md §3.2) and route-name parsing (§1.2).

/// Whether a Zarr store key may be looked up: not empty, no leading `/`, no `\` or NUL, and no
/// empty, `.` or `..` segment. Anything else is answered 404 without touching storage.
pub fn is_valid_store_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && !key.contains(['\\', '\0'])
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// What an `_cellucid/anndata/<name>` path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnDataRoute<'a> {
    /// `<id>.h5ad`.
    H5ad(&'a str),
    /// `<id>.zarr.zip`.
    ZarrZip(&'a str),
    /// `<id>.zarr/<key>` (the key may be empty or invalid; the caller validates).
    ZarrKey(&'a str, &'a str),
}

/// Split the part after `_cellucid/anndata/` into a route. The id is matched exactly by the
/// caller, so `x.zarr.zip` is tried as a zip before `x.zarr/…` as a folder.
pub fn parse_anndata_route(rest: &str) -> Option<AnnDataRoute<'_>> {
    if let Some((head, key)) = rest.split_once(".zarr/") {
        // `<id>.zarr/<key>`: ids never contain `/`.
        if !head.contains('/') {
            return Some(AnnDataRoute::ZarrKey(head, key));
        }
    }
    if rest.contains('/') {
        return None;
    }
    if let Some(id) = rest.strip_suffix(".zarr.zip") {
        return Some(AnnDataRoute::ZarrZip(id));
    }
    rest.strip_suffix(".h5ad").map(AnnDataRoute::H5ad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            ".zmetadata",
            "zarr.json",
            "X/data/0",
            "X/data/c/0",
            "obs/.zattrs",
            "a..b",
        ] {
            assert!(is_valid_store_key(ok), "{ok}");
        }
        for bad in [
            "", "/x", "../x", "X//a", "X/./a", "a/..", "a\\b", "a\0b", "x/",
        ] {
            assert!(!is_valid_store_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(parse_anndata_route("a.h5ad"), Some(AnnDataRoute::H5ad("a")));
        assert_eq!(
            parse_anndata_route("a.zarr.zip"),
            Some(AnnDataRoute::ZarrZip("a"))
        );
        assert_eq!(
            parse_anndata_route("a.zarr/X/data/0"),
            Some(AnnDataRoute::ZarrKey("a", "X/data/0"))
        );
        assert_eq!(
            parse_anndata_route("a.zarr/"),
            Some(AnnDataRoute::ZarrKey("a", ""))
        );
        assert_eq!(parse_anndata_route("a.h5ad/"), None);
        assert_eq!(parse_anndata_route("a.zarr"), None);
        assert_eq!(
            parse_anndata_route("x.zarr.zarr/.zmetadata"),
            Some(AnnDataRoute::ZarrKey("x.zarr", ".zmetadata"))
        );
    }
}
