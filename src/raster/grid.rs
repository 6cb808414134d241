//! A raster grid: CRS, affine geotransform and size.
use serde::{Deserialize, Serialize};

/// Where pixels are on the ground. `geotransform` is GDAL's:
/// x = gt[0] + col·gt[1] + row·gt[2], y = gt[3] + col·gt[4] + row·gt[5] (pixel corners).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// OGC WKT of the CRS ("" when the raster has none).
    pub crs_wkt: String,
    /// EPSG code when GDAL can identify one (informative only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsg: Option<u32>,
    pub geotransform: [f64; 6],
    pub width: usize,
    pub height: usize,
}

impl Grid {
    /// North-up with no rotation: the only kind we tile (and warp other grids onto).
    pub fn is_north_up(&self) -> bool {
        self.geotransform[2] == 0.0
            && self.geotransform[4] == 0.0
            && self.geotransform[1] > 0.0
            && self.geotransform[5] < 0.0
    }

    /// The geotransform of the window whose top-left pixel is (col, row): the same affine map
    /// shifted by whole pixels, computed exactly as GDAL does for a sub-window.
    pub fn window_geotransform(&self, col: i64, row: i64) -> [f64; 6] {
        let g = self.geotransform;
        let (c, r) = (col as f64, row as f64);
        [g[0] + c * g[1] + r * g[2], g[1], g[2], g[3] + c * g[4] + r * g[5], g[4], g[5]]
    }

    /// (xmin, ymin, xmax, ymax) in CRS units, for a north-up grid.
    pub fn bounds(&self) -> [f64; 4] {
        let g = self.geotransform;
        let x0 = g[0];
        let x1 = g[0] + self.width as f64 * g[1];
        let y0 = g[3];
        let y1 = g[3] + self.height as f64 * g[5];
        [x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1)]
    }

    /// Same geotransform (to 1e-9 of a pixel) and size; CRS equality is checked with GDAL.
    pub fn same_geometry(&self, other: &Grid) -> bool {
        let tol = 1e-9 * self.geotransform[1].abs().max(self.geotransform[5].abs());
        self.width == other.width
            && self.height == other.height
            && self
                .geotransform
                .iter()
                .zip(other.geotransform.iter())
                .all(|(a, b)| (a - b).abs() <= tol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid {
            crs_wkt: String::new(),
            epsg: None,
            geotransform: [500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0],
            width: 100,
            height: 50,
        }
    }

    #[test]
    fn window_geotransform_offsets_by_whole_pixels() {
        let g = grid();
        assert_eq!(g.window_geotransform(3, 7), [500030.0, 10.0, 0.0, 4099930.0, 0.0, -10.0]);
        assert_eq!(g.window_geotransform(-2, 0)[0], 499980.0);
    }

    #[test]
    fn bounds_and_orientation() {
        let g = grid();
        assert!(g.is_north_up());
        assert_eq!(g.bounds(), [500000.0, 4099500.0, 501000.0, 4100000.0]);
        let mut r = g.clone();
        r.geotransform[2] = 0.1;
        assert!(!r.is_north_up());
        assert!(!g.same_geometry(&r));
    }
}

/// A window in a grid's pixels; `col`/`row` of its top-left pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub col: i64,
    pub row: i64,
    pub width: usize,
    pub height: usize,
}
