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
    /// Where this grid's pixel corners fall on `other`'s pixel grid, when the two differ by a
    /// whole-pixel offset up to round-off: `Some((dx, dy, err))` with `self`'s pixel (c, r)
    /// at `other`'s (c + dx, r + dy) to within `err` px over the whole of `self` (its four
    /// corners; the map between two affine grids is affine, so the corners bound it). Both
    /// grids must be in one CRS (checked by the caller). None when the misfit exceeds
    /// `tolerance_px`: then `other` must be resampled onto `self`.
    pub fn whole_pixel_offset(&self, other: &Grid, tolerance_px: f64) -> Option<(i64, i64, f64)> {
        let (a, b) = (self.geotransform, other.geotransform);
        let det = b[1] * b[5] - b[2] * b[4];
        if !(det.is_finite() && det != 0.0) {
            return None;
        }
        // `self`'s pixel (c, r) → ground → `other`'s fractional pixel.
        let to_other = |c: f64, r: f64| {
            let (x, y) = (a[0] + c * a[1] + r * a[2], a[3] + c * a[4] + r * a[5]);
            let (dx, dy) = (x - b[0], y - b[3]);
            ((b[5] * dx - b[2] * dy) / det, (b[1] * dy - b[4] * dx) / det)
        };
        let (c0, r0) = to_other(0.0, 0.0);
        let (ox, oy) = (c0.round(), r0.round());
        let (w, h) = (self.width as f64, self.height as f64);
        let mut err: f64 = 0.0;
        for (c, r) in [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h)] {
            let (u, v) = to_other(c, r);
            err = err.max((u - c - ox).abs()).max((v - r - oy).abs());
        }
        (err <= tolerance_px).then_some((ox as i64, oy as i64, err))
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

    #[test]
    fn whole_pixel_offset_measures_the_misfit_at_the_far_corner() {
        let g = grid();
        assert_eq!(g.whole_pixel_offset(&g, 0.01), Some((0, 0, 0.0)));
        // The other grid starts 3 columns left and 2 rows up of this one: this one's (0, 0)
        // is its (3, 2).
        let mut o = g.clone();
        o.geotransform[0] -= 30.0;
        o.geotransform[3] += 20.0;
        assert_eq!(o.whole_pixel_offset(&g, 0.01).map(|(x, y, _)| (x, y)), Some((-3, -2)));
        assert_eq!(g.whole_pixel_offset(&o, 0.01).map(|(x, y, _)| (x, y)), Some((3, 2)));
        // A pixel size off by 3e-5 relative: 0.003 px across 100 columns, read in place at
        // 0.01 px but not at 0.001.
        let mut s = g.clone();
        s.geotransform[1] *= 1.0 + 3e-5;
        let (_, _, err) = g.whole_pixel_offset(&s, 0.01).expect("within 0.01 px");
        assert!((err - 100.0 * 3e-5 / (1.0 + 3e-5)).abs() < 1e-9, "{err}");
        assert_eq!(g.whole_pixel_offset(&s, 0.001), None);
        // Half a pixel of shift is never a whole-pixel offset.
        let mut h = g.clone();
        h.geotransform[0] += 5.0;
        assert_eq!(g.whole_pixel_offset(&h, 0.4), None);
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
