//! From a dataset error to a response: one small classification function, so the HTTP layer
//! maps a class to a status and never looks at error text.

use http::{Response, StatusCode};

use super::response::{retry_later, text};
use crate::dataset::DatasetError;
use crate::service::Body;

/// What kind of failure an error is, as far as a client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The thing asked for does not exist (404).
    NotFound,
    /// The store refused the read (a symlink leaving a local store; 403).
    Refused,
    /// The artifact needs `precompute` (503 without retry hint).
    NeedsPrecompute,
    /// The store failed or was slow; the next request may succeed (503 + `Retry-After`).
    Transient,
    /// Anything else (500, details in the log only).
    Internal,
}

/// The class of `error`. The store-level distinctions come from the typed `object_store`
/// error in the source chain (never from message text), or from a confined store's refusal
/// recorded during the request ([`refused_in_this_request`]) where the chain was lost; transient
/// store failures are decided by [`DatasetError::is_transient`] until the dataset layer's own
/// classification replaces it.
///
/// [`refused_in_this_request`]: crate::store::confined::refused_in_this_request
pub fn classify(error: &DatasetError) -> ErrorClass {
    match error {
        DatasetError::NotFound(_) => return ErrorClass::NotFound,
        DatasetError::NeedsPrecompute { .. } => return ErrorClass::NeedsPrecompute,
        _ => {}
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(object_store::Error::PermissionDenied { .. }) =
            e.downcast_ref::<object_store::Error>()
        {
            return ErrorClass::Refused;
        }
        cause = e.source();
    }
    if crate::store::confined::refused_in_this_request() {
        return ErrorClass::Refused;
    }
    if error.is_transient() {
        ErrorClass::Transient
    } else {
        ErrorClass::Internal
    }
}

/// The response for `error` (seed protocol).
pub fn error_response(error: &DatasetError) -> Response<Body> {
    match classify(error) {
        ErrorClass::NotFound => text(StatusCode::NOT_FOUND, &error.to_string()),
        ErrorClass::Refused => {
            tracing::warn!(target: "cellucid_edge::http", "store read refused: {error}");
            text(
                StatusCode::FORBIDDEN,
                "Forbidden: the store refers outside itself",
            )
        }
        ErrorClass::NeedsPrecompute => {
            tracing::warn!(target: "cellucid_edge::http", "{error}");
            text(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
        }
        ErrorClass::Transient => {
            tracing::warn!(target: "cellucid_edge::http", "transient store failure: {error}");
            retry_later("The data store is temporarily unavailable; retry shortly")
        }
        ErrorClass::Internal => {
            tracing::error!(target: "cellucid_edge::http", "internal error: {error}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }
}
