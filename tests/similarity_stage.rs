//! `simreg similarity` through the CLI on a tiny synthetic run: outputs, their consistency with
//! each other, and the bad inputs the issue lists.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// synth 128 px → 49 tiles of 32 px → labels → a small network trained for 2 epochs.
fn trained_run(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    let d = |p: &str| run.join(p).to_string_lossy().into_owned();
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
        "1",
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

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

#[test]
fn similarity_outputs_are_complete_and_consistent() {
    let t = tempfile::tempdir().unwrap();
    let run = trained_run(t.path());
    let d = |p: &str| run.join(p).to_string_lossy().into_owned();
    let q = "optical/x00032_y00032";
    let s = ok(&[
        "similarity",
        &d(""),
        "--query",
        q,
        "--k",
        "5",
        "--device",
        "cpu",
        "--max-memory",
        "1024",
    ]);
    assert_eq!(s["n_tiles"], 49);
    assert_eq!(s["n_train"], 39);
    assert!(s["params"].as_i64().unwrap() > 1000);
    // Linear-time N_S against the pairwise sum over all of S, measured in this run.
    let err = s["linear_vs_pairwise_max_rel_err"].as_f64().unwrap();
    assert!(err <= 1e-6, "linear vs pairwise: {err}");
    assert!(s["n_checked"].as_u64().unwrap() >= 2);
    assert!(
        s["jacobians_per_s"].as_f64().unwrap() > 0.0 && s["peak_rss_mb"].as_f64().unwrap() > 10.0
    );
    for k in ["ns_mean", "ns_median", "sigma_hat_px"] {
        assert!(s[k].as_f64().unwrap().is_finite(), "{k}");
    }

    // ns.csv: every tile once; N_S within [−|S|, |S|]; the summary's mean is the csv's mean.
    let rows = csv_rows(&run.join("similarity/ns.csv"));
    assert_eq!(rows.len(), 49);
    let ns: Vec<f64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    assert!(ns.iter().all(|v| v.abs() <= 39.0 + 1e-6));
    let mean = ns.iter().sum::<f64>() / 49.0;
    assert!((mean - s["ns_mean"].as_f64().unwrap()).abs() < 1e-3);
    assert_eq!(rows.iter().filter(|r| r[1] == "train").count(), 39);
    // A training tile counts itself: with k^C ≤ 1 for the others, N_S ≤ |S| and it includes 1.
    assert!(rows.iter().all(|r| r[3].parse::<f64>().unwrap() > 0.0), "‖G‖ > 0");

    // knn.json: the query, its k most similar tiles in decreasing k^C, thumbnails present.
    let knn: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("similarity/knn.json")).unwrap())
            .unwrap();
    let first = &knn[0];
    assert_eq!(first["id"], q);
    let nb = first["neighbours"].as_array().unwrap();
    assert_eq!(nb.len(), 5);
    let kcs: Vec<f64> = nb.iter().map(|n| n["kc"].as_f64().unwrap()).collect();
    assert!(kcs.windows(2).all(|w| w[0] >= w[1]) && kcs.iter().all(|v| v.abs() <= 1.0 + 1e-9));
    assert!(nb.iter().all(|n| n["id"] != q));
    let ns_q = rows.iter().find(|r| r[0] == q).unwrap()[2].parse::<f64>().unwrap();
    assert!((first["ns_linear"].as_f64().unwrap() - ns_q).abs() < 1e-4);
    assert!((first["ns_pairwise"].as_f64().unwrap() - ns_q).abs() < 1e-4 * ns_q.abs().max(1.0));
    assert_eq!(
        first["kc_histogram"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        49
    );
    for n in std::iter::once(first).chain(nb.iter()) {
        let png = run.join("similarity").join(n["thumbnail"].as_str().unwrap());
        assert!(
            std::fs::metadata(&png).map(|m| m.len() > 100).unwrap_or(false),
            "{}",
            png.display()
        );
    }
    // Sketched and exact denoising-factor traces agree within the reported error.
    let (fe, fs) =
        (first["f_trace_exact"].as_f64().unwrap(), first["f_trace_sketch"].as_f64().unwrap());
    assert!(
        fe > 0.0 && (fs - fe).abs() / fe <= s["sketch_rel_err_f_trace"].as_f64().unwrap() + 1e-12
    );

    // The N_S raster: on the scene grid, the query tile's centre pixel holds a mean of N_S values.
    let (bands, gt, w, h, _) = read_all(&run.join("similarity/ns_optical.tif"));
    assert_eq!((w, h), (128, 128));
    let (_, scene_gt, ..) = read_all(&run.join("synth/optical.tif"));
    assert_eq!(gt, scene_gt);
    let v = bands[0][(32 + 16) * 128 + 32 + 16] as f64;
    let (lo, hi) = ns.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(v >= lo - 1e-3 && v <= hi + 1e-3, "raster value {v} outside [{lo}, {hi}]");
    assert!(bands[0][0].is_nan(), "no centre window covers the scene corner");
}

