//! Window-by-window raster I/O for alignment: reading regions (NaN past the raster's edges and
//! at nodata), scene statistics from a decimated read, and tiled work files that become
//! Cloud-Optimised GeoTIFFs at the end. Nothing here holds a whole scene in memory.
use crate::raster::{one_line, open::open_dataset, Grid};
use crate::tiling::stats::{summarise, BandStats, StatScale};
use anyhow::{bail, Context, Result};
use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::spatial_ref::SpatialRef;
use gdal::{Dataset, DriverManager, Metadata};
use std::path::{Path, PathBuf};

/// A raster opened for reading regions; errors name `role` and the file.
pub struct Reader {
    pub path: PathBuf,
    pub role: String,
    ds: Dataset,
    pub width: usize,
    pub height: usize,
    nodata: Vec<Option<f64>>,
}

impl Reader {
    pub fn open(path: &Path, role: &str) -> Result<Reader> {
        let ds = open_dataset(path, role)?;
        let (width, height) = ds.raster_size();
        let nodata = (1..=ds.raster_count())
            .map(|b| ds.rasterband(b).ok().and_then(|b| b.no_data_value()))
            .collect();
        Ok(Reader { path: path.to_path_buf(), role: role.to_string(), ds, width, height, nodata })
    }

    pub fn band_count(&self) -> usize {
        self.nodata.len()
    }

    fn fail(&self, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "{} '{}': cannot read pixels (truncated or corrupt?): {}",
            self.role,
            self.path.display(),
            one_line(e)
        )
    }

    /// Band `b` (1-based) over the w × h window whose top-left pixel is (x0, y0); the window may
    /// run past the raster (NaN there). Nodata and non-finite values are NaN.
    pub fn region(&self, b: usize, x0: i64, y0: i64, w: usize, h: usize) -> Result<Vec<f32>> {
        let mut out = vec![f32::NAN; w * h];
        let (cx0, cy0) = (x0.max(0), y0.max(0));
        let (cx1, cy1) =
            ((x0 + w as i64).min(self.width as i64), (y0 + h as i64).min(self.height as i64));
        if cx1 <= cx0 || cy1 <= cy0 {
            return Ok(out);
        }
        let (rw, rh) = ((cx1 - cx0) as usize, (cy1 - cy0) as usize);
        let band = self.ds.rasterband(b).map_err(|e| self.fail(e))?;
        let buf = band
            .read_as::<f32>((cx0 as isize, cy0 as isize), (rw, rh), (rw, rh), None)
            .map_err(|e| self.fail(e))?;
        let nd = self.nodata[b - 1];
        let data = buf.data();
        for r in 0..rh {
            let dst = &mut out[(r + (cy0 - y0) as usize) * w + (cx0 - x0) as usize..][..rw];
            for (d, &v) in dst.iter_mut().zip(&data[r * rw..][..rw]) {
                *d = if !v.is_finite() || nd.is_some_and(|n| v as f64 == n || (n as f32) == v) {
                    f32::NAN
                } else {
                    v
                };
            }
        }
        Ok(out)
    }

    /// Band `b` read at a reduced resolution (nearest neighbour) of at most ~`max_pixels`
    /// pixels: GDAL reads it block by block (or from overviews), so memory stays bounded.
    pub fn decimated(&self, b: usize, max_pixels: usize) -> Result<Vec<f32>> {
        let f =
            ((self.width * self.height) as f64 / max_pixels as f64).sqrt().ceil().max(1.0) as usize;
        let (w, h) = (self.width.div_ceil(f), self.height.div_ceil(f));
        let band = self.ds.rasterband(b).map_err(|e| self.fail(e))?;
        let buf = band
            .read_as::<f32>((0, 0), (self.width, self.height), (w, h), None)
            .map_err(|e| self.fail(e))?;
        let nd = self.nodata[b - 1];
        Ok(buf
            .data()
            .iter()
            .map(
                |&v| {
                    if !v.is_finite() || nd.is_some_and(|n| (n as f32) == v) {
                        f32::NAN
                    } else {
                        v
                    }
                },
            )
            .collect())
    }

    /// Robust statistics of band `b` on `scale` (as the tile stage computes them for training),
    /// from a decimated read of ~1 M pixels. An all-nodata band is an error.
    pub fn band_stats(&self, b: usize, scale: StatScale) -> Result<BandStats> {
        let px = self.decimated(b, 1 << 20)?;
        let sample: Vec<f32> =
            px.iter().filter_map(|&v| if v.is_finite() { scale.apply(v) } else { None }).collect();
        match summarise(sample, scale) {
            Some(s) => Ok(s),
            None => bail!(
                "{} '{}': band {b} has no valid pixel (all nodata or NaN)",
                self.role,
                self.path.display()
            ),
        }
    }
}

