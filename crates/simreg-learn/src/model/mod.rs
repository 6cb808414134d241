//! The registration network: a correlation pyramid read out by soft-argmax, coarse to fine,
//! as optical-flow networks (PWC-Net, RAFT) do. It predicts the dense displacement over the
//! tile's centre window (2 channels, x east / y south, in units of `NetConfig::scale_px`); f(x),
//! the quantity the similarity analysis differentiates, is its mean (`mean_of`).
//!
//! - **Features.** A stem per modality (two 3×3 convolutions + ELU at full resolution: optical
//!   and SAR need their own first layers), then encoder levels shared by both modalities (max
//!   pooling, two 3×3 convolutions + ELU, `width << level` maps): both land in one feature space.
//! - **Matching.** At each level from the coarsest down to half resolution, the moving features
//!   are warped by the flow so far and correlated with the reference features over offsets
//!   within ±r feature pixels (r = `corr_radius`), as cosines of per-pixel unit vectors; the
//!   volume is averaged over a 9×9 neighbourhood (cost aggregation), and its soft-argmax
//!   (τ = 0.1) is the flow's increment. A small refinement (two 3×3 convolutions over the volume
//!   and the flow, the last initialised to zero) corrects it. The half-resolution flow is
//!   upsampled bilinearly to the tile: a full-resolution level cost 20 % more time per step and
//!   learnt no faster nor better (BENCHMARKS.md, "Learning speed").
//!
//! Why: the earlier network fused the two encoders and regressed the displacement through a
//! U-Net decoder from scratch. It sat on the "predict the mean" plateau for 450–1500+ steps,
//! because nothing tied its output to where the features match. Here the output *is* where they
//! match: from the first step the loss's gradient raises the correlation at the true offset.
//! Measured on the noise sweep's tiles (BENCHMARKS.md, "Learning speed").
//!
//! Every parameter is in a stride-1 convolution applied exactly once per forward pass, in a
//! fixed order (the per-sample Jacobians rely on it); the other operations (pooling, the
//! correlation, soft-argmax, the warp) have no parameters and are differentiable twice (the
//! similarity-enforcing term back-propagates through gradients).
use tch::nn::{self, ConvConfig, Module};
use tch::{Kind, Tensor};

/// The network's shape is part of the model's description (`model.json`).
pub use simreg::artefacts::train::NetConfig;

/// Soft-argmax temperature on the cosine correlations.
pub const TEMPERATURE: f64 = 0.1;
/// Side of the neighbourhood the correlation volume is averaged over (cost aggregation).
pub const AGGREGATE: i64 = 9;
/// The finest level the flow is estimated at (1: half resolution).
pub const FINEST: usize = 1;

/// How a forward pass applies one convolution layer.
pub type ConvFn<'a> = dyn FnMut(&nn::Conv2D, &Tensor) -> Tensor + 'a;

struct Block {
    a: nn::Conv2D,
    b: nn::Conv2D,
}

impl Block {
    fn new(p: &nn::Path, cin: i64, cout: i64) -> Block {
        let c = ConvConfig { padding: 1, ..Default::default() };
        Block { a: nn::conv2d(p / "a", cin, cout, 3, c), b: nn::conv2d(p / "b", cout, cout, 3, c) }
    }
    fn forward(&self, x: &Tensor, conv: &mut ConvFn) -> Tensor {
        let h = conv(&self.a, x).elu();
        conv(&self.b, &h).elu()
    }

    /// The block on both modalities with the same weights, each convolution applied once (so
    /// that the per-sample Jacobian records each layer once): the two maps side by side along
    /// the width with a zero column between them, which is what each one's zero padding is.
    fn forward_pair(&self, r: &Tensor, m: &Tensor, conv: &mut ConvFn) -> (Tensor, Tensor) {
        let w = r.size()[3];
        let pair = |a: &Tensor, b: &Tensor| {
            let s = a.size();
            let gap = Tensor::zeros([s[0], s[1], s[2], 1], (a.kind(), a.device()));
            Tensor::cat(&[a, &gap, b], 3)
        };
        let split = |y: &Tensor| (y.narrow(3, 0, w).elu(), y.narrow(3, w + 1, w).elu());
        let (ra, ma) = split(&conv(&self.a, &pair(r, m)));
        split(&conv(&self.b, &pair(&ra, &ma)))
    }
}

pub struct Net {
    pub config: NetConfig,
    stem_ref: Block,
    stem_mov: Block,
    /// Levels 1.., shared by both modalities.
    shared: Vec<Block>,
    /// Per level from `FINEST` up, the refinement of the soft-argmax flow.
    refine: Vec<(nn::Conv2D, nn::Conv2D)>,
}

