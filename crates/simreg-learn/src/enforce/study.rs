//! The speed-up study (issue 8): held-out error against truth versus training steps for the
//! baseline and for similarity-enforced training with both signs, over several seeds; steps to
//! a fixed error, and the cost of an enforced step against a plain one. Truth is read only to
//! report the error, never for gradients.
use super::{make_pairs, similarity_term, Sign};
use crate::model::{Net, NetConfig};
use crate::train::{data, label_scale, loss, predict, rmse, split, tensors};
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simreg::artefacts::enforce::{
    EnforceArm, EnforceStudy, EnforceStudyDir, EnforceStudyParams, ARMS,
};
use simreg::artefacts::write_json;
use simreg::util::atomic;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Tensor};

/// The study's arms (`simreg::artefacts::enforce::ARMS`) and the sign of their pair term.
fn sign_of(arm: &str) -> Option<Option<Sign>> {
    match arm {
        "baseline" => Some(None),
        "plus_cos" => Some(Some(Sign::Plus)),
        "minus_cos" => Some(Some(Sign::Minus)),
        _ => None,
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var =
        if v.len() > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, var.sqrt())
}

/// Two-sided 95 % quantile of Student's t with `df` degrees of freedom (df ≥ 1).
fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    T.get(df.saturating_sub(1)).copied().unwrap_or(1.96)
}

/// 95 % confidence interval of the mean of `v` (null below two values).
fn ci95(v: &[f64]) -> Option<[f64; 2]> {
    if v.len() < 2 {
        return None;
    }
    let (m, s) = mean_std(v);
    let h = t95(v.len() - 1) * s / (v.len() as f64).sqrt();
    Some([m - h, m + h])
}

