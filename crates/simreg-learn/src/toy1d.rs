//! The paper's 1-D toy problem (../shared/docs/paper.md §5, acceptance check 8 of §7).
//!
//! α uniform on [0, 1), input x = (cos 2πα, sin 2πα) (a circle: no boundary), target
//! sin(2πfα). An MLP 2 → 64 → (64)×5 → 1 with ReLU (7 linear layers, p = 21,057) is trained with
//! the L1 loss and Adam; then N_S(x_i) = Σ_j k^C(x_i, x_j) of every training sample, in linear
//! time (two passes over the per-sample Jacobians), is compared with the curvature of the target,
//! |y″|/(1 + y′²)^{3/2}, and across frequencies. The paper's claim: fewer neighbours where the
//! function bends more, and at higher frequency.
//!
//! Everything random (α, the initialisation, the batch order) comes from seeded ChaCha streams,
//! not from libtorch's global generator: a run depends on (f, seed) only, also when several run
//! at once in one process.
use crate::similarity::jacobian::{self, Recorder};
use crate::similarity::kernel::{self, NsAccumulator};
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simreg::artefacts::toy1d::{Toy1dDir, Toy1dFrequency, Toy1dParams, Toy1dSummary};
use simreg::util::{atomic, output};
use std::f64::consts::PI;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// Hidden width and layer widths of the paper's MLP.
pub const WIDTH: i64 = 64;
pub const LAYERS: [(i64, i64); 7] = [
    (2, WIDTH),
    (WIDTH, WIDTH),
    (WIDTH, WIDTH),
    (WIDTH, WIDTH),
    (WIDTH, WIDTH),
    (WIDTH, WIDTH),
    (WIDTH, 1),
];
/// Samples per Jacobian chunk in the N_S passes (bounds memory: chunk × p floats).
const CHUNK: usize = 128;

/// The MLP, ReLU between linear layers.
pub struct Mlp {
    pub layers: Vec<nn::Linear>,
}

impl Mlp {
    /// PyTorch's default initialisation (weights and biases uniform in ±1/√fan_in), drawn from
    /// `rng`.
    pub fn new(vs: &nn::Path, rng: &mut ChaCha8Rng) -> Mlp {
        let layers: Vec<nn::Linear> = LAYERS
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| nn::linear(vs / format!("l{i}"), a, b, Default::default()))
            .collect();
        tch::no_grad(|| {
            for l in &layers {
                let bound = 1.0 / (l.ws.size()[1] as f64).sqrt();
                for t in std::iter::once(&l.ws).chain(l.bs.as_ref()) {
                    let v: Vec<f32> =
                        (0..t.numel()).map(|_| rng.gen_range(-bound..bound) as f32).collect();
                    let mut t = t.shallow_clone();
                    t.copy_(
                        &Tensor::from_slice(&v).view(t.size().as_slice()).to_device(t.device()),
                    );
                }
            }
        });
        Mlp { layers }
    }

    /// f(x), (B, 1), recording every linear layer in `rec` when given.
    pub fn forward(&self, x: &Tensor, mut rec: Option<&mut Recorder>) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = match rec.as_deref_mut() {
                Some(r) => r.linear(l, &h),
                None => nn::Module::forward(l, &h),
            };
            if i + 1 < self.layers.len() {
                h = h.relu();
            }
        }
        h
    }

    pub fn params(&self) -> i64 {
        self.layers
            .iter()
            .map(|l| l.ws.numel() as i64 + l.bs.as_ref().map_or(0, |b| b.numel() as i64))
            .sum()
    }
}

/// n values of α uniform on [0, 1), sorted (as the reference code stores them).
pub fn alphas(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7011_1D00_A1FA);
    let mut a: Vec<f64> = (0..n).map(|_| rng.gen::<f64>()).collect();
    a.sort_by(f64::total_cmp);
    a
}

/// The target sin(2πfα).
pub fn target(f: u32, alpha: f64) -> f64 {
    (2.0 * PI * f as f64 * alpha).sin()
}

/// Curvature of the target's graph at α: |y″| / (1 + y′²)^{3/2}.
pub fn curvature(f: u32, alpha: f64) -> f64 {
    let w = 2.0 * PI * f as f64;
    let (d1, d2) = (w * (w * alpha).cos(), -w * w * (w * alpha).sin());
    d2.abs() / (1.0 + d1 * d1).powf(1.5)
}

