//! The router: from an admitted request's path to a typed target of one protocol. It is the
//! only place that knows where protocols are mounted and which dataset a path names, and it
//! enforces a share token's dataset binding for every target.
//!
//! Mount points: the seed protocol (0.0.9) at the origin root, the 0.9 protocol under
//! [`BASE_PATH`](crate::v09::BASE_PATH), the strict profile under
//! [`strict::BASE`] (its own [`Mount`] and [`Target`]
//! variants; the seed's headers and method rules, its own paths and documents). Transports
//! never change.

use std::sync::Arc;

use http::header::HeaderMap;
use http::{Request, Response, StatusCode};

use super::context::Admission;
use super::{Body, Config};
use crate::catalog::Catalog;
use crate::dataset::Dataset;
use crate::http::response::{forbidden, retry_later, text};
use crate::http::{CorsPolicy, SeedProtocol, apply_common_headers};
use crate::protocol::strict::{self, StrictControl, StrictRoute, StrictTarget};
use crate::protocol::{PathError, Route, decode_path, parse_route};
use crate::share::ShareError;
use crate::v09::documents::portable_id_from;
use crate::v09::source::Source;
use crate::v09::{self, Frontend, FrontendConfig, FrontendError};

/// A protocol's place on the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// The seed protocol (0.0.9) at the origin root.
    Seed,
    /// The 0.9 protocol under `/v0.9`.
    V09,
    /// The strict profile of the seed protocol under `/strict` (#14).
    Strict,
}

impl Mount {
    /// The mount a request path (raw, below any share token) belongs to.
    pub fn of(path: &str) -> Mount {
        if v09::is_v09_path(path) {
            Mount::V09
        } else if strict::below_base(path).is_some() {
            Mount::Strict
        } else {
            Mount::Seed
        }
    }

    /// Add the protocol's common headers (CORS, `Vary`, `Cache-Control`, exposed headers).
    pub fn decorate(self, cors: &CorsPolicy, headers: &mut HeaderMap, origin: Option<&str>) {
        match self {
            Mount::Seed | Mount::Strict => apply_common_headers(cors, headers, origin),
            Mount::V09 => v09::common_headers(cors, headers, origin),
        }
    }

    /// The protocol's answer to a method it does not route, if that is the case.
    pub fn preflight<B>(self, request: &Request<B>) -> Option<Response<Body>> {
        match self {
            Mount::Seed | Mount::Strict => SeedProtocol::preflight(request),
            Mount::V09 => Frontend::preflight(request),
        }
    }
}

/// What a path leads to.
pub enum Target<'m> {
    /// A seed control document (`/_cellucid/health|info|datasets`).
    SeedControl(Route),
    /// A seed artifact of one atlas.
    SeedArtifact(&'m Arc<Dataset>, Route),
    /// A 0.9 route of one dataset.
    V09 {
        /// The protocol handler.
        frontend: &'m Frontend,
        /// The dataset.
        source: &'m Arc<Source>,
        /// The route below the dataset's base URL (decoded).
        route: String,
        /// The decoded request path, for messages.
        shown: String,
    },
    /// A strict control document (`/strict/_cellucid/health|info|datasets`).
    StrictControl(StrictControl),
    /// A strict document or payload of one atlas.
    StrictArtifact(&'m Arc<Dataset>, StrictRoute),
    /// Nowhere.
    Miss(Miss),
}

/// Why a path leads nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// Longer than the protocol allows (414).
    TooLong,
    /// Not a decodable path (400), with the reason.
    BadPath(String),
    /// No such route, atlas or dataset (404), with the decoded path.
    NotFound(String),
    /// The share token is bound to another dataset (403).
    WrongDataset,
    /// The atlas failed transiently while the catalogue opened and is not open yet (503).
    Opening,
}

impl Miss {
    /// The response in the style of `mount`.
    pub fn response(&self, mount: Mount) -> Response<Body> {
        match self {
            Miss::TooLong => text(StatusCode::URI_TOO_LONG, "Request path too long"),
            Miss::BadPath(reason) => text(StatusCode::BAD_REQUEST, reason),
            Miss::NotFound(shown) => match mount {
                Mount::Seed | Mount::Strict => text(StatusCode::NOT_FOUND, "Not found"),
                Mount::V09 => v09::not_found(shown),
            },
            Miss::WrongDataset => forbidden(&ShareError::WrongDataset),
            Miss::Opening => retry_later("The atlas is still being opened; retry shortly"),
        }
    }
}

