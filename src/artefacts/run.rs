//! A run directory, and the directory type of each stage's outputs: every path of a run is
//! named here once.
//!
//! ```text
//! RUN/
//!   pipeline.toml            the effective pipeline (defaults filled in, absolute paths)
//!   synth/<name>/            [synth.<name>] scenes            SynthDir
//!   tiles/                   tile                             TilesDir
//!   labels/                  labels                           LabelsDir
//!   train/                   train                            TrainDir
//!   similarity/              similarity                       SimilarityDir
//!   audit/                   audit                            AuditDir
//!   batch/                   batch (pairs aligned)            BatchDir
//!   report/                  report                           ReportDir
//!   toy1d/                   toy1d                            Toy1dDir
//!   enforce_study.json, enforce_curves.csv   enforce-study    EnforceStudyDir (RUN itself)
//!   sweep/sigma_<σ>/         a noise sweep: one sub-run (labels … audit) per σ
//!   noise_sweep.json         the sweep's training summaries, by σ
//! ```
use super::audit::AuditDir;
use super::enforce::EnforceStudyDir;
use super::labels::LabelsDir;
use super::report::ReportDir;
use super::similarity::SimilarityDir;
use super::synth::SynthDir;
use super::tiles::TilesDir;
use super::toy1d::Toy1dDir;
use super::train::TrainDir;
use std::path::{Path, PathBuf};

/// Declares a directory type: a path, and one method per file it holds.
macro_rules! stage_dir {
    ($(#[$meta:meta])* $name:ident { $($file:ident => $rel:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(std::path::PathBuf);

        impl $name {
            pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
                $name(path.into())
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
            $(
                #[doc = concat!("`", $rel, "`")]
                pub fn $file(&self) -> std::path::PathBuf {
                    self.0.join($rel)
                }
            )*
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                &self.0
            }
        }
    };
}
pub(crate) use stage_dir;

stage_dir! {
    /// A run directory (see the module doc).
    RunDir {
        pipeline_toml => "pipeline.toml",
        noise_sweep_json => "noise_sweep.json",
    }
}

impl RunDir {
    pub fn synth(&self, name: &str) -> SynthDir {
        SynthDir::new(self.0.join("synth").join(name))
    }
    pub fn tiles(&self) -> TilesDir {
        TilesDir::new(self.0.join("tiles"))
    }
    pub fn labels(&self) -> LabelsDir {
        LabelsDir::new(self.0.join("labels"))
    }
    pub fn train(&self) -> TrainDir {
        TrainDir::new(self.0.join("train"))
    }
    pub fn similarity(&self) -> SimilarityDir {
        SimilarityDir::new(self.0.join("similarity"))
    }
    pub fn audit(&self) -> AuditDir {
        AuditDir::new(self.0.join("audit"))
    }
    pub fn batch(&self) -> super::align::BatchDir {
        super::align::BatchDir::new(self.0.join("batch"))
    }
    pub fn report(&self) -> ReportDir {
        ReportDir::new(self.0.join("report"))
    }
    pub fn toy1d(&self) -> Toy1dDir {
        Toy1dDir::new(self.0.join("toy1d"))
    }
    /// The similarity-enforcement study writes into the run directory itself.
    pub fn enforce_study(&self) -> EnforceStudyDir {
        EnforceStudyDir::new(self.0.clone())
    }

    /// `RUN/sweep/`: a noise sweep's sub-runs.
    pub fn sweep_dir(&self) -> PathBuf {
        self.0.join("sweep")
    }
    /// `RUN/sweep/sigma_<σ>/`: the sub-run of label-noise σ.
    pub fn sweep(&self, sigma: f64) -> RunDir {
        RunDir(self.sweep_dir().join(format!("sigma_{sigma}")))
    }
    /// Whether this run is a noise sweep.
    pub fn is_sweep(&self) -> bool {
        self.sweep_dir().exists()
    }
    /// The sub-runs of a noise sweep that have a training summary (any order).
    pub fn sweep_runs(&self) -> Vec<RunDir> {
        std::fs::read_dir(self.sweep_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| RunDir(e.path()))
                    .filter(|r| r.train().summary_json().exists())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The run a stage's output directory belongs to (its parent directory).
    pub fn of_stage(stage_out: &Path) -> RunDir {
        RunDir(
            stage_out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
        )
    }
}
