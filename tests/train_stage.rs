//! `simreg train` through the CLI on a tiny synthetic run (fast on CPU).
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// synth 128 px → 49 tiles of 32 px → labels (σ = 1 px, A = 3 px).
fn labelled_run(dir: &Path) -> PathBuf {
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
    run
}

const SMALL: [&str; 8] = ["--width", "4", "--depth", "2", "--corr-radius", "1", "--batch", "8"];

fn train(run: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let labels = run.join("labels").to_string_lossy().into_owned();
    let out = run.join(out).to_string_lossy().into_owned();
    let mut a = vec!["train", "--labels", &labels, "--out", &out, "--json"];
    a.extend_from_slice(&SMALL);
    a.extend_from_slice(extra);
    simreg(&a)
}

#[test]
fn training_writes_a_model_a_log_and_a_summary_and_is_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let run = labelled_run(t.path());
    let o = train(&run, "train", &["--epochs", "3", "--seed", "9", "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((s["n_train"].as_u64(), s["n_val"].as_u64()), (Some(39), Some(10)));
    assert_eq!(s["sigma_px"].as_f64(), Some(1.0), "σ comes from the run's pipeline file");
    assert_eq!(s["device"], "cpu");
    assert!(s["params"].as_i64().unwrap() > 1000 && s["samples_per_s"].as_f64().unwrap() > 0.0);
    for k in ["label_rmse_truth_px", "net_rmse_truth_px", "net_rmse_labels_px"] {
        assert!(s[k].as_f64().unwrap().is_finite(), "{k}");
    }
    // Held-out labels vs truth: σ = 1 px per axis, 10 tiles.
    assert!((0.3..2.0).contains(&s["label_rmse_truth_px"].as_f64().unwrap()));
    let log = std::fs::read_to_string(run.join("train/log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["epoch"], 3);
    assert!(last["val_rmse_truth_px"].as_f64().is_some());
    let model = std::fs::read(run.join("train/model.safetensors")).unwrap();
    assert!(model.len() > 4 * 1000);
    // Same seed on CPU: the same weights, byte for byte; another seed: others.
    let o = train(&run, "train_again", &["--epochs", "3", "--seed", "9", "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(model, std::fs::read(run.join("train_again/model.safetensors")).unwrap());
    let o = train(&run, "train_other", &["--epochs", "3", "--seed", "10", "--device", "cpu"]);
    assert!(o.status.success());
    assert_ne!(model, std::fs::read(run.join("train_other/model.safetensors")).unwrap());
    // Rerunning a finished training resumes after its last epoch: nothing more to do.
    let o = train(&run, "train", &["--epochs", "3", "--seed", "9", "--device", "cpu"]);
    assert!(o.status.success());
    assert_eq!(std::fs::read_to_string(run.join("train/log.jsonl")).unwrap().lines().count(), 3);
    // Predict: per-tile means and dense fields on each tile's grid.
    let d = |p: &str| run.join(p).to_string_lossy().into_owned();
    let p = ok(&[
        "predict",
        "--model",
        &d("train"),
        "--labels",
        &d("labels"),
        "--out",
        &d("predict"),
        "--device",
        "cpu",
    ]);
    assert_eq!(p["n_tiles"], 49);
    assert!(p["rmse_labels_px"].as_f64().unwrap().is_finite());
    let preds: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("predict/predictions.json")).unwrap(),
    )
    .unwrap();
    let man: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("tiles/manifest.json")).unwrap())
            .unwrap();
    let tile = &man["tiles"][5];
    let pr = &preds[tile["id"].as_str().unwrap()];
    let (field, gt, w, h, _) = read_all(&run.join("predict").join(pr["field"].as_str().unwrap()));
    assert_eq!((w, h), (32, 32));
    let tile_gt: Vec<f64> =
        tile["geotransform"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(gt.to_vec(), tile_gt);
    assert!(
        field[0][0].is_nan() && field[0][16 * 32 + 16].is_finite(),
        "dense field only over the centre window"
    );
    let centre_mean: f64 = (8..24)
        .flat_map(|y| (8..24).map(move |x| (x, y)))
        .map(|(x, y)| field[0][y * 32 + x] as f64)
        .sum::<f64>()
        / 256.0;
    assert!((centre_mean - pr["displacement"][0].as_f64().unwrap()).abs() < 1e-4);
    // Unlabelled tiles work too.
    let p = ok(&[
        "predict",
        "--model",
        &d("train"),
        "--tiles",
        &d("tiles"),
        "--out",
        &d("predict_tiles"),
    ]);
    assert_eq!(p["n_tiles"], 49);
    assert!(p["rmse_labels_px"].is_null());
    // Weights from another architecture are refused with a clear message.
    let info = std::fs::read_to_string(run.join("train/model.json")).unwrap();
    std::fs::write(run.join("train/model.json"), info.replace("\"width\": 4", "\"width\": 6"))
        .unwrap();
    let o = simreg(&[
        "predict",
        "--model",
        &d("train"),
        "--tiles",
        &d("tiles"),
        "--out",
        &d("predict_bad"),
    ]);
    let err = stderr(&o);
    assert!(
        !o.status.success()
            && err.contains("do not fit the architecture")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(!run.join("predict_bad").exists());
    std::fs::write(run.join("train/model.json"), info).unwrap();

    // Asking for more epochs continues from the checkpoint.
    let o = train(&run, "train", &["--epochs", "4", "--seed", "9", "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = std::fs::read_to_string(run.join("train/log.jsonl")).unwrap();
    assert!(log.lines().count() >= 4, "{log}");
}

#[test]
fn training_fits_the_labels_it_is_given() {
    // Without held-out tiles and augmentation, 25 epochs on 49 tiles must bring the training
    // loss well below its first epoch.
    let t = tempfile::tempdir().unwrap();
    let run = labelled_run(t.path());
    let o = train(
        &run,
        "train",
        &[
            "--epochs",
            "25",
            "--patience",
            "25",
            "--no-augment",
            "--val-fraction",
            "0",
            "--lr",
            "3e-3",
            "--width",
            "8",
            "--corr-radius",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let log = std::fs::read_to_string(run.join("train/log.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["train_loss"].as_f64().unwrap())
        .collect();
    assert!(losses.last().unwrap() < &(0.6 * losses[0]), "{losses:?}");
}

#[test]
fn bad_training_inputs_are_named() {
    let t = tempfile::tempdir().unwrap();
    let run = labelled_run(t.path());
    let expect_err = |o: std::process::Output, what: &str| {
        let err = stderr(&o);
        assert!(!o.status.success(), "{what}: should fail");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(what), "expected '{what}' in: {err}");
    };
    // A device that is not there.
    let info: Value =
        serde_json::from_str(&stdout(&simreg(&["info", "--json"]))).expect("simreg info --json");
    if info["libtorch"]["cuda_available"] == false {
        expect_err(train(&run, "t_cuda", &["--epochs", "1", "--device", "cuda"]), "--device cuda");
    }
    // Diverging training stops with a clear message.
    expect_err(
        train(&run, "t_nan", &["--epochs", "5", "--lr", "1e15", "--no-augment"]),
        "diverged",
    );
    // Labels without a target file / not a labels directory.
    expect_err(
        simreg(&[
            "train",
            "--labels",
            run.join("tiles").to_str().unwrap(),
            "--out",
            run.join("t2").to_str().unwrap(),
        ]),
        "run `simreg labels` first",
    );
    // Labels and tiles from different runs: the tiles were cut again with other parameters.
    let d = |p: &str| run.join(p).to_string_lossy().into_owned();
    ok(&[
        "tile",
        "--reference",
        &d("synth/optical.tif"),
        "--moving",
        &d("synth/sar.tif"),
        "--tile-size",
        "32",
        "--overlap",
        "8",
        "--out",
        &d("tiles"),
    ]);
    expect_err(train(&run, "t3", &["--epochs", "1"]), "made from other tiles");
    // An empty training set.
    ok(&["labels", "--tiles", &d("tiles"), "--out", &d("labels"), "--amplitude", "3"]);
    std::fs::write(run.join("labels/labels.json"), "{}").unwrap();
    expect_err(train(&run, "t4", &["--epochs", "1"]), "empty training set");
}
