//! Shared helpers for integration tests: fixture rasters written with GDAL, running the binary.
#![allow(dead_code)]
use gdal::raster::Buffer;
use gdal::spatial_ref::SpatialRef;
use gdal::DriverManager;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const UTM31N: u32 = 32631;

/// A path as a command-line argument.
pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs a GDAL command-line tool (gdal-bin), failing the test with its stderr.
pub fn gdal_tool(tool: &str, args: &[&str]) {
    let o =
        Command::new(tool).args(args).output().unwrap_or_else(|e| panic!("{tool} (gdal-bin): {e}"));
    assert!(o.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_simreg")
}

/// Runs `simreg` with the given arguments (OpenMP and rayon on one thread, as tests run in
/// parallel).
pub fn simreg(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env("OMP_NUM_THREADS", "1").output().expect("simreg runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `simreg ARGS --json`, asserts success and returns the printed JSON.
pub fn ok(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let o = simreg(&a);
    assert!(o.status.success(), "simreg {args:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("--json prints JSON")
}

/// A raster to write: bands as row-major f64 (converted to `dtype`).
pub struct Fixture {
    pub width: usize,
    pub height: usize,
    pub geotransform: [f64; 6],
    pub epsg: Option<u32>,
    pub wkt: Option<String>,
    pub nodata: Option<f64>,
    pub bands: Vec<Vec<f64>>,
}

impl Fixture {
    pub fn utm(
        width: usize,
        height: usize,
        nbands: usize,
        f: impl Fn(usize, usize, usize) -> f64,
    ) -> Fixture {
        let mut bands = vec![vec![0.0; width * height]; nbands];
        for (b, band) in bands.iter_mut().enumerate() {
            for r in 0..height {
                for c in 0..width {
                    band[r * width + c] = f(b, c, r);
                }
            }
        }
        Fixture {
            width,
            height,
            geotransform: [400000.0, 10.0, 0.0, 5100000.0, 0.0, -10.0],
            epsg: Some(UTM31N),
            wkt: None,
            nodata: None,
            bands,
        }
    }

    pub fn write_f32(&self, path: &Path) {
        self.write::<f32>(path)
    }

    pub fn write_u16(&self, path: &Path) {
        self.write::<u16>(path)
    }

    pub fn write_u8(&self, path: &Path) {
        self.write::<u8>(path)
    }

    fn write<T: gdal::raster::GdalType + Copy + FromF64>(&self, path: &Path) {
        let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
        let mut ds = driver
            .create_with_band_type::<T, _>(path, self.width, self.height, self.bands.len())
            .unwrap();
        ds.set_geo_transform(&self.geotransform).unwrap();
        if let Some(e) = self.epsg {
            ds.set_spatial_ref(&SpatialRef::from_epsg(e).unwrap()).unwrap();
        }
        if let Some(w) = &self.wkt {
            ds.set_projection(w).unwrap();
        }
        for (i, b) in self.bands.iter().enumerate() {
            let mut band = ds.rasterband(i + 1).unwrap();
            if let Some(nd) = self.nodata {
                band.set_no_data_value(Some(nd)).unwrap();
            }
            let mut buf =
                Buffer::new((self.width, self.height), b.iter().map(|&v| T::from_f64(v)).collect());
            band.write((0, 0), (self.width, self.height), &mut buf).unwrap();
        }
        ds.close().unwrap();
    }
}

pub trait FromF64 {
    fn from_f64(v: f64) -> Self;
}
impl FromF64 for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl FromF64 for u8 {
    fn from_f64(v: f64) -> Self {
        v as u8
    }
}
impl FromF64 for u16 {
    fn from_f64(v: f64) -> Self {
        v as u16
    }
}

/// A deterministic pseudo-random value in [0, 1) for (band, col, row).
pub fn noise(b: usize, c: usize, r: usize) -> f64 {
    let mut x = (b as u64).wrapping_mul(0x9E3779B97F4A7C15)
        ^ (c as u64).wrapping_mul(0xC2B2AE3D27D4EB4F)
        ^ (r as u64).wrapping_mul(0x165667B19E3779F9);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads every band of a raster as f32.
/// Writes f32 bands on the grid of `like` (same CRS, geotransform, size).
#[allow(dead_code)]
pub fn write_like(like: &Path, bands: Vec<Vec<f64>>, path: &Path) {
    let (_, gt, w, h, wkt) = read_all(like);
    Fixture {
        width: w,
        height: h,
        geotransform: gt,
        epsg: None,
        wkt: Some(wkt),
        nodata: None,
        bands,
    }
    .write_f32(path);
}

pub fn read_all(path: &Path) -> (Vec<Vec<f32>>, [f64; 6], usize, usize, String) {
    let ds = gdal::Dataset::open(path).unwrap();
    let (w, h) = ds.raster_size();
    let bands = (1..=ds.raster_count())
        .map(|i| ds.rasterband(i).unwrap().read_band_as::<f32>().unwrap().data().to_vec())
        .collect();
    (bands, ds.geo_transform().unwrap(), w, h, ds.projection())
}

pub fn band_descriptions(path: &Path) -> Vec<String> {
    use gdal::Metadata;
    let ds = gdal::Dataset::open(path).unwrap();
    (1..=ds.raster_count()).map(|i| ds.rasterband(i).unwrap().description().unwrap()).collect()
}

/// ../shared (the project's real data), beside the checkout. In CI it must be there; on a
/// machine without it, tests that need it say so and return.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realdata");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: ../shared/realdata is missing, and CI must have it");
    }
    eprintln!("{test}: ../shared/realdata not present here; this test needs it and did not run");
    None
}

pub fn hash_file(p: &Path) -> String {
    blake3::hash(&std::fs::read(p).unwrap()).to_hex().to_string()
}

/// The sample type GDAL names for band 1 of a raster ("Byte", "Float32", ...), and band 1's
/// nodata value.
pub fn sample_type(path: &Path) -> (String, Option<f64>) {
    let ds = gdal::Dataset::open(path).unwrap();
    let b = ds.rasterband(1).unwrap();
    (b.band_type().name(), b.no_data_value())
}

/// Every file under `dir`, as paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// An align summary.json without its timings and memory (which differ between any two runs),
/// with `run`'s own path, where given, replaced by "RUN".
pub fn untimed_summary(p: &Path, run: Option<&Path>) -> serde_json::Value {
    let mut text = std::fs::read_to_string(p).unwrap();
    if let Some(run) = run {
        text = text.replace(&run.to_string_lossy().into_owned(), "RUN");
    }
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for k in ["seconds", "estimate_seconds", "megapixels_per_s", "peak_rss_mb"] {
        v.as_object_mut().unwrap().remove(k);
    }
    if let Some(b) = v.get_mut("baseline").and_then(|b| b.as_object_mut()) {
        b.remove("estimate_seconds");
    }
    v
}

/// The rows of a batch's `DIR/status.csv`, without the columns named in `drop`.
pub fn status_table(dir: &Path, drop: &[&str]) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("status.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            h.iter()
                .zip(rec.iter())
                .filter(|(k, _)| !drop.contains(k))
                .map(|(_, v)| v.to_string())
                .collect()
        })
        .collect()
}
