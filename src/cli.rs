//! Command-line definitions only (clap); `main.rs` wires them to the library.
use clap::{Args, Parser, Subcommand};
use simreg::labels::{noise::NoiseModel, warp::Interp};
use simreg::learn::DeviceChoice;
use simreg::tiling::manifest::ModalityKind;
use simreg::tiling::plan::EdgePolicy;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "simreg",
    version,
    args_override_self = true,
    about = "Multimodal satellite image registration with a learned model, and what it learned from noisy labels"
)]
pub struct Cli {
    /// Worker threads for GDAL I/O (rayon) and libtorch [default: all cores]
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Only errors on stderr; no progress bar
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More log detail (-v info, -vv debug); SIMREG_LOG overrides
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Cut co-registered multimodal rasters into pair-aware tiles on the reference grid
    Tile(TileArgs),
    /// Generate a synthetic multimodal scene (optical, SAR-like, map) with known geometry
    Synth(SynthArgs),
    /// Displace the moving modality of every tile by a known field and record noisy labels
    Labels(LabelsArgs),
    /// Train the displacement-regression network on the noisy labels
    Train(TrainArgs),
    /// Predict displacements for tiles with a trained model (JSON + dense GeoTIFFs)
    Predict(PredictArgs),
    /// Gradient-kernel similarity of the training tiles as the network sees them: N_S,
    /// denoising factors, most similar tiles
    Similarity(SimilarityArgs),
    /// Label-free error estimates and a ranked audit of suspicious labels (needs similarity)
    Audit(AuditArgs),
    /// HTML report of a run (or a noise sweep): accuracy, training, N_S, neighbours, audit
    Report(ReportArgs),
    /// The paper's 1-D toy: MLPs fit sin(2πfα) on a circle; N_S against frequency and curvature
    Toy1d(Toy1dArgs),
    /// Similarity-enforcing training study: baseline vs both signs of the pair term, over seeds
    EnforceStudy(EnforceStudyArgs),
    /// Align a moving raster (e.g. SAR) onto a reference (e.g. optical) over the whole scene:
    /// displacement raster, corrected raster, tie points; or re-apply saved shifts (--apply)
    Align(AlignArgs),
    /// Align every reference/moving pair found in a folder tree or zip archive of GeoTIFFs
    Batch(BatchArgs),
    /// Run the stages of a pipeline TOML file (pipelines/*.toml)
    Run(RunArgs),
    /// Show versions, threads and whether libtorch sees a GPU
    Info {
        #[arg(long)]
        json: bool,
        /// Check that this device can be used (exit non-zero if not)
        #[arg(long, value_enum)]
        device: Option<DeviceChoice>,
    },
}

