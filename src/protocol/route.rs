//! Request paths of the seed protocol (cellucid 0.0.9) parsed into [`Route`]s. Pure: no I/O.
//!
//! A route never becomes an object-store key: every component is resolved later against the
//! atlas's known fields, genes and vector fields.

/// What kind of obs payload is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObsPayload {
    /// `values.f32`
    Values,
    /// `codes.u8` / `codes.u16` (the extension is not checked, like the reference)
    Codes,
    /// `outliers.f32`
    Outliers,
}

/// A parsed request path (relative to one dataset, or a control route).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// `_cellucid/health`
    Health,
    /// `_cellucid/info`
    Info,
    /// `_cellucid/datasets`
    Datasets,
    /// `dataset_identity.json`
    Identity,
    /// `obs_manifest.json`
    ObsManifest,
    /// `var_manifest.json`
    VarManifest,
    /// `connectivity_manifest.json`
    ConnectivityManifest,
    /// `points_<d>d.bin`
    Points {
        /// Dimension digit (may be unavailable).
        dim: u8,
    },
    /// `obs/<component>.<payload>.<ext>`
    Obs {
        /// Safe-name component.
        component: String,
        /// Payload kind.
        payload: ObsPayload,
        /// The URL ended in `.gz`: answer raw gzip bytes.
        raw_gzip: bool,
    },
    /// `var/<component>.values.f32`
    Var {
        /// Safe name or exact gene id.
        component: String,
        /// The URL ended in `.gz`.
        raw_gzip: bool,
    },
    /// `connectivity/[…/]edges.src.bin` or `edges.dst.bin`
    Edges {
        /// `true` for sources.
        source: bool,
        /// The URL ended in `.gz`.
        raw_gzip: bool,
    },
    /// `vectors/<field>_<d>d.bin`
    Vectors {
        /// Vector field id.
        field: String,
        /// Dimension.
        dim: u8,
        /// The URL ended in `.gz`.
        raw_gzip: bool,
    },
}

impl Route {
    /// Whether the body is JSON.
    pub fn is_json(&self) -> bool {
        matches!(
            self,
            Route::Health
                | Route::Info
                | Route::Datasets
                | Route::Identity
                | Route::ObsManifest
                | Route::VarManifest
                | Route::ConnectivityManifest
        )
    }

    /// Whether the URL asked for the raw gzip file (`.gz`), served without Content-Encoding.
    pub fn is_raw_gzip(&self) -> bool {
        matches!(
            self,
            Route::Obs { raw_gzip: true, .. }
                | Route::Var { raw_gzip: true, .. }
                | Route::Edges { raw_gzip: true, .. }
                | Route::Vectors { raw_gzip: true, .. }
        )
    }

    /// Whether this is a server-wide control route.
    pub fn is_control(&self) -> bool {
        matches!(self, Route::Health | Route::Info | Route::Datasets)
    }
}

/// Why a path is rejected before routing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Percent-encoding is malformed.
    #[error("invalid percent-encoding in request path")]
    BadEncoding,
    /// Decoded path is not UTF-8.
    #[error("request path is not valid UTF-8")]
    NotUtf8,
    /// Path longer than we accept.
    #[error("request path too long")]
    TooLong,
}

/// Longest raw path accepted.
pub const MAX_PATH_BYTES: usize = 4096;

/// Percent-decode a raw request path (query string removed, `+` kept as is, like Python's
/// `unquote`), strictly: a `%` must be followed by two hex digits.
pub fn decode_path(raw: &str) -> Result<String, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if !escapes_are_well_formed(path) {
        return Err(PathError::BadEncoding);
    }
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| PathError::NotUtf8)
}

