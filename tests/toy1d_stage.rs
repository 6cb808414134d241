//! `simreg run` on a tiny `[toy1d]` pipeline, and `simreg toy1d`'s refusals (the trends
//! themselves are tested in crates/simreg-learn/tests/toy1d.rs).
mod common;
use common::*;
use serde_json::Value;

#[test]
fn a_toy1d_pipeline_writes_its_summary_and_samples() {
    let t = tempfile::tempdir().unwrap();
    let pipe = t.path().join("toy.toml");
    std::fs::write(
        &pipe,
        "[toy1d]\nfrequencies = [2, 1]\nseeds = [4]\nn = 64\nepochs = 2\nbatch = 32\n",
    )
    .unwrap();
    let run = t.path().join("run");
    let o = simreg(&[
        "--threads",
        "1",
        "run",
        pipe.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let toy = &s["toy1d"];
    assert_eq!(toy["params"], 21_057);
    assert_eq!(toy["settings"]["lr"].as_f64(), Some(3e-4), "defaults fill the absent fields");
    let fs: Vec<u64> =
        toy["frequencies"].as_array().unwrap().iter().map(|f| f["f"].as_u64().unwrap()).collect();
    assert_eq!(fs, [1, 2], "in increasing f");
    for f in toy["frequencies"].as_array().unwrap() {
        let ns = f["ns_mean"].as_f64().unwrap();
        assert!(ns > 0.0 && ns <= 64.0 + 1e-9, "N_S mean {ns}");
        assert!(f["corr_per_seed"][0].as_f64().is_some());
    }
    assert!(
        toy["ns_strictly_decreasing"].is_boolean()
            && toy["corr_below_minus_half_for_f_le_2"].is_boolean()
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("toy1d/summary.json")).unwrap())
            .unwrap();
    assert_eq!(written["frequencies"], toy["frequencies"]);
    let csv = std::fs::read_to_string(run.join("toy1d/samples.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 64);
    assert!(csv.starts_with("f,seed,alpha,ns,curvature,pred,target\n1,4,"));
    let effective = std::fs::read_to_string(run.join("pipeline.toml")).unwrap();
    assert!(effective.contains("[toy1d]") && effective.contains("lr = 0.0003"), "{effective}");
}

#[test]
fn bad_toy1d_parameters_stop_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("toy").to_string_lossy().into_owned();
    for (args, says) in [
        (vec!["--n", "1"], "n must be at least 2"),
        (vec!["--frequencies", "1,0"], "positive"),
        (vec!["--seeds", "3,3"], "duplicates"),
        (vec!["--epochs", "0"], "epochs"),
        (vec!["--lr", "0"], "lr"),
    ] {
        let mut a = vec!["toy1d", "--out", &out];
        a.extend(args.iter().copied());
        let o = simreg(&a);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(e.trim_end().lines().count(), 1, "{args:?}: {e}");
        assert!(e.contains(says), "{args:?}: {e}");
    }
    assert!(!t.path().join("toy").exists());
    let pipe = t.path().join("bad.toml");
    for (table, says) in [
        ("[toy1d]\nfrequencies = []\n", "frequencies is empty"),
        ("[toy1d]\nepoch = 3\n", "unknown field"),
    ] {
        std::fs::write(&pipe, table).unwrap();
        let o = simreg(&[
            "run",
            pipe.to_str().unwrap(),
            "--out",
            t.path().join("run").to_str().unwrap(),
        ]);
        let e = stderr(&o);
        assert!(!o.status.success());
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(e.contains(says), "{e}");
    }
}