/// Everything mounted on the router: the catalogue and its protocol handlers.
#[derive(Debug, Clone)]
pub struct Mounts {
    catalog: Catalog,
    seed: SeedProtocol,
    v09: Frontend,
    /// Whether the 0.9 datasets are the catalogue's own (rebuilt when it grows), rather than a
    /// `--ready` store or sources given explicitly.
    v09_from_catalog: bool,
}

impl Mounts {
    /// Mount `catalog`: the seed protocol at the root, its atlases as 0.9 datasets.
    pub fn new(catalog: Catalog, config: &Config) -> Result<Self, FrontendError> {
        let seed = SeedProtocol::new(catalog.clone(), config);
        let v09 = Frontend::from_catalog(
            &catalog,
            config.cache.as_ref(),
            |id| seed.fingerprint(id).map(str::to_string),
            FrontendConfig::default(),
            &[],
        )?;
        Ok(Mounts {
            catalog,
            seed,
            v09,
            v09_from_catalog: true,
        })
    }

    /// The same mounts with `frontend` serving the 0.9 protocol.
    pub fn with_protocol_09(self, frontend: Frontend) -> Self {
        Mounts {
            v09: frontend,
            v09_from_catalog: false,
            ..self
        }
    }

    /// The mounts of a grown catalogue (caches and existing datasets kept).
    pub fn grown(&self, catalog: Catalog, config: &Config) -> Result<Self, FrontendError> {
        let seed = self.seed.with_catalog(catalog.clone());
        let v09 = if self.v09_from_catalog {
            Frontend::from_catalog(
                &catalog,
                config.cache.as_ref(),
                |id| seed.fingerprint(id).map(str::to_string),
                self.v09.config().clone(),
                self.v09.sources(),
            )?
        } else {
            Frontend::new(self.v09.sources().to_vec(), self.v09.config().clone())?
        };
        Ok(Mounts {
            catalog,
            seed,
            v09,
            v09_from_catalog: self.v09_from_catalog,
        })
    }

    /// The catalogue.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The seed protocol handler.
    pub fn seed(&self) -> &SeedProtocol {
        &self.seed
    }

    /// The 0.9 protocol handler.
    pub fn v09(&self) -> &Frontend {
        &self.v09
    }
}

/// Why a share token's grant opens nothing here (checked before anything else, whatever the
/// method): it is bound to a dataset this server does not serve (or not yet).
pub fn check_grant(mounts: &Mounts, admission: &Admission) -> Option<Miss> {
    let bound = admission.bound_dataset()?;
    if mounts.catalog.get(bound).is_some() {
        return None;
    }
    Some(if mounts.catalog.is_pending(bound) {
        Miss::Opening
    } else {
        Miss::WrongDataset
    })
}

/// Where an admitted request leads.
pub fn route<'m, B>(
    mounts: &'m Mounts,
    mount: Mount,
    request: &Request<B>,
    admission: &Admission,
) -> Target<'m> {
    // A token bound to a dataset opens that dataset only, and only if it is served.
    if let Some(miss) = check_grant(mounts, admission) {
        return Target::Miss(miss);
    }
    match mount {
        Mount::Seed => route_seed(&mounts.catalog, request, admission),
        Mount::V09 => route_v09(mounts, request, admission),
        Mount::Strict => route_strict(&mounts.catalog, request, admission),
    }
}

/// Whether the catalogue's pending atlases should be tried again before answering `target`.
pub fn wants_fresh_catalogue(target: &Target<'_>) -> bool {
    matches!(
        target,
        Target::Miss(Miss::Opening)
            | Target::SeedControl(Route::Datasets)
            | Target::StrictControl(StrictControl::Datasets)
    )
}

