//! Reading raster bands as f32, with one nodata rule for every stage: a pixel is nodata (NaN)
//! when it is not finite or equals its band's declared nodata value. Whatever the file's data
//! type (Byte, UInt16, Float32, ...), callers see f32 with NaN for nodata.
use super::grid::Window;
use super::open::open_dataset;
use crate::util::text::one_line;
use anyhow::{bail, Result};
use gdal::raster::GdalType;
use gdal::Dataset;
use std::path::{Path, PathBuf};

/// The nodata rule: not finite, or the band's nodata value (compared in f64 and at f32
/// precision, as the value was stored).
pub fn is_nodata(v: f32, nodata: Option<f64>) -> bool {
    !v.is_finite() || nodata.is_some_and(|n| v as f64 == n || n as f32 == v)
}

/// Marks `px` as nodata (NaN) where `alpha`, a warping VRT's alpha band, is 0.
pub fn nan_where_alpha_is_zero(px: &mut [f32], alpha: &[f32]) {
    for (p, &a) in px.iter_mut().zip(alpha) {
        if a == 0.0 {
            *p = f32::NAN;
        }
    }
}

/// A raster opened for reading bands and regions; errors name it by `label` (e.g.
/// "moving 'sar.tif'", which may be the user's file behind a warped copy).
pub struct BandReader {
    pub path: PathBuf,
    pub label: String,
    ds: Dataset,
    pub width: usize,
    pub height: usize,
    nodata: Vec<Option<f64>>,
}

impl BandReader {
    /// Opens `path`; `role` names it in errors ("reference", "tile", ...).
    pub fn open(path: &Path, role: &str) -> Result<BandReader> {
        BandReader::open_as(path, role, format!("{role} '{}'", path.display()))
    }

    /// Opens `path`, naming it `label` in errors about its pixels.
    pub fn open_as(path: &Path, role: &str, label: String) -> Result<BandReader> {
        let ds = open_dataset(path, role)?;
        let (width, height) = ds.raster_size();
        let nodata = (1..=ds.raster_count())
            .map(|b| ds.rasterband(b).ok().and_then(|b| b.no_data_value()))
            .collect();
        Ok(BandReader { path: path.to_path_buf(), label, ds, width, height, nodata })
    }