/// Pearson correlation; None when either series is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// One training run and its per-sample statistics.
pub struct ToyRun {
    pub f: u32,
    pub seed: u64,
    pub alpha: Vec<f64>,
    pub ns: Vec<f64>,
    pub curvature: Vec<f64>,
    pub pred: Vec<f64>,
    pub target: Vec<f64>,
    /// corr(N_S, log(1 + curvature)).
    pub corr: Option<f64>,
    pub mae: f64,
    /// Mean L1 loss over the last epoch's batches.
    pub last_epoch_loss: f64,
    pub params: i64,
    pub seconds: f64,
}

impl ToyRun {
    pub fn ns_mean(&self) -> f64 {
        self.ns.iter().sum::<f64>() / self.ns.len() as f64
    }
}

/// Inputs (n, 2) and targets (n, 1), f32.
fn tensors(alpha: &[f64], f: u32) -> (Tensor, Tensor) {
    let x: Vec<f32> = alpha
        .iter()
        .flat_map(|a| [(2.0 * PI * a).cos() as f32, (2.0 * PI * a).sin() as f32])
        .collect();
    let y: Vec<f32> = alpha.iter().map(|&a| target(f, a) as f32).collect();
    let n = alpha.len() as i64;
    (Tensor::from_slice(&x).view([n, 2]), Tensor::from_slice(&y).view([n, 1]))
}

