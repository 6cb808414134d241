//! The `similarity` stage (paper.md §1–3): per-sample Jacobians of f(x) (the centre-window mean
//! displacement), the normalised kernel k^C, the neighbour count N_S in two streaming passes,
//! denoising factors and similar-tile retrieval.
//!
//! Memory is O(p·d) for the kernel sums plus one batch: the Jacobians of a batch are computed,
//! used and dropped; pass 2 recomputes them instead of storing N·p·d numbers.
pub mod bench;
pub mod jacobian;
pub mod kernel;
pub mod shards;
pub mod sketch;
pub mod stage;
pub mod stored;

use crate::model::{mean_of, Net};
use anyhow::Result;
use jacobian::Recorder;
use kernel::NsAccumulator;
use sketch::CountSketch;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Output dimension: f(x) = (dx, dy).
pub const D: i64 = 2;

/// Per-sample Jacobians of a batch, ∂f_px/∂θ as (B, d, p) f32, and f (B, d) in px (f64, CPU).
pub fn batch_jacobians(net: &Net, reference: &Tensor, moving: &Tensor) -> Result<(Tensor, Tensor)> {
    let mut rec = Recorder::default();
    let f = mean_of(&net.forward_with(reference, moving, &mut |c, x| rec.conv(c, x)));
    let scale = net.config.scale_px;
    let gt = jacobian::per_sample(&f, &rec)? * scale;
    let y = f.detach().to(Device::Cpu).to_kind(Kind::Double) * scale;
    Ok((gt, y))
}

/// Estimated working memory of the Jacobian passes: (bytes per sample in a batch, parameters),
/// from the layer shapes of a one-sample forward pass: activations kept for the backward pass,
/// back-propagated signals, one layer's shifted input, the Jacobian and its f64 polar factor.
pub fn memory_per_sample(net: &Net, device: Device) -> (usize, i64) {
    let c = &net.config;
    let t = c.tile_size as i64;
    let opts = (Kind::Float, device);
    let mut rec = Recorder::default();
    let _ = mean_of(&net.forward_with(
        &Tensor::zeros([1, c.reference_bands as i64, t, t], opts),
        &Tensor::zeros([1, c.moving_bands as i64, t, t], opts),
        &mut |cv, x| rec.conv(cv, x),
    ));
    let p = rec.params();
    // Held through the batch: activations (layer inputs and outputs, and one activation map
    // between layers) and every layer's d back-propagated signals. Transient: one layer's
    // padded and shifted input at a time.
    let (mut held, mut transient) = (0i64, 0i64);
    for l in &rec.layers {
        let (x, y) = (l.x.numel() as i64, l.y.numel() as i64);
        held += x + 2 * y + D * y;
        transient = transient.max(2 * x);
    }
    // Plus the Jacobian (f32), its f64 copy and the polar factor.
    let bytes = 4 * (held + transient) as usize + (D * p) as usize * (4 + 8 + 8);
    (bytes, p)
}

/// Peak resident memory of this process (VmHWM), MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What the two passes give for every sample, and exact pairwise values for the held ones.
pub struct Passes {
    /// N_S over the training set, linear time.
    pub ns: Vec<f64>,
    /// ‖G_i‖_F (px per unit parameter).
    pub g_norm: Vec<f64>,
    /// f(x_i), px.
    pub pred: Vec<[f64; 2]>,
    /// Count sketches of the Jacobians, (N, d, m), when asked for.
    pub sketches: Option<Tensor>,
    /// For each held sample h: K(x_j, x_h) for every sample j, (n_held, N, d, d) f64 (CPU).
    pub held_k: Tensor,
    /// k^C(x_h, x_j), (n_held, N) f64 (CPU).
    pub held_kc: Tensor,
    pub params: i64,
    /// S_A = Σ_{j ∈ S} A_j, (d, p) f64 (stored beside the outputs for `simreg align`).
    pub s_a: Tensor,
    /// Samples whose Jacobian pass 1 computed, and the seconds it spent computing them.
    pub jacobians: usize,
    pub jacobian_seconds: f64,
}

/// The samples of the two passes: `n` in all, S = `train` (indices), and the `held` samples
/// that get exact kernels against every sample.
pub struct Sets<'a> {
    pub n: usize,
    pub train: &'a [usize],
    pub held: &'a [usize],
}

