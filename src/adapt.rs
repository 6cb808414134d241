//! `simreg adapt`: fine-tunes a model (the shipped one by default) on a user's own pairs with
//! known synthetic shifts — the paper's setting, the archive's unknown misregistration being
//! the label noise. Some pairs are held out and tiled apart (`RUN/eval`), so that the error
//! before and after is measured on ground the fine-tuning never saw; the audit gives its
//! label-free estimate beside. The run is an ordinary pipeline run (RUN/tiles … RUN/audit), so
//! `align --model RUN/train` and `batch --model RUN/train` take the adapted model with its S_A.
use crate::align::{batch, default_model, scene::model_dir};
use crate::artefacts::adapt::{AdaptParams, AdaptSummary};
use crate::artefacts::align::BatchParams;
use crate::artefacts::audit::AuditParams;
use crate::artefacts::labels::{LabelParams, LabelsDir};
use crate::artefacts::learn::PredictRequest;
use crate::artefacts::similarity::SimilarityParams;
use crate::artefacts::tiles::{EdgePolicy, ModalityInput, SceneInput, TileParams};
use crate::artefacts::train::{TrainDir, TrainParams};
use crate::artefacts::{write_json, RunDir};
use crate::learn::{self, Call};
use crate::pipeline::file::{Pipeline, TileSection};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the held-out pairs are tiled and labelled, and predicted before and after.
pub fn eval_dir(run: &Path) -> PathBuf {
    run.join("eval")
}

pub fn run(
    pairs: &Path,
    out: &Path,
    p: &AdaptParams,
    quiet: bool,
    threads: Option<usize>,
) -> Result<AdaptSummary> {
    let start = Instant::now();
    if !(p.holdout > 0.0 && p.holdout < 1.0) {
        bail!("--holdout must be within (0, 1), not {}", p.holdout);
    }
    if p.stride == 0 || p.epochs == 0 {
        bail!("--stride and --epochs must be at least 1");
    }
    crate::raster::init_gdal();
    let base = match &p.model {
        Some(m) => model_dir(m),
        None => default_model::locate().context(
            "no default model found (models/default/train): pass --model RUN/train to adapt",
        )?,
    };
    let net = TrainDir::new(&base)
        .model_info()
        .with_context(|| format!("--model '{}': not a trained model", base.display()))?
        .net;
    let (train, held) = split_pairs(pairs, p)?;
    for pair in train.iter().chain(&held) {
        check_layout(pair, p, &base, (net.reference_bands, net.moving_bands))?;
    }

    let t = net.tile_size;
    if p.stride > t {
        bail!("--stride {} is larger than the model's {t}-px tile", p.stride);
    }
    let tile = |scenes| TileSection {
        params: TileParams {
            tile_size: t,
            overlap: t - p.stride,
            min_valid: 0.9,
            edge: EdgePolicy::Shift,
            ..TileParams::default()
        },
        scene: scenes,
        max_pixels: None,
    };
    // Known shifts as the default model was trained with: [−4, 4] px plus a ≤ 1 px field.
    let labels =
        LabelParams { amplitude: 4.0, field_amplitude: 1.0, seed: p.seed, ..Default::default() };
    let adapt = Pipeline {
        tile: Some(tile(scenes(&train, p))),
        labels: Some(labels.clone()),
        train: Some(TrainParams {
            epochs: p.epochs,
            lr: p.lr,
            patience: p.epochs,
            seed: p.seed,
            width: net.width,
            depth: net.depth,
            corr_radius: net.corr_radius,
            init: Some(base.clone()),
            ..TrainParams::default()
        }),
        similarity: Some(SimilarityParams { n_queries: 3, k: 6, ..Default::default() }),
        audit: Some(AuditParams::default()),
        ..Pipeline::empty()
    };
    let s = crate::pipeline::run(&adapt, out, quiet, threads)
        .with_context(|| format!("adapting in '{}'", out.display()))?;
    let eval = eval_dir(out);
    let held_run =
        Pipeline { tile: Some(tile(scenes(&held, p))), labels: Some(labels), ..Pipeline::empty() };
    let e = crate::pipeline::run(&held_run, &eval, quiet, threads)?;
    let run = RunDir::new(out);
    let how = Call { quiet: true, threads, capture_errors: false };
    let rmse = |model: &Path, name: &str| -> Result<f64> {
        let req = PredictRequest {
            model: model.to_path_buf(),
            tiles: None,
            labels: Some(LabelsDir::new(RunDir::new(&eval).labels().path()).path().into()),
            out: eval.join(name),
            device: crate::artefacts::learn::DeviceChoice::Auto,
            shard: None,
        };
        learn::call(req, &how)?.rmse_labels_px.context("predict reported no RMSE")
    };
    let before = rmse(&base, "predict_before")?;
    let after = rmse(run.train().path(), "predict_after")?;
    let audit = s.labelled.audit.as_ref();
    let summary = AdaptSummary {
        run_dir: out.to_path_buf(),
        base_model: base,
        model: run.train().path().to_path_buf(),
        trained_pairs: train.iter().map(|x| x.name.clone()).collect(),
        heldout_pairs: held.iter().map(|x| x.name.clone()).collect(),
        n_train_tiles: s.tile.as_ref().map_or(0, |x| x.n_tiles),
        n_heldout_tiles: e.tile.as_ref().map_or(0, |x| x.n_tiles),
        heldout_rmse_before_px: before,
        heldout_rmse_after_px: after,
        audit_label_noise_rmse_px: audit.map(|a| a.label_noise_rmse_px),
        audit_predicted_rmse_px: audit.map(|a| a.predicted_rmse_px),
        audit_predicted_rmse_interval_px: audit.map(|a| a.predicted_rmse_interval_px),
        seconds: start.elapsed().as_secs_f64(),
    };
    write_json(&out.join("adapt.json"), &summary)?;
    Ok(summary)
}

