//! The `synth` stage's contract: a scene's parameters and `scene.json` (its files, counts and
//! parameters), in `RUN/synth/<name>/` or `simreg synth --out DIR`.
use super::JsonArtefact;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

crate::artefacts::run::stage_dir! {
    /// A synthetic scene: optical, SAR and map rasters, the map as vectors, and `scene.json`.
    SynthDir {
        optical_tif => "optical.tif",
        sar_tif => "sar.tif",
        map_tif => "map.tif",
        map_geojson => "map.geojson",
        scene_json => "scene.json",
    }
}

/// Scene parameters (all recorded in `scene.json`): `simreg synth`'s options and
/// `[synth.<name>]`'s keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct SynthParams {
    /// Width and height in pixels
    #[arg(long, default_value_t = SynthParams::default().size)]
    pub size: usize,
    /// Ground sampling distance in metres
    #[arg(long, default_value_t = SynthParams::default().pixel_size)]
    pub pixel_size: f64,
    #[arg(long, default_value_t = SynthParams::default().seed)]
    pub seed: u64,
    /// Equivalent number of looks of the SAR speckle (gamma-distributed intensity)
    #[arg(long, default_value_t = SynthParams::default().looks)]
    pub looks: f64,
    /// Buildings per km²
    #[arg(long, default_value_t = SynthParams::default().building_density)]
    pub building_density: f64,
    /// Mean road spacing in metres (0: no roads)
    #[arg(long, default_value_t = SynthParams::default().road_spacing)]
    pub road_spacing: f64,
    /// Field/forest parcels per km²
    #[arg(long, default_value_t = SynthParams::default().parcel_density)]
    pub parcel_density: f64,
    /// Approximate fraction of water
    #[arg(long, default_value_t = SynthParams::default().water_fraction)]
    pub water_fraction: f64,
    /// Haze strength (reflectance added in blue)
    #[arg(long, default_value_t = SynthParams::default().haze)]
    pub haze: f64,
    /// SAR incidence angle in degrees (how far radar shadows reach behind buildings)
    #[arg(long, default_value_t = SynthParams::default().incidence)]
    #[serde(skip_serializing_if = "is_default_incidence")]
    pub incidence: f64,
    /// Side the radar looks from: its double bounce lines the walls facing it, its shadows fall
    /// behind
    #[arg(long, value_enum, default_value_t = LookFrom::East)]
    #[serde(skip_serializing_if = "LookFrom::is_east")]
    pub look_from: LookFrom,
    /// CRS of the scene (UTM zone 31N by default)
    #[arg(skip = SynthParams::default().epsg)]
    pub epsg: u32,
    /// Easting, northing of the top-left corner
    #[arg(skip = SynthParams::default().origin)]
    pub origin: [f64; 2],
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            size: 1024,
            pixel_size: 2.0,
            seed: 0,
            looks: 4.0,
            building_density: 300.0,
            road_spacing: 250.0,
            parcel_density: 60.0,
            water_fraction: 0.06,
            haze: 0.03,
            incidence: 35.0,
            look_from: LookFrom::East,
            epsg: 32631,
            origin: [500000.0, 5000000.0],
        }
    }
}

/// The SAR's look direction (a right-looking sensor on an ascending or descending pass, seen
/// from a north-up grid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LookFrom {
    East,
    West,
}

impl LookFrom {
    fn is_east(&self) -> bool {
        *self == LookFrom::East
    }
    /// +1 when the radar looks from the east (towards −x), −1 from the west.
    pub fn sign(self) -> f64 {
        match self {
            LookFrom::East => 1.0,
            LookFrom::West => -1.0,
        }
    }
}

// Scenes at the default geometry keep the scene.json (and resume key) they had before these
// keys existed.
fn is_default_incidence(v: &f64) -> bool {
    *v == SynthParams::default().incidence
}

impl SynthParams {
    pub fn check(&self) -> Result<()> {
        if !(10.0..=60.0).contains(&self.incidence) {
            bail!("synth incidence must be within 10..=60 degrees, not {}", self.incidence);
        }
        if self.size < 16 || self.size > 32768 {
            bail!("synth size must be within 16..=32768 pixels, not {}", self.size);
        }
        if !(self.pixel_size > 0.0 && self.pixel_size.is_finite()) {
            bail!("synth pixel size must be positive, not {}", self.pixel_size);
        }
        if !(self.looks >= 1.0 && self.looks.is_finite()) {
            bail!("synth looks must be at least 1, not {}", self.looks);
        }
        for (name, v) in [
            ("building density", self.building_density),
            ("road spacing", self.road_spacing),
            ("parcel density", self.parcel_density),
            ("haze", self.haze),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("synth {name} must be a non-negative number, not {v}");
            }
        }
        if !(0.0..0.9).contains(&self.water_fraction) {
            bail!("synth water fraction must be within [0, 0.9), not {}", self.water_fraction);
        }
        Ok(())
    }

    pub fn geotransform(&self) -> [f64; 6] {
        [self.origin[0], self.pixel_size, 0.0, self.origin[1], 0.0, -self.pixel_size]
    }
}

/// What `simreg synth` writes and reports (`scene.json`: file names relative to the scene's
/// directory; the returned summary has full paths).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SynthSummary {
    pub out: PathBuf,
    pub optical: PathBuf,
    pub sar: PathBuf,
    pub map_raster: PathBuf,
    pub map_vector: PathBuf,
    pub n_buildings: usize,
    pub n_roads: usize,
    pub n_parcels: usize,
    pub params: SynthParams,
}

impl JsonArtefact for SynthSummary {
    const WHAT: &'static str = "synthetic scene description";
    const MADE_BY: &'static str = "simreg synth";
}

impl std::fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "synthetic scene in {}: {}x{} px at {} m, {} buildings, {} roads, {} parcels",
            self.out.display(),
            self.params.size,
            self.params.size,
            self.params.pixel_size,
            self.n_buildings,
            self.n_roads,
            self.n_parcels
        )
    }
}
