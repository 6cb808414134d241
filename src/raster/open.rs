//! Opening a raster and checking it is usable, with errors that name the file and the problem.
use super::Grid;
use crate::util::text::one_line;
use anyhow::{bail, Result};
use gdal::Dataset;
use std::path::{Path, PathBuf};

/// What we need to know about an input raster before reading it.
#[derive(Clone, Debug)]
pub struct RasterInfo {
    pub path: PathBuf,
    pub grid: Grid,
    pub bands: Vec<BandInfo>,
    /// GDAL driver short name (GTiff, JP2OpenJPEG, ...).
    pub driver: String,
}

#[derive(Clone, Debug)]
pub struct BandInfo {
    /// 1-based, as GDAL counts.
    pub index: usize,
    pub dtype: String,
    pub nodata: Option<f64>,
    pub description: String,
    /// Integer or byte data: candidates for nearest-neighbour resampling when labelled classes.
    pub is_integer: bool,
}

/// `role` says what the file is for ("reference", "moving", "map") and prefixes every error.
pub fn open_raster(path: &Path, role: &str) -> Result<RasterInfo> {
    super::init_gdal();
    let shown = path.display();
    // GDAL virtual file systems (/vsizip/ archive members, ...) are not on the file system.
    if !path.to_string_lossy().starts_with("/vsi") {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => bail!("{role} '{shown}': cannot read: {}", one_line(e)),
        };
        if meta.is_dir() {
            bail!("{role} '{shown}': is a directory, not a raster file");
        }
        if meta.len() == 0 {
            bail!("{role} '{shown}': file is empty (0 bytes)");
        }
    }
    let ds = open_dataset(path, role)?;
    let driver = ds.driver().short_name();
    let (width, height) = ds.raster_size();
    if ds.raster_count() == 0 {
        bail!("{role} '{shown}': has no raster bands (a vector file? pass maps with --map)");
    }
    if width == 0 || height == 0 {
        bail!("{role} '{shown}': raster has zero size ({width}x{height})");
    }
    let geotransform = ds.geo_transform().unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let (crs_wkt, epsg) = match ds.spatial_ref() {
        Ok(srs) => {
            let epsg = srs.auth_code().ok().and_then(|c| u32::try_from(c).ok());
            (srs.to_wkt().unwrap_or_default(), epsg)
        }
        Err(_) => (String::new(), None),
    };
    let mut bands = Vec::with_capacity(ds.raster_count());
    for i in 1..=ds.raster_count() {
        let b = match ds.rasterband(i) {
            Ok(b) => b,
            Err(e) => bail!("{role} '{shown}': band {i} unreadable: {}", one_line(e)),
        };
        use gdal::Metadata;
        let ty = b.band_type();
        bands.push(BandInfo {
            index: i,
            dtype: ty.name(),
            nodata: b.no_data_value(),
            description: b.description().unwrap_or_default(),
            is_integer: !ty.is_floating(),
        });
    }
    Ok(RasterInfo {
        path: path.to_path_buf(),
        grid: Grid { crs_wkt, epsg, geotransform, width, height },
        bands,
        driver,
    })
}

/// Opens read-only (GDAL's default), mapping failures to one line naming the file.
pub fn open_dataset(path: &Path, role: &str) -> Result<Dataset> {
    super::init_gdal();
    Dataset::open(path).map_err(|e| {
        let msg = one_line(e);
        let why = // GDALOpenEx says nothing (empty message) when no driver recognises the file.
        if msg.contains("Error msg: ''") || msg.contains("not recognized as") || msg.contains("not a supported file format") {
            "not a raster format GDAL can read".to_string()
        } else {
            format!("cannot open: {msg}")
        };
        anyhow::anyhow!("{role} '{}': {why}", path.display())
    })
}
