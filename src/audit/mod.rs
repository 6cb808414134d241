//! The `audit` stage: how good are the labels, and how good is the network, without ground
//! truth. Reads the similarity stage's per-tile table and the tiles; writes `RUN/audit/`:
//! `audit.csv` (every tile ranked by label suspicion), `flagged.geojson` (footprints of the
//! flagged tiles) and `summary.json`. The estimator is explained in `estimate.rs`; the truth,
//! when the run has it, is read after everything is estimated, only to report how close the
//! estimates came.
pub mod baseline;
pub mod estimate;
pub mod inputs;
pub mod score;

use crate::artefacts::audit::{
    write_audit_csv, AuditDir, AuditParams, AuditRow, AuditSummary, CalibrationBin,
};
use crate::artefacts::similarity::Split;
use crate::artefacts::tiles::TileEntry;
use crate::artefacts::RunDir;
use crate::matching::cfog::bounded_search_agrees;
use crate::matching::Shift;
use crate::raster::geo;
use crate::util::{atomic, output};
use anyhow::{bail, Context, Result};
use estimate::{Collocation, NeighbourModel};
use indicatif::{ParallelProgressIterator, ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything the audit knows about one tile.
struct TileAudit {
    id: String,
    train: bool,
    ns: f64,
    label: [f64; 2],
    pred: [f64; 2],
    base: [f64; 2],
    base_peak: f64,
    f_trace: f64,
    predicted_var: f64,
    score: f64,
}

/// Runs the audit of `run` into `out` (normally `RUN/audit`).
pub fn run(run: &RunDir, out: &Path, p: &AuditParams, quiet: bool) -> Result<AuditSummary> {
    let start = std::time::Instant::now();
    p.check()?;
    let inputs_of: Vec<PathBuf> = vec![
        run.tiles().path().into(),
        run.labels().path().into(),
        run.train().path().into(),
        run.similarity().path().into(),
    ];
    let inputs_of: Vec<&Path> = inputs_of.iter().map(PathBuf::as_path).collect();
    // Claimed before the work: a foreign folder or a second writer is refused at once.
    let claim = output::claim(out, "audit", &inputs_of)?;
    crate::raster::init_gdal();
    let inp = inputs::load(run)?;
    let tiles: BTreeMap<&str, &TileEntry> =
        inp.manifest.tiles.iter().map(|t| (t.id.as_str(), t)).collect();

    // The CFOG baseline on every tile (the third measurement). `reuse`: an unbounded search's
    // results, kept where the bounded search would return them unchanged.
    let correlate = |max_shift: f64, what: &str, reuse: Option<&[Shift]>| -> Result<Vec<Shift>> {
        let pb =
            if quiet { ProgressBar::hidden() } else { ProgressBar::new(inp.rows.len() as u64) };
        pb.set_style(ProgressStyle::with_template(&format!("audit: CFOG baseline{what} [{{bar:30}}] {{pos}}/{{len}} tiles ({{per_sec}}, eta {{eta}})")).unwrap().progress_chars("=> "));
        let v = inp
            .rows
            .par_iter()
            .progress_with(pb.clone())
            .enumerate()
            .map(|(i, r)| {
                if let Some(free) =
                    reuse.map(|v| v[i]).filter(|s| bounded_search_agrees(s, max_shift))
                {
                    return Ok(free);
                }
                let t = tiles[r.tile.as_str()];
                let scene = inp.manifest.scene(&t.scene).with_context(|| {
                    format!("tile '{}' names unknown scene '{}'", t.id, t.scene)
                })?;
                let moving = inp.labels.get(&r.tile).with_context(|| {
                    format!(
                        "'{}': no label for tile '{}'",
                        inp.labels_dir.labels_json().display(),
                        r.tile
                    )
                })?;
                baseline::tile_shift(
                    scene,
                    &inp.tiles.file(&t.path),
                    &inp.labels_dir.path().join(&moving.moving),
                    max_shift,
                )
            })
            .collect::<Result<_>>();
        pb.finish_and_clear();
        v
    };
    // The search radius, from the images alone: where an unbounded search is confident (peak
    // above its median), the displacements it finds set the range.
    let (max_shift, free) = match p.max_shift {
        Some(m) => (m, None),
        None => {
            let free = correlate(f64::INFINITY, " (range)", None)?;
            let mut peaks: Vec<f64> = free.iter().map(|s| s.peak).collect();
            peaks.sort_by(f64::total_cmp);
            let median = peaks[peaks.len() / 2];
            let mut a: Vec<f64> = free
                .iter()
                .filter(|s| s.peak >= median)
                .flat_map(|s| [s.dx.abs(), s.dy.abs()])
                .collect();
            a.sort_by(f64::total_cmp);
            (a[((a.len() as f64 * 0.95) as usize).min(a.len() - 1)] + 1.0, Some(free))
        }
    };
    let shifts = correlate(max_shift, "", free.as_deref())?;

    let mut tiles_audit: Vec<TileAudit> = inp
        .rows
        .iter()
        .zip(&shifts)
        .map(|(r, s)| TileAudit {
            id: r.tile.clone(),
            train: r.train(),
            ns: r.ns,
            label: r.label(),
            pred: r.pred(),
            base: [s.dx, s.dy],
            base_peak: s.peak,
            f_trace: r.f_trace,
            predicted_var: f64::NAN,
            score: f64::NAN,
        })
        .collect();
    let est = estimate_all(&mut tiles_audit, p.threshold)?;

    // Ranking: most suspicious first.
    let mut order: Vec<usize> = (0..tiles_audit.len()).collect();
    order.sort_by(|&a, &b| tiles_audit[b].score.total_cmp(&tiles_audit[a].score));
    let n_flagged = tiles_audit
        .iter()
        .filter(|t| t.score > p.threshold)
        .count()
        .max(p.top.min(tiles_audit.len()));

    // Truth, for reporting only.
    let heldout: Vec<usize> = (0..tiles_audit.len()).filter(|&i| !tiles_audit[i].train).collect();
    let truth_of = |t: &TileAudit| inp.truth.as_ref().and_then(|m| m.get(&t.id));
    let has_truth = inp.truth.is_some() && tiles_audit.iter().all(|t| truth_of(t).is_some());
    let rms = |v: &mut dyn Iterator<Item = f64>| {
        let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        (s / n.max(1) as f64).sqrt()
    };
    let (measured, measured_noise, auroc, auroc_residual, n_outliers) = if has_truth {
        let truth: Vec<&crate::artefacts::labels::TruthEntry> =
            tiles_audit.iter().map(|t| truth_of(t).unwrap()).collect();
        let measured = rms(&mut heldout
            .iter()
            .map(|&i| estimate::sq_per_axis(tiles_audit[i].pred, truth[i].displacement)));
        let noise = rms(&mut heldout
            .iter()
            .map(|&i| estimate::sq_per_axis(tiles_audit[i].label, truth[i].displacement)));
        let positive: Vec<bool> = truth.iter().map(|t| t.outlier).collect();
        let scores: Vec<f64> = tiles_audit.iter().map(|t| t.score).collect();
        let residual: Vec<f64> =
            tiles_audit.iter().map(|t| estimate::sq_per_axis(t.label, t.pred)).collect();
        let n_out = positive.iter().filter(|&&b| b).count();
        (
            Some(measured),
            Some(noise),
            score::auroc(&scores, &positive),
            score::auroc(&residual, &positive),
            Some(n_out),
        )
    } else {
        (None, None, None, None, None)
    };
    let calibration = calibration_bins(&tiles_audit, &heldout, 5, |i| {
        truth_of(&tiles_audit[i])
            .map(|t| estimate::sq_per_axis(tiles_audit[i].pred, t.displacement))
    });
    let paper: Vec<f64> = heldout
        .iter()
        .map(|&i| est.labels_inlier * tiles_audit[i].f_trace / 2.0)
        .filter(|v| v.is_finite())
        .collect();

    let summary = AuditSummary {
        out: out.to_path_buf(),
        n_tiles: tiles_audit.len(),
        n_heldout: heldout.len(),
        predicted_rmse_px: est.c.network_mse.sqrt(),
        measured_rmse_px: measured,
        paper_predicted_rmse_px: (paper.len() == heldout.len() && !paper.is_empty())
            .then(|| rms(&mut paper.iter().copied())),
        predicted_rmse_interval_px: est.interval,
        label_noise_rmse_px: est.c.var_labels.sqrt(),
        label_noise_inlier_rmse_px: est.labels_inlier.max(0.0).sqrt(),
        measured_label_noise_rmse_px: measured_noise,
        network_scale: est.c.beta_f,
        baseline_scale: est.c.beta_p,
        scaled: est.c.scaled,
        baseline_error_rmse_px: est.c.var_ep.sqrt(),
        model_floor_px2: est.model.floor,
        model_factor: est.model.factor,
        n_flagged,
        threshold: p.threshold,
        baseline_max_shift_px: max_shift,
        auroc,
        auroc_residual_only: auroc_residual,
        n_outliers_true: n_outliers,
        calibration,
        seconds: 0.0,
    };

    claim.build(|partial| {
        let dir = AuditDir::new(partial);
        write_csv(&dir.audit_csv(), &inp, &tiles_audit, &order, has_truth)?;
        write_geojson(&dir.flagged_geojson(), &inp, &tiles_audit, &order[..n_flagged])?;
        let mut s = summary.clone();
        s.seconds = start.elapsed().as_secs_f64();
        crate::artefacts::write_json(&dir.summary_json(), &s)?;
        Ok(())
    })?;
    let mut s = summary;
    s.seconds = start.elapsed().as_secs_f64();
    Ok(s)
}

struct Estimates {
    /// The calibrated triple collocation on the held-out tiles.
    c: Collocation,
    /// Bootstrap 5–95 % interval of the network's RMSE.
    interval: [f64; 2],
    /// σ̂² of the labels that are not flagged (what the score's noise model uses).
    labels_inlier: f64,
    /// Variance of the calibrated network estimate at a tile: floor + factor·σ̂²/N_S.
    model: NeighbourModel,
}

/// Fills in every tile's predicted error variance and score; the whole estimate is label-free.
fn estimate_all(t: &mut [TileAudit], threshold: f64) -> Result<Estimates> {
    let held: Vec<usize> = (0..t.len()).filter(|&i| !t[i].train).collect();
    if held.len() < 10 {
        bail!("audit needs held-out tiles (the network's error is estimated on tiles it did not train on); the run has {}: train with a validation fraction", held.len());
    }
    let cols = |t: &[TileAudit], ix: &[usize]| -> [Vec<[f64; 2]>; 3] {
        [
            ix.iter().map(|&i| t[i].label).collect(),
            ix.iter().map(|&i| t[i].pred).collect(),
            ix.iter().map(|&i| t[i].base).collect(),
        ]
    };
    let [y, f, p] = cols(t, &held);
    let c = estimate::collocate(&y, &f, &p);
    if !(c.network_mse.is_finite() && c.var_t.is_finite()) {
        bail!("audit: the error estimates are not finite (NaN predictions or labels?)");
    }
    let interval = estimate::bootstrap_rmse(&y, &f, &p, 200, 0);
    // Floors keep variances positive when an estimate comes out ≤ 0 by chance.
    let floor = 1e-4;
    let var_p = (c.var_ep / c.beta_p.powi(2)).max(floor);
    let var_f = (c.var_ef / c.beta_f.max(1e-3).powi(2)).max(floor);
    // Label noise without the gross errors: drop the flagged and re-estimate, a few times.
    let mut sigma2 = c.var_labels.max(floor);
    let mut model = NeighbourModel { floor: var_f, factor: 0.0 };
    for _ in 0..3 {
        // The calibrated network's error variance against the neighbour count, fitted to the
        // per-tile products of the calibrated instruments on held-out tiles.
        let x: Vec<f64> = held.iter().map(|&i| sigma2 / t[i].ns.max(1e-9)).collect();
        let z: Vec<f64> = held
            .iter()
            .map(|&i| {
                estimate::product(c.calibrated_f(t[i].pred), t[i].label, c.calibrated_p(t[i].base))
            })
            .collect();
        model = estimate::calibrate_mean(estimate::fit_nonneg(&x, &z), &x, var_f);
        for a in t.iter_mut() {
            let vf = model.at(sigma2 / a.ns.max(1e-9)).max(floor);
            // Truth estimated without the label: prior, calibrated network, calibrated baseline.
            let (fp, v) = score::combine(c.calibrated_f(a.pred), vf, c.calibrated_p(a.base), var_p);
            let (est, v) = score::combine(fp, v, c.mean_t, c.var_t.max(floor));
            a.score = score::label_score(a.label, est, v, sigma2);
            // The network's expected squared error here: with the label too unless it is flagged.
            let (est, v) = if a.score > threshold {
                (est, v)
            } else {
                score::combine(est, v, a.label, sigma2)
            };
            a.predicted_var = estimate::sq_per_axis(a.pred, est) + v;
        }
        let inliers: Vec<usize> =
            held.iter().copied().filter(|&i| t[i].score <= threshold).collect();
        if inliers.len() < 10 {
            break;
        }
        let [yi, fi, pi] = cols(t, &inliers);
        sigma2 = estimate::collocate(&yi, &fi, &pi).var_labels.max(floor);
    }
    // Per-tile values scaled so that their held-out mean is the collocation's estimate.
    let mean = held.iter().map(|&i| t[i].predicted_var).sum::<f64>() / held.len() as f64;
    if mean > 0.0 {
        t.iter_mut().for_each(|a| a.predicted_var *= c.network_mse / mean);
    }
    Ok(Estimates { c, interval, labels_inlier: sigma2, model })
}

/// Held-out tiles in `n` N_S quantile bins: predicted RMSE (and measured, with truth).
fn calibration_bins(
    t: &[TileAudit],
    held: &[usize],
    n: usize,
    measured: impl Fn(usize) -> Option<f64>,
) -> Vec<CalibrationBin> {
    let mut h = held.to_vec();
    h.sort_by(|&a, &b| t[a].ns.total_cmp(&t[b].ns));
    let n = n.min(h.len()).max(1);
    (0..n)
        .map(|k| {
            let part = &h[k * h.len() / n..(k + 1) * h.len() / n];
            let m: Option<Vec<f64>> = part.iter().map(|&i| measured(i)).collect();
            CalibrationBin {
                ns_min: t[part[0]].ns,
                ns_max: t[*part.last().unwrap()].ns,
                n: part.len(),
                predicted_rmse_px: (part.iter().map(|&i| t[i].predicted_var).sum::<f64>()
                    / part.len() as f64)
                    .sqrt(),
                measured_rmse_px: m.map(|v| (v.iter().sum::<f64>() / v.len() as f64).sqrt()),
            }
        })
        .collect()
}

/// A tile's centre in its scene's CRS, and in longitude/latitude when the scene has a CRS.
type Centre = ([f64; 2], Option<[f64; 2]>);

fn centres(inp: &inputs::RunInputs, ids: &[&str]) -> Result<Vec<Centre>> {
    let size = inp.manifest.params.tile_size as f64;
    let by_id: BTreeMap<&str, &TileEntry> =
        inp.manifest.tiles.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut to_ll: BTreeMap<&str, geo::ToLonLat> = BTreeMap::new();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let t = by_id[id];
        let scene = inp.manifest.scene(&t.scene).context("unknown scene")?;
        if !to_ll.contains_key(t.scene.as_str()) {
            to_ll.insert(
                t.scene.as_str(),
                geo::ToLonLat::new(&scene.grid.crs_wkt)
                    .with_context(|| format!("scene '{}'", t.scene))?,
            );
        }
        let c = geo::pixel_to_map(&t.geotransform, size / 2.0, size / 2.0);
        let ll = to_ll[t.scene.as_str()].apply(&[c])?.map(|v| v[0]);
        out.push((c, ll));
    }
    Ok(out)
}

