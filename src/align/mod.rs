//! Alignment of reference/moving pairs: the classical baseline (`phase`), whole-scene alignment
//! window by window with any per-window estimator (`scene`: the network in simreg-learn, phase
//! correlation here), re-applying a saved displacement raster (`scene::apply`), and batches of
//! pairs from a folder or zip archive (`batch`).
pub mod batch;
pub mod cfog;
pub mod io;
pub mod phase;
pub mod scene;

use crate::learn::DeviceChoice;
use crate::tiling::manifest::ModalityKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How displacements are estimated per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The trained network (`--model`), through simreg-learn.
    Network,
    /// Phase correlation on gradient magnitudes (SAR in dB), per window.
    PhaseCorrelation,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Network => "network",
            Method::PhaseCorrelation => "phase-correlation",
        }
    }
}

/// One `simreg align` run: everything the engine needs (handed to simreg-learn as JSON for the
/// network).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlignRequest {
    pub method: Method,
    pub reference: PathBuf,
    pub moving: PathBuf,
    pub out: PathBuf,
    /// A true displacement field on the reference grid (bands dx, dy, px) for error reporting.
    #[serde(default)]
    pub truth: Option<PathBuf>,
    /// 1-based bands to use (default: all).
    #[serde(default)]
    pub reference_bands: Option<Vec<usize>>,
    #[serde(default)]
    pub moving_bands: Option<Vec<usize>>,
    /// What the moving raster holds (default: decided from the data, as `simreg tile` does).
    #[serde(default)]
    pub moving_kind: Option<ModalityKind>,
    /// Window step in pixels (default: the model's centre-window size; 32 for phase correlation).
    #[serde(default)]
    pub stride: Option<usize>,
    /// Window side for phase correlation without a model (default 64).
    #[serde(default)]
    pub window: Option<usize>,
    /// A window is used when at least this fraction of its pixels is valid in both rasters.
    #[serde(default = "default_min_valid")]
    pub min_valid: f64,
    /// Windows per network batch.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Network: the model directory (or its model.safetensors).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Network: where S_A is stored (default: RUN/similarity beside RUN/train).
    #[serde(default)]
    pub similarity: Option<PathBuf>,
    /// Network: the labelled run the model was trained on, to compute S_A when none is stored
    /// (default: RUN/labels beside RUN/train).
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// Network: skip the reliability band (no Jacobians; the band is NaN).
    #[serde(default)]
    pub no_reliability: bool,
    #[serde(default = "default_device")]
    pub device: DeviceChoice,
    #[serde(default)]
    pub quiet: bool,
}

fn default_min_valid() -> f64 {
    0.5
}
fn default_batch() -> usize {
    16
}
fn default_device() -> DeviceChoice {
    DeviceChoice::Auto
}

/// `DIR/summary.json` of `simreg align`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlignSummary {
    pub method: String,
    pub reference: PathBuf,
    pub moving: PathBuf,
    pub width: usize,
    pub height: usize,
    /// Window side, step and kernel half-width of the blending (px).
    pub window: usize,
    pub stride: usize,
    pub n_windows: usize,
    pub n_valid_windows: usize,
    /// Mean displacement of the moving raster relative to the reference over valid windows
    /// [dx, dy], reference px (x east, y south): content at p appears at p + D in the moving.
    pub mean_shift_px: [f64; 2],
    /// Median over valid windows of the reliability (see `reliability`); null when not computed.
    pub median_reliability: Option<f64>,
    /// What the reliability band holds.
    pub reliability: String,
    /// Reference megapixels aligned per second of the whole command (reading, estimating,
    /// blending, writing the outputs).
    pub megapixels_per_s: f64,
    pub seconds: f64,
    /// Seconds spent in the method's own per-window estimates.
    pub estimate_seconds: f64,
    /// With `--truth`: median over pixels of ‖D̂ − D‖ (px), and the baseline's.
    pub median_error_px: Option<f64>,
    pub baseline_median_error_px: Option<f64>,
    /// Pixels the error medians rest on (a regular sample of the scene).
    pub n_error_samples: usize,
    /// The phase-correlation baseline on the same windows (always computed).
    pub baseline: BaselineSummary,
    pub peak_rss_mb: f64,
    /// Output files, relative to the output directory.
    pub outputs: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaselineSummary {
    pub method: String,
    pub mean_shift_px: [f64; 2],
    /// Median correlation peak height over valid windows.
    pub median_peak: Option<f64>,
    /// One shift for the whole scene (a central crop of at most 1024² px).
    pub global_shift_px: [f64; 2],
    pub global_peak: f64,
    pub estimate_seconds: f64,
}

/// `DIR/summary.json` of `simreg align --apply`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplySummary {
    pub method: String,
    pub shifts: PathBuf,
    pub moving: PathBuf,
    pub width: usize,
    pub height: usize,
    pub mean_shift_px: [f64; 2],
    pub megapixels_per_s: f64,
    pub seconds: f64,
    pub outputs: Vec<String>,
}