    pub fn band_count(&self) -> usize {
        self.nodata.len()
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: cannot read {what} (truncated or corrupt file?): {}",
            self.label,
            one_line(e)
        )
    }

    fn check_band(&self, b: usize) -> Result<()> {
        if b == 0 || b > self.band_count() {
            bail!("{}: has {} band(s), band {b} was asked for", self.label, self.band_count());
        }
        Ok(())
    }

    /// Band `b` (1-based) over the w × h window whose top-left pixel is (x0, y0); the window
    /// may run past the raster (NaN there). Nodata is NaN.
    pub fn region(&self, b: usize, x0: i64, y0: i64, w: usize, h: usize) -> Result<Vec<f32>> {
        let (mut out, _) = self.region_as::<f32>(b, x0, y0, w, h, f32::NAN)?;
        let nd = self.nodata[b - 1];
        for v in &mut out {
            if is_nodata(*v, nd) {
                *v = f32::NAN;
            }
        }
        Ok(out)
    }

    /// Band `b`'s samples as GDAL gives them in type T (no nodata rule applied) over the
    /// w × h window at (x0, y0), `fill` where the window runs past the raster; and whether
    /// the window lies wholly inside it.
    pub fn region_as<T: GdalType + Copy>(
        &self,
        b: usize,
        x0: i64,
        y0: i64,
        w: usize,
        h: usize,
        fill: T,
    ) -> Result<(Vec<T>, bool)> {
        self.check_band(b)?;
        let (cx0, cy0) = (x0.max(0), y0.max(0));
        let (cx1, cy1) =
            ((x0 + w as i64).min(self.width as i64), (y0 + h as i64).min(self.height as i64));
        if cx1 <= cx0 || cy1 <= cy0 {
            return Ok((vec![fill; w * h], false));
        }
        let (rw, rh) = ((cx1 - cx0) as usize, (cy1 - cy0) as usize);
        let what = || format!("pixels ({cx0},{cy0})+{rw}x{rh} of band {b}");
        let band = self.ds.rasterband(b).map_err(|e| self.fail(&what(), e))?;
        let buf = band
            .read_as::<T>((cx0 as isize, cy0 as isize), (rw, rh), (rw, rh), None)
            .map_err(|e| self.fail(&what(), e))?;
        let (_, data) = buf.into_shape_and_vec();
        if (rw, rh) == (w, h) {
            return Ok((data, true));
        }
        let mut out = vec![fill; w * h];
        for r in 0..rh {
            let dst = &mut out[(r + (cy0 - y0) as usize) * w + (cx0 - x0) as usize..][..rw];
            dst.copy_from_slice(&data[r * rw..][..rw]);
        }
        Ok((out, false))
    }

    /// The window `win` of band `b` (see `region`).
    pub fn window(&self, b: usize, win: Window) -> Result<Vec<f32>> {
        self.region(b, win.col, win.row, win.width, win.height)
    }

    /// The window `win` of band `b` (see `region`), and NaN where band `mask` (an alpha band
    /// of a warping VRT) is 0.
    pub fn window_masked(&self, b: usize, mask: Option<usize>, win: Window) -> Result<Vec<f32>> {
        let mut px = self.window(b, win)?;
        if let Some(m) = mask {
            let (alpha, _) = self.region_as(m, win.col, win.row, win.width, win.height, 0f32)?;
            nan_where_alpha_is_zero(&mut px, &alpha);
        }
        Ok(px)
    }

    /// The whole of band `b`.
    pub fn band(&self, b: usize) -> Result<Vec<f32>> {
        self.region(b, 0, 0, self.width, self.height)
    }

    /// Band `b` read at a reduced resolution (nearest neighbour) of at most ~`max_pixels`
    /// pixels: GDAL reads it block by block (or from overviews), so memory stays bounded.
    pub fn decimated(&self, b: usize, max_pixels: usize) -> Result<Vec<f32>> {
        self.check_band(b)?;
        let f =
            ((self.width * self.height) as f64 / max_pixels as f64).sqrt().ceil().max(1.0) as usize;
        let (w, h) = (self.width.div_ceil(f), self.height.div_ceil(f));
        let what = || format!("band {b}");
        let band = self.ds.rasterband(b).map_err(|e| self.fail(&what(), e))?;
        let buf = band
            .read_as::<f32>((0, 0), (self.width, self.height), (w, h), None)
            .map_err(|e| self.fail(&what(), e))?;
        let nd = self.nodata[b - 1];
        Ok(buf.data().iter().map(|&v| if is_nodata(v, nd) { f32::NAN } else { v }).collect())
    }
}

/// Bands `indices` (1-based; every band when None) of a whole raster, and its width and
/// height; `role` names the file in errors.
pub fn read_bands(
    path: &Path,
    indices: Option<&[usize]>,
    role: &str,
) -> Result<(Vec<Vec<f32>>, usize, usize)> {
    let r = BandReader::open(path, role)?;
    let all: Vec<usize> = (1..=r.band_count()).collect();
    let bands = indices.unwrap_or(&all).iter().map(|&b| r.band(b)).collect::<Result<_>>()?;
    Ok((bands, r.width, r.height))
}

/// Rasters opened so far by one worker, one per file (a rayon `map_init` state), so that a
/// worker reading many windows of a few files opens each once.
#[derive(Default)]
pub struct OpenFiles(Vec<BandReader>);

impl OpenFiles {
    /// The reader of `path`, opened on first use; `label` names it in errors.
    pub fn get(
        &mut self,
        path: &Path,
        role: &str,
        label: impl FnOnce() -> String,
    ) -> Result<&BandReader> {
        let i = match self.0.iter().position(|r| r.path == path) {
            Some(i) => i,
            None => {
                self.0.push(BandReader::open_as(path, role, label())?);
                self.0.len() - 1
            }
        };
        Ok(&self.0[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_nodata_rule() {
        assert!(is_nodata(f32::NAN, None) && is_nodata(f32::INFINITY, None));
        assert!(!is_nodata(0.0, None) && !is_nodata(-9999.0, Some(0.0)));
        assert!(is_nodata(-9999.0, Some(-9999.0)));
        // A nodata value not representable in f32 still matches the value as stored.
        assert!(is_nodata(0.1f32, Some(0.1)));
    }
}
