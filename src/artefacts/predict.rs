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

/// The format of a predict shard's `shard.json`.
pub const SHARD_FORMAT: &str = "simreg-predict-shard/1";

/// `shard.json` of `simreg predict --shard K/N`: the tiles it predicted, in order, with their
/// means and labels (what the merge's RMSE needs).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictShard {
    pub format: String,
    /// The hash of the model's weights and the tiles (or labels) (the same for every shard).
    pub input_hash: String,
    pub shard: crate::util::shard::Shard,
    /// The shard's range of the tiles, of `n_tiles`.
    pub tiles: std::ops::Range<usize>,
    pub n_tiles: usize,
    pub ids: Vec<String>,
    pub means: Vec<[f64; 2]>,
    pub labels: Option<Vec<[f64; 2]>>,
    pub device: String,
}

impl JsonArtefact for PredictShard {
    const WHAT: &'static str = "predict shard";
    const MADE_BY: &'static str = "simreg predict --shard K/N";
}

impl crate::util::shard::ShardJson for PredictShard {
    const FORMAT: &'static str = SHARD_FORMAT;
    const STAGE: &'static str = "predict";
    fn shard(&self) -> crate::util::shard::Shard {
        self.shard
    }
    fn input_hash(&self) -> &str {
        &self.input_hash
    }
}

/// Per-axis RMSE of `pred` against `labels`.
pub fn rmse(pred: &[[f64; 2]], labels: &[[f64; 2]]) -> f64 {
    let n = pred.len().max(1) as f64;
    let s: f64 =
        pred.iter().zip(labels).map(|(p, l)| (p[0] - l[0]).powi(2) + (p[1] - l[1]).powi(2)).sum();
    (s / (2.0 * n)).sqrt()
}

/// Merges the complete predict shards in `shards` into the folder `out` (replaced as a whole
/// when done), as one `simreg predict` over every tile writes it. Refuses shards of other
/// inputs, and an incomplete set, naming the shards missing.
pub fn merge(shards: &[PathBuf], out: &std::path::Path) -> anyhow::Result<PredictSummary> {
    use crate::util::{atomic, output, shard::read_all};
    let files: Vec<(PathBuf, PredictShard)> = read_all(shards)?;
    let inputs: Vec<&std::path::Path> = shards.iter().map(PathBuf::as_path).collect();
    let claim = output::claim(out, "predict", &inputs)?;
    claim.build(|partial| {
        let mut preds = Predictions::new();
        let (mut means, mut labels) = (Vec::new(), Some(Vec::new()));
        for (dir, f) in &files {
            let part: Predictions = super::read_json(&PredictDir::new(dir).predictions_json())?;
            for p in part.values() {
                atomic::link_or_copy(&dir.join(&p.field), &partial.join(&p.field))?;
            }
            preds.extend(part);
            means.extend(&f.means);
            labels = match (labels, &f.labels) {
                (Some(mut all), Some(l)) => {
                    all.extend(l);
                    Some(all)
                }
                _ => None,
            };
        }
        let dir = PredictDir::new(partial);
        super::write_json(&dir.predictions_json(), &preds)?;
        let summary = PredictSummary {
            out: out.to_path_buf(),
            n_tiles: means.len(),
            rmse_labels_px: labels.map(|l| rmse(&means, &l)),
            device: files[0].1.device.clone(),
        };
        super::write_json(&dir.summary_json(), &summary)?;
        Ok(summary)
    })
}
