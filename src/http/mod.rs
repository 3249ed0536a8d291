//! The transport-agnostic HTTP layer: `(method, path, headers) → response`, shared by the local
//! server, the Lambda function and the tests.

mod app;
pub mod cors;
pub mod encoding;

pub(crate) use app::wrong_dataset_refusal;
pub use app::{
    App, AppConfig, DEFAULT_REQUEST_TIMEOUT, PresignError, ServerIdentity, apply_common_headers,
};
pub use cors::CorsPolicy;
