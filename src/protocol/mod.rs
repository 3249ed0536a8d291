//! The seed protocol: routes and the dispatch of a route to an atlas's artifact; the strict
//! profile of it ([`strict`]).

mod dispatch;
pub mod route;
pub mod strict;

pub use dispatch::{Artifact, ArtifactKind, resolve_artifact};
pub use route::{ObsPayload, PathError, Route, decode_path, parse_route};
