//! The `labels` stage's contract: its parameters (the displacement fields and the label-noise
//! model, recorded in its summary), `labels.json` (the noisy labels training sees),
//! `truth.json` (the truth, which no training stage reads), `target.json` (what the network
//! learns and where the tiles are) and `summary.json`.
use super::{read_json, read_json_if_present, JsonArtefact};
use crate::raster::resample::Interp;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

crate::artefacts::run::stage_dir! {
    /// `RUN/labels/`: per tile the displaced moving tile (`<id>.moving.tif`) and the dense
    /// noisy label (`<id>.label.tif`); the dense truth under `truth/`; the JSON files below.
    LabelsDir {
        labels_json => "labels.json",
        truth_json => "truth.json",
        target_json => "target.json",
        summary_json => "summary.json",
        input_hash => ".input_hash",
    }
}

impl LabelsDir {
    pub fn labels(&self) -> Result<Labels> {
        read_json(&self.labels_json())
    }
    /// None when the labels have no truth (labels of real data).
    pub fn truth(&self) -> Result<Option<Truth>> {
        read_json_if_present(&self.truth_json())
    }
    pub fn target(&self) -> Result<Target> {
        read_json(&self.target_json())
    }
    pub fn summary(&self) -> Result<LabelSummary> {
        read_json(&self.summary_json())
    }
}

/// `[labels]` of a pipeline, or the `simreg labels` options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct LabelParams {
    /// Global translation amplitude A: uniform in [-A, A] px per axis (required)
    #[arg(long)]
    pub amplitude: f64,
    /// Amplitude of the optional smooth field (sum of Gaussian bumps), px
    #[arg(long, default_value_t = LabelParams::default().field_amplitude)]
    pub field_amplitude: f64,
    /// Number of signed Gaussian bumps per field component
    #[arg(long, default_value_t = LabelParams::default().bumps)]
    pub bumps: usize,
    /// Bump standard deviation, as a fraction of the tile side
    #[arg(long, default_value_t = LabelParams::default().bump_scale)]
    pub bump_scale: f64,
    /// Side of the centre window the label averages over [default: half the tile]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub centre: Option<usize>,
    /// Resampling of the moving modality (SAR in dB is resampled as linear power)
    #[arg(long, value_enum, default_value_t = LabelParams::default().interp)]
    pub interp: Interp,
    #[arg(long, default_value_t = LabelParams::default().seed)]
    pub seed: u64,
    #[command(flatten)]
    pub noise: NoiseParams,
}

impl Default for LabelParams {
    /// Every field's default; `amplitude` has none (NaN: it must be given).
    fn default() -> Self {
        LabelParams {
            amplitude: f64::NAN,
            field_amplitude: 0.0,
            bumps: 30,
            bump_scale: 0.3,
            centre: None,
            interp: Interp::Bilinear,
            seed: 0,
            noise: NoiseParams::default(),
        }
    }
}

impl LabelParams {
    /// One-line errors for values no tiling can use (the centre window is checked against
    /// the tiles by the stage).
    pub fn check(&self) -> Result<()> {
        if self.amplitude.is_nan() {
            bail!("labels: amplitude is required (the translation amplitude A, px: --amplitude or amplitude = ...)");
        }
        self.noise.check()?;
        for (name, v) in [
            ("amplitude", self.amplitude),
            ("field amplitude", self.field_amplitude),
            ("bump scale", self.bump_scale),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("{name} must be a non-negative number, not {v}");
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NoiseModel {
    /// No base noise (bias and outliers may still apply).
    #[default]
    None,
    /// Independent Gaussian per tile, σ px on each axis.
    Iid,
    /// A smooth Gaussian random field over the scene (σ px, correlation length px), shared by
    /// neighbouring tiles like a real map misalignment.
    Correlated,
}

/// Label-noise models: a base model (iid or correlated) + a constant bias + gross outliers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseParams {
    /// Base label-noise model
    #[arg(long = "noise", value_enum, default_value_t = NoiseParams::default().model)]
    pub model: NoiseModel,
    /// Noise standard deviation per axis, px (iid, correlated)
    #[arg(long, default_value_t = NoiseParams::default().sigma, allow_negative_numbers = true)]
    pub sigma: f64,
    /// Correlation length L of the correlated model: covariance σ²·exp(−d²/(2L²)), px
    #[arg(long, default_value_t = NoiseParams::default().corr_length)]
    pub corr_length: f64,
    /// Fraction of tiles whose label gets a gross error...
    #[arg(long, default_value_t = NoiseParams::default().outliers)]
    pub outliers: f64,
    /// ...of this magnitude (px), in a uniformly random direction
    #[arg(long, default_value_t = NoiseParams::default().outlier_magnitude)]
    pub outlier_magnitude: f64,
    /// A constant offset added to every label, DX,DY px
    #[arg(long, value_name = "DX,DY", allow_negative_numbers = true, default_value_t = NoiseParams::default().bias)]
    pub bias: Offset,
}

impl NoiseParams {
    pub fn check(&self) -> Result<()> {
        if !(self.sigma >= 0.0 && self.sigma.is_finite()) {
            bail!("noise sigma must be a non-negative number of pixels, not {}", self.sigma);
        }
        if self.model == NoiseModel::Correlated
            && !(self.corr_length > 0.0 && self.corr_length.is_finite())
        {
            bail!(
                "the correlated noise model needs a positive corr-length (px), not {}",
                self.corr_length
            );
        }
        if !(0.0..=1.0).contains(&self.outliers) {
            bail!("outlier rate must be within [0, 1], not {}", self.outliers);
        }
        if !(self.outlier_magnitude >= 0.0 && self.outlier_magnitude.is_finite()) {
            bail!(
                "outlier magnitude must be a non-negative number of pixels, not {}",
                self.outlier_magnitude
            );
        }
        if self.outliers > 0.0 && self.outlier_magnitude == 0.0 {
            bail!("outliers need --outlier-magnitude > 0");
        }
        if self.bias.0.iter().any(|b| !b.is_finite()) {
            bail!("bias must be finite, not {:?}", self.bias.0);
        }
        Ok(())
    }

    /// e.g. "iid+bias+outliers" (what summary.json reports; no parameter values).
    pub fn model_name(&self) -> String {
        let mut parts = vec![match self.model {
            NoiseModel::None => "none",
            NoiseModel::Iid => "iid",
            NoiseModel::Correlated => "correlated",
        }];
        if self.bias.0 != [0.0, 0.0] {
            parts.push("bias");
        }
        if self.outliers > 0.0 {
            parts.push("outliers");
        }
        if parts.len() > 1 && parts[0] == "none" {
            parts.remove(0);
        }
        parts.join("+")
    }
}

/// A displacement DX,DY in px: `[dx, dy]` in files, "DX,DY" on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Offset(pub [f64; 2]);

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.0[0], self.0[1])
    }
}

