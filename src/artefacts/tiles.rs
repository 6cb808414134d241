//! The `tile` stage's contract: its parameters and scenes (what it is asked), the manifest
//! (`tiles/manifest.json`: every scene's grid, modalities and band statistics, every tile's
//! window and geotransform) and its summary. Later stages read tiles only through these.
use super::{read_json, JsonArtefact};
use crate::raster::bands::OpenFiles;
use crate::raster::kind::{ModalityKind, Role};
use crate::raster::stats::BandStats;
use crate::raster::write::{Compression, SampleType};
use crate::raster::{warp::Resampling, Grid, Window};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST_FORMAT: &str = "simreg-tiles/3";

crate::artefacts::run::stage_dir! {
    /// `RUN/tiles/`: the tiles (`<scene>/x<col>_y<row>.tif`), warped or rasterised copies of
    /// each scene on its reference grid (`<scene>/grid/`), the manifest and the summary.
    TilesDir {
        manifest_json => "manifest.json",
        summary_json => "summary.json",
        // In a partial tiles directory: the input hash of the run building it (resume).
        input_hash => ".input_hash",
    }
}

impl TilesDir {
    /// The manifest, checked to be this format.
    pub fn manifest(&self) -> Result<Manifest> {
        let path = self.manifest_json();
        if !path.exists() {
            bail!("tiles '{}': no manifest (run `simreg tile` first)", self.path().display());
        }
        // An older manifest that does not parse as this format is named by read_json.
        let m: Manifest = read_json(&path)?;
        if m.format != MANIFEST_FORMAT {
            bail!(
                "tiles manifest '{}': format '{}', expected '{MANIFEST_FORMAT}'; make it again \
                 with `simreg tile`",
                path.display(),
                m.format
            );
        }
        Ok(m)
    }

    /// A tile file (`TileEntry::path`) or grid file, relative to the directory.
    pub fn file(&self, rel: &Path) -> PathBuf {
        self.path().join(rel)
    }
}

/// The parameters that define a tiling: `simreg tile`'s options and `[tile]`'s keys (part of
/// the resume hash; recorded in the manifest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct TileParams {
    /// Tile side in pixels
    #[arg(long, default_value_t = TileParams::default().tile_size)]
    pub tile_size: usize,
    /// Pixels shared by neighbouring tiles
    #[arg(long, default_value_t = TileParams::default().overlap)]
    pub overlap: usize,
    /// Minimum fraction of pixels valid in every modality for a tile to be kept
    #[arg(long, default_value_t = TileParams::default().min_valid)]
    pub min_valid: f64,
    /// Tiles at the right/bottom edges: drop the leftover strip, pad past the edge, or shift
    /// flush
    #[arg(long, value_enum, default_value_t = TileParams::default().edge)]
    pub edge: EdgePolicy,
    /// Tile compression (DEFLATE and ZSTD with a predictor)
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compress: Compression,
    /// Tile sample type: the sources' own when every band has the same type (Byte, UInt16,
    /// Int16 or Float32; nodata kept), Float32 otherwise; or Float32 always
    #[arg(long, value_enum, default_value_t = TileDtype::Source)]
    pub dtype: TileDtype,
    /// A raster whose grid matches the reference grid up to a whole-pixel offset, to within
    /// this many pixels at its far corner, is read in place instead of warped
    #[arg(long = "in-place-tolerance", value_name = "PX", default_value_t = IN_PLACE_TOLERANCE_PX)]
    pub in_place_tolerance_px: f64,
    /// Warp with the exact transformation at every pixel instead of GDAL's approximate
    /// (piecewise linear) transformer, whose error is bounded by 0.01 px
    #[arg(long)]
    pub exact_warp: bool,
}

/// The default `--in-place-tolerance`: 0.01 px at the far corner (a Float64 geotransform
/// rounded through text or a reprojected extent differs by ~1e-3 px).
pub const IN_PLACE_TOLERANCE_PX: f64 = 0.01;

/// `--dtype`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TileDtype {
    /// The sources' common sample type (Float32 when they differ)
    #[default]
    Source,
    /// Float32 always
    Float32,
}

