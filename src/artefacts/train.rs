//! The `train` stage's contract: its parameters, the model (`model.safetensors` and its
//! description `model.json`), the split (`split.json`: the tiles trained on, the similarity
//! stage's set S), the per-epoch log (`log.jsonl`) and `summary.json`.
use super::enforce::{EnforceSign, PairKind};
use super::learn::DeviceChoice;
use super::{f64_or_nan, read_json, JsonArtefact};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

crate::artefacts::run::stage_dir! {
    /// `RUN/train/`: the model, its description, the split, the log, the summary; the last
    /// checkpoint and its state (resume).
    TrainDir {
        model_safetensors => "model.safetensors",
        model_json => "model.json",
        split_json => "split.json",
        log_jsonl => "log.jsonl",
        summary_json => "summary.json",
        checkpoint_safetensors => "checkpoint.safetensors",
        state_json => "state.json",
    }
}

impl TrainDir {
    pub fn model_info(&self) -> Result<ModelInfo> {
        read_json(&self.model_json())
    }
    pub fn split(&self) -> Result<SplitFile> {
        read_json(&self.split_json())
    }
    pub fn summary(&self) -> Result<TrainSummary> {
        read_json(&self.summary_json())
    }
    /// The training log, one line per epoch (an unreadable line is an error naming it).
    pub fn log(&self) -> Result<Vec<LogLine>> {
        let path = self.log_jsonl();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!("training log '{}': cannot read: {}", path.display(), e)
        })?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(k, l)| {
                serde_json::from_str(l).map_err(|e| {
                    anyhow::anyhow!(
                        "training log '{}': line {} is not readable ({e}); make it again with \
                         `simreg train`",
                        path.display(),
                        k + 1
                    )
                })
            })
            .collect()
    }
}

/// `[train]` of a pipeline, or the `simreg train` options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    #[arg(long, default_value_t = TrainParams::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = TrainParams::default().batch)]
    pub batch: usize,
    /// Adam learning rate at the start (cosine decay to lr/20 over the epochs)
    #[arg(long, default_value_t = TrainParams::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = TrainParams::default().weight_decay)]
    pub weight_decay: f64,
    /// Feature maps at full resolution (doubling per level)
    #[arg(long, default_value_t = TrainParams::default().width)]
    pub width: i64,
    /// Resolution levels of the feature pyramid (≥ 2; the flow is estimated from the coarsest
    /// down to half resolution)
    #[arg(long, default_value_t = TrainParams::default().depth)]
    pub depth: usize,
    /// Correlation radius at every level, in feature pixels (≥ 1)
    #[arg(long, default_value_t = TrainParams::default().corr_radius)]
    pub corr_radius: i64,
    /// Fraction of tiles held out for validation (a seeded random split)
    #[arg(long, default_value_t = TrainParams::default().val_fraction)]
    pub val_fraction: f64,
    /// Early stop after this many epochs without improvement on the validation labels
    #[arg(long, default_value_t = TrainParams::default().patience)]
    pub patience: usize,
    /// Rotation/flip augmentation (`--no-augment` turns it off)
    #[arg(long = "no-augment", action = clap::ArgAction::SetFalse)]
    pub augment: bool,
    #[arg(long, default_value_t = TrainParams::default().seed)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = TrainParams::default().device)]
    pub device: DeviceChoice,
    /// Similarity enforcement: λ of a pair term on the gradient kernel (double
    /// back-propagation). Absent fields are not serialised, so runs without it keep their
    /// resume key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "LAMBDA")]
    pub enforce_similarity: Option<f64>,
    /// Where the known-similar pairs come from
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_enum, requires = "enforce_similarity")]
    pub pairs: Option<PairKind>,
    /// minus: λ(1 − k^C), raises similarity (default); plus: λ·k^C, the reference code's sign
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_enum, requires = "enforce_similarity")]
    pub enforce_sign: Option<EnforceSign>,
    /// Start from this model's weights (a `simreg train` folder, e.g. models/default/train):
    /// fine-tuning. Its width, depth, radius and label scale are kept; its band layout and tile
    /// size must be the labels'.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "MODEL_DIR")]
    pub init: Option<PathBuf>,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            epochs: 20,
            batch: 16,
            lr: 1e-3,
            weight_decay: 1e-4,
            width: 8,
            depth: 4,
            corr_radius: 3,
            val_fraction: 0.2,
            patience: 10,
            augment: true,
            seed: 0,
            device: DeviceChoice::Auto,
            enforce_similarity: None,
            pairs: None,
            enforce_sign: None,
            init: None,
        }
    }
}

