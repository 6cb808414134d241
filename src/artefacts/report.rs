//! The `report` stage's contract: `index.html` (self-contained: it references only files in
//! the report directory), its PNGs, and `summary.json` (every stage's summary, gathered).
use super::audit::AuditSummary;
use super::enforce::EnforceStudy;
use super::labels::LabelSummary;
use super::similarity::SimilaritySummary;
use super::tiles::TileSummary;
use super::train::TrainSummary;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

crate::artefacts::run::stage_dir! {
    /// `RUN/report/`.
    ReportDir {
        index_html => "index.html",
        summary_json => "summary.json",
    }
}

/// What `simreg report` returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportSummary {
    pub out: PathBuf,
    pub index: PathBuf,
    pub has_truth: bool,
    pub files: Vec<String>,
}

/// `report/summary.json`: the summary of every stage the run has, and the report's own.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReportFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiles: Option<TileSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<SimilaritySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_sweep: Option<Vec<TrainSummary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_study: Option<EnforceStudy>,
    pub report: ReportInfo,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReportInfo {
    pub has_truth: bool,
    pub files: Vec<String>,
}

impl std::fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "report: {}", self.index.display())
    }
}
