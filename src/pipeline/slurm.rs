//! `simreg run PIPELINE --executor slurm` and `simreg status RUN`: a pipeline submitted as
//! Slurm jobs — one job per step, job arrays for the sharded steps, `afterok` dependencies
//! between them, `train` on the GPU partition when one is given — each job running
//! `simreg run --step` into the shared run folder. What is done on disk is not submitted
//! again, so resubmitting a partly done run submits only what is missing.
use super::steps::{is_done, plan, Stage, Step};
use super::Pipeline;
use crate::artefacts::{read_json_if_present, write_json, JsonArtefact, RunDir};
use crate::util::output;
use crate::util::shard::Shard;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `--shards`, `--partition`, `--gpu-partition`, `--account`, `--time`.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    pub shards: usize,
    pub partition: Option<String>,
    pub gpu_partition: Option<String>,
    pub account: Option<String>,
    pub time: Option<String>,
}

/// One submitted job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub step: String,
    pub job_id: String,
    /// The array's task ids (shard numbers), for a sharded step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<usize>,
    /// Its log file (`%a` stands for the task id).
    pub log: PathBuf,
}

/// `RUN/slurm/jobs.json`: every job submitted for the run, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobsFile {
    pub shards: usize,
    pub jobs: Vec<Job>,
}

impl JsonArtefact for JobsFile {
    const WHAT: &'static str = "Slurm job list";
    const MADE_BY: &'static str = "simreg run --executor slurm";
}

/// What a submission did.
#[derive(Clone, Debug, Serialize)]
pub struct Submitted {
    pub run: PathBuf,
    /// Jobs submitted now.
    pub jobs: Vec<Job>,
    /// Steps already done on disk (not submitted).
    pub done: Vec<String>,
}

impl std::fmt::Display for Submitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for j in &self.jobs {
            let tasks = if j.tasks.is_empty() {
                String::new()
            } else {
                format!(" (array {})", list(&j.tasks))
            };
            writeln!(f, "submitted {:<28} job {}{tasks}", j.step, j.job_id)?;
        }
        if !self.done.is_empty() {
            writeln!(f, "already done: {}", self.done.join(", "))?;
        }
        write!(f, "follow it with: simreg status {}", self.run.display())
    }
}

