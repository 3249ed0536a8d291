//! From a dataset error to a response: the HTTP layer maps the error's [`ErrorClass`] (decided
//! by the dataset layer on typed variants, see [`DatasetError::class`]) to a status and never
//! looks at error text.

use http::{Response, StatusCode};

use super::response::{retry_later, text};
use crate::dataset::{DatasetError, ErrorClass};
use crate::service::Body;

/// The class of `error` as the HTTP layer answers it: [`DatasetError::class`], except that a
/// failure after a confined store refused a read during this request
/// ([`refused_in_this_request`]) is [`ErrorClass::Refused`] even where the typed cause did not
/// survive (a backend reporting text only). A missing thing stays a 404 and a gene needing
/// `precompute` stays what it is.
///
/// [`refused_in_this_request`]: crate::store::confined::refused_in_this_request
pub fn classify(error: &DatasetError) -> ErrorClass {
    match error.class() {
        class @ (ErrorClass::NotFound | ErrorClass::NeedsPrecompute | ErrorClass::Refused) => class,
        _ if crate::store::confined::refused_in_this_request() => ErrorClass::Refused,
        class => class,
    }
}

/// The response to a failed artifact (seed protocol), by [`classify`]: 404 for what does not
/// exist, 403 for a read a confined store refused, 503 + `Retry-After` for a store failure
/// worth retrying, 503 with the reason for a gene that needs `precompute`, 500 for a damaged
/// store or a bug, 507 for data larger than the memory budget. Bodies never carry store URLs
/// or local paths (store keys only).
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
        ErrorClass::TooLarge => {
            tracing::error!(target: "cellucid_edge::http", "atlas too large: {error}");
            text(
                StatusCode::INSUFFICIENT_STORAGE,
                &format!("The atlas is too large for this server: {error}"),
            )
        }
        ErrorClass::BadStore => {
            tracing::error!(target: "cellucid_edge::http", "damaged or malformed store: {error}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error: the atlas store is damaged or malformed (see the server log)",
            )
        }
        ErrorClass::Internal => {
            tracing::error!(target: "cellucid_edge::http", "internal error: {error}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }
}