impl std::str::FromStr for Offset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let v: Vec<&str> = s.split(',').collect();
        if v.len() != 2 {
            return Err(format!("takes two values DX,DY, not {}", v.len()));
        }
        let num = |t: &str| t.trim().parse::<f64>().map_err(|e| format!("'{t}': {e}"));
        Ok(Offset([num(v[0])?, num(v[1])?]))
    }
}

/// `labels.json`: per tile id.
pub type Labels = BTreeMap<String, LabelEntry>;
/// `truth.json`: per tile id. Never read by training.
pub type Truth = BTreeMap<String, TruthEntry>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelEntry {
    /// Noisy label: mean displacement over the centre window, [dx, dy] px.
    pub label: [f64; 2],
    /// The displaced moving tile (relative to the labels directory).
    pub moving: PathBuf,
    /// Dense noisy label field (bands dx, dy over the whole tile).
    pub label_field: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthEntry {
    /// True mean displacement over the centre window, [dx, dy] px.
    pub displacement: [f64; 2],
    /// label − displacement.
    pub noise: [f64; 2],
    /// Dense true field (bands dx, dy), relative to the labels directory.
    pub field: PathBuf,
    /// Whether the label got a gross error (the `outliers` noise model).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outlier: bool,
}

/// `target.json`: what the network learns, and where the tiles are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub definition: String,
    pub units: String,
    pub axes: String,
    pub tile_size: usize,
    /// The centre window: `offset` pixels from the tile's top-left, `size` wide.
    pub centre_offset: usize,
    pub centre_size: usize,
    pub tiles_dir: PathBuf,
    /// The tiles manifest's input hash: later stages check labels and tiles belong together.
    pub tiles_input_hash: String,
    /// Descriptions of the bands of the displaced moving tiles.
    pub moving_bands: Vec<String>,
}

pub const TARGET_DEFINITION: &str = "mean over the tile's centre window of the displacement field D of the moving modality; the moving content belonging at reference pixel p appears at p + D(p)";

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelSummary {
    pub out: PathBuf,
    pub up_to_date: bool,
    pub n_tiles: usize,
    pub noise_model: String,
    /// Empirical RMSE of label − true displacement, per axis, px.
    pub label_noise_rmse_px: [f64; 2],
    pub seconds: f64,
    /// What the labels were made with: the fields and the noise model (σ of the label noise is
    /// `params.noise.sigma`); null in summaries written before simreg recorded it.
    #[serde(default)]
    pub params: Option<LabelParams>,
}

impl JsonArtefact for Labels {
    const WHAT: &'static str = "labels";
    const MADE_BY: &'static str = "simreg labels";
}

impl JsonArtefact for Truth {
    const WHAT: &'static str = "truth";
    const MADE_BY: &'static str = "simreg labels";
}

impl JsonArtefact for Target {
    const WHAT: &'static str = "labels target";
    const MADE_BY: &'static str = "simreg labels";
}

impl JsonArtefact for LabelSummary {
    const WHAT: &'static str = "labels summary";
    const MADE_BY: &'static str = "simreg labels";
}

impl std::fmt::Display for LabelSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.up_to_date { "up to date" } else { "written" };
        write!(
            f,
            "labels {state} in {}: {} tiles, noise model {}, label noise RMSE {:.3}/{:.3} px (x/y)",
            self.out.display(),
            self.n_tiles,
            self.noise_model,
            self.label_noise_rmse_px[0],
            self.label_noise_rmse_px[1]
        )
    }
}
