//! Errors of the AnnData-Zarr reader, each naming the store key involved.

/// What went wrong while reading an AnnData-Zarr store.
#[derive(Debug, thiserror::Error)]
pub enum AnnDataError {
    /// A node the AnnData layout requires is absent.
    #[error("`{key}` is missing from the store ({expected})")]
    Missing {
        /// Store key (path inside the store).
        key: String,
        /// What was expected there.
        expected: String,
    },
    /// Metadata exists but cannot be parsed or is not what AnnData writes.
    #[error("invalid metadata at `{key}`: {reason}")]
    Metadata {
        /// Store key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An array has a shape that does not fit the AnnData layout.
    #[error("`{key}` has shape {found:?}, expected {expected}")]
    Shape {
        /// Store key.
        key: String,
        /// Expected shape, in words.
        expected: String,
        /// Shape found.
        found: Vec<u64>,
    },
    /// An array's data type is not one we can read for this purpose.
    #[error("`{key}` has unsupported data type {dtype} ({purpose})")]
    Dtype {
        /// Store key.
        key: String,
        /// Data type found.
        dtype: String,
        /// What the array was read for.
        purpose: String,
    },
    /// An element uses an AnnData encoding we do not read.
    #[error("`{key}` has unsupported AnnData encoding `{encoding}`")]
    Encoding {
        /// Store key.
        key: String,
        /// Encoding type found.
        encoding: String,
    },
    /// Reading or decoding chunks failed (truncated or corrupt chunk, codec error).
    #[error("cannot read `{key}`: {reason}")]
    Read {
        /// Store key.
        key: String,
        /// Underlying error text.
        reason: String,
    },
    /// A local file (an `.h5ad`) cannot be opened.
    #[error("cannot open `{path}` as an AnnData .h5ad file: {reason}")]
    File {
        /// Path of the file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The object store failed.
    #[error("storage error reading `{key}`: {source}")]
    Storage {
        /// Store key.
        key: String,
        /// Underlying error.
        #[source]
        source: object_store::Error,
    },
}

impl AnnDataError {
    /// Whether the failure is likely transient (the store failed, not the data).
    pub fn is_transient(&self) -> bool {
        matches!(self, AnnDataError::Storage { .. })
            || matches!(self, AnnDataError::Read { reason, .. } if reason.contains("storage") || reason.contains("Generic"))
    }
}
