//! The paper's 1-D toy's contract (`simreg toy1d`, `[toy1d]`; paper.md §5): an MLP learns
//! sin(2πfα) on the circle x = (cos 2πα, sin 2πα), then N_S of every training sample is
//! compared across frequencies f and against the target's curvature. `summary.json` and
//! `samples.csv` (every sample's N_S and curvature).
use super::JsonArtefact;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

crate::artefacts::run::stage_dir! {
    /// `RUN/toy1d/`.
    Toy1dDir {
        summary_json => "summary.json",
        samples_csv => "samples.csv",
    }
}

/// `[toy1d]` / `simreg toy1d`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct Toy1dParams {
    /// Target frequencies f of sin(2πfα), positive integers (the input circle has no boundary)
    #[arg(long, value_delimiter = ',', value_name = "F,..", default_values_t = Toy1dParams::default().frequencies)]
    pub frequencies: Vec<u32>,
    /// One run per seed and frequency (data, initialisation and batch order)
    #[arg(long, value_delimiter = ',', value_name = "S,..", default_values_t = Toy1dParams::default().seeds)]
    pub seeds: Vec<u64>,
    /// Training samples (α uniform on [0, 1))
    #[arg(long, default_value_t = Toy1dParams::default().n)]
    pub n: usize,
    #[arg(long, default_value_t = Toy1dParams::default().epochs)]
    pub epochs: usize,
    /// Adam learning rate (constant)
    #[arg(long, default_value_t = Toy1dParams::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = Toy1dParams::default().batch)]
    pub batch: usize,
}

impl Default for Toy1dParams {
    fn default() -> Self {
        Toy1dParams {
            frequencies: vec![1, 2, 4, 8],
            seeds: vec![0, 1, 2],
            n: 2048,
            epochs: 200,
            lr: 3e-4,
            batch: 64,
        }
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

impl JsonArtefact for Toy1dSummary {
    const WHAT: &'static str = "1-D toy summary";
    const MADE_BY: &'static str = "simreg toy1d";
}

impl std::fmt::Display for Toy1dSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self;
        let flag = |v: Option<bool>| v.map_or("n/a", |b| if b { "yes" } else { "no" });
        writeln!(
            f,
            "1-D toy (seeds {:?}, n = {}, {} epochs, {:.1} s per run) → {}",
            s.settings.seeds,
            s.settings.n,
            s.settings.epochs,
            s.seconds_per_run,
            s.out.display()
        )?;
        writeln!(f, "  f | mean N_S | corr(N_S, log(1+curvature)) | MAE")?;
        for t in &s.frequencies {
            let c = t.corr_mean.map_or("n/a".to_string(), |c| format!("{c:+.2}"));
            writeln!(f, "  {:>2} | {:>8.1} | {c:>6} | {:.4}", t.f, t.ns_mean, t.mae)?;
        }
        write!(
            f,
            "  mean N_S strictly decreasing in f: {}; corr < -0.5 for f <= 2: {}",
            flag(s.ns_strictly_decreasing),
            flag(s.corr_below_minus_half_for_f_le_2)
        )
    }
}
