//! Request paths of the strict profile parsed into typed targets. Pure: no I/O.
//!
//! Paths are exact: payloads are addressed by their decimal payload index written canonically
//! (`obs/3.values.f32`, not `obs/03.values.f32`), extensions are part of the address (a `.u16`
//! request for `.u8` codes is unknown), and `.gz` paths do not exist (the strict manifests
//! declare `compression: null`; transport gzip is negotiated as usual).

/// Extension of a value payload (`values.<ext>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueExt {
    /// `f32`
    F32,
    /// `u8` (quantised)
    U8,
    /// `u16` (quantised)
    U16,
}

impl ValueExt {
    fn parse(ext: &str) -> Option<Self> {
        match ext {
            "f32" => Some(Self::F32),
            "u8" => Some(Self::U8),
            "u16" => Some(Self::U16),
            _ => None,
        }
    }

    /// The extension text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::U8 => "u8",
            Self::U16 => "u16",
        }
    }
}

/// A server-wide control document under the strict base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrictControl {
    /// `_cellucid/health`
    Health,
    /// `_cellucid/info`
    Info,
    /// `_cellucid/datasets`
    Datasets,
}

/// A path relative to one dataset's strict path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StrictRoute {
    /// `dataset_identity.json`
    Identity,
    /// `obs_manifest.json`
    ObsManifest,
    /// `var_manifest.json`
    VarManifest,
    /// `connectivity_manifest.json`
    ConnectivityManifest,
    /// `points_<d>d.bin`, d ∈ 1..=3
    Points {
        /// Dimension.
        dim: u8,
    },
    /// `obs/<payload>.values.<ext>`
    ObsValues {
        /// Payload index.
        payload: usize,
        /// Extension asked for.
        ext: ValueExt,
    },
    /// `obs/<payload>.codes.<u8|u16>`
    ObsCodes {
        /// Payload index.
        payload: usize,
        /// `true` for `.u16`.
        wide: bool,
    },
    /// `obs/<payload>.outliers.f32`
    ObsOutliers {
        /// Payload index.
        payload: usize,
    },
    /// `var/<gene>.values.<ext>`
    VarValues {
        /// Gene position in var.
        gene: usize,
        /// Extension asked for.
        ext: ValueExt,
    },
    /// `connectivity/edges.src.bin`
    EdgeSources,
    /// `connectivity/edges.dst.bin`
    EdgeDestinations,
    /// `connectivity/edges.weights.f64.bin`
    EdgeWeights,
    /// `vectors/<stem>_<d>d.bin` (stem resolved against the identity's vector files)
    Vectors {
        /// File stem before `_<d>d.bin`.
        stem: String,
        /// Dimension.
        dim: u8,
    },
}

/// `sourcesPath` of the strict connectivity manifest.
pub const SOURCES_PATH: &str = "connectivity/edges.src.bin";
/// `destinationsPath` of the strict connectivity manifest.
pub const DESTINATIONS_PATH: &str = "connectivity/edges.dst.bin";
/// `weightsPath` of the strict connectivity manifest (the name cellucid's own server uses).
pub const WEIGHTS_PATH: &str = "connectivity/edges.weights.f64.bin";

/// A payload index written canonically: `0` or digits without a leading zero.
fn parse_index(text: &str) -> Option<usize> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
        && text.len() <= 19;
    canonical.then(|| text.parse().ok()).flatten()
}

fn parse_dim(text: &str) -> Option<u8> {
    match text {
        "1d" => Some(1),
        "2d" => Some(2),
        "3d" => Some(3),
        _ => None,
    }
}

/// Parse a decoded path below the strict base (`_cellucid/…` control documents).
pub fn parse_control(path: &str) -> Option<StrictControl> {
    match path {
        "_cellucid/health" => Some(StrictControl::Health),
        "_cellucid/info" => Some(StrictControl::Info),
        "_cellucid/datasets" => Some(StrictControl::Datasets),
        _ => None,
    }
}

