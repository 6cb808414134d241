//! Where tiles are: centres in the scene CRS and in longitude/latitude, footprints as GeoJSON.
use crate::util::text::one_line;
use anyhow::Result;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};

/// Map coordinates of pixel position (col, row) under a GDAL geotransform.
pub fn pixel_to_map(gt: &[f64; 6], col: f64, row: f64) -> [f64; 2] {
    [gt[0] + col * gt[1] + row * gt[2], gt[3] + col * gt[4] + row * gt[5]]
}

/// Transforms scene-CRS points to WGS 84 longitude/latitude; None when the scene has no CRS.
pub struct ToLonLat(Option<CoordTransform>);

impl ToLonLat {
    pub fn new(crs_wkt: &str) -> Result<ToLonLat> {
        if crs_wkt.is_empty() {
            return Ok(ToLonLat(None));
        }
        let mut src = SpatialRef::from_wkt(crs_wkt)
            .map_err(|e| anyhow::anyhow!("scene CRS is not usable: {}", one_line(e)))?;
        src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let mut dst = SpatialRef::from_epsg(4326)?;
        dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        Ok(ToLonLat(Some(CoordTransform::new(&src, &dst).map_err(|e| {
            anyhow::anyhow!(
                "scene CRS cannot be transformed to longitude/latitude: {}",
                one_line(e)
            )
        })?)))
    }

    /// [lon, lat] of each point, or None without a CRS.
    pub fn apply(&self, pts: &[[f64; 2]]) -> Result<Option<Vec<[f64; 2]>>> {
        let Some(ct) = &self.0 else { return Ok(None) };
        let mut x: Vec<f64> = pts.iter().map(|p| p[0]).collect();
        let mut y: Vec<f64> = pts.iter().map(|p| p[1]).collect();
        let mut z = vec![0.0; pts.len()];
        ct.transform_coords(&mut x, &mut y, &mut z).map_err(|e| {
            anyhow::anyhow!("cannot transform to longitude/latitude: {}", one_line(e))
        })?;
        Ok(Some(x.into_iter().zip(y).map(|(a, b)| [a, b]).collect()))
    }
}

/// The closed ring of a tile's corners (pixel edges) in map coordinates.
pub fn footprint(gt: &[f64; 6], size: usize) -> Vec<[f64; 2]> {
    let s = size as f64;
    [(0.0, 0.0), (s, 0.0), (s, s), (0.0, s), (0.0, 0.0)]
        .iter()
        .map(|&(c, r)| pixel_to_map(gt, c, r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_centre_transforms_to_its_longitude() {
        crate::raster::init_gdal();
        let wkt = SpatialRef::from_epsg(32631).unwrap().to_wkt().unwrap();
        let t = ToLonLat::new(&wkt).unwrap();
        // UTM 31N: easting 500 000 lies on the central meridian, 3° E; northing 5 000 000 ≈ 45.1° N.
        let ll = t.apply(&[[500_000.0, 5_000_000.0]]).unwrap().unwrap();
        assert!((ll[0][0] - 3.0).abs() < 1e-9, "{ll:?}");
        assert!((ll[0][1] - 45.15).abs() < 0.05, "{ll:?}");
        assert!(ToLonLat::new("").unwrap().apply(&[[1.0, 2.0]]).unwrap().is_none());
        let ring = footprint(&[100.0, 2.0, 0.0, 50.0, 0.0, -2.0], 4);
        assert_eq!(ring[2], [108.0, 42.0]);
        assert_eq!(ring.first(), ring.last());
    }
}