impl TileParams {
    pub fn check(&self) -> Result<()> {
        if self.tile_size == 0 {
            bail!("tile size must be at least 1 pixel");
        }
        if self.overlap >= self.tile_size {
            bail!(
                "overlap ({}) must be smaller than the tile size ({})",
                self.overlap,
                self.tile_size
            );
        }
        if !(0.0..=1.0).contains(&self.min_valid) {
            bail!("min-valid must be within [0, 1], not {}", self.min_valid);
        }
        if !(0.0..=0.5).contains(&self.in_place_tolerance_px) {
            bail!(
                "in-place-tolerance must be within [0, 0.5] px, not {} (beyond that a grid \
                 is not the same grid)",
                self.in_place_tolerance_px
            );
        }
        Ok(())
    }
}

impl Default for TileParams {
    fn default() -> Self {
        TileParams {
            tile_size: 128,
            overlap: 32,
            min_valid: 0.9,
            edge: EdgePolicy::Shift,
            compress: Compression::None,
            dtype: TileDtype::Source,
            in_place_tolerance_px: IN_PLACE_TOLERANCE_PX,
            exact_warp: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub simreg_version: String,
    /// Hash of the inputs (paths, sizes, modification times) and parameters.
    pub input_hash: String,
    pub params: TileParams,
    pub scenes: Vec<SceneEntry>,
    pub tiles: Vec<TileEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneEntry {
    pub name: String,
    /// The reference grid every modality was brought onto; tiles use its CRS.
    pub grid: Grid,
    /// The sample type of the scene's tiles (a tile with no integer value free for nodata
    /// is Float32; GDAL says so when it is read).
    pub sample_type: SampleType,
    pub modalities: Vec<ModalityEntry>,
    pub n_windows: usize,
    pub n_tiles: usize,
    pub n_rejected: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModalityEntry {
    pub role: Role,
    pub kind: ModalityKind,
    pub sources: Vec<SourceEntry>,
    /// The modality's bands in the tile files, in order.
    pub bands: Vec<BandEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceEntry {
    pub path: PathBuf,
    pub driver: String,
    /// Some(..) when the file was warped onto the reference grid with that resampling;
    /// "rasterised" vector maps have `rasterised = true`.
    pub resampling: Option<Resampling>,
    pub rasterised: bool,
    /// Fraction of the reference extent covered by the file's bounding box.
    pub coverage: f64,
    /// Some(misfit) when the file was read in place (its grid is the reference grid up to a
    /// whole-pixel offset): the misfit in pixels at its far corner, within the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place_misfit_px: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandEntry {
    /// 1-based band index inside every tile file.
    pub tile_band: usize,
    /// "role:source-stem:bN" (also the GeoTIFF band description).
    pub description: String,
    pub source: PathBuf,
    /// 1-based band of `source` (for rasterised maps: 1 = fill, 2 = edge).
    pub source_band: usize,
    /// The band on the reference grid, for reading around a tile (later stages): the source
    /// itself when it was on the grid, else the warped or rasterised copy kept with the tiles
    /// (a relative path is relative to the tiles directory).
    pub grid_file: PathBuf,
    pub grid_band: usize,
    /// The band of `grid_file` that is 0 where `grid_band` has no data (the alpha band of a
    /// warping VRT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_mask_band: Option<usize>,
    /// The reference grid's pixel (c, r) is `grid_file`'s (c + dx, r + dy) (in-place reads
    /// of a raster on the same grid with another origin).
    #[serde(default, skip_serializing_if = "is_zero_offset")]
    pub grid_offset: [i64; 2],
    /// Value of `grid_file` that means nodata (besides NaN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodata: Option<f64>,
    pub stats: Option<BandStats>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TileEntry {
    /// "<scene>/x<col>_y<row>", also the tile's path without ".tif".
    pub id: String,
    pub scene: String,
    /// Relative to the tiles directory.
    pub path: PathBuf,
    pub window: Window,
    pub geotransform: [f64; 6],
    pub valid_fraction: f64,
    pub placement: Placement,
}

impl Manifest {
    /// The manifest of the tiles in `dir`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        TilesDir::new(dir).manifest()
    }

    pub fn scene(&self, name: &str) -> Option<&SceneEntry> {
        self.scenes.iter().find(|s| s.name == name)
    }
}

impl ModalityEntry {
    /// "moving 'a.tif'" or "reference 'a.tif' (+3 files)", for error messages.
    pub fn label(&self) -> String {
        let first = self.sources.first().map(|s| s.path.display().to_string()).unwrap_or_default();
        let more = match self.sources.len() {
            0 | 1 => String::new(),
            n => format!(" (+{} files)", n - 1),
        };
        format!("{} '{first}'{more}", self.role.name())
    }
}

impl SceneEntry {
    /// Every band of modality `role` over `win` (which may reach past the tiles, e.g. a tile
    /// plus a margin), read from the bands' grid files; `tiles_dir` is where the manifest lives.
    pub fn read_modality(
        &self,
        open: &mut OpenFiles,
        tiles_dir: &Path,
        role: Role,
        win: Window,
    ) -> Result<Vec<Vec<f32>>> {
        let Some(m) = self.modalities.iter().find(|m| m.role == role) else {
            anyhow::bail!("scene '{}' has no {} modality", self.name, role.name());
        };
        m.bands
            .iter()
            .map(|b| {
                let path = if b.grid_file.is_relative() {
                    tiles_dir.join(&b.grid_file)
                } else {
                    b.grid_file.clone()
                };
                let label = || format!("{} '{}'", role.name(), path.display());
                let [dx, dy] = b.grid_offset;
                let at = Window { col: win.col + dx, row: win.row + dy, ..win };
                open.get(&path, role.name(), label)?.window_masked(
                    b.grid_band,
                    b.grid_mask_band,
                    at,
                )
            })
            .collect()
    }
}

fn is_zero_offset(o: &[i64; 2]) -> bool {
    *o == [0, 0]
}

/// What to do with the strip left over at the right and bottom edges when the raster size is
/// not a whole number of strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EdgePolicy {
    /// Leave the strip untiled: every tile lies fully inside the raster on the regular grid.
    Drop,
    /// Add a tile past the edge on the regular grid; pixels outside the raster are nodata.
    Pad,
    /// Add a tile flush with the edge (it overlaps its neighbour by more than `overlap`).
    Shift,
}

/// How one tile was placed; recorded per tile in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    Interior,
    Padded,
    Shifted,
}

/// One modality of a scene as the user gave it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModalityInput {
    /// One or more files whose bands are stacked in order (e.g. one file per Sentinel-2 band);
    /// empty beside `synth` (the scene's own files, with only `bands` chosen).
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// 1-based selection from the stacked bands; all bands when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<Vec<usize>>,
    /// Decided from the data when absent (see `resolve_kind`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModalityKind>,
}

/// One scene: a reference raster, a moving raster, optionally a map, all of the same ground.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneInput {
    /// Names the scene's tiles; the first reference file's stem when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub reference: ModalityInput,
    #[serde(default)]
    pub moving: ModalityInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<ModalityInput>,
    /// In a pipeline: the scene generated by `[synth.<name>]` of the same run (its optical
    /// image as reference, SAR as moving, GeoJSON as map); resolved by the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synth: Option<String>,
}

impl SceneInput {
    pub fn scene_name(&self) -> String {
        let raw = self.name.clone().unwrap_or_else(|| {
            self.reference
                .files
                .first()
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scene".into())
        });
        raw.chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect()
    }
}

/// What `simreg tile` reports (also `tiles/summary.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TileSummary {
    pub out: PathBuf,
    /// True when the output was already complete for these inputs and parameters.
    pub up_to_date: bool,
    pub n_scenes: usize,
    pub n_windows: usize,
    pub n_tiles: usize,
    /// Windows below `min_valid` (jointly valid fraction).
    pub n_rejected: usize,
    /// Tiles found complete from an interrupted run and not written again.
    pub n_reused: usize,
    pub seconds: f64,
    pub tiles_per_s: f64,
    pub megapixels_per_s: f64,
}

impl JsonArtefact for Manifest {
    const WHAT: &'static str = "tiles manifest";
    const MADE_BY: &'static str = "simreg tile";
}

impl JsonArtefact for TileSummary {
    const WHAT: &'static str = "tiles summary";
    const MADE_BY: &'static str = "simreg tile";
}

impl std::fmt::Display for TileSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self;
        if s.up_to_date {
            write!(
                f,
                "tiles up to date in {}: {} tiles from {} scene(s); nothing to do",
                s.out.display(),
                s.n_tiles,
                s.n_scenes
            )
        } else {
            write!(
                f,
                "tiled {} scene(s): {} tiles written to {} ({} windows, {} rejected below \
                 min-valid, {} reused) in {:.2} s ({:.1} tiles/s, {:.1} Mpx/s)",
                s.n_scenes,
                s.n_tiles,
                s.out.display(),
                s.n_windows,
                s.n_rejected,
                s.n_reused,
                s.seconds,
                s.tiles_per_s,
                s.megapixels_per_s
            )
        }
    }
}
