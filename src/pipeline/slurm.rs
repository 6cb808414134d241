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
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `--shards`, `--partition`, `--gpu-partition`, `--account`, `--time`, `--cpus-per-task`.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    pub shards: usize,
    pub partition: Option<String>,
    pub gpu_partition: Option<String>,
    pub account: Option<String>,
    pub time: Option<String>,
    pub cpus_per_task: Option<usize>,
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
        let job = submit_step(p, &step, &tasks, &deps, &exe, &pipeline, &run, o)?;
        submitted.push(job);
    }
    record.shards = o.shards;
    record.jobs.extend(submitted.iter().cloned());
    write_json(&jobs_json, &record)?;
    Ok(Submitted { run, jobs: submitted, done })
}

/// The folders holding the pipeline's input rasters (absolute, once each; not GDAL's virtual
/// file systems).
fn input_folders(p: &Pipeline) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = p
        .tile
        .iter()
        .flat_map(|t| &t.scene)
        .flat_map(|sc| [Some(&sc.reference), Some(&sc.moving), sc.map.as_ref()])
        .flatten()
        .flat_map(|m| &m.files)
        // GDAL's virtual paths (/vsis3/, /vsigs/, /vsizip/...) are GDAL's to check.
        .filter(|f| !f.to_string_lossy().starts_with("/vsi"))
        .filter_map(|f| std::path::absolute(f).ok()?.parent().map(Path::to_path_buf))
        .collect();
    // A batch's input folder (or the folder of its zip) and a model it names.
    let batch = p.batch.iter().flat_map(|b| [b.input.as_ref(), b.params.model.as_ref()]);
    dirs.extend(
        batch
            .flatten()
            .filter(|f| !f.to_string_lossy().starts_with("/vsi"))
            .filter_map(|f| std::path::absolute(f).ok())
            .map(|f| if f.is_dir() { f } else { f.parent().map_or(f.clone(), Path::to_path_buf) }),
    );
    dirs.sort();
    dirs.dedup();
    dirs
}

