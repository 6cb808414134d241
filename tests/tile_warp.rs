//! `tile` on grids that need no warp, a warp, or only a whole-pixel offset, in the sources'
//! own sample type (issue 19): what is read in place, what the warp costs in accuracy, and
//! that tiles keep Byte/UInt16 data and its nodata.
mod common;
use common::*;
use serde_json::Value;
use simreg::artefacts::tiles::TileParams;
use simreg::raster::bands::BandReader;
use std::path::Path;

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn tile(args: &[&str]) -> Value {
    let mut a = vec!["tile", "--tile-size", "32", "--overlap", "0"];
    a.extend_from_slice(args);
    ok(&a)
}

fn s(p: impl AsRef<Path>) -> String {
    p.as_ref().to_string_lossy().into_owned()
}

fn first_tile(out: &Path) -> std::path::PathBuf {
    out.join(manifest(out)["tiles"][0]["path"].as_str().unwrap())
}

#[test]
fn a_grid_off_by_round_off_and_whole_pixels_is_read_in_place_and_recorded() {
    let t = tempfile::tempdir().unwrap();
    let (w, h) = (96, 64);
    let r = t.path().join("opt.tif");
    Fixture::utm(w, h, 3, |b, c, r| (noise(b, c, r) * 250.0).floor() + 1.0).write_u8(&r);
    // The moving grid starts 2 columns left and 1 row up of the reference, and its pixel is
    // 5e-5 larger: 0.0048 px of misfit at the reference's far corner (96 columns).
    let m = t.path().join("mov.tif");
    let (mw, mh) = (w + 4, h + 3);
    let mut f = Fixture::utm(mw, mh, 2, |b, c, r| (noise(b + 5, c, r) * 250.0).floor() + 1.0);
    f.geotransform[1] *= 1.0 + 5e-5;
    f.geotransform[5] *= 1.0 + 5e-5;
    f.geotransform[0] -= 2.0 * f.geotransform[1];
    f.geotransform[3] -= f.geotransform[5];
    f.write_u8(&m);
    let out = t.path().join("tiles");
    tile(&["--reference", &s(&r), "--moving", &s(&m), "--out", &s(&out)]);
    let man = manifest(&out);
    assert_eq!(man["params"]["in_place_tolerance_px"], 0.01);
    let src = &man["scenes"][0]["modalities"][1]["sources"][0];
    assert_eq!(src["resampling"], Value::Null, "read in place: {src}");
    let misfit = src["in_place_misfit_px"].as_f64().unwrap();
    assert!((0.004..0.006).contains(&misfit), "misfit {misfit} px");
    assert_eq!(
        man["scenes"][0]["modalities"][1]["bands"][0]["grid_offset"],
        serde_json::json!([2, 1])
    );
    assert_eq!(man["scenes"][0]["sample_type"], "Byte");
    // Tiles hold the moving file's own pixels, shifted by the whole-pixel offset.
    let (mv, ..) = read_all(&m);
    for t in man["tiles"].as_array().unwrap() {
        let path = out.join(t["path"].as_str().unwrap());
        assert_eq!(sample_type(&path).0, "Byte");
        let (bands, ..) = read_all(&path);
        let (col, row) = (
            t["window"]["col"].as_u64().unwrap() as usize,
            t["window"]["row"].as_u64().unwrap() as usize,
        );
        for y in 0..32 {
            for x in 0..32 {
                assert_eq!(bands[4][y * 32 + x], mv[1][(row + y + 1) * mw + col + x + 2]);
            }
        }
    }
    // Later stages read around a tile through the same offset.
    use simreg::artefacts::tiles::Manifest;
    use simreg::raster::{bands::OpenFiles, kind::Role, Window};
    let scene = &Manifest::load(&out).unwrap().scenes[0];
    let around = Window { col: -2, row: -1, width: 4, height: 2 };
    let got = scene.read_modality(&mut OpenFiles::default(), &out, Role::Moving, around).unwrap();
    assert_eq!(
        got[0],
        [
            mv[0][0],
            mv[0][1],
            mv[0][2],
            mv[0][3],
            mv[0][mw],
            mv[0][mw + 1],
            mv[0][mw + 2],
            mv[0][mw + 3]
        ]
    );
    // A tolerance below the misfit warps instead (bilinear, through a VRT kept with the tiles).
    let out2 = t.path().join("tiles_strict");
    tile(&[
        "--reference",
        &s(&r),
        "--moving",
        &s(&m),
        "--in-place-tolerance",
        "0.001",
        "--out",
        &s(&out2),
    ]);
    let man2 = manifest(&out2);
    let src2 = &man2["scenes"][0]["modalities"][1]["sources"][0];
    assert_eq!(src2["resampling"], "bilinear");
    assert_eq!(src2["in_place_misfit_px"], Value::Null);
    let grid_file = man2["scenes"][0]["modalities"][1]["bands"][0]["grid_file"].as_str().unwrap();
    assert!(grid_file.ends_with(".vrt"), "{grid_file}");
    // Both modalities are Byte: tiles stay Byte (warped values rounded back).
    assert_eq!(sample_type(&first_tile(&out2)).0, "Byte");
    let o = simreg(&[
        "tile",
        "--reference",
        &s(&r),
        "--moving",
        &s(&m),
        "--in-place-tolerance",
        "0.7",
        "--out",
        &s(t.path().join("x")),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("in-place-tolerance must be within [0, 0.5]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tiles_keep_the_sources_sample_type_and_nodata() {
    let t = tempfile::tempdir().unwrap();
    // UInt16 pair; the reference declares nodata 0 over its top-left 10×10.
    let r = t.path().join("opt.tif");
    let mut f = Fixture::utm(64, 64, 1, |_, c, r| {
        if c < 10 && r < 10 {
            0.0
        } else {
            1.0 + (noise(0, c, r) * 60000.0).floor()
        }
    });
    f.nodata = Some(0.0);
    f.write_u16(&r);
    let m = t.path().join("sar.tif");
    Fixture::utm(64, 64, 1, |_, c, r| (noise(3, c, r) * 65535.0).floor()).write_u16(&m);
    let out = t.path().join("tiles");
    tile(&[
        "--reference",
        &s(&r),
        "--moving",
        &s(&m),
        "--moving-kind",
        "sar-linear",
        "--min-valid",
        "0.5",
        "--out",
        &s(&out),
    ]);
    let path = out.join("opt/x00000_y00000.tif");
    assert_eq!(sample_type(&path), ("UInt16".into(), Some(0.0)), "the sources' nodata when free");
    // Read as later stages read: identical values, nodata where the reference had it.
    let rd = BandReader::open(&path, "tile").unwrap();
    let (ref_px, mov_px) = (rd.band(1).unwrap(), rd.band(2).unwrap());
    let (src_r, ..) = read_all(&r);
    let (src_m, ..) = read_all(&m);
    for y in 0..32 {
        for x in 0..32 {
            let v = src_r[0][y * 64 + x];
            if x < 10 && y < 10 {
                assert!(ref_px[y * 32 + x].is_nan());
            } else {
                assert_eq!(ref_px[y * 32 + x], v);
            }
        }
    }
    // The moving raster declares no nodata and has valid zeros: a tile holding both a valid
    // 0 and nodata takes another value for nodata; values survive exactly.
    let zeros = mov_px.iter().filter(|&&v| v == 0.0).count();
    let expect_zeros = (0..32)
        .flat_map(|y| (0..32).map(move |x| (x, y)))
        .filter(|&(x, y)| src_m[0][y * 64 + x] == 0.0)
        .count();
    assert_eq!(zeros, expect_zeros);
    // --dtype float32 asks for Float32 tiles with the same values.
    let out_f = t.path().join("tiles_f32");
    tile(&[
        "--reference",
        &s(&r),
        "--moving",
        &s(&m),
        "--moving-kind",
        "sar-linear",
        "--min-valid",
        "0.5",
        "--dtype",
        "float32",
        "--out",
        &s(&out_f),
    ]);
    let path_f = out_f.join("opt/x00000_y00000.tif");
    assert_eq!(sample_type(&path_f).0, "Float32");
    let rf = BandReader::open(&path_f, "tile").unwrap();
    for b in 1..=2 {
        let (a, bb) = (rd.band(b).unwrap(), rf.band(b).unwrap());
        assert!(a.iter().zip(&bb).all(|(x, y)| x == y || (x.is_nan() && y.is_nan())), "band {b}");
    }
    // Mixed types across modalities: Float32.
    let mf = t.path().join("sar_f32.tif");
    Fixture::utm(64, 64, 1, |_, c, r| noise(3, c, r)).write_f32(&mf);
    let out_m = t.path().join("tiles_mixed");
    tile(&["--reference", &s(&r), "--moving", &s(&mf), "--min-valid", "0.5", "--out", &s(&out_m)]);
    assert_eq!(manifest(&out_m)["scenes"][0]["sample_type"], "Float32");
    assert_eq!(sample_type(&first_tile(&out_m)).0, "Float32");
}

#[test]
fn padded_byte_tiles_mark_nodata_with_a_value_no_pixel_has() {
    let t = tempfile::tempdir().unwrap();
    // No nodata declared, values 0..=253 used: pixels past the edge need a free value (255).
    let r = t.path().join("a.tif");
    Fixture::utm(40, 40, 1, |_, c, r| ((c * 40 + r) % 254) as f64).write_u8(&r);
    let m = t.path().join("b.tif");
    Fixture::utm(40, 40, 1, |_, c, r| ((c + r * 40) % 254) as f64).write_u8(&m);
    let out = t.path().join("tiles");
    tile(&[
        "--reference",
        &s(&r),
        "--moving",
        &s(&m),
        "--moving-kind",
        "optical",
        "--edge",
        "pad",
        "--min-valid",
        "0.05",
        "--out",
        &s(&out),
    ]);
    let p = out.join("a/x00032_y00032.tif");
    assert_eq!(sample_type(&p), ("Byte".into(), Some(255.0)));
    let px = BandReader::open(&p, "tile").unwrap().band(1).unwrap();
    assert_eq!(px[0], ((32 * 40 + 32) % 254) as f32);
    assert!(px[8].is_nan() && px[8 * 32].is_nan(), "past the raster: nodata");
    assert_eq!(px.iter().filter(|v| v.is_finite()).count(), 64);
}

#[test]
fn compression_options_reach_the_tiles() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("a.tif");
    Fixture::utm(32, 32, 1, |_, c, _| c as f64).write_u16(&r);
    let m = t.path().join("b.tif");
    Fixture::utm(32, 32, 1, |_, _, r| r as f64).write_u16(&m);
    for (opt, tag) in [("deflate", "DEFLATE"), ("zstd", "ZSTD"), ("lzw", "LZW")] {
        let out = t.path().join(opt);
        tile(&[
            "--reference",
            &s(&r),
            "--moving",
            &s(&m),
            "--moving-kind",
            "optical",
            "--compress",
            opt,
            "--out",
            &s(&out),
        ]);
        let ds = gdal::Dataset::open(first_tile(&out)).unwrap();
        use gdal::Metadata;
        assert_eq!(
            ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE").as_deref(),
            Some(tag),
            "{opt}"
        );
        let (b, ..) = read_all(&first_tile(&out));
        assert_eq!(b[0][31], 31.0, "{opt}: values survive");
    }
}

/// Later stages on UInt16 tiles: labels, train and similarity run, and see exactly what they
/// see on Float32 tiles of the same data (training is deterministic: the same losses).
#[test]
fn labels_train_and_similarity_run_on_uint16_tiles() {
    let t = tempfile::tempdir().unwrap();
    let d = |p: &str| s(t.path().join(p));
    ok(&["synth", "--out", &d("synth"), "--size", "96", "--seed", "5"]);
    // The synthetic scene as UInt16 rasters (optical reflectance ×10000, SAR amplitude DN).
    let to_u16 = |src: &str, dst: &str, f: fn(f64) -> f64| {
        let (bands, gt, w, h, wkt) = read_all(Path::new(&d(src)));
        Fixture {
            width: w,
            height: h,
            geotransform: gt,
            epsg: None,
            wkt: Some(wkt),
            nodata: None,
            bands: bands
                .iter()
                .map(|b| b.iter().map(|&v| f(v as f64).round().clamp(1.0, 65535.0)).collect())
                .collect(),
        }
        .write_u16(Path::new(&d(dst)));
    };
    to_u16("synth/optical.tif", "opt.tif", |v| v * 10000.0);
    to_u16("synth/sar.tif", "sar.tif", |db| 10f64.powf(db / 20.0) * 1000.0);
    let mut losses = Vec::new();
    for dtype in ["source", "float32"] {
        let run = |p: &str| d(&format!("{dtype}/{p}"));
        ok(&[
            "tile",
            "--reference",
            &d("opt.tif"),
            "--moving",
            &d("sar.tif"),
            "--moving-kind",
            "sar-linear",
            "--tile-size",
            "32",
            "--overlap",
            "16",
            "--dtype",
            dtype,
            "--out",
            &run("tiles"),
        ]);
        let want = if dtype == "source" { "UInt16" } else { "Float32" };
        assert_eq!(manifest(Path::new(&run("tiles")))["scenes"][0]["sample_type"], want);
        ok(&[
            "labels",
            "--tiles",
            &run("tiles"),
            "--out",
            &run("labels"),
            "--amplitude",
            "3",
            "--noise",
            "iid",
            "--sigma",
            "1",
            "--seed",
            "2",
        ]);
        let tr = ok(&[
            "train",
            "--labels",
            &run("labels"),
            "--out",
            &run("train"),
            "--width",
            "4",
            "--depth",
            "2",
            "--corr-radius",
            "1",
            "--batch",
            "8",
            "--epochs",
            "2",
            "--seed",
            "3",
            "--device",
            "cpu",
        ]);
        losses.push(std::fs::read_to_string(Path::new(&run("train")).join("log.jsonl")).unwrap());
        let sim =
            ok(&["similarity", &run(""), "--k", "3", "--device", "cpu", "--max-memory", "1024"]);
        assert!(sim["ns_mean"].as_f64().unwrap().is_finite(), "{dtype}: {sim}");
        assert!(tr["final_train_loss"].is_number() || tr.is_object(), "{dtype}: {tr}");
    }
    let strip = |log: &str| -> Vec<String> {
        log.lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v.as_object_mut()
                    .unwrap()
                    .retain(|k, _| !k.contains("second") && !k.contains("per_s") && k != "t");
                v.to_string()
            })
            .collect()
    };
    assert_eq!(strip(&losses[0]), strip(&losses[1]), "UInt16 and Float32 tiles train alike");
}

