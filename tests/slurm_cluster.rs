//! `simreg run --executor slurm` on a real one-node Slurm cluster (issue 20), started and
//! stopped by this test (scripts/slurm_local.sh: installs slurm-wlm and munge when missing,
//! as root). `pipelines/demo.toml` (synthetic scene → 4 tile shards → per σ of its sweep:
//! 4 labels shards, train, similarity in 4 + 4 shards, audit, batch in 4 shards → report) runs
//! through Slurm and in one process; tiles, labels, knn, audit and batch outputs agree exactly
//! and N_S to 1e-9. Where the
//! cluster cannot start, the test fails saying why.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The demo (`make demo`): three scenes, tiles, labels at σ = 0, 2, 4 and per σ train →
/// similarity → audit, and one report.
fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo.toml")
}

const SIGMAS: [&str; 3] = ["sigma_0", "sigma_2", "sigma_4"];

/// The cluster of this test: stopped (and its daemons gone) when dropped.
struct Cluster {
    dir: PathBuf,
    conf: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm_local.sh")
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let o = Command::new("bash").arg(script()).arg("start").arg(dir).output().unwrap();
        assert!(
            o.status.success(),
            "the local Slurm cluster did not start: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let out = String::from_utf8_lossy(&o.stdout);
        let conf =
            out.trim().strip_prefix("export SLURM_CONF=").expect("prints SLURM_CONF").to_string();
        Cluster { dir: dir.to_path_buf(), conf }
    }

    fn simreg(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap()
    }

