//! `simreg align` and `simreg batch` through the CLI: recovering a known field, the round trip
//! (align → --apply → align), the outputs as GDAL sees them (CRS, geotransform, COG layout),
//! the network path with its N_S reliability band, bad inputs, and a batch with corrupt files.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A smooth displacement field on a grid: dx = 1.5 + 1.0·sin(2πx/300), dy = −1 + 0.7·cos(2πy/250).
fn field(w: usize, h: usize, sign: f64) -> Vec<Vec<f64>> {
    let (mut dx, mut dy) = (vec![0.0; w * h], vec![0.0; w * h]);
    for r in 0..h {
        for c in 0..w {
            let (x, y) = (c as f64 + 0.5, r as f64 + 0.5);
            dx[r * w + c] = sign * (1.5 + (std::f64::consts::TAU * x / 300.0).sin());
            dy[r * w + c] = sign * (-1.0 + 0.7 * (std::f64::consts::TAU * y / 250.0).cos());
        }
    }
    vec![dx, dy]
}

/// A synthetic scene and its optical image displaced by the known field D: content at p in the
/// reference appears at p + D (made with `--apply −D`: out(q) = in(q − D(q))).
struct Scene {
    dir: PathBuf,
}

impl Scene {
    fn new(dir: &Path, size: usize, seed: u64) -> Scene {
        let d = dir.to_path_buf();
        ok(&[
            "synth",
            "--out",
            &s(&d.join("synth")),
            "--size",
            &size.to_string(),
            "--seed",
            &seed.to_string(),
        ]);
        let opt = d.join("synth/optical.tif");
        write_like(&opt, field(size, size, 1.0), &d.join("truth.tif"));
        write_like(&opt, field(size, size, -1.0), &d.join("neg.tif"));
        write_like(&opt, vec![vec![0.0; size * size]; 2], &d.join("zero.tif"));
        ok(&[
            "align",
            "--apply",
            &s(&d.join("neg.tif")),
            "--moving",
            &s(&opt),
            "--out",
            &s(&d.join("displaced")),
        ]);
        ok(&[
            "align",
            "--apply",
            &s(&d.join("neg.tif")),
            "--moving",
            &s(&d.join("synth/sar.tif")),
            "--out",
            &s(&d.join("displaced_sar")),
        ]);
        Scene { dir: d }
    }
    fn p(&self, rel: &str) -> String {
        s(&self.dir.join(rel))
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn gdalinfo(path: &Path) -> Value {
    let o =
        Command::new("gdalinfo").arg("-json").arg(path).output().expect("gdalinfo (gdal-bin) runs");
    assert!(
        o.status.success(),
        "gdalinfo {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn align_round_trip_recovers_the_field_then_leaves_no_residual() {
    let t = tempfile::tempdir().unwrap();
    let sc = Scene::new(t.path(), 256, 4);
    // Same modality (optical onto displaced optical): phase correlation is precise there.
    let a = ok(&[
        "align",
        "--method",
        "phase-correlation",
        "--reference",
        &sc.p("synth/optical.tif"),
        "--moving",
        &sc.p("displaced/corrected.tif"),
        "--truth",
        &sc.p("truth.tif"),
        "--out",
        &sc.p("a1"),
    ]);
    let e = a["median_error_px"].as_f64().unwrap();
    assert!(e < 0.25, "median error against the known field: {e} px");
    assert_eq!(
        a["baseline_median_error_px"], a["median_error_px"],
        "phase correlation is its own baseline"
    );
    let m = &a["mean_shift_px"];
    assert!(
        (m[0].as_f64().unwrap() - 1.5).abs() < 0.3 && (m[1].as_f64().unwrap() + 1.0).abs() < 0.3,
        "mean shift {m}"
    );
    // Apply the measured shifts, align again: the residual is ≈ 0.
    ok(&[
        "align",
        "--apply",
        &sc.p("a1/displacement.tif"),
        "--moving",
        &sc.p("displaced/corrected.tif"),
        "--out",
        &sc.p("back"),
    ]);
    let b = ok(&[
        "align",
        "--method",
        "phase-correlation",
        "--reference",
        &sc.p("synth/optical.tif"),
        "--moving",
        &sc.p("back/corrected.tif"),
        "--truth",
        &sc.p("zero.tif"),
        "--out",
        &sc.p("a2"),
    ]);
    let r = b["median_error_px"].as_f64().unwrap();
    let rm = &b["mean_shift_px"];
    assert!(r < 0.15, "residual after the round trip: {r} px");
    assert!(
        rm[0].as_f64().unwrap().abs() < 0.1 && rm[1].as_f64().unwrap().abs() < 0.1,
        "residual mean shift {rm}"
    );
    assert!(r < 0.5 * e.max(0.2), "the round trip removes most of the shift: {r} vs {e}");
}

#[test]
fn align_outputs_have_the_reference_grid_and_cog_layout() {
    let t = tempfile::tempdir().unwrap();
    let sc = Scene::new(t.path(), 192, 8);
    let a = ok(&[
        "align",
        "--method",
        "phase-correlation",
        "--reference",
        &sc.p("synth/optical.tif"),
        "--moving",
        &sc.p("displaced_sar/corrected.tif"),
        "--truth",
        &sc.p("truth.tif"),
        "--out",
        &sc.p("out"),
    ]);
    for k in [
        "method",
        "mean_shift_px",
        "median_reliability",
        "megapixels_per_s",
        "median_error_px",
        "baseline_median_error_px",
    ] {
        assert!(!a[k].is_null(), "summary.json lacks {k}");
    }
    assert_eq!(a["method"], "phase-correlation");
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(sc.dir.join("out/summary.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["mean_shift_px"], a["mean_shift_px"]);
    let reference = gdalinfo(&sc.dir.join("synth/optical.tif"));
    for (f, bands) in [
        ("displacement.tif", vec!["dx", "dy", "reliability"]),
        ("corrected.tif", vec!["moving:b1 corrected", "moving:b2 corrected"]),
    ] {
        let info = gdalinfo(&sc.dir.join("out").join(f));
        assert_eq!(info["geoTransform"], reference["geoTransform"], "{f}: geotransform");
        assert_eq!(info["size"], reference["size"], "{f}: size");
        assert_eq!(
            info["coordinateSystem"]["wkt"], reference["coordinateSystem"]["wkt"],
            "{f}: CRS"
        );
        assert_eq!(info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"], "COG", "{f}: COG layout");
        let d: Vec<&str> = info["bands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["description"].as_str().unwrap())
            .collect();
        assert_eq!(d, bands, "{f}: bands");
    }
    let info = gdalinfo(&sc.dir.join("out/displacement.tif"));
    assert_eq!(
        info["metadata"][""]["SIMREG_MAP_UNITS_PER_PX_X"], "2",
        "map-unit scale in the metadata"
    );
    // The displacement band agrees with the tie points; tie points: one per valid window.
    let csv = std::fs::read_to_string(sc.dir.join("out/tiepoints.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len() as u64, a["n_valid_windows"].as_u64().unwrap());
    let gj: Value = serde_json::from_str(
        &std::fs::read_to_string(sc.dir.join("out/tiepoints.geojson")).unwrap(),
    )
    .unwrap();
    assert_eq!(gj["features"].as_array().unwrap().len(), rows.len());
    let f0 = &gj["features"][0];
    assert_eq!(
        f0["properties"]["dx_map"].as_f64().unwrap(),
        f0["properties"]["dx_px"].as_f64().unwrap() * 2.0
    );
    // GeoJSON in WGS 84 (RFC 7946): the synthetic scene lies at UTM 31N (500 000, 5 000 000) ≈ 3° E, 45.1° N;
    // the CSV has both positions.
    let p0: Vec<f64> = f0["geometry"]["coordinates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!((p0[0] - 3.0).abs() < 0.05 && (p0[1] - 45.15).abs() < 0.1, "{p0:?}");
    assert_eq!(f0["properties"]["x"].as_f64().unwrap(), rows[0][3].parse::<f64>().unwrap());
    assert!((rows[0][5].parse::<f64>().unwrap() - p0[0]).abs() < 1e-7);
    let (bands, _, w, _, _) = read_all(&sc.dir.join("out/displacement.tif"));
    let (c, r): (f64, f64) = (rows[5][1].parse().unwrap(), rows[5][2].parse().unwrap());
    let at = bands[0][(r as usize) * w + c as usize] as f64;
    let tp: f64 = rows[5][7].parse().unwrap();
    assert!((at - tp).abs() < 0.3, "displacement raster at a tie point {at} vs its shift {tp}");
    // Nothing left behind.
    let names: Vec<String> = std::fs::read_dir(sc.dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".simreg-output.json")
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
}

/// synth 128 px → 49 tiles of 32 px → labels → a small network trained for 2 epochs.
fn trained_run(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    let d = |p: &str| s(&run.join(p));
    ok(&["synth", "--out", &d("synth"), "--size", "128", "--seed", "5"]);
    ok(&[
        "tile",
        "--reference",
        &d("synth/optical.tif"),
        "--moving",
        &d("synth/sar.tif"),
        "--tile-size",
        "32",
        "--overlap",
        "16",
        "--out",
        &d("tiles"),
    ]);
    ok(&[
        "labels",
        "--tiles",
        &d("tiles"),
        "--out",
        &d("labels"),
        "--amplitude",
        "3",
        "--noise",
        "iid",
        "--sigma",
        "0",
        "--seed",
        "2",
    ]);
    ok(&[
        "train",
        "--labels",
        &d("labels"),
        "--out",
        &d("train"),
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
        "--device",
        "cpu",
    ]);
    run
}

#[test]
fn align_network_reliability_is_ns_from_stored_or_computed_s_a() {
    let t = tempfile::tempdir().unwrap();
    let run = trained_run(t.path());
    let sc = Scene::new(&t.path().join("scene"), 160, 9);
    let base = |out: &str| {
        vec![
            "align".to_string(),
            "--method".into(),
            "network".into(),
            "--model".into(),
            s(&run.join("train/model.safetensors")),
            "--reference".into(),
            sc.p("synth/optical.tif"),
            "--moving".into(),
            sc.p("displaced_sar/corrected.tif"),
            "--truth".into(),
            sc.p("truth.tif"),
            "--out".into(),
            sc.p(out),
            "--device".into(),
            "cpu".into(),
        ]
    };
    // No similarity stage yet: S_A computed from RUN/labels.
    let computed = ok(&args(&base("computed")));
    assert_eq!(computed["method"], "network");
    assert!(
        computed["reliability"].as_str().unwrap().contains("computed"),
        "{}",
        computed["reliability"]
    );
    let n_train = 39.0;
    let rel = computed["median_reliability"].as_f64().unwrap();
    assert!(rel.is_finite() && rel.abs() <= n_train + 1e-6, "N_S within [−|S|, |S|]: {rel}");
    assert!(
        computed["median_error_px"].as_f64().unwrap().is_finite()
            && computed["baseline_median_error_px"].as_f64().unwrap().is_finite()
    );
    let (bands, ..) = read_all(&sc.dir.join("computed/displacement.tif"));
    assert!(
        bands[2].iter().all(|v| v.is_finite() && v.abs() <= n_train as f32 + 1e-3),
        "reliability band: N_S everywhere"
    );
    // The similarity stage stores S_A; align then reads it and gets the same N_S.
    ok(&[
        "similarity",
        &s(&run),
        "--device",
        "cpu",
        "--sketch-dim",
        "0",
        "--n-queries",
        "1",
        "--check-tiles",
        "1",
    ]);
    assert!(run.join("similarity/s_a.safetensors").is_file());
    let stored = ok(&args(&base("stored")));
    assert!(
        stored["reliability"].as_str().unwrap().contains("similarity"),
        "{}",
        stored["reliability"]
    );
    let rel2 = stored["median_reliability"].as_f64().unwrap();
    assert!((rel - rel2).abs() <= 1e-6 * rel.abs().max(1.0), "stored {rel2} vs computed {rel}");
    assert_eq!(stored["mean_shift_px"], computed["mean_shift_px"]);
    // --no-reliability: the same field, a NaN band, no median.
    let mut v = base("none");
    v.push("--no-reliability".into());
    let none = ok(&args(&v));
    assert!(none["median_reliability"].is_null());
    let d = |a: &Value, b: &Value, k: usize| {
        (a["mean_shift_px"][k].as_f64().unwrap() - b["mean_shift_px"][k].as_f64().unwrap()).abs()
    };
    assert!(
        d(&none, &computed, 0) < 1e-4 && d(&none, &computed, 1) < 1e-4,
        "Jacobian pass and forward pass give one f(x)"
    );
    // A reference with the wrong number of bands for the model.
    write_like(
        &sc.dir.join("synth/optical.tif"),
        vec![vec![1.0; 160 * 160]; 3],
        &sc.dir.join("three.tif"),
    );
    let mut v = base("bad");
    v[6] = sc.p("three.tif");
    let o = simreg(&args(&v));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("three.tif") && err.contains("the model takes 4"), "{err}");
    assert!(!sc.dir.join("bad").exists());
}

#[test]
fn align_bad_inputs_fail_with_one_line_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let sc = Scene::new(t.path(), 128, 3);
    let d = &sc.dir;
    std::fs::write(d.join("garbage.tif"), b"this is not a raster at all").unwrap();
    let bytes = std::fs::read(d.join("synth/sar.tif")).unwrap();
    std::fs::write(d.join("truncated.tif"), &bytes[..bytes.len() / 3]).unwrap();
    let (_, gt, w, h, wkt) = read_all(&d.join("synth/optical.tif"));
    let far = [gt[0] + 1e6, gt[1], gt[2], gt[3], gt[4], gt[5]];
    Fixture {
        width: w,
        height: h,
        geotransform: far,
        epsg: None,
        wkt: Some(wkt.clone()),
        nodata: None,
        bands: vec![vec![1.0; w * h]],
    }
    .write_f32(&d.join("far.tif"));
    Fixture {
        width: w,
        height: h,
        geotransform: gt,
        epsg: None,
        wkt: None,
        nodata: None,
        bands: vec![vec![1.0; w * h]],
    }
    .write_f32(&d.join("nocrs.tif"));
    Fixture {
        width: w,
        height: h,
        geotransform: gt,
        epsg: None,
        wkt: Some(wkt.clone()),
        nodata: None,
        bands: vec![vec![f64::NAN; w * h]],
    }
    .write_f32(&d.join("nan.tif"));
    Fixture {
        width: 40,
        height: 40,
        geotransform: gt,
        epsg: None,
        wkt: Some(wkt.clone()),
        nodata: None,
        bands: vec![vec![1.0; 1600]],
    }
    .write_f32(&d.join("small.tif"));
    let opt = sc.p("synth/optical.tif");
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec!["--reference".into(), opt.clone(), "--moving".into(), sc.p("garbage.tif")],
            "garbage.tif",
            "not a raster",
        ),
        (
            vec!["--reference".into(), opt.clone(), "--moving".into(), sc.p("truncated.tif")],
            "truncated.tif",
            "moving",
        ),
        (
            vec!["--reference".into(), opt.clone(), "--moving".into(), sc.p("far.tif")],
            "far.tif",
            "does not overlap",
        ),
        (
            vec!["--reference".into(), opt.clone(), "--moving".into(), sc.p("nocrs.tif")],
            "nocrs.tif",
            "no CRS",
        ),
        (
            vec!["--reference".into(), opt.clone(), "--moving".into(), sc.p("nan.tif")],
            "nan.tif",
            "no valid pixel",
        ),
        (
            // (Without --window, auto and cfog shrink their window to fit down to 32 px.)
            vec![
                "--reference".into(),
                sc.p("small.tif"),
                "--moving".into(),
                opt.clone(),
                "--window".into(),
                "64".into(),
            ],
            "small.tif",
            "smaller than",
        ),
        (
            vec![
                "--reference".into(),
                opt.clone(),
                "--moving".into(),
                opt.clone(),
                "--truth".into(),
                sc.p("small.tif"),
            ],
            "small.tif",
            "not on the reference grid",
        ),
        (
            vec![
                "--reference".into(),
                opt.clone(),
                "--moving".into(),
                opt.clone(),
                "--moving-bands".into(),
                "9".into(),
            ],
            "optical.tif",
            "band 9",
        ),
        (
            vec!["--apply".into(), sc.p("nan.tif"), "--moving".into(), opt.clone()],
            "nan.tif",
            "needs bands dx, dy",
        ),
        (
            vec!["--apply".into(), sc.p("truth.tif"), "--moving".into(), sc.p("small.tif")],
            "small.tif",
            "not on the grid",
        ),
    ];
    for (k, (args, file, problem)) in cases.into_iter().enumerate() {
        let out = d.join(format!("out{k}"));
        let mut a: Vec<String> = vec![
            "align".into(),
            "--method".into(),
            "phase-correlation".into(),
            "--out".into(),
            s(&out),
        ];
        if args[0] == "--apply" {
            a.drain(1..3);
        }
        a.extend(args);
        let o = simreg(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let err = stderr(&o);
        assert!(!o.status.success(), "case {k} ({problem}) should fail");
        assert_eq!(err.trim_end().lines().count(), 1, "case {k}: one line expected:\n{err}");
        assert!(
            err.starts_with("simreg: error: ") && err.contains(file) && err.contains(problem),
            "case {k}: should name '{file}' and say '{problem}': {err}"
        );
        assert!(
            !out.exists() && !d.join(format!("out{k}.partial")).exists(),
            "case {k}: output left behind"
        );
    }
    // The network without a model: the default one, which does not take 4 optical bands.
    let o = simreg(&[
        "align",
        "--method",
        "network",
        "--reference",
        &opt,
        "--moving",
        &opt,
        "--out",
        &sc.p("nomodel"),
    ]);
    let err = stderr(&o);
    assert!(
        !o.status.success()
            && err.contains("the default model takes")
            && err.contains("--reference-bands"),
        "{err}"
    );
    // Inputs are never modified.
    assert_eq!(std::fs::read(d.join("synth/sar.tif")).unwrap(), bytes);
}

/// 10 pairs in folders, two of them with a corrupt file (20 %).
fn batch_folder(root: &Path, sc: &Scene) -> Vec<String> {
    let opt = std::fs::read(sc.dir.join("synth/optical.tif")).unwrap();
    let mov = std::fs::read(sc.dir.join("displaced_sar/corrected.tif")).unwrap();
    let mut names = Vec::new();
    for i in 0..10 {
        let dir = root.join(format!("site{i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("reference.tif"), &opt).unwrap();
        match i {
            3 => std::fs::write(dir.join("moving.tif"), b"garbage, not a GeoTIFF").unwrap(),
            7 => std::fs::write(dir.join("moving.tif"), &mov[..mov.len() / 4]).unwrap(),
            _ => std::fs::write(dir.join("moving.tif"), &mov).unwrap(),
        }
        names.push(format!("site{i:02}"));
    }
    names
}

#[test]
fn batch_continues_past_corrupt_pairs_records_them_and_resumes() {
    let t = tempfile::tempdir().unwrap();
    let sc = Scene::new(&t.path().join("scene"), 128, 6);
    let input = t.path().join("input");
    let names = batch_folder(&input, &sc);
    let out = t.path().join("batch");
    let run = |out: &Path, input: &Path| {
        ok(&["batch", "--input", &s(input), "--out", &s(out), "--jobs", "2"])
    };
    let first = run(&out, &input);
    assert_eq!(
        (first["ok"].as_u64(), first["failed"].as_u64(), first["skipped"].as_u64()),
        (Some(8), Some(2), Some(0)),
        "{first}"
    );
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk["ok"], 8);
    let csv = std::fs::read_to_string(out.join("status.csv")).unwrap();
    assert!(csv.starts_with("pair,status,error,seconds"));
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 10);
    for (i, n) in names.iter().enumerate() {
        let row = rows.iter().find(|r| r.starts_with(&format!("{n},"))).unwrap();
        if i == 3 || i == 7 {
            assert!(
                row.contains(",failed,") && row.contains(&format!("{n}/moving.tif")),
                "bad pair named with its file: {row}"
            );
        } else {
            assert!(row.contains(",ok,"), "{row}");
            assert!(out.join("pairs").join(n).join("displacement.tif").is_file());
        }
    }
    // A rerun does no repeated work: nothing is aligned again, outputs untouched.
    let stamp =
        std::fs::metadata(out.join("pairs/site00/summary.json")).unwrap().modified().unwrap();
    let second = run(&out, &input);
    assert_eq!(
        (
            second["ok"].as_u64(),
            second["failed"].as_u64(),
            second["skipped"].as_u64(),
            second["processed"].as_u64()
        ),
        (Some(8), Some(2), Some(10), Some(0)),
        "{second}"
    );
    assert_eq!(
        std::fs::metadata(out.join("pairs/site00/summary.json")).unwrap().modified().unwrap(),
        stamp
    );
    // Fixing a bad file redoes that pair only.
    std::fs::copy(input.join("site00/moving.tif"), input.join("site03/moving.tif")).unwrap();
    let third = run(&out, &input);
    assert_eq!(
        (third["ok"].as_u64(), third["failed"].as_u64(), third["processed"].as_u64()),
        (Some(9), Some(1), Some(1)),
        "{third}"
    );

    // The same from a zip archive (entries read in place).
    let zip_path = t.path().join("input.zip");
    {
        let f = std::fs::File::create(&zip_path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts =
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let input2 = t.path().join("input2");
        batch_folder(&input2, &sc);
        for n in &names {
            for f in ["reference.tif", "moving.tif"] {
                z.start_file(format!("{n}/{f}"), opts).unwrap();
                std::io::Write::write_all(&mut z, &std::fs::read(input2.join(n).join(f)).unwrap())
                    .unwrap();
            }
        }
        z.finish().unwrap();
    }
    let z = run(&t.path().join("batch_zip"), &zip_path);
    assert_eq!((z["ok"].as_u64(), z["failed"].as_u64()), (Some(8), Some(2)), "{z}");
    let again = run(&t.path().join("batch_zip"), &zip_path);
    assert_eq!(again["processed"].as_u64(), Some(0));
}

/// Issue 21: a symlink loop, pairs `a/b` and `a__b`, and a zip member `../` are each one
/// pair's business (a per-pair error or its own output folder), never the whole batch's.
#[test]
fn batch_input_problems_stay_with_their_pair() {
    let t = tempfile::tempdir().unwrap();
    let sc = Scene::new(&t.path().join("scene"), 128, 6);
    let opt = std::fs::read(sc.dir.join("synth/optical.tif")).unwrap();
    let mov = std::fs::read(sc.dir.join("displaced_sar/corrected.tif")).unwrap();
    let input = t.path().join("input");
    for pair in ["a/b", "a__b", "bad"] {
        let d = input.join(pair);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("moving.tif"), &mov).unwrap();
        if pair != "bad" {
            std::fs::write(d.join("reference.tif"), &opt).unwrap();
        }
    }
    // A file that is a symlink to itself, and a folder symlink back up the tree.
    std::os::unix::fs::symlink("reference.tif", input.join("bad/reference.tif")).unwrap();
    std::os::unix::fs::symlink("..", input.join("a/up")).unwrap();
    let out = t.path().join("batch");
    let b = ok(&["batch", "--input", &s(&input), "--out", &s(&out), "--jobs", "1"]);
    assert_eq!((b["ok"].as_u64(), b["failed"].as_u64()), (Some(2), Some(1)), "{b}");
    let csv = std::fs::read_to_string(out.join("status.csv")).unwrap();
    let bad = csv.lines().find(|r| r.starts_with("bad,")).unwrap();
    assert!(bad.contains(",failed,") && bad.contains("bad/reference.tif"), "{bad}");
    // Two folders, each holding its own pair's result.
    for (pair, folder) in [("a/b", "a%2Fb"), ("a__b", "a__b")] {
        let summary: Value = serde_json::from_slice(
            &std::fs::read(out.join("pairs").join(folder).join("summary.json")).unwrap(),
        )
        .unwrap();
        let reference = summary["reference"].as_str().unwrap();
        assert!(reference.ends_with(&format!("input/{pair}/reference.tif")), "{reference}");
    }

    // A zip whose pair is named `..`: refused for that pair; the batch folder keeps its own files.
    let zip_path = t.path().join("hostile.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::FileOptions::default();
        for (name, bytes) in [
            ("../reference.tif", &opt),
            ("../moving.tif", &mov),
            ("good/reference.tif", &opt),
            ("good/moving.tif", &mov),
        ] {
            z.start_file(name, opts).unwrap();
            std::io::Write::write_all(&mut z, bytes).unwrap();
        }
        z.finish().unwrap();
    }
    let zout = t.path().join("zbatch");
    let b = ok(&["batch", "--input", &s(&zip_path), "--out", &s(&zout), "--jobs", "1"]);
    assert_eq!((b["ok"].as_u64(), b["failed"].as_u64()), (Some(1), Some(1)), "{b}");
    let csv = std::fs::read_to_string(zout.join("status.csv")).unwrap();
    let row = csv.lines().find(|r| r.starts_with("..,")).unwrap();
    assert!(row.contains(",failed,") && row.contains("'../reference.tif'"), "{row}");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(zout.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["n_pairs"], 2, "the batch's own summary, not a pair's: {summary}");
    assert!(!zout.join("displacement.tif").exists());
}

/// Issue 21: two batches at once on one folder marked good pairs as failed, and a plain rerun
/// did not fix them. The second is refused while the first runs; no pair is marked failed.
#[test]
fn two_batches_at_once_never_mark_a_good_pair_failed() {
    let t = tempfile::tempdir().unwrap();
    let sc = Scene::new(&t.path().join("scene"), 128, 6);
    let opt = std::fs::read(sc.dir.join("synth/optical.tif")).unwrap();
    let mov = std::fs::read(sc.dir.join("displaced_sar/corrected.tif")).unwrap();
    let input = t.path().join("input");
    for i in 0..16 {
        let d = input.join(format!("p{i:02}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("reference.tif"), &opt).unwrap();
        std::fs::write(d.join("moving.tif"), &mov).unwrap();
    }
    let out = t.path().join("batch");
    // Two jobs each, as the report had it (simreg before issue 21: 3-12 of 16 good pairs
    // failed, 3 of 3 tries).
    let args = ["batch", "--input", &s(&input), "--out", &s(&out), "--jobs", "2"];
    let mut first = Command::new(bin())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lock = t.path().join("batch.lock");
    let t0 = std::time::Instant::now();
    // Until the first batch has started writing (its lock, or its folder).
    while !lock.exists() && !out.exists() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let second = simreg(&args);
    if second.status.success() {
        // Only if the first had already finished: then it skipped every pair.
        let v: Value = serde_json::from_slice(&second.stdout).unwrap_or(Value::Null);
        assert!(v.is_null() || v["failed"] == 0, "{v}");
    } else {
        let err = stderr(&second);
        assert!(
            err.contains(&format!("pid {}", first.id())) && err.contains("is writing it"),
            "{err}"
        );
    }
    assert!(first.wait().unwrap().success());
    let rerun = ok(&args);
    assert_eq!((rerun["ok"].as_u64(), rerun["failed"].as_u64()), (Some(16), Some(0)), "{rerun}");
    assert_eq!(rerun["processed"].as_u64(), Some(0), "nothing left to redo: {rerun}");
}

/// `batch --shard K/N` + `merge batch` (issue 20): the merged folder holds every pair's files
/// as one batch writes them, and one status table; an incomplete set is refused.
#[test]
fn batch_shards_merge_into_what_one_batch_writes() {
    let t = tempfile::tempdir().unwrap();
    let sc = Scene::new(&t.path().join("scene"), 128, 6);
    let input = t.path().join("input");
    batch_folder(&input, &sc);
    let one = t.path().join("one");
    ok(&["batch", "--input", &s(&input), "--out", &s(&one), "--jobs", "1"]);
    let shards: Vec<PathBuf> = (1..=3).map(|k| t.path().join(format!("shard{k}"))).collect();
    for (k, dir) in shards.iter().enumerate() {
        let spec = format!("{}/3", k + 1);
        ok(&["batch", "--input", &s(&input), "--out", &s(dir), "--shard", &spec, "--jobs", "1"]);
    }
    // Shards 1 and 3 only: refused, naming the one missing.
    let merged = t.path().join("merged");
    let e = simreg(&["merge", "batch", "--out", &s(&merged), &s(&shards[0]), &s(&shards[2])]);
    assert!(stderr(&e).contains("shard 2/3 missing"), "{}", stderr(&e));
    assert!(!merged.exists());
    let m = ok(&[
        "merge",
        "batch",
        "--out",
        &s(&merged),
        &s(&shards[2]),
        &s(&shards[0]),
        &s(&shards[1]),
    ]);
    assert_eq!(
        (m["ok"].as_u64(), m["failed"].as_u64(), m["n_pairs"].as_u64()),
        (Some(8), Some(2), Some(10))
    );
    let pairs = |d: &Path| files_under(&d.join("pairs"));
    assert_eq!(pairs(&one), pairs(&merged));
    for f in pairs(&one) {
        // The ownership marker names the batch folder it is in.
        if f.ends_with(".simreg-output.json") {
            continue;
        }
        let (a, b) = (one.join("pairs").join(&f), merged.join("pairs").join(&f));
        if f.ends_with("summary.json") {
            // Timings and memory differ between any two runs.
            assert_eq!(
                untimed_summary(&a, None),
                untimed_summary(&b, None),
                "pairs/{}",
                f.display()
            );
            continue;
        }
        assert_eq!(hash_file(&a), hash_file(&b), "pairs/{} differs", f.display());
    }
    // The status tables agree but for the timings.
    let table = |d: &Path| status_table(d, &["seconds", "megapixels_per_s"]);
    assert_eq!(table(&one), table(&merged));
    assert_eq!(table(&one).len(), 10);
}
