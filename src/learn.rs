//! The learning stages' shared types, and running them: they live in the `simreg-learn`
//! program (linked with libtorch), which `simreg` starts, so the GDAL-side commands do not pay
//! for loading libtorch (~0.3 s).
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `--device`: auto picks CUDA when libtorch sees a GPU.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    #[serde(default = "d_batch")]
    pub batch: usize,
    /// Adam learning rate at the start; cosine decay to lr/20 over `epochs`.
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    #[serde(default = "d_width")]
    pub width: i64,
    #[serde(default = "d_depth")]
    pub depth: usize,
    /// Correlation-volume radius in feature pixels at every level (0: none).
    #[serde(default = "d_corr")]
    pub corr_radius: i64,
    /// Fraction of tiles held out for validation (a seeded random split).
    #[serde(default = "d_val")]
    pub val_fraction: f64,
    /// Stop when the validation loss against the labels has not improved for this many epochs.
    #[serde(default = "d_patience")]
    pub patience: usize,
    #[serde(default = "d_true")]
    pub augment: bool,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "d_device")]
    pub device: DeviceChoice,
    /// Similarity enforcement (λ of the pair term; absent: off). Absent fields are not
    /// serialised, so runs without it keep their resume key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_similarity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<PairKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_sign: Option<EnforceSign>,
}

fn d_epochs() -> usize {
    40
}
fn d_batch() -> usize {
    16
}
fn d_lr() -> f64 {
    2e-3
}
fn d_wd() -> f64 {
    1e-4
}
fn d_width() -> i64 {
    16
}
fn d_depth() -> usize {
    3
}
fn d_corr() -> i64 {
    3
}
fn d_val() -> f64 {
    0.2
}
fn d_patience() -> usize {
    10
}
fn d_true() -> bool {
    true
}
fn d_device() -> DeviceChoice {
    DeviceChoice::Auto
}

impl Default for TrainParams {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// `train/summary.json`. RMSEs are per axis, pooled over x and y and over held-out tiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub out: PathBuf,
    /// σ of the run's label noise, from its effective pipeline file (null when unknown).
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

/// `simreg-learn`, next to the running `simreg` (as cargo and `make build` place them).
pub fn learn_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the simreg executable")?;
    let path = exe.with_file_name("simreg-learn");
    if !path.is_file() {
        bail!("'{}' not found: the learning stages need it beside simreg (build the workspace: make build)", path.display());
    }
    Ok(path)
}

/// A `simreg-learn` command with the global options.
pub fn command(quiet: bool, threads: Option<usize>) -> Result<std::process::Command> {
    let mut cmd = std::process::Command::new(learn_binary()?);
    if quiet {
        cmd.arg("--quiet");
    }
    if let Some(t) = threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    Ok(cmd)
}

