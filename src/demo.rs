//! The demo atlas compiled into the binary: scanpy's `pbmc68k_reduced` (700 cells, 765 genes,
//! 2-D and 3-D UMAP, a kNN graph and a velocity field) as AnnData-Zarr v3, so `serve` works on a
//! fresh clone with no files and no network.

use include_dir::{Dir, DirEntry, include_dir};
use object_store::ObjectStoreExt;
use object_store::PutPayload;
use object_store::path::Path;

use crate::store::{StoreLocation, StoreUrlError, memory_store, open_store_url};

static DEMO: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/tests/fixtures/stores/pbmc68k.v3.zarr");

/// URL of the demo atlas once loaded.
pub const DEMO_URL: &str = "memory://cellucid-demo/pbmc68k_reduced";

fn files<'a>(dir: &'a Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    for entry in dir.entries() {
        match entry {
            DirEntry::Dir(d) => files(d, out),
            DirEntry::File(f) => out.push(f),
        }
    }
}

/// Load the embedded demo atlas into an in-memory store and open it.
pub async fn demo_location() -> Result<StoreLocation, StoreUrlError> {
    let store = memory_store("cellucid-demo");
    let mut all = Vec::new();
    files(&DEMO, &mut all);
    for file in all {
        let key = format!("pbmc68k_reduced/{}", file.path().to_string_lossy());
        let path = Path::from(key.as_str());
        store
            .put(&path, PutPayload::from_static(file.contents()))
            .await
            .map_err(|e| StoreUrlError::Invalid {
                url: DEMO_URL.into(),
                reason: e.to_string(),
            })?;
    }
    let mut location = open_store_url(DEMO_URL)?;
    location.name = "pbmc68k_reduced".into();
    Ok(location)
}
