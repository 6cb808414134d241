//! A pipeline as steps an external scheduler can run one by one (`simreg run --step`): each
//! step is one stage, on the run or on one σ of a sweep, into the same folders a one-process
//! run writes; the sharded stages (tile, labels, the similarity passes) run as N shards into
//! `shards/<stage>/K-of-N/` and a merge step puts them together, as one process would have
//! written them.
use super::{resolve_synth, run_labelled_stage, with_sigma, Labelled, Pipeline};
use crate::artefacts::learn::{
    SimilarityMergeRequest, SimilarityReduceRequest, SimilarityShardRequest,
};
use crate::artefacts::train::TrainSummary;
use crate::artefacts::{read_json, write_json, RunDir};
use crate::learn::Call;
use crate::util::shard::Shard;
use crate::{labels, report, synth, tiling};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Synth,
    Tile,
    TileMerge,
    Toy1d,
    Labels,
    LabelsMerge,
    Train,
    EnforceStudy,
    /// Pass 1 of the similarity stage in shards: partial sums of S_A.
    SimilarityPass1,
    /// The partial sums added up, in shard order.
    SimilarityReduce,
    /// Pass 2 in shards: N_S rows against the reduced S_A.
    SimilarityPass2,
    /// The rows merged into RUN/similarity.
    SimilarityMerge,
    Audit,
    /// `[batch]` in shards of the pairs.
    Batch,
    BatchMerge,
    Report,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Synth => "synth",
            Stage::Tile => "tile",
            Stage::TileMerge => "tile-merge",
            Stage::Toy1d => "toy1d",
            Stage::Labels => "labels",
            Stage::LabelsMerge => "labels-merge",
            Stage::Train => "train",
            Stage::EnforceStudy => "enforce-study",
            Stage::SimilarityPass1 => "similarity-pass1",
            Stage::SimilarityReduce => "similarity-reduce",
            Stage::SimilarityPass2 => "similarity-pass2",
            Stage::SimilarityMerge => "similarity-merge",
            Stage::Audit => "audit",
            Stage::Batch => "batch",
            Stage::BatchMerge => "batch-merge",
            Stage::Report => "report",
        }
    }

    /// Whether the step runs as shards (a job array).
    pub fn sharded(self) -> bool {
        matches!(
            self,
            Stage::Tile
                | Stage::Labels
                | Stage::SimilarityPass1
                | Stage::SimilarityPass2
                | Stage::Batch
        )
    }

    /// The merge step of a sharded step.
    fn merge(self) -> Stage {
        match self {
            Stage::Tile => Stage::TileMerge,
            Stage::Labels => Stage::LabelsMerge,
            Stage::Batch => Stage::BatchMerge,
            _ => Stage::SimilarityMerge,
        }
    }

    /// The folder name of a sharded step's shards (under `shards/`).
    fn shards_name(self) -> &'static str {
        match self {
            Stage::Tile => "tile",
            Stage::Labels => "labels",
            Stage::SimilarityPass1 => "similarity-pass1",
            Stage::Batch => "batch",
            _ => "similarity-pass2",
        }
    }
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub stage: Stage,
    /// The σ of a noise sweep the step runs on (None: the run itself).
    pub sigma: Option<f64>,
    /// Names of the steps it needs finished first.
    pub after: Vec<String>,
}

impl Step {
    /// "labels" or "labels@sigma_2": unique within a run.
    pub fn name(&self) -> String {
        match self.sigma {
            Some(s) => format!("{}@sigma_{s}", self.stage.name()),
            None => self.stage.name().to_string(),
        }
    }
}

