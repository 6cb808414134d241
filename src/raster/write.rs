//! Writing GeoTIFFs atomically (a temporary name, then a rename), in the sources' own sample
//! type where that type can hold them, with the compression asked for.
use anyhow::{bail, Context, Result};
use gdal::raster::{Buffer, GdalType, RasterCreationOptions};
use gdal::spatial_ref::SpatialRef;
use gdal::{DriverManager, Metadata};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::Path;

/// One band to write: its description (e.g. "reference:B02:b1") and row-major pixels (f32
/// with NaN where there is no data, or samples already in the file's type).
pub struct BandData<T = f32> {
    pub description: String,
    pub pixels: Vec<T>,
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

    pub fn gdal_name(self) -> &'static str {
        match self {
            SampleType::Byte => "Byte",
            SampleType::UInt16 => "UInt16",
            SampleType::Int16 => "Int16",
            SampleType::Float32 => "Float32",
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            SampleType::Byte => 1,
            SampleType::UInt16 | SampleType::Int16 => 2,
            SampleType::Float32 => 4,
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

/// The integer sample types tiles keep.
pub trait Integer: GdalType + Copy + Default + PartialEq + Into<f64> + Send + Sync {
    /// Number of values of the type; `index` numbers them from the lowest.
    const VALUES: usize;
    fn index(self) -> usize;
    fn from_index(i: usize) -> Self;
    /// A valid f32 sample as the integer it is stored as (warped data rounded back).
    fn quantise(v: f32) -> Self;
    /// `v` when the type holds it exactly.
    fn exactly(v: f64) -> Option<Self> {
        let (lo, hi) = (Self::from_index(0).into(), Self::from_index(Self::VALUES - 1).into());
        (v.fract() == 0.0 && (lo..=hi).contains(&v)).then(|| Self::from_index((v - lo) as usize))
    }
}

macro_rules! integer {
    ($t:ty) => {
        impl Integer for $t {
            const VALUES: usize = 1 << <$t>::BITS;
            fn index(self) -> usize {
                (self as i64 - <$t>::MIN as i64) as usize
            }
            fn from_index(i: usize) -> $t {
                (i as i64 + <$t>::MIN as i64) as $t
            }
            fn quantise(v: f32) -> $t {
                quantise(v, <$t>::MIN as i32, <$t>::MAX as i32) as $t
            }
        }
    };
}
integer!(u8);
integer!(u16);
integer!(i16);

/// Per band, which pixels are data; None: those not equal to the nodata value.
pub type Masks = Vec<Option<Vec<bool>>>;

/// Whether pixel `i` of a band with `mask` (see `Masks`), of value `v`, is data.
fn is_valid<T: Integer>(mask: &Option<Vec<bool>>, i: usize, v: T, nodata: Option<T>) -> bool {
    mask.as_ref().map_or(Some(v) != nodata, |m| m[i])
}

/// The nodata value an integer tile uses: `nodata` (the sources' own) when no valid pixel has
/// it, else the highest free value; None when no pixel is nodata and `nodata` is taken (or
/// absent), or when every value is taken (then Err: the tile needs Float32).
fn integer_nodata<T: Integer>(
    bands: &[BandData<T>],
    masks: &Masks,
    nodata: Option<T>,
) -> std::result::Result<Option<T>, ()> {
    let valid = |k: usize, i: usize, v: T| is_valid(&masks[k], i, v, nodata);
    // One linear pass answers the common cases (no value table per tile: it cost more than
    // the rest of writing a Byte tile).
    let (mut any_invalid, mut taken) = (false, false);
    for (k, band) in bands.iter().enumerate() {
        for (i, &v) in band.pixels.iter().enumerate() {
            if !valid(k, i, v) {
                any_invalid = true;
            } else if Some(v) == nodata {
                taken = true;
            }
        }
    }
    match nodata {
        Some(n) if !taken => return Ok(Some(n)),
        _ if !any_invalid => return Ok(None),
        _ => {}
    }
    let mut used = vec![false; T::VALUES];
    for (k, band) in bands.iter().enumerate() {
        for (i, &v) in band.pixels.iter().enumerate() {
            if valid(k, i, v) {
                used[v.index()] = true;
            }
        }
    }
    (0..T::VALUES).rev().find(|&i| !used[i]).map(|i| Some(T::from_index(i))).ok_or(())
}

/// A valid pixel as the integer it is stored as, clamped into [lo, hi]. Rounds half away
/// from zero as f32::round does, without its libm call (a third of the time of writing a
/// Byte tile on x86-64's baseline instruction set).
fn quantise(v: f32, lo: i32, hi: i32) -> i32 {
    // In f64: f32's 0.49999997 + 0.5 would round up to 1.
    let v = v as f64;
    let r = if v >= 0.0 { v + 0.5 } else { v - 0.5 };
    (r as i32).clamp(lo, hi)
}

/// Writes a GeoTIFF of `opts.sample` samples; NaN pixels become the nodata value (NaN itself
/// for Float32; for integers as `write_integer_geotiff` chooses, `opts.preferred_nodata`
/// first). `metadata` items go in the default domain.
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
    fn integers<T: Integer>(bands: Vec<BandData>) -> (Vec<BandData<T>>, Masks) {
        bands
            .into_iter()
            .map(|b| {
                let mask = b.pixels.iter().map(|v| !v.is_nan()).collect();
                let pixels =
                    b.pixels
                        .iter()
                        .map(|&v| if v.is_nan() { T::default() } else { T::quantise(v) });
                (BandData { description: b.description, pixels: pixels.collect() }, Some(mask))
            })
            .unzip()
    }
    let tile =
        Tile { path, crs_wkt, geotransform, width, height, metadata, compress: opts.compress };
    let preferred = opts.preferred_nodata;
    match opts.sample {
        SampleType::Byte => {
            let (bands, masks) = integers::<u8>(bands);
            tile.integer(bands, masks, preferred.and_then(u8::exactly))
        }
        SampleType::UInt16 => {
            let (bands, masks) = integers::<u16>(bands);
            tile.integer(bands, masks, preferred.and_then(u16::exactly))
        }
        SampleType::Int16 => {
            let (bands, masks) = integers::<i16>(bands);
            tile.integer(bands, masks, preferred.and_then(i16::exactly))
        }
        SampleType::Float32 => tile.float(bands),
    }
}

/// Writes integer samples as they are. Pixels that `masks` mark as no data (and, in bands
/// without a mask, pixels equal to `nodata`) take the tile's nodata value: `nodata` when no
/// valid pixel has it, else the highest value no valid pixel has; a tile using every value of
/// its type while some pixel is nodata is written as Float32 (NaN for nodata).
#[allow(clippy::too_many_arguments)]
pub fn write_integer_geotiff<T: Integer>(
    path: &Path,
    crs_wkt: &str,
    geotransform: [f64; 6],
    width: usize,
    height: usize,
    bands: Vec<BandData<T>>,
    masks: Masks,
    metadata: &[(&str, String)],
    nodata: Option<T>,
    compress: Compression,
) -> Result<()> {
    super::init_gdal();
    let tile = Tile { path, crs_wkt, geotransform, width, height, metadata, compress };
    tile.integer(bands, masks, nodata)
}

/// Where and how one GeoTIFF is written.
struct Tile<'a> {
    path: &'a Path,
    crs_wkt: &'a str,
    geotransform: [f64; 6],
    width: usize,
    height: usize,
    metadata: &'a [(&'a str, String)],
    compress: Compression,
}

