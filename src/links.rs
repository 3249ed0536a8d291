//! The viewer links a deployment announces: one per viewer generation (and per atlas of a
//! catalogue), each saying which viewer it is for. `serve` prints them; the Terraform and CDK
//! outputs give the same three bases (`infra/`).

use crate::catalog::Catalog;
use crate::protocol::strict;

/// The hosted viewer the links open.
pub const VIEWER: &str = "https://www.cellucid.com/";

/// A viewer generation and the base path it talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Viewer builds of the cellucid 0.0.9 era: the byte-exact seed protocol at the origin
    /// root (these builds drop path prefixes).
    Seed,
    /// Viewer builds of 2026 with strict validation: the strict profile under `/strict`.
    Strict,
    /// cellucid 0.9.5: raw AnnData with ranged reads under `/v0.9`.
    V09,
}

impl Generation {
    /// Which viewer a link is for, in words.
    pub fn audience(self) -> &'static str {
        match self {
            Generation::Seed => "0.0.9-era viewer builds (seed protocol, byte-exact, at the root)",
            Generation::Strict => {
                "2026 viewer builds with strict validation (strict profile at /strict)"
            }
            Generation::V09 => "cellucid 0.9.5 (raw AnnData with ranged reads under /v0.9)",
        }
    }
}

/// One announced link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerLink {
    /// The viewer generation.
    pub generation: Generation,
    /// The dataset selected with `&dataset=` (catalogues of several atlases).
    pub dataset: Option<String>,
    /// The server base URL the viewer is given (`?remote=`).
    pub remote: String,
    /// The viewer URL to open.
    pub url: String,
}

impl ViewerLink {
    /// The line `serve` prints: which viewer, then the link.
    pub fn line(&self) -> String {
        format!(
            "viewer link for {}: {}",
            self.generation.audience(),
            self.url
        )
    }
}

/// `https://www.cellucid.com/?remote=<remote>[&dataset=<id>]`, percent-encoded.
pub fn viewer_url(remote: &str, dataset: Option<&str>) -> String {
    let encode =
        |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    match dataset {
        Some(id) => format!("{VIEWER}?remote={}&dataset={}", encode(remote), encode(id)),
        None => format!("{VIEWER}?remote={}", encode(remote)),
    }
}

fn link(generation: Generation, remote: String, dataset: Option<String>) -> ViewerLink {
    let url = viewer_url(&remote, dataset.as_deref());
    ViewerLink {
        generation,
        dataset,
        remote,
        url,
    }
}

/// Every link of a deployment reachable at `origin` (no trailing slash) serving `catalog`;
/// `v09_bases` are the 0.9 front-end's `(dataset id, base path)` pairs when it is mounted.
pub fn viewer_links(
    origin: &str,
    catalog: &Catalog,
    v09_bases: Option<&[(String, String)]>,
) -> Vec<ViewerLink> {
    let origin = origin.trim_end_matches('/');
    let mut out = Vec::new();
    if catalog.is_multi() {
        for ds in catalog.datasets() {
            out.push(link(
                Generation::Seed,
                origin.to_string(),
                Some(ds.id().to_string()),
            ));
        }
    } else {
        out.push(link(Generation::Seed, origin.to_string(), None));
    }
    let strict_base = format!("{origin}{}", strict::BASE);
    if catalog.is_multi() {
        for (_, entry) in strict::catalog_entries(catalog) {
            out.push(link(
                Generation::Strict,
                strict_base.clone(),
                Some(entry.id),
            ));
        }
    } else {
        out.push(link(Generation::Strict, strict_base, None));
    }
    for (_, path) in v09_bases.unwrap_or_default() {
        out.push(link(Generation::V09, format!("{origin}{path}"), None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_encoded() {
        assert_eq!(
            viewer_url("http://127.0.0.1:8765/strict", None),
            "https://www.cellucid.com/?remote=http%3A%2F%2F127.0.0.1%3A8765%2Fstrict"
        );
        assert_eq!(
            viewer_url("https://x.example", Some("a b")),
            "https://www.cellucid.com/?remote=https%3A%2F%2Fx.example&dataset=a+b"
        );
        let l = link(Generation::V09, "https://x/v0.9".into(), None);
        assert!(l.line().starts_with("viewer link for cellucid 0.9.5"));
    }
}
