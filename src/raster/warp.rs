//! Bringing a raster onto another grid with GDAL's warper (the `gdalwarp` library entry point).
use super::write::SampleType;
use super::{open::open_dataset, Grid};
use crate::util::text::one_line;
use anyhow::{bail, Result};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::path::Path;

/// Resampling used by the warper: bilinear for continuous data, nearest for masks and classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resampling {
    Bilinear,
    Nearest,
}

impl Resampling {
    fn gdal_name(self) -> &'static str {
        match self {
            Resampling::Bilinear => "bilinear",
            Resampling::Nearest => "near",
        }
    }
}

fn srs(wkt: &str) -> Result<SpatialRef> {
    let mut s = SpatialRef::from_wkt(wkt)?;
    // x = easting/longitude, y = northing/latitude, whatever the CRS's official axis order.
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(s)
}

/// Whether two CRS definitions describe the same CRS (GDAL's OSRIsSame).
pub fn same_crs(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return a.is_empty() && b.is_empty();
    }
    match (srs(a), srs(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A reference must say where it is on the ground: every other input is placed on its grid
/// through the two CRSs, and outputs carry it. Two rasters without a CRS would otherwise be
/// paired by pixel position alone, silently.
pub fn check_reference_crs(grid: &Grid, path: &Path) -> Result<()> {
    if grid.crs_wkt.is_empty() {
        bail!(
            "reference '{}': has no CRS (assign one first, e.g. gdal_edit.py -a_srs EPSG:32631)",
            path.display()
        );
    }
    Ok(())
}

/// Checks that `src` (a raster grid of `role` at `path`) can be placed on `dst`, and that the
/// two overlap; returns the fraction of `dst`'s extent that `src` covers (by bounding box).
pub fn check_placeable(src: &Grid, dst: &Grid, role: &str, path: &Path) -> Result<f64> {
    let shown = path.display();
    if !src.geotransform[1].is_finite() || src.geotransform[1] == 0.0 || src.geotransform[5] == 0.0
    {
        bail!("{role} '{shown}': has no usable geotransform");
    }
    let b = if src.crs_wkt.is_empty() != dst.crs_wkt.is_empty() {
        if src.crs_wkt.is_empty() {
            bail!("{role} '{shown}': has no CRS, so it cannot be placed on the reference grid");
        }
        bail!("{role} '{shown}': has a CRS but the reference has none; cannot relate the two");
    } else if src.crs_wkt.is_empty() || same_crs(&src.crs_wkt, &dst.crs_wkt) {
        src.bounds()
    } else {
        let (s, d) = (srs(&src.crs_wkt)?, srs(&dst.crs_wkt)?);
        let ct = CoordTransform::new(&s, &d).map_err(|e| {
            anyhow::anyhow!(
                "{role} '{shown}': its CRS cannot be transformed to the reference CRS: {}",
                one_line(e)
            )
        })?;
        ct.transform_bounds(&src.bounds(), 21).map_err(|e| {
            anyhow::anyhow!(
                "{role} '{shown}': its extent cannot be transformed to the reference CRS: {}",
                one_line(e)
            )
        })?
    };
    if b.iter().any(|v| !v.is_finite()) {
        bail!("{role} '{shown}': its extent cannot be transformed to the reference CRS");
    }
    let r = dst.bounds();
    let w = (b[2].min(r[2]) - b[0].max(r[0])).max(0.0);
    let h = (b[3].min(r[3]) - b[1].max(r[1])).max(0.0);
    let covered = w * h / ((r[2] - r[0]) * (r[3] - r[1]));
    if covered <= 0.0 {
        bail!("{role} '{shown}': does not overlap the reference raster");
    }
    Ok(covered)
}

/// GDAL's approximate transformer interpolates the exact one linearly over chunks whose
/// error stays below this bound (gdalwarp's -et). gdalwarp's default, 0.125 px, put warped
/// pixels up to 0.027 px from the exact warp on a real Sentinel-1 grid (tests/tile_warp.rs);
/// 0.01 px keeps them within 0.007 px, and tiling a 4096² UTM-to-EPSG:4326 warp takes 2.0 s
/// against 4.9 s with the exact transformation (BENCHMARKS.md).
pub const APPROX_ERROR_PX: f64 = 0.01;

/// How `warp_onto_grid` warps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarpOptions {
    /// The exact transformation at every pixel instead of the approximate transformer.
    pub exact: bool,
    pub output: WarpOutput,
}

/// What `warp_onto_grid` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarpOutput {
    /// A tiled Float32 GeoTIFF, NaN where there is no data.
    GeoTiff,
    /// A VRT that warps whatever is read from it (no copy of the grid on disk), in samples of
    /// the given type, followed by an alpha band that is 0 where there is no data. An alpha
    /// band, not a nodata value: GDAL's warper spends twice as long per pixel when it must
    /// track destination nodata (4096² Byte to Float32 with NaN: 3.2 s, with alpha: 1.6 s;
    /// to Byte with alpha: 1.0 s).
    MaskedVrt(SampleType),
}

