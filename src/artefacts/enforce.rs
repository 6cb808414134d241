//! The similarity-enforcement study's contract (`simreg enforce-study`, `[enforce_study]`):
//! its parameters, `enforce_study.json` (per arm: seeds, steps to the error threshold, the
//! mean curve; the step-cost ratio) and `enforce_curves.csv` (every seed's curve).
use super::learn::DeviceChoice;
use super::{f64_or_nan, read_json_if_present, JsonArtefact};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

crate::artefacts::run::stage_dir! {
    /// Where a study writes: the run directory itself (`RUN/enforce_study.json`), or
    /// `simreg enforce-study --out DIR`.
    EnforceStudyDir {
        study_json => "enforce_study.json",
        curves_csv => "enforce_curves.csv",
    }
}

impl EnforceStudyDir {
    /// The study's results; None when no study was run here (a file that exists must parse).
    pub fn study(&self) -> Result<Option<EnforceStudy>> {
        read_json_if_present(&self.study_json())
    }
}

/// Similarity enforcement: the sign of the pair term (see simreg-learn's `enforce` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EnforceSign {
    /// λ·(1 − k^C): pushes known-similar pairs to be seen as similar (the paper's intent).
    Minus,
    /// λ·k^C: the sign of the reference code's released loss (lowers similarity).
    Plus,
}

/// Where pairs known to be similar come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PairKind {
    /// The same tile under two independent noise realisations (speckle-like on the moving
    /// bands, weaker on the reference bands): the same displacement.
    Noise,
    /// The same tile under two photometric jitters (gain and offset per band).
    Photometric,
}

/// The study's arms, in the order they are reported.
pub const ARMS: [&str; 3] = ["baseline", "plus_cos", "minus_cos"];

/// `[enforce_study]` / `simreg enforce-study --params`: validation error against truth versus
/// steps, baseline against similarity-enforced training with both signs, over several seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnforceStudyParams {
    pub seeds: usize,
    pub steps: usize,
    pub eval_every: usize,
    /// λ of the pair term.
    pub lambda: f64,
    /// The fixed held-out error against truth (px per axis) whose first crossing is counted.
    pub threshold_px: f64,
    pub pairs: PairKind,
    /// Pairs per step (taken from the step's batch).
    pub pairs_per_step: usize,
    pub batch: usize,
    pub lr: f64,
    pub width: i64,
    pub depth: usize,
    pub corr_radius: i64,
    /// Held-out tiles evaluated at each evaluation (the first ones of the validation split).
    pub val_tiles: usize,
    pub device: DeviceChoice,
    /// Which arms to train, in this order (`baseline`, `plus_cos`, `minus_cos`); the step-cost
    /// ratio needs `baseline` and `minus_cos`.
    pub arms: Vec<String>,
}

impl Default for EnforceStudyParams {
    fn default() -> Self {
        EnforceStudyParams {
            seeds: 10,
            steps: 300,
            eval_every: 10,
            lambda: 1.0,
            threshold_px: 2.0,
            pairs: PairKind::Noise,
            pairs_per_step: 2,
            batch: 8,
            lr: 1e-3,
            width: 4,
            depth: 2,
            corr_radius: 2,
            val_tiles: 64,
            device: DeviceChoice::Auto,
            arms: ARMS.map(String::from).to_vec(),
        }
    }
}

/// One arm of the study, over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnforceArm {
    pub seeds: usize,
    /// Per seed: the first evaluated step with held-out error ≤ threshold (null: never).
    pub steps_to_threshold: Vec<Option<usize>>,
    pub reached: usize,
    /// Over the seeds that reached it.
    pub steps_mean: Option<f64>,
    pub steps_std: Option<f64>,
    /// 95 % confidence interval of `steps_mean` (Student's t over the seeds that reached it;
    /// null below two). Absent in studies written before it: read as null.
    #[serde(default)]
    pub steps_ci95: Option<[f64; 2]>,
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_error_mean: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_error_std: f64,
    /// 95 % confidence interval of `final_error_mean` (Student's t over the seeds).
    #[serde(default)]
    pub final_error_ci95: Option<[f64; 2]>,
    /// (step, mean, std) over seeds of the held-out error at each evaluated step.
    pub curve: Vec<(usize, f64, f64)>,
    #[serde(deserialize_with = "f64_or_nan")]
    pub seconds_per_step: f64,
}

/// `enforce_study.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnforceStudy {
    pub params: EnforceStudyParams,
    pub labels: String,
    pub n_train: usize,
    pub n_val_evaluated: usize,
    pub params_count: i64,
    pub arms: BTreeMap<String, EnforceArm>,
    /// Seconds per enforced step (minus_cos) over seconds per plain step (null unless both ran).
    pub step_cost_ratio: Option<f64>,
}

impl JsonArtefact for EnforceStudy {
    const WHAT: &'static str = "similarity-enforcement study";
    const MADE_BY: &'static str = "simreg enforce-study";
}

impl std::fmt::Display for EnforceStudy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let num = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        write!(
            f,
            "enforce study on {} (step cost ratio {}):",
            self.labels,
            self.step_cost_ratio.map_or("n/a".to_string(), |r| format!("{r:.2}"))
        )?;
        for arm in &self.params.arms {
            let Some(x) = self.arms.get(arm) else { continue };
            write!(
                f,
                "\n  {arm:9}  reached {}/{}  steps {} ± {} (95 % CI {})  final error {:.3} ± {:.3} px",
                x.reached,
                x.seeds,
                num(x.steps_mean),
                num(x.steps_std),
                x.steps_ci95.map_or("n/a".to_string(), |[a, b]| format!("{a:.0}–{b:.0}")),
                x.final_error_mean,
                x.final_error_std
            )?;
        }
        Ok(())
    }
}
