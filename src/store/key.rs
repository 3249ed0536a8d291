//! The one way a store key becomes an object path below a prefix.

use object_store::path::{Path, PathPart};

/// The object path of store key `key` below `prefix`. Empty segments are skipped; every other
/// segment is kept verbatim when object_store accepts it as written (AnnData column names such
/// as `pct mito`, `名前` or `%%` are object names as written), and escaped otherwise (`.`, `..`,
/// control characters), so a key can never climb out of `prefix`.
pub fn join_key(prefix: &Path, key: &str) -> Path {
    key.split('/')
        .filter(|part| !part.is_empty())
        .fold(prefix.clone(), |path, part| match PathPart::parse(part) {
            Ok(verbatim) => path.join(verbatim),
            Err(_) => path.join(part),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_below_the_prefix() {
        let prefix = Path::from("atlases/a.zarr");
        assert_eq!(
            join_key(&prefix, "obs/pct mito/.zarray").as_ref(),
            "atlases/a.zarr/obs/pct mito/.zarray"
        );
        assert_eq!(join_key(&prefix, "X//0.0").as_ref(), "atlases/a.zarr/X/0.0");
        let climbed = join_key(&prefix, "../../etc/passwd");
        assert!(climbed.as_ref().starts_with("atlases/a.zarr/"), "{climbed}");
        assert!(!climbed.parts().any(|p| p.as_ref() == ".."), "{climbed}");
        assert_eq!(
            join_key(&Path::default(), "zarr.json").as_ref(),
            "zarr.json"
        );
    }
}