impl Tile<'_> {
    fn header(&self, nodata: Option<f64>, float: bool) -> Header<'_> {
        Header {
            crs_wkt: self.crs_wkt,
            geotransform: self.geotransform,
            width: self.width,
            height: self.height,
            metadata: self.metadata,
            nodata,
            compress: self.compress,
            float,
        }
    }

    /// Float32 pixels as they are (NaN is the nodata value).
    fn float(&self, bands: Vec<BandData>) -> Result<()> {
        write_as(self.path, &self.header(Some(f64::NAN), true), bands)
    }

    fn integer<T: Integer>(
        &self,
        mut bands: Vec<BandData<T>>,
        masks: Masks,
        nodata: Option<T>,
    ) -> Result<()> {
        if masks.iter().all(Option::is_none) {
            // Only pixels equal to `nodata` are nodata: no valid pixel has it.
            return write_as(self.path, &self.header(nodata.map(Into::into), false), bands);
        }
        let valid = |m: &Option<Vec<bool>>, i: usize, v: T| is_valid(m, i, v, nodata);
        match integer_nodata(&bands, &masks, nodata) {
            Ok(chosen) => {
                let fill = chosen.unwrap_or_default();
                for (band, mask) in bands.iter_mut().zip(&masks) {
                    for (i, p) in band.pixels.iter_mut().enumerate() {
                        if !valid(mask, i, *p) {
                            *p = fill;
                        }
                    }
                }
                write_as(self.path, &self.header(chosen.map(Into::into), false), bands)
            }
            Err(()) => {
                let bands = (bands.into_iter().zip(&masks))
                    .map(|(b, mask)| {
                        let pixels = (b.pixels.iter().enumerate())
                            .map(
                                |(i, &p)| {
                                    if valid(mask, i, p) {
                                        p.into() as f32
                                    } else {
                                        f32::NAN
                                    }
                                },
                            )
                            .collect();
                        BandData { description: b.description, pixels }
                    })
                    .collect();
                self.float(bands)
            }
        }
    }
}

