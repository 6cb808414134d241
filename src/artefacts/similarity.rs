//! The `similarity` stage's contract: its parameters, `ns.csv` (per tile: N_S, ‖G‖, the
//! denoising factor's trace, the prediction and the label), `knn.json` (the query tiles'
//! neighbours, with thumbnails under `thumbs/`), S_A stored for `align` (`s_a.safetensors`,
//! `s_a.json`), one N_S raster per scene and `summary.json`.
use super::csv_format::{fixed, sci};
use super::learn::DeviceChoice;
use super::{nan, read_json, read_json_if_present, JsonArtefact};
use crate::util::table;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

crate::artefacts::run::stage_dir! {
    /// `RUN/similarity/`.
    SimilarityDir {
        ns_csv => "ns.csv",
        knn_json => "knn.json",
        summary_json => "summary.json",
        s_a_safetensors => "s_a.safetensors",
        s_a_json => "s_a.json",
    }
}

impl SimilarityDir {
    /// `ns_<scene>.tif`: the mean N_S of the tiles covering each cell of a scene.
    pub fn ns_tif(&self, scene: &str) -> PathBuf {
        self.path().join(format!("ns_{}.tif", scene.replace('/', "_")))
    }
    /// A tile's thumbnail (reference | moving), relative to the directory.
    pub fn thumbnail(id: &str) -> String {
        format!("thumbs/{}.png", id.replace('/', "__"))
    }
    pub fn summary(&self) -> Result<SimilaritySummary> {
        read_json(&self.summary_json())
    }
    /// The per-tile table; an error names the file and the line.
    pub fn ns_rows(&self) -> Result<Vec<NsRow>> {
        let path = self.ns_csv();
        let rows = table::read::<NsRow>(&path)?;
        if rows.is_empty() {
            bail!("'{}': no tiles", path.display());
        }
        // A file cut at a line boundary still parses: the stage's summary says how many rows
        // it wrote.
        if let Ok(s) = self.summary() {
            if s.n_tiles != rows.len() {
                bail!(
                    "'{}': {} rows but the similarity stage wrote {} (truncated or edited; run `similarity` again)",
                    path.display(),
                    rows.len(),
                    s.n_tiles
                );
            }
        }
        Ok(rows)
    }
    /// The query tiles and their neighbours; None when there are none.
    pub fn knn(&self) -> Result<Option<Vec<KnnQuery>>> {
        read_json_if_present(&self.knn_json())
    }
    pub fn sa_meta(&self) -> Result<Option<SaMeta>> {
        read_json_if_present(&self.s_a_json())
    }
}

/// `[similarity]` / `simreg similarity`: the gradient-kernel analysis of a trained model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct SimilarityParams {
    /// Tile ids to analyse exactly (neighbours, denoising factor, thumbnails), comma-separated;
    /// none: `--n-queries` tiles spread over the run
    #[arg(long = "query", value_delimiter = ',', value_name = "ID,..")]
    pub queries: Vec<String>,
    /// Without --query: this many query tiles spread over the run
    #[arg(long, default_value_t = SimilarityParams::default().n_queries)]
    pub n_queries: usize,
    /// Neighbours listed per query tile
    #[arg(long, default_value_t = SimilarityParams::default().k)]
    pub k: usize,
    /// Working-memory budget in MB; sets the batch size
    #[arg(long = "max-memory", value_name = "MB", default_value_t = SimilarityParams::default().max_memory_mb)]
    pub max_memory_mb: f64,
    /// Count-sketch dimension for the all-tile denoising factors (0: skip)
    #[arg(long, default_value_t = SimilarityParams::default().sketch_dim)]
    pub sketch_dim: usize,
    /// Training tiles whose N_S is also summed pair by pair (the linear-time check)
    #[arg(long, default_value_t = SimilarityParams::default().check_tiles)]
    pub check_tiles: usize,
    #[arg(long, default_value_t = SimilarityParams::default().seed)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = SimilarityParams::default().device)]
    pub device: DeviceChoice,
}

impl Default for SimilarityParams {
    fn default() -> Self {
        SimilarityParams {
            queries: Vec::new(),
            n_queries: 4,
            k: 8,
            max_memory_mb: 2048.0,
            sketch_dim: 1024,
            check_tiles: 8,
            seed: 0,
            device: DeviceChoice::Auto,
        }
    }
}

/// Trained on (the network saw its label) or held out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
}

/// One row of `ns.csv` (columns by name; added columns are ignored when read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NsRow {
    pub tile: String,
    pub split: Split,
    /// N_S over the training set, linear time.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub ns: f64,
    /// ‖G_i‖_F.
    #[serde(serialize_with = "sci::<6, _>")]
    pub g_norm: f64,
    /// tr F_i, the paper's denoising factor (count sketch; NaN without one, or in older tables).
    #[serde(serialize_with = "sci::<6, _>", default = "nan")]
    pub f_trace: f64,
    /// ‖f(x) − ê‖: how far the prediction is from its kernel-weighted neighbours' (sketch).
    #[serde(serialize_with = "fixed::<4, _>", default = "nan")]
    pub neighbour_gap_px: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub pred_dx: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub pred_dy: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub label_dx: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    pub label_dy: f64,
    /// The paper's predicted error σ̂·√(tr F/2).
    #[serde(serialize_with = "fixed::<4, _>", default = "nan")]
    pub predicted_error_px: f64,
}

