//! Errors of the AnnData-Zarr reader, each naming the store key involved, with their
//! [`ErrorClass`] decided on typed causes (zarrs and `object_store` variants).

use zarrs::array::ArrayError;
use zarrs::storage::StorageError;

use crate::compute::ComputeError;
use crate::memory::TooLarge;
use crate::store::{ErrorClass, classify_io, classify_object_store};

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
    /// Reading failed in a backend that reports text only (HDF5: a corrupt or truncated file).
    #[error("cannot read `{key}`: {reason}")]
    Read {
        /// Store key.
        key: String,
        /// Underlying error text.
        reason: String,
    },
    /// Reading or decoding the chunks of a Zarr array failed (the store failed, or a chunk is
    /// truncated or corrupt).
    #[error("cannot read `{key}`: {source}")]
    Chunks {
        /// Store key of the array.
        key: String,
        /// What zarrs reported (boxed: it is large).
        #[source]
        source: Box<ArrayError>,
    },
    /// A sparse matrix's arrays contradict each other or its shape (decreasing or
    /// out-of-range `indptr`, out-of-range `indices`, lengths that do not match).
    #[error("`{key}` is not a valid sparse matrix: {reason}")]
    Structure {
        /// Store key of the matrix (group) or of the offending array.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A declared size does not fit in this process (its memory budget, or the allocator).
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// A step run off the executor (validating or converting what was read) was cancelled or
    /// failed.
    #[error("processing `{key}`: {source}")]
    Compute {
        /// Store key of the element.
        key: String,
        /// What happened to the job.
        #[source]
        source: ComputeError,
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
    /// What this failure means for a client. A store object the metadata promised but the
    /// store does not have is [`ErrorClass::BadStore`], not a 404 (the route exists).
    pub fn class(&self) -> ErrorClass {
        match self {
            AnnDataError::Storage { source, .. } => match classify_object_store(source) {
                ErrorClass::NotFound => ErrorClass::BadStore,
                class => class,
            },
            AnnDataError::Chunks { source, .. } => match classify_array_error(source.as_ref()) {
                ErrorClass::NotFound => ErrorClass::BadStore,
                class => class,
            },
            AnnDataError::TooLarge(_) => ErrorClass::TooLarge,
            AnnDataError::Compute { .. } => ErrorClass::Internal,
            AnnDataError::Missing { .. }
            | AnnDataError::Metadata { .. }
            | AnnDataError::Shape { .. }
            | AnnDataError::Dtype { .. }
            | AnnDataError::Encoding { .. }
            | AnnDataError::Read { .. }
            | AnnDataError::File { .. }
            | AnnDataError::Structure { .. } => ErrorClass::BadStore,
        }
    }

    /// Whether the failure is likely transient (the store failed, not the data).
    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }
}

/// The class of a zarrs read failure: store failures are classed by the `object_store` error
/// they carry (see `ObjectStoreZarr`); every other failure — a chunk that does not decode, a
/// chunk grid that does not match the chunks — means the store is damaged.
fn classify_array_error(error: &ArrayError) -> ErrorClass {
    use zarrs::array::CodecError;
    match error {
        ArrayError::StorageError(storage)
        | ArrayError::CodecError(CodecError::StorageError(storage)) => {
            classify_storage_error(storage)
        }
        ArrayError::CodecError(CodecError::IOError(io)) => match io.get_ref() {
            Some(inner) if inner.is::<object_store::Error>() => classify_io(io),
            // A decoder's own I/O error: the chunk bytes are bad.
            _ => ErrorClass::BadStore,
        },
        _ => ErrorClass::BadStore,
    }
}

fn classify_storage_error(error: &StorageError) -> ErrorClass {
    match error {
        StorageError::IOError(io) => classify_io(io),
        _ => ErrorClass::BadStore,
    }
}