    fn pids(&self) -> Vec<u32> {
        ["slurmctld", "slurmd", "munged"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(self.dir.join(format!("{p}.pid"))).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).status();
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap()
}

/// A JSON file with the run folder's own path (and the hash it enters) taken out.
fn normalised(path: &Path, run: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.replace(&run.to_string_lossy().into_owned(), "RUN");
    text.lines().filter(|l| !l.contains("input_hash\"")).collect::<Vec<_>>().join("\n")
}

/// `a` and `b` equal, numbers to `rel` relative.
fn assert_close(a: &Value, b: &Value, rel: f64, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= rel * x.abs().max(1e-300), "{at}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (k, (u, v)) in x.iter().zip(y).enumerate() {
                assert_close(u, v, rel, &format!("{at}[{k}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
            for (k, u) in x {
                assert_close(u, &y[k], rel, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// N_S per tile from a similarity folder's ns.csv.
fn ns(similarity: &Path) -> Vec<(String, f64)> {
    let mut r = csv::Reader::from_path(similarity.join("ns.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = h.iter().position(|c| c == "ns").expect("an ns column");
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[col].parse().unwrap())
        })
        .collect()
}

#[test]
fn slurm_executor_runs_a_sharded_pipeline_as_one_process_does() {
    let t = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&t.path().join("cluster"));
    let p = demo().to_string_lossy().into_owned();
    let (local, sharded) = (t.path().join("local"), t.path().join("slurm"));
    let (l, s) = (local.to_string_lossy().into_owned(), sharded.to_string_lossy().into_owned());

    // First the pipeline in one process, on two threads as each Slurm job (two CPUs) runs: the
    // two would compete for the 2 cores of CI otherwise, and libtorch's sums (so the trained
    // weights) depend on the number of threads.
    let t0 = Instant::now();
    ok(&["--threads", "2", "run", &p, "--out", &l]);
    eprintln!("one process: {:.0} s", t0.elapsed().as_secs_f64());

    let submit = || {
        cluster.simreg(&[
            "run",
            &p,
            "--out",
            &s,
            "--executor",
            "slurm",
            "--shards",
            "4",
            "--cpus-per-task",
            "2",
            "--json",
        ])
    };
    let sub = json(&submit());
    let jobs = sub["jobs"].as_array().unwrap();
    let steps: Vec<&str> = jobs.iter().map(|j| j["step"].as_str().unwrap()).collect();
    let mut expected = vec!["synth", "tile", "tile-merge"];
    let per_sigma = [
        "labels",
        "labels-merge",
        "train",
        "similarity-pass1",
        "similarity-reduce",
        "similarity-pass2",
        "similarity-merge",
        "audit",
        "batch",
        "batch-merge",
    ];
    let named: Vec<String> = ["0", "2", "4"]
        .iter()
        .flat_map(|sg| per_sigma.iter().map(move |st| format!("{st}@sigma_{sg}")))
        .collect();
    expected.extend(named.iter().map(String::as_str));
    expected.push("report");
    assert_eq!(steps, expected);
    let array = serde_json::json!([1, 2, 3, 4]);
    for (k, step) in steps.iter().enumerate() {
        let sharded = ["tile", "labels@", "similarity-pass1@", "similarity-pass2@", "batch@"]
            .iter()
            .any(|s| step == s || (s.ends_with('@') && step.starts_with(s)));
        if sharded {
            assert_eq!(jobs[k]["tasks"], array, "{step} is a 4-task array");
        } else {
            assert!(jobs[k].get("tasks").is_none(), "{step} is one job");
        }
    }
    // A second submission while the jobs are queued or running is refused.
    let again = submit();
    assert!(
        !again.status.success() && stderr(&again).contains("is being written by Slurm jobs"),
        "{}",
        stderr(&again)
    );

    let start = Instant::now();
    let status = loop {
        let st = json(&cluster.simreg(&["status", &s, "--json"]));
        let states: Vec<&str> =
            st["steps"].as_array().unwrap().iter().map(|x| x["state"].as_str().unwrap()).collect();
        if states.iter().all(|&x| x == "done") || states.contains(&"failed") {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1500),
            "Slurm jobs still not done after 25 min: {st}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        status["steps"].as_array().unwrap().iter().all(|x| x["state"] == "done"),
        "a step failed: {status}"
    );
    eprintln!("through Slurm: {:.0} s", start.elapsed().as_secs_f64());

    // Tiles, labels, the audit and the similarity outputs as one process writes them.
    let mut dirs = vec!["tiles".to_string()];
    for sg in SIGMAS {
        dirs.push(format!("sweep/{sg}/labels"));
    }
    for dir in &dirs {
        let (a, b) = (files_under(&local.join(dir)), files_under(&sharded.join(dir)));
        // The summary records seconds; hidden files hold hashes of the run's own paths.
        let keep =
            |f: &PathBuf| f != Path::new("summary.json") && !f.to_string_lossy().starts_with('.');
        let a: Vec<_> = a.into_iter().filter(keep).collect();
        let b: Vec<_> = b.into_iter().filter(keep).collect();
        assert!(!a.is_empty(), "{dir}: files");
        assert_eq!(a, b, "{dir}: the same files");
        for f in &a {
            let (x, y) = (local.join(dir).join(f), sharded.join(dir).join(f));
            if f.extension().is_some_and(|e| e == "json") {
                assert_eq!(
                    normalised(&x, &local),
                    normalised(&y, &sharded),
                    "{dir}/{}",
                    f.display()
                );
            } else {
                assert_eq!(hash_file(&x), hash_file(&y), "{dir}/{} differs", f.display());
            }
        }
    }
    for sg in SIGMAS {
        let sub = |run: &Path| run.join("sweep").join(sg);
        assert_eq!(
            hash_file(&sub(&local).join("audit/audit.csv")),
            hash_file(&sub(&sharded).join("audit/audit.csv")),
            "{sg}: audit.csv differs"
        );
        // knn.json holds N_S at full precision: S_A's partial sums add up in another order.
        let knn = |run: &Path| -> Value {
            serde_json::from_str(
                &std::fs::read_to_string(sub(run).join("similarity/knn.json")).unwrap(),
            )
            .unwrap()
        };
        assert_close(&knn(&local), &knn(&sharded), 1e-9, &format!("{sg}/knn.json"));
        let (a, b) = (ns(&sub(&local).join("similarity")), ns(&sub(&sharded).join("similarity")));
        assert_eq!(a.len(), b.len());
        assert!(!a.is_empty());
        for ((ia, va), (ib, vb)) in a.iter().zip(&b) {
            assert_eq!(ia, ib);
            assert!(
                (va - vb).abs() <= 1e-9 * va.abs().max(1e-300),
                "{sg}: N_S of {ia}: {va} vs {vb}"
            );
        }
    }
    // The batch (the synthetic scene aligned by each σ's network): the same pair outputs, and
    // the same status table but for the timings.
    for sg in SIGMAS {
        let dir = |run: &Path| run.join("sweep").join(sg).join("batch");
        let (a, b) = (dir(&local), dir(&sharded));
        let pairs = |d: &Path| -> Vec<PathBuf> {
            files_under(&d.join("pairs"))
                .into_iter()
                .filter(|f| !f.to_string_lossy().contains(".simreg-output"))
                .collect()
        };
        assert!(pairs(&a).iter().any(|f| f.ends_with("displacement.tif")), "{sg}: {:?}", pairs(&a));
        assert_eq!(pairs(&a), pairs(&b), "{sg}/batch: the same files");
        for f in pairs(&a) {
            let (x, y) = (a.join("pairs").join(&f), b.join("pairs").join(&f));
            if f.extension().is_some_and(|e| e == "json" || e == "geojson") {
                // N_S (the reliability, and the weights of the scene's shift) varies in its last
                // bits between runs: JSON numbers to 1e-9.
                assert_close(
                    &untimed_summary(&x, Some(&local)),
                    &untimed_summary(&y, Some(&sharded)),
                    1e-9,
                    &format!("{sg}/batch/pairs/{}", f.display()),
                );
            } else {
                assert_eq!(
                    hash_file(&x),
                    hash_file(&y),
                    "{sg}/batch/pairs/{} differs",
                    f.display()
                );
            }
        }
        // Timings; the input paths, and the key made of their sizes and times, name each run.
        let table = |d: &Path| {
            status_table(
                d,
                &[
                    "seconds",
                    "megapixels_per_s",
                    "reference",
                    "moving",
                    "key",
                    "shift_dx_px",
                    "shift_dy_px",
                ],
            )
        };
        let t = table(&a);
        assert_eq!(t.len(), 1, "{sg}: one pair (the synthetic scene)");
        assert!(t[0].contains(&"ok".to_string()), "{sg}: {t:?}");
        assert_eq!(t, table(&b), "{sg}/batch/status.csv");
        // The scene's shift to 1e-9 (N_S weighs it).
        let shifts = |d: &Path| -> Vec<f64> {
            let mut r = csv::Reader::from_path(d.join("status.csv")).unwrap();
            let h = r.headers().unwrap().clone();
            let at = |k: &str| h.iter().position(|x| x == k).unwrap();
            let (ix, iy) = (at("shift_dx_px"), at("shift_dy_px"));
            r.records()
                .flat_map(|rec| {
                    let rec = rec.unwrap();
                    [rec[ix].parse::<f64>().unwrap(), rec[iy].parse::<f64>().unwrap()]
                })
                .collect()
        };
        for (u, v) in shifts(&a).iter().zip(shifts(&b)) {
            assert!((u - v).abs() <= 1e-9 * u.abs().max(1e-6), "{sg}: shift {u} vs {v}");
        }
    }
    assert!(sharded.join("report/index.html").is_file());

    // Resubmitting a finished run submits nothing.
    let re = json(&submit());
    assert_eq!(re["jobs"].as_array().unwrap().len(), 0, "{re}");
    // A shard that fails: its error is in its log, and status names the shard and the log.
    let failing = t.path().join("failing");
    let f = failing.to_string_lossy().into_owned();
    let args = ["run", &p, "--out", &f, "--executor", "slurm", "--shards", "4", "--json"];
    json(&cluster.simreg(&args));
    // In the way of tile shard 3 before it runs (synth runs first): a file simreg did not make.
    let blocker = failing.join("shards/tile/3-of-4");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "not simreg's").unwrap();
    let start = Instant::now();
    let st = loop {
        let st = json(&cluster.simreg(&["status", &f, "--json"]));
        let steps = st["steps"].as_array().unwrap();
        if !steps.iter().any(|x| x["state"] == "queued or running") {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "still running: {st}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let step = |name: &str| {
        st["steps"].as_array().unwrap().iter().find(|x| x["step"] == name).unwrap().clone()
    };
    assert_eq!(step("synth")["state"], "done", "{st}");
    assert_eq!(step("synth")["slurm_states"], serde_json::json!({"COMPLETED": 1}), "{st}");
    assert_eq!(st["accounting"], "job completion log", "{st}");
    let tile = step("tile");
    assert_eq!(
        (tile["state"].as_str(), tile["shards_done"].as_u64()),
        (Some("failed"), Some(3)),
        "{st}"
    );
    let failed = tile["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{st}");
    assert_eq!(failed[0]["shard"], "3/4");
    let log = PathBuf::from(failed[0]["log"].as_str().unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("3-of-4") && text.contains("is not a directory"), "{text}");
    assert_eq!(step("tile-merge")["state"], "blocked by tile", "{st}");
    assert_eq!(step("report")["state"].as_str().map(|s| s.starts_with("blocked by")), Some(true));
    let shown = stdout(&cluster.simreg(&["status", &f]));
    assert!(shown.contains("shard 3/4") && shown.contains(&*log.to_string_lossy()), "{shown}");
    // Mended and resubmitted: only what is missing goes, from tile shard 3 on.
    std::fs::remove_file(&blocker).unwrap();
    let re = json(&cluster.simreg(&args));
    let jobs = re["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["step"], "tile", "{re}");
    assert_eq!(jobs[0]["tasks"], serde_json::json!([3]), "{re}");
    assert!(re["done"].as_array().unwrap().contains(&serde_json::json!("synth")), "{re}");
    let ids: Vec<&str> = jobs.iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    let o = Command::new("scancel").args(&ids).env("SLURM_CONF", &cluster.conf).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // Without sbatch on the PATH: a clear error.
    let no = Command::new(bin())
        .args(["run", &p, "--out", &s, "--executor", "slurm"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        !no.status.success() && stderr(&no).contains("no `sbatch` on the PATH"),
        "{}",
        stderr(&no)
    );

    // Stopping the cluster leaves no daemon behind.
    let pids = cluster.pids();
    assert_eq!(pids.len(), 3, "munged, slurmctld and slurmd were running");
    drop(cluster);
    std::thread::sleep(Duration::from_millis(300));
    for pid in pids {
        assert!(!alive(pid), "daemon {pid} still running after stop");
    }
}

/// What a node runs refuses a pipeline whose paths it cannot see (issue 20): the job scripts
/// are written by a submission to a stand-in `sbatch` (nothing runs), then run as a node would
/// after the input folder, or the pipeline, went out of its sight.
#[test]
fn job_scripts_refuse_paths_a_node_cannot_see() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    Fixture::utm(64, 64, 1, |b, c, r| (noise(b, c, r) * 250.0).floor())
        .write_u8(&data.join("r.tif"));
    Fixture::utm(64, 64, 1, |b, c, r| (noise(b + 1, c, r) * 250.0).floor())
        .write_u8(&data.join("m.tif"));
    let pipeline = t.path().join("p.toml");
    std::fs::write(
        &pipeline,
        "[tile]\ntile_size = 32\noverlap = 0\n[[tile.scene]]\nreference = { files = [\"data/r.tif\"] }\nmoving = { files = [\"data/m.tif\"] }\n",
    )
    .unwrap();
    let bin_dir = t.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let sbatch = bin_dir.join("sbatch");
    std::fs::write(&sbatch, "#!/bin/sh\necho 77\n").unwrap();
    std::fs::set_permissions(&sbatch, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let run = t.path().join("run");
    let o = Command::new(bin())
        .args(["run", pipeline.to_str().unwrap(), "--out", run.to_str().unwrap()])
        .args(["--executor", "slurm", "--shards", "2"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let script = run.join("slurm/tile.sh");
    assert!(script.is_file());
    let node = |what: &Path| {
        let o = Command::new("bash").arg(&script).env("SLURM_ARRAY_TASK_ID", "1").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "ran although {} is gone", what.display());
        assert!(
            err.contains("is not visible on node") && err.contains(&*what.to_string_lossy()),
            "{err}"
        );
    };
    // The input folder is gone from the node's sight.
    let away = t.path().join("away");
    std::fs::rename(&data, &away).unwrap();
    node(&data);
    std::fs::rename(&away, &data).unwrap();
    // So is the pipeline.
    std::fs::rename(&pipeline, &away).unwrap();
    node(&pipeline);
    std::fs::rename(&away, &pipeline).unwrap();
    // With both in sight, the step runs.
    let o = Command::new("bash").arg(&script).env("SLURM_ARRAY_TASK_ID", "1").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(run.join("shards/tile/1-of-2/shard.json").is_file());
}