/// The steps of `p`, in an order that respects their dependencies.
pub fn plan(p: &Pipeline) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut add = |stage, sigma, after: Vec<String>| {
        let s = Step { stage, sigma, after };
        let name = s.name();
        steps.push(s);
        name
    };
    let synth = (!p.synth.is_empty()).then(|| add(Stage::Synth, None, vec![]));
    let tiles = p.tile.as_ref().map(|_| {
        let tile = add(Stage::Tile, None, synth.iter().cloned().collect());
        add(Stage::TileMerge, None, vec![tile])
    });
    let mut last = Vec::new();
    if p.toy1d.is_some() {
        last.push(add(Stage::Toy1d, None, vec![]));
    }
    let batch = |add: &mut dyn FnMut(Stage, Option<f64>, Vec<String>) -> String, sigma, after| {
        let b = add(Stage::Batch, sigma, after);
        add(Stage::BatchMerge, sigma, vec![b])
    };
    if p.batch.as_ref().is_some_and(|b| !b.uses_run_model()) {
        last.push(batch(&mut add, None, synth.iter().cloned().collect()));
    }
    let sigmas: Vec<Option<f64>> = match (&p.sweep, &p.labels) {
        (Some(sw), Some(_)) => sw.sigma.iter().map(|&s| Some(s)).collect(),
        _ => vec![None],
    };
    for sigma in sigmas {
        let mut labels = None;
        if p.labels.is_some() {
            let l = add(Stage::Labels, sigma, tiles.iter().cloned().collect());
            labels = Some(add(Stage::LabelsMerge, sigma, vec![l]));
        }
        let on_labels: Vec<String> = labels.iter().cloned().collect();
        let train = p.train.as_ref().map(|_| add(Stage::Train, sigma, on_labels.clone()));
        if p.enforce_study.is_some() {
            last.push(add(Stage::EnforceStudy, sigma, on_labels.clone()));
        }
        let similarity = p.similarity.as_ref().map(|_| {
            let pass1 = add(Stage::SimilarityPass1, sigma, train.iter().cloned().collect());
            let reduce = add(Stage::SimilarityReduce, sigma, vec![pass1]);
            let pass2 = add(Stage::SimilarityPass2, sigma, vec![reduce]);
            add(Stage::SimilarityMerge, sigma, vec![pass2])
        });
        let audit = p
            .audit
            .as_ref()
            .map(|_| add(Stage::Audit, sigma, similarity.iter().cloned().collect()));
        // The network's reliability reads the stored S_A: after the similarity stage.
        let batch = p.batch.as_ref().filter(|b| b.uses_run_model()).map(|_| {
            let after = similarity.clone().or(train.clone());
            batch(&mut add, sigma, after.into_iter().collect())
        });
        last.extend([labels, train, similarity, audit].into_iter().flatten().last());
        last.extend(batch);
    }
    if p.report.is_some() {
        last.extend(tiles);
        add(Stage::Report, None, last);
    }
    steps
}

/// The run (or sweep sub-run) a step writes into.
fn sub_run(run: &RunDir, sigma: Option<f64>) -> RunDir {
    match sigma {
        Some(s) => run.sweep(s),
        None => RunDir::new(run.path()),
    }
}

/// Where shard `shard` of a sharded step writes.
pub fn shard_dir(run: &RunDir, step: &Step, shard: Shard) -> PathBuf {
    sub_run(run, step.sigma)
        .path()
        .join("shards")
        .join(step.stage.shards_name())
        .join(shard.dir_name())
}

/// Where the similarity reduce step writes S_A.
fn reduce_dir(run: &RunDir, sigma: Option<f64>) -> PathBuf {
    sub_run(run, sigma).path().join("shards").join("similarity-reduce")
}

