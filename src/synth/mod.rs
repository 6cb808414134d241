//! `simreg synth`: procedural multimodal scenes whose geometry is known exactly.
//!
//! One geometry (parcels, water, roads, buildings with heights) rendered three ways: optical
//! reflectance (B, G, R, NIR) with texture, cast shadows and haze; SAR-like VV/VH backscatter in
//! dB with gamma speckle, double bounce along walls facing the sensor and radar shadow; and a map
//! (building fill/edge and road centrelines as a raster, polygons and lines as GeoJSON).
//! The SAR radiometry is deliberately not a monotone function of the optical one.
pub mod geometry;
pub mod render;

use crate::artefacts::synth::{SynthDir, SynthParams, SynthSummary};
use crate::artefacts::{read_json, write_json};
use crate::raster::write::{write_geotiff, BandData, Compression, GeoTiffOptions};
use crate::util::{atomic, output};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Generates a scene into `out` (created; files written atomically; same seed → same bytes).
pub fn run(params: &SynthParams, out: &Path) -> Result<SynthSummary> {
    params.check()?;
    let s = output::build_dir(out, "synth", &[], |partial| write_scene(params, partial))?;
    Ok(with_paths_in(s, out))
}

/// The scene already in `out` when it was made with `params` (generation is deterministic, so
/// it need not be made again), else a new one.
pub fn ensure(params: &SynthParams, out: &Path) -> Result<SynthSummary> {
    let existing = read_json::<SynthSummary>(&SynthDir::new(out).scene_json()).ok();
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
    let dir = SynthDir::new(out);
    let geo = geometry::Scene::generate(params);
    let img = render::render(&geo, params);
    let wkt = gdal::spatial_ref::SpatialRef::from_epsg(params.epsg)?.to_wkt()?;
    let gt = params.geotransform();
    let n = params.size;
    let opts = GeoTiffOptions::compressed(Compression::Deflate);
    let band = |d: &str, p: Vec<f32>| BandData { description: d.into(), pixels: p };
    let [b, g, r, nir] = img.optical;
    let optical = dir.optical_tif();
    write_geotiff(
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
    let sar = dir.sar_tif();
    write_geotiff(
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
    let map_raster = dir.map_tif();
    write_geotiff(
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
    let map_vector = dir.map_geojson();
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
    write_json(&dir.scene_json(), &summary)?;
    Ok(summary)
}
