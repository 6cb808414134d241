//! Vector maps (building footprints, roads) burnt onto a raster grid: a fill and an edge channel.
use super::Grid;
use crate::util::text::one_line;
use anyhow::{bail, Result};
use gdal::raster::{rasterize, RasterizeOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{Geometry, LayerAccess};
use gdal::{Dataset, DriverManager};
use image::{GrayImage, Luma};
use imageproc::distance_transform::Norm;
use std::path::Path;

/// A rasterised vector map on a grid: `fill` is 1 inside polygons and on lines, `edge` is 1 on
/// the outermost pixels of every burnt shape (polygon outlines; lines are their own edge).
pub struct MapRaster {
    pub fill: Vec<f32>,
    pub edge: Vec<f32>,
    pub n_features: usize,
}

pub fn rasterize_vector(path: &Path, role: &str, grid: &Grid) -> Result<MapRaster> {
    super::init_gdal();
    let shown = path.display();
    let ds = Dataset::open(path).map_err(|e| {
        anyhow::anyhow!("{role} '{shown}': cannot open as a vector map: {}", one_line(e))
    })?;
    if ds.layer_count() == 0 {
        bail!("{role} '{shown}': has no vector layers");
    }
    let target = if grid.crs_wkt.is_empty() {
        None
    } else {
        let mut t = SpatialRef::from_wkt(&grid.crs_wkt)?;
        t.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        Some(t)
    };
    let mut geoms: Vec<Geometry> = Vec::new();
    for mut layer in ds.layers() {
        let transform = match (layer.spatial_ref(), &target) {
            (Some(mut s), Some(t)) if s != *t => {
                s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
                Some(CoordTransform::new(&s, t).map_err(|e| {
                    anyhow::anyhow!(
                        "{role} '{shown}': its CRS cannot be transformed to the reference CRS: {}",
                        one_line(e)
                    )
                })?)
            }
            _ => None,
        };
        for feature in layer.features() {
            let Some(g) = feature.geometry() else { continue };
            let g = match &transform {
                Some(ct) => g.transform(ct).map_err(|e| {
                    anyhow::anyhow!(
                        "{role} '{shown}': cannot transform a geometry: {}",
                        one_line(e)
                    )
                })?,
                None => g.clone(),
            };
            geoms.push(g);
        }
    }
    if geoms.is_empty() {
        bail!("{role} '{shown}': contains no geometries");
    }
    let mut mem = DriverManager::get_driver_by_name("MEM")?.create_with_band_type::<u8, _>(
        "",
        grid.width,
        grid.height,
        1,
    )?;
    mem.set_geo_transform(&grid.geotransform)?;
    if !grid.crs_wkt.is_empty() {
        mem.set_projection(&grid.crs_wkt)?;
    }
    let burn = vec![1.0; geoms.len()];
    rasterize(&mut mem, &[1], &geoms, &burn, Some(RasterizeOptions::default()))
        .map_err(|e| anyhow::anyhow!("{role} '{shown}': rasterising failed: {}", one_line(e)))?;
    let buf = mem.rasterband(1)?.read_band_as::<u8>()?;
    let (_, fill_u8) = buf.into_shape_and_vec();
    if !fill_u8.iter().any(|&v| v > 0) {
        bail!("{role} '{shown}': no feature falls on the reference raster (no overlap)");
    }
    let img = GrayImage::from_raw(
        grid.width as u32,
        grid.height as u32,
        fill_u8.iter().map(|&v| v * 255).collect(),
    )
    .expect("buffer size matches the grid");
    // Edge = filled pixels whose 4-neighbourhood leaves the shape.
    let eroded = imageproc::morphology::erode(&img, Norm::L1, 1);
    let edge = img
        .pixels()
        .zip(eroded.pixels())
        .map(|(Luma([a]), Luma([b]))| if *a > 0 && *b == 0 { 1.0 } else { 0.0 })
        .collect();
    let fill = fill_u8.iter().map(|&v| v as f32).collect();
    Ok(MapRaster { fill, edge, n_features: geoms.len() })
}
