//! Writing GeoTIFFs atomically (a temporary name, then a rename), in the sources' own sample
//! type where that type can hold them, with the compression asked for.
use anyhow::{bail, Context, Result};
use gdal::raster::{Buffer, GdalType, RasterCreationOptions};
use gdal::spatial_ref::SpatialRef;
use gdal::{DriverManager, Metadata};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::Path;

/// One band to write: its description (e.g. "reference:B02:b1") and row-major pixels, NaN
/// where there is no data.
pub struct BandData {
    pub description: String,
    pub pixels: Vec<f32>,
}

/// The sample types tiles keep from their sources: those whose every value f32 holds exactly
/// (pixels pass through f32 between reading and writing). Others (Int32, Float64, ...) are
/// written as Float32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SampleType {
    Byte,
    UInt16,
    Int16,
    Float32,
}

impl SampleType {
    /// The type for a band GDAL calls `name` ("Byte", "UInt16", ...), when tiles can keep it.
    pub fn from_gdal_name(name: &str) -> Option<SampleType> {
        Some(match name {
            "Byte" => SampleType::Byte,
            "UInt16" => SampleType::UInt16,
            "Int16" => SampleType::Int16,
            "Float32" => SampleType::Float32,
            _ => return None,
        })
    }

    pub fn bytes(self) -> u64 {
        match self {
            SampleType::Byte => 1,
            SampleType::UInt16 | SampleType::Int16 => 2,
            SampleType::Float32 => 4,
        }
    }

    /// The integer range of an integer type.
    fn range(self) -> Option<(i32, i32)> {
        match self {
            SampleType::Byte => Some((0, 255)),
            SampleType::UInt16 => Some((0, 65535)),
            SampleType::Int16 => Some((-32768, 32767)),
            SampleType::Float32 => None,
        }
    }
}

/// GeoTIFF compression (`--compress`). DEFLATE and ZSTD use a predictor: horizontal
/// differencing for integers, the floating-point predictor for floats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Deflate,
    Zstd,
    Lzw,
}

/// Output options for tiles and work files.
#[derive(Clone, Copy, Debug)]
pub struct GeoTiffOptions {
    pub compress: Compression,
    pub sample: SampleType,
    /// For integer samples: the nodata value to use when it is free (no valid pixel has it),
    /// e.g. the sources' own; another free value of the type is chosen otherwise.
    pub preferred_nodata: Option<f64>,
}

impl Default for GeoTiffOptions {
    fn default() -> Self {
        GeoTiffOptions {
            compress: Compression::None,
            sample: SampleType::Float32,
            preferred_nodata: None,
        }
    }
}

impl GeoTiffOptions {
    pub fn compressed(compress: Compression) -> GeoTiffOptions {
        GeoTiffOptions { compress, ..GeoTiffOptions::default() }
    }
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

/// The nodata value an integer tile of range [lo, hi] can use: `preferred` when no valid
/// pixel has it, else the highest free value; None when no pixel is nodata and `preferred`
/// is taken (or absent), or when every value is taken (then Err: the tile needs Float32).
fn integer_nodata(
    bands: &[BandData],
    (lo, hi): (i32, i32),
    preferred: Option<f64>,
) -> std::result::Result<Option<f64>, ()> {
    let preferred = preferred
        .filter(|p| p.fract() == 0.0 && (lo as f64..=hi as f64).contains(p))
        .map(|p| p as i32);
    // One linear pass answers the common cases (no value table per tile: it cost more than
    // the rest of writing a Byte tile).
    let (mut any_invalid, mut preferred_taken) = (false, false);
    for v in bands.iter().flat_map(|b| b.pixels.iter()) {
        if v.is_nan() {
            any_invalid = true;
        } else if preferred == Some(quantise(*v, lo, hi)) {
            preferred_taken = true;
        }
    }
    match preferred {
        Some(p) if !preferred_taken => return Ok(Some(p as f64)),
        _ if !any_invalid => return Ok(None),
        _ => {}
    }
    let mut used = vec![false; (hi - lo + 1) as usize];
    for v in bands.iter().flat_map(|b| b.pixels.iter()).filter(|v| !v.is_nan()) {
        used[(quantise(*v, lo, hi) - lo) as usize] = true;
    }
    match (lo..=hi).rev().find(|&v| !used[(v - lo) as usize]) {
        Some(v) => Ok(Some(v as f64)),
        None => Err(()),
    }
}

/// A valid pixel as the integer it is stored as (warped integer data is rounded back).
/// Rounds half away from zero as f32::round does, without its libm call (a third of the time
/// of writing a Byte tile on x86-64's baseline instruction set).
fn quantise(v: f32, lo: i32, hi: i32) -> i32 {
    // In f64: f32's 0.49999997 + 0.5 would round up to 1.
    let v = v as f64;
    let r = if v >= 0.0 { v + 0.5 } else { v - 0.5 };
    (r as i32).clamp(lo, hi)
}

/// Writes a GeoTIFF of `opts.sample` samples; NaN pixels become the nodata value (NaN itself
/// for Float32). An integer tile whose every value is taken by valid pixels while some are
/// nodata (no value is free to mean nodata) is written as Float32. `metadata` items go in the
/// default domain.
#[allow(clippy::too_many_arguments)]
pub fn write_geotiff(
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
    if let Some(b) = bands.iter().find(|b| b.pixels.len() != width * height) {
        bail!(
            "internal: band '{}' has {} pixels, not {width}x{height}",
            b.description,
            b.pixels.len()
        );
    }
    let (sample, nodata) = match opts.sample.range() {
        Some(range) => match integer_nodata(&bands, range, opts.preferred_nodata) {
            Ok(nd) => (opts.sample, nd),
            Err(()) => (SampleType::Float32, Some(f64::NAN)),
        },
        None => (SampleType::Float32, Some(f64::NAN)),
    };
    let tmp = crate::util::atomic::temp_path(path);
    let header = Header {
        crs_wkt,
        geotransform,
        width,
        height,
        metadata,
        nodata,
        compress: opts.compress,
        float: sample == SampleType::Float32,
    };
    // Integer samples: valid pixels rounded into the type's range, NaN as the nodata value.
    let (lo, hi) = sample.range().unwrap_or((0, 0));
    let fill = nodata.filter(|v| !v.is_nan()).unwrap_or(0.0) as i32;
    let int = move |v: f32| if v.is_nan() { fill } else { quantise(v, lo, hi) };
    let result = match sample {
        SampleType::Byte => {
            write_as(&tmp, &header, bands, |px| px.iter().map(|&v| int(v) as u8).collect())
        }
        SampleType::UInt16 => {
            write_as(&tmp, &header, bands, |px| px.iter().map(|&v| int(v) as u16).collect())
        }
        SampleType::Int16 => {
            write_as(&tmp, &header, bands, |px| px.iter().map(|&v| int(v) as i16).collect())
        }
        // Float32 pixels are written as they are (NaN is the nodata value).
        SampleType::Float32 => write_as(&tmp, &header, bands, |px| px),
    };
    match result {
        Ok(()) => std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename onto '{}'", path.display())),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.context(format!("cannot write '{}'", path.display())))
        }
    }
}

