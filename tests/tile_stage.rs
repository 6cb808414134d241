//! The `tile` stage end to end through the CLI, on rasters written by the tests.
mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn tile(args: &[&str]) -> Value {
    let mut a = vec!["tile"];
    a.extend_from_slice(args);
    a.push("--json");
    let o = simreg(&a);
    assert!(o.status.success(), "simreg tile failed: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("--json prints JSON")
}

/// Reference: 3 bands UInt16; moving: 2 bands Float32 on the same grid.
fn same_grid_pair(dir: &Path, w: usize, h: usize) -> (String, String) {
    let r = dir.join("opt.tif");
    let m = dir.join("sar.tif");
    Fixture::utm(w, h, 3, |b, c, r| (noise(b, c, r) * 10000.0).floor()).write_u16(&r);
    Fixture::utm(w, h, 2, |b, c, r| noise(b + 7, c, r) * 0.5 + 0.01).write_f32(&m);
    (r.to_string_lossy().into(), m.to_string_lossy().into())
}

#[test]
fn same_grid_tiles_hold_exact_source_pixels_and_geotransforms() {
    let t = tempfile::tempdir().unwrap();
    let (r, m) = same_grid_pair(t.path(), 100, 90);
    let out = t.path().join("tiles");
    let s = tile(&[
        "--reference",
        &r,
        "--moving",
        &m,
        "--tile-size",
        "32",
        "--overlap",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    // Stride 24: columns 0, 24, 48 and 68 (shifted flush); rows 0, 24, 48 and 58 (shifted).
    assert_eq!(s["n_tiles"], 16);
    let (src_r, ..) = read_all(Path::new(&r));
    let (src_m, src_gt, w, ..) = read_all(Path::new(&m));
    let man = manifest(&out);
    let tiles = man["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), 16);
    for t in tiles {
        let (col, row) = (
            t["window"]["col"].as_u64().unwrap() as usize,
            t["window"]["row"].as_u64().unwrap() as usize,
        );
        let (bands, gt, tw, th, proj) = read_all(&out.join(t["path"].as_str().unwrap()));
        assert_eq!((tw, th, bands.len()), (32, 32, 5));
        // Exact: the reference geotransform offset by the window.
        let expect = [
            src_gt[0] + col as f64 * src_gt[1],
            src_gt[1],
            0.0,
            src_gt[3] + row as f64 * src_gt[5],
            0.0,
            src_gt[5],
        ];
        assert_eq!(gt, expect, "tile {}", t["id"]);
        assert!(proj.contains("32631"), "tile CRS is the reference CRS");
        for (b, src) in src_r.iter().chain(src_m.iter()).enumerate() {
            for y in 0..32 {
                for x in 0..32 {
                    assert_eq!(
                        bands[b][y * 32 + x],
                        src[(row + y) * w + col + x],
                        "tile {} band {} ({x},{y})",
                        t["id"],
                        b + 1
                    );
                }
            }
        }
    }
    let descs = band_descriptions(&out.join(tiles[0]["path"].as_str().unwrap()));
    assert_eq!(
        descs,
        [
            "reference:opt:b1",
            "reference:opt:b2",
            "reference:opt:b3",
            "moving:sar:b1",
            "moving:sar:b2"
        ]
    );
    // Statistics: the moving floats are non-negative → linear SAR, summarised in dB.
    let moving = &man["scenes"][0]["modalities"][1];
    assert_eq!(moving["kind"], "sar-linear");
    let p50 = moving["bands"][0]["stats"]["p50"].as_f64().unwrap();
    assert!((-10.0..-5.0).contains(&p50), "median of U(0.01,0.51) in dB ≈ -6.0, got {p50}");
}

#[test]
fn edge_policies_place_the_last_tiles_as_documented() {
    let t = tempfile::tempdir().unwrap();
    let (r, m) = same_grid_pair(t.path(), 70, 40);
    let count = |edge: &str| {
        let out = t.path().join(format!("tiles_{edge}"));
        let s = tile(&[
            "--reference",
            &r,
            "--moving",
            &m,
            "--tile-size",
            "32",
            "--overlap",
            "0",
            "--edge",
            edge,
            "--min-valid",
            "0",
            "--out",
            out.to_str().unwrap(),
        ]);
        (s["n_tiles"].as_u64().unwrap(), manifest(&out))
    };
    // 70 = 2×32 + 6; 40 = 32 + 8.
    let (n, man) = count("drop");
    assert_eq!(n, 2);
    assert!(man["tiles"].as_array().unwrap().iter().all(|t| t["placement"] == "interior"));
    let (n, man) = count("shift");
    assert_eq!(n, 6);
    let last = &man["tiles"][5];
    assert_eq!(
        (
            last["window"]["col"].as_u64(),
            last["window"]["row"].as_u64(),
            last["placement"].as_str()
        ),
        (Some(38), Some(8), Some("shifted"))
    );
    let (n, man) = count("pad");
    assert_eq!(n, 6);
    let last = &man["tiles"][5];
    assert_eq!(
        (
            last["window"]["col"].as_u64(),
            last["window"]["row"].as_u64(),
            last["placement"].as_str()
        ),
        (Some(64), Some(32), Some("padded"))
    );
    // 6×8 of the padded corner tile's 32×32 pixels are inside the raster.
    assert!((last["valid_fraction"].as_f64().unwrap() - 48.0 / 1024.0).abs() < 1e-12);
    let (bands, ..) = read_all(&t.path().join("tiles_pad").join(last["path"].as_str().unwrap()));
    assert!(bands[0][0].is_finite() && bands[0][6].is_nan() && bands[0][8 * 32].is_nan());
    // With the default min-valid (0.9) the padded tiles are rejected and counted.
    let out = t.path().join("tiles_pad_default");
    let s = tile(&[
        "--reference",
        &r,
        "--moving",
        &m,
        "--tile-size",
        "32",
        "--overlap",
        "0",
        "--edge",
        "pad",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!((s["n_tiles"].as_u64(), s["n_rejected"].as_u64()), (Some(2), Some(4)));
}

#[test]
fn nodata_in_either_modality_rejects_tiles() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("opt.tif");
    let m = t.path().join("sar.tif");
    // 96×64 → six 32×32 windows. Reference: nodata (0) in the top-left 40×40; moving: NaN
    // where col ≥ 70 and row ≥ 34.
    let mut f =
        Fixture::utm(
            96,
            64,
            1,
            |_, c, r| if c < 40 && r < 40 { 0.0 } else { 100.0 + noise(0, c, r) },
        );
    f.nodata = Some(0.0);
    f.write_f32(&r);
    Fixture::utm(96, 64, 1, |_, c, r| if c >= 70 && r >= 34 { f64::NAN } else { 0.2 })
        .write_f32(&m);
    let run = |min_valid: &str, name: &str| {
        let out = t.path().join(name);
        let s = tile(&[
            "--reference",
            r.to_str().unwrap(),
            "--moving",
            m.to_str().unwrap(),
            "--tile-size",
            "32",
            "--overlap",
            "0",
            "--min-valid",
            min_valid,
            "--out",
            out.to_str().unwrap(),
        ]);
        let man = manifest(&out);
        let fractions: std::collections::BTreeMap<String, f64> = man["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().rsplit('/').next().unwrap().to_string(),
                    t["valid_fraction"].as_f64().unwrap(),
                )
            })
            .collect();
        (s, fractions)
    };
    let (s, kept) = run("0.9", "tiles");
    assert_eq!(
        (s["n_windows"].as_u64(), s["n_tiles"].as_u64(), s["n_rejected"].as_u64()),
        (Some(6), Some(2), Some(4))
    );
    assert_eq!(kept["x00064_y00000"], 1.0);
    assert_eq!(kept["x00032_y00032"], 1.0 - 64.0 / 1024.0); // 8×8 of reference nodata
                                                            // Lower the bar: windows with any jointly valid pixel are kept; fractions are exact.
    let (s, kept) = run("0.1", "tiles_low");
    assert_eq!(s["n_tiles"], 5);
    assert!(!kept.contains_key("x00000_y00000"));
    assert_eq!(kept["x00032_y00000"], 0.75);
    assert_eq!(kept["x00064_y00032"], 1.0 - 26.0 * 30.0 / 1024.0); // moving NaN
}

#[test]
fn another_crs_lands_on_the_reference_grid_within_a_tenth_of_a_pixel() {
    // The moving raster is in geographic coordinates; its two bands hold the UTM easting and
    // northing (relative to an origin) of the ground it shows, displaced by a known offset.
    // After warping onto the UTM reference grid, band − pixel-centre coordinate = the offset.
    use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
    let t = tempfile::tempdir().unwrap();
    let (x0, y0, px) = (400000.0, 5100000.0, 10.0);
    let (w, h) = (96usize, 96usize);
    let r = t.path().join("ref.tif");
    Fixture::utm(w, h, 1, |_, c, r| noise(0, c, r)).write_f32(&r);
    let mut utm = SpatialRef::from_epsg(UTM31N).unwrap();
    let mut geo = SpatialRef::from_epsg(4326).unwrap();
    utm.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    geo.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let to_geo = CoordTransform::new(&utm, &geo).unwrap();
    let to_utm = CoordTransform::new(&geo, &utm).unwrap();
    let b = to_geo
        .transform_bounds(
            &[x0 - 200.0, y0 - h as f64 * px - 200.0, x0 + w as f64 * px + 200.0, y0 + 200.0],
            21,
        )
        .unwrap();
    let (gw, gh) = (150usize, 150usize);
    let (dlon, dlat) = ((b[2] - b[0]) / gw as f64, (b[3] - b[1]) / gh as f64);
    let (off_x, off_y) = (23.7, -14.2); // metres: 2.37 px east, 1.42 px north
    let mut ex = vec![0.0; gw * gh];
    let mut ny = vec![0.0; gw * gh];
    for row in 0..gh {
        for col in 0..gw {
            let mut xs = [b[0] + (col as f64 + 0.5) * dlon];
            let mut ys = [b[3] - (row as f64 + 0.5) * dlat];
            to_utm.transform_coords(&mut xs, &mut ys, &mut []).unwrap();
            ex[row * gw + col] = xs[0] - x0 + off_x;
            ny[row * gw + col] = ys[0] - y0 + off_y;
        }
    }
    let m = t.path().join("geo.tif");
    Fixture {
        width: gw,
        height: gh,
        geotransform: [b[0], dlon, 0.0, b[3], 0.0, -dlat],
        epsg: Some(4326),
        wkt: None,
        nodata: None,
        bands: vec![ex, ny],
    }
    .write_f32(&m);
    let out = t.path().join("tiles");
    tile(&[
        "--reference",
        r.to_str().unwrap(),
        "--moving",
        m.to_str().unwrap(),
        "--moving-kind",
        "dem",
        "--tile-size",
        "96",
        "--overlap",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let man = manifest(&out);
    assert_eq!(man["scenes"][0]["modalities"][1]["sources"][0]["resampling"], "bilinear");
    let (bands, ..) = read_all(&out.join(man["tiles"][0]["path"].as_str().unwrap()));
    let mut worst: f64 = 0.0;
    for row in 4..h - 4 {
        for col in 4..w - 4 {
            let cx = (col as f64 + 0.5) * px;
            let cy = -(row as f64 + 0.5) * px;
            let dx = bands[1][row * w + col] as f64 - cx;
            let dy = bands[2][row * w + col] as f64 - cy;
            worst = worst.max(((dx - off_x) / px).abs()).max(((dy - off_y) / px).abs());
        }
    }
    assert!(worst < 0.1, "worst misplacement {worst} px");
}

#[test]
fn rerun_is_a_no_op_and_an_interrupted_run_resumes() {
    let t = tempfile::tempdir().unwrap();
    let (r, m) = same_grid_pair(t.path(), 80, 80);
    let (hr, hm) = (hash_file(Path::new(&r)), hash_file(Path::new(&m)));
    let out = t.path().join("tiles");
    let args = [
        "--reference",
        &r,
        "--moving",
        &m,
        "--tile-size",
        "32",
        "--overlap",
        "8",
        "--out",
        out.to_str().unwrap(),
    ];
    let first = tile(&args);
    assert_eq!(first["up_to_date"], false);
    let man = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let tile0 = out.join(manifest(&out)["tiles"][0]["path"].as_str().unwrap());
    let mtime = std::fs::metadata(&tile0).unwrap().modified().unwrap();
    let again = tile(&args);
    assert_eq!(again["up_to_date"], true);
    assert_eq!(again["n_tiles"], first["n_tiles"]);
    assert_eq!(std::fs::read_to_string(out.join("manifest.json")).unwrap(), man);
    assert_eq!(std::fs::metadata(&tile0).unwrap().modified().unwrap(), mtime);
    // Inputs are never modified (no .aux.xml beside them either).
    assert_eq!((hash_file(Path::new(&r)), hash_file(Path::new(&m))), (hr, hm));
    assert!(!t.path().join("opt.tif.aux.xml").exists());

    // A changed parameter re-tiles.
    let changed = tile(&[
        "--reference",
        &r,
        "--moving",
        &m,
        "--tile-size",
        "40",
        "--overlap",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(changed["up_to_date"], false);
    assert_eq!(manifest(&out)["params"]["tile_size"], 40);

    // Simulate an interruption: finished tiles sit in <out>.partial with the run's hash.
    let hash = manifest(&out)["input_hash"].as_str().unwrap().to_string();
    let n = manifest(&out)["tiles"].as_array().unwrap().len() as u64;
    let partial = t.path().join("tiles.partial");
    std::fs::rename(&out, &partial).unwrap();
    std::fs::remove_file(partial.join("manifest.json")).unwrap();
    std::fs::write(partial.join(".input_hash"), &hash).unwrap();
    let resumed = tile(&[
        "--reference",
        &r,
        "--moving",
        &m,
        "--tile-size",
        "40",
        "--overlap",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(resumed["n_reused"].as_u64(), Some(n));
    assert!(!partial.exists() && out.join("manifest.json").exists());
}

#[test]
fn vector_map_is_rasterised_with_fill_and_edge() {
    let t = tempfile::tempdir().unwrap();
    let (r, m) = same_grid_pair(t.path(), 64, 64);
    // A 20×20-pixel square building (in UTM 31N) and a road line, given in WGS84 GeoJSON.
    use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
    let mut utm = SpatialRef::from_epsg(UTM31N).unwrap();
    let mut geo = SpatialRef::from_epsg(4326).unwrap();
    utm.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    geo.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(&utm, &geo).unwrap();
    let ll = |c: f64, r: f64| {
        let (mut x, mut y) = ([400000.0 + c * 10.0], [5100000.0 - r * 10.0]);
        ct.transform_coords(&mut x, &mut y, &mut []).unwrap();
        format!("[{:.10},{:.10}]", x[0], y[0])
    };
    let square =
        [ll(10.0, 10.0), ll(30.0, 10.0), ll(30.0, 30.0), ll(10.0, 30.0), ll(10.0, 10.0)].join(",");
    let road = [ll(0.0, 50.5), ll(64.0, 50.5)].join(",");
    let geojson = format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{{}},"geometry":{{"type":"Polygon","coordinates":[[{square}]]}}}},{{"type":"Feature","properties":{{}},"geometry":{{"type":"LineString","coordinates":[{road}]}}}}]}}"#
    );
    let map = t.path().join("map.geojson");
    std::fs::write(&map, geojson).unwrap();
    let out = t.path().join("tiles");
    tile(&[
        "--reference",
        &r,
        "--moving",
        &m,
        "--map",
        map.to_str().unwrap(),
        "--tile-size",
        "64",
        "--overlap",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let man = manifest(&out);
    let (bands, ..) = read_all(&out.join(man["tiles"][0]["path"].as_str().unwrap()));
    assert_eq!(bands.len(), 7);
    let (fill, edge) = (&bands[5], &bands[6]);
    let at = |v: &Vec<f32>, c: usize, r: usize| v[r * 64 + c];
    // The square covers pixels 10..30 (about; reprojection moves corners by < 0.01 px).
    let square_px: f32 =
        (0..40).flat_map(|r| (0..40).map(move |c| (c, r))).map(|(c, r)| at(fill, c, r)).sum();
    assert!((square_px - 400.0).abs() <= 2.0, "square fill {square_px}");
    assert_eq!((at(fill, 20, 20), at(edge, 20, 20)), (1.0, 0.0));
    assert_eq!((at(fill, 10, 20), at(edge, 10, 20)), (1.0, 1.0));
    assert_eq!(at(fill, 5, 5), 0.0);
    // The road burns one row of pixels, all of it edge.
    assert_eq!((0..64).map(|c| at(fill, c, 50)).sum::<f32>(), 64.0);
    assert_eq!((0..64).map(|c| at(edge, c, 50)).sum::<f32>(), 64.0);
    assert_eq!(
        band_descriptions(&out.join(man["tiles"][0]["path"].as_str().unwrap()))[5],
        "map:map:fill"
    );
}

#[test]
fn pipeline_toml_tiles_several_scenes_relative_to_the_file() {
    let t = tempfile::tempdir().unwrap();
    same_grid_pair(t.path(), 64, 64);
    std::fs::write(
        t.path().join("p.toml"),
        r#"
[tile]
tile_size = 32
overlap = 0
[[tile.scene]]
name = "a"
reference = { files = ["opt.tif"], bands = [3, 1] }
moving = { files = ["sar.tif"], kind = "sar-db" }
[[tile.scene]]
name = "b"
reference = { files = ["opt.tif"] }
moving = { files = ["sar.tif"], bands = [2] }
"#,
    )
    .unwrap();
    let run = t.path().join("run");
    let o = std::process::Command::new(bin())
        .args(["run", "p.toml", "--json", "--out", run.to_str().unwrap()])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["tile"]["n_tiles"], 8);
    let man = manifest(&run.join("tiles"));
    assert_eq!(man["scenes"][0]["modalities"][0]["bands"][0]["description"], "reference:opt:b3");
    assert_eq!(man["scenes"][0]["modalities"][1]["kind"], "sar-db");
    assert_eq!(man["scenes"][1]["modalities"][1]["bands"].as_array().unwrap().len(), 1);
    assert_eq!(band_descriptions(&run.join("tiles/b/x00000_y00000.tif")).len(), 4);
    let eff = std::fs::read_to_string(run.join("pipeline.toml")).unwrap();
    assert!(
        eff.contains("min_valid = 0.9")
            && eff.contains(&t.path().join("opt.tif").to_string_lossy().into_owned()),
        "{eff}"
    );
}

#[test]
fn later_stages_can_read_around_a_tile_from_the_grid_copies() {
    use simreg::artefacts::tiles::Manifest;
    use simreg::raster::{bands::OpenFiles, kind::Role, Window};
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("opt.tif");
    Fixture::utm(64, 64, 2, noise).write_f32(&r);
    // Moving on a grid offset by half a pixel: warped, and its copy kept with the tiles.
    let m = t.path().join("sar.tif");
    let mut f = Fixture::utm(64, 64, 1, |_, c, r| (c + r) as f64);
    f.geotransform[0] += 5.0;
    f.write_f32(&m);
    let out = t.path().join("tiles");
    tile(&[
        "--reference",
        r.to_str().unwrap(),
        "--moving",
        m.to_str().unwrap(),
        "--tile-size",
        "32",
        "--overlap",
        "0",
        "--min-valid",
        "0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    let man = Manifest::load(&out).unwrap();
    let scene = &man.scenes[0];
    assert!(
        scene.modalities[1].bands[0].grid_file.is_relative(),
        "warped copy lives with the tiles"
    );
    let tile = man.tiles.iter().find(|t| t.window.col == 32 && t.window.row == 0).unwrap();
    let margin = 4;
    let around = Window {
        col: 32 - margin,
        row: -margin,
        width: 32 + 2 * margin as usize,
        height: 32 + 2 * margin as usize,
    };
    let mut open = OpenFiles::default();
    let mv = scene.read_modality(&mut open, &out, Role::Moving, around).unwrap();
    let rf = scene.read_modality(&mut open, &out, Role::Reference, around).unwrap();
    let (bands, ..) = read_all(&out.join(&tile.path));
    let w = around.width;
    for y in 0..32 {
        for x in 0..32 {
            let i = (y + margin as usize) * w + x + margin as usize;
            assert_eq!(rf[1][i], bands[1][y * 32 + x]);
            assert!(
                mv[0][i] == bands[2][y * 32 + x]
                    || (mv[0][i].is_nan() && bands[2][y * 32 + x].is_nan())
            );
        }
    }
    assert!(rf[0][0].is_nan(), "above the raster is nodata");
    // Left margin of the tile at column 32 lies inside the raster: real data, not NaN.
    assert!(rf[0][(margin as usize + 3) * w].is_finite());
}
