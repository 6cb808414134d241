//! Bad input to `simreg tile` / `simreg run`: one line naming the file and the problem, a
//! non-zero exit, and no output left behind.
mod common;
use common::*;
use std::path::{Path, PathBuf};

struct Case {
    dir: tempfile::TempDir,
    reference: PathBuf,
    moving: PathBuf,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("opt.tif");
    let moving = dir.path().join("sar.tif");
    Fixture::utm(64, 64, 3, |b, c, r| noise(b, c, r) * 1000.0).write_u16(&reference);
    Fixture::utm(64, 64, 2, |b, c, r| noise(b + 5, c, r)).write_f32(&moving);
    Case { dir, reference, moving }
}

impl Case {
    fn out(&self) -> PathBuf {
        self.dir.path().join("run/tiles")
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Runs `simreg tile` expecting failure; checks the message names `names_file` and contains
/// `problem`, that it is a single line, and that nothing was written.
fn fails(
    c: &Case,
    reference: &Path,
    moving: &Path,
    extra: &[&str],
    names_file: &str,
    problem: &str,
) {
    let out = c.out();
    let mut args = vec![
        "tile",
        "--reference",
        reference.to_str().unwrap(),
        "--moving",
        moving.to_str().unwrap(),
        "--tile-size",
        "32",
        "--overlap",
        "8",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = simreg(&args);
    let err = stderr(&o);
    assert!(!o.status.success(), "expected failure for {problem}; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected:\n{err}");
    assert!(err.starts_with("simreg: error: "), "{err}");
    assert!(err.contains(names_file), "error should name '{names_file}': {err}");
    assert!(err.contains(problem), "error should say '{problem}': {err}");
    assert!(!out.exists(), "output left behind for {problem}");
    assert!(
        !c.dir.path().join("run/tiles.partial").exists(),
        "partial output left behind for {problem}"
    );
}

#[test]
fn missing_file() {
    let c = case();
    fails(&c, &c.p("nope.tif"), &c.moving, &[], "nope.tif", "no such file");
}

#[test]
fn empty_zero_size_file() {
    let c = case();
    std::fs::write(c.p("empty.tif"), b"").unwrap();
    fails(&c, &c.reference, &c.p("empty.tif"), &[], "empty.tif", "file is empty");
}

#[test]
fn non_raster_file() {
    let c = case();
    std::fs::write(c.p("notes.tif"), b"these are field notes, not a raster\n").unwrap();
    fails(&c, &c.p("notes.tif"), &c.moving, &[], "notes.tif", "not a raster format GDAL can read");
    // A vector file given as a raster.
    std::fs::write(c.p("shapes.geojson"), br#"{"type":"FeatureCollection","features":[]}"#)
        .unwrap();
    fails(&c, &c.reference, &c.p("shapes.geojson"), &[], "shapes.geojson", "");
}

#[test]
fn truncated_tiff() {
    let c = case();
    let big = c.p("big.tif");
    Fixture::utm(64, 64, 2, |b, cc, r| noise(b + 9, cc, r)).write_f32(&big);
    let bytes = std::fs::read(&big).unwrap();
    let cut = c.p("cut.tif");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(&c, &c.reference, &cut, &[], "cut.tif", "truncated or corrupt");
    // Inputs are never modified.
    assert_eq!(std::fs::read(&cut).unwrap().len(), bytes.len() / 2);
}

#[test]
fn no_overlap_between_modalities() {
    let c = case();
    let far = c.p("far.tif");
    let mut f = Fixture::utm(64, 64, 1, |_, cc, r| noise(1, cc, r));
    f.geotransform[0] += 100_000.0;
    f.write_f32(&far);
    fails(&c, &c.reference, &far, &[], "far.tif", "does not overlap the reference");
}

#[test]
fn all_nodata() {
    let c = case();
    let nd = c.p("blank.tif");
    let mut f = Fixture::utm(64, 64, 1, |_, _, _| -9999.0);
    f.nodata = Some(-9999.0);
    f.write_f32(&nd);
    fails(
        &c,
        &c.reference,
        &nd,
        &["--moving-kind", "sar-db"],
        "blank.tif",
        "all pixels are nodata",
    );
    // Auto-detecting the kind reads the data first and must say the same.
    fails(&c, &c.reference, &nd, &[], "blank.tif", "all pixels are nodata");
}

#[test]
fn tile_size_larger_than_the_raster() {
    let c = case();
    fails(
        &c,
        &c.reference,
        &c.moving,
        &["--tile-size", "65", "--overlap", "0"],
        "opt.tif",
        "larger than the raster",
    );
}

#[test]
fn band_index_out_of_range() {
    let c = case();
    fails(
        &c,
        &c.reference,
        &c.moving,
        &["--reference-bands", "1,4"],
        "opt.tif",
        "band 4 out of range",
    );
    fails(&c, &c.reference, &c.moving, &["--moving-bands", "0"], "sar.tif", "band 0 out of range");
}

#[test]
fn crs_that_cannot_be_transformed() {
    let c = case();
    // A raster on Mars: PROJ refuses to transform between celestial bodies.
    let mars = c.p("mars.tif");
    let mut f = Fixture::utm(64, 64, 1, |_, cc, r| noise(2, cc, r));
    f.epsg = None;
    f.wkt = Some(r#"GEOGCS["Mars 2000",DATUM["D_Mars_2000",SPHEROID["Mars_2000_IAU_IAG",3396190.0,169.89444722361179]],PRIMEM["Greenwich",0],UNIT["Decimal_Degree",0.0174532925199433]]"#.into());
    f.geotransform = [10.0, 0.001, 0.0, 20.0, 0.0, -0.001];
    f.write_f32(&mars);
    fails(&c, &c.reference, &mars, &[], "mars.tif", "cannot be transformed to the reference CRS");
    // No CRS at all cannot be placed either.
    let none = c.p("nocrs.tif");
    let mut f = Fixture::utm(64, 64, 1, |_, cc, r| noise(3, cc, r));
    f.epsg = None;
    f.write_f32(&none);
    fails(&c, &c.reference, &none, &[], "nocrs.tif", "has no CRS");
}

#[test]
fn unwritable_output_directory() {
    let c = case();
    // A regular file where a directory must go (root ignores permission bits).
    std::fs::write(c.p("run"), b"a file").unwrap();
    let o = simreg(&[
        "tile",
        "--reference",
        c.reference.to_str().unwrap(),
        "--moving",
        c.moving.to_str().unwrap(),
        "--tile-size",
        "32",
        "--overlap",
        "8",
        "--out",
        c.out().to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("run/tiles") && err.contains("cannot create directory"), "{err}");
    // An existing directory that simreg did not write is never replaced.
    std::fs::remove_file(c.p("run")).unwrap();
    std::fs::create_dir_all(c.out()).unwrap();
    std::fs::write(c.out().join("precious.txt"), b"keep me").unwrap();
    let o = simreg(&[
        "tile",
        "--reference",
        c.reference.to_str().unwrap(),
        "--moving",
        c.moving.to_str().unwrap(),
        "--tile-size",
        "32",
        "--overlap",
        "8",
        "--out",
        c.out().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("refusing to replace"), "{}", stderr(&o));
    assert_eq!(std::fs::read(c.out().join("precious.txt")).unwrap(), b"keep me");
}

#[test]
fn bad_parameters() {
    let c = case();
    fails(
        &c,
        &c.reference,
        &c.moving,
        &["--overlap", "32"],
        "overlap",
        "must be smaller than the tile size",
    );
    fails(&c, &c.reference, &c.moving, &["--min-valid", "1.5"], "min-valid", "within [0, 1]");
}

#[test]
fn bad_toml() {
    let c = case();
    let cases = [
        ("syntax.toml", "[tile\ntile_size = 3", "syntax.toml"),
        ("unknown.toml", "[tile]\ntile_sise = 64\n[[tile.scene]]\nreference = { files = [\"opt.tif\"] }\nmoving = { files = [\"sar.tif\"] }\n", "unknown field `tile_sise`"),
        ("empty.toml", "[run]\n", "no stage to run"),
        ("noscene.toml", "[tile]\nscene = []\n", "has no [[tile.scene]]"),
        ("badtype.toml", "[tile]\ntile_size = \"big\"\nscene = []\n", "invalid type"),
    ];
    for (name, text, expect) in cases {
        std::fs::write(c.p(name), text).unwrap();
        let out = c.dir.path().join("run");
        let o = simreg(&["run", c.p(name).to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{name}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(err.contains(name) && err.contains(expect), "{name}: {err}");
        assert!(!out.exists(), "{name}: run directory created");
    }
}