struct Header<'a> {
    crs_wkt: &'a str,
    geotransform: [f64; 6],
    width: usize,
    height: usize,
    metadata: &'a [(&'a str, String)],
    nodata: Option<f64>,
    compress: Compression,
    /// Float32 samples (the floating-point predictor).
    float: bool,
}

/// Writes `bands` as samples of type T, each band's pixels turned into T by `encode`.
fn write_as<T: GdalType + Copy>(
    tmp: &Path,
    h: &Header,
    bands: Vec<BandData>,
    encode: impl Fn(Vec<f32>) -> Vec<T>,
) -> Result<()> {
    let driver = DriverManager::get_driver_by_name("GTiff")?;
    let mut co = vec!["INTERLEAVE=BAND".to_string()];
    match h.compress {
        Compression::None => {}
        Compression::Lzw => co.push("COMPRESS=LZW".into()),
        c => {
            co.push(format!(
                "COMPRESS={}",
                if c == Compression::Zstd { "ZSTD" } else { "DEFLATE" }
            ));
            co.push(format!("PREDICTOR={}", if h.float { 3 } else { 2 }));
        }
    }
    let co = RasterCreationOptions::from_iter(co.iter().map(String::as_str));
    let mut ds = driver.create_with_band_type_with_options::<T, _>(
        tmp,
        h.width,
        h.height,
        bands.len(),
        &co,
    )?;
    ds.set_geo_transform(&h.geotransform)?;
    if !h.crs_wkt.is_empty() {
        with_srs(h.crs_wkt, |srs| ds.set_spatial_ref(srs))?;
    }
    for (k, v) in h.metadata {
        ds.set_metadata_item(k, v, "")?;
    }
    for (i, b) in bands.into_iter().enumerate() {
        let mut band = ds.rasterband(i + 1)?;
        band.set_no_data_value(h.nodata)?;
        band.set_description(&b.description)?;
        let data = encode(b.pixels);
        let mut buf = Buffer::new((h.width, h.height), data);
        band.write((0, 0), (h.width, h.height), &mut buf)?;
    }
    ds.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(px: &[f32]) -> BandData {
        BandData { description: String::new(), pixels: px.to_vec() }
    }

    #[test]
    fn quantise_rounds_as_f32_round() {
        for v in [0.0f32, 0.49999997, 0.5, 1.5, 2.5, 254.6, -0.5, -1.5, -2.4999998, 70000.0, -1e9] {
            assert_eq!(quantise(v, -32768, 65535), (v.round() as i32).clamp(-32768, 65535), "{v}");
        }
    }

    #[test]
    fn integer_nodata_takes_a_value_no_valid_pixel_has() {
        let byte = (0, 255);
        // The sources' nodata is free: used even where no pixel is nodata (it says what the
        // sources said).
        assert_eq!(integer_nodata(&[band(&[1.0, 2.0])], byte, Some(0.0)), Ok(Some(0.0)));
        // Taken by a valid pixel: the highest free value where a pixel needs it, none otherwise.
        assert_eq!(
            integer_nodata(&[band(&[0.0, 255.0, f32::NAN])], byte, Some(0.0)),
            Ok(Some(254.0))
        );
        assert_eq!(integer_nodata(&[band(&[0.0, 7.0])], byte, Some(0.0)), Ok(None));
        // Warped values are rounded before the check (254.6 is stored as 255).
        assert_eq!(integer_nodata(&[band(&[254.6, f32::NAN])], byte, None), Ok(Some(254.0)));
        // A preferred value the type cannot hold is ignored.
        assert_eq!(integer_nodata(&[band(&[f32::NAN])], byte, Some(-9999.0)), Ok(Some(255.0)));
        // Every value taken and a pixel nodata: no integer encoding.
        let mut all: Vec<f32> = (0..256).map(|v| v as f32).collect();
        all.push(f32::NAN);
        assert_eq!(integer_nodata(&[band(&all)], byte, Some(0.0)), Err(()));
    }
}