#[allow(clippy::too_many_arguments)]
fn submit_step(
    p: &Pipeline,
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
        "exec {} --quiet --threads \"${{SLURM_CPUS_ON_NODE:-1}}\" run {} --out {} --step {} --shards {}",
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
    // Threads: the CPUs Slurm gave the job on its node (one by default). Every node must see
    // the executable, the pipeline, the folders of its inputs and the run folder.
    let mut seen = vec![quote(exe), quote(pipeline)];
    seen.extend(input_folders(p).iter().map(|d| quote(d)));
    let script = format!(
        "#!/bin/bash\n# simreg step {name} (written by simreg run --executor slurm)\nset -euo pipefail\n\
         for f in {seen}; do\n  [ -r \"$f\" ] || {{ echo \"simreg: '$f' is not visible on node $(hostname): the pipeline, its inputs and the run folder must be on a filesystem every node sees\" >&2; exit 1; }}\n\
         done\n[ -w {run} ] || {{ echo \"simreg: run folder {run} is not writable on node $(hostname)\" >&2; exit 1; }}\n{cmd}\n",
        seen = seen.join(" "),
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
    if let Some(c) = o.cpus_per_task {
        args.push(format!("--cpus-per-task={c}"));
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
    /// "done", "queued or running", "failed", "blocked by <step>" (a step it needs failed) or
    /// "not submitted".
    pub state: String,
    /// For a sharded step: how many of the shards are done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards_done: Option<usize>,
    /// The shards ("3/4") or the job that failed, each with its log.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Failure>,
    /// From Slurm's accounting, for the step's latest job: its tasks' states, counted.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub slurm_states: BTreeMap<String, usize>,
    /// From Slurm's accounting: the seconds its tasks ran, summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
}

/// A failed shard (or job) of a step.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// "3/4", or None for a step that is one job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub log: PathBuf,
    /// Its state and exit code in Slurm's accounting ("FAILED 1:0"), where kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunStatus {
    pub run: PathBuf,
    pub steps: Vec<StepStatus>,
    /// Where the Slurm states come from: "slurm accounting" (sacct), "job completion log"
    /// (sacct --completion), or "off: <why>" (the run folder and squeue only).
    pub accounting: String,
}

impl RunStatus {
    pub fn is_done(&self) -> bool {
        self.steps.iter().all(|s| s.state == "done")
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.steps {
            let mut notes = Vec::new();
            if let Some(n) = s.shards_done {
                notes.push(format!("{n} shards done"));
            }
            if !s.slurm_states.is_empty() {
                let st: Vec<String> =
                    s.slurm_states.iter().map(|(k, v)| format!("{k} {v}")).collect();
                notes.push(st.join(", "));
            }
            if let Some(e) = s.elapsed_s {
                notes.push(format!("{e:.0} s"));
            }
            let notes =
                if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
            writeln!(f, "{:<28} {}{notes}", s.step, s.state)?;
            for x in &s.failed {
                let what = x.shard.as_ref().map(|k| format!("shard {k}")).unwrap_or("job".into());
                let slurm = x.slurm.as_ref().map(|v| format!(" [{v}]")).unwrap_or_default();
                writeln!(f, "{:<28}   {what}{slurm}, log: {}", "", x.log.display())?;
            }
        }
        writeln!(f, "Slurm accounting: {}", self.accounting)?;
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
    let (accounting, records) = accounting(&record.jobs);
    let per_task = accounting == SLURM_ACCOUNTING;
    let n = record.shards.max(1);
    let mut steps: Vec<StepStatus> = Vec::new();
    for step in plan(&p) {
        let name = step.name();
        let last = record.jobs.iter().rev().find(|j| j.step == name);
        let running = last.is_some_and(|j| busy.contains(&j.job_id));
        let (done, shards_done, not_done) = if step.stage.sharded() {
            let done: Vec<usize> =
                (1..=n).filter(|&k| is_done(&p, &rd, &step, Some(Shard { k, n }))).collect();
            let left: Vec<usize> = (1..=n).filter(|k| !done.contains(k)).collect();
            (done.len() == n, Some(done.len()), left)
        } else {
            (is_done(&p, &rd, &step, None), None, vec![0])
        };
        // A job-completion log does not tell an array's tasks apart: only single jobs then.
        let mine: Vec<&Accounted> = last
            .filter(|j| per_task || j.tasks.is_empty())
            .map(|j| records.iter().filter(|r| r.job == j.job_id).collect())
            .unwrap_or_default();
        let mut slurm_states = BTreeMap::new();
        for r in &mine {
            *slurm_states.entry(r.state.clone()).or_insert(0) += 1;
        }
        let elapsed_s = (!mine.is_empty()).then(|| mine.iter().map(|r| r.elapsed_s).sum());
        // A step that needs a failed (or blocked) one never runs: Slurm cancels it.
        let blocker = steps
            .iter()
            .find(|s| {
                step.after.contains(&s.step)
                    && (s.state == "failed" || s.state.starts_with("blocked"))
            })
            .map(|s| s.step.clone());
        let (state, failed) = match (done, running, last) {
            (true, _, _) => ("done".to_string(), vec![]),
            (false, true, _) => ("queued or running".to_string(), vec![]),
            (false, false, _) if blocker.is_some() => {
                (format!("blocked by {}", blocker.expect("checked")), vec![])
            }
            (false, false, Some(j)) => {
                let failed = not_done
                    .iter()
                    .filter(|&&k| j.tasks.is_empty() || j.tasks.contains(&k))
                    .map(|&k| Failure {
                        shard: (k > 0).then(|| format!("{k}/{n}")),
                        log: log_of(j, k),
                        slurm: mine
                            .iter()
                            .find(|r| r.task == (k > 0).then_some(k))
                            .map(|r| format!("{} {}", r.state, r.exit_code)),
                    })
                    .collect();
                ("failed".to_string(), failed)
            }
            (false, false, None) => ("not submitted".to_string(), vec![]),
        };
        steps.push(StepStatus { step: name, state, shards_done, failed, slurm_states, elapsed_s });
    }
    Ok(RunStatus { run: run_dir.to_path_buf(), steps, accounting })
}

/// One job, or one task of an array job, as Slurm's accounting records it.
#[derive(Clone, Debug, PartialEq)]
pub struct Accounted {
    pub job: String,
    /// The array task id.
    pub task: Option<usize>,
    pub state: String,
    pub exit_code: String,
    pub elapsed_s: f64,
}

/// `RunStatus::accounting` where sacct reads Slurm's accounting database.
const SLURM_ACCOUNTING: &str = "slurm accounting";

/// The fields asked of sacct, in this order.
const SACCT_FIELDS: &str = "JobID,State,ExitCode,Elapsed";

/// What Slurm's accounting has on `jobs`: (where it comes from, the records). Tries the
/// accounting database (`sacct`), then the job-completion log (`sacct --completion`).
fn accounting(jobs: &[Job]) -> (String, Vec<Accounted>) {
    if jobs.is_empty() {
        return ("off: nothing submitted".into(), vec![]);
    }
    if on_path("sacct").is_none() {
        return ("off: no sacct on the PATH".into(), vec![]);
    }
    let mut ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    ids.dedup();
    let ids = ids.join(",");
    let run = |extra: &[&str]| {
        Command::new("sacct")
            .args(["-n", "-P", "-j", &ids, "-o", SACCT_FIELDS])
            .args(extra)
            .output()
    };
    let mut why = String::new();
    for (source, extra) in [("slurm accounting", &["-X"][..]), ("job completion log", &["-c"][..])]
    {
        match run(extra) {
            Ok(o) if o.status.success() => {
                return (source.into(), parse_sacct(&String::from_utf8_lossy(&o.stdout)))
            }
            Ok(o) => {
                if why.is_empty() {
                    why = crate::util::text::one_line(String::from_utf8_lossy(&o.stderr));
                }
            }
            Err(e) => why = e.to_string(),
        }
    }
    (format!("off: {why}"), vec![])
}

/// Parses `sacct -n -P -o JobID,State,ExitCode,Elapsed`: one record per job or array task
/// ("123", "123_4"); job steps ("123.batch") and pending task ranges ("123_[5-7]") are left
/// out.
pub fn parse_sacct(text: &str) -> Vec<Accounted> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split('|').collect();
            let [id, state, exit, elapsed] = f[..] else { return None };
            if id.contains('.') || id.contains('[') {
                return None;
            }
            let (job, task) = match id.split_once('_') {
                Some((j, t)) => (j, Some(t.parse().ok()?)),
                None => (id, None),
            };
            Some(Accounted {
                job: job.to_string(),
                task,
                // "CANCELLED by 0" → "CANCELLED".
                state: state.split_whitespace().next().unwrap_or("").to_string(),
                exit_code: exit.to_string(),
                elapsed_s: parse_elapsed(elapsed).unwrap_or(f64::NAN),
            })
        })
        .collect()
}