/// A Float32 tiled GeoTIFF written block by block (a work file), turned into a COG at the end.
pub struct WorkRaster {
    ds: Dataset,
    path: PathBuf,
}

impl WorkRaster {
    pub fn create(
        path: &Path,
        grid: &Grid,
        descriptions: &[String],
        metadata: &[(&str, String)],
    ) -> Result<WorkRaster> {
        crate::raster::init_gdal();
        let driver = DriverManager::get_driver_by_name("GTiff")?;
        let co = RasterCreationOptions::from_iter([
            "TILED=YES",
            "BLOCKXSIZE=512",
            "BLOCKYSIZE=512",
            "BIGTIFF=IF_SAFER",
            "INTERLEAVE=BAND",
        ]);
        let mut ds = driver
            .create_with_band_type_with_options::<f32, _>(
                path,
                grid.width,
                grid.height,
                descriptions.len(),
                &co,
            )
            .with_context(|| format!("cannot create '{}'", path.display()))?;
        ds.set_geo_transform(&grid.geotransform)?;
        if !grid.crs_wkt.is_empty() {
            ds.set_spatial_ref(&SpatialRef::from_wkt(&grid.crs_wkt)?)?;
        }
        for (k, v) in metadata {
            ds.set_metadata_item(k, v, "")?;
        }
        for (i, d) in descriptions.iter().enumerate() {
            let mut band = ds.rasterband(i + 1)?;
            band.set_no_data_value(Some(f64::NAN))?;
            band.set_description(d)?;
        }
        Ok(WorkRaster { ds, path: path.to_path_buf() })
    }

    /// Writes `data` (w × h, row-major) into band `b` (1-based) at (x0, y0).
    pub fn write(
        &mut self,
        b: usize,
        x0: usize,
        y0: usize,
        w: usize,
        h: usize,
        data: Vec<f32>,
    ) -> Result<()> {
        let mut band = self.ds.rasterband(b)?;
        let mut buf = Buffer::new((w, h), data);
        band.write((x0 as isize, y0 as isize), (w, h), &mut buf)
            .with_context(|| format!("cannot write '{}'", self.path.display()))?;
        Ok(())
    }

    /// Copies the work file into a COG (DEFLATE, 512-px blocks, overviews) at `dst`, under a
    /// temporary name then renamed, and removes the work file.
    pub fn into_cog(self, dst: &Path) -> Result<()> {
        let WorkRaster { mut ds, path } = self;
        ds.flush_cache()?;
        let tmp = crate::raster::write::temp_path(dst);
        let result = (|| -> Result<()> {
            let driver = DriverManager::get_driver_by_name("COG")
                .context("GDAL has no COG driver (GDAL ≥ 3.1 needed)")?;
            let co = RasterCreationOptions::from_iter([
                "COMPRESS=DEFLATE",
                "PREDICTOR=YES",
                "BLOCKSIZE=512",
                "BIGTIFF=IF_SAFER",
                "OVERVIEW_RESAMPLING=AVERAGE",
            ]);
            let cog = ds.create_copy(&driver, &tmp, &co)?;
            cog.close()?;
            Ok(())
        })();
        drop(ds);
        let _ = std::fs::remove_file(&path);
        match result {
            Ok(()) => std::fs::rename(&tmp, dst)
                .with_context(|| format!("cannot rename onto '{}'", dst.display())),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e.context(format!("cannot write COG '{}'", dst.display())))
            }
        }
    }
}
