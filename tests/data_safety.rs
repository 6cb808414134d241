//! A user's data is sacred (issue 21): output folders are replaced only when simreg wrote them
//! for the same stage, one writer at a time, `train` is atomic, a killed `simreg` takes its
//! `simreg-learn` child with it, and leftovers of killed runs are cleaned.
mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// synth `size` px → tiles of 32 px (overlap 16).
fn tiled_run(dir: &Path, size: usize) -> PathBuf {
    let run = dir.join("run");
    let d = |p: &str| s(&run.join(p));
    ok(&["synth", "--out", &d("synth"), "--size", &size.to_string(), "--seed", "5"]);
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
    run
}

fn labels_args(run: &Path, out: &str, seed: &str) -> Vec<String> {
    [
        "labels",
        "--tiles",
        &s(&run.join("tiles")),
        "--out",
        &s(&run.join(out)),
        "--amplitude",
        "3",
        "--noise",
        "iid",
        "--sigma",
        "1",
        "--seed",
        seed,
    ]
    .map(String::from)
    .to_vec()
}

fn run_args(args: &[String]) -> std::process::Output {
    simreg(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn spawn(args: &[String]) -> Child {
    Command::new(bin())
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every file under `dir` (relative path → bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn wait_for(what: &str, timeout_s: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(timeout_s), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The children of process `pid` (every thread's).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(text.split_whitespace().filter_map(|v| v.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Running, and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z')))
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

#[test]
fn a_folder_that_merely_holds_a_summary_json_is_never_replaced() {
    let t = tempfile::tempdir().unwrap();
    let run = tiled_run(t.path(), 128);
    let mine = t.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("summary.json"), "{}").unwrap();
    std::fs::write(mine.join("thesis.tex"), "work").unwrap();
    let o = simreg(&[
        "align",
        "--method",
        "phase-correlation",
        "--reference",
        &s(&run.join("synth/optical.tif")),
        "--moving",
        &s(&run.join("synth/sar.tif")),
        "--out",
        &s(&mine),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("was not written by simreg's align stage"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read_to_string(mine.join("thesis.tex")).unwrap(), "work");
    assert!(!t.path().join("mine.partial").exists());

    // train and batch checked nothing at all; similarity and audit took summary.json as proof.
    assert!(run_args(&labels_args(&run, "labels", "1")).status.success());
    let before = snapshot(&mine);
    let m = s(&mine);
    let (labels, synth) = (s(&run.join("labels")), s(&run.join("synth")));
    let cases: [(&[&str], &str); 4] = [
        (&["train", "--labels", &labels, "--out", &m, "--epochs", "1"], "train"),
        (&["batch", "--input", &synth, "--out", &m], "batch"),
        (&["similarity", &s(&run), "--out", &m], "similarity"),
        (&["audit", &s(&run), "--out", &m], "audit"),
    ];
    for (args, stage) in cases {
        let o = simreg(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{stage}: {err}");
        assert!(err.contains(&format!("was not written by simreg's {stage} stage")), "{err}");
        assert_eq!(snapshot(&mine), before, "{stage} changed the user's folder");
    }

    // `run` into a user's folder: refused before anything is written there.
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo.toml");
    let before = snapshot(&mine);
    let o = simreg(&["run", &s(&pipeline), "--out", &s(&mine)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("was not written by simreg's run stage"), "{}", stderr(&o));
    assert_eq!(snapshot(&mine), before);
}

#[test]
fn a_stage_never_replaces_another_stages_output_nor_its_own_input() {
    let t = tempfile::tempdir().unwrap();
    let run = tiled_run(t.path(), 128);
    assert!(run_args(&labels_args(&run, "labels", "1")).status.success());
    let (tiles, labels) = (snapshot(&run.join("tiles")), snapshot(&run.join("labels")));

    // labels into its own input.
    let o = run_args(&labels_args(&run, "tiles", "1"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is or holds the labels stage's input"), "{}", stderr(&o));
    // labels into a folder inside its input.
    let o = run_args(&labels_args(&run, "tiles/sub", "1"));
    assert!(stderr(&o).contains("lies inside the labels stage's input"), "{}", stderr(&o));
    // tile and synth onto the labels.
    let d = |p: &str| s(&run.join(p));
    let o = simreg(&[
        "tile",
        "--reference",
        &d("synth/optical.tif"),
        "--moving",
        &d("synth/sar.tif"),
        "--out",
        &d("labels"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("holds simreg's labels output"), "{}", stderr(&o));
    let o = simreg(&["synth", "--size", "64", "--out", &d("labels")]);
    assert!(stderr(&o).contains("holds simreg's labels output"), "{}", stderr(&o));
    assert_eq!((snapshot(&run.join("tiles")), snapshot(&run.join("labels"))), (tiles, labels));

    // The same stage may replace its own output.
    let o = run_args(&labels_args(&run, "labels", "2"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(run.join("labels/.simreg-output.json"))
        .unwrap()
        .contains("\"labels\""));
}

#[test]
fn a_users_pipeline_toml_above_out_is_never_rewritten() {
    let t = tempfile::tempdir().unwrap();
    let run = tiled_run(t.path(), 128);
    // A user's own project folder holding the stage outputs.
    let proj = t.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(proj.join("pipeline.toml"), "# my own notes\n[mine]\nx = 1\n").unwrap();
    std::fs::write(proj.join("thesis.tex"), "work").unwrap();
    let mut a = labels_args(&run, "labels", "1");
    a[4] = s(&proj.join("labels"));
    let o = run_args(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(proj.join("pipeline.toml")).unwrap(),
        "# my own notes\n[mine]\nx = 1\n"
    );
    // In a run folder simreg made, the stage's parameters are recorded.
    let eff = std::fs::read_to_string(run.join("pipeline.toml")).unwrap_or_default();
    assert!(!eff.contains("[labels"), "not yet: {eff}");
    assert!(run_args(&labels_args(&run, "labels", "1")).status.success());
    let eff = std::fs::read_to_string(run.join("pipeline.toml")).unwrap();
    assert!(eff.starts_with("# Written by simreg") && eff.contains("[labels.noise]"), "{eff}");
}

#[test]
fn a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over() {
    let t = tempfile::tempdir().unwrap();
    let run = tiled_run(t.path(), 128);
    let lock = run.join("labels.lock");
    // This test holds the lock, as a running simreg would.
    let f =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock).unwrap();
    std::fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
    // SAFETY: flock on a file this test owns.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let o = run_args(&labels_args(&run, "labels", "1"));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("pid {}", std::process::id())) && err.contains("is writing it"),
        "{err}"
    );
    assert!(!run.join("labels").exists() && !run.join("labels.partial").exists());
    drop(f);
    // The holder is gone (its lock with it); its file says a pid that no longer runs.
    std::fs::write(&lock, "999999\n").unwrap();
    let o = run_args(&labels_args(&run, "labels", "1"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!lock.exists(), "the lock file is removed on release");
}

#[test]
fn two_labels_runs_on_one_folder_never_leave_it_half_written() {
    let t = tempfile::tempdir().unwrap();
    let run = tiled_run(t.path(), 256);
    let probe = labels_args(&run, "probe", "1");
    let n_tiles =
        ok(&probe.iter().map(String::as_str).collect::<Vec<_>>())["n_tiles"].as_u64().unwrap();
    for round in 0..3 {
        let out = format!("labels{round}");
        let (a, b) = (spawn(&labels_args(&run, &out, "1")), spawn(&labels_args(&run, &out, "2")));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        for o in [&a, &b] {
            assert!(o.status.success() || stderr(o).contains("is writing it"), "{}", stderr(o));
        }
        assert!(a.status.success() || b.status.success());
        // Whatever finished: every tile's label and files are there.
        let labels: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join(&out).join("labels.json")).unwrap())
                .unwrap();
        let labels = labels.as_object().unwrap();
        assert_eq!(labels.len() as u64, n_tiles, "round {round}");
        for (id, e) in labels {
            let moving = e["moving"].as_str().unwrap();
            assert!(run.join(&out).join(moving).is_file(), "round {round}: {id}: {moving}");
        }
        assert!(!run.join(format!("{out}.partial")).exists());
    }
}

const SMALL_TRAIN: [&str; 10] =
    ["--width", "4", "--depth", "2", "--corr-radius", "1", "--batch", "8", "--device", "cpu"];

fn train_args(run: &Path, epochs: &str, seed: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "--labels",
        &s(&run.join("labels")),
        "--out",
        &s(&run.join("train")),
        "--epochs",
        epochs,
        "--patience",
        "1000",
        "--seed",
        seed,
    ]
    .map(String::from)
    .to_vec();
    a.extend(SMALL_TRAIN.map(String::from));
    a
}

/// Starts a long training, waits until it has logged an epoch more than `train.partial` had
/// (its checkpoint and resume state are written before the log line); returns the `simreg`
/// process and its `simreg-learn` child.
fn training_in_progress(run: &Path, epochs: &str, seed: &str) -> (Child, u32) {
    let log = run.join("train.partial/log.jsonl");
    let lines = || std::fs::read_to_string(&log).map_or(0, |l| l.lines().count());
    let before = lines();
    let child = spawn(&train_args(run, epochs, seed));
    wait_for("an epoch", 120, || lines() > before);
    let kids = children_of(child.id());
    assert_eq!(kids.len(), 1, "one simreg-learn child: {kids:?}");
    (child, kids[0])
}

#[test]
fn a_killed_retrain_leaves_the_finished_run_as_it_was_its_child_dies_and_it_resumes() {
    let t = tempfile::tempdir().unwrap();
    let run = tiled_run(t.path(), 128);
    assert!(run_args(&labels_args(&run, "labels", "1")).status.success());
    let o = run_args(&train_args(&run, "2", "1"));
    assert!(o.status.success(), "{}", stderr(&o));
    let finished = snapshot(&run.join("train"));

    // Re-train with other settings; kill -9 simreg during it.
    let (mut parent, learn) = training_in_progress(&run, "300", "2");
    signal(parent.id(), libc::SIGKILL);
    let _ = parent.wait();
    wait_for("simreg-learn to die with its parent", 20, || !alive(learn));
    assert_eq!(snapshot(&run.join("train")), finished, "the finished run is untouched");
    let partial_log = std::fs::read_to_string(run.join("train.partial/log.jsonl")).unwrap();
    assert!(!partial_log.is_empty());

    // The same re-train again: it resumes from the partial run's checkpoint (its log goes on)
    // and swaps in only when complete. (A short run: the same settings but fewer epochs would
    // be another training, so this one is interrupted again and resumed to its end below.)
    let (mut parent, learn) = training_in_progress(&run, "300", "2");
    signal(parent.id(), libc::SIGTERM);
    let st = parent.wait().unwrap();
    assert_eq!(st.code(), Some(143), "SIGTERM: exit status 143");
    assert!(!alive(learn), "simreg waits for its child before exiting");
    let resumed_log = std::fs::read_to_string(run.join("train.partial/log.jsonl")).unwrap();
    // A fresh start would have written another first line (its timings differ).
    assert_eq!(resumed_log.lines().next(), partial_log.lines().next(), "resumed: the log goes on");
    assert_eq!(snapshot(&run.join("train")), finished, "still untouched");
    assert!(!run.join("train.lock").exists(), "the lock is released on SIGTERM");
}

#[test]
fn a_second_train_on_a_folder_being_trained_is_refused_naming_the_first() {
    let t = tempfile::tempdir().unwrap();
    let run = tiled_run(t.path(), 128);
    assert!(run_args(&labels_args(&run, "labels", "1")).status.success());
    // The lock is held where the training runs: in the simreg-learn child.
    let (mut first, learn) = training_in_progress(&run, "300", "1");
    let log = std::fs::read_to_string(run.join("train.partial/log.jsonl")).unwrap();
    let o = run_args(&train_args(&run, "1", "2"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pid {learn}")) && err.contains("is writing it"), "{err}");
    // The first training's own files were not touched by the second.
    let now = std::fs::read_to_string(run.join("train.partial/log.jsonl")).unwrap();
    assert!(now.starts_with(&log), "the first run's log goes on undisturbed");
    signal(first.id(), libc::SIGTERM);
    assert_eq!(first.wait().unwrap().code(), Some(143));
}

#[test]
fn sigint_ends_a_stage_with_130_its_child_and_its_partial_output_gone() {
    let t = tempfile::tempdir().unwrap();
    let run = tiled_run(t.path(), 128);
    assert!(run_args(&labels_args(&run, "labels", "1")).status.success());
    let (mut parent, learn) = training_in_progress(&run, "300", "2");
    signal(parent.id(), libc::SIGINT);
    let o = {
        let st = parent.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(parent.stderr.as_mut().unwrap(), &mut err).unwrap();
        (st, err)
    };
    assert_eq!(o.0.code(), Some(130), "{}", o.1);
    assert!(o.1.contains("interrupted by SIGINT"), "{}", o.1);
    assert!(!alive(learn));
    assert!(!run.join("train").exists() && !run.join("train.lock").exists());
    // train keeps its partial run as a resume point; a short training of other settings
    // starts afresh and completes.
    let o = run_args(&train_args(&run, "1", "3"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!run.join("train.partial").exists());
    assert!(run.join("train/summary.json").is_file());
}

#[test]
fn leftovers_of_killed_runs_are_cleaned_by_the_next_run() {
    let t = tempfile::tempdir().unwrap();
    let run = tiled_run(t.path(), 128);
    // What a kill between the two renames of a swap, or during a write, leaves behind.
    assert!(run_args(&labels_args(&run, "labels", "1")).status.success());
    let old = run.join("labels.old4242");
    std::fs::rename(run.join("labels"), &old).unwrap();
    std::fs::write(run.join("pipeline.toml.tmp4242"), "half").unwrap();
    assert!(run_args(&labels_args(&run, "labels", "1")).status.success());
    assert!(!old.exists());
    assert!(!run.join("pipeline.toml.tmp4242").exists());

    // A killed `tile` whose partial output is resumed: its temporary files do not reach tiles/.
    let d = |p: &str| s(&run.join(p));
    let args: Vec<String> = [
        "tile",
        "--reference",
        &d("synth/optical.tif"),
        "--moving",
        &d("synth/sar.tif"),
        "--tile-size",
        "16",
        "--overlap",
        "0",
        "--out",
        &d("tiles2"),
    ]
    .map(String::from)
    .to_vec();
    assert!(run_args(&args).status.success());
    // The state a kill leaves: the partial directory with its input hash and finished tiles,
    // and a tile being written under its temporary name.
    let partial = run.join("tiles2.partial");
    std::fs::rename(run.join("tiles2"), &partial).unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(partial.join("manifest.json")).unwrap()).unwrap();
    std::fs::write(partial.join(".input_hash"), m["input_hash"].as_str().unwrap()).unwrap();
    std::fs::remove_file(partial.join("manifest.json")).unwrap();
    std::fs::write(partial.join("t_killed.tif.tmp4242"), "half").unwrap();
    let sum = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(sum["n_reused"].as_u64().unwrap() > 0, "the partial output was resumed: {sum}");
    let names: Vec<String> =
        snapshot(&run.join("tiles2")).keys().map(|p| s(p)).filter(|n| n.contains(".tmp")).collect();
    assert!(names.is_empty(), "temporary files in the final tiles: {names:?}");
}
