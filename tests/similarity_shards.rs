//! `similarity --shard K/N` (pass 1 without --s-a, pass 2 with it), `similarity reduce` and
//! `merge similarity` (issue 20): the merged outputs are the files one process writes, N_S to
//! 1e-9 where the batches are smaller than a block; incomplete or mismatched shards are refused.
mod common;
use common::*;
use std::path::{Path, PathBuf};

const PIPELINE: &str = r#"
[synth.s]
size = 256
seed = 3
[tile]
tile_size = 32
overlap = 16
min_valid = 0.9
[[tile.scene]]
synth = "s"
[labels]
amplitude = 3.0
seed = 1
noise = { model = "iid", sigma = 1.0 }
[train]
epochs = 1
batch = 16
seed = 1
"#;

/// A trained run (225 tiles, 180 in S: three 64-sample blocks).
fn trained(dir: &Path) -> PathBuf {
    let p = dir.join("p.toml");
    std::fs::write(&p, PIPELINE).unwrap();
    let run = dir.join("run");
    ok(&["run", p.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    run
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs both passes, the reduce and the merge with `n` shards and `extra` options.
fn sharded(run: &Path, dir: &Path, n: usize, extra: &[&str]) -> PathBuf {
    let shard = |pass: &str, k: usize, sa: Option<&Path>| {
        let out = dir.join(pass).join(k.to_string());
        let spec = format!("{k}/{n}");
        let mut args = vec!["similarity", s(run), "--shard", &spec, "--out", s(&out)];
        if let Some(sa) = sa {
            args.extend(["--s-a", s(sa)]);
        }
        args.extend(extra);
        let sum = ok(&args);
        assert_eq!(sum["up_to_date"], false);
        out
    };
    let p1: Vec<PathBuf> = (1..=n).map(|k| shard("p1", k, None)).collect();
    let sa = dir.join("sa");
    let mut args = vec!["similarity", "reduce", "--out", s(&sa)];
    args.extend(p1.iter().rev().map(|p| s(p)));
    let r = ok(&args);
    assert_eq!(r["n_train"], 180);
    let p2: Vec<PathBuf> = (1..=n).map(|k| shard("p2", k, Some(&sa))).collect();
    let merged = dir.join("merged");
    let mut args = vec!["merge", "similarity", "--out", s(&merged)];
    args.extend(p2.iter().map(|p| s(p)));
    ok(&args);
    merged
}

fn ns(dir: &Path) -> Vec<(String, f64)> {
    let mut r = csv::Reader::from_path(dir.join("ns.csv")).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[2].parse().unwrap())
        })
        .collect()
}