impl Net {
    pub fn new(vs: &nn::Path, config: NetConfig) -> Net {
        let w = |l: usize| config.width << l;
        let same = ConvConfig { padding: 1, ..Default::default() };
        // The last refinement layer starts at zero: the first estimate is the soft-argmax's.
        let zero = ConvConfig {
            padding: 1,
            ws_init: nn::Init::Const(0.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let stem_ref = Block::new(&(vs / "stem_ref"), config.reference_bands as i64, w(0));
        let stem_mov = Block::new(&(vs / "stem_mov"), config.moving_bands as i64, w(0));
        let shared =
            (1..config.depth).map(|l| Block::new(&(vs / "enc" / l), w(l - 1), w(l))).collect();
        let refine = (FINEST..config.depth)
            .map(|l| {
                let k = 2 * config.corr_radius.max(1) + 1;
                (
                    nn::conv2d(vs / "refine_a" / l, k * k + 2, w(l), 3, same),
                    nn::conv2d(vs / "refine_b" / l, w(l), 2, 3, zero),
                )
            })
            .collect();
        Net { config, stem_ref, stem_mov, shared, refine }
    }

    /// The device the weights are on.
    pub fn device(&self) -> tch::Device {
        self.stem_ref.a.ws.device()
    }

    /// `reference` (N, Cr, T, T) and `moving` (N, Cm, T, T) → dense displacement over the
    /// centre window (N, 2, C, C), in units of `scale_px`.
    pub fn forward(&self, reference: &Tensor, moving: &Tensor) -> Tensor {
        self.forward_with(reference, moving, &mut |c, x| c.forward(x))
    }

    /// `forward`, with every convolution applied through `conv` (each exactly once, in a fixed
    /// order): the per-sample Jacobian records the layers' inputs and outputs this way.
    pub fn forward_with(&self, reference: &Tensor, moving: &Tensor, conv: &mut ConvFn) -> Tensor {
        let mut r = self.stem_ref.forward(reference, conv);
        let mut m = self.stem_mov.forward(moving, conv);
        let mut feats = vec![(r.shallow_clone(), m.shallow_clone())];
        for block in &self.shared {
            r = r.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            m = m.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            (r, m) = block.forward_pair(&r, &m, conv);
            feats.push((r.shallow_clone(), m.shallow_clone()));
        }
        // Coarse to fine; the flow is in pixels of the current level.
        let mut flow: Option<Tensor> = None;
        let k = self.config.corr_radius.max(1);
        for l in (FINEST..self.config.depth).rev() {
            let (r, m) = &feats[l];
            let (rn, mn) = (unit_vectors(r), unit_vectors(m));
            let s = r.size();
            let (f, mw) = match &flow {
                Some(f) => {
                    let f = f.upsample_bilinear2d([s[2], s[3]], false, None, None) * 2.0;
                    let mw = warp(&mn, &f);
                    (f, mw)
                }
                None => (Tensor::zeros([s[0], 2, s[2], s[3]], (r.kind(), r.device())), mn),
            };
            let c = aggregate(&correlation(&rn, &mw, k), AGGREGATE);
            let f = f + soft_argmax(&c, k, TEMPERATURE);
            let (a, b) = &self.refine[l - FINEST];
            let h = conv(a, &Tensor::cat(&[&c, &f], 1)).elu();
            flow = Some(&f + conv(b, &h));
        }
        let (o, c) = (self.config.centre_offset as i64, self.config.centre_size as i64);
        let flow = flow.expect("NetConfig::check: depth ≥ 2");
        let t = self.config.tile_size as i64;
        let s = t as f64 / flow.size()[2] as f64;
        let flow = flow.upsample_bilinear2d([t, t], false, None, None) * s;
        flow.narrow(2, o, c).narrow(3, o, c) / self.config.scale_px
    }
}

/// Each pixel's feature vector scaled to unit length over the channels (differentiable
/// everywhere, zero vectors included).
pub fn unit_vectors(x: &Tensor) -> Tensor {
    x / (x.square().sum_dim_intlist([1i64].as_slice(), true, x.kind()) + 1e-12).sqrt()
}

/// Local correlation: channel (dy + k)·(2k+1) + (dx + k) holds Σ_c reference(p) ·
/// moving(p + (dx, dy)) (the cosine for unit vectors), zero outside the image.
pub fn correlation(r: &Tensor, m: &Tensor, k: i64) -> Tensor {
    let (h, w) = (r.size()[2], r.size()[3]);
    let padded = m.constant_pad_nd([k, k, k, k]);
    let mut out = Vec::with_capacity(((2 * k + 1) * (2 * k + 1)) as usize);
    for dy in -k..=k {
        for dx in -k..=k {
            let shifted = padded.narrow(2, k + dy, h).narrow(3, k + dx, w);
            out.push((r * shifted).sum_dim_intlist([1i64].as_slice(), true, r.kind()));
        }
    }
    Tensor::cat(&out, 1)
}

/// The volume averaged over a `side`×`side` neighbourhood (clipped at the borders), as two
/// separable passes of cumulative sums, whose backward (taken twice by the enforcing term) is
/// again a cumulative sum.
pub fn aggregate(c: &Tensor, side: i64) -> Tensor {
    box_mean(&box_mean(c, side, 2), side, 3)
}

/// Mean over a window of `side` along `dim` (clipped at the borders), by cumulative sums.
fn box_mean(c: &Tensor, side: i64, dim: i64) -> Tensor {
    let h = side / 2;
    let n = c.size()[dim as usize];
    let mut pad = [0i64; 4];
    // constant_pad_nd pads the last dims first: (w_left, w_right, h_top, h_bottom).
    let (lo, hi) = if dim == 3 { (0, 1) } else { (2, 3) };
    pad[lo] = h + 1;
    pad[hi] = h;
    let s = c.constant_pad_nd(pad).cumsum(dim, c.kind());
    // Sum over [i − h, i + h] = S[i + 2h + 1] − S[i] in the padded, shifted index.
    let sum = s.narrow(dim, side, n) - s.narrow(dim, 0, n);
    let idx: Vec<f64> = (0..n).map(|i| ((i + h).min(n - 1) - (i - h).max(0) + 1) as f64).collect();
    let mut shape = vec![1i64; 4];
    shape[dim as usize] = n;
    sum / Tensor::from_slice(&idx).to_kind(c.kind()).to(c.device()).view(shape.as_slice())
}

/// The expected offset under softmax(c / τ) over the (2k+1)² offsets of a correlation volume:
/// (N, 2, H, W) in feature pixels (x, y).
pub fn soft_argmax(c: &Tensor, k: i64, tau: f64) -> Tensor {
    let n = 2 * k + 1;
    let p = (c / tau).softmax(1, c.kind());
    let offsets = |f: &dyn Fn(i64) -> i64| {
        let v: Vec<f64> = (0..n * n).map(|i| f(i) as f64).collect();
        Tensor::from_slice(&v).to_kind(c.kind()).to(c.device()).view([1, n * n, 1, 1])
    };
    let ex = (&p * offsets(&|i| i % n - k)).sum_dim_intlist([1i64].as_slice(), true, c.kind());
    let ey = (&p * offsets(&|i| i / n - k)).sum_dim_intlist([1i64].as_slice(), true, c.kind());
    Tensor::cat(&[ex, ey], 1)
}

/// `x` resampled at p + flow(p) (bilinear, zero outside), flow (N, 2, H, W) in pixels. Built
/// from gathers, which are differentiable twice.
pub fn warp(x: &Tensor, flow: &Tensor) -> Tensor {
    let s = x.size();
    let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
    let opts = (flow.kind(), flow.device());
    let gx = Tensor::arange(w, opts).view([1, 1, w]) + flow.select(1, 0);
    let gy = Tensor::arange(h, opts).view([1, h, 1]) + flow.select(1, 1);
    let (x0, y0) = (gx.floor(), gy.floor());
    let (fx, fy) = (&gx - &x0, &gy - &y0);
    let flat = x.reshape([b, c, h * w]);
    let mut out = Tensor::zeros([b, c, h * w], (x.kind(), x.device()));
    for (ox, oy) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)] {
        let (xi, yi) = (&x0 + ox, &y0 + oy);
        let wx = if ox == 0.0 { 1.0 - &fx } else { fx.shallow_clone() };
        let wy = if oy == 0.0 { 1.0 - &fy } else { fy.shallow_clone() };
        let inside = xi
            .ge(0.0)
            .logical_and(&xi.le((w - 1) as f64))
            .logical_and(&yi.ge(0.0))
            .logical_and(&yi.le((h - 1) as f64));
        let weight = (wx * wy * inside.to_kind(flow.kind())).view([b, 1, h * w]);
        let index = (yi.clamp(0.0, (h - 1) as f64) * w as f64 + xi.clamp(0.0, (w - 1) as f64))
            .to_kind(Kind::Int64)
            .view([b, 1, h * w])
            .expand([b, c, h * w], false);
        out += flat.gather(2, &index, false) * weight;
    }
    out.view([b, c, h, w])
}