#[test]
fn similarity_rejects_bad_input_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let run = trained_run(t.path());
    let d = |p: &str| run.join(p).to_string_lossy().into_owned();
    let fails = |args: &[&str], needle: &str| {
        let o = simreg(args);
        assert!(!o.status.success(), "{args:?} should fail");
        let e = stderr(&o);
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
        assert!(e.contains(needle), "{args:?}: '{e}' lacks '{needle}'");
        assert!(!run.join("similarity").exists() && !run.join("other").exists(), "nothing written");
    };
    fails(
        &["similarity", &d(""), "--query", "optical/nope", "--device", "cpu"],
        "query tile 'optical/nope'",
    );
    fails(
        &["similarity", &d(""), "--max-memory", "1", "--device", "cpu"],
        "--max-memory 1 MB is too small",
    );
    // A model trained on other tiles (another tiling of another scene).
    let o = t.path().join("o");
    let od = |p: &str| o.join(p).to_string_lossy().into_owned();
    ok(&["synth", "--out", &od("synth"), "--size", "96", "--seed", "6"]);
    ok(&[
        "tile",
        "--reference",
        &od("synth/optical.tif"),
        "--moving",
        &od("synth/sar.tif"),
        "--tile-size",
        "32",
        "--overlap",
        "0",
        "--out",
        &od("tiles"),
    ]);
    ok(&[
        "labels",
        "--tiles",
        &od("tiles"),
        "--out",
        &od("labels"),
        "--amplitude",
        "3",
        "--seed",
        "2",
    ]);
    fails(
        &[
            "similarity",
            "--model",
            &d("train"),
            "--labels",
            &od("labels"),
            "--out",
            &d("other"),
            "--device",
            "cpu",
        ],
        "trained on other tiles",
    );
    // Not a model directory.
    fails(
        &[
            "similarity",
            "--model",
            &d("tiles"),
            "--labels",
            &d("labels"),
            "--out",
            &d("other"),
            "--device",
            "cpu",
        ],
        "no model.json",
    );
}

#[test]
fn a_pipeline_chains_train_and_similarity() {
    let t = tempfile::tempdir().unwrap();
    let toml = t.path().join("p.toml");
    std::fs::write(
        &toml,
        r#"
[run]
out = "run"
[synth.s]
size = 96
seed = 3
[tile]
tile_size = 32
overlap = 16
[[tile.scene]]
synth = "s"
[labels]
amplitude = 2.0
seed = 1
noise = { model = "iid", sigma = 1.0 }
[train]
epochs = 1
width = 2
depth = 2
corr_radius = 1
batch = 8
device = "cpu"
[similarity]
n_queries = 2
k = 3
device = "cpu"
"#,
    )
    .unwrap();
    let s = ok(&["run", toml.to_str().unwrap()]);
    let sim = &s["similarity"];
    assert_eq!(sim["n_tiles"], 25);
    assert_eq!(sim["n_train"], s["train"]["n_train"]);
    let run = t.path().join("run");
    let knn: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("similarity/knn.json")).unwrap())
            .unwrap();
    assert_eq!(knn.as_array().unwrap().len(), 2);
    assert_eq!(knn[0]["neighbours"].as_array().unwrap().len(), 3);
    let recorded = std::fs::read_to_string(run.join("pipeline.toml")).unwrap();
    assert!(
        recorded.contains("[similarity]") && recorded.contains("sketch_dim = 1024"),
        "defaults recorded: {recorded}"
    );
}
