//! `simreg run --executor slurm` on a real one-node Slurm cluster (issue 20), started and
//! stopped by this test (scripts/slurm_local.sh: installs slurm-wlm and munge when missing,
//! as root). A small pipeline (synthetic scene → 4 tile shards → 4 labels shards → train →
//! similarity → audit → report) runs through Slurm and in one process; tiles, labels and
//! audit agree exactly and N_S to 1e-9. Where the cluster cannot start, the test fails saying
//! why.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PIPELINE: &str = r#"
[synth.s]
size = 160
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
[similarity]
n_queries = 2
k = 3
[audit]
[report]
"#;

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

/// N_S per tile from ns.csv.
fn ns(run: &Path) -> Vec<(String, f64)> {
    let mut r = csv::Reader::from_path(run.join("similarity/ns.csv")).unwrap();
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
    let pipeline = t.path().join("p.toml");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    let p = pipeline.to_string_lossy().into_owned();
    let (local, sharded) = (t.path().join("local"), t.path().join("slurm"));
    let (l, s) = (local.to_string_lossy().into_owned(), sharded.to_string_lossy().into_owned());

    let submit = || {
        cluster.simreg(&["run", &p, "--out", &s, "--executor", "slurm", "--shards", "4", "--json"])
    };
    let sub = json(&submit());
    let jobs = sub["jobs"].as_array().unwrap();
    let steps: Vec<&str> = jobs.iter().map(|j| j["step"].as_str().unwrap()).collect();
    assert_eq!(
        steps,
        [
            "synth",
            "tile",
            "tile-merge",
            "labels",
            "labels-merge",
            "train",
            "similarity",
            "audit",
            "report"
        ]
    );
    assert_eq!(jobs[1]["tasks"], serde_json::json!([1, 2, 3, 4]), "tile is a 4-task array");
    // A second submission while the jobs are queued or running is refused.
    let again = submit();
    assert!(
        !again.status.success() && stderr(&again).contains("is being written by Slurm jobs"),
        "{}",
        stderr(&again)
    );

    // Meanwhile, the same pipeline in one process.
    ok(&["run", &p, "--out", &l]);

    let start = Instant::now();
    let status = loop {
        let st = json(&cluster.simreg(&["status", &s, "--json"]));
        let states: Vec<&str> =
            st["steps"].as_array().unwrap().iter().map(|x| x["state"].as_str().unwrap()).collect();
        if states.iter().all(|&x| x == "done") || states.contains(&"failed") {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "Slurm jobs still not done after 10 min: {st}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        status["steps"].as_array().unwrap().iter().all(|x| x["state"] == "done"),
        "a step failed: {status}"
    );

    // Tiles, labels and the audit as one process writes them.
    for dir in ["tiles", "labels"] {
        let (a, b) = (files_under(&local.join(dir)), files_under(&sharded.join(dir)));
        // The summary records seconds; hidden files hold hashes of the run's own paths.
        let keep =
            |f: &PathBuf| f != Path::new("summary.json") && !f.to_string_lossy().starts_with('.');
        let a: Vec<_> = a.into_iter().filter(keep).collect();
        let b: Vec<_> = b.into_iter().filter(keep).collect();
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
    assert_eq!(
        hash_file(&local.join("audit/audit.csv")),
        hash_file(&sharded.join("audit/audit.csv"))
    );
    let (a, b) = (ns(&local), ns(&sharded));
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty());
    for ((ia, va), (ib, vb)) in a.iter().zip(&b) {
        assert_eq!(ia, ib);
        assert!((va - vb).abs() <= 1e-9 * va.abs().max(1e-300), "N_S of {ia}: {va} vs {vb}");
    }
    assert!(sharded.join("report/index.html").is_file());

    // Resubmitting a finished run submits nothing.
    let re = json(&submit());
    assert_eq!(re["jobs"].as_array().unwrap().len(), 0, "{re}");
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
