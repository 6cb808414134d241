//! What the audit reads: the similarity stage's per-tile table (N_S, prediction, label, split),
//! the tiles manifest (geometry), and — only for reporting — the truth, when the run has it.
use crate::labels::{Target, TruthEntry};
use crate::tiling::manifest::Manifest;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row of `similarity/ns.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct NsRow {
    pub tile: String,
    /// Trained on (the network saw its label) or held out.
    pub train: bool,
    pub ns: f64,
    pub g_norm: f64,
    pub pred: [f64; 2],
    pub label: [f64; 2],
    /// tr F_i, the paper's denoising factor (NaN when the table has no such column).
    pub f_trace: f64,
}

/// The columns of ns.csv the audit reads, by name (added columns are ignored).
#[derive(serde::Deserialize)]
struct NsRecord {
    tile: String,
    split: String,
    ns: f64,
    g_norm: f64,
    pred_dx: f64,
    pred_dy: f64,
    label_dx: f64,
    label_dy: f64,
    f_trace: Option<f64>,
}

/// Reads `ns.csv`; an error names the file and the line.
pub fn read_ns_csv(path: &Path) -> Result<Vec<NsRow>> {
    let rows = crate::util::table::read::<NsRecord>(path)?
        .into_iter()
        .enumerate()
        .map(|(k, r)| {
            let train = match r.split.as_str() {
                "train" => true,
                "val" => false,
                s => bail!(
                    "'{}': line {}: split '{s}' (train or val expected)",
                    path.display(),
                    k + 2
                ),
            };
            Ok(NsRow {
                tile: r.tile,
                train,
                ns: r.ns,
                g_norm: r.g_norm,
                pred: [r.pred_dx, r.pred_dy],
                label: [r.label_dx, r.label_dy],
                f_trace: r.f_trace.unwrap_or(f64::NAN),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if rows.is_empty() {
        bail!("'{}': no tiles", path.display());
    }
    Ok(rows)
}

/// A run's artefacts the audit needs, located and checked.
pub struct RunInputs {
    pub rows: Vec<NsRow>,
    pub manifest: Manifest,
    pub tiles_dir: PathBuf,
    pub labels_dir: PathBuf,
    /// Present when the labels were made by `simreg labels` on synthetic displacements.
    pub truth: Option<BTreeMap<String, TruthEntry>>,
}

/// Loads the run: `RUN/similarity/ns.csv`, `RUN/labels/target.json` (→ the tiles) and, if present,
/// `RUN/labels/truth.json`. A missing artefact names the stage to run first.
pub fn load(run: &Path) -> Result<RunInputs> {
    let ns = run.join("similarity").join("ns.csv");
    let labels_dir = run.join("labels");
    if !labels_dir.join("labels.json").exists() {
        bail!(
            "run '{}': no labels (RUN/labels/labels.json): run the `labels` stage first",
            run.display()
        );
    }
    if !run.join("train").join("model.safetensors").exists() {
        bail!(
            "run '{}': no trained model (RUN/train/model.safetensors): run the `train` stage first",
            run.display()
        );
    }
    if !ns.exists() {
        bail!("run '{}': no similarity table (RUN/similarity/ns.csv): run the `similarity` stage first", run.display());
    }
    let rows = read_ns_csv(&ns)?;
    let target_path = labels_dir.join("target.json");
    let target: Target = serde_json::from_str(
        &std::fs::read_to_string(&target_path)
            .with_context(|| format!("'{}': cannot read", target_path.display()))?,
    )
    .with_context(|| format!("'{}': not a labels target file", target_path.display()))?;
    let manifest = Manifest::load(&target.tiles_dir)?;
    if manifest.input_hash != target.tiles_input_hash {
        bail!(
            "labels '{}' were made from other tiles than '{}' (input hashes differ)",
            labels_dir.display(),
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
    let truth_path = labels_dir.join("truth.json");
    let truth = if truth_path.exists() {
        let t: BTreeMap<String, TruthEntry> =
            serde_json::from_str(&std::fs::read_to_string(&truth_path)?)
                .with_context(|| format!("'{}': not a truth file", truth_path.display()))?;
        Some(t)
    } else {
        None
    };
    Ok(RunInputs { rows, manifest, tiles_dir: target.tiles_dir, labels_dir, truth })
}
