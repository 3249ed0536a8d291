//! Latent-space key auto-detection (protocol §6.5, adapter `_detect_latent_key`).

use crate::model::obsm::ObsmEntry;

/// Preferred latent keys, in the order the reference's code tries them.
pub const LATENT_KEY_CANDIDATES: [&str; 6] =
    ["scanvi", "scvi", "X_scvi", "X_pca", "harmony", "X_harmony"];

/// Chooses the obsm key used as latent space for outlier quantiles.
///
/// `explicit` (the `latent_key` setting) wins when given — like the reference, it is returned
/// even if it is not an obsm key (the outliers then fall back to zeros). Otherwise the first of
/// [`LATENT_KEY_CANDIDATES`] present in obsm; otherwise the first obsm key (obsm order) not
/// starting with `X_umap` — which may well be a vector field such as `velocity_umap`; otherwise
/// `None`.
pub fn detect_latent_key(explicit: Option<&str>, entries: &[ObsmEntry]) -> Option<String> {
    if let Some(k) = explicit {
        return Some(k.to_string());
    }
    for cand in LATENT_KEY_CANDIDATES {
        if entries.iter().any(|e| e.key == cand) {
            return Some(cand.to_string());
        }
    }
    entries
        .iter()
        .find(|e| !e.key.starts_with("X_umap"))
        .map(|e| e.key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&str]) -> Vec<ObsmEntry> {
        ks.iter().map(|k| ObsmEntry::new(*k, vec![3, 2])).collect()
    }

    #[test]
    fn explicit_wins() {
        assert_eq!(
            detect_latent_key(Some("mine"), &keys(&["X_pca"])).as_deref(),
            Some("mine")
        );
    }

    #[test]
    fn candidate_order() {
        assert_eq!(
            detect_latent_key(None, &keys(&["X_pca", "X_scvi", "harmony"])).as_deref(),
            Some("X_scvi")
        );
        assert_eq!(
            detect_latent_key(None, &keys(&["X_harmony", "harmony"])).as_deref(),
            Some("harmony")
        );
        assert_eq!(
            detect_latent_key(None, &keys(&["X_umap", "X_pca", "scanvi"])).as_deref(),
            Some("scanvi")
        );
    }

    #[test]
    fn fallback_first_non_umap() {
        // python (cellucid 0.0.9): obsm velocity_umap_3d, X_umap, ... -> latent_key 'velocity_umap_3d'
        assert_eq!(
            detect_latent_key(
                None,
                &keys(&["X_umap", "X_umap_2d", "velocity_umap_3d", "X_tsne"])
            )
            .as_deref(),
            Some("velocity_umap_3d")
        );
        assert_eq!(
            detect_latent_key(None, &keys(&["X_umap", "X_umap_3d"])),
            None
        );
        assert_eq!(detect_latent_key(None, &[]), None);
    }
}
