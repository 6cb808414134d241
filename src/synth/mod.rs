//! `simreg synth`: procedural multimodal scenes whose geometry is known exactly.
//!
//! One geometry (parcels, water, roads, buildings with heights) rendered three ways: optical
//! reflectance (B, G, R, NIR) with texture, cast shadows and haze; SAR-like VV/VH backscatter in
//! dB with gamma speckle, double bounce along walls facing the sensor and radar shadow; and a map
//! (building fill/edge and road centrelines as a raster, polygons and lines as GeoJSON).
//! The SAR radiometry is deliberately not a monotone function of the optical one.
pub mod geometry;
pub mod render;

use crate::raster::write::{write_f32_geotiff, BandData, GeoTiffOptions};
use crate::util::atomic;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Scene parameters (all recorded in `scene.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthParams {
    /// Width and height in pixels.
    #[serde(default = "d_size")]
    pub size: usize,
    /// Ground sampling distance, metres.
    #[serde(default = "d_pixel")]
    pub pixel_size: f64,
    #[serde(default)]
    pub seed: u64,
    /// Equivalent number of looks of the SAR speckle (gamma-distributed intensity).
    #[serde(default = "d_looks")]
    pub looks: f64,
    /// Buildings per km².
    #[serde(default = "d_buildings")]
    pub building_density: f64,
    /// Mean spacing of the road grid, metres.
    #[serde(default = "d_roads")]
    pub road_spacing: f64,
    /// Agricultural/vegetation parcels per km².
    #[serde(default = "d_parcels")]
    pub parcel_density: f64,
    /// Fraction of the scene covered by water (approximately).
    #[serde(default = "d_water")]
    pub water_fraction: f64,
    /// Haze strength (additive path radiance, strongest in blue).
    #[serde(default = "d_haze")]
    pub haze: f64,
    /// UTM zone 31N by default.
    #[serde(default = "d_epsg")]
    pub epsg: u32,
    /// Easting, northing of the top-left corner.
    #[serde(default = "d_origin")]
    pub origin: [f64; 2],
}

fn d_size() -> usize {
    1024
}
fn d_pixel() -> f64 {
    2.0
}
fn d_looks() -> f64 {
    4.0
}
fn d_buildings() -> f64 {
    300.0
}
fn d_roads() -> f64 {
    250.0
}
fn d_parcels() -> f64 {
    60.0
}
fn d_water() -> f64 {
    0.06
}
fn d_haze() -> f64 {
    0.03
}
fn d_epsg() -> u32 {
    32631
}
fn d_origin() -> [f64; 2] {
    [500000.0, 5000000.0]
}

impl Default for SynthParams {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

impl SynthParams {
    pub fn check(&self) -> Result<()> {
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

/// Generates a scene into `out` (created; files written atomically; same seed → same bytes).
pub fn run(params: &SynthParams, out: &Path) -> Result<SynthSummary> {
    params.check()?;
    let s =
        atomic::build_dir(out, "scene.json", |_| false, |partial| write_scene(params, partial))?;
    Ok(with_paths_in(s, out))
}

/// The scene already in `out` when it was made with `params` (generation is deterministic, so
/// it need not be made again), else a new one.
pub fn ensure(params: &SynthParams, out: &Path) -> Result<SynthSummary> {
    let existing = std::fs::read_to_string(out.join("scene.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<SynthSummary>(&t).ok());
    match existing {
        Some(s) if s.params == *params => Ok(with_paths_in(s, out)),
        _ => run(params, out),
    }
}

/// `scene.json` holds file names; the summary returned to callers holds paths under `out`.
fn with_paths_in(mut s: SynthSummary, out: &Path) -> SynthSummary {
    s.out = out.to_path_buf();
    for p in [&mut s.optical, &mut s.sar, &mut s.map_raster, &mut s.map_vector] {
        *p = out.join(&*p);
    }
    s
}

fn write_scene(params: &SynthParams, out: &Path) -> Result<SynthSummary> {
    let geo = geometry::Scene::generate(params);
    let img = render::render(&geo, params);
    let wkt = gdal::spatial_ref::SpatialRef::from_epsg(params.epsg)?.to_wkt()?;
    let gt = params.geotransform();
    let n = params.size;
    let opts = GeoTiffOptions { deflate: true };
    let band = |d: &str, p: Vec<f32>| BandData { description: d.into(), pixels: p };
    let [b, g, r, nir] = img.optical;
    let optical = out.join("optical.tif");
    write_f32_geotiff(
        &optical,
        &wkt,
        gt,
        n,
        n,
        vec![band("B", b), band("G", g), band("R", r), band("NIR", nir)],
        &[("SIMREG_UNITS", "reflectance".into())],
        opts,
    )?;
    let [vv, vh] = img.sar_db;
    let sar = out.join("sar.tif");
    write_f32_geotiff(
        &sar,
        &wkt,
        gt,
        n,
        n,
        vec![band("VV", vv), band("VH", vh)],
        &[("SIMREG_UNITS", "dB".into()), ("SIMREG_LOOKS", params.looks.to_string())],
        opts,
    )?;
    let [fill, edge, roads] = img.map;
    let map_raster = out.join("map.tif");
    write_f32_geotiff(
        &map_raster,
        &wkt,
        gt,
        n,
        n,
        vec![
            band("building_fill", fill),
            band("building_edge", edge),
            band("road_centreline", roads),
        ],
        &[],
        opts,
    )?;
    let map_vector = out.join("map.geojson");
    atomic::write_bytes(&map_vector, geo.to_geojson(params).as_bytes())?;
    let rel = |p: &Path| PathBuf::from(p.file_name().expect("a file"));
    let summary = SynthSummary {
        out: PathBuf::new(),
        optical: rel(&optical),
        sar: rel(&sar),
        map_raster: rel(&map_raster),
        map_vector: rel(&map_vector),
        n_buildings: geo.buildings.len(),
        n_roads: geo.roads.len(),
        n_parcels: geo.parcels.len(),
        params: params.clone(),
    };
    atomic::write_json(&out.join("scene.json"), &summary)?;
    Ok(summary)
}
