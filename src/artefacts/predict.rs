//! `simreg predict`'s contract: `predictions.json` (per tile its predicted centre-window mean
//! and dense field, `<id>.field.tif`) and `summary.json`.
use super::JsonArtefact;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

crate::artefacts::run::stage_dir! {
    /// `simreg predict --out DIR`.
    PredictDir {
        predictions_json => "predictions.json",
        summary_json => "summary.json",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted centre-window mean displacement [dx, dy], px (x east, y south).
    pub displacement: [f64; 2],
    /// Dense prediction (bands dx, dy; NaN outside the centre window), relative to the output.
    pub field: PathBuf,
}

/// `predictions.json`: per tile id.
pub type Predictions = BTreeMap<String, Prediction>;

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictSummary {
    pub out: PathBuf,
    pub n_tiles: usize,
    /// With labels: per-axis RMSE of the predictions against them.
    pub rmse_labels_px: Option<f64>,
    pub device: String,
}

impl JsonArtefact for Predictions {
    const WHAT: &'static str = "predictions";
    const MADE_BY: &'static str = "simreg predict";
}

impl JsonArtefact for PredictSummary {
    const WHAT: &'static str = "prediction summary";
    const MADE_BY: &'static str = "simreg predict";
}

impl std::fmt::Display for PredictSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self
            .rmse_labels_px
            .map_or(String::new(), |v| format!("; RMSE vs labels {v:.3} px per axis"));
        write!(f, "predicted {} tiles into {}{r}", self.n_tiles, self.out.display())
    }
}