pub fn run(
    labels_dir: &Path,
    out: &Path,
    p: &EnforceStudyParams,
    quiet: bool,
) -> Result<EnforceStudy> {
    if p.seeds == 0
        || p.steps == 0
        || p.eval_every == 0
        || p.batch == 0
        || p.pairs_per_step == 0
        || p.pairs_per_step > p.batch
    {
        bail!("enforce study: seeds, steps, eval_every, batch ≥ 1 and 1 ≤ pairs_per_step ≤ batch");
    }
    if p.arms.is_empty() || p.arms.iter().any(|a| sign_of(a).is_none()) {
        bail!("enforce study: arms {:?}: choose one or more of {ARMS:?}", p.arms);
    }
    let device = crate::device::resolve(p.device)?;
    let d = data::load(labels_dir)?;
    let truth = data::load_truth(labels_dir)?.with_context(|| {
        format!(
            "labels '{}' have no truth.json: the study measures the error against truth",
            labels_dir.display()
        )
    })?;
    let sp = split(d.len(), 0.2, 0);
    let val: Vec<usize> = sp.val.iter().copied().take(p.val_tiles.max(1)).collect();
    let val_truth: Vec<[f64; 2]> =
        val.iter().map(|&i| truth.get(&d.ids[i]).copied().unwrap_or([f64::NAN; 2])).collect();
    let scale = label_scale(&d, &sp.train);
    let tens = tensors(&d, scale, device);
    let cfg = NetConfig {
        reference_bands: d.reference_bands,
        moving_bands: d.moving_bands,
        tile_size: d.target.tile_size,
        centre_offset: d.target.centre_offset,
        centre_size: d.target.centre_size,
        width: p.width,
        depth: p.depth,
        scale_px: scale,
        corr_radius: p.corr_radius,
    };
    cfg.check()?;
    let mut csv = String::from("arm,seed,step,val_rmse_truth_px\n");
    let mut arms = BTreeMap::new();
    let mut n_params = 0;
    for (name, sign) in p.arms.iter().map(|a| (a.as_str(), sign_of(a).expect("checked above"))) {
        let (mut curves, mut reached, mut secs, mut steps_run) =
            (Vec::new(), Vec::new(), 0.0, 0usize);
        for seed in 0..p.seeds {
            tch::manual_seed(seed as i64);
            let vs = nn::VarStore::new(device);
            let net = Net::new(&vs.root(), cfg.clone());
            let params = vs.trainable_variables();
            n_params = params.iter().map(|t| t.numel() as i64).sum();
            let mut opt = nn::Adam::default().build(&vs, p.lr)?;
            // The same batches for every arm (they depend on the seed only).
            let mut rng = ChaCha8Rng::seed_from_u64(seed as u64 ^ 0xE7F0);
            let eval = |net: &Net| {
                rmse(&predict(net, &tens.reference, &tens.moving, &val, 64), &val_truth)
            };
            let mut curve = vec![(0usize, eval(&net))];
            for step in 1..=p.steps {
                let idx: Vec<i64> = (0..p.batch)
                    .map(|_| sp.train[rng.gen_range(0..sp.train.len())] as i64)
                    .collect();
                let i = Tensor::from_slice(&idx).to(device);
                let t0 = Instant::now();
                let (r, m) = (tens.reference.index_select(0, &i), tens.moving.index_select(0, &i));
                let dense = net.forward(&r, &m);
                let plain =
                    loss(&dense, &tens.field.index_select(0, &i), &tens.label.index_select(0, &i));
                let loss = match sign {
                    Some(sign) => {
                        let k = p.pairs_per_step as i64;
                        let [a, b] = make_pairs(p.pairs, &r.narrow(0, 0, k), &m.narrow(0, 0, k));
                        plain + similarity_term(&net, &params, &a, &b, p.lambda, sign)
                    }
                    None => plain,
                };
                let v = loss.double_value(&[]);
                if !v.is_finite() {
                    bail!("enforce study: arm {name}, seed {seed}: loss diverged at step {step}");
                }
                opt.backward_step(&loss);
                secs += t0.elapsed().as_secs_f64();
                steps_run += 1;
                if step % p.eval_every == 0 || step == p.steps {
                    curve.push((step, eval(&net)));
                }
            }
            for &(step, e) in &curve {
                let _ = writeln!(csv, "{name},{seed},{step},{e:.5}");
            }
            reached.push(curve.iter().find(|c| c.1 <= p.threshold_px).map(|c| c.0));
            if !quiet {
                eprintln!("enforce study: {name:9} seed {seed:2}: final held-out error {:.3} px, threshold {} px at step {:?}", curve.last().expect("≥ 1").1, p.threshold_px, reached.last().expect("pushed"));
            }
            curves.push(curve);
        }
        let finals: Vec<f64> = curves.iter().map(|c| c.last().expect("≥ 1").1).collect();
        let (fm, fs) = mean_std(&finals);
        let hit: Vec<f64> = reached.iter().flatten().map(|&s| s as f64).collect();
        let (sm, ss) = if hit.is_empty() {
            (None, None)
        } else {
            let (m, s) = mean_std(&hit);
            (Some(m), Some(s))
        };
        let curve = (0..curves[0].len())
            .map(|k| {
                let v: Vec<f64> = curves.iter().map(|c| c[k].1).collect();
                let (m, s) = mean_std(&v);
                (curves[0][k].0, m, s)
            })
            .collect();
        arms.insert(
            name.to_string(),
            EnforceArm {
                seeds: p.seeds,
                reached: hit.len(),
                steps_to_threshold: reached,
                steps_mean: sm,
                steps_std: ss,
                steps_ci95: ci95(&hit),
                final_error_mean: fm,
                final_error_std: fs,
                final_error_ci95: ci95(&finals),
                curve,
                seconds_per_step: secs / steps_run as f64,
            },
        );
    }
    let ratio = match (arms.get("minus_cos"), arms.get("baseline")) {
        (Some(m), Some(b)) => Some(m.seconds_per_step / b.seconds_per_step),
        _ => None,
    };
    let study = EnforceStudy {
        params: p.clone(),
        labels: labels_dir.display().to_string(),
        n_train: sp.train.len(),
        n_val_evaluated: val.len(),
        params_count: n_params,
        arms,
        step_cost_ratio: ratio,
    };
    atomic::create_dir(out)?;
    // Its two files go into the run directory itself: a lock of their own, not the run's.
    let _lock = simreg::util::output::lock(&out.join("enforce_study"))?;
    let dir = EnforceStudyDir::new(out);
    atomic::write_bytes(&dir.curves_csv(), csv.as_bytes())?;
    write_json(&dir.study_json(), &study)?;
    Ok(study)
}
