//! Pipelines: the stages of a run chained by one TOML file (see `pipelines/` and `file.rs`).
//!
//! The order is named once: the shared stages (synthetic scenes, tiles, the 1-D toy), then the
//! labelled stages (`LABELLED`: labels → train → enforce_study → similarity → audit) on the run
//! itself or, for a noise sweep, once per σ on a sub-run, then the report.
pub mod file;
pub mod slurm;
pub mod steps;
pub mod summary;

pub use file::Pipeline;
pub use summary::RunSummary;

use crate::artefacts::align::{BatchParams, BatchSummary};
use crate::artefacts::labels::{LabelParams, NoiseModel};
use crate::artefacts::learn::{EnforceStudyRequest, SimilarityRequest, Toy1dRequest, TrainRequest};
use crate::artefacts::synth::SynthDir;
use crate::artefacts::tiles::{ModalityInput, SceneInput};
use crate::artefacts::{write_json, RunDir};
use crate::learn::{self, Call};
use crate::raster::kind::ModalityKind;
use crate::tiling::{self, TileOptions};
use crate::util::{atomic, output};
use crate::{align, audit, labels, report, synth};
use anyhow::{Context, Result};
use file::BatchSection;
use serde::Serialize;
use std::path::{Path, PathBuf};
use summary::LabelledSummary;

/// The stages that follow the tiles, in the order they run on one labelled run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Labelled {
    Labels,
    Train,
    EnforceStudy,
    Similarity,
    Audit,
    /// `[batch]` with the run's own network.
    Batch,
}

const LABELLED: [Labelled; 6] = [
    Labelled::Labels,
    Labelled::Train,
    Labelled::EnforceStudy,
    Labelled::Similarity,
    Labelled::Audit,
    Labelled::Batch,
];

/// Runs every stage the pipeline has, in order, into `run_dir`; `threads` is passed on to the
/// learning stages (`simreg-learn --threads`).
pub fn run(
    p: &Pipeline,
    run_dir: &Path,
    quiet: bool,
    threads: Option<usize>,
) -> Result<RunSummary> {
    let run = RunDir::new(run_dir);
    // One writer per run directory, and only a directory simreg made (or an empty one).
    let _claim = output::claim_run(run_dir)?;
    slurm::check_not_busy(run_dir)?;
    // The effective configuration (defaults filled in, absolute paths), for provenance.
    let effective = toml::to_string_pretty(p).context("cannot serialise the pipeline")?;
    write_pipeline_toml(&run.pipeline_toml(), &effective)?;
    let how = Call { quiet, threads, capture_errors: false };
    let mut summary = RunSummary::new(run_dir);

    for (name, params) in &p.synth {
        summary.synth.push(synth::ensure(params, run.synth(name).path())?);
    }
    if let Some(t) = &p.tile {
        let scenes: Vec<SceneInput> = t.scene.iter().map(|s| resolve_synth(s, &run)).collect();
        let limits = crate::raster::bounds::InputLimits {
            max_pixels: t.max_pixels.unwrap_or(crate::raster::bounds::DEFAULT_MAX_PIXELS),
        };
        summary.tile = Some(tiling::run(
            &scenes,
            &t.params,
            run.tiles().path(),
            &TileOptions { quiet, limits, ..TileOptions::default() },
        )?);
    }
    // Independent of the other stages.
    if let Some(t) = &p.toy1d {
        summary.toy1d = Some(learn::call(
            Toy1dRequest { out: run.toy1d().path().into(), params: t.clone() },
            &how,
        )?);
    }
    if let Some(b) = p.batch.as_ref().filter(|b| !b.uses_run_model()) {
        summary.batch = Some(run_batch(b, &run, &run, quiet, threads)?);
    }

    match (&p.sweep, &p.labels) {
        (Some(sweep), Some(template)) => {
            for &sigma in &sweep.sigma {
                if !quiet {
                    eprintln!("noise sweep: σ = {sigma} px");
                }
                let sub = run.sweep(sigma);
                let _sub_claim = output::claim_run(sub.path())?;
                let lp = with_sigma(template, sigma);
                let s = run_labelled(p, &run, &sub, Some(&lp), quiet, &how)?;
                summary.sweep.extend(s.train);
            }
            write_json(&run.noise_sweep_json(), &summary.sweep)?;
        }
        _ => summary.labelled = run_labelled(p, &run, &run, p.labels.as_ref(), quiet, &how)?,
    }

    if p.report.is_some() {
        let r = report::run(&run, run.report().path())?;
        if !quiet {
            eprintln!("report: {}", r.index.display());
        }
    }
    Ok(summary)
}

/// The labelled stages on `sub` (the run itself, or one σ of a sweep), reading the tiles of
/// `run`.
fn run_labelled(
    p: &Pipeline,
    run: &RunDir,
    sub: &RunDir,
    label_params: Option<&LabelParams>,
    quiet: bool,
    how: &Call,
) -> Result<LabelledSummary> {
    let mut s = LabelledSummary::default();
    for stage in LABELLED {
        run_labelled_stage(stage, p, run, sub, label_params, quiet, how, &mut s)?;
    }
    Ok(s)
}