#[derive(Args)]
pub struct TileArgs {
    /// Reference raster(s); several files are stacked as bands, the first one sets the grid
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub reference: Vec<PathBuf>,
    /// Moving raster(s) (e.g. SAR); warped onto the reference grid when their grid differs
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub moving: Vec<PathBuf>,
    /// Map: a vector file (GeoJSON, GPKG, ...; rasterised to fill + edge) or a class raster
    #[arg(long, value_name = "FILE")]
    pub map: Option<PathBuf>,
    /// 1-based bands to keep from the stacked reference bands, e.g. 3,2,1
    #[arg(long, value_delimiter = ',', value_name = "B,..")]
    pub reference_bands: Option<Vec<usize>>,
    /// 1-based bands to keep from the stacked moving bands
    #[arg(long, value_delimiter = ',', value_name = "B,..")]
    pub moving_bands: Option<Vec<usize>>,
    /// What the reference holds [default: optical]
    #[arg(long, value_enum)]
    pub reference_kind: Option<ModalityKind>,
    /// What the moving raster holds [default: from the data: integers → optical, floats with
    /// negative values → sar-db, other floats → sar-linear]
    #[arg(long, value_enum)]
    pub moving_kind: Option<ModalityKind>,
    /// Scene name used in tile ids [default: the reference file's stem]
    #[arg(long)]
    pub name: Option<String>,
    /// Tile side in pixels
    #[arg(long, default_value_t = 128)]
    pub tile_size: usize,
    /// Pixels shared by neighbouring tiles
    #[arg(long, default_value_t = 32)]
    pub overlap: usize,
    /// Minimum fraction of pixels valid in every modality for a tile to be kept
    #[arg(long, default_value_t = 0.9)]
    pub min_valid: f64,
    /// Tiles at the right/bottom edges: drop the leftover strip, pad past the edge, or shift flush
    #[arg(long, value_enum, default_value_t = EdgePolicy::Shift)]
    pub edge: EdgePolicy,
    /// DEFLATE-compress tiles
    #[arg(long)]
    pub deflate: bool,
    /// Output directory (replaced as a whole when the run completes)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Pipeline file
    pub pipeline: PathBuf,
    /// Run directory [default: the pipeline's run.out, else runs/<pipeline name>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output directory (optical.tif, sar.tif, map.tif, map.geojson, scene.json)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Width and height in pixels
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Ground sampling distance in metres
    #[arg(long, default_value_t = 2.0)]
    pub pixel_size: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Equivalent number of looks of the SAR speckle
    #[arg(long, default_value_t = 4.0)]
    pub looks: f64,
    /// Buildings per km²
    #[arg(long, default_value_t = 300.0)]
    pub building_density: f64,
    /// Mean road spacing in metres (0: no roads)
    #[arg(long, default_value_t = 250.0)]
    pub road_spacing: f64,
    /// Field/forest parcels per km²
    #[arg(long, default_value_t = 60.0)]
    pub parcel_density: f64,
    /// Approximate fraction of water
    #[arg(long, default_value_t = 0.06)]
    pub water_fraction: f64,
    /// Haze strength (reflectance added in blue)
    #[arg(long, default_value_t = 0.03)]
    pub haze: f64,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LabelsArgs {
    /// Tiles directory written by `simreg tile`
    #[arg(long, value_name = "DIR")]
    pub tiles: PathBuf,
    /// Output directory (labels.json, truth.json, target.json, summary.json, tiles)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Global translation amplitude A: uniform in [-A, A] px per axis
    #[arg(long)]
    pub amplitude: f64,
    /// Amplitude of the optional smooth field (sum of Gaussian bumps), px
    #[arg(long, default_value_t = 0.0)]
    pub field_amplitude: f64,
    /// Number of signed Gaussian bumps per field component
    #[arg(long, default_value_t = 30)]
    pub bumps: usize,
    /// Bump standard deviation, as a fraction of the tile side
    #[arg(long, default_value_t = 0.3)]
    pub bump_scale: f64,
    /// Side of the centre window the label averages over [default: half the tile]
    #[arg(long)]
    pub centre: Option<usize>,
    /// Resampling of the moving modality (SAR in dB is resampled as linear power)
    #[arg(long, value_enum, default_value_t = Interp::Bilinear)]
    pub interp: Interp,
    /// Base label-noise model
    #[arg(long, value_enum, default_value_t = NoiseModel::None)]
    pub noise: NoiseModel,
    /// Noise standard deviation per axis, px (iid, correlated)
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub sigma: f64,
    /// Correlation length of the correlated model, px
    #[arg(long, default_value_t = 0.0)]
    pub corr_length: f64,
    /// Fraction of tiles with a gross label error
    #[arg(long, default_value_t = 0.0)]
    pub outliers: f64,
    /// Magnitude of the gross errors, px
    #[arg(long, default_value_t = 0.0)]
    pub outlier_magnitude: f64,
    /// Constant label offset DX,DY px
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_name = "DX,DY")]
    pub bias: Option<Vec<f64>>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Similarity enforcement: λ of a pair term on the gradient kernel (double back-propagation)
    #[arg(long, value_name = "LAMBDA")]
    pub enforce_similarity: Option<f64>,
    /// Where the known-similar pairs come from
    #[arg(long, value_enum, requires = "enforce_similarity")]
    pub pairs: Option<simreg::learn::PairKind>,
    /// minus: λ(1 − k^C), raises similarity (default); plus: λ·k^C, the reference code's sign
    #[arg(long, value_enum, requires = "enforce_similarity")]
    pub enforce_sign: Option<simreg::learn::EnforceSign>,
    /// Labels directory written by `simreg labels`
    #[arg(long, value_name = "DIR")]
    pub labels: PathBuf,
    /// Output directory (model.safetensors, model.json, log.jsonl, summary.json)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Adam learning rate (cosine decay to lr/20)
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Feature maps at the first level of each encoder (doubling per level)
    #[arg(long, default_value_t = 16)]
    pub width: i64,
    /// Resolution levels of the U-Net
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Correlation-volume radius between the encoders, feature pixels at every level (0: none)
    #[arg(long, default_value_t = 3)]
    pub corr_radius: i64,
    /// Fraction of tiles held out for validation
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Early stop after this many epochs without improvement on the validation labels
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// Turn off the rotation/flip augmentation
    #[arg(long)]
    pub no_augment: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PredictArgs {
    /// Model directory written by `simreg train` (model.json, model.safetensors)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Tiles to predict for (their own moving bands)
    #[arg(long, value_name = "DIR", required_unless_present = "labels")]
    pub tiles: Option<PathBuf>,
    /// Or: labelled tiles (their displaced moving tiles); reports the RMSE against the labels
    #[arg(long, value_name = "DIR")]
    pub labels: Option<PathBuf>,
    /// Output directory (predictions.json, summary.json, dense fields)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SimilarityArgs {
    /// Run directory: model RUN/train, labels RUN/labels, output RUN/similarity
    #[arg(value_name = "RUN")]
    pub run: Option<PathBuf>,
    /// Model directory written by `simreg train` [default: RUN/train]
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Labels directory the model was trained on [default: RUN/labels]
    #[arg(long, value_name = "DIR")]
    pub labels: Option<PathBuf>,
    /// Output directory [default: RUN/similarity]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tile ids to analyse exactly (neighbours, denoising factor, thumbnails), comma-separated
    #[arg(long, value_delimiter = ',', value_name = "ID,..")]
    pub query: Vec<String>,
    /// Without --query: this many query tiles spread over the run
    #[arg(long, default_value_t = 4)]
    pub n_queries: usize,
    /// Neighbours listed per query tile
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Working-memory budget in MB; sets the batch size
    #[arg(long, default_value_t = 2048.0, value_name = "MB")]
    pub max_memory: f64,
    /// Count-sketch dimension for the all-tile denoising factors (0: skip)
    #[arg(long, default_value_t = 1024)]
    pub sketch_dim: usize,
    /// Training tiles whose N_S is also summed pair by pair (the linear-time check)
    #[arg(long, default_value_t = 8)]
    pub check_tiles: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct AuditArgs {
    /// Run directory: reads RUN/similarity, RUN/labels, RUN/train; writes RUN/audit
    #[arg(value_name = "RUN")]
    pub run: PathBuf,
    /// Output directory [default: RUN/audit]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Flag tiles whose score exceeds this (≈ one clean label in e^THRESHOLD is flagged)
    #[arg(long, default_value_t = simreg::audit::AuditParams::default().threshold)]
    pub threshold: f64,
    /// Flag at least the K worst tiles
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub top: usize,
    /// Search radius of the image-only baseline (CFOG), px [default: from an unbounded search's confident shifts]
    #[arg(long, value_name = "PX")]
    pub max_shift: Option<f64>,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    /// Run directory (a pipeline's RUN, or a noise sweep's)
    #[arg(value_name = "RUN")]
    pub run: PathBuf,
    /// Output directory [default: RUN/report]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct Toy1dArgs {
    /// Output directory (summary.json, samples.csv)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Target frequencies f of sin(2πfα), positive integers
    #[arg(long, value_delimiter = ',', value_name = "F,..", default_values_t = simreg::learn::Toy1dParams::default().frequencies)]
    pub frequencies: Vec<u32>,
    /// One run per seed and frequency
    #[arg(long, value_delimiter = ',', value_name = "S,..", default_values_t = simreg::learn::Toy1dParams::default().seeds)]
    pub seeds: Vec<u64>,
    /// Training samples (α uniform on [0, 1))
    #[arg(long, default_value_t = simreg::learn::Toy1dParams::default().n)]
    pub n: usize,
    #[arg(long, default_value_t = simreg::learn::Toy1dParams::default().epochs)]
    pub epochs: usize,
    /// Adam learning rate (constant)
    #[arg(long, default_value_t = simreg::learn::Toy1dParams::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = simreg::learn::Toy1dParams::default().batch)]
    pub batch: usize,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct EnforceStudyArgs {
    /// Labels directory (with truth: the error is measured against it, for reporting only)
    #[arg(long, value_name = "DIR")]
    pub labels: PathBuf,
    /// Output directory: enforce_study.json, enforce_curves.csv
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// EnforceStudyParams as TOML inline fields, e.g. 'seeds = 10, steps = 300, lambda = 1.0'
    #[arg(long, default_value = "")]
    pub params: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct AlignArgs {
    /// Reference raster (sets the grid of every output)
    #[arg(long, value_name = "FILE", required_unless_present = "apply")]
    pub reference: Option<PathBuf>,
    /// Moving raster (warped onto the reference grid when its grid differs)
    #[arg(long, value_name = "FILE")]
    pub moving: PathBuf,
    /// Output directory (displacement.tif, corrected.tif, tiepoints.geojson/.csv, summary.json)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How displacements are estimated; the phase-correlation baseline is always computed beside
    #[arg(long, value_enum, default_value_t = simreg::align::Method::Network)]
    pub method: simreg::align::Method,
    /// Trained model: RUN/train or RUN/train/model.safetensors (for --method network)
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// True displacement field on the reference grid (bands dx, dy, px): reports the median
    /// error of the method and of the baseline
    #[arg(long, value_name = "FIELD.tif")]
    pub truth: Option<PathBuf>,
    /// Re-apply a saved displacement raster (bands dx, dy) to --moving, on the same grid
    #[arg(long, value_name = "SHIFTS.tif", conflicts_with_all = ["reference", "model", "truth"])]
    pub apply: Option<PathBuf>,
    /// 1-based reference bands to use [default: all]
    #[arg(long, value_delimiter = ',', value_name = "B,..")]
    pub reference_bands: Option<Vec<usize>>,
    /// 1-based moving bands to use [default: all]
    #[arg(long, value_delimiter = ',', value_name = "B,..")]
    pub moving_bands: Option<Vec<usize>>,
    /// What the moving raster holds [default: from the data, as `simreg tile`]
    #[arg(long, value_enum)]
    pub moving_kind: Option<ModalityKind>,
    /// Window step in px [default: the model's centre-window size; window/2 for phase correlation]
    #[arg(long)]
    pub stride: Option<usize>,
    /// Window side for --method phase-correlation [default: 64]
    #[arg(long)]
    pub window: Option<usize>,
    /// Minimum fraction of valid pixels (both rasters) for a window to be used
    #[arg(long, default_value_t = 0.5)]
    pub min_valid: f64,
    /// Windows per network batch
    #[arg(long, default_value_t = 16)]
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
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Print summary.json on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BatchArgs {
    /// Folder tree or zip archive of GeoTIFFs
    #[arg(long, value_name = "DIR_OR_ZIP")]
    pub input: PathBuf,
    /// How pairs are found: a file name with `{role}` where the reference and moving files
    /// differ, e.g. '{role}.tif' or '*_{role}.tif'; files of one folder that match with the
    /// same `*` part form a pair
    #[arg(long, default_value = "{role}.tif")]
    pub pattern: String,
    /// The `{role}` value of reference files
    #[arg(long, default_value = "reference")]
    pub reference_role: String,
    /// The `{role}` value of moving files
    #[arg(long, default_value = "moving")]
    pub moving_role: String,
    /// Output directory: one folder per pair, status.csv, summary.json
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = simreg::align::Method::PhaseCorrelation)]
    pub method: simreg::align::Method,
    /// Trained model (for --method network)
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Pairs aligned at once
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Redo pairs whose status is `failed` (done pairs are never redone)
    #[arg(long)]
    pub retry_failed: bool,
    #[arg(long)]
    pub json: bool,
}