/// f(x): the mean of the dense prediction over the centre window, (N, 2).
pub fn mean_of(dense: &Tensor) -> Tensor {
    dense.mean_dim([2i64, 3].as_slice(), false, dense.kind())
}

/// Number of trainable scalars.
pub fn param_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn config(depth: usize) -> NetConfig {
        NetConfig {
            reference_bands: 4,
            moving_bands: 2,
            tile_size: 32,
            centre_offset: 8,
            centre_size: 16,
            width: 8,
            depth,
            scale_px: 4.0,
            corr_radius: 2,
        }
    }

    #[test]
    fn shapes_and_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), config(3));
        let out = net.forward(
            &Tensor::randn([3, 4, 32, 32], (Kind::Float, Device::Cpu)),
            &Tensor::randn([3, 2, 32, 32], (Kind::Float, Device::Cpu)),
        );
        assert_eq!(out.size(), [3, 2, 16, 16]);
        assert_eq!(mean_of(&out).size(), [3, 2]);
        assert!(param_count(&vs) > 10_000);
    }

    #[test]
    fn correlation_peaks_at_the_displacement() {
        // moving = reference shifted by (+2, −1): content at p appears at p + (2, −1).
        let r = Tensor::randn([1, 32, 12, 12], (Kind::Float, Device::Cpu));
        let m = r.roll([-1i64, 2].as_slice(), [2i64, 3].as_slice());
        let c = correlation(&unit_vectors(&r), &unit_vectors(&m), 3);
        assert_eq!(c.size(), [1, 49, 12, 12]);
        let centre =
            c.narrow(2, 3, 6).narrow(3, 3, 6).mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float);
        let best = centre.argmax(0, false).int64_value(&[]);
        assert_eq!((best % 7 - 3, best / 7 - 3), (2, -1));
        // Cosines of unit vectors: 1 at the match.
        assert!((centre.double_value(&[best]) - 1.0).abs() < 1e-5);
        // A sharp peak reads out at its offset; a flat volume at the window's centre.
        let sharp = (c.narrow(2, 3, 6).narrow(3, 3, 6) - 1.0) * 1000.0;
        let d = soft_argmax(&sharp, 3, 1.0).mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float);
        assert!(
            (d.double_value(&[0]) - 2.0).abs() < 1e-3 && (d.double_value(&[1]) + 1.0).abs() < 1e-3
        );
        let flat = soft_argmax(&Tensor::zeros([1, 49, 2, 2], (Kind::Float, Device::Cpu)), 3, 0.1);
        assert!(flat.abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn warp_moves_content_by_the_flow_and_aggregation_is_a_clipped_box_mean() {
        let opts = (Kind::Double, Device::Cpu);
        let x = Tensor::randn([2, 3, 10, 12], opts);
        // Integer flow (+2, −1): out(p) = x(p + (2, −1)); outside → 0.
        let flow = Tensor::cat(
            &[Tensor::full([2, 1, 10, 12], 2.0, opts), Tensor::full([2, 1, 10, 12], -1.0, opts)],
            1,
        );
        let out = warp(&x, &flow);
        let expect = x.narrow(2, 0, 9).narrow(3, 2, 10);
        let got = out.narrow(2, 1, 9).narrow(3, 0, 10);
        assert!((got - expect).abs().max().double_value(&[]) < 1e-12);
        assert_eq!(out.narrow(3, 10, 2).abs().max().double_value(&[]), 0.0);
        // Half a pixel in x: the mean of the two neighbours.
        let half = Tensor::cat(
            &[Tensor::full([2, 1, 10, 12], 0.5, opts), Tensor::zeros([2, 1, 10, 12], opts)],
            1,
        );
        let h = warp(&x, &half).narrow(3, 0, 11);
        let mid = (x.narrow(3, 0, 11) + x.narrow(3, 1, 11)) / 2.0;
        assert!((h - mid).abs().max().double_value(&[]) < 1e-12);
        // Aggregation: the mean over the clipped 3×3 neighbourhood, e.g. at a corner over 2×2.
        let a = aggregate(&x, 3);
        let corner =
            x.narrow(2, 0, 2).narrow(3, 0, 2).mean_dim([2i64, 3].as_slice(), false, Kind::Double);
        let got = a.select(2, 0).select(2, 0);
        assert!((got - corner).abs().max().double_value(&[]) < 1e-12);
        // … and inside over the full 3×3 (here at row 4, column 5).
        let inner =
            x.narrow(2, 3, 3).narrow(3, 4, 3).mean_dim([2i64, 3].as_slice(), false, Kind::Double);
        let got = a.select(2, 4).select(2, 5);
        assert!((got - inner).abs().max().double_value(&[]) < 1e-12);
    }
}
