//! Command-line definitions only (clap); `main.rs` wires them to the library.
use clap::{Args, Parser, Subcommand};
use simreg::device::DeviceChoice;
use simreg::tiling::manifest::ModalityKind;
use simreg::tiling::plan::EdgePolicy;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "simreg", version, args_override_self = true, about = "Multimodal satellite image registration with a learned model, and what it learned from noisy labels")]
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
