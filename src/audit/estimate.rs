//! Label-free error estimates by triple collocation with calibration (Stoffelen 1998; McColl
//! et al. 2014), the method remote sensing uses to rate three instruments without ground truth.
//!
//! Three measurements of each tile's displacement t: the label y = t + ε (unbiased: label
//! noise does not depend on the image), the network f = α_f + β_f·t + e_f, and the CFOG
//! baseline p = α_p + β_p·t + e_p (`align::cfog`). Both image-based estimates shrink towards
//! zero on hard tiles (β < 1: measured 0.66 and 0.90 on the σ = 4 run), which a plain triple
//! collocation would mistake for correlated errors; the scales absorb it. On held-out tiles ε
//! is independent of f and p, and e_f, e_p are taken as independent of t and of each other:
//!   Var t = C_yf·C_yp / C_fp,   β_f = C_yf / Var t,   β_p = C_yp / Var t,
//!   E (f − t)² = C_ff − 2·C_yf + Var t + (mean f − mean y)²,
//! with C the covariances over the held-out tiles. No term needs the truth, and the sample
//! variance of the realised label noise (C_yy) does not enter the network's error.
//!
//! What independence of e_f and e_p costs when it fails: to first order the estimate of
//! E (f − t)² is low by Cov(e_f, e_p)/(β_f·β_p). A baseline that fails on many tiles, in the
//! same places as the network, makes that large: phase correlation of gradient magnitudes
//! (errors > 2 px on a third of the sweep's tiles) left ≈ 0.2 px² and a ratio of 0.75 at
//! σ = 1; CFOG (7 %) brings every σ of the sweep within ×1.25 (BENCHMARKS.md).
//!
//! Everything is per axis (px²), both axes pooled, as the RMSE figures elsewhere.

/// |u − v|² / 2: the per-axis squared difference of two displacements.
pub fn sq_per_axis(u: [f64; 2], v: [f64; 2]) -> f64 {
    product(u, v, v)
}

/// (u − v)·(u − w) / 2: the per-axis triple-collocation product for u's error.
pub fn product(u: [f64; 2], v: [f64; 2], w: [f64; 2]) -> f64 {
    ((u[0] - v[0]) * (u[0] - w[0]) + (u[1] - v[1]) * (u[1] - w[1])) / 2.0
}

/// The calibrated three-instrument model fitted on a set of tiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Collocation {
    /// Mean displacement per axis (the labels' mean: they are unbiased).
    pub mean_t: [f64; 2],
    pub var_t: f64,
    pub beta_f: f64,
    pub beta_p: f64,
    /// Per-axis means of f and p (α = mean − β·mean_t).
    pub mean_f: [f64; 2],
    pub mean_p: [f64; 2],
    /// Error variances around the calibrated lines, and of the labels.
    pub var_ef: f64,
    pub var_ep: f64,
    pub var_labels: f64,
    /// E (f − t)² per axis: the network's mean squared error against the truth.
    pub network_mse: f64,
    /// False when a pair of the three did not covary clearly (e.g. a network that learned
    /// nothing): β_p = 1 is then assumed.
    pub scaled: bool,
    pub n: usize,
}

impl Collocation {
    /// The network's estimate of t, calibrated: (f − α_f)/β_f.
    pub fn calibrated_f(&self, f: [f64; 2]) -> [f64; 2] {
        let b = self.beta_f.max(1e-3);
        [0, 1].map(|a| self.mean_t[a] + (f[a] - self.mean_f[a]) / b)
    }
    pub fn calibrated_p(&self, p: [f64; 2]) -> [f64; 2] {
        let b = self.beta_p.max(1e-3);
        [0, 1].map(|a| self.mean_t[a] + (p[a] - self.mean_p[a]) / b)
    }
}

fn means(v: &[[f64; 2]]) -> [f64; 2] {
    let n = v.len().max(1) as f64;
    [0, 1].map(|a| v.iter().map(|x| x[a]).sum::<f64>() / n)
}

