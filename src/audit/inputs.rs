//! What the audit reads: the similarity stage's per-tile table (N_S, prediction, label, split),
//! the tiles manifest (geometry), the labels, and — only for reporting — the truth, when the
//! run has it.
use crate::artefacts::labels::{Labels, LabelsDir, Truth};
use crate::artefacts::similarity::NsRow;
use crate::artefacts::tiles::{Manifest, TilesDir};
use crate::artefacts::RunDir;
use anyhow::{bail, Result};

/// A run's artefacts the audit needs, located and checked.
pub struct RunInputs {
    pub rows: Vec<NsRow>,
    pub manifest: Manifest,
    pub tiles: TilesDir,
    pub labels_dir: LabelsDir,
    pub labels: Labels,
    /// Present when the labels were made by `simreg labels` on synthetic displacements.
    pub truth: Option<Truth>,
}

/// Loads the run: `RUN/similarity/ns.csv`, `RUN/labels/` (→ the tiles) and, if present, the
/// truth. A missing artefact names the stage to run first.
pub fn load(run: &RunDir) -> Result<RunInputs> {
    let (labels_dir, train, similarity) = (run.labels(), run.train(), run.similarity());
    if !labels_dir.labels_json().exists() {
        bail!(
            "run '{}': no labels (RUN/labels/labels.json): run the `labels` stage first",
            run.path().display()
        );
    }
    if !train.model_safetensors().exists() {
        bail!(
            "run '{}': no trained model (RUN/train/model.safetensors): run the `train` stage first",
            run.path().display()
        );
    }
    let ns = similarity.ns_csv();
    if !ns.exists() {
        bail!(
            "run '{}': no similarity table (RUN/similarity/ns.csv): run the `similarity` stage \
             first",
            run.path().display()
        );
    }
    let rows = similarity.ns_rows()?;
    let target = labels_dir.target()?;
    let tiles = TilesDir::new(&target.tiles_dir);
    let manifest = tiles.manifest()?;
    if manifest.input_hash != target.tiles_input_hash {
        bail!(
            "labels '{}' were made from other tiles than '{}' (input hashes differ)",
            labels_dir.path().display(),
            target.tiles_dir.display()
        );
    }
    let known: std::collections::HashSet<&str> =
        manifest.tiles.iter().map(|t| t.id.as_str()).collect();
    if let Some(r) = rows.iter().find(|r| !known.contains(r.tile.as_str())) {
        bail!(
            "'{}': tile '{}' is not in the tiles of '{}'",
            ns.display(),
            r.tile,
            target.tiles_dir.display()
        );
    }
    let labels = labels_dir.labels()?;
    let truth = labels_dir.truth()?;
    Ok(RunInputs { rows, manifest, tiles, labels_dir, labels, truth })
}