/// Writes a temporary file beside `path`, then renames it onto `path`.
fn write_as<T: GdalType + Copy>(path: &Path, h: &Header, bands: Vec<BandData<T>>) -> Result<()> {
    if let Some(b) = bands.iter().find(|b| b.pixels.len() != h.width * h.height) {
        bail!(
            "internal: band '{}' has {} pixels, not {}x{}",
            b.description,
            b.pixels.len(),
            h.width,
            h.height
        );
    }
    let tmp = crate::util::atomic::temp_path(path);
    match write_file(&tmp, h, bands) {
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

/// Writes `bands` as samples of type T.
fn write_file<T: GdalType + Copy>(tmp: &Path, h: &Header, bands: Vec<BandData<T>>) -> Result<()> {
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
        let mut buf = Buffer::new((h.width, h.height), b.pixels);
        band.write((0, 0), (h.width, h.height), &mut buf)?;
    }
    ds.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(px: &[u8]) -> BandData<u8> {
        BandData { description: String::new(), pixels: px.to_vec() }
    }

    #[test]
    fn quantise_rounds_as_f32_round() {
        for v in [0.0f32, 0.49999997, 0.5, 1.5, 2.5, 254.6, -0.5, -1.5, -2.4999998, 70000.0, -1e9] {
            assert_eq!(quantise(v, -32768, 65535), (v.round() as i32).clamp(-32768, 65535), "{v}");
        }
        assert_eq!((u8::quantise(254.6), i16::quantise(-40000.0)), (255, -32768));
    }

    #[test]
    fn integer_values_are_numbered_from_the_lowest() {
        assert_eq!((i16::from_index(0), i16::MIN.index(), 7i16.index()), (-32768, 0, 32775));
        assert_eq!(
            (u16::exactly(65535.0), u8::exactly(256.0), u8::exactly(0.5)),
            (Some(65535), None, None)
        );
        assert_eq!(i16::exactly(-9999.0), Some(-9999));
    }

    #[test]
    fn integer_nodata_takes_a_value_no_valid_pixel_has() {
        let all_valid = |n: usize| vec![Some(vec![true; n])];
        // The sources' nodata is free: used even where no pixel is nodata (it says what the
        // sources said).
        assert_eq!(integer_nodata(&[band(&[1, 2])], &all_valid(2), Some(0)), Ok(Some(0)));
        // Taken by a valid pixel: the highest free value where a pixel needs it, none otherwise.
        let masks = vec![Some(vec![true, true, false])];
        assert_eq!(integer_nodata(&[band(&[0, 255, 0])], &masks, Some(0)), Ok(Some(254)));
        assert_eq!(integer_nodata(&[band(&[0, 7])], &all_valid(2), Some(0)), Ok(None));
        // Without a mask, pixels equal to the nodata value are nodata.
        assert_eq!(integer_nodata(&[band(&[0, 7])], &vec![None], Some(0)), Ok(Some(0)));
        // Every value taken and a pixel nodata: no integer encoding.
        let mut all: Vec<u8> = (0..=255).collect();
        all.push(0);
        let mut mask = vec![true; 256];
        mask.push(false);
        assert_eq!(integer_nodata(&[band(&all)], &vec![Some(mask)], Some(0)), Err(()));
    }
}