/// A pair: its name and files.
struct PairFiles {
    name: String,
    reference: PathBuf,
    moving: PathBuf,
}

/// The pairs of `input` (as `simreg batch` finds them), split into trained and held out: the
/// held-out ones chosen by a seeded hash of their names (stable when pairs are added).
fn split_pairs(input: &Path, p: &AdaptParams) -> Result<(Vec<PairFiles>, Vec<PairFiles>)> {
    let bp = BatchParams {
        pattern: p.pattern.clone(),
        reference_role: p.reference_role.clone(),
        moving_role: p.moving_role.clone(),
        ..BatchParams::default()
    };
    batch::check_pattern(&bp)?;
    let files = batch::list_files(input)?;
    let mut pairs = Vec::new();
    for pair in batch::find_pairs(&files, &bp)? {
        if let Some(problem) = &pair.problem {
            bail!("input '{}': pair '{}': {problem}", input.display(), pair.name);
        }
        let (Some(r), Some(m)) = (&pair.reference, &pair.moving) else {
            bail!(
                "input '{}': pair '{}' is incomplete (a reference and a moving file are needed)",
                input.display(),
                pair.name
            );
        };
        pairs.push(PairFiles { name: pair.name.clone(), reference: r.into(), moving: m.into() });
    }
    if pairs.len() < 2 {
        bail!(
            "input '{}': {} pair(s) found with --pattern '{}': adapt needs at least 2 (one to train on, one held out)",
            input.display(),
            pairs.len(),
            p.pattern
        );
    }
    let n_held = ((p.holdout * pairs.len() as f64).round() as usize).clamp(1, pairs.len() - 1);
    let rank = |x: &PairFiles| blake3::hash(format!("{}:{}", p.seed, x.name).as_bytes());
    pairs.sort_by_key(|x| *rank(x).as_bytes());
    let train = pairs.split_off(n_held);
    let (mut held, mut train) = (pairs, train);
    held.sort_by(|a, b| a.name.cmp(&b.name));
    train.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((train, held))
}

fn scenes(pairs: &[PairFiles], p: &AdaptParams) -> Vec<SceneInput> {
    pairs
        .iter()
        .map(|x| SceneInput {
            name: Some(x.name.clone()),
            reference: ModalityInput {
                files: vec![x.reference.clone()],
                bands: p.reference_bands.clone(),
                kind: None,
            },
            moving: ModalityInput {
                files: vec![x.moving.clone()],
                bands: p.moving_bands.clone(),
                kind: None,
            },
            map: None,
            synth: None,
        })
        .collect()
}

/// The band counts of a pair against the model's, before any tiling: a one-line error that
/// says which bands to choose.
fn check_layout(
    pair: &PairFiles,
    p: &AdaptParams,
    base: &Path,
    (cr, cm): (usize, usize),
) -> Result<()> {
    let open = crate::raster::open::open_raster;
    // Every pair's header: a band beyond a file's count is named before anything is written.
    let count = |path: &Path, role, asked: &Option<Vec<usize>>| -> Result<usize> {
        let n = open(path, role)?.bands.len();
        if let Some(b) = asked.as_ref().and_then(|a| a.iter().find(|&&b| b == 0 || b > n)) {
            bail!("{role} '{}': has {n} band(s), there is no band {b}", path.display());
        }
        Ok(asked.as_ref().map_or(n, Vec::len))
    };
    let nr = count(&pair.reference, "reference", &p.reference_bands)?;
    let nm = count(&pair.moving, "moving", &p.moving_bands)?;
    for (role, path, n, want, flag) in [
        ("reference", &pair.reference, nr, cr, "--reference-bands"),
        ("moving", &pair.moving, nm, cm, "--moving-bands"),
    ] {
        if n != want {
            let layout = if p.model.is_none() {
                format!(" ({})", default_model::LAYOUT)
            } else {
                String::new()
            };
            bail!(
                "{role} '{}': {n} band(s) used, the model '{}' takes {want}{layout}: choose them with {flag}",
                path.display(),
                base.display(),
            );
        }
    }
    Ok(())
}