fn route_seed<'m, B>(
    catalog: &'m Catalog,
    request: &Request<B>,
    admission: &Admission,
) -> Target<'m> {
    let raw = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let decoded = match decode_path(raw) {
        Ok(p) => p,
        Err(PathError::TooLong) => return Target::Miss(Miss::TooLong),
        Err(e) => return Target::Miss(Miss::BadPath(e.to_string())),
    };
    let path = decoded.trim_start_matches('/');
    let not_found = || Target::Miss(Miss::NotFound(decoded.clone()));
    let (dataset, rest) = if catalog.is_multi() {
        match path.split_once('/') {
            Some((id, rest)) if !path.starts_with("_cellucid/") => match catalog.get(id) {
                Some(ds) => (Some(ds), rest),
                None if catalog.is_pending(id) => return Target::Miss(Miss::Opening),
                None => return not_found(),
            },
            _ => (None, path),
        }
    } else {
        let ds = catalog.first();
        let rest = path
            .strip_prefix(ds.id())
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(path);
        (Some(ds), rest)
    };
    if let Some(bound) = admission.bound_dataset()
        && dataset.is_some_and(|ds| ds.id() != bound)
    {
        return Target::Miss(Miss::WrongDataset);
    }
    let Some(route) = parse_route(rest) else {
        return not_found();
    };
    if route.is_control() {
        return Target::SeedControl(route);
    }
    match dataset {
        Some(dataset) => Target::SeedArtifact(dataset, route),
        None => not_found(),
    }
}

fn route_v09<'m, B>(mounts: &'m Mounts, request: &Request<B>, admission: &Admission) -> Target<'m> {
    let raw = request.uri().path();
    // The 0.9 server decodes like Python's `unquote`: malformed escapes stay as written.
    let decoded = match percent_encoding::percent_decode_str(raw).decode_utf8() {
        Ok(p) => p.into_owned(),
        Err(_) => return Target::Miss(Miss::NotFound(raw.to_string())),
    };
    let Some(below) = decoded.strip_prefix(v09::BASE_PATH) else {
        return Target::Miss(Miss::NotFound(decoded));
    };
    let below = below.trim_start_matches('/');
    let Some((source, route)) = mounts.v09.locate(below) else {
        let first = below.split('/').next().unwrap_or_default();
        let pending = mounts
            .catalog
            .pending_ids()
            .any(|id| portable_id_from(id) == first);
        return Target::Miss(if pending {
            Miss::Opening
        } else {
            Miss::NotFound(decoded.clone())
        });
    };
    if let Some(bound) = admission.bound_dataset()
        && source.catalog_id.as_deref() != Some(bound)
    {
        return Target::Miss(Miss::WrongDataset);
    }
    Target::V09 {
        frontend: &mounts.v09,
        source,
        route: route.to_string(),
        shown: decoded.clone(),
    }
}

/// The strict profile (#14): a path below `/strict`, decoded as the seed decodes, against the
/// strict catalogue (each atlas at its one declared path).
fn route_strict<'m, B>(
    catalog: &'m Catalog,
    request: &Request<B>,
    admission: &Admission,
) -> Target<'m> {
    let decoded = match decode_path(request.uri().path()) {
        Ok(p) => p,
        Err(PathError::TooLong) => return Target::Miss(Miss::TooLong),
        Err(e) => return Target::Miss(Miss::BadPath(e.to_string())),
    };
    let Some(below) = strict::below_base(&decoded) else {
        return Target::Miss(Miss::NotFound(decoded));
    };
    match strict::parse_target(catalog, below) {
        Some(StrictTarget::Control(control)) => Target::StrictControl(control),
        Some(StrictTarget::Dataset(dataset, route)) => {
            if admission
                .bound_dataset()
                .is_some_and(|bound| dataset.id() != bound)
            {
                return Target::Miss(Miss::WrongDataset);
            }
            Target::StrictArtifact(dataset, route)
        }
        None => {
            let first = below.split('/').next().unwrap_or_default();
            let pending = catalog.is_multi()
                && catalog
                    .pending_ids()
                    .any(|id| strict::naming::strict_dataset_id(id) == first);
            Target::Miss(if pending {
                Miss::Opening
            } else {
                Miss::NotFound(decoded.clone())
            })
        }
    }
}