/// summary.json without what differs between any two runs (paths, timings, memory).
fn summary(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    for k in ["out", "seconds", "jacobians_per_s", "peak_rss_mb"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

#[test]
fn merged_similarity_shards_equal_one_process_and_faults_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let run = trained(t.path());
    let single = t.path().join("single");
    ok(&["similarity", s(&run), "--out", s(&single)]);

    // Four shards of three blocks (shard 1 has none): the same files, bit for bit.
    let four = t.path().join("four");
    let merged = sharded(&run, &four, 4, &[]);
    let (a, b) = (files_under(&single), files_under(&merged));
    assert_eq!(a, b, "the same files");
    for f in &a {
        // The summary has timings; the ownership marker names the folder's run.
        if f.ends_with("summary.json") || f.ends_with(".simreg-output.json") {
            continue;
        }
        assert_eq!(
            hash_file(&single.join(f)),
            hash_file(&merged.join(f)),
            "{} differs from the one-process run's",
            f.display()
        );
    }
    assert_eq!(summary(&single), summary(&merged));

    // A rerun of a shard finds it done.
    let again = ok(&["similarity", s(&run), "--shard", "2/4", "--out", s(&four.join("p1/2"))]);
    assert_eq!(again["up_to_date"], true);

    // Batches smaller than a block (a small budget): N_S agrees to 1e-9.
    let small = t.path().join("small");
    ok(&["similarity", s(&run), "--out", s(&small), "--max-memory", "400"]);
    assert!(summary(&small)["batch"].as_u64().unwrap() < 64);
    let merged2 = sharded(&run, &t.path().join("two"), 2, &["--max-memory", "400"]);
    assert_eq!(summary(&merged2)["batch"], summary(&small)["batch"]);
    let (x, y) = (ns(&small), ns(&merged2));
    assert_eq!(x.len(), 225);
    for ((ia, va), (ib, vb)) in x.iter().zip(&y) {
        assert_eq!(ia, ib);
        assert!((va - vb).abs() <= 1e-9 * va.abs().max(1.0), "{ia}: N_S {va} vs {vb}");
    }

    // An incomplete set is refused, naming what is missing, and nothing is written.
    let p1 = |k: usize| four.join("p1").join(k.to_string());
    let out = t.path().join("bad_reduce");
    let e = simreg(&["similarity", "reduce", "--out", s(&out), s(&p1(1)), s(&p1(2)), s(&p1(4))]);
    assert!(!e.status.success());
    assert!(stderr(&e).contains("shard 3/4 missing"), "{}", stderr(&e));
    assert!(!out.exists());
    let p2 = |k: usize| four.join("p2").join(k.to_string());
    let out = t.path().join("bad_merge");
    let e = simreg(&["merge", "similarity", "--out", s(&out), s(&p2(1)), s(&p2(3)), s(&p2(4))]);
    assert!(!e.status.success());
    assert!(stderr(&e).contains("shard 2/4 missing"), "{}", stderr(&e));
    assert!(!out.exists());
    // Pass 2 against an S_A of other parameters.
    let out = t.path().join("bad_pass2");
    let e = simreg(&[
        "similarity",
        s(&run),
        "--shard",
        "1/4",
        "--seed",
        "5",
        "--s-a",
        s(&four.join("sa")),
        "--out",
        s(&out),
    ]);
    assert!(!e.status.success());
    assert!(stderr(&e).contains("was reduced from shards of another"), "{}", stderr(&e));
    assert!(!out.exists());
    // Pass-1 shards are not pass-2 shards.
    let e = simreg(&["merge", "similarity", "--out", s(&out), s(&p1(1))]);
    assert!(stderr(&e).contains("not a similarity pass-2 shard"), "{}", stderr(&e));
}

/// `predict --shard K/N` + `merge predict`: the merged folder is what one `predict` writes.
#[test]
fn merged_predict_shards_equal_one_process() {
    let t = tempfile::tempdir().unwrap();
    let run = trained(t.path());
    let (model, labels) = (run.join("train"), run.join("labels"));
    let one = t.path().join("one");
    let whole = ok(&["predict", "--model", s(&model), "--labels", s(&labels), "--out", s(&one)]);
    let shards: Vec<PathBuf> = (1..=3).map(|k| t.path().join(format!("p{k}"))).collect();
    for (k, dir) in shards.iter().enumerate() {
        let spec = format!("{}/3", k + 1);
        let args = [
            "predict",
            "--model",
            s(&model),
            "--labels",
            s(&labels),
            "--out",
            s(dir),
            "--shard",
            &spec,
        ];
        ok(&args);
    }
    let merged = t.path().join("merged");
    let e = simreg(&["merge", "predict", "--out", s(&merged), s(&shards[0]), s(&shards[1])]);
    assert!(stderr(&e).contains("shard 3/3 missing"), "{}", stderr(&e));
    assert!(!merged.exists());
    let m =
        ok(&["merge", "predict", "--out", s(&merged), s(&shards[1]), s(&shards[2]), s(&shards[0])]);
    assert_eq!(m["n_tiles"], 225);
    assert_eq!(m["rmse_labels_px"], whole["rmse_labels_px"]);
    let (a, b) = (files_under(&one), files_under(&merged));
    assert_eq!(a, b);
    for f in &a {
        if f.ends_with("summary.json") || f.ends_with(".simreg-output.json") {
            continue;
        }
        assert_eq!(hash_file(&one.join(f)), hash_file(&merged.join(f)), "{}", f.display());
    }
}