/// Pooled per-axis covariance of two measurement sets.
fn cov(u: &[[f64; 2]], v: &[[f64; 2]]) -> f64 {
    let (mu, mv) = (means(u), means(v));
    u.iter()
        .zip(v)
        .map(|(a, b)| (a[0] - mu[0]) * (b[0] - mv[0]) + (a[1] - mu[1]) * (b[1] - mv[1]))
        .sum::<f64>()
        / (2 * u.len().max(1)) as f64
}

/// Fits the model on tiles (label y, network f, baseline p), all held out from training.
pub fn collocate(y: &[[f64; 2]], f: &[[f64; 2]], p: &[[f64; 2]]) -> Collocation {
    let (cyf, cyp, cfp) = (cov(y, f), cov(y, p), cov(f, p));
    let (cff, cpp, cyy) = (cov(f, f), cov(p, p), cov(y, y));
    // Identifiable only when all three pairs covary clearly (correlation above twice its
    // standard error under independence); otherwise — typically a network that learned nothing —
    // fall back to an unscaled baseline (β_p = 1: Var t = C_yp).
    let min_r = 2.0 / ((2 * y.len()).max(1) as f64).sqrt();
    let r = |c: f64, a: f64, b: f64| if a > 0.0 && b > 0.0 { c / (a * b).sqrt() } else { 0.0 };
    let scaled = r(cyf, cyy, cff) > min_r && r(cyp, cyy, cpp) > min_r && r(cfp, cff, cpp) > min_r;
    let var_t = if scaled { cyf * cyp / cfp } else { cyp.max(1e-9) };
    let (beta_f, beta_p) = (cyf / var_t, if scaled { cyp / var_t } else { 1.0 });
    let (mean_t, mean_f, mean_p) = (means(y), means(f), means(p));
    let bias2 = ((mean_f[0] - mean_t[0]).powi(2) + (mean_f[1] - mean_t[1]).powi(2)) / 2.0;
    Collocation {
        mean_t,
        var_t,
        beta_f,
        beta_p,
        mean_f,
        mean_p,
        var_ef: (cff - beta_f * beta_f * var_t).max(0.0),
        var_ep: (cpp - beta_p * beta_p * var_t).max(0.0),
        var_labels: (cyy - var_t).max(0.0),
        network_mse: (cff - 2.0 * cyf + var_t + bias2).max(0.0),
        scaled,
        n: y.len(),
    }
}

/// Bootstrap 5 % and 95 % quantiles of the network's RMSE estimate (resampling tiles).
pub fn bootstrap_rmse(
    y: &[[f64; 2]],
    f: &[[f64; 2]],
    p: &[[f64; 2]],
    reps: usize,
    seed: u64,
) -> [f64; 2] {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = y.len();
    let mut r: Vec<f64> = (0..reps)
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.gen_range(0..n)).collect();
            let pick = |v: &[[f64; 2]]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
            collocate(&pick(y), &pick(f), &pick(p)).network_mse.sqrt()
        })
        .collect();
    r.sort_by(f64::total_cmp);
    let q = |x: f64| r[((x * (reps - 1) as f64).round() as usize).min(reps - 1)];
    [q(0.05), q(0.95)]
}

/// E e² = a + b·x with x = σ̂²/N_S, a, b ≥ 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NeighbourModel {
    pub floor: f64,
    pub factor: f64,
}

impl NeighbourModel {
    pub fn at(&self, x: f64) -> f64 {
        self.floor + self.factor * x
    }
}