/// Loads samples (indices) as (reference, moving) tensors on the device.
pub type Loader<'a> = dyn FnMut(&[usize]) -> Result<(Tensor, Tensor)> + 'a;

/// Samples per block: batches never cross a block boundary, and shards split the samples at
/// block boundaries, so every sample's Jacobian is computed in the same batch whether the
/// passes run in one process or in shards (bitwise the same values on one build).
pub const BLOCK: usize = 64;

/// The batches of `items`: at most `batch` (≤ [`BLOCK`]) samples, within blocks.
pub fn batches(items: &[usize], batch: usize) -> impl Iterator<Item = &[usize]> {
    let batch = batch.clamp(1, BLOCK);
    items.chunks(BLOCK).flat_map(move |b| b.chunks(batch))
}

/// The held samples' Jacobians Gᵀ and polar factors, (n_held, d, p) f64 each.
pub struct Held {
    pub g: Tensor,
    pub a: Tensor,
}

/// Pass 0: the held samples' Jacobians and polar factors, kept (None when there are none).
pub fn held_pass(
    net: &Net,
    held: &[usize],
    batch: usize,
    load: &mut Loader,
) -> Result<Option<Held>> {
    if held.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::new();
    for chunk in batches(held, batch) {
        let (r, m) = load(chunk)?;
        parts.push(batch_jacobians(net, &r, &m)?.0.to_kind(Kind::Double));
    }
    let g = Tensor::cat(&parts, 0);
    let (a, _) = kernel::polar(&g);
    Ok(Some(Held { g, a }))
}

