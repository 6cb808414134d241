//! The contract of `align` and `batch`: their parameters, the request an alignment runs on
//! (sent to `simreg-learn` for the network), `summary.json` of an alignment and of
//! `--apply`, and a batch's `status.csv` and `summary.json`.
use super::learn::DeviceChoice;
use super::{f64_or_nan, read_json, JsonArtefact};
use crate::raster::kind::ModalityKind;
use crate::util::table;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

crate::artefacts::run::stage_dir! {
    /// `simreg align --out DIR`: COGs of the displacement and the corrected moving raster,
    /// tie points, the summary.
    AlignDir {
        displacement_tif => "displacement.tif",
        corrected_tif => "corrected.tif",
        tiepoints_geojson => "tiepoints.geojson",
        tiepoints_csv => "tiepoints.csv",
        summary_json => "summary.json",
    }
}

impl AlignDir {
    pub fn summary(&self) -> Result<AlignSummary> {
        read_json(&self.summary_json())
    }
}

crate::artefacts::run::stage_dir! {
    /// `simreg batch --out DIR`: one alignment per pair under `pairs/`, the status table, the
    /// summary.
    BatchDir {
        status_csv => "status.csv",
        summary_json => "summary.json",
    }
}

impl BatchDir {
    /// The output folder of a pair (`a/b` → `pairs/a__b`).
    pub fn pair(&self, name: &str) -> AlignDir {
        AlignDir::new(self.path().join("pairs").join(pair_folder(name)))
    }
    pub fn status(&self) -> Result<Vec<StatusRow>> {
        table::read(&self.status_csv())
    }
}

/// The folder name of pair `name` (a '/'-separated path inside the input): one path
/// component, distinct for distinct names (`a/b` → `a%2Fb`, while `a__b` stays itself), and
/// never `.` or `..`.
pub fn pair_folder(name: &str) -> String {
    let f = name.replace('%', "%25").replace('/', "%2F");
    match f.as_str() {
        "" => "%".into(),
        "." | ".." => f.replace('.', "%2E"),
        _ => f,
    }
}

/// How displacements are estimated per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Coarse to fine: a checked whole-scene CFOG match, then windows searched around it by
    /// CFOG and (with --model) the network, fused by their reliabilities, outliers removed.
    Auto,
    /// The trained network (`--model`), through simreg-learn.
    Network,
    /// CFOG (orientated-gradient channels) per window. Patented by its authors, research use
    /// only: see the README.
    Cfog,
    /// Phase correlation on gradient magnitudes (SAR in dB), per window.
    PhaseCorrelation,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Network => "network",
            Method::Cfog => "cfog",
            Method::PhaseCorrelation => "phase-correlation",
        }
    }
}

/// How `simreg align` estimates and applies the displacement (its options besides the files).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct AlignParams {
    /// How displacements are estimated; the phase-correlation baseline is always computed beside
    #[arg(long, value_enum, default_value_t = AlignParams::default().method)]
    pub method: Method,
    /// Trained model: RUN/train, its model.safetensors, or a `simreg adapt` RUN [default: for
    /// network, the shipped model, models/default (MODEL.md); auto without it is CFOG alone]
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// 1-based reference bands to use [default: all]
    #[arg(long, value_delimiter = ',', value_name = "B,..")]
    pub reference_bands: Option<Vec<usize>>,
    /// 1-based moving bands to use [default: all]
    #[arg(long, value_delimiter = ',', value_name = "B,..")]
    pub moving_bands: Option<Vec<usize>>,
    /// What the moving raster holds [default: from the data, as `simreg tile`]
    #[arg(long, value_enum)]
    pub moving_kind: Option<ModalityKind>,
    /// Window step in px [default: the model's centre-window size; window/2 for phase
    /// correlation]
    #[arg(long)]
    pub stride: Option<usize>,
    /// Window side of the classical methods [default: 64 for phase-correlation, 128 for
    /// cfog and for auto without --model]
    #[arg(long)]
    pub window: Option<usize>,
    /// The largest shift searched for and accepted (px): a scene whose shift is larger fails
    /// with "shift beyond --max-shift"
    #[arg(long, default_value_t = AlignParams::default().max_shift)]
    pub max_shift: f64,
    /// Minimum fraction of valid pixels (both rasters) for a window to be used
    #[arg(long, default_value_t = AlignParams::default().min_valid)]
    pub min_valid: f64,
    /// Windows per network batch
    #[arg(long, default_value_t = AlignParams::default().batch)]
    pub batch: usize,
    /// Where S_A (the training set's summed polar factors) is stored [default: RUN/similarity]
    #[arg(long, value_name = "DIR")]
    pub similarity: Option<PathBuf>,
    /// The labelled run the model was trained on, to compute S_A when none is stored
    /// [default: RUN/labels]
    #[arg(long, value_name = "DIR")]
    pub labels: Option<PathBuf>,
    /// No reliability band (skips the per-window Jacobian; the band is NaN)
    #[arg(long)]
    pub no_reliability: bool,
    #[arg(long, value_enum, default_value_t = AlignParams::default().device)]
    pub device: DeviceChoice,
}

