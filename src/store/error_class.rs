//! [`ErrorClass`]: what a failure means for the client — decided on typed error variants
//! (`object_store::Error`, `std::io::ErrorKind`), never on message text.

use std::error::Error as StdError;
use std::io;

use super::confined::OutsideStore;

/// What kind of failure an error is, for the layers that answer clients (HTTP status, retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The requested thing does not exist (unknown field, gene, dimension; no graph).
    NotFound,
    /// The store failed or was too slow; the same request may well succeed shortly.
    Transient,
    /// Serving this on demand would cost too much: run `cellucid-edge precompute`.
    NeedsPrecompute,
    /// The store is malformed, corrupt or lying about its contents (permanent until fixed).
    BadStore,
    /// The data declares more than this process can hold (its memory budget).
    TooLarge,
    /// The store refused the read because the key resolves outside it (a symbolic link
    /// leaving a confined local store; see [`ConfinedStore`](super::ConfinedStore)).
    Refused,
    /// Anything else: a misconfiguration (e.g. the server may not read its store) or a bug.
    Internal,
}

impl ErrorClass {
    /// Whether a retry may succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        self == ErrorClass::Transient
    }
}

/// The class of an `object_store` failure, by variant:
///
/// - `NotFound` → [`ErrorClass::NotFound`] (callers reading a key their metadata promised
///   report it as [`ErrorClass::BadStore`]);
/// - `PermissionDenied` raised by a [`ConfinedStore`](super::ConfinedStore) (its source is an
///   [`OutsideStore`]) → [`ErrorClass::Refused`]: the store refers outside itself;
/// - any other `PermissionDenied`, and `Unauthenticated` → [`ErrorClass::Internal`]: the
///   deployment's credentials are wrong, and retrying will not fix them;
/// - `Generic` → by its source: an `std::io::Error` is classed by its kind (see
///   [`classify_io`]); anything else is what remains once `object_store` has mapped the
///   permanent HTTP answers (404, 401, 403, 409, 412, 304) to their own variants — network
///   failures, timeouts, 5xx and throttling after its retries, or a body cut short — so
///   [`ErrorClass::Transient`];
/// - every other variant (invalid path, not supported, preconditions …) →
///   [`ErrorClass::Internal`].
pub fn classify_object_store(error: &object_store::Error) -> ErrorClass {
    use object_store::Error as E;
    match error {
        E::NotFound { .. } => ErrorClass::NotFound,
        E::Generic { source, .. } => classify_chain(source.as_ref()),
        E::PermissionDenied { source, .. } if source.is::<OutsideStore>() => ErrorClass::Refused,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorClass::Internal,
        _ => ErrorClass::Internal,
    }
}

/// The class of an `std::io::Error`: one wrapping an `object_store::Error` (how the zarrs
/// adapter carries store failures) is classed like it; otherwise by kind — `PermissionDenied`
/// and `Unsupported` are [`ErrorClass::Internal`], `NotFound` is [`ErrorClass::NotFound`],
/// `InvalidData` / `UnexpectedEof` are [`ErrorClass::BadStore`], and the rest (I/O errors,
/// resets, timeouts) [`ErrorClass::Transient`].
pub fn classify_io(error: &io::Error) -> ErrorClass {
    if let Some(inner) = error.get_ref()
        && let Some(store) = inner.downcast_ref::<object_store::Error>()
    {
        return classify_object_store(store);
    }
    match error.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported => ErrorClass::Internal,
        io::ErrorKind::NotFound => ErrorClass::NotFound,
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => ErrorClass::BadStore,
        _ => ErrorClass::Transient,
    }
}

/// Walk a `Generic` error's source chain for a typed cause (an `io::Error` or a nested
/// `object_store::Error`); without one the failure is transient.
fn classify_chain(source: &(dyn StdError + 'static)) -> ErrorClass {
    let mut next: Option<&(dyn StdError + 'static)> = Some(source);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            return classify_io(io);
        }
        if let Some(store) = error.downcast_ref::<object_store::Error>() {
            return classify_object_store(store);
        }
        next = error.source();
    }
    ErrorClass::Transient
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: Box<dyn StdError + Send + Sync>) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source,
        }
    }

    #[test]
    fn classes_follow_variants_not_text() {
        let not_found = object_store::Error::NotFound {
            path: "a".into(),
            source: "Generic storage error".into(),
        };
        assert_eq!(classify_object_store(&not_found), ErrorClass::NotFound);
        let denied = object_store::Error::PermissionDenied {
            path: "a".into(),
            source: "storage".into(),
        };
        assert_eq!(classify_object_store(&denied), ErrorClass::Internal);
        let unauthenticated = object_store::Error::Unauthenticated {
            path: "a".into(),
            source: "storage".into(),
        };
        assert_eq!(
            classify_object_store(&unauthenticated),
            ErrorClass::Internal
        );
        // A message saying "not found" does not make a network failure permanent.
        assert_eq!(
            classify_object_store(&generic("object not found, permission denied".into())),
            ErrorClass::Transient
        );
        let eacces = io::Error::new(io::ErrorKind::PermissionDenied, "x");
        assert_eq!(
            classify_object_store(&generic(Box::new(eacces))),
            ErrorClass::Internal
        );
        let corrupt = io::Error::new(io::ErrorKind::InvalidData, "x");
        assert_eq!(
            classify_object_store(&generic(Box::new(corrupt))),
            ErrorClass::BadStore
        );
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "Generic storage");
        assert_eq!(
            classify_object_store(&generic(Box::new(reset))),
            ErrorClass::Transient
        );
        // A confined store's refusal is typed by its source, not by its message.
        let refused = object_store::Error::PermissionDenied {
            path: "a".into(),
            source: Box::new(OutsideStore { key: "a".into() }),
        };
        assert_eq!(classify_object_store(&refused), ErrorClass::Refused);
        assert_eq!(classify_io(&io::Error::other(refused)), ErrorClass::Refused);
        let not_supported = object_store::Error::NotSupported { source: "x".into() };
        assert_eq!(classify_object_store(&not_supported), ErrorClass::Internal);
    }

    #[test]
    fn io_errors_carrying_store_errors_keep_their_class() {
        let denied = object_store::Error::PermissionDenied {
            path: "a".into(),
            source: "x".into(),
        };
        assert_eq!(classify_io(&io::Error::other(denied)), ErrorClass::Internal);
        let flaky = generic("connection closed".into());
        assert_eq!(classify_io(&io::Error::other(flaky)), ErrorClass::Transient);
    }
}