/// Parse a decoded path relative to a dataset's strict path.
pub fn parse_route(path: &str) -> Option<StrictRoute> {
    match path {
        "dataset_identity.json" => return Some(StrictRoute::Identity),
        "obs_manifest.json" => return Some(StrictRoute::ObsManifest),
        "var_manifest.json" => return Some(StrictRoute::VarManifest),
        "connectivity_manifest.json" => return Some(StrictRoute::ConnectivityManifest),
        SOURCES_PATH => return Some(StrictRoute::EdgeSources),
        DESTINATIONS_PATH => return Some(StrictRoute::EdgeDestinations),
        WEIGHTS_PATH => return Some(StrictRoute::EdgeWeights),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("points_") {
        let dim = parse_dim(rest.strip_suffix(".bin")?)?;
        return Some(StrictRoute::Points { dim });
    }
    if let Some(rest) = path.strip_prefix("obs/") {
        let mut parts = rest.splitn(3, '.');
        let payload = parse_index(parts.next()?)?;
        let kind = parts.next()?;
        let ext = parts.next()?;
        return match (kind, ext) {
            ("values", ext) => Some(StrictRoute::ObsValues {
                payload,
                ext: ValueExt::parse(ext)?,
            }),
            ("codes", "u8") => Some(StrictRoute::ObsCodes {
                payload,
                wide: false,
            }),
            ("codes", "u16") => Some(StrictRoute::ObsCodes {
                payload,
                wide: true,
            }),
            ("outliers", "f32") => Some(StrictRoute::ObsOutliers { payload }),
            _ => None,
        };
    }
    if let Some(rest) = path.strip_prefix("var/") {
        let (gene, ext) = rest.split_once(".values.")?;
        return Some(StrictRoute::VarValues {
            gene: parse_index(gene)?,
            ext: ValueExt::parse(ext)?,
        });
    }
    if let Some(rest) = path.strip_prefix("vectors/") {
        let stem = rest.strip_suffix(".bin")?;
        let (stem, dim) = stem.rsplit_once('_')?;
        let dim = parse_dim(dim)?;
        if stem.is_empty() {
            return None;
        }
        return Some(StrictRoute::Vectors {
            stem: stem.to_string(),
            dim,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_control() {
        assert_eq!(
            parse_route("obs_manifest.json"),
            Some(StrictRoute::ObsManifest)
        );
        assert_eq!(
            parse_control("_cellucid/datasets"),
            Some(StrictControl::Datasets)
        );
        assert_eq!(parse_control("_cellucid/anndata"), None);
        assert_eq!(parse_route("_cellucid/health"), None);
    }

    #[test]
    fn payloads_are_addressed_by_canonical_index() {
        assert_eq!(
            parse_route("obs/3.values.f32"),
            Some(StrictRoute::ObsValues {
                payload: 3,
                ext: ValueExt::F32
            })
        );
        assert_eq!(
            parse_route("obs/0.codes.u16"),
            Some(StrictRoute::ObsCodes {
                payload: 0,
                wide: true
            })
        );
        assert_eq!(
            parse_route("obs/12.outliers.f32"),
            Some(StrictRoute::ObsOutliers { payload: 12 })
        );
        assert_eq!(
            parse_route("var/17.values.u8"),
            Some(StrictRoute::VarValues {
                gene: 17,
                ext: ValueExt::U8
            })
        );
        for bad in [
            "obs/03.values.f32",
            "obs/-1.values.f32",
            "obs/x.values.f32",
            "obs/3.values.f64",
            "obs/3.codes.u32",
            "obs/3.outliers.u8",
            "obs/3.values.f32.gz",
            "var/pct_mito.values.f32",
            "var/1.values.f32.gz",
            "var/99999999999999999999.values.f32",
            "points_3d.bin.gz",
            "points_4d.bin",
            "points_3d.binx",
            "connectivity/x/edges.src.bin",
            "vectors/_2d.bin",
        ] {
            assert_eq!(parse_route(bad), None, "{bad}");
        }
    }

    #[test]
    fn graph_points_and_vectors() {
        assert_eq!(
            parse_route("connectivity/edges.weights.f64.bin"),
            Some(StrictRoute::EdgeWeights)
        );
        assert_eq!(
            parse_route("points_2d.bin"),
            Some(StrictRoute::Points { dim: 2 })
        );
        assert_eq!(
            parse_route("vectors/velocity_umap_2d.bin"),
            Some(StrictRoute::Vectors {
                stem: "velocity_umap".into(),
                dim: 2
            })
        );
    }
}
