//! The `audit` stage's contract: its parameters, `audit.csv` (every tile ranked by label
//! suspicion), `flagged.geojson` (footprints of the flagged tiles) and `summary.json`.
use super::csv_format::{fixed, fixed_opt};
use super::similarity::Split;
use super::{read_json, read_json_if_present, JsonArtefact};
use crate::util::table;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

crate::artefacts::run::stage_dir! {
    /// `RUN/audit/`.
    AuditDir {
        audit_csv => "audit.csv",
        flagged_geojson => "flagged.geojson",
        summary_json => "summary.json",
    }
}

impl AuditDir {
    pub fn summary(&self) -> Result<AuditSummary> {
        read_json(&self.summary_json())
    }
    /// The summary; None when the audit has not run (a summary that exists must parse).
    pub fn summary_if_present(&self) -> Result<Option<AuditSummary>> {
        read_json_if_present(&self.summary_json())
    }
    /// The ranked table, most suspicious first.
    pub fn rows(&self) -> Result<Vec<AuditRow>> {
        table::read(&self.audit_csv())
    }
}

/// `[audit]` / `simreg audit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct AuditParams {
    /// Flag tiles whose score exceeds this (the score is ≈ Exp(1) for a clean label, so 6.9
    /// flags one clean label in a thousand)
    #[arg(long, default_value_t = AuditParams::default().threshold)]
    pub threshold: f64,
    /// Flag at least the K worst tiles, whatever their score
    #[arg(long, value_name = "K", default_value_t = AuditParams::default().top)]
    pub top: usize,
    /// Search radius of the image-only baseline (CFOG), px [default: the 95th percentile of
    /// the |shifts| an unbounded search finds where its peak is above the median, + 1 px]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, value_name = "PX")]
    pub max_shift: Option<f64>,
}

impl AuditParams {
    pub fn check(&self) -> Result<()> {
        if !(self.threshold > 0.0 && self.threshold.is_finite()) {
            bail!("audit: threshold must be a positive number, not {}", self.threshold);
        }
        if let Some(m) = self.max_shift.filter(|m| !(*m > 0.0 && m.is_finite())) {
            bail!("audit: max-shift must be a positive number of pixels, not {m}");
        }
        Ok(())
    }
}

impl Default for AuditParams {
    fn default() -> Self {
        AuditParams { threshold: 6.9, top: 0, max_shift: None }
    }
}

/// One N_S band of the held-out tiles: the label-free predicted RMSE and, with truth, the measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub ns_min: f64,
    pub ns_max: f64,
    pub n: usize,
    pub predicted_rmse_px: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_rmse_px: Option<f64>,
}

/// `RUN/audit/summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditSummary {
    pub out: PathBuf,
    pub n_tiles: usize,
    pub n_heldout: usize,
    /// Label-free: the network's RMSE on held-out tiles, per axis, and its bootstrap 5–95 %
    /// interval.
    pub predicted_rmse_px: f64,
    pub predicted_rmse_interval_px: [f64; 2],
    /// Against the truth (only when the run has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_rmse_px: Option<f64>,
    /// The paper's estimate σ̂·√(tr F/2) averaged over held-out tiles, for comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper_predicted_rmse_px: Option<f64>,
    /// Label noise, label-free: all labels, and the labels that are not flagged.
    pub label_noise_rmse_px: f64,
    pub label_noise_inlier_rmse_px: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_label_noise_rmse_px: Option<f64>,
    /// The calibration's scales: network and the CFOG baseline ≈ α + β·truth (1 = no shrinkage).
    pub network_scale: f64,
    pub baseline_scale: f64,
    /// False when the network and the baseline did not covary and β_baseline = 1 was assumed.
    pub scaled: bool,
    /// The baseline's error around its calibrated line, label-free.
    pub baseline_error_rmse_px: f64,
    /// Calibrated network variance at a tile = floor + factor·σ̂²/N_S (px²).
    pub model_floor_px2: f64,
    pub model_factor: f64,
    pub n_flagged: usize,
    pub threshold: f64,
    pub baseline_max_shift_px: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auroc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auroc_residual_only: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_outliers_true: Option<usize>,
    pub calibration: Vec<CalibrationBin>,
    pub seconds: f64,
}

/// One row of `audit.csv`, most suspicious first; the last three columns only when the run
/// has truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub tile: String,
    pub rank: usize,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub score: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub residual_px: f64,
    #[serde(serialize_with = "fixed::<3, _>")]
    pub ns: f64,
    pub split: Split,
    /// Tile centre in the scene CRS, and in longitude/latitude (empty without a CRS).
    #[serde(serialize_with = "fixed::<3, _>")]
    pub centre_x: f64,
    #[serde(serialize_with = "fixed::<3, _>")]
    pub centre_y: f64,
    #[serde(serialize_with = "fixed_opt::<7, _>")]
    pub lon: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<7, _>")]
    pub lat: Option<f64>,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub label_dx: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub label_dy: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub pred_dx: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub pred_dy: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub baseline_dx: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub baseline_dy: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub baseline_peak: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub predicted_error_px: f64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "fixed_opt::<4, _>"
    )]
    pub true_error_px: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "fixed_opt::<4, _>"
    )]
    pub label_error_px: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<bool>,
}

impl AuditRow {
    pub fn label(&self) -> [f64; 2] {
        [self.label_dx, self.label_dy]
    }
    pub fn pred(&self) -> [f64; 2] {
        [self.pred_dx, self.pred_dy]
    }
    pub fn baseline(&self) -> [f64; 2] {
        [self.baseline_dx, self.baseline_dy]
    }
}

/// Writes `audit.csv` (every row with truth columns, or none).
pub fn write_audit_csv(path: &Path, rows: &[AuditRow]) -> Result<()> {
    table::write(path, rows)
}

impl JsonArtefact for AuditSummary {
    const WHAT: &'static str = "audit summary";
    const MADE_BY: &'static str = "simreg audit";
}

impl std::fmt::Display for AuditSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self;
        let measured = s
            .measured_rmse_px
            .map_or(String::new(), |m| format!(" (measured against truth: {m:.3} px)"));
        let auroc = match (s.auroc, s.auroc_residual_only) {
            (Some(a), Some(r)) => format!("; AUROC {a:.3} (residual alone {r:.3})"),
            _ => String::new(),
        };
        write!(
            f,
            "audit of {} tiles in {}: network RMSE on held-out tiles, label-free {:.3} \
             px{measured}; label noise {:.3} px; {} tiles flagged{auroc}",
            s.n_tiles,
            s.out.display(),
            s.predicted_rmse_px,
            s.label_noise_inlier_rmse_px,
            s.n_flagged
        )
    }
}