/// Warps `src` onto `grid` into `dst` as `opts.output` says. Source nodata is honoured; the
/// warper runs on rayon's thread count; the output is written under a temporary name and
/// renamed.
pub fn warp_onto_grid(
    src: &Path,
    role: &str,
    grid: &Grid,
    resampling: Resampling,
    dst: &Path,
    opts: WarpOptions,
) -> Result<()> {
    if !grid.is_north_up() {
        bail!("internal: target grid must be north-up");
    }
    let ds = open_dataset(src, role)?;
    let [xmin, ymin, xmax, ymax] = grid.bounds();
    let mut args: Vec<String> = match opts.output {
        WarpOutput::GeoTiff => ["-of", "GTiff", "-ot", "Float32", "-dstnodata", "nan"]
            .into_iter()
            .chain(["-multi", "-wm", "256", "-co", "TILED=YES", "-co", "BIGTIFF=IF_SAFER"])
            .map(String::from)
            .collect(),
        WarpOutput::MaskedVrt(t) => {
            ["-of", "VRT", "-ot", t.gdal_name(), "-dstalpha"].map(String::from).to_vec()
        }
    };
    if !grid.crs_wkt.is_empty() {
        args.extend(["-t_srs".into(), grid.crs_wkt.clone()]);
    }
    let error = if opts.exact { "0".to_string() } else { APPROX_ERROR_PX.to_string() };
    let threads = rayon::current_num_threads().to_string();
    args.extend(
        [
            "-te",
            &xmin.to_string(),
            &ymin.to_string(),
            &xmax.to_string(),
            &ymax.to_string(),
            "-ts",
            &grid.width.to_string(),
            &grid.height.to_string(),
            "-r",
            resampling.gdal_name(),
            "-et",
            &error,
            "-wo",
            &format!("NUM_THREADS={threads}"),
            "-overwrite",
            "-q",
        ]
        .map(String::from),
    );
    let tmp = crate::util::atomic::temp_path(dst);
    run_gdalwarp(&ds, &args, &tmp).map_err(|e| {
        anyhow::anyhow!("{role} '{}': warping onto the reference grid failed: {e}", src.display())
    })?;
    std::fs::rename(&tmp, dst)?;
    Ok(())
}

fn run_gdalwarp(
    src: &gdal::Dataset,
    args: &[String],
    dst: &Path,
) -> std::result::Result<(), String> {
    let cargs: Vec<CString> = args.iter().map(|a| CString::new(a.as_str()).unwrap()).collect();
    let mut argv: Vec<*mut std::ffi::c_char> = cargs.iter().map(|c| c.as_ptr() as *mut _).collect();
    argv.push(std::ptr::null_mut());
    let dst_c = CString::new(dst.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    unsafe {
        let opts = gdal_sys::GDALWarpAppOptionsNew(argv.as_mut_ptr(), std::ptr::null_mut());
        if opts.is_null() {
            return Err(last_gdal_error("bad warp options"));
        }
        let mut src_h = src.c_dataset();
        let mut usage_error: std::ffi::c_int = 0;
        gdal_sys::CPLErrorReset();
        let out = gdal_sys::GDALWarp(
            dst_c.as_ptr(),
            std::ptr::null_mut(),
            1,
            &mut src_h,
            opts,
            &mut usage_error,
        );
        gdal_sys::GDALWarpAppOptionsFree(opts);
        if out.is_null() {
            let _ = std::fs::remove_file(dst);
            return Err(last_gdal_error("gdalwarp failed"));
        }
        gdal_sys::GDALClose(out);
        if gdal_sys::CPLGetLastErrorType() >= gdal_sys::CPLErr::CE_Failure {
            let _ = std::fs::remove_file(dst);
            return Err(last_gdal_error("gdalwarp failed"));
        }
    }
    Ok(())
}

fn last_gdal_error(fallback: &str) -> String {
    let msg = unsafe {
        let p = gdal_sys::CPLGetLastErrorMsg();
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    if msg.is_empty() {
        fallback.to_string()
    } else {
        one_line(msg)
    }
}