/// Trains the MLP on sin(2πfα) and computes N_S of every training sample.
pub fn run_one(f: u32, seed: u64, p: &Toy1dParams) -> Result<ToyRun> {
    let t0 = Instant::now();
    let alpha = alphas(p.n, seed);
    let (x, y) = tensors(&alpha, f);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut init_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1417_0000);
    let net = Mlp::new(&vs.root(), &mut init_rng);
    let mut opt = nn::Adam::default().build(&vs, p.lr)?;
    let mut order_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0BDE_5000 ^ ((f as u64) << 32));
    let mut perm: Vec<i64> = (0..p.n as i64).collect();
    let mut last_epoch_loss = f64::NAN;
    for epoch in 0..p.epochs {
        perm.shuffle(&mut order_rng);
        let idx = Tensor::from_slice(&perm);
        let (mut sum, mut steps) = (Tensor::zeros([], (Kind::Float, Device::Cpu)), 0);
        for start in (0..p.n).step_by(p.batch) {
            let b = idx.narrow(0, start as i64, p.batch.min(p.n - start) as i64);
            let loss = (net.forward(&x.index_select(0, &b), None) - y.index_select(0, &b))
                .abs()
                .mean(Kind::Float);
            opt.backward_step(&loss);
            sum += loss.detach();
            steps += 1;
        }
        last_epoch_loss = sum.double_value(&[]) / steps as f64;
        if !last_epoch_loss.is_finite() {
            bail!("toy1d: f = {f}, seed {seed}: the training loss is not finite at epoch {} (lower lr)", epoch + 1);
        }
    }
    let (ns, pred) = neighbour_counts(&net, &x)?;
    let target: Vec<f64> = alpha.iter().map(|&a| target(f, a)).collect();
    let curv: Vec<f64> = alpha.iter().map(|&a| curvature(f, a)).collect();
    let log_curv: Vec<f64> = curv.iter().map(|c| c.ln_1p()).collect();
    let mae = pred.iter().zip(&target).map(|(a, b)| (a - b).abs()).sum::<f64>() / p.n as f64;
    Ok(ToyRun {
        f,
        seed,
        corr: pearson(&ns, &log_curv),
        alpha,
        ns,
        curvature: curv,
        pred,
        target,
        mae,
        last_epoch_loss,
        params: net.params(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// N_S(x_i) over S = all of `x` (linear time: S_A = Σ_j A_j in pass 1, ⟨A_i, S_A⟩ in pass 2,
/// Jacobians recomputed per chunk) and the predictions f(x_i).
pub fn neighbour_counts(net: &Mlp, x: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = x.size()[0];
    let chunks: Vec<(i64, i64)> =
        (0..n).step_by(CHUNK).map(|s| (s, (CHUNK as i64).min(n - s))).collect();
    let jac = |s: i64, len: i64| -> Result<(Tensor, Tensor)> {
        let mut rec = Recorder::default();
        let f = net.forward(&x.narrow(0, s, len), Some(&mut rec));
        let gt = jacobian::per_sample(&f, &rec)?;
        Ok((kernel::polar(&gt).0, f.detach().to_kind(Kind::Double)))
    };
    let mut acc = NsAccumulator::new(1, net.params(), Device::Cpu);
    for &(s, len) in &chunks {
        acc.add(&jac(s, len)?.0);
    }
    let (mut ns, mut pred) = (Vec::with_capacity(n as usize), Vec::with_capacity(n as usize));
    for &(s, len) in &chunks {
        let (a, f) = jac(s, len)?;
        ns.extend(Vec::<f64>::try_from(acc.ns(&a))?);
        pred.extend(Vec::<f64>::try_from(f.view([-1]))?);
    }
    Ok((ns, pred))
}

/// Every (frequency, seed) run, in increasing f then in the order of the seeds, and the summary
/// (its `out` left empty). `progress` sees each finished run.
pub fn experiment(
    p: &Toy1dParams,
    progress: &mut dyn FnMut(&ToyRun),
) -> Result<(Toy1dSummary, Vec<ToyRun>)> {
    p.check()?;
    let t0 = Instant::now();
    let mut freqs = p.frequencies.clone();
    freqs.sort_unstable();
    let mut runs = Vec::with_capacity(freqs.len() * p.seeds.len());
    for &f in &freqs {
        for &seed in &p.seeds {
            let r = run_one(f, seed, p)?;
            progress(&r);
            runs.push(r);
        }
    }
    let mut per_f = Vec::with_capacity(freqs.len());
    for &f in &freqs {
        let rs: Vec<&ToyRun> = runs.iter().filter(|r| r.f == f).collect();
        let ns_mean_per_seed: Vec<f64> = rs.iter().map(|r| r.ns_mean()).collect();
        let corr_per_seed: Vec<Option<f64>> = rs.iter().map(|r| r.corr).collect();
        let defined: Vec<f64> = corr_per_seed.iter().flatten().copied().collect();
        let mae_per_seed: Vec<f64> = rs.iter().map(|r| r.mae).collect();
        let all_ns = rs.iter().flat_map(|r| r.ns.iter().copied());
        per_f.push(Toy1dFrequency {
            f,
            ns_mean: mean(&ns_mean_per_seed),
            ns_min: all_ns.clone().fold(f64::INFINITY, f64::min),
            ns_max: all_ns.fold(f64::NEG_INFINITY, f64::max),
            ns_mean_per_seed,
            corr_mean: (!defined.is_empty()).then(|| mean(&defined)),
            corr_per_seed,
            mae: mean(&mae_per_seed),
            mae_per_seed,
        });
    }
    let ns_strictly_decreasing =
        (per_f.len() >= 2).then(|| per_f.windows(2).all(|w| w[1].ns_mean < w[0].ns_mean));
    let low: Vec<&Toy1dFrequency> = per_f.iter().filter(|t| t.f <= 2).collect();
    let corr_below_minus_half_for_f_le_2 =
        (!low.is_empty()).then(|| low.iter().all(|t| t.corr_mean.is_some_and(|c| c < -0.5)));
    let seconds = t0.elapsed().as_secs_f64();
    let summary = Toy1dSummary {
        out: Default::default(),
        settings: p.clone(),
        params: runs.first().map_or(0, |r| r.params),
        frequencies: per_f,
        ns_strictly_decreasing,
        corr_below_minus_half_for_f_le_2,
        seconds_per_run: runs.iter().map(|r| r.seconds).sum::<f64>() / runs.len().max(1) as f64,
        seconds,
    };
    Ok((summary, runs))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// `simreg-learn toy1d`: runs the experiment and writes `out/summary.json` and
/// `out/samples.csv` (built in `out.partial`, swapped in when complete).
pub fn run(out: &Path, p: &Toy1dParams, quiet: bool) -> Result<Toy1dSummary> {
    p.check()?;
    output::build_dir(out, "toy1d", &[], |dir| {
        let (mut summary, runs) = experiment(p, &mut |r| {
            if !quiet {
                let c = r.corr.map_or("n/a".into(), |c| format!("{c:+.2}"));
                eprintln!("toy1d: f = {}, seed {}: N_S mean {:.1}, corr(N_S, log(1+curvature)) {c}, MAE {:.4} ({:.1} s)", r.f, r.seed, r.ns_mean(), r.mae, r.seconds);
            }
        })?;
        summary.out = out.to_path_buf();
        let mut csv = String::from("f,seed,alpha,ns,curvature,pred,target\n");
        for r in &runs {
            for i in 0..r.alpha.len() {
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{},{}",
                    r.f, r.seed, r.alpha[i], r.ns[i], r.curvature[i], r.pred[i], r.target[i]
                );
            }
        }
        let dir = Toy1dDir::new(dir);
        atomic::write_bytes(&dir.samples_csv(), csv.as_bytes())?;
        simreg::artefacts::write_json(&dir.summary_json(), &summary)?;
        Ok(summary)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mlp_has_the_papers_parameter_count_and_its_jacobian_matches_the_explicit_loop() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Mlp::new(&vs.root(), &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(net.params(), 21_057);
        let (x, _) = tensors(&alphas(6, 3), 1);
        let mut rec = Recorder::default();
        let f = net.forward(&x, Some(&mut rec));
        assert_eq!(rec.params(), 21_057, "every layer is recorded");
        // The loop first: per_sample consumes the graph.
        let slow = jacobian::explicit_loop(&f, &rec);
        let fast = jacobian::per_sample(&f, &rec).unwrap();
        assert_eq!(fast.size(), [6, 1, 21_057]);
        assert!(jacobian::max_rel_diff(&fast, &slow) <= 1e-5);
    }

    #[test]
    fn linear_ns_equals_the_pairwise_sum_on_the_toy_network() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Mlp::new(&vs.root(), &mut ChaCha8Rng::seed_from_u64(2));
        // More samples than one chunk, so both passes stream.
        let (x, _) = tensors(&alphas(CHUNK + 37, 4), 1);
        let (ns, pred) = neighbour_counts(&net, &x).unwrap();
        let mut rec = Recorder::default();
        let f = net.forward(&x, Some(&mut rec));
        let (a, _) = kernel::polar(&jacobian::per_sample(&f, &rec).unwrap());
        let pairwise = Vec::<f64>::try_from(kernel::kc_matrix(&a, &a).sum_dim_intlist(
            [1i64].as_slice(),
            false,
            Kind::Double,
        ))
        .unwrap();
        for i in 0..ns.len() {
            assert!(
                (ns[i] - pairwise[i]).abs() <= 1e-9 * pairwise[i].abs().max(1.0),
                "sample {i}: {} vs {}",
                ns[i],
                pairwise[i]
            );
        }
        // The same predictions as one whole-batch forward pass, up to float32 rounding (the
        // chunked passes use other matrix shapes, hence other summation orders in the GEMMs).
        let direct = Vec::<f64>::try_from(f.detach().to_kind(Kind::Double).view([-1])).unwrap();
        assert_eq!(pred.len(), direct.len());
        for (i, (p, d)) in pred.iter().zip(&direct).enumerate() {
            assert!((p - d).abs() <= 1e-6 * d.abs().max(1e-3), "sample {i}: {p} vs {d}");
        }
    }

    #[test]
    fn curvature_and_correlation() {
        // sin(2πα) at α = 1/4: y′ = 0, |y″| = (2π)²; at α = 0: y″ = 0.
        assert!((curvature(1, 0.25) - 4.0 * PI * PI).abs() < 1e-9);
        assert!(curvature(1, 0.0).abs() < 1e-12);
        // Higher f bends more at its crests: (2πf)².
        assert!((curvature(4, 1.0 / 16.0) - 16.0 * 4.0 * PI * PI).abs() < 1e-6);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]).unwrap() - 0.9986).abs() < 1e-3);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        let a = alphas(100, 5);
        assert!(a.windows(2).all(|w| w[0] <= w[1]) && a[0] >= 0.0 && a[99] < 1.0);
        assert_eq!(a, alphas(100, 5));
        assert_ne!(a, alphas(100, 6));
    }
}
