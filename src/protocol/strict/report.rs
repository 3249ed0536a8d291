//! What the strict profile leaves out of an atlas, or serves differently from the seed (the
//! `strict` section of `cellucid-edge inspect`).

use std::collections::HashMap;

use super::naming::{
    ObsNumbering, strict_dataset_id, strict_dataset_name, unique_gene_names, vector_stems,
};
use crate::dataset::{Dataset, DatasetError, FieldKind};
use crate::model::edges::IndexDtype;
use crate::model::safe_name::{collisions, safe_name};

/// Everything the strict profile omits or changes for `dataset`, one sentence each.
pub async fn notes(dataset: &Dataset) -> Result<Vec<String>, DatasetError> {
    let mut notes = vec![
        "dataset_identity.json: `_anndata_adapter`, `export_settings`, `source` and \
         `embeddings.umap_resolution` are left out (not allowed by the strict viewer)"
            .to_string(),
    ];
    if dataset.vector_fields().is_some() {
        notes.push("vector fields: `obsm_keys` is left out".into());
    }
    let strict_id = strict_dataset_id(dataset.id());
    if strict_id != dataset.id() {
        notes.push(format!(
            "dataset id `{}` is not a clean id: the strict profile lists it as `{strict_id}`",
            dataset.id()
        ));
    }
    let strict_name = strict_dataset_name(dataset.name(), dataset.id());
    if strict_name != dataset.name() {
        notes.push(format!(
            "dataset name {:?} is listed as {strict_name:?}",
            dataset.name()
        ));
    }

    match dataset.strict_graph().await? {
        None => {}
        Some(graph) => match &graph.verdict {
            Err(reason) => notes.push(format!(
                "connectivity is left out (has_connectivity: false, no connectivity manifest): \
                 {reason}"
            )),
            Ok(dtype) => {
                let seed = dataset.edges().await?.map(|e| e.max_neighbors);
                if seed.is_some_and(|s| s != graph.max_degree) {
                    notes.push(format!(
                        "connectivity: max_neighbors is the edge degree {} (the seed's {} \
                         counts stored self-loops)",
                        graph.max_degree,
                        seed.unwrap_or_default()
                    ));
                }
                if *dtype != IndexDtype::for_n_cells(dataset.n_cells()) {
                    notes.push(format!(
                        "connectivity: edge indices are {} (the seed's are {})",
                        dtype.as_str(),
                        IndexDtype::for_n_cells(dataset.n_cells()).as_str()
                    ));
                }
                notes.push(
                    "connectivity: weights (float64, from obsp['connectivities']) are added".into(),
                );
            }
        },
    }

    let numbering = ObsNumbering::new(dataset.obs_fields());
    let names: Vec<&str> = dataset
        .obs_fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    for (safe, members) in collisions(&names) {
        let described: Vec<String> = members
            .iter()
            .filter_map(|&f| {
                Some(format!(
                    "`{}` → obs/{}",
                    names.get(f)?,
                    numbering.payload(f)?
                ))
            })
            .collect();
        notes.push(format!(
            "obs fields sharing the seed file name `{safe}` are distinct payloads: {}",
            described.join(", ")
        ));
    }
    let by_lower = case_groups(names.iter().copied());
    if !by_lower.is_empty() {
        notes.push(format!(
            "obs fields differing only in case are distinct payloads: {}",
            by_lower.join("; ")
        ));
    }
    if dataset
        .obs_fields()
        .iter()
        .any(|f| f.kind == FieldKind::Continuous)
        && dataset
            .obs_fields()
            .iter()
            .any(|f| f.kind == FieldKind::Category)
    {
        notes.push(format!(
            "obs payload indices: continuous fields 0..{}, categorical fields {}..{} (obs \
             column order within each kind)",
            numbering.n_continuous() - 1,
            numbering.n_continuous(),
            numbering.len() - 1
        ));
    }

    let genes = dataset.genes().await?;
    let unique = unique_gene_names(genes.ids());
    let renamed: Vec<String> = genes
        .ids()
        .iter()
        .zip(&unique)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("var/{i} `{a}` → `{b}`"))
        .collect();
    if !renamed.is_empty() {
        notes.push(format!(
            "{} duplicate gene ids are made unique in the var manifest (each keeps its own \
             column): {}{}",
            renamed.len(),
            renamed
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if renamed.len() > 5 { ", …" } else { "" }
        ));
    }
    let gene_collisions = collisions(genes.ids());
    if !gene_collisions.is_empty() {
        notes.push(format!(
            "{} groups of genes share a seed file name (e.g. `{}`); in the strict profile every \
             gene is its own payload var/<index>",
            gene_collisions.len(),
            gene_collisions[0].0
        ));
    }
    if let Some(vectors) = dataset.vector_fields() {
        let stems = vector_stems(vectors);
        if stems.iter().zip(&vectors.fields).any(|(s, f)| *s != f.id) {
            notes.push(format!(
                "vector field ids {:?} do not all make plain file names: the strict files are \
                 vectors/<position>_<d>d.bin",
                vectors
                    .fields
                    .iter()
                    .map(|f| safe_name(&f.id))
                    .collect::<Vec<_>>()
            ));
        }
    }
    Ok(notes)
}

/// Groups of names equal up to ASCII/Unicode case (`"a" / "A"`), as display strings.
fn case_groups<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut groups: Vec<Vec<&str>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for name in names {
        let key = name.to_lowercase();
        match index.get(&key) {
            Some(&g) => groups[g].push(name),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![name]);
            }
        }
    }
    groups
        .into_iter()
        .filter(|g| g.len() > 1)
        .map(|g| {
            g.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .collect()
}
