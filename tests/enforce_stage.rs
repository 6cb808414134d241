//! Similarity-enforcing training through the CLI: `train --enforce-similarity` and the study.
mod common;
use common::*;

#[test]
fn enforced_training_and_the_study_run_and_report_every_arm() {
    let t = tempfile::tempdir().unwrap();
    let d = |p: &str| t.path().join(p).to_string_lossy().into_owned();
    ok(&["synth", "--out", &d("synth"), "--size", "96", "--seed", "5"]);
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
        "4",
        "--seed",
        "2",
    ]);
    let net = [
        "--width",
        "2",
        "--depth",
        "2",
        "--corr-radius",
        "1",
        "--batch",
        "4",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--seed",
        "3",
    ];
    let labels = d("labels");
    let train = |out: &str, extra: &[&str]| {
        let mut a = vec!["train", "--labels", labels.as_str(), "--out", out];
        a.extend_from_slice(&net);
        a.extend_from_slice(extra);
        ok(&a)
    };
    let plain = d("plain");
    let enforced = d("enforced");
    train(&plain, &[]);
    train(&enforced, &["--enforce-similarity", "1.0", "--pairs", "photometric"]);
    let (a, b) = (
        std::fs::read(t.path().join("plain/model.safetensors")).unwrap(),
        std::fs::read(t.path().join("enforced/model.safetensors")).unwrap(),
    );
    assert_ne!(a, b, "the pair term changes the training");
    let rec = std::fs::read_to_string(t.path().join("pipeline.toml")).unwrap();
    assert!(
        rec.contains("enforce_similarity = 1.0") && rec.contains("pairs = \"photometric\""),
        "{rec}"
    );

    let v = ok(&["enforce-study", "--labels", &d("labels"), "--out", &d("study"), "--params", "seeds = 2, steps = 4, eval_every = 2, width = 2, depth = 2, corr_radius = 1, batch = 4, device = \"cpu\""]);
    for arm in ["baseline", "plus_cos", "minus_cos"] {
        let x = &v["arms"][arm];
        assert_eq!(x["seeds"], 2);
        assert_eq!(x["steps_to_threshold"].as_array().unwrap().len(), 2);
        // Steps 0, 2, 4 evaluated.
        assert_eq!(
            x["curve"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c[0].as_u64().unwrap())
                .collect::<Vec<_>>(),
            vec![0, 2, 4]
        );
        let mean = x["final_error_mean"].as_f64().unwrap();
        assert!(mean.is_finite());
        // The 95 % interval of the final error over the two seeds: around its mean.
        let ci: Vec<f64> =
            x["final_error_ci95"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(ci.len() == 2 && ci[0] <= mean && mean <= ci[1], "{ci:?} around {mean}");
    }
    // Same seed, same batches, same start: the arms differ only through the pair term.
    assert_eq!(v["arms"]["baseline"]["curve"][0], v["arms"]["minus_cos"]["curve"][0]);
    assert!(
        v["step_cost_ratio"].as_f64().unwrap() > 1.0,
        "an enforced step costs more than a plain one"
    );
    let csv = std::fs::read_to_string(t.path().join("study/enforce_curves.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 * 2 * 3);
    // The report draws the study: curves per arm and the table.
    ok(&["report", &d("study")]);
    let html = std::fs::read_to_string(t.path().join("study/report/index.html")).unwrap();
    assert!(
        html.contains("<img src=\"enforce_study.png\"")
            && html.contains("minus_cos")
            && html.contains("plus_cos")
            && html.contains("95 % CI"),
        "{html}"
    );
    assert!(
        !html.contains("noise sweep") && !html.contains("No audit"),
        "a study is neither a sweep nor a run missing its audit: {html}"
    );
    assert!(image::open(t.path().join("study/report/enforce_study.png")).is_ok());
    // A broken study file: one line naming it, non-zero exit, no report left behind.
    let broken = t.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("enforce_study.json"), "{\"arms\": 3").unwrap();
    let o = simreg(&["report", &broken.to_string_lossy()]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("enforce_study.json")
            && stderr(&o).trim().lines().count() == 1,
        "{}",
        stderr(&o)
    );
    assert!(!broken.join("report").exists());
    // One arm alone: no step-cost ratio, and only that arm in the results.
    let v = ok(&["enforce-study", "--labels", &d("labels"), "--out", &d("one"), "--params", "seeds = 1, steps = 2, eval_every = 2, width = 2, depth = 2, corr_radius = 1, batch = 4, device = \"cpu\", arms = [\"baseline\"]"]);
    assert!(v["step_cost_ratio"].is_null());
    assert_eq!(v["arms"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["baseline"]);
    let o = simreg(&[
        "enforce-study",
        "--labels",
        &d("labels"),
        "--out",
        &d("bad"),
        "--params",
        "arms = [\"sideways\"]",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("sideways"), "{}", stderr(&o));
    // Bad parameters: one line, non-zero exit.
    let o = simreg(&[
        "enforce-study",
        "--labels",
        &d("labels"),
        "--out",
        &d("bad"),
        "--params",
        "seeds = 0",
    ]);
    assert!(!o.status.success());
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}