fn list(tasks: &[usize]) -> String {
    tasks.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

fn slurm_dir(run: &Path) -> PathBuf {
    run.join("slurm")
}

/// `name` on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

/// A path quoted for bash.
fn quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

/// `RUN/slurm/jobs.json` (empty when nothing was submitted).
fn read_jobs(run_dir: &Path) -> Result<JobsFile> {
    Ok(read_json_if_present(&slurm_dir(run_dir).join("jobs.json"))?.unwrap_or_default())
}

/// Job ids of `record` that Slurm still has queued or running (none without squeue).
fn active(record: &JobsFile) -> Result<Vec<String>> {
    if record.jobs.is_empty() || on_path("squeue").is_none() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = record.jobs.iter().map(|j| j.job_id.as_str()).collect();
    let out = Command::new("squeue")
        .args(["-h", "-o", "%F", "-j", &ids.join(",")])
        .output()
        .context("cannot run squeue")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let mut ids: Vec<String> = listed.split_whitespace().map(str::to_string).collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Refuses a run folder that Slurm jobs submitted for it are still writing.
pub fn check_not_busy(run_dir: &Path) -> Result<()> {
    refuse_if_busy(run_dir, &read_jobs(run_dir)?)
}

fn refuse_if_busy(run_dir: &Path, record: &JobsFile) -> Result<()> {
    let busy = active(record)?;
    if !busy.is_empty() {
        bail!(
            "run '{}' is being written by Slurm jobs {} (queued or running); wait for them, or cancel them with scancel",
            run_dir.display(),
            busy.join(", ")
        );
    }
    Ok(())
}

/// Submits the steps of `p` that are not done into `run_dir` as Slurm jobs.
pub fn submit(
    p: &Pipeline,
    pipeline: &Path,
    run_dir: &Path,
    o: &SlurmOptions,
) -> Result<Submitted> {
    if on_path("sbatch").is_none() {
        bail!("--executor slurm: no `sbatch` on the PATH (a Slurm client is needed; run without --executor to run here)");
    }
    if o.shards == 0 {
        bail!("--shards must be at least 1");
    }
    let jobs_json = slurm_dir(run_dir).join("jobs.json");
    let mut record = read_jobs(run_dir)?;
    refuse_if_busy(run_dir, &record)?;
    if !record.jobs.is_empty() && record.shards != o.shards {
        bail!(
            "run '{}' was split into {} shards; resubmit with --shards {}",
            run_dir.display(),
            record.shards,
            record.shards
        );
    }
    {
        // One writer at a time: a local `simreg run` on this folder holds this claim.
        let _claim = output::claim_run(run_dir)?;
        let effective = toml::to_string_pretty(p).context("cannot serialise the pipeline")?;
        super::write_pipeline_toml(&RunDir::new(run_dir).pipeline_toml(), &effective)?;
        for s in plan(p).iter().filter_map(|s| s.sigma) {
            drop(output::claim_run(RunDir::new(run_dir).sweep(s).path())?);
        }
    }
    let run = std::fs::canonicalize(run_dir)?;
    let pipeline = std::fs::canonicalize(pipeline)
        .with_context(|| format!("pipeline '{}': cannot resolve path", pipeline.display()))?;
    let exe = std::env::current_exe().context("cannot locate the simreg executable")?;
    let dir = slurm_dir(&run);
    std::fs::create_dir_all(dir.join("logs"))?;
    let rd = RunDir::new(&run);
    let mut submitted: Vec<Job> = Vec::new();
    let mut done = Vec::new();
    for step in plan(p) {
        let name = step.name();
        let tasks: Vec<usize> = if step.stage.sharded() {
            (1..=o.shards)
                .filter(|&k| !is_done(p, &rd, &step, Some(Shard { k, n: o.shards })))
                .collect()
        } else if is_done(p, &rd, &step, None) {
            vec![]
        } else {
            vec![0]
        };
        if tasks.is_empty() {
            done.push(name);
            continue;
        }
        let deps: Vec<&str> = submitted
            .iter()
            .filter(|j| step.after.contains(&j.step))
            .map(|j| j.job_id.as_str())
            .collect();
        let job = submit_step(&step, &tasks, &deps, &exe, &pipeline, &run, o)?;
        submitted.push(job);
    }
    record.shards = o.shards;
    record.jobs.extend(submitted.iter().cloned());
    write_json(&jobs_json, &record)?;
    Ok(Submitted { run, jobs: submitted, done })
}

fn submit_step(
    step: &Step,
    tasks: &[usize],
    deps: &[&str],
    exe: &Path,
    pipeline: &Path,
    run: &Path,
    o: &SlurmOptions,
) -> Result<Job> {
    let name = step.name();
    let file = name.replace('@', "_");
    let dir = slurm_dir(run);
    let array = step.stage.sharded();
    let log = dir.join("logs").join(if array {
        format!("{file}-%A_%a.log")
    } else {
        format!("{file}-%j.log")
    });
    let mut cmd = format!(
        "exec {} --quiet run {} --out {} --step {} --shards {}",
        quote(exe),
        quote(pipeline),
        quote(run),
        step.stage.name(),
        o.shards
    );
    if let Some(s) = step.sigma {
        cmd.push_str(&format!(" --sigma {s}"));
    }
    if array {
        cmd.push_str(&format!(" --shard \"$SLURM_ARRAY_TASK_ID/{}\"", o.shards));
    }
    // Every node must see the executable, the pipeline and the run folder.
    let script = format!(
        "#!/bin/bash\n# simreg step {name} (written by simreg run --executor slurm)\nset -euo pipefail\n\
         for f in {exe} {pipeline}; do\n  [ -r \"$f\" ] || {{ echo \"simreg: '$f' is not visible on node $(hostname): the pipeline, its inputs and the run folder must be on a filesystem every node sees\" >&2; exit 1; }}\n\
         done\n[ -w {run} ] || {{ echo \"simreg: run folder {run} is not writable on node $(hostname)\" >&2; exit 1; }}\n{cmd}\n",
        exe = quote(exe),
        pipeline = quote(pipeline),
        run = quote(run),
    );
    let path = dir.join(format!("{file}.sh"));
    crate::util::atomic::write_bytes(&path, script.as_bytes())?;
    let mut args: Vec<String> = vec![
        "--parsable".into(),
        format!("--job-name=simreg-{file}"),
        format!("--output={}", log.display()),
        format!("--chdir={}", run.display()),
    ];
    if array {
        args.push(format!("--array={}", list(tasks)));
    }
    if !deps.is_empty() {
        args.push(format!("--dependency=afterok:{}", deps.join(":")));
        args.push("--kill-on-invalid-dep=yes".into());
    }
    let partition = match (step.stage, &o.gpu_partition) {
        (Stage::Train | Stage::EnforceStudy, Some(g)) => Some(g),
        _ => o.partition.as_ref(),
    };
    if let Some(pt) = partition {
        args.push(format!("--partition={pt}"));
    }
    if let Some(a) = &o.account {
        args.push(format!("--account={a}"));
    }
    if let Some(t) = &o.time {
        args.push(format!("--time={t}"));
    }
    args.push(path.to_string_lossy().into_owned());
    let out = Command::new("sbatch").args(&args).output().context("cannot run sbatch")?;
    if !out.status.success() {
        bail!(
            "sbatch refused step {name}: {}",
            crate::util::text::one_line(String::from_utf8_lossy(&out.stderr))
        );
    }
    let id =
        String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        bail!("sbatch printed no job id for step {name}");
    }
    Ok(Job { step: name, job_id: id, tasks: if array { tasks.to_vec() } else { vec![] }, log })
}

/// One step's state in `simreg status`.
#[derive(Clone, Debug, Serialize)]
pub struct StepStatus {
    pub step: String,
    /// "done", "queued or running", "failed" or "not submitted".
    pub state: String,
    /// For a sharded step: how many of the shards are done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards_done: Option<usize>,
    /// The logs of failed jobs or shards.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_logs: Vec<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunStatus {
    pub run: PathBuf,
    pub steps: Vec<StepStatus>,
}

impl RunStatus {
    pub fn is_done(&self) -> bool {
        self.steps.iter().all(|s| s.state == "done")
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.steps {
            let shards = s.shards_done.map(|n| format!(" ({n} shards done)")).unwrap_or_default();
            writeln!(f, "{:<28} {}{shards}", s.step, s.state)?;
            for l in &s.failed_logs {
                writeln!(f, "{:<28}   log: {}", "", l.display())?;
            }
        }
        write!(f, "{}", if self.is_done() { "run complete" } else { "run not complete" })
    }
}

/// Each step's progress from the run folder, and from Slurm for what is not done.
pub fn status(run_dir: &Path) -> Result<RunStatus> {
    let rd = RunDir::new(run_dir);
    let toml = rd.pipeline_toml();
    if !toml.is_file() {
        bail!("'{}': not a simreg run folder (no pipeline.toml)", run_dir.display());
    }
    let p = Pipeline::load(&toml)?;
    let record = read_jobs(run_dir)?;
    let busy = active(&record)?;
    let n = record.shards.max(1);
    let mut steps = Vec::new();
    for step in plan(&p) {
        let name = step.name();
        let last = record.jobs.iter().rev().find(|j| j.step == name);
        let running = last.is_some_and(|j| busy.contains(&j.job_id));
        let (done, shards_done, failed_tasks) = if step.stage.sharded() {
            let done: Vec<usize> =
                (1..=n).filter(|&k| is_done(&p, &rd, &step, Some(Shard { k, n }))).collect();
            let failed: Vec<usize> = (1..=n).filter(|k| !done.contains(k)).collect();
            (done.len() == n, Some(done.len()), failed)
        } else {
            (is_done(&p, &rd, &step, None), None, vec![0])
        };
        let (state, failed_logs) = match (done, running, last) {
            (true, _, _) => ("done", vec![]),
            (false, true, _) => ("queued or running", vec![]),
            (false, false, Some(j)) => {
                let logs =
                    failed_tasks.iter().map(|&k| log_of(j, k)).filter(|l| l.is_file()).collect();
                ("failed", logs)
            }
            (false, false, None) => ("not submitted", vec![]),
        };
        steps.push(StepStatus { step: name, state: state.into(), shards_done, failed_logs });
    }
    Ok(RunStatus { run: run_dir.to_path_buf(), steps })
}

/// The log file of task `k` of job `j` (`k` ignored for a single job).
fn log_of(j: &Job, k: usize) -> PathBuf {
    let s = j
        .log
        .to_string_lossy()
        .replace("%A", &j.job_id)
        .replace("%a", &k.to_string())
        .replace("%j", &j.job_id);
    PathBuf::from(s)
}