/// Least squares of targets z on x with non-negative intercept and slope; an unconstrained
/// solution outside the quadrant falls back to the best one-parameter fit on its edge.
pub fn fit_nonneg(x: &[f64], z: &[f64]) -> NeighbourModel {
    let n = x.len().max(1) as f64;
    let (mx, mz) = (x.iter().sum::<f64>() / n, z.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxz: f64 = x.iter().zip(z).map(|(a, b)| (a - mx) * (b - mz)).sum();
    let b = if sxx > 0.0 { sxz / sxx } else { 0.0 };
    let a = mz - b * mx;
    if a >= 0.0 && b >= 0.0 {
        return NeighbourModel { floor: a, factor: b };
    }
    // Edges: b = 0 (a = mean z) or a = 0 (b = Σxz / Σx²); keep the lower squared error.
    let sse =
        |m: &NeighbourModel| x.iter().zip(z).map(|(&xi, &zi)| (zi - m.at(xi)).powi(2)).sum::<f64>();
    let only_a = NeighbourModel { floor: mz.max(0.0), factor: 0.0 };
    let x2: f64 = x.iter().map(|v| v * v).sum();
    let only_b = NeighbourModel {
        floor: 0.0,
        factor: if x2 > 0.0 {
            (x.iter().zip(z).map(|(a, b)| a * b).sum::<f64>() / x2).max(0.0)
        } else {
            0.0
        },
    };
    if sse(&only_a) <= sse(&only_b) {
        only_a
    } else {
        only_b
    }
}

/// The model rescaled so that its mean over `x` equals `target` (the set's triple-collocation
/// estimate, which the fit's mean equals anyway unless a constraint was active).
pub fn calibrate_mean(m: NeighbourModel, x: &[f64], target: f64) -> NeighbourModel {
    let mean = x.iter().map(|&v| m.at(v)).sum::<f64>() / x.len().max(1) as f64;
    if mean > 0.0 && target > 0.0 {
        NeighbourModel { floor: m.floor * target / mean, factor: m.factor * target / mean }
    } else {
        NeighbourModel { floor: target.max(0.0), factor: 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    type Draw = (Vec<[f64; 2]>, Vec<[f64; 2]>, Vec<[f64; 2]>, Vec<[f64; 2]>);
    /// Truth, and labels, network and baseline with independent errors of known σ.
    fn draw(n: usize, s_label: f64, s_net: f64, s_base: f64, seed: u64) -> Draw {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let g = |s: f64, rng: &mut ChaCha8Rng| Normal::new(0.0, s).unwrap().sample(rng);
        let (mut ts, mut y, mut f, mut p) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let t = [g(3.0, &mut rng), g(3.0, &mut rng)];
            ts.push(t);
            y.push([t[0] + g(s_label, &mut rng), t[1] + g(s_label, &mut rng)]);
            f.push([t[0] + g(s_net, &mut rng), t[1] + g(s_net, &mut rng)]);
            p.push([t[0] + g(s_base, &mut rng), t[1] + g(s_base, &mut rng)]);
        }
        (ts, y, f, p)
    }

    /// Shrinks the network and baseline towards zero by β_f, β_p and offsets them.
    fn shrink(v: &mut [[f64; 2]], t: &[[f64; 2]], noisy: &[[f64; 2]], beta: f64, offset: f64) {
        for ((x, t), n) in v.iter_mut().zip(t).zip(noisy) {
            *x = [0, 1].map(|a| offset + beta * t[a] + (n[a] - t[a]));
        }
    }

    #[test]
    fn calibrated_collocation_recovers_scales_and_the_network_error() {
        let (t, y, f0, p0) = draw(200_000, 4.0, 1.0, 2.0, 1);
        let (mut f, mut p) = (f0.clone(), p0.clone());
        shrink(&mut f, &t, &f0, 0.6, 0.3);
        shrink(&mut p, &t, &p0, 0.8, 0.0);
        let c = collocate(&y, &f, &p);
        assert!(c.scaled);
        assert!((c.var_t - 9.0).abs() < 0.2, "{c:?}");
        assert!((c.beta_f - 0.6).abs() < 0.01 && (c.beta_p - 0.8).abs() < 0.01, "{c:?}");
        assert!((c.var_labels - 16.0).abs() < 0.4 && (c.var_ef - 1.0).abs() < 0.1, "{c:?}");
        // E (f − t)² = (β − 1)²·Var t + Var e_f + offset² = 0.16·9 + 1 + 0.09.
        let measured = f
            .iter()
            .zip(&t)
            .map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)) / 2.0)
            .sum::<f64>()
            / t.len() as f64;
        assert!(
            (c.network_mse - measured).abs() < 0.05 * measured,
            "{} vs {measured}",
            c.network_mse
        );
        assert!((c.network_mse - 2.53).abs() < 0.1);
        // A network that predicts a constant: not identifiable, the unscaled fallback.
        let flat: Vec<[f64; 2]> = (0..t.len()).map(|i| [0.1 * (i % 3) as f64, 0.0]).collect();
        let u = collocate(&y, &flat, &p);
        assert!(!u.scaled && (u.var_t - 0.8 * 9.0).abs() < 0.3, "{u:?}");
        let back = c.calibrated_f(f[0]);
        assert!((back[0] - (t[0][0] + (f0[0][0] - t[0][0]) / 0.6)).abs() < 0.1, "{back:?}");
    }

    #[test]
    fn realised_label_noise_does_not_enter_the_network_estimate() {
        // Few tiles, large label noise (σ² = 64 against a network MSE of 2.25). Even knowing
        // σ exactly, residual² − σ² scatters with the realised noise; the collocation does not
        // contain the realised noise variance and scatters far less.
        let (mut ours, mut naive) = (vec![], vec![]);
        for seed in 0..40 {
            let (_, y, f, p) = draw(400, 8.0, 1.5, 1.0, seed);
            ours.push(collocate(&y, &f, &p).network_mse / 2.25 - 1.0);
            let resid = y
                .iter()
                .zip(&f)
                .map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)) / 2.0)
                .sum::<f64>()
                / y.len() as f64;
            naive.push((resid - 64.0) / 2.25 - 1.0);
        }
        let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
        assert!(
            rms(&ours) < 0.5 * rms(&naive),
            "collocation {:.3}, residual − σ² {:.3}",
            rms(&ours),
            rms(&naive)
        );
        assert!(rms(&ours) < 0.35, "{}", rms(&ours));
        let (_, y, f, p) = draw(400, 8.0, 1.5, 1.0, 99);
        let [lo, hi] = bootstrap_rmse(&y, &f, &p, 100, 0);
        assert!(lo < hi && lo < 1.5 * 1.3 && hi > 1.5 / 1.3, "[{lo}, {hi}]");
    }

    #[test]
    fn nonneg_fit_recovers_a_line_and_respects_the_quadrant() {
        let x: Vec<f64> = (0..100).map(|i| i as f64 / 10.0).collect();
        let z: Vec<f64> = x.iter().map(|v| 0.5 + 2.0 * v).collect();
        let m = fit_nonneg(&x, &z);
        assert!((m.floor - 0.5).abs() < 1e-9 && (m.factor - 2.0).abs() < 1e-9, "{m:?}");
        // A falling trend: the slope is clamped to 0 and the floor is the mean.
        let z: Vec<f64> = x.iter().map(|v| 5.0 - 0.3 * v).collect();
        let m = fit_nonneg(&x, &z);
        assert_eq!(m.factor, 0.0);
        assert!((m.floor - z.iter().sum::<f64>() / 100.0).abs() < 1e-9);
        // Steep line through a negative intercept: the floor is clamped to 0.
        let z: Vec<f64> = x.iter().map(|v| -1.0 + 3.0 * v).collect();
        let m = fit_nonneg(&x, &z);
        assert_eq!(m.floor, 0.0);
        assert!(m.factor > 2.5);
        let c = calibrate_mean(m, &x, 10.0);
        let mean = x.iter().map(|&v| c.at(v)).sum::<f64>() / 100.0;
        assert!((mean - 10.0).abs() < 1e-9);
    }
}
