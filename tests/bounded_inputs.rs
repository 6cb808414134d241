//! Declared raster sizes are bounded before anything is written (issue 21): a 1.3 KB corrupt
//! TIFF whose header claims 60000² px made `tile` write 8.1 GB in 10 s and `align` 9.5 GB; a
//! sparse 100000² raster made `tile` write without bound.
mod common;
use common::*;
use gdal::spatial_ref::SpatialRef;
use gdal::DriverManager;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A classic GeoTIFF of 1286 bytes, in UTM 31N, whose header declares 60000 x 60000 Byte
/// pixels in one strip starting inside the file: GDAL opens it, and fails on the first read.
/// (simreg before issue 21 wrote 5.0 GB in 10 s from it in `tile`, 6.7 GB in `align`.)
fn corrupt_60000(path: &Path) {
    /// (tag, type, count, an inline value or the bytes stored after the IFD)
    type Tag = (u16, u16, u32, Result<u32, Vec<u8>>);
    let f64s = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let u16s = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let tags: Vec<Tag> = vec![
        (256, 4, 1, Ok(60000)),                        // ImageWidth
        (257, 4, 1, Ok(60000)),                        // ImageLength
        (258, 3, 1, Ok(8)),                            // BitsPerSample
        (259, 3, 1, Ok(1)),                            // Compression: none
        (262, 3, 1, Ok(1)),                            // Photometric: min-is-black
        (273, 4, 1, Ok(0)),                            // StripOffsets (set below)
        (277, 3, 1, Ok(1)),                            // SamplesPerPixel
        (278, 4, 1, Ok(60000)),                        // RowsPerStrip
        (279, 4, 1, Ok(3_600_000_000)), // StripByteCounts: far past the end of the file
        (33550, 12, 3, Err(f64s(&[10.0, 10.0, 0.0]))), // ModelPixelScale
        (33922, 12, 6, Err(f64s(&[0.0, 0.0, 0.0, 400000.0, 5100000.0, 0.0]))), // ModelTiepoint
        // GeoKeys: projected, pixel-is-area, EPSG:32631
        (34735, 3, 16, Err(u16s(&[1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32631]))),
    ];
    let after_ifd = 8 + 2 + 12 * tags.len() as u32 + 4;
    let mut blobs = Vec::new();
    let mut entries = Vec::new();
    for (tag, ty, count, v) in &tags {
        let value = match v {
            Ok(v) => *v,
            Err(bytes) => {
                let at = after_ifd + blobs.len() as u32;
                blobs.extend_from_slice(bytes);
                at
            }
        };
        entries.push((*tag, *ty, *count, value));
    }
    let data_at = after_ifd + blobs.len() as u32;
    let mut b = b"II".to_vec();
    b.extend(42u16.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend((tags.len() as u16).to_le_bytes());
    for (tag, ty, count, value) in entries {
        let value = if tag == 273 { data_at } else { value };
        b.extend(tag.to_le_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(count.to_le_bytes());
        b.extend(value.to_le_bytes());
    }
    b.extend(0u32.to_le_bytes());
    b.extend(blobs);
    b.extend((0..1024).map(|i| i as u8));
    std::fs::write(path, b).unwrap();
}

/// A valid, sparse (no block written) tiled GeoTIFF of `n` x `n` Byte pixels in UTM 31N.
fn sparse(path: &Path, n: usize) {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let opts = gdal::raster::RasterCreationOptions::from_iter([
        "TILED=YES",
        "SPARSE_OK=TRUE",
        "BIGTIFF=YES",
    ]);
    let mut ds = driver.create_with_band_type_with_options::<u8, _>(path, n, n, 1, &opts).unwrap();
    ds.set_geo_transform(&[400000.0, 10.0, 0.0, 5100000.0, 0.0, -10.0]).unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(32631).unwrap()).unwrap();
    ds.close().unwrap();
}

struct Case {
    dir: tempfile::TempDir,
    moving: PathBuf,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let moving = dir.path().join("sar.tif");
    // 8 bands: the free-space estimates below reach ~10¹² bytes, more than any test disk.
    Fixture::utm(64, 64, 8, |b, c, r| noise(b + 5, c, r)).write_f32(&moving);
    Case { dir, moving }
}

/// Runs simreg expecting a one-line refusal naming `file` and saying `problem`, quickly, with
/// nothing written in the run folder.
fn refused(c: &Case, args: &[&str], file: &str, problem: &str) {
    let t = Instant::now();
    let o = simreg(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "expected a refusal ({problem}); stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected:\n{err}");
    assert!(err.contains(file) && err.contains(problem), "{err}");
    assert!(t.elapsed().as_secs() < 30, "refused only after {:?}", t.elapsed());
    let run = c.dir.path().join("run");
    let left: Vec<_> = std::fs::read_dir(&run)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "written in the run folder: {left:?}");
}