/// Pass 1 over `items` (training samples): adds their polar factors to `acc`; returns the
/// seconds spent on the Jacobians (the device waited for).
pub fn pass1(
    net: &Net,
    items: &[usize],
    batch: usize,
    acc: &mut NsAccumulator,
    load: &mut Loader,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<f64> {
    let (mut secs, mut done) = (0.0, 0);
    for chunk in batches(items, batch) {
        let (r, m) = load(chunk)?;
        let t0 = Instant::now();
        let (gt, _) = batch_jacobians(net, &r, &m)?;
        let (a, _) = kernel::polar(&gt);
        acc.add(&a);
        let _ = acc.s_a.double_value(&[0, 0]); // wait for the device before timing
        secs += t0.elapsed().as_secs_f64();
        done += chunk.len();
        progress("pass 1/2: S_A", done, items.len());
    }
    Ok(secs)
}

/// What pass 2 gives for a range of samples.
#[derive(Default)]
pub struct Rows {
    pub ns: Vec<f64>,
    pub g_norm: Vec<f64>,
    pub pred: Vec<[f64; 2]>,
    /// Per batch: count sketches (B, d, m) f32, K(x_j, x_h) (n_held, B, d, d) and
    /// k^C(x_h, x_j) (n_held, B), on the CPU.
    pub sketches: Vec<Tensor>,
    pub held_k: Vec<Tensor>,
    pub held_kc: Vec<Tensor>,
}

/// Pass 2 over `items`: N_S against `acc`, norms, predictions, sketches, and kernels against
/// the held samples.
#[allow(clippy::too_many_arguments)]
pub fn pass2(
    net: &Net,
    items: &[usize],
    batch: usize,
    acc: &NsAccumulator,
    held: Option<&Held>,
    sketch: Option<&CountSketch>,
    load: &mut Loader,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Rows> {
    let mut out = Rows::default();
    let mut done = 0;
    for chunk in batches(items, batch) {
        let (r, m) = load(chunk)?;
        let (gt, y) = batch_jacobians(net, &r, &m)?;
        let g = gt.to_kind(Kind::Double);
        let (a, k_ii) = kernel::polar(&g);
        out.ns.extend(Vec::<f64>::try_from(acc.ns(&a).to(Device::Cpu))?);
        // ‖G_i‖_F² = tr K_ii.
        out.g_norm.extend(Vec::<f64>::try_from(
            k_ii.diagonal(0, 1, 2)
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
                .sqrt()
                .to(Device::Cpu),
        )?);
        for row in 0..chunk.len() as i64 {
            out.pred.push([y.double_value(&[row, 0]), y.double_value(&[row, 1])]);
        }
        if let Some(s) = sketch {
            out.sketches.push(s.apply(&gt).to(Device::Cpu));
        }
        if let Some(h) = held {
            // K(x_j, x_h) = G_jᵀ G_h as one (B·d, p) × (p, n_held·d) product (a broadcast
            // batched matmul would materialise n_held copies of the batch's Jacobians).
            let (b, nh) = (chunk.len() as i64, h.g.size()[0]);
            let prod = g.reshape([b * D, -1]).matmul(&h.g.reshape([nh * D, -1]).transpose(0, 1));
            out.held_k.push(prod.view([b, D, nh, D]).permute([2, 0, 1, 3]).to(Device::Cpu));
            out.held_kc.push(kernel::kc_matrix(&h.a, &a).to(Device::Cpu));
        }
        done += chunk.len();
        progress("pass 2/2: N_S", done, items.len());
    }
    Ok(out)
}

impl Rows {
    /// Appends `other` (the rows of the samples after these).
    pub fn extend(&mut self, other: Rows) {
        self.ns.extend(other.ns);
        self.g_norm.extend(other.g_norm);
        self.pred.extend(other.pred);
        self.sketches.extend(other.sketches);
        self.held_k.extend(other.held_k);
        self.held_kc.extend(other.held_kc);
    }
}

impl Passes {
    /// The passes' result from the rows of every sample, in order, and S_A.
    pub fn new(
        rows: Rows,
        acc: &NsAccumulator,
        n_held: usize,
        sketched: bool,
        jacobians: usize,
        jacobian_seconds: f64,
    ) -> Passes {
        let cat = |parts: &[Tensor], dim: i64, empty: &[i64]| {
            if parts.is_empty() {
                Tensor::zeros(empty, (Kind::Double, Device::Cpu))
            } else {
                Tensor::cat(parts, dim)
            }
        };
        let nh = n_held as i64;
        Passes {
            ns: rows.ns,
            g_norm: rows.g_norm,
            pred: rows.pred,
            sketches: sketched.then(|| Tensor::cat(&rows.sketches, 0)),
            held_k: cat(&rows.held_k, 1, &[nh, 0, D, D]),
            held_kc: cat(&rows.held_kc, 1, &[nh, 0]),
            params: acc.s_a.size()[1],
            s_a: acc.s_a.to(Device::Cpu),
            jacobians,
            jacobian_seconds,
        }
    }
}

/// The number of parameters f(x) is differentiated against (p).
pub fn param_count(net: &Net, device: Device) -> i64 {
    memory_per_sample(net, device).1
}

/// Runs the two streaming passes over the samples, loaded in batches by `load`.
pub fn two_passes(
    net: &Net,
    sets: Sets,
    batch: usize,
    sketch: Option<&CountSketch>,
    load: &mut Loader,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Passes> {
    let Sets { n, train, held } = sets;
    if train.is_empty() {
        anyhow::bail!("similarity: the training set is empty");
    }
    let device = net.device();
    let held_f = held_pass(net, held, batch, load)?;
    // Pass 1: S_A = Σ_{j ∈ S} A_j.
    let mut acc = NsAccumulator::new(D, param_count(net, device), device);
    let secs = pass1(net, train, batch, &mut acc, load, progress)?;
    // Pass 2: every sample's N_S, norms, predictions, sketches, and kernels against held ones.
    let all: Vec<usize> = (0..n).collect();
    let rows = pass2(net, &all, batch, &acc, held_f.as_ref(), sketch, load, progress)?;
    Ok(Passes::new(rows, &acc, held.len(), sketch.is_some(), train.len(), secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NetConfig;
    use tch::nn;

    fn tiny(vs: &nn::VarStore) -> Net {
        Net::new(
            &vs.root(),
            NetConfig {
                reference_bands: 2,
                moving_bands: 1,
                tile_size: 16,
                centre_offset: 4,
                centre_size: 8,
                width: 2,
                depth: 2,
                scale_px: 1.5,
                corr_radius: 1,
            },
        )
    }

    /// paper.md §7 check 2: a minimum-norm step δθ = G(x)K(x,x)⁻¹v moves f(x) by v and f(x′)
    /// by K(x′,x)K(x,x)⁻¹v, to first order (f64, ε = 1e-4).
    #[test]
    fn check2_first_order_meaning_of_the_influence_kernel() {
        tch::manual_seed(11);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = tiny(&vs);
        vs.double();
        let opts = (Kind::Double, Device::Cpu);
        let (r, m) = (Tensor::randn([2, 2, 16, 16], opts), Tensor::randn([2, 1, 16, 16], opts));
        let (gt, y0) = batch_jacobians(&net, &r, &m).unwrap();
        let (gx, gx2) = (gt.get(0).transpose(0, 1), gt.get(1).transpose(0, 1)); // (p, d)
        let v = Tensor::from_slice(&[0.3f64, -0.8]);
        let kxx = gx.transpose(0, 1).matmul(&gx);
        let eps = 1e-4;
        let step = gx.matmul(&kxx.inverse().matmul(&v)) * eps; // p
                                                               // Apply the step to the parameters in the Jacobian's order.
        let mut rec = Recorder::default();
        let _ = net.forward_with(&r, &m, &mut |c, x| rec.conv(c, x));
        let mut off = 0;
        tch::no_grad(|| {
            for l in &rec.layers {
                for p in std::iter::once(&l.weight).chain(l.bias.as_ref()) {
                    let n = p.numel() as i64;
                    let mut p = p.shallow_clone();
                    let _ = p.g_add_(&step.narrow(0, off, n).view(p.size().as_slice()));
                    off += n;
                }
            }
        });
        let (_, y1) = batch_jacobians(&net, &r, &m).unwrap();
        let moved = (&y1 - &y0) / eps;
        let expect_x2 = kernel::influence(&gt.get(0), &gt.get(1)).matmul(&v);
        let rel = |a: &Tensor, b: &Tensor| ((a - b).abs().max() / b.abs().max()).double_value(&[]);
        assert!(rel(&moved.get(0), &v) <= 1e-3, "f(x) moved by {:?}", moved.get(0));
        assert!(
            rel(&moved.get(1), &expect_x2) <= 1e-3,
            "f(x') moved by {moved:?}, expected {expect_x2:?}"
        );
        let _ = gx2;
    }

    #[test]
    fn streaming_passes_match_in_memory_pairwise_sums() {
        tch::manual_seed(12);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = tiny(&vs);
        let opts = (Kind::Float, Device::Cpu);
        let n = 23usize;
        let (r, m) = (
            Tensor::randn([n as i64, 2, 16, 16], opts),
            Tensor::randn([n as i64, 1, 16, 16], opts),
        );
        // Duplicate sample 0 as sample 1: they must be exact neighbours.
        r.get(1).copy_(&r.get(0));
        m.get(1).copy_(&m.get(0));
        let mut load = |idx: &[usize]| -> Result<(Tensor, Tensor)> {
            let i = Tensor::from_slice(&idx.iter().map(|&v| v as i64).collect::<Vec<_>>());
            Ok((r.index_select(0, &i), m.index_select(0, &i)))
        };
        let train: Vec<usize> = (0..n).filter(|i| i % 4 != 3).collect();
        let held = [0usize, 3, 7];
        let out = two_passes(
            &net,
            Sets { n, train: &train, held: &held },
            5,
            None,
            &mut load,
            &mut |_, _, _| {},
        )
        .unwrap();
        // In memory, all at once.
        let (gt, _) = batch_jacobians(&net, &r, &m).unwrap();
        let (a, _) = kernel::polar(&gt);
        let kc = kernel::kc_matrix(&a, &a);
        let ti = Tensor::from_slice(&train.iter().map(|&v| v as i64).collect::<Vec<_>>());
        let pairwise =
            kc.index_select(1, &ti).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        for i in 0..n {
            let p = pairwise.double_value(&[i as i64]);
            assert!(
                (out.ns[i] - p).abs() <= 1e-6 * p.abs().max(1.0),
                "sample {i}: {} vs {p}",
                out.ns[i]
            );
        }
        for (h, &i) in held.iter().enumerate() {
            let row = out.held_kc.get(h as i64);
            assert!((row.double_value(&[i as i64]) - 1.0).abs() <= 1e-6);
            assert!((&row - kc.get(i as i64)).abs().max().double_value(&[]) <= 1e-6);
        }
        assert!(
            (out.held_kc.double_value(&[0, 1]) - 1.0).abs() <= 1e-6,
            "a duplicate is a perfect neighbour"
        );
        assert_eq!(out.jacobians, train.len());
        assert_eq!(out.held_k.size(), [3, n as i64, 2, 2]);
    }
}