/// Whether a step's output (one shard's, for a sharded step) is complete on disk.
pub fn is_done(p: &Pipeline, run: &RunDir, step: &Step, shard: Option<Shard>) -> bool {
    let sub = sub_run(run, step.sigma);
    let summary = |dir: &Path| dir.join("summary.json").is_file();
    match (step.stage, shard) {
        // A shard is done when its folder is complete, or when its merge is done (the shards
        // may have been cleaned up, or the stage run in one process).
        (
            Stage::Tile
            | Stage::Labels
            | Stage::SimilarityPass1
            | Stage::SimilarityPass2
            | Stage::Batch,
            sh,
        ) => {
            is_done(p, run, &Step { stage: step.stage.merge(), ..step.clone() }, None)
                || sh.is_some_and(|sh| {
                    shard_dir(run, step, sh).join(crate::util::shard::SHARD_JSON).is_file()
                })
        }
        (Stage::Synth, _) => p.synth.keys().all(|n| run.synth(n).scene_json().is_file()),
        (Stage::TileMerge, _) => run.tiles().manifest_json().is_file(),
        (Stage::Toy1d, _) => summary(run.toy1d().path()),
        (Stage::LabelsMerge, _) => summary(sub.labels().path()),
        (Stage::Train, _) => summary(sub.train().path()),
        (Stage::EnforceStudy, _) => sub.enforce_study().study_json().is_file(),
        // Once merged, the similarity passes are done too (their shards may be cleaned up).
        (Stage::SimilarityReduce, _) => {
            reduce_dir(run, step.sigma).join("reduce.json").is_file()
                || summary(sub.similarity().path())
        }
        (Stage::SimilarityMerge, _) => summary(sub.similarity().path()),
        (Stage::Audit, _) => summary(sub.audit().path()),
        (Stage::BatchMerge, _) => sub.batch().summary_json().is_file(),
        (Stage::Report, _) => run.report().index_html().is_file(),
    }
}

/// How `run_step` runs.
pub struct StepOptions {
    pub shard: Option<Shard>,
    /// The number of shards of the sharded steps (what a merge step expects).
    pub shards: usize,
    pub quiet: bool,
    pub threads: Option<usize>,
}