#[test]
fn a_corrupt_header_claiming_60000_squared_is_refused_before_any_write() {
    let c = case();
    let bad = c.dir.path().join("corrupt.tif");
    corrupt_60000(&bad);
    assert_eq!(std::fs::metadata(&bad).unwrap().len(), 1286);
    let info = gdal::Dataset::open(&bad).unwrap();
    assert_eq!(info.raster_size(), (60000, 60000), "GDAL reads the header");
    assert!(info.spatial_ref().is_ok(), "a georeferenced header");
    let out = c.dir.path().join("run/out");
    let tile = ["tile", "--reference", s(&bad), "--moving", s(&c.moving), "--out", s(&out)];
    refused(&c, &tile, "corrupt.tif", "first block cannot be read");
    // As the moving raster, too: every input is checked, not only the one that sets the grid.
    let good = c.dir.path().join("opt.tif");
    Fixture::utm(64, 64, 1, noise).write_u16(&good);
    let tile = ["tile", "--reference", s(&good), "--moving", s(&bad), "--out", s(&out)];
    refused(&c, &tile, "corrupt.tif", "first block cannot be read");
    let align = [
        "align",
        "--method",
        "phase-correlation",
        "--reference",
        s(&bad),
        "--moving",
        s(&c.moving),
        "--out",
        s(&out),
    ];
    refused(&c, &align, "corrupt.tif", "first block cannot be read");
}

#[test]
fn a_sparse_100000_squared_raster_is_refused_by_max_pixels_then_by_free_space() {
    let c = case();
    let big = c.dir.path().join("sparse.tif");
    sparse(&big, 100_000);
    assert!(std::fs::metadata(&big).unwrap().len() < 10_000_000, "the fixture is sparse");
    let out = c.dir.path().join("run/out");
    let tile = [
        "tile",
        "--reference",
        s(&big),
        "--moving",
        s(&c.moving),
        "--tile-size",
        "32",
        "--overlap",
        "16",
        "--out",
        s(&out),
    ];
    refused(&c, &tile, "sparse.tif", "over --max-pixels 2.0e9");
    let align = [
        "align",
        "--method",
        "phase-correlation",
        "--reference",
        s(&big),
        "--moving",
        s(&c.moving),
        "--out",
        s(&out),
    ];
    refused(&c, &align, "sparse.tif", "over --max-pixels 2.0e9");
    // Raising the limit: the estimate (10¹⁰ px of tiles) is checked against the free space.
    let mut raised = tile.to_vec();
    raised.extend(["--max-pixels", "1e11"]);
    refused(&c, &raised, "run/out", "are free there");
    let mut raised = align.to_vec();
    raised.extend(["--max-pixels", "1e11"]);
    refused(&c, &raised, "run/out", "are free there");
}

#[test]
fn a_raster_within_the_limit_is_tiled_and_the_limit_is_a_flag_and_a_pipeline_key() {
    let c = case();
    let good = c.dir.path().join("opt.tif");
    Fixture::utm(64, 64, 1, noise).write_u16(&good);
    let out = c.dir.path().join("tiles");
    let base = ["tile", "--reference", s(&good), "--moving", s(&c.moving), "--out", s(&out)];
    let mut tight = base.to_vec();
    tight.extend(["--tile-size", "32", "--overlap", "8", "--max-pixels", "4095"]);
    refused(&c, &tight, "opt.tif", "declares 64x64 = 4096 pixels, over --max-pixels 4095");
    let mut exact = base.to_vec();
    exact.extend(["--tile-size", "32", "--overlap", "8", "--max-pixels", "4096"]);
    let o = simreg(&exact);
    assert!(o.status.success(), "{}", stderr(&o));
    for bad in ["-5", "0", "1.5"] {
        let mut a = base.to_vec();
        a.extend(["--max-pixels", bad]);
        let err = stderr(&simreg(&a));
        assert!(err.contains("--max-pixels") && err.contains(bad), "{bad}: {err}");
    }
    // In a pipeline, `[tile] max_pixels` (it changes no tile, so it is not in the tiles' hash).
    let p = c.dir.path().join("p.toml");
    let toml = format!(
        "[tile]\ntile_size = 32\noverlap = 8\nmax_pixels = 4095\n[[tile.scene]]\nreference = {{ files = ['{}'] }}\nmoving = {{ files = ['{}'] }}\n",
        s(&good),
        s(&c.moving)
    );
    std::fs::write(&p, toml).unwrap();
    let o = simreg(&["run", s(&p), "--out", s(&c.dir.path().join("prun"))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("over --max-pixels 4095"), "{}", stderr(&o));
}
