//! The HTTP rules shared by every protocol (status, headers, CORS, gzip negotiation, error
//! classes) and the seed protocol's handler. No transport here: see [`crate::service`].

pub mod cors;
pub mod encoding;
pub mod errors;
pub mod response;
pub mod seed;

pub use cors::CorsPolicy;
pub use response::{ServerIdentity, apply_common_headers};
pub use seed::SeedProtocol;

/// The service configuration under its former name (the tests of other modules build it).
pub type AppConfig = crate::service::Config;

/// Default request timeout (see [`crate::service::Config::request_timeout`]).
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration =
    crate::service::config::DEFAULT_REQUEST_TIMEOUT;