/// Predicts through `simreg-learn predict` and returns its summary.
pub fn run_predict(
    model: &Path,
    tiles: Option<&Path>,
    labels: Option<&Path>,
    out: &Path,
    device: DeviceChoice,
    threads: Option<usize>,
) -> Result<PredictSummary> {
    let mut cmd = command(true, threads)?;
    cmd.arg("predict")
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .arg("--device")
        .arg(device.name());
    if let Some(t) = tiles {
        cmd.arg("--tiles").arg(t);
    }
    if let Some(l) = labels {
        cmd.arg("--labels").arg(l);
    }
    run_child(cmd)?;
    let text = std::fs::read_to_string(out.join("summary.json"))
        .with_context(|| format!("'{}': no prediction summary", out.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Aligns a scene with the network through `simreg-learn align` (the request as JSON).
pub fn run_align(
    req: &crate::align::AlignRequest,
    threads: Option<usize>,
) -> Result<crate::align::AlignSummary> {
    if req.model.is_none() {
        bail!("--method network needs --model RUN/train (or --method phase-correlation)");
    }
    let mut cmd = command(req.quiet, threads)?;
    cmd.arg("align").arg("--request-json").arg(serde_json::to_string(req)?);
    run_child(cmd)?;
    let text = std::fs::read_to_string(req.out.join("summary.json"))
        .with_context(|| format!("'{}': no alignment summary", req.out.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// `run_align` with simreg-learn's error captured (its last stderr line) instead of printed:
/// for `simreg batch`, which records it per pair.
pub fn run_align_captured(
    req: &crate::align::AlignRequest,
    threads: Option<usize>,
) -> Result<crate::align::AlignSummary> {
    if req.model.is_none() {
        bail!("--method network needs --model RUN/train");
    }
    let mut cmd = command(true, threads)?;
    cmd.arg("align").arg("--request-json").arg(serde_json::to_string(req)?);
    let out = cmd.output().context("cannot start simreg-learn")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line =
            err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("simreg-learn failed");
        bail!("{}", line.trim_start_matches("simreg: error: "));
    }
    let text = std::fs::read_to_string(req.out.join("summary.json"))
        .with_context(|| format!("'{}': no alignment summary", req.out.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// `predict/summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictSummary {
    pub out: PathBuf,
    pub n_tiles: usize,
    /// With labels: per-axis RMSE of the predictions against them.
    pub rmse_labels_px: Option<f64>,
    pub device: String,
}

/// A learning program that failed and has printed its own one-line error: `simreg` exits with
/// its status without adding a second line.
#[derive(Debug, thiserror::Error)]
#[error("simreg-learn failed with status {0}")]
pub struct ChildFailed(pub i32);

/// Runs `cmd` (a `simreg-learn` command) to completion.
pub fn run_child(mut cmd: std::process::Command) -> Result<()> {
    let status = cmd.status().context("cannot start simreg-learn")?;
    #[cfg(unix)]
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
        let hint =
            if sig == 9 { " (out of memory? lower --max-memory or the batch size)" } else { "" };
        bail!("simreg-learn was killed by signal {sig}{hint}");
    }
    if !status.success() {
        return Err(ChildFailed(status.code().unwrap_or(1)).into());
    }
    Ok(())
}

/// Trains through `simreg-learn train` and returns its summary.
pub fn run_train(
    labels: &Path,
    out: &Path,
    p: &TrainParams,
    quiet: bool,
    threads: Option<usize>,
) -> Result<TrainSummary> {
    let mut cmd = command(quiet, threads)?;
    cmd.arg("train")
        .arg("--labels")
        .arg(labels)
        .arg("--out")
        .arg(out)
        .arg("--params-json")
        .arg(serde_json::to_string(p)?);
    run_child(cmd)?;
    let text = std::fs::read_to_string(out.join("summary.json"))
        .with_context(|| format!("'{}': no training summary", out.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// `[similarity]` / `simreg similarity`: the gradient-kernel analysis of a trained model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarityParams {
    /// Tiles to analyse exactly (top-k neighbours, exact denoising factor, thumbnails);
    /// empty: `n_queries` tiles spread over the run.
    #[serde(default)]
    pub queries: Vec<String>,
    #[serde(default = "d_n_queries")]
    pub n_queries: usize,
    /// Neighbours listed per query tile.
    #[serde(default = "d_k")]
    pub k: usize,
    /// Working-memory budget (MB) the batch size is chosen from.
    #[serde(default = "d_max_memory")]
    pub max_memory_mb: f64,
    /// Count-sketch dimension for the all-tile pairwise estimates (0: skip them).
    #[serde(default = "d_sketch")]
    pub sketch_dim: usize,
    /// Extra training tiles whose N_S is also summed pairwise (the linear-time check).
    #[serde(default = "d_check")]
    pub check_tiles: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "d_device")]
    pub device: DeviceChoice,
}

fn d_n_queries() -> usize {
    4
}
fn d_k() -> usize {
    8
}
fn d_max_memory() -> f64 {
    2048.0
}
fn d_sketch() -> usize {
    1024
}
fn d_check() -> usize {
    8
}

impl Default for SimilarityParams {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// `similarity/summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimilaritySummary {
    pub out: PathBuf,
    pub n_tiles: usize,
    /// |S|: the training tiles N_S counts over.
    pub n_train: usize,
    pub params: i64,
    pub ns_mean: f64,
    pub ns_median: f64,
    /// Per-sample Jacobians (p × 2) per second, batched (pass 1).
    pub jacobians_per_s: f64,
    pub batch: usize,
    pub peak_rss_mb: f64,
    /// Linear-time N_S against Σ_j k^C summed pair by pair over all of S, on the query and
    /// check tiles.
    pub linear_vs_pairwise_max_rel_err: f64,
    pub n_checked: usize,
    /// Count sketch against exact: the largest relative error of tr F_i and of the kernel
    /// matrices K_ji, on the query tiles (null without a sketch).
    pub sketch_dim: usize,
    pub sketch_rel_err_f_trace: Option<f64>,
    pub sketch_rel_err_kernel: Option<f64>,
    /// σ̂ of the label noise from training residuals (labels − predictions), px per axis.
    pub sigma_hat_px: f64,
    pub device: String,
    pub seconds: f64,
}

/// Runs `simreg-learn similarity` and returns its summary.
pub fn run_similarity(
    model: &Path,
    labels: &Path,
    out: &Path,
    p: &SimilarityParams,
    quiet: bool,
    threads: Option<usize>,
) -> Result<SimilaritySummary> {
    let mut cmd = command(quiet, threads)?;
    cmd.arg("similarity")
        .arg("--model")
        .arg(model)
        .arg("--labels")
        .arg(labels)
        .arg("--out")
        .arg(out)
        .arg("--params-json")
        .arg(serde_json::to_string(p)?);
    run_child(cmd)?;
    let text = std::fs::read_to_string(out.join("summary.json"))
        .with_context(|| format!("'{}': no similarity summary", out.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// `[toy1d]` / `simreg toy1d`: the paper's 1-D toy (paper.md §5): an MLP learns sin(2πfα) on
/// the circle x = (cos 2πα, sin 2πα), then N_S of every training sample is compared across
/// frequencies f and against the target's curvature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toy1dParams {
    /// Target frequencies f (positive integers: the input circle has no boundary).
    #[serde(default = "d_toy_frequencies")]
    pub frequencies: Vec<u32>,
    /// One training run per seed and frequency (data, initialisation and batch order).
    #[serde(default = "d_toy_seeds")]
    pub seeds: Vec<u64>,
    /// Training samples, α uniform on [0, 1).
    #[serde(default = "d_toy_n")]
    pub n: usize,
    #[serde(default = "d_toy_epochs")]
    pub epochs: usize,
    /// Adam learning rate (constant).
    #[serde(default = "d_toy_lr")]
    pub lr: f64,
    #[serde(default = "d_toy_batch")]
    pub batch: usize,
}

fn d_toy_frequencies() -> Vec<u32> {
    vec![1, 2, 4, 8]
}
fn d_toy_seeds() -> Vec<u64> {
    vec![0, 1, 2]
}
fn d_toy_n() -> usize {
    2048
}
fn d_toy_epochs() -> usize {
    200
}
fn d_toy_lr() -> f64 {
    3e-4
}
fn d_toy_batch() -> usize {
    64
}

impl Default for Toy1dParams {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

impl Toy1dParams {
    /// One-line errors for parameters the toy cannot run with.
    pub fn check(&self) -> Result<()> {
        if self.frequencies.is_empty() {
            bail!("toy1d: frequencies is empty");
        }
        if self.frequencies.contains(&0) {
            bail!("toy1d: frequencies must be positive integers (got 0)");
        }
        if has_duplicates(&self.frequencies) {
            bail!("toy1d: frequencies has duplicates: {:?}", self.frequencies);
        }
        if self.seeds.is_empty() {
            bail!("toy1d: seeds is empty");
        }
        if has_duplicates(&self.seeds) {
            bail!("toy1d: seeds has duplicates: {:?}", self.seeds);
        }
        if self.n < 2 {
            bail!("toy1d: n must be at least 2 (got {})", self.n);
        }
        if self.epochs == 0 {
            bail!("toy1d: epochs must be at least 1");
        }
        if self.batch == 0 {
            bail!("toy1d: batch must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("toy1d: lr must be a positive number (got {})", self.lr);
        }
        Ok(())
    }
}

fn has_duplicates<T: Ord + Clone>(v: &[T]) -> bool {
    let mut s = v.to_vec();
    s.sort();
    s.windows(2).any(|w| w[0] == w[1])
}

/// `toy1d/summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Toy1dSummary {
    pub out: PathBuf,
    pub settings: Toy1dParams,
    /// Parameters of the MLP (p).
    pub params: i64,
    /// One entry per frequency, in increasing f.
    pub frequencies: Vec<Toy1dFrequency>,
    /// The mean N_S (over seeds) strictly decreases as f increases; null with one frequency.
    pub ns_strictly_decreasing: Option<bool>,
    /// corr(N_S, log(1 + curvature)), mean over seeds, is below −0.5 at every f ≤ 2; null when
    /// no f ≤ 2 was run.
    pub corr_below_minus_half_for_f_le_2: Option<bool>,
    /// Training plus N_S, per run (one frequency, one seed).
    pub seconds_per_run: f64,
    pub seconds: f64,
}

/// What the runs of one frequency gave; `*_per_seed` follow `settings.seeds`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Toy1dFrequency {
    pub f: u32,
    /// Mean over the training samples of N_S(x_i) = Σ_j k^C(x_i, x_j).
    pub ns_mean_per_seed: Vec<f64>,
    pub ns_mean: f64,
    /// Smallest and largest N_S of a sample, over all seeds.
    pub ns_min: f64,
    pub ns_max: f64,
    /// Pearson correlation of N_S with log(1 + curvature) over the samples (null when N_S is
    /// constant).
    pub corr_per_seed: Vec<Option<f64>>,
    pub corr_mean: Option<f64>,
    /// Mean |prediction − clean target| over the training samples.
    pub mae_per_seed: Vec<f64>,
    pub mae: f64,
}

/// Runs `simreg-learn toy1d` and returns its summary.
pub fn run_toy1d(
    out: &Path,
    p: &Toy1dParams,
    quiet: bool,
    threads: Option<usize>,
) -> Result<Toy1dSummary> {
    p.check()?;
    let mut cmd = command(quiet, threads)?;
    cmd.arg("toy1d").arg("--out").arg(out).arg("--params-json").arg(serde_json::to_string(p)?);
    run_child(cmd)?;
    let text = std::fs::read_to_string(out.join("summary.json"))
        .with_context(|| format!("'{}': no toy1d summary", out.display()))?;
    Ok(serde_json::from_str(&text)?)
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

/// `[enforce_study]` / `simreg enforce-study`: validation error against truth versus steps,
/// baseline against similarity-enforced training with both signs, over several seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforceStudyParams {
    #[serde(default = "d_seeds")]
    pub seeds: usize,
    #[serde(default = "d_study_steps")]
    pub steps: usize,
    #[serde(default = "d_eval_every")]
    pub eval_every: usize,
    /// λ of the pair term.
    #[serde(default = "d_lambda")]
    pub lambda: f64,
    /// The fixed held-out error against truth (px per axis) whose first crossing is counted.
    #[serde(default = "d_threshold")]
    pub threshold_px: f64,
    #[serde(default = "d_pairs")]
    pub pairs: PairKind,
    /// Pairs per step (taken from the step's batch).
    #[serde(default = "d_pairs_per_step")]
    pub pairs_per_step: usize,
    #[serde(default = "d_study_batch")]
    pub batch: usize,
    #[serde(default = "d_study_lr")]
    pub lr: f64,
    #[serde(default = "d_study_width")]
    pub width: i64,
    #[serde(default = "d_study_depth")]
    pub depth: usize,
    #[serde(default = "d_study_corr")]
    pub corr_radius: i64,
    /// Held-out tiles evaluated at each evaluation (the first ones of the validation split).
    #[serde(default = "d_val_tiles")]
    pub val_tiles: usize,
    #[serde(default = "d_device")]
    pub device: DeviceChoice,
    /// Which arms to train, in this order (`baseline`, `plus_cos`, `minus_cos`); the step-cost
    /// ratio needs `baseline` and `minus_cos`.
    #[serde(default = "d_arms")]
    pub arms: Vec<String>,
}

fn d_arms() -> Vec<String> {
    ["baseline", "plus_cos", "minus_cos"].map(String::from).to_vec()
}
fn d_seeds() -> usize {
    10
}
fn d_study_steps() -> usize {
    300
}
fn d_eval_every() -> usize {
    10
}
fn d_lambda() -> f64 {
    1.0
}
fn d_threshold() -> f64 {
    2.0
}
fn d_pairs() -> PairKind {
    PairKind::Noise
}
fn d_pairs_per_step() -> usize {
    2
}
fn d_study_batch() -> usize {
    8
}
fn d_study_lr() -> f64 {
    1e-3
}
fn d_study_width() -> i64 {
    4
}
fn d_study_depth() -> usize {
    2
}
fn d_study_corr() -> i64 {
    2
}
fn d_val_tiles() -> usize {
    64
}

impl Default for EnforceStudyParams {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// Runs `simreg-learn enforce-study`; returns the path of RUN/enforce_study.json.
pub fn run_enforce_study(
    labels: &Path,
    out: &Path,
    p: &EnforceStudyParams,
    quiet: bool,
    threads: Option<usize>,
) -> Result<serde_json::Value> {
    let mut cmd = command(quiet, threads)?;
    cmd.arg("enforce-study")
        .arg("--labels")
        .arg(labels)
        .arg("--out")
        .arg(out)
        .arg("--params-json")
        .arg(serde_json::to_string(p)?);
    run_child(cmd)?;
    let path = out.join("enforce_study.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("'{}': not written", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}
