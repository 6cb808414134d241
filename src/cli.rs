//! Command-line definitions only (clap); `main.rs` wires them to the library. Every stage's
//! parameters are declared once, in `artefacts` (with their defaults), and flattened here.
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use simreg::artefacts::align::{AlignParams, BatchParams};
use simreg::artefacts::audit::AuditParams;
use simreg::artefacts::labels::LabelParams;
use simreg::artefacts::learn::DeviceChoice;
use simreg::artefacts::similarity::SimilarityParams;
use simreg::artefacts::synth::SynthParams;
use simreg::artefacts::tiles::TileParams;
use simreg::artefacts::toy1d::Toy1dParams;
use simreg::artefacts::train::TrainParams;
use simreg::pipeline::steps::Stage;
use simreg::raster::bounds::InputLimits;
use simreg::raster::kind::ModalityKind;
use simreg::util::shard::Shard;
use std::path::PathBuf;

/// Parses the command line. Every option that takes a value accepts one that starts with '-'
/// followed by a digit, so `--tile-size -5` is refused by the option's own parser, named
/// ("invalid value '-5' for '--tile-size <TILE_SIZE>'"), not as a stray argument '-5'.
pub fn parse() -> Result<Cli, clap::Error> {
    fn negatives(c: clap::Command) -> clap::Command {
        c.mut_args(
            |a| {
                if a.get_action().takes_values() {
                    a.allow_negative_numbers(true)
                } else {
                    a
                }
            },
        )
        .mut_subcommands(negatives)
    }
    let m = negatives(Cli::command()).try_get_matches()?;
    Cli::from_arg_matches(&m)
}

/// A clap error on one line, like every other error: its first paragraph (a missing argument's
/// names are on the lines after the first), without the usage and tips.
pub fn one_line_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let para: Vec<&str> =
        text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let line = para.join(" ");
    let line = line.trim_start_matches("error: ");
    if line.is_empty() {
        "bad arguments".into()
    } else {
        line.into()
    }
}

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
    /// Fine-tune the model (the shipped one by default) on your own pairs with known synthetic
    /// shifts; reports held-out pairs' error before and after, and the audit's estimate
    Adapt(AdaptArgs),
    /// Put the outputs of a sharded stage (`--shard K/N`) together, as one process writes them
    Merge(MergeArgs),
    /// Run the stages of a pipeline TOML file (pipelines/*.toml), here or as Slurm jobs
    Run(RunArgs),
    /// Each step's progress in a run folder (and, for Slurm runs, failed jobs and their logs)
    Status {
        /// Run directory
        run: PathBuf,
        /// Print a machine-readable summary on stdout
        #[arg(long)]
        json: bool,
    },
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
    #[command(flatten)]
    pub params: TileParams,
    #[command(flatten)]
    pub limits: InputLimits,
    /// Output directory (replaced as a whole when the run completes)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Cut only shard K of N of the windows (in tiling order) into --out; `simreg merge tile`
    /// puts the N shard folders together
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct MergeArgs {
    /// The stage whose shards to merge
    #[arg(value_enum)]
    pub stage: MergeStage,
    /// The shard folders (all N of one split, in any order)
    #[arg(required = true, num_args = 1.., value_name = "SHARD_DIR")]
    pub shards: Vec<PathBuf>,
    /// The merged output directory (replaced as a whole when the merge completes)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MergeStage {
    /// Tile shards (`simreg tile --shard K/N`) into one tiles folder
    Tile,
    /// Labels shards (`simreg labels --shard K/N`) into one labels folder
    Labels,
    /// Batch shards (`simreg batch --shard K/N`) into one batch folder
    Batch,
    /// Predict shards (`simreg predict --shard K/N`) into one predictions folder
    Predict,
    /// Pass-2 similarity shards (`simreg similarity --shard K/N --s-a DIR`) into one
    /// similarity folder
    Similarity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    Local,
    Slurm,
}

