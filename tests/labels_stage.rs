//! `simreg synth` and `simreg labels` end to end through the CLI.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn json_of(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).expect("--json prints JSON")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Tiles of a scene whose moving raster holds its own pixel coordinates (band 1 = x, band 2 =
/// y, as a DEM-like continuous kind): after labelling, reference position − warped value is
/// the displacement, exactly (bilinear interpolation is exact on a linear ramp).
fn ramp_tiles(dir: &Path) -> PathBuf {
    let r = dir.join("opt.tif");
    let m = dir.join("ramp.tif");
    Fixture::utm(160, 160, 1, |_, c, r| noise(0, c, r)).write_f32(&r);
    Fixture::utm(160, 160, 2, |b, c, r| if b == 0 { c as f64 + 0.5 } else { r as f64 + 0.5 })
        .write_f32(&m);
    let tiles = dir.join("run/tiles");
    let o = simreg(&[
        "tile",
        "--reference",
        r.to_str().unwrap(),
        "--moving",
        m.to_str().unwrap(),
        "--moving-kind",
        "dem",
        "--tile-size",
        "32",
        "--overlap",
        "0",
        "--out",
        tiles.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    tiles
}

fn labels(tiles: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = vec![
        "labels",
        "--tiles",
        tiles.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    a.extend_from_slice(extra);
    simreg(&a)
}

#[test]
fn displaced_moving_tiles_follow_the_documented_convention() {
    let t = tempfile::tempdir().unwrap();
    let tiles = ramp_tiles(t.path());
    let out = t.path().join("run/labels");
    let s = json_of(&labels(
        &tiles,
        &out,
        &[
            "--amplitude",
            "5",
            "--field-amplitude",
            "2",
            "--noise",
            "iid",
            "--sigma",
            "1",
            "--seed",
            "3",
        ],
    ));
    assert_eq!(s["n_tiles"], 25);
    let lab = read_json(&out.join("labels.json"));
    let truth = read_json(&out.join("truth.json"));
    let target = read_json(&out.join("target.json"));
    assert_eq!(
        (target["centre_offset"].as_u64(), target["centre_size"].as_u64()),
        (Some(8), Some(16))
    );
    let mut noise_sq = 0.0;
    for (id, entry) in lab.as_object().unwrap() {
        let tr = &truth[id];
        let (mv, gt, ..) = read_all(&out.join(entry["moving"].as_str().unwrap()));
        let (field, ..) = read_all(&out.join(tr["field"].as_str().unwrap()));
        let (col, row) = ((gt[0] - 400000.0) / 10.0, (5100000.0 - gt[3]) / 10.0);
        // Dense: the content found at q came from q − D(q).
        let (mut mx, mut my) = (0.0, 0.0);
        for y in 8..24 {
            for x in 8..24 {
                let i = y * 32 + x;
                let (qx, qy) = (col + x as f64 + 0.5, row + y as f64 + 0.5);
                let (dx, dy) = (qx - mv[0][i] as f64, qy - mv[1][i] as f64);
                assert!(
                    (dx - field[0][i] as f64).abs() < 1e-3
                        && (dy - field[1][i] as f64).abs() < 1e-3,
                    "{id} ({x},{y}): {dx},{dy} vs field"
                );
                mx += dx / 256.0;
                my += dy / 256.0;
            }
        }
        let d = [tr["displacement"][0].as_f64().unwrap(), tr["displacement"][1].as_f64().unwrap()];
        assert!(
            (mx - d[0]).abs() < 1e-3 && (my - d[1]).abs() < 1e-3,
            "{id}: centre mean {mx},{my} vs truth {d:?}"
        );
        let l = [entry["label"][0].as_f64().unwrap(), entry["label"][1].as_f64().unwrap()];
        let e = [tr["noise"][0].as_f64().unwrap(), tr["noise"][1].as_f64().unwrap()];
        assert!((l[0] - d[0] - e[0]).abs() < 1e-12 && (l[1] - d[1] - e[1]).abs() < 1e-12);
        assert!(d[0].abs() <= 7.0 && d[1].abs() <= 7.0);
        noise_sq += e[0] * e[0] + e[1] * e[1];
    }
    let rmse = (noise_sq / 50.0).sqrt();
    assert!((0.6..1.5).contains(&rmse), "label noise RMSE {rmse} for σ = 1");
}

#[test]
fn same_seed_gives_byte_identical_files_and_labels_reveal_no_truth() {
    let t = tempfile::tempdir().unwrap();
    let tiles = ramp_tiles(t.path());
    let args = [
        "--amplitude",
        "4",
        "--noise",
        "iid",
        "--sigma",
        "2",
        "--outliers",
        "0.1",
        "--outlier-magnitude",
        "9",
        "--seed",
        "7",
    ];
    let (a, b) = (t.path().join("run/la"), t.path().join("run/lb"));
    json_of(&labels(&tiles, &a, &args));
    json_of(&labels(&tiles, &b, &args));
    // The summary on disk records what the run took (it said 0.0: issue 21).
    let seconds = read_json(&a.join("summary.json"))["seconds"].as_f64().unwrap();
    assert!(seconds > 0.0, "labels summary.json: seconds {seconds}");
    let files = |d: &Path| {
        let mut v: Vec<PathBuf> = walk(d)
            .into_iter()
            .filter(|p| p.file_name().unwrap() != "summary.json")
            .map(|p| p.strip_prefix(d).unwrap().to_path_buf())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(&a), files(&b));
    assert!(files(&a).len() > 75);
    for f in files(&a) {
        assert_eq!(
            std::fs::read(a.join(&f)).unwrap(),
            std::fs::read(b.join(&f)).unwrap(),
            "{}",
            f.display()
        );
    }
    // Another seed, other labels.
    let c = t.path().join("run/lc");
    json_of(&labels(
        &tiles,
        &c,
        &["--amplitude", "4", "--noise", "iid", "--sigma", "2", "--seed", "8"],
    ));
    assert_ne!(
        std::fs::read(a.join("labels.json")).unwrap(),
        std::fs::read(c.join("labels.json")).unwrap()
    );

    // labels.json: per tile only the noisy label and file paths; nothing about the noise or truth.
    let text = std::fs::read_to_string(a.join("labels.json")).unwrap();
    for word in ["sigma", "seed", "noise", "truth", "displacement", "outlier"] {
        assert!(!text.contains(word), "labels.json mentions '{word}'");
    }
    let lab = read_json(&a.join("labels.json"));
    let truth = read_json(&a.join("truth.json"));
    for (id, e) in lab.as_object().unwrap() {
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["label", "label_field", "moving"], "{id}");
        assert_ne!(e["label"], truth[id]["displacement"]);
    }
    // The noise parameters are recorded in the run's effective pipeline file only.
    let eff = std::fs::read_to_string(t.path().join("run/pipeline.toml")).unwrap();
    assert!(eff.contains("[labels.noise]") && eff.contains("sigma = 2.0"), "{eff}");
    assert!(!std::fs::read_to_string(a.join("target.json")).unwrap().contains("sigma"));
    // Rerun: nothing to do.
    let again = json_of(&labels(&tiles, &a, &args));
    assert_eq!(again["up_to_date"], true);
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn bad_label_inputs_fail_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let tiles = ramp_tiles(t.path());
    let out = t.path().join("run/labels");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--amplitude", "9"], "exceeds the tile's margin of 8 px"),
        (vec!["--amplitude", "2", "--noise", "iid", "--sigma", "-1"], "non-negative"),
        (vec!["--amplitude", "2", "--noise", "gaussian"], "invalid value 'gaussian' for '--noise"),
        (vec!["--amplitude", "2", "--noise", "correlated", "--sigma", "1"], "corr-length"),
    ];
    for (args, expect) in cases {
        let o = labels(&tiles, &out, &args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!out.exists() && !t.path().join("run/labels.partial").exists());
        assert!(!t.path().join("run/pipeline.toml").exists(), "nothing recorded for a failed run");
    }
    // A bias is added to every label: "--bias DX,DY".
    let biased = t.path().join("run/biased");
    json_of(&labels(&tiles, &biased, &["--amplitude", "2", "--bias", "1.5,-2"]));
    let truth = read_json(&biased.join("truth.json"));
    for v in truth.as_object().unwrap().values() {
        assert!(
            (v["noise"][0].as_f64().unwrap() - 1.5).abs() < 1e-9
                && (v["noise"][1].as_f64().unwrap() + 2.0).abs() < 1e-9,
            "{v}"
        );
    }
    let o = labels(&tiles, &t.path().join("run/b3"), &["--amplitude", "2", "--bias", "1,2,3"]);
    assert!(!o.status.success() && stderr(&o).contains("two values"), "{}", stderr(&o));
    // A tiles directory without a manifest; a manifest pointing at a missing tile.
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = stderr(&labels(&empty, &out, &["--amplitude", "2"]));
    assert!(err.contains("empty") && err.contains("no manifest"), "{err}");
    let man = read_json(&tiles.join("manifest.json"));
    let missing = tiles.join(man["tiles"][3]["path"].as_str().unwrap());
    std::fs::remove_file(&missing).unwrap();
    let o = labels(&tiles, &out, &["--amplitude", "2"]);
    let err = stderr(&o);
    assert!(
        !o.status.success()
            && err.contains("is missing")
            && err.contains(man["tiles"][3]["id"].as_str().unwrap()),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn synth_scene_feeds_tile_and_labels_and_is_reproducible() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for d in [&a, &b] {
        json_of(&simreg(&[
            "synth",
            "--out",
            d.to_str().unwrap(),
            "--size",
            "160",
            "--seed",
            "7",
            "--json",
        ]));
    }
    for f in ["optical.tif", "sar.tif", "map.tif", "map.geojson", "scene.json"] {
        let (x, y) = (std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap());
        assert!(f == "scene.json" || x == y, "{f} differs between runs with the same seed");
    }
    let (opt, ..) = read_all(&a.join("optical.tif"));
    let (sar, gt, w, h, proj) = read_all(&a.join("sar.tif"));
    assert_eq!((opt.len(), sar.len(), w, h), (4, 2, 160, 160));
    assert!(proj.contains("32631") && gt[1] == 2.0);
    assert_eq!(band_descriptions(&a.join("sar.tif")), ["VV", "VH"]);
    let geo = read_json(&a.join("map.geojson"));
    assert!(geo["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["properties"]["kind"] == "building"));

    let tiles = t.path().join("run/tiles");
    let o = simreg(&[
        "tile",
        "--reference",
        a.join("optical.tif").to_str().unwrap(),
        "--moving",
        a.join("sar.tif").to_str().unwrap(),
        "--map",
        a.join("map.geojson").to_str().unwrap(),
        "--tile-size",
        "64",
        "--overlap",
        "16",
        "--out",
        tiles.to_str().unwrap(),
        "--json",
    ]);
    let s = json_of(&o);
    assert_eq!(s["n_tiles"], 9);
    let man = read_json(&tiles.join("manifest.json"));
    assert_eq!(man["scenes"][0]["modalities"][1]["kind"], "sar-db");
    // The rasterised GeoJSON buildings match the synthetic map raster's building fill.
    let (map_raster, ..) = read_all(&a.join("map.tif"));
    let tile0 = &man["tiles"][0];
    let (tile_px, ..) = read_all(&tiles.join(tile0["path"].as_str().unwrap()));
    let (mut agree, mut total) = (0, 0);
    for y in 0..64 {
        for x in 0..64 {
            total += 1;
            if (tile_px[6][y * 64 + x] > 0.5) == (map_raster[0][y * 160 + x] > 0.5) {
                agree += 1;
            }
        }
    }
    assert!(agree as f64 / total as f64 > 0.97, "map agreement {agree}/{total}");
    let ls = json_of(&labels(
        &tiles,
        &t.path().join("run/labels"),
        &["--amplitude", "4", "--noise", "iid", "--sigma", "2", "--seed", "1"],
    ));
    assert_eq!(ls["n_tiles"], 9);
    assert_eq!(ls["noise_model"], "iid");
}

#[test]
fn a_pipeline_chains_synth_tile_and_labels() {
    let t = tempfile::tempdir().unwrap();
    let toml = r#"
[synth.city]
size = 128
seed = 3
[tile]
tile_size = 64
overlap = 0
[[tile.scene]]
synth = "city"
[labels]
amplitude = 3.0
seed = 2
noise = { model = "correlated", sigma = 1.0, corr_length = 100.0 }
"#;
    std::fs::write(t.path().join("p.toml"), toml).unwrap();
    let run = t.path().join("run");
    let s = json_of(&simreg(&[
        "run",
        t.path().join("p.toml").to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(s["tile"]["n_tiles"], 4);
    assert_eq!(s["labels"]["noise_model"], "correlated");
    let man = read_json(&run.join("tiles/manifest.json"));
    assert_eq!(man["scenes"][0]["name"], "city");
    assert_eq!(man["scenes"][0]["modalities"].as_array().unwrap().len(), 3);
    // Correlated noise over a 100 px length: neighbouring tiles' label noise is similar.
    let truth = read_json(&run.join("labels/truth.json"));
    let e: Vec<f64> =
        truth.as_object().unwrap().values().map(|v| v["noise"][0].as_f64().unwrap()).collect();
    let spread =
        e.iter().cloned().fold(f64::MIN, f64::max) - e.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread < 2.0, "noise across 4 adjacent tiles {e:?}");

    std::fs::write(t.path().join("bad.toml"), "[tile]\n[[tile.scene]]\nsynth = \"nope\"\n")
        .unwrap();
    let o = simreg(&[
        "run",
        t.path().join("bad.toml").to_str().unwrap(),
        "--out",
        t.path().join("run2").to_str().unwrap(),
    ]);
    assert!(!o.status.success() && stderr(&o).contains("no [synth.nope]"), "{}", stderr(&o));
}

#[test]
fn relative_input_paths_still_resolve_in_later_stages() {
    let t = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin())
            .args(args)
            .current_dir(t.path())
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    };
    run(&["synth", "--out", "s", "--size", "64", "--seed", "1"]);
    run(&[
        "tile",
        "--reference",
        "s/optical.tif",
        "--moving",
        "s/sar.tif",
        "--tile-size",
        "32",
        "--overlap",
        "0",
        "--out",
        "r/tiles",
    ]);
    run(&["labels", "--tiles", "r/tiles", "--out", "r/labels", "--amplitude", "2"]);
    let man = read_json(&t.path().join("r/tiles/manifest.json"));
    let src = man["scenes"][0]["modalities"][1]["sources"][0]["path"].as_str().unwrap().to_string();
    assert!(Path::new(&src).is_absolute(), "{src}");
}
