//! Artifacts without the time of the run: the cache prefix holds the same bytes whichever
//! process or task computed them, and whenever.
//!
//! The only time-dependent field of any artifact is `created_at` of `dataset_identity.json`
//! (the reference stamps the moment its server loaded the atlas). In the cache it is the last
//! modification time of the source's root metadata document (or `.h5ad` file): the same for
//! every task reading that source, and a meaningful "created" date of the atlas.

use bytes::Bytes;
use object_store::ObjectStoreExt;

use crate::dataset::Dataset;

/// Root metadata documents of a Zarr store, in the order the reader looks for them.
const ROOT_DOCUMENTS: [&str; 3] = [".zmetadata", "zarr.json", ".zgroup"];
/// `created_at` when the source reports no modification time.
const UNKNOWN: i64 = 0;

/// Seconds since the epoch of the source's last modification, as the store reports it.
pub async fn source_modified(dataset: &Dataset) -> i64 {
    let location = dataset.store().location();
    if let Some(file) = location.local_file() {
        return std::fs::metadata(file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(UNKNOWN, |d| d.as_secs() as i64);
    }
    for document in ROOT_DOCUMENTS {
        let path = location.prefix.clone().join(document);
        if let Ok(meta) = location.store.head(&path).await {
            return meta.last_modified.timestamp();
        }
    }
    UNKNOWN
}

/// `seconds` as the identity document writes times (`2026-11-30T12:00:00Z`).
pub fn format_time(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// `body` (a `dataset_identity.json`) with `created_at` set to `created_at`; every other byte
/// as the document was serialised. A body that is not a JSON object is returned unchanged.
pub fn with_created_at(body: &Bytes, created_at: &str) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.clone();
    };
    match value.get_mut("created_at") {
        Some(field) => *field = serde_json::Value::String(created_at.to_string()),
        None => return body.clone(),
    }
    serde_json::to_vec(&value).map_or_else(|_| body.clone(), Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_is_replaced_and_nothing_else_changes() {
        let body =
            Bytes::from_static(br#"{"version":2,"created_at":"2026-12-06T00:00:01Z","x":0.1}"#);
        let out = with_created_at(&body, &format_time(1_700_000_000));
        assert_eq!(
            &out[..],
            br#"{"version":2,"created_at":"2023-11-14T22:13:20Z","x":0.1}"#
        );
        assert_eq!(
            with_created_at(&Bytes::from_static(b"[1]"), "t"),
            Bytes::from_static(b"[1]")
        );
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
    }
}