/// Slurm's elapsed time "[DD-[HH:]]MM:SS[.mmm]" in seconds.
fn parse_elapsed(s: &str) -> Option<f64> {
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<f64>().ok()?, r),
        None => (0.0, s),
    };
    let parts: Vec<f64> = rest.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let secs = match parts[..] {
        [m, s] => m * 60.0 + s,
        [h, m, s] => h * 3600.0 + m * 60.0 + s,
        _ => return None,
    };
    Some(days * 86400.0 + secs)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sacct_records_are_parsed_per_task() {
        let text = "41|COMPLETED|0:0|00:00:03\n42_1|COMPLETED|0:0|01:02\n42_2|FAILED|1:0|1-00:00:01\n\
                    42_2.batch|FAILED|1:0|00:00:01\n42_[3-4]|PENDING|0:0|00:00:00\n43|CANCELLED by 0|0:0|00:00:00\n";
        let r = parse_sacct(text);
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].job.as_str(), r[0].task, r[0].elapsed_s), ("41", None, 3.0));
        assert_eq!((r[1].job.as_str(), r[1].task, r[1].elapsed_s), ("42", Some(1), 62.0));
        assert_eq!((r[2].state.as_str(), r[2].exit_code.as_str()), ("FAILED", "1:0"));
        assert_eq!(r[2].elapsed_s, 86401.0);
        assert_eq!(r[3].state, "CANCELLED");
        assert_eq!(parse_elapsed("02:03:04.5"), Some(7384.5));
        assert_eq!(parse_elapsed("junk"), None);
    }
}
