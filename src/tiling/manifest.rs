//! The tile manifest: the typed artefact the `tile` stage hands to later stages.
use super::plan::{EdgePolicy, Placement, Window};
use super::stats::{BandStats, StatScale};
use crate::raster::{warp::Resampling, Grid};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST_FORMAT: &str = "simreg-tiles/1";
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a modality's pixels are; decides resampling and the scale of its statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModalityKind {
    /// Reflectance or digital numbers.
    Optical,
    /// SAR backscatter already in dB.
    SarDb,
    /// SAR intensity/amplitude on a linear scale (statistics in dB).
    SarLinear,
    /// Elevation.
    Dem,
    /// Classes or masks (nearest-neighbour resampling), or a rasterised vector map.
    Map,
}

impl ModalityKind {
    pub fn resampling(self) -> Resampling {
        if self == ModalityKind::Map {
            Resampling::Nearest
        } else {
            Resampling::Bilinear
        }
    }
    pub fn stat_scale(self) -> StatScale {
        if self == ModalityKind::SarLinear {
            StatScale::Db
        } else {
            StatScale::Linear
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reference,
    Moving,
    Map,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reference => "reference",
            Role::Moving => "moving",
            Role::Map => "map",
        }
    }
}

/// The parameters that define a tiling (part of the resume hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TileParams {
    pub tile_size: usize,
    pub overlap: usize,
    pub min_valid: f64,
    pub edge: EdgePolicy,
    pub deflate: bool,
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
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("tiles '{}': no manifest (run `simreg tile` first)", dir.display())
        })?;
        let m: Manifest = serde_json::from_str(&text).with_context(|| {
            format!("tiles manifest '{}': not a valid manifest", path.display())
        })?;
        if m.format != MANIFEST_FORMAT {
            anyhow::bail!(
                "tiles manifest '{}': format '{}', expected '{MANIFEST_FORMAT}'",
                path.display(),
                m.format
            );
        }
        Ok(m)
    }

    pub fn scene(&self, name: &str) -> Option<&SceneEntry> {
        self.scenes.iter().find(|s| s.name == name)
    }
}