fn write_csv(
    path: &Path,
    inp: &inputs::RunInputs,
    t: &[TileAudit],
    order: &[usize],
    has_truth: bool,
) -> Result<()> {
    let ids: Vec<&str> = order.iter().map(|&i| t[i].id.as_str()).collect();
    let at = centres(inp, &ids)?;
    let rows: Vec<AuditRow> = order
        .iter()
        .zip(&at)
        .enumerate()
        .map(|(rank, (&i, (c, ll)))| {
            let a = &t[i];
            let truth = has_truth.then(|| &inp.truth.as_ref().expect("has truth")[&a.id]);
            let err =
                |v: [f64; 2]| truth.map(|tr| estimate::sq_per_axis(v, tr.displacement).sqrt());
            AuditRow {
                tile: a.id.clone(),
                rank: rank + 1,
                score: a.score,
                residual_px: estimate::sq_per_axis(a.label, a.pred).sqrt(),
                ns: a.ns,
                split: if a.train { Split::Train } else { Split::Val },
                centre_x: c[0],
                centre_y: c[1],
                lon: ll.map(|v| v[0]),
                lat: ll.map(|v| v[1]),
                label_dx: a.label[0],
                label_dy: a.label[1],
                pred_dx: a.pred[0],
                pred_dy: a.pred[1],
                baseline_dx: a.base[0],
                baseline_dy: a.base[1],
                baseline_peak: a.base_peak,
                predicted_error_px: a.predicted_var.sqrt(),
                true_error_px: err(a.pred),
                label_error_px: err(a.label),
                outlier: truth.map(|tr| tr.outlier),
            }
        })
        .collect();
    write_audit_csv(path, &rows)
}