impl TrainParams {
    /// One-line errors for parameters training cannot run with.
    pub fn check(&self) -> Result<()> {
        // Each bad value named with what it must be (a NaN used to reach simreg-learn as
        // JSON null: "invalid type: null").
        if self.epochs == 0 {
            bail!("training parameters: epochs must be at least 1");
        }
        if self.batch == 0 {
            bail!("training parameters: batch must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("training parameters: lr must be a positive number, not {}", self.lr);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!(
                "training parameters: weight-decay must be a non-negative number, not {}",
                self.weight_decay
            );
        }
        if let Some(l) = self.enforce_similarity.filter(|l| !(l.is_finite() && *l >= 0.0)) {
            bail!("training parameters: enforce-similarity must be a non-negative number, not {l}");
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            bail!(
                "training parameters: val-fraction must be within [0, 1), not {}",
                self.val_fraction
            );
        }
        Ok(())
    }
}

/// Everything needed to rebuild the network and use it (stored beside the weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub reference_bands: usize,
    pub moving_bands: usize,
    pub tile_size: usize,
    pub centre_offset: usize,
    pub centre_size: usize,
    /// Feature maps at level 0 (doubling per level) for each encoder.
    pub width: i64,
    /// Resolution levels (pooling steps + 1).
    pub depth: usize,
    /// Output unit: predictions are multiplied by this (px) to give pixels.
    pub scale_px: f64,
    /// Correlation volume radius in feature pixels at every level (0: none).
    #[serde(default)]
    pub corr_radius: i64,
}

impl NetConfig {
    pub fn check(&self) -> Result<()> {
        if self.depth < 2 {
            bail!("network: depth {} < 2 (the coarser levels find the displacement)", self.depth);
        }
        if self.corr_radius < 1 {
            bail!("network: correlation radius {} < 1", self.corr_radius);
        }
        let f = 1usize << (self.depth - 1);
        if self.width < 1 || self.tile_size % f != 0 {
            bail!(
                "network: tile size {} must be divisible by 2^(depth−1) = {f} (depth {}, width {})",
                self.tile_size,
                self.depth,
                self.width
            );
        }
        if self.centre_offset + self.centre_size > self.tile_size
            || self.reference_bands == 0
            || self.moving_bands == 0
        {
            bail!(
                "network: inconsistent shape (tile {}, centre {}+{}, bands {}/{})",
                self.tile_size,
                self.centre_offset,
                self.centre_size,
                self.reference_bands,
                self.moving_bands
            );
        }
        Ok(())
    }
}

/// `model.json`: what is stored beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Names the network's code (simreg-learn's `ARCH`): weights fit only the same code.
    pub arch: String,
    pub net: NetConfig,
    /// The tiles the model was trained on (their manifest hash).
    pub tiles_input_hash: String,
    pub moving_bands: Vec<String>,
}

/// `split.json`: the tiles trained on and those held out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SplitFile {
    pub train: Vec<String>,
    pub val: Vec<String>,
}

/// One line of `log.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub epoch: usize,
    pub step: usize,
    pub lr: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_rmse_labels_px: f64,
    pub val_rmse_truth_px: Option<f64>,
    pub seconds: f64,
}

/// `summary.json`. RMSEs are per axis, pooled over x and y and over held-out tiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub out: PathBuf,
    /// σ of the label noise, from the labels' summary (null when the labels do not record it).
    pub sigma_px: Option<f64>,
    pub n_train: usize,
    pub n_val: usize,
    pub params: i64,
    pub epochs_run: usize,
    pub best_epoch: usize,
    /// Labels of the held-out tiles against the truth.
    pub label_rmse_truth_px: Option<f64>,
    /// The network on held-out tiles, against the truth and against their labels.
    pub net_rmse_truth_px: Option<f64>,
    pub net_rmse_labels_px: f64,
    pub samples_per_s: f64,
    pub device: String,
    pub seconds: f64,
}

impl JsonArtefact for ModelInfo {
    const WHAT: &'static str = "model description";
    const MADE_BY: &'static str = "simreg train";
}

impl JsonArtefact for SplitFile {
    const WHAT: &'static str = "training split";
    const MADE_BY: &'static str = "simreg train";
}

impl JsonArtefact for TrainSummary {
    const WHAT: &'static str = "training summary";
    const MADE_BY: &'static str = "simreg train";
}

/// `RUN/noise_sweep.json`: the training summary of every σ of a noise sweep.
impl JsonArtefact for Vec<TrainSummary> {
    const WHAT: &'static str = "noise sweep summary";
    const MADE_BY: &'static str = "simreg run PIPELINE";
}

impl std::fmt::Display for TrainSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self;
        let px = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3} px"));
        write!(
            f,
            "trained {} parameters on {} tiles ({} held out) on {}, {:.0} samples/s; held-out RMSE \
             per axis: labels vs truth {}, network vs truth {}, network vs labels {:.3} px; model \
             in {}",
            s.params,
            s.n_train,
            s.n_val,
            s.device,
            s.samples_per_s,
            px(s.label_rmse_truth_px),
            px(s.net_rmse_truth_px),
            s.net_rmse_labels_px,
            s.out.display()
        )
    }
}