/// Whether every `%` of `path` starts a `%XX` escape (the decoder itself leaves malformed
/// escapes as they are; the seed protocol refuses them).
fn escapes_are_well_formed(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

fn strip_gz(path: &str) -> (&str, bool) {
    match path.strip_suffix(".gz") {
        Some(rest) => (rest, true),
        None => (path, false),
    }
}

/// Parse a decoded path relative to a dataset (leading `/` and dataset prefix already removed).
pub fn parse_route(path: &str) -> Option<Route> {
    match path {
        "_cellucid/health" => return Some(Route::Health),
        "_cellucid/info" => return Some(Route::Info),
        "_cellucid/datasets" => return Some(Route::Datasets),
        "dataset_identity.json" => return Some(Route::Identity),
        "obs_manifest.json" => return Some(Route::ObsManifest),
        "var_manifest.json" => return Some(Route::VarManifest),
        "connectivity_manifest.json" => return Some(Route::ConnectivityManifest),
        _ => {}
    }
    if path.starts_with("points_") && path.ends_with(".bin") {
        // ^points_(\d)d\.bin, anchored at the start only (like the reference).
        let rest = &path["points_".len()..];
        let mut chars = rest.chars();
        let digit = chars.next()?.to_digit(10)?;
        return chars
            .as_str()
            .starts_with("d.bin")
            .then_some(Route::Points { dim: digit as u8 });
    }
    if let Some(rest) = path.strip_prefix("vectors/") {
        let (rest, raw_gzip) = strip_gz(rest);
        let stem = rest.strip_suffix(".bin")?;
        let (field, dim) = stem.rsplit_once('_')?;
        let dim = match dim {
            "1d" => 1,
            "2d" => 2,
            "3d" => 3,
            _ => return None,
        };
        if field.is_empty() {
            return None;
        }
        return Some(Route::Vectors {
            field: field.to_string(),
            dim,
            raw_gzip,
        });
    }
    if let Some(rest) = path.strip_prefix("obs/") {
        let (rest, raw_gzip) = strip_gz(rest);
        let mut parts = rest.rsplitn(3, '.');
        let _ext = parts.next()?;
        let payload = parts.next()?;
        let component = parts.next()?;
        let payload = match payload {
            "values" => ObsPayload::Values,
            "codes" => ObsPayload::Codes,
            "outliers" => ObsPayload::Outliers,
            _ => return None,
        };
        return Some(Route::Obs {
            component: component.to_string(),
            payload,
            raw_gzip,
        });
    }
    if let Some(rest) = path.strip_prefix("var/") {
        let (rest, raw_gzip) = strip_gz(rest);
        let component = rest.strip_suffix(".values.f32")?;
        return Some(Route::Var {
            component: component.to_string(),
            raw_gzip,
        });
    }
    if path.starts_with("connectivity/") {
        let (rest, raw_gzip) = strip_gz(path);
        return match rest.rsplit('/').next()? {
            "edges.src.bin" => Some(Route::Edges {
                source: true,
                raw_gzip,
            }),
            "edges.dst.bin" => Some(Route::Edges {
                source: false,
                raw_gzip,
            }),
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_documents() {
        assert_eq!(parse_route("_cellucid/health"), Some(Route::Health));
        assert_eq!(parse_route("obs_manifest.json"), Some(Route::ObsManifest));
        assert_eq!(parse_route("nonexistent_route.json"), None);
    }

    #[test]
    fn points_follow_the_reference_regex() {
        assert_eq!(parse_route("points_3d.bin"), Some(Route::Points { dim: 3 }));
        assert_eq!(parse_route("points_4d.bin"), Some(Route::Points { dim: 4 }));
        assert_eq!(parse_route("points_3d.bin.gz"), None);
        assert_eq!(parse_route("points_xd.bin"), None);
    }

    #[test]
    fn obs_components_may_contain_dots() {
        assert_eq!(
            parse_route("obs/a.b.codes.u8"),
            Some(Route::Obs {
                component: "a.b".into(),
                payload: ObsPayload::Codes,
                raw_gzip: false
            })
        );
        assert_eq!(parse_route("obs/x.values"), None);
        assert_eq!(parse_route("obs/x.bogus.f32"), None);
    }

    #[test]
    fn vectors_use_a_greedy_field_id() {
        assert_eq!(
            parse_route("vectors/velocity_umap_2d.bin.gz"),
            Some(Route::Vectors {
                field: "velocity_umap".into(),
                dim: 2,
                raw_gzip: true
            })
        );
        assert_eq!(parse_route("vectors/_2d.bin"), None);
        assert_eq!(parse_route("vectors/v_4d.bin"), None);
    }

    #[test]
    fn edges_use_the_last_segment() {
        assert_eq!(
            parse_route("connectivity/x/edges.dst.bin"),
            Some(Route::Edges {
                source: false,
                raw_gzip: false
            })
        );
        assert_eq!(parse_route("connectivity/edges.bogus.bin"), None);
    }

    #[test]
    fn decoding_is_strict() {
        assert_eq!(
            decode_path("/var/a%20b.values.f32?x=1").as_deref(),
            Ok("/var/a b.values.f32")
        );
        assert_eq!(decode_path("/a+b").as_deref(), Ok("/a+b"));
        assert_eq!(decode_path("/%zz"), Err(PathError::BadEncoding));
        assert_eq!(decode_path("/%4"), Err(PathError::BadEncoding));
        assert_eq!(decode_path("/%ff%fe"), Err(PathError::NotUtf8));
        assert_eq!(decode_path(&"a".repeat(5000)), Err(PathError::TooLong));
    }
}
