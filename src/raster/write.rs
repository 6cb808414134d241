//! Writing Float32 GeoTIFFs atomically: a temporary name, then a rename.
use anyhow::{Context, Result};
use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::spatial_ref::SpatialRef;
use gdal::{DriverManager, Metadata};
use std::cell::RefCell;
use std::path::Path;

/// One band to write: its description (e.g. "reference:B02:b1") and row-major pixels.
pub struct BandData {
    pub description: String,
    pub pixels: Vec<f32>,
}

/// Output options for tiles and work files.
#[derive(Clone, Copy, Debug)]
pub struct GeoTiffOptions {
    /// DEFLATE compression (smaller, slower); uncompressed otherwise.
    pub deflate: bool,
}

/// Runs `f` with the CRS parsed from `wkt`, parsed once per thread: parsing WKT (PROJ database
/// look-ups) cost ~15 % of tiling time when done for every tile.
fn with_srs<R>(wkt: &str, f: impl FnOnce(&SpatialRef) -> gdal::errors::Result<R>) -> Result<R> {
    thread_local! {
        static CACHE: RefCell<Option<(String, SpatialRef)>> = const { RefCell::new(None) };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(w, _)| w != wkt) {
            *c = Some((wkt.to_string(), SpatialRef::from_wkt(wkt)?));
        }
        Ok(f(&c.as_ref().expect("just set").1)?)
    })
}

/// Writes a Float32 GeoTIFF with NaN as nodata. `metadata` items go in the default domain.
#[allow(clippy::too_many_arguments)]
pub fn write_f32_geotiff(
    path: &Path,
    crs_wkt: &str,
    geotransform: [f64; 6],
    width: usize,
    height: usize,
    bands: Vec<BandData>,
    metadata: &[(&str, String)],
    opts: GeoTiffOptions,
) -> Result<()> {
    super::init_gdal();
    let tmp = crate::util::atomic::temp_path(path);
    let n_bands = bands.len();
    let tmp_ref = &tmp;
    let result = (move || -> Result<()> {
        let driver = DriverManager::get_driver_by_name("GTiff")?;
        let mut co = vec!["INTERLEAVE=BAND"];
        if opts.deflate {
            co.extend(["COMPRESS=DEFLATE", "PREDICTOR=3"]);
        }
        let co = RasterCreationOptions::from_iter(co);
        let mut ds = driver
            .create_with_band_type_with_options::<f32, _>(tmp_ref, width, height, n_bands, &co)?;
        ds.set_geo_transform(&geotransform)?;
        if !crs_wkt.is_empty() {
            with_srs(crs_wkt, |srs| ds.set_spatial_ref(srs))?;
        }
        for (k, v) in metadata {
            ds.set_metadata_item(k, v, "")?;
        }
        for (i, b) in bands.into_iter().enumerate() {
            let mut band = ds.rasterband(i + 1)?;
            band.set_no_data_value(Some(f64::NAN))?;
            band.set_description(&b.description)?;
            let mut buf = Buffer::new((width, height), b.pixels);
            band.write((0, 0), (width, height), &mut buf)?;
        }
        ds.close()?;
        Ok(())
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename onto '{}'", path.display())),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.context(format!("cannot write '{}'", path.display())))
        }
    }
}