impl Default for AlignParams {
    fn default() -> Self {
        AlignParams {
            method: Method::Auto,
            model: None,
            reference_bands: None,
            moving_bands: None,
            moving_kind: None,
            stride: None,
            window: None,
            max_shift: 20.0,
            min_valid: 0.5,
            batch: 16,
            similarity: None,
            labels: None,
            no_reliability: false,
            device: DeviceChoice::Auto,
        }
    }
}

/// One alignment: the files and the parameters (what simreg-learn receives for the network).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlignRequest {
    pub reference: PathBuf,
    pub moving: PathBuf,
    pub out: PathBuf,
    /// A true displacement field on the reference grid (bands dx, dy, px) for error reporting.
    pub truth: Option<PathBuf>,
    pub params: AlignParams,
    #[serde(default)]
    pub limits: crate::raster::bounds::InputLimits,
    pub quiet: bool,
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
    /// The scene's shift: the reliability-weighted biweight of the unflagged windows (or the
    /// whole-scene match, as `verdict` says) [dx, dy] px. What to use for one shift per scene.
    #[serde(default = "nan2")]
    pub shift_px: [f64; 2],
    /// "success: …" and how the shift was found (a failure is an error: nothing is written).
    #[serde(default)]
    pub verdict: String,
    /// Windows with no outlier flag.
    #[serde(default)]
    pub n_reliable_windows: usize,
    /// Tie points flagged, per reason (tiepoints.csv `flags`).
    #[serde(default)]
    pub outliers: OutlierCounts,
    #[serde(default)]
    pub max_shift_px: f64,
    /// `--method auto`'s whole-scene match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse: Option<crate::align::coarse::Coarse>,
    /// NCC of the gradient magnitudes over the central crop, as the pair comes and once the
    /// moving raster is shifted by `shift_px`.
    #[serde(default)]
    pub similarity_before: Option<f64>,
    #[serde(default)]
    pub similarity_after: Option<f64>,
    /// Median over valid windows of the reliability (see `reliability`); null when not computed.
    pub median_reliability: Option<f64>,
    /// What the reliability band holds.
    pub reliability: String,
    /// The network's model directory (`--model`, or the shipped default), when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
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
    #[serde(deserialize_with = "f64_or_nan")]
    pub peak_rss_mb: f64,
    /// Output files, relative to the output directory.
    pub outputs: Vec<String>,
}

fn nan2() -> [f64; 2] {
    [f64::NAN; 2]
}

/// Tie points flagged, per reason (one point may have several).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutlierCounts {
    pub unreliable: usize,
    pub inconsistent: usize,
    pub ransac: usize,
}

