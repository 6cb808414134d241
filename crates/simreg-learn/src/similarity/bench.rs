//! What `simreg-learn bench-jacobian` and `bench-ns` measure (scripts/bench_similarity.sh
//! compares them with PyTorch in the same run).
use super::{batch_jacobians, memory_per_sample, peak_rss_mb, two_passes, Sets};
use crate::model::{param_count, Net, NetConfig};
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

#[derive(Serialize)]
pub struct JacobianBench {
    pub jacobians_per_s: f64,
    pub batch: i64,
    pub steps: usize,
    pub params: i64,
    pub threads: i32,
}

/// Per-sample Jacobians (forward + d backward passes + per-layer products) of random batches.
pub fn jacobians(
    cfg: &NetConfig,
    batch: i64,
    warmup: usize,
    steps: usize,
) -> Result<JacobianBench> {
    cfg.check()?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), cfg.clone());
    let t = cfg.tile_size as i64;
    let opts = (Kind::Float, Device::Cpu);
    let r = Tensor::randn([batch, cfg.reference_bands as i64, t, t], opts);
    let m = Tensor::randn([batch, cfg.moving_bands as i64, t, t], opts);
    for _ in 0..warmup {
        let _ = batch_jacobians(&net, &r, &m)?;
    }
    let t0 = Instant::now();
    let mut check = 0.0;
    for _ in 0..steps {
        let (gt, _) = batch_jacobians(&net, &r, &m)?;
        check += gt.double_value(&[0, 0, 0]);
    }
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(check.is_finite(), "non-finite Jacobian");
    Ok(JacobianBench {
        jacobians_per_s: (batch as f64 * steps as f64) / secs,
        batch,
        steps,
        params: param_count(&vs),
        threads: tch::get_num_threads(),
    })
}

#[derive(Serialize)]
pub struct NsBench {
    pub n: usize,
    pub seconds: f64,
    pub peak_rss_mb: f64,
    pub ns_mean: f64,
    pub params: i64,
    /// What `memory_per_sample` estimates for one sample of a batch (MB).
    pub estimated_mb_per_sample: f64,
}

/// Both N_S passes over `n` random samples, generated per batch from their index (the same in
/// both passes), so memory holds one batch at a time as with tiles read from disk.
pub fn ns(cfg: &NetConfig, n: usize, batch: usize) -> Result<NsBench> {
    cfg.check()?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), cfg.clone());
    let t = cfg.tile_size as i64;
    let mut load = |idx: &[usize]| -> Result<(Tensor, Tensor)> {
        let mk = |i: usize, c: usize, salt: i64| {
            tch::manual_seed(i as i64 * 2 + salt);
            Tensor::randn([1, c as i64, t, t], (Kind::Float, Device::Cpu))
        };
        let r: Vec<Tensor> = idx.iter().map(|&i| mk(i, cfg.reference_bands, 0)).collect();
        let m: Vec<Tensor> = idx.iter().map(|&i| mk(i, cfg.moving_bands, 1)).collect();
        Ok((Tensor::cat(&r, 0), Tensor::cat(&m, 0)))
    };
    let all: Vec<usize> = (0..n).collect();
    let t0 = Instant::now();
    let sets = Sets { n, train: &all, held: &[] };
    let out = two_passes(&net, sets, batch, None, &mut load, &mut |_, _, _| {})?;
    let seconds = t0.elapsed().as_secs_f64();
    let est = memory_per_sample(&net, Device::Cpu).0 as f64 / 1048576.0;
    Ok(NsBench {
        n,
        seconds,
        peak_rss_mb: peak_rss_mb(),
        ns_mean: out.ns.iter().sum::<f64>() / n as f64,
        params: out.params,
        estimated_mb_per_sample: est,
    })
}
