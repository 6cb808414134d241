//! Raster I/O for alignment beyond reading regions (`raster::bands`): scene statistics from a
//! decimated read, and tiled work files that become Cloud-Optimised GeoTIFFs at the end.
//! Nothing here holds a whole scene in memory.
use crate::raster::bands::BandReader;
use crate::raster::stats::{summarise, BandStats, StatScale};
use crate::raster::Grid;
use anyhow::{bail, Context, Result};
use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::spatial_ref::SpatialRef;
use gdal::{Dataset, DriverManager, Metadata};
use std::path::{Path, PathBuf};

/// Robust statistics of band `b` on `scale` (as the tile stage computes them for training),
/// from a decimated read of ~1 M pixels. An all-nodata band is an error.
pub fn band_stats(r: &BandReader, b: usize, scale: StatScale) -> Result<BandStats> {
    let px = r.decimated(b, 1 << 20)?;
    let sample: Vec<f32> =
        px.iter().filter_map(|&v| if v.is_finite() { scale.apply(v) } else { None }).collect();
    match summarise(sample, scale) {
        Some(s) => Ok(s),
        None => bail!("{}: band {b} has no valid pixel (all nodata or NaN)", r.label),
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
        let tmp = crate::util::atomic::temp_path(dst);
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