#[test]
fn shared_realdata_approximate_warp_is_within_a_hundredth_of_a_pixel_of_the_exact_one() {
    // The grid of a real Sentinel-1 scene (SSL4EO-S12, EPSG:4326, ~10 m) warped onto a UTM
    // 43N reference grid at 9 m. The moving raster holds its own pixel coordinates (column and
    // row of each pixel centre): bilinear resampling reproduces an affine function exactly,
    // so each warped value says where the transformer put that reference pixel.
    let Some(rd) = shared_dir(
        "shared_realdata_approximate_warp_is_within_a_hundredth_of_a_pixel_of_the_exact_one",
    ) else {
        return;
    };
    use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
    let s1 = rd.join("ssl4eo_s12/ssl4eo_0000200_20200607_S1GRD_VVVH_dB_rawpixels_S2georef.tif");
    let ds = gdal::Dataset::open(&s1).unwrap();
    // The scene's grid (origin, pixel size, CRS), extended to 2400² px (~24 km) so that the
    // transformation's curvature shows over the reference's extent.
    let (gw, gh) = (2400usize, 2400usize);
    let g = ds.geo_transform().unwrap();
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("coords.tif");
    let mut cols = vec![0.0; gw * gh];
    let mut rows = vec![0.0; gw * gh];
    for r in 0..gh {
        for c in 0..gw {
            cols[r * gw + c] = c as f64 + 0.5;
            rows[r * gw + c] = r as f64 + 0.5;
        }
    }
    Fixture {
        width: gw,
        height: gh,
        geotransform: g,
        epsg: None,
        wkt: Some(ds.projection()),
        nodata: None,
        bands: vec![cols, rows],
    }
    .write_f32(&m);
    // The reference: UTM 43N, 9 m, inside the S1 footprint.
    let mut geo = SpatialRef::from_wkt(&ds.projection()).unwrap();
    let mut utm = SpatialRef::from_epsg(32643).unwrap();
    geo.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    utm.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let to_utm = CoordTransform::new(&geo, &utm).unwrap();
    let b = to_utm
        .transform_bounds(&[g[0], g[3] + gh as f64 * g[5], g[0] + gw as f64 * g[1], g[3]], 21)
        .unwrap();
    let (px, n) = (9.0, 2048usize);
    let half = n as f64 / 2.0 * px;
    let (x0, y0) = (((b[0] + b[2]) / 2.0 - half).round(), ((b[1] + b[3]) / 2.0 + half).round());
    let r = t.path().join("ref.tif");
    Fixture {
        width: n,
        height: n,
        geotransform: [x0, px, 0.0, y0, 0.0, -px],
        epsg: Some(32643),
        wkt: None,
        nodata: None,
        bands: vec![vec![1.0; n * n]],
    }
    .write_f32(&r);
    let warp = |name: &str, extra: &[&str]| {
        let out = t.path().join(name);
        let mut a = vec![
            "tile",
            "--reference",
            r.to_str().unwrap(),
            "--moving",
            m.to_str().unwrap(),
            "--moving-kind",
            "dem",
            "--tile-size",
            "2048",
            "--overlap",
            "0",
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        ok(&a);
        read_all(&first_tile(&out)).0
    };
    let approx = warp("approx", &[]);
    let exact = warp("exact", &["--exact-warp"]);
    // Moving pixels → reference pixels: the S1 pixel is ~9.7 m × 9.8 m, the reference's 9 m.
    let scale = [g[1] * 111_320.0 * (30.4f64).to_radians().cos() / px, -g[5] * 110_850.0 / px];
    let (mut worst, mut worst_exact) = (0.0f64, 0.0f64);
    let to_geo = CoordTransform::new(&utm, &geo).unwrap();
    for row in 0..n {
        for col in 0..n {
            let i = row * n + col;
            for k in 0..2 {
                worst = worst.max(((approx[k + 1][i] - exact[k + 1][i]) as f64).abs() * scale[k]);
            }
            if row % 61 == 0 && col % 61 == 0 {
                // The exact warp against PROJ in f64 at this pixel centre.
                let (mut xs, mut ys) =
                    ([x0 + (col as f64 + 0.5) * px], [y0 - (row as f64 + 0.5) * px]);
                to_geo.transform_coords(&mut xs, &mut ys, &mut []).unwrap();
                let (c, rr) = ((xs[0] - g[0]) / g[1], (ys[0] - g[3]) / g[5]);
                worst_exact = worst_exact
                    .max((exact[1][i] as f64 - c).abs() * scale[0])
                    .max((exact[2][i] as f64 - rr).abs() * scale[1]);
            }
        }
    }
    eprintln!(
        "approximate vs exact warp: {worst:.5} px; exact vs PROJ in f64: {worst_exact:.6} px"
    );
    assert!(worst <= 0.01, "approximate warp {worst} px from the exact one");
    assert!(worst_exact <= 1e-3, "exact warp {worst_exact} px from PROJ");
}

/// Tiles `r` and `m` (optical) twice, in the sources' own type and through f32, and checks
/// that both paths write byte-identical tiles and the same manifest.
fn native_and_converted_reads_agree(dir: &Path, r: &Path, m: &Path, params: TileParams) {
    use simreg::artefacts::tiles::{ModalityInput, SceneInput};
    use simreg::raster::kind::ModalityKind;
    use simreg::tiling::TileOptions;
    let one = |f: &Path| ModalityInput {
        files: vec![f.to_path_buf()],
        bands: None,
        kind: Some(ModalityKind::Optical),
    };
    let scene =
        SceneInput { name: None, reference: one(r), moving: one(m), map: None, synth: None };
    let mut outs = Vec::new();
    for converted_reads in [false, true] {
        let out = dir.join(format!("tiles_{converted_reads}"));
        let opts = TileOptions { quiet: true, converted_reads, ..TileOptions::default() };
        simreg::tiling::run(std::slice::from_ref(&scene), &params, &out, &opts).unwrap();
        outs.push(out);
    }
    let (a, b) = (manifest(&outs[0]), manifest(&outs[1]));
    assert_eq!(a, b, "manifests differ");
    let tiles = a["tiles"].as_array().unwrap();
    assert!(tiles.len() >= 4, "{} tiles", tiles.len());
    for t in tiles {
        let p = t["path"].as_str().unwrap();
        assert_eq!(hash_file(&outs[0].join(p)), hash_file(&outs[1].join(p)), "tile {p}");
    }
}

#[test]
fn tiles_cut_in_the_sources_type_equal_tiles_cut_through_f32() {
    use simreg::artefacts::tiles::EdgePolicy;
    let t = tempfile::tempdir().unwrap();
    let params = |edge, min_valid| TileParams {
        tile_size: 32,
        overlap: 8,
        min_valid,
        edge,
        ..TileParams::default()
    };
    // Byte with a shared nodata value (0) that some pixels have, the moving grid one column
    // and two rows off (its windows run past its raster): nodata fills the outside.
    let (w, h) = (90, 70);
    let r = t.path().join("r8.tif");
    let mut f = Fixture::utm(w, h, 2, |b, c, r| (noise(b, c, r) * 40.0).floor() * 6.0);
    f.nodata = Some(0.0);
    f.write_u8(&r);
    let m = t.path().join("m8.tif");
    let mut f = Fixture::utm(w, h, 1, |b, c, r| (noise(b + 3, c, r) * 255.0).floor());
    f.nodata = Some(0.0);
    f.geotransform[0] += 10.0;
    f.geotransform[3] -= 20.0;
    f.write_u8(&m);
    native_and_converted_reads_agree(&t.path().join("a"), &r, &m, params(EdgePolicy::Pad, 0.3));
    // UInt16 without nodata on one grid, padded past the edge: strips inside the rasters are
    // cut as UInt16, those running past them through f32 (a free value marks the outside).
    let r = t.path().join("r16.tif");
    Fixture::utm(w, h, 1, |_, c, r| (noise(0, c, r) * 60000.0).floor()).write_u16(&r);
    let m = t.path().join("m16.tif");
    Fixture::utm(w, h, 2, |b, c, r| (noise(b + 1, c, r) * 60000.0).floor()).write_u16(&m);
    native_and_converted_reads_agree(&t.path().join("b"), &r, &m, params(EdgePolicy::Pad, 0.1));
    native_and_converted_reads_agree(&t.path().join("c"), &r, &m, params(EdgePolicy::Shift, 0.9));
    // Warped through the VRT (a third of a pixel off and 1.3x the pixel size, so part of the
    // reference grid is outside it): Byte without nodata takes a free value per tile where
    // the alpha band is 0; UInt16 with nodata 7 keeps it where it is free (values between 6
    // and 8 warp to 7, which is data).
    let m = t.path().join("w8.tif");
    let mut f = Fixture::utm(60, 50, 2, |b, c, r| (noise(b + 7, c, r) * 255.0).floor());
    f.geotransform = [400003.3, 13.0, 0.0, 5099996.7, 0.0, -13.0];
    f.write_u8(&m);
    let r = t.path().join("r8.tif");
    native_and_converted_reads_agree(&t.path().join("d"), &r, &m, params(EdgePolicy::Shift, 0.2));
    let m = t.path().join("w16.tif");
    let mut f = Fixture::utm(60, 50, 1, |_, c, r| if (c + r) % 2 == 0 { 6.0 } else { 8.0 });
    f.geotransform = [400003.3, 13.0, 0.0, 5099996.7, 0.0, -13.0];
    f.nodata = Some(7.0);
    f.write_u16(&m);
    let r = t.path().join("r16n.tif");
    let mut f = Fixture::utm(w, h, 1, |_, c, r| 7.0 + (noise(0, c, r) * 6000.0).floor());
    f.nodata = Some(7.0);
    f.write_u16(&r);
    native_and_converted_reads_agree(&t.path().join("e"), &r, &m, params(EdgePolicy::Shift, 0.2));
}