impl NsRow {
    pub fn train(&self) -> bool {
        self.split == Split::Train
    }
    pub fn pred(&self) -> [f64; 2] {
        [self.pred_dx, self.pred_dy]
    }
    pub fn label(&self) -> [f64; 2] {
        [self.label_dx, self.label_dy]
    }
}

/// Writes `ns.csv`.
pub fn write_ns_csv(path: &Path, rows: &[NsRow]) -> Result<()> {
    table::write(path, rows)
}

/// A neighbour of a query tile in `knn.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnnNeighbour {
    pub id: String,
    #[serde(deserialize_with = "super::f64_or_nan")]
    pub kc: f64,
    /// Relative to the similarity directory.
    pub thumbnail: String,
}

/// A query tile of `knn.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnnQuery {
    pub id: String,
    pub thumbnail: String,
    pub ns_linear: f64,
    pub ns_pairwise: f64,
    /// Exact denoising factor F over S (2 × 2) and its trace; the sketched trace beside it.
    pub f_exact: [[f64; 2]; 2],
    pub f_trace_exact: f64,
    pub f_trace_sketch: Option<f64>,
    /// Exact neighbour consistency: ‖f(x) − ê‖, ê the kernel-weighted mean of S's predictions.
    pub neighbour_gap_px: f64,
    /// k^C histogram against every tile: counts in 20 bins over [−1, 1].
    pub kc_histogram: Vec<usize>,
    pub neighbours: Vec<KnnNeighbour>,
}

/// `s_a.json`: what S_A (`s_a.safetensors`) was computed with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaMeta {
    /// blake3 of the model.safetensors S_A was computed with.
    pub model_hash: String,
    /// |S|: the number of training tiles summed.
    pub n_train: usize,
    pub params: i64,
    /// N_S(x) = ½·⟨A_x, S_A⟩ (d = 2); N_S / n_train is the fraction of the training set the
    /// input counts as neighbours.
    pub formula: String,
}

/// `summary.json`.
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

impl JsonArtefact for Vec<KnnQuery> {
    const WHAT: &'static str = "neighbour table";
    const MADE_BY: &'static str = "simreg similarity";
}

impl JsonArtefact for SaMeta {
    const WHAT: &'static str = "S_A description";
    const MADE_BY: &'static str = "simreg similarity";
}

impl JsonArtefact for SimilaritySummary {
    const WHAT: &'static str = "similarity summary";
    const MADE_BY: &'static str = "simreg similarity";
}

/// What `simreg similarity --shard K/N` answers: pass 1 (a partial S_A) or pass 2 (N_S rows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimilarityShardSummary {
    pub out: PathBuf,
    pub pass: u8,
    pub shard: crate::util::shard::Shard,
    /// Samples this shard computed Jacobians for.
    pub n_samples: usize,
    /// The shard was complete already (same inputs): nothing was computed.
    pub up_to_date: bool,
    pub seconds: f64,
}

/// What `simreg similarity reduce` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimilarityReduceSummary {
    pub out: PathBuf,
    pub shards: usize,
    /// |S|: training samples summed into S_A.
    pub n_train: usize,
    /// p: S_A is d × p f64 (16·p bytes).
    pub params: i64,
    pub up_to_date: bool,
    pub seconds: f64,
}

impl std::fmt::Display for SimilarityShardSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.pass == 1 { "partial S_A" } else { "N_S rows" };
        if self.up_to_date {
            write!(
                f,
                "similarity pass {} shard {}: up to date in {}",
                self.pass,
                self.shard,
                self.out.display()
            )
        } else {
            write!(
                f,
                "similarity pass {} shard {}: {what} of {} samples in {:.1} s → {}",
                self.pass,
                self.shard,
                self.n_samples,
                self.seconds,
                self.out.display()
            )
        }
    }
}

impl std::fmt::Display for SimilarityReduceSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "similarity reduce: S_A of {} training samples ({} × 2 f64) from {} shards{} → {}",
            self.n_train,
            self.params,
            self.shards,
            if self.up_to_date { ", up to date" } else { "" },
            self.out.display()
        )
    }
}

impl std::fmt::Display for SimilaritySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self;
        write!(
            f,
            "similarity of {} tiles ({} trained on, {} parameters) in {}: N_S mean {:.1}, median \
             {:.1}; {:.1} Jacobians/s; linear vs pairwise N_S max rel. error {:.1e}",
            s.n_tiles,
            s.n_train,
            s.params,
            s.out.display(),
            s.ns_mean,
            s.ns_median,
            s.jacobians_per_s,
            s.linear_vs_pairwise_max_rel_err
        )
    }
}