/// Footprints of the flagged tiles, in longitude/latitude (RFC 7946); tiles of a scene without
/// a CRS have a null geometry and their map coordinates in the properties.
fn write_geojson(
    path: &Path,
    inp: &inputs::RunInputs,
    t: &[TileAudit],
    flagged: &[usize],
) -> Result<()> {
    let size = inp.manifest.params.tile_size;
    let by_id: BTreeMap<&str, &TileEntry> =
        inp.manifest.tiles.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut features = Vec::new();
    for (rank, &i) in flagged.iter().enumerate() {
        let a = &t[i];
        let e = by_id[a.id.as_str()];
        let scene = inp.manifest.scene(&e.scene).context("unknown scene")?;
        let ring = geo::footprint(&e.geotransform, size);
        let geometry = match geo::ToLonLat::new(&scene.grid.crs_wkt)?.apply(&ring)? {
            Some(ll) => serde_json::json!({ "type": "Polygon", "coordinates": [ll] }),
            None => serde_json::Value::Null,
        };
        features.push(serde_json::json!({
            "type": "Feature",
            "geometry": geometry,
            "properties": {
                "tile": a.id, "rank": rank + 1, "score": a.score, "ns": a.ns,
                "label": a.label, "prediction": a.pred, "baseline": a.base,
                "footprint_map": ring,
            }
        }));
    }
    atomic::write_json(
        path,
        &serde_json::json!({ "type": "FeatureCollection", "features": features }),
    )
}
