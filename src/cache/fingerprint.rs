//! The cache fingerprint: what a cached artifact depends on.

use sha2::{Digest, Sha256};

use crate::dataset::Dataset;

/// Fingerprint of an opened atlas: a hash of the source store's metadata document (its bytes
/// and, when the backend reports one, its ETag), the crate version, and every option that
/// changes artifacts. A changed source gets a new fingerprint, never stale data.
pub fn fingerprint(dataset: &Dataset) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"cellucid-edge\0");
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(b"\0");
    // distprecompute: the gzip policy names the bytes of every cached body (same ETag, same bytes).
    hasher.update(super::gzip::POLICY_ID.as_bytes());
    hasher.update(b"\0");
    let store = dataset.store();
    match store.tree().and_then(|tree| tree.consolidated_bytes()) {
        Some(bytes) => hasher.update(bytes),
        None => hasher.update(b"unconsolidated"),
    }
    hasher.update(b"\0");
    if let Some(etag) = store.source_version() {
        hasher.update(etag.as_bytes());
    }
    hasher.update(b"\0");
    let options = dataset.options();
    let params = format!(
        "latent={:?}|genes={}|normalize={}|q={}|min={}|id={}|name={}",
        dataset.latent_key(),
        options.gene_id_column,
        options.normalize_embeddings,
        options.centroid_outlier_quantile,
        options.centroid_min_points,
        dataset.id(),
        dataset.name(),
    );
    hasher.update(params.as_bytes());
    // The discovered layout (keys, shapes, encodings) also covers stores without consolidated
    // metadata, whose per-node documents are not hashed above.
    hasher.update(format!("{:?}", dataset.layout()).as_bytes());
    hex::encode(&hasher.finalize()[..12])
}
