//! `simreg adapt`'s contract: its options and `RUN/adapt.json` (the held-out pairs' error
//! before and after fine-tuning, and the audit's label-free estimate of the archive's own
//! misregistration).
use super::JsonArtefact;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How `simreg adapt` fine-tunes (its options besides `--pairs` and `--out`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct AdaptParams {
    /// How pairs are found, as `simreg batch` does: a file name with `{role}`, e.g. '{role}.tif'
    /// (one folder per pair) or '*_{role}.tif'
    #[arg(long, default_value_t = AdaptParams::default().pattern)]
    pub pattern: String,
    /// The {role} of a pair's reference file (e.g. the optical image)
    #[arg(long, default_value_t = AdaptParams::default().reference_role)]
    pub reference_role: String,
    /// The {role} of a pair's moving file (e.g. the SAR image)
    #[arg(long, default_value_t = AdaptParams::default().moving_role)]
    pub moving_role: String,
    /// 1-based reference bands, in the model's order [default: all]
    #[arg(long, value_delimiter = ',', value_name = "B,..")]
    pub reference_bands: Option<Vec<usize>>,
    /// 1-based moving bands [default: all]
    #[arg(long, value_delimiter = ',', value_name = "B,..")]
    pub moving_bands: Option<Vec<usize>>,
    /// The model to start from [default: the shipped model, models/default]
    #[arg(long, value_name = "MODEL_DIR")]
    pub model: Option<PathBuf>,
    /// Fraction of the pairs held out to measure the adaptation (at least one pair each way)
    #[arg(long, default_value_t = AdaptParams::default().holdout)]
    pub holdout: f64,
    /// Tile step in px (tiles are the model's size)
    #[arg(long, default_value_t = AdaptParams::default().stride)]
    pub stride: usize,
    /// Passes over the trained pairs' tiles
    #[arg(long, default_value_t = AdaptParams::default().epochs)]
    pub epochs: usize,
    /// Learning rate of the fine-tuning (a third of training from scratch)
    #[arg(long, default_value_t = AdaptParams::default().lr)]
    pub lr: f64,
    /// Seed of the hold-out choice, the synthetic shifts and the training
    #[arg(long, default_value_t = AdaptParams::default().seed)]
    pub seed: u64,
}

impl Default for AdaptParams {
    fn default() -> Self {
        AdaptParams {
            pattern: "{role}.tif".into(),
            reference_role: "reference".into(),
            moving_role: "moving".into(),
            reference_bands: None,
            moving_bands: None,
            model: None,
            holdout: 0.25,
            stride: 32,
            epochs: 30,
            lr: 3e-4,
            seed: 1,
        }
    }
}

/// `RUN/adapt.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdaptSummary {
    pub run_dir: PathBuf,
    /// The model it started from, and the adapted one (`align --model` takes it).
    pub base_model: PathBuf,
    pub model: PathBuf,
    pub trained_pairs: Vec<String>,
    pub heldout_pairs: Vec<String>,
    pub n_train_tiles: usize,
    pub n_heldout_tiles: usize,
    /// Per-axis RMSE against the known synthetic shifts on the held-out pairs' tiles, before
    /// and after (each includes the pair's own misregistration).
    pub heldout_rmse_before_px: f64,
    pub heldout_rmse_after_px: f64,
    /// The audit's label-free estimate of the label noise on the trained pairs (the archive's
    /// own misregistration plus the network's residual), with its interval.
    pub audit_label_noise_rmse_px: Option<f64>,
    pub audit_predicted_rmse_px: Option<f64>,
    pub audit_predicted_rmse_interval_px: Option<[f64; 2]>,
    pub seconds: f64,
}

impl JsonArtefact for AdaptSummary {
    const WHAT: &'static str = "adaptation summary";
    const MADE_BY: &'static str = "simreg adapt";
}

impl std::fmt::Display for AdaptSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "adapted on {} pair(s) ({} tiles), {} held out ({} tiles): held-out RMSE per axis {:.3} px before, {:.3} px after",
            self.trained_pairs.len(),
            self.n_train_tiles,
            self.heldout_pairs.len(),
            self.n_heldout_tiles,
            self.heldout_rmse_before_px,
            self.heldout_rmse_after_px
        )?;
        if let (Some(s), Some([lo, hi])) =
            (self.audit_predicted_rmse_px, self.audit_predicted_rmse_interval_px)
        {
            write!(f, "; the audit's label-free estimate of the network's error {s:.3} px [{lo:.3}, {hi:.3}]")?;
        }
        write!(f, "; model in {} (align --model)", self.model.display())
    }
}