#[derive(Args)]
pub struct RunArgs {
    /// Pipeline file
    pub pipeline: PathBuf,
    /// Run directory [default: the pipeline's run.out, else runs/<pipeline name>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Where the stages run: here, one after another (local), or as Slurm jobs submitted with
    /// sbatch (slurm; the run folder and inputs must be on a filesystem every node sees)
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    /// Shards of the sharded stages (tile, labels): array tasks with --executor slurm
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Slurm partition for the jobs
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm partition for train (and the enforcement study), e.g. one with GPUs
    #[arg(long)]
    pub gpu_partition: Option<String>,
    /// Slurm account to charge
    #[arg(long)]
    pub account: Option<String>,
    /// Slurm time limit per job, e.g. 02:00:00
    #[arg(long)]
    pub time: Option<String>,
    /// With --executor slurm: CPUs per job (sbatch --cpus-per-task); each job runs on as many
    /// threads [default: the site's default, usually one]
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<usize>,
    /// Run only this step into the run folder (what each Slurm job runs)
    #[arg(long, value_enum, hide = true)]
    pub step: Option<Stage>,
    /// The σ of a noise sweep the step runs on
    #[arg(long, hide = true, requires = "step")]
    pub sigma: Option<f64>,
    /// The shard of a sharded step
    #[arg(long, hide = true, requires = "step", value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output directory (optical.tif, sar.tif, map.tif, map.geojson, scene.json)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub params: SynthParams,
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
    #[command(flatten)]
    pub params: LabelParams,
    /// Label only shard K of N of the tiles (in manifest order) into --out; `simreg merge
    /// labels` puts the N shard folders together
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Labels directory written by `simreg labels`
    #[arg(long, value_name = "DIR")]
    pub labels: PathBuf,
    /// Output directory (model.safetensors, model.json, log.jsonl, summary.json)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub params: TrainParams,
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
    /// Predict only shard K of N of the tiles (in order) into --out; `simreg merge predict`
    /// puts the N shard folders together
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimilarityArgs {
    #[command(subcommand)]
    pub command: Option<SimilarityCommand>,
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
    #[command(flatten)]
    pub params: SimilarityParams,
    /// Compute only shard K of N into --out: pass 1 (a partial S_A of S) without --s-a, pass 2
    /// (N_S rows of all tiles) with it; `similarity reduce` and `merge similarity` follow
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Pass 2 of --shard: the S_A folder `simreg similarity reduce` wrote
    #[arg(long = "s-a", value_name = "DIR", requires = "shard")]
    pub s_a: Option<PathBuf>,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum SimilarityCommand {
    /// Sum the partial S_A of pass-1 shards (`similarity --shard K/N`, all N) for pass 2
    Reduce(ReduceArgs),
}

#[derive(Args)]
pub struct ReduceArgs {
    /// The pass-1 shard folders (all N of one split, in any order)
    #[arg(required = true, num_args = 1.., value_name = "SHARD_DIR")]
    pub shards: Vec<PathBuf>,
    /// Output directory for the summed S_A (give it to pass 2 as --s-a)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
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
    #[command(flatten)]
    pub params: AuditParams,
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
    #[command(flatten)]
    pub params: Toy1dParams,
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
    /// True displacement field on the reference grid (bands dx, dy, px): reports the median
    /// error of the method and of the baseline
    #[arg(long, value_name = "FIELD.tif")]
    pub truth: Option<PathBuf>,
    /// Re-apply a saved displacement raster (bands dx, dy) to --moving, on the same grid
    #[arg(long, value_name = "SHIFTS.tif", conflicts_with_all = ["reference", "model", "truth"])]
    pub apply: Option<PathBuf>,
    #[command(flatten)]
    pub params: AlignParams,
    #[command(flatten)]
    pub limits: InputLimits,
    /// Print summary.json on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BatchArgs {
    /// Folder tree or zip archive of GeoTIFFs
    #[arg(long, value_name = "DIR_OR_ZIP")]
    pub input: PathBuf,
    /// Output directory: one folder per pair, status.csv, summary.json
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub params: BatchParams,
    /// Align only shard K of N of the pairs (in the order batch finds them) into --out;
    /// `simreg merge batch` puts the N shard folders together
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct AdaptArgs {
    /// Folder tree or zip archive of roughly co-registered pairs, found as `batch` finds them
    /// (--pattern; zip members are read in place)
    #[arg(long, value_name = "DIR_OR_ZIP")]
    pub pairs: PathBuf,
    /// Run directory: a pipeline run (tiles … audit); the adapted model is RUN/train
    #[arg(long, value_name = "RUN")]
    pub out: PathBuf,
    #[command(flatten)]
    pub params: simreg::artefacts::adapt::AdaptParams,
    /// Print the summary (RUN/adapt.json) on stdout
    #[arg(long)]
    pub json: bool,
}