/// Runs one step of `p` into the run folder `run_dir` (made by `simreg run --executor`).
pub fn run_step(
    p: &Pipeline,
    run_dir: &Path,
    stage: Stage,
    sigma: Option<f64>,
    o: &StepOptions,
) -> Result<()> {
    let run = RunDir::new(run_dir);
    let step =
        plan(p).into_iter().find(|s| s.stage == stage && s.sigma == sigma).ok_or_else(|| {
            match sigma {
                Some(s) => anyhow::anyhow!("the pipeline has no step {} at σ = {s}", stage.name()),
                None => anyhow::anyhow!(
                    "the pipeline has no step {} (a sweep's steps need --sigma)",
                    stage.name()
                ),
            }
        })?;
    if stage.sharded() != o.shard.is_some() {
        bail!(
            "step {}: --shard K/N is {}",
            step.name(),
            if stage.sharded() { "required" } else { "only for the sharded steps" }
        );
    }
    let sub = sub_run(&run, sigma);
    let how = Call { quiet: o.quiet, threads: o.threads, capture_errors: false };
    let shards = |step: &Step| -> Vec<PathBuf> {
        (1..=o.shards).map(|k| shard_dir(&run, step, Shard { k, n: o.shards })).collect()
    };
    let mut s = super::summary::LabelledSummary::default();
    match stage {
        Stage::Synth => {
            for (name, params) in &p.synth {
                synth::ensure(params, run.synth(name).path())?;
            }
        }
        Stage::Tile | Stage::TileMerge => {
            let t = p.tile.as_ref().expect("planned from [tile]");
            let tile_step = Step { stage: Stage::Tile, ..step.clone() };
            if let Some(shard) = o.shard {
                let scenes: Vec<_> = t.scene.iter().map(|sc| resolve_synth(sc, &run)).collect();
                let limits = crate::raster::bounds::InputLimits {
                    max_pixels: t.max_pixels.unwrap_or(crate::raster::bounds::DEFAULT_MAX_PIXELS),
                };
                let opts = tiling::TileOptions { quiet: o.quiet, limits, ..Default::default() };
                let dir = shard_dir(&run, &tile_step, shard);
                tiling::run_shard(&scenes, &t.params, &dir, &opts, shard)?;
            } else {
                tiling::merge(&shards(&tile_step), run.tiles().path())?;
            }
        }
        Stage::Toy1d => {
            let t = p.toy1d.as_ref().expect("planned from [toy1d]");
            let req = crate::artefacts::learn::Toy1dRequest {
                out: run.toy1d().path().into(),
                params: t.clone(),
            };
            crate::learn::call(req, &how)?;
        }
        Stage::Labels | Stage::LabelsMerge => {
            let template = p.labels.as_ref().expect("planned from [labels]");
            let lp = sigma.map_or_else(|| template.clone(), |s| with_sigma(template, s));
            let labels_step = Step { stage: Stage::Labels, ..step.clone() };
            if let Some(shard) = o.shard {
                let dir = shard_dir(&run, &labels_step, shard);
                let opts = labels::LabelOptions { quiet: o.quiet };
                labels::run_shard(run.tiles().path(), &dir, &lp, &opts, shard)?;
            } else {
                labels::merge(&shards(&labels_step), sub.labels().path())?;
            }
        }
        Stage::Train => {
            run_labelled_stage(Labelled::Train, p, &run, &sub, None, o.quiet, &how, &mut s)?
        }
        Stage::EnforceStudy => {
            run_labelled_stage(Labelled::EnforceStudy, p, &run, &sub, None, o.quiet, &how, &mut s)?
        }
        Stage::SimilarityPass1 | Stage::SimilarityPass2 => {
            let params = p.similarity.clone().expect("planned from [similarity]");
            let req = SimilarityShardRequest {
                model: sub.train().path().into(),
                labels: sub.labels().path().into(),
                out: shard_dir(&run, &step, o.shard.expect("checked above")),
                params,
                shard: o.shard.expect("checked above"),
                s_a: (stage == Stage::SimilarityPass2).then(|| reduce_dir(&run, sigma)),
            };
            crate::learn::call(req, &how)?;
        }
        Stage::SimilarityReduce => {
            let pass1 = Step { stage: Stage::SimilarityPass1, ..step.clone() };
            let req =
                SimilarityReduceRequest { shards: shards(&pass1), out: reduce_dir(&run, sigma) };
            crate::learn::call(req, &how)?;
        }
        Stage::SimilarityMerge => {
            let pass2 = Step { stage: Stage::SimilarityPass2, ..step.clone() };
            let out = sub.similarity().path().into();
            crate::learn::call(SimilarityMergeRequest { shards: shards(&pass2), out }, &how)?;
        }
        Stage::Audit => {
            run_labelled_stage(Labelled::Audit, p, &run, &sub, None, o.quiet, &how, &mut s)?
        }
        Stage::Batch | Stage::BatchMerge => {
            let b = p.batch.as_ref().expect("planned from [batch]");
            let batch_step = Step { stage: Stage::Batch, ..step.clone() };
            if let Some(shard) = o.shard {
                let (input, params) = super::batch_inputs(b, &run, &sub);
                let dir = shard_dir(&run, &batch_step, shard);
                crate::align::batch::run_shard(
                    &input,
                    &dir,
                    &params,
                    o.threads,
                    o.quiet,
                    Some(shard),
                )?;
            } else {
                crate::align::batch_shard::merge(&shards(&batch_step), sub.batch().path())?;
            }
        }
        Stage::Report => {
            if let (Some(sw), Some(_)) = (&p.sweep, &p.labels) {
                // What a one-process sweep gathers as it goes.
                let trained: Vec<TrainSummary> = sw
                    .sigma
                    .iter()
                    .filter(|_| p.train.is_some())
                    .map(|&s| read_json(&run.sweep(s).train().summary_json()))
                    .collect::<Result<_>>()?;
                write_json(&run.noise_sweep_json(), &trained)?;
            }
            report::run(&run, run.report().path())?;
        }
    }
    Ok(())
}