impl OutlierCounts {
    pub fn of(flags: &[u8]) -> OutlierCounts {
        use crate::align::quality::{INCONSISTENT, RANSAC, UNRELIABLE};
        let n = |b: u8| flags.iter().filter(|&&f| f & b != 0).count();
        OutlierCounts {
            unreliable: n(UNRELIABLE),
            inconsistent: n(INCONSISTENT),
            ransac: n(RANSAC),
        }
    }
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

/// `simreg batch`'s options besides the input and the output folder (also a pipeline's
/// `[batch]` table).
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchParams {
    /// How pairs are found: a file name with `{role}` where the reference and moving files
    /// differ, e.g. '{role}.tif' or '*_{role}.tif'; files of one folder that match with the
    /// same `*` part form a pair
    #[arg(long, default_value_t = BatchParams::default().pattern)]
    pub pattern: String,
    /// The `{role}` value of reference files
    #[arg(long, default_value_t = BatchParams::default().reference_role)]
    pub reference_role: String,
    /// The `{role}` value of moving files
    #[arg(long, default_value_t = BatchParams::default().moving_role)]
    pub moving_role: String,
    #[arg(long, value_enum, default_value_t = BatchParams::default().method)]
    pub method: Method,
    /// Trained model (auto fuses it with CFOG) [default: for network, the shipped model,
    /// models/default]
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// The largest shift searched for and accepted (px), as in `simreg align`: a pair whose
    /// shift is larger is recorded as failed
    #[arg(long, default_value_t = AlignParams::default().max_shift)]
    pub max_shift: f64,
    /// Pairs aligned at once
    #[arg(long, default_value_t = BatchParams::default().jobs)]
    pub jobs: usize,
    /// Redo pairs whose status is `failed` (done pairs are never redone)
    #[arg(long)]
    pub retry_failed: bool,
    /// In a pipeline file, `max_pixels` sits in the `[batch]` table itself.
    #[command(flatten)]
    #[serde(skip)]
    pub limits: crate::raster::bounds::InputLimits,
}

impl Default for BatchParams {
    fn default() -> Self {
        BatchParams {
            pattern: "{role}.tif".into(),
            reference_role: "reference".into(),
            moving_role: "moving".into(),
            method: Method::Auto,
            model: None,
            max_shift: AlignParams::default().max_shift,
            jobs: 2,
            retry_failed: false,
            limits: Default::default(),
        }
    }
}

/// One row of `status.csv`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusRow {
    pub pair: String,
    pub status: String,
    pub error: String,
    pub seconds: f64,
    pub megapixels_per_s: f64,
    /// The scene's shift (`shift_px` of the pair's summary).
    #[serde(alias = "mean_dx_px")]
    pub shift_dx_px: f64,
    #[serde(alias = "mean_dy_px")]
    pub shift_dy_px: f64,
    pub reference: String,
    pub moving: String,
    /// Inputs + settings hash (resume).
    pub key: String,
}

/// `summary.json` of a batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchSummary {
    /// Pairs whose status is ok / failed after this run (the whole table).
    pub ok: usize,
    pub failed: usize,
    /// Pairs this run did not redo (done by an earlier run with the same inputs and settings).
    pub skipped: usize,
    /// Pairs this run aligned (or tried to).
    pub processed: usize,
    pub n_pairs: usize,
    pub seconds: f64,
}

impl JsonArtefact for AlignSummary {
    const WHAT: &'static str = "alignment summary";
    const MADE_BY: &'static str = "simreg align";
}

impl JsonArtefact for ApplySummary {
    const WHAT: &'static str = "alignment summary";
    const MADE_BY: &'static str = "simreg align --apply";
}

impl JsonArtefact for BatchSummary {
    const WHAT: &'static str = "batch summary";
    const MADE_BY: &'static str = "simreg batch";
}

impl std::fmt::Display for AlignSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self;
        let err = match (s.median_error_px, s.baseline_median_error_px) {
            (Some(e), Some(b)) => format!("; median error {e:.3} px (phase correlation {b:.3} px)"),
            _ => String::new(),
        };
        let sim = match (s.similarity_before, s.similarity_after) {
            (Some(b), Some(a)) => format!("; gradient NCC {b:.3} → {a:.3}"),
            _ => String::new(),
        };
        write!(
            f,
            "aligned {}x{} px with {} in {:.1} s ({:.2} Mpx/s): shift ({:.3}, {:.3}) px ({}), \
             whole-scene phase correlation ({:.3}, {:.3}) px{sim}{err}",
            s.width,
            s.height,
            s.method,
            s.seconds,
            s.megapixels_per_s,
            s.shift_px[0],
            s.shift_px[1],
            s.verdict,
            s.baseline.global_shift_px[0],
            s.baseline.global_shift_px[1]
        )
    }
}

impl std::fmt::Display for ApplySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "applied '{}' to '{}' (mean shift {:.3}, {:.3} px)",
            self.shifts.display(),
            self.moving.display(),
            self.mean_shift_px[0],
            self.mean_shift_px[1]
        )
    }
}

impl std::fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch: {} pairs: {} ok, {} failed ({} aligned now, {} done before) in {:.1} s",
            self.n_pairs, self.ok, self.failed, self.processed, self.skipped, self.seconds
        )
    }
}