/// One labelled stage on `sub` (when the pipeline has it), its summary recorded in `s`.
#[allow(clippy::too_many_arguments)]
fn run_labelled_stage(
    stage: Labelled,
    p: &Pipeline,
    run: &RunDir,
    sub: &RunDir,
    label_params: Option<&LabelParams>,
    quiet: bool,
    how: &Call,
    s: &mut LabelledSummary,
) -> Result<()> {
    let (labels_dir, train_dir) = (sub.labels(), sub.train());
    match stage {
        Labelled::Labels => {
            if let Some(l) = label_params {
                let opts = labels::LabelOptions { quiet };
                s.labels = Some(labels::run(run.tiles().path(), labels_dir.path(), l, &opts)?);
            }
        }
        Labelled::Train => {
            if let Some(t) = &p.train {
                let req = TrainRequest {
                    labels: labels_dir.path().into(),
                    out: train_dir.path().into(),
                    params: t.clone(),
                };
                s.train = Some(learn::call(req, how)?);
            }
        }
        Labelled::EnforceStudy => {
            if let Some(e) = &p.enforce_study {
                let req = EnforceStudyRequest {
                    labels: labels_dir.path().into(),
                    out: sub.enforce_study().path().into(),
                    params: e.clone(),
                };
                s.enforce_study = Some(learn::call(req, how)?);
            }
        }
        Labelled::Similarity => {
            if let Some(params) = &p.similarity {
                let req = SimilarityRequest {
                    model: train_dir.path().into(),
                    labels: labels_dir.path().into(),
                    out: sub.similarity().path().into(),
                    params: params.clone(),
                };
                s.similarity = Some(learn::call(req, how)?);
            }
        }
        Labelled::Audit => {
            if let Some(a) = &p.audit {
                s.audit = Some(audit::run(sub, sub.audit().path(), a, quiet)?);
            }
        }
        Labelled::Batch => {
            if let Some(b) = p.batch.as_ref().filter(|b| b.uses_run_model()) {
                s.batch = Some(run_batch(b, run, sub, quiet, how.threads)?);
            }
        }
    }
    Ok(())
}

/// `[batch]` into `sub/batch`: the pairs of its input or of the run's synthetic scenes, with
/// the model it names or the one trained in `sub`.
fn run_batch(
    b: &BatchSection,
    run: &RunDir,
    sub: &RunDir,
    quiet: bool,
    threads: Option<usize>,
) -> Result<BatchSummary> {
    let (input, params) = batch_inputs(b, run, sub);
    align::batch::run(&input, sub.batch().path(), &params, threads, quiet)
}

/// What `[batch]` reads: its input (or `RUN/synth`) and its options (with the model of `sub`
/// when it uses the run's own network).
fn batch_inputs(b: &BatchSection, run: &RunDir, sub: &RunDir) -> (PathBuf, BatchParams) {
    let input = b.input.clone().unwrap_or_else(|| run.path().join("synth"));
    let mut params = b.batch_params();
    if b.uses_run_model() {
        params.model = Some(sub.train().path().to_path_buf());
    }
    (input, params)
}

/// The sweep's template at label-noise σ (iid noise when the template has none and σ > 0).
fn with_sigma(template: &LabelParams, sigma: f64) -> LabelParams {
    let mut lp = template.clone();
    lp.noise.sigma = sigma;
    if lp.noise.model == NoiseModel::None && sigma > 0.0 {
        lp.noise.model = NoiseModel::Iid;
    }
    lp
}

/// A `[[tile.scene]]` with `synth = "name"` becomes the files of `RUN/synth/name/`.
fn resolve_synth(s: &SceneInput, run: &RunDir) -> SceneInput {
    let Some(name) = &s.synth else { return s.clone() };
    let dir: SynthDir = run.synth(name);
    // Band selections given beside `synth` are kept (e.g. B, G, R of the B, G, R, NIR optical).
    let one = |f: std::path::PathBuf, bands: &Option<Vec<usize>>, kind| ModalityInput {
        files: vec![f],
        bands: bands.clone(),
        kind: Some(kind),
    };
    SceneInput {
        name: Some(s.name.clone().unwrap_or_else(|| name.clone())),
        reference: one(dir.optical_tif(), &s.reference.bands, ModalityKind::Optical),
        moving: one(dir.sar_tif(), &s.moving.bands, ModalityKind::SarDb),
        map: Some(one(dir.map_geojson(), &None, ModalityKind::Map)),
        synth: None,
    }
}

/// Records a stage run from the command line in the run's effective pipeline file
/// (`<stage output>/../pipeline.toml`), as the `[stage]` table.
pub fn record_stage(stage_out: &Path, stage: &str, params: &impl Serialize) -> Result<()> {
    let run = RunDir::of_stage(stage_out);
    let path = run.pipeline_toml();
    // Only in a run directory simreg made: a user's own folder (and pipeline.toml) above
    // `--out` is never written.
    if !output::is_run_folder(run.path()) {
        tracing::info!(
            "'{}' is not a simreg run directory: the {stage} parameters are recorded in its \
             summary only",
            run.path().display()
        );
        return Ok(());
    }
    let _claim = match output::claim_run(run.path()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("the {stage} parameters are not recorded in the run: {e:#}");
            return Ok(());
        }
    };
    let mut table: toml::Table = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("pipeline '{}': not valid TOML", path.display()))?,
        Err(_) => toml::Table::new(),
    };
    table.insert(
        stage.to_string(),
        toml::Value::try_from(params).context("cannot record the stage's parameters")?,
    );
    write_pipeline_toml(&path, &toml::to_string_pretty(&table)?)
}

/// Writes a run's `pipeline.toml`, headed by the line that says simreg wrote it.
fn write_pipeline_toml(path: &Path, body: &str) -> Result<()> {
    let body = body.strip_prefix(output::PIPELINE_HEADER).unwrap_or(body).trim_start();
    atomic::write_bytes(path, format!("{}\n{body}", output::PIPELINE_HEADER).as_bytes())
}
