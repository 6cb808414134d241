//! What `simreg run` reports: one entry per stage that ran, printed through each stage
//! summary's own `Display`.
use crate::artefacts::align::BatchSummary;
use crate::artefacts::audit::AuditSummary;
use crate::artefacts::enforce::EnforceStudy;
use crate::artefacts::labels::LabelSummary;
use crate::artefacts::similarity::SimilaritySummary;
use crate::artefacts::synth::SynthSummary;
use crate::artefacts::tiles::TileSummary;
use crate::artefacts::toy1d::Toy1dSummary;
use crate::artefacts::train::TrainSummary;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synth: Vec<SynthSummary>,
    pub tile: Option<TileSummary>,
    /// The labelled stages on the run itself (not a sweep).
    #[serde(flatten)]
    pub labelled: LabelledSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toy1d: Option<Toy1dSummary>,
    /// `[batch]` with a given model or a classical method: once, into RUN/batch.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "run_batch")]
    pub batch: Option<BatchSummary>,
    /// A noise sweep: the training summary of every σ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<TrainSummary>,
}

/// The labelled stages of one run (or one σ of a sweep).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LabelledSummary {
    pub labels: Option<LabelSummary>,
    pub train: Option<TrainSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_study: Option<EnforceStudy>,
    pub similarity: Option<SimilaritySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSummary>,
    /// `[batch]` with the run's own network (else in `RunSummary::batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSummary>,
}

impl RunSummary {
    pub fn new(run_dir: &Path) -> RunSummary {
        RunSummary {
            run_dir: run_dir.to_path_buf(),
            synth: Vec::new(),
            tile: None,
            labelled: LabelledSummary::default(),
            toy1d: None,
            batch: None,
            sweep: Vec::new(),
        }
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.synth {
            writeln!(f, "{s}")?;
        }
        if let Some(t) = &self.tile {
            writeln!(f, "{t}")?;
        }
        let l = &self.labelled;
        if let Some(s) = &l.labels {
            writeln!(f, "{s}")?;
        }
        if let Some(s) = &l.train {
            writeln!(f, "{s}")?;
        }
        if let Some(s) = &l.enforce_study {
            writeln!(f, "{s}")?;
        }
        if let Some(s) = &l.similarity {
            writeln!(f, "{s}")?;
        }
        if let Some(s) = &l.audit {
            writeln!(f, "{s}")?;
        }
        if let Some(t) = &self.toy1d {
            writeln!(f, "{t}")?;
        }
        for b in [&self.batch, &l.batch].into_iter().flatten() {
            writeln!(f, "batch: {b}")?;
        }
        if !self.sweep.is_empty() {
            writeln!(
                f,
                "noise sweep (held-out RMSE per axis, px): σ | labels vs truth | network vs truth \
                 | ratio"
            )?;
            for t in &self.sweep {
                let l = t.label_rmse_truth_px.unwrap_or(f64::NAN);
                let n = t.net_rmse_truth_px.unwrap_or(f64::NAN);
                let ratio = if l > 1e-6 { format!("{:>5.2}", n / l) } else { "    -".into() };
                writeln!(
                    f,
                    "  {:>4} | {l:>6.3} | {n:>6.3} | {ratio}",
                    t.sigma_px.unwrap_or(f64::NAN)
                )?;
            }
        }
        write!(f, "run directory: {}", self.run_dir.display())
    }
}
