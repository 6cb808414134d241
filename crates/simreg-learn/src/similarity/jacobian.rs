//! Per-sample Jacobians G_i = ∂f(x_i)/∂θ for a whole batch at once, from per-layer formulas:
//! a layer's per-sample weight gradient is its back-propagated signal δ times its input (for a
//! convolution, δ against the input shifted by each kernel offset). One ordinary batched backward pass per
//! output component gives every layer's δ; no backward pass per sample.
//!
//! Parameter order (the rows of G): layers in the order the forward pass applies them, each
//! layer's weight (row-major, as stored) then its bias. `explicit_loop` — one backward pass per
//! sample and component onto the parameters themselves — is the test oracle.
use anyhow::{bail, Result};
use tch::{nn, Kind, Tensor};

/// One layer application recorded during a forward pass.
pub struct Layer {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// Input (B, C_in, H, W) or (B, C_in); output (B, C_out, H', W') or (B, C_out).
    pub x: Tensor,
    pub y: Tensor,
    pub conv: bool,
}

/// Records every layer a forward pass applies through it.
#[derive(Default)]
pub struct Recorder {
    pub layers: Vec<Layer>,
}

impl Recorder {
    /// A stride-1, undilated, ungrouped convolution (the only kind our networks use).
    pub fn conv(&mut self, c: &nn::Conv2D, x: &Tensor) -> Tensor {
        let y = nn::Module::forward(c, x);
        self.layers.push(Layer {
            weight: c.ws.shallow_clone(),
            bias: c.bs.as_ref().map(|b| b.shallow_clone()),
            x: x.shallow_clone(),
            y: y.shallow_clone(),
            conv: true,
        });
        y
    }
    pub fn linear(&mut self, l: &nn::Linear, x: &Tensor) -> Tensor {
        let y = nn::Module::forward(l, x);
        self.layers.push(Layer {
            weight: l.ws.shallow_clone(),
            bias: l.bs.as_ref().map(|b| b.shallow_clone()),
            x: x.shallow_clone(),
            y: y.shallow_clone(),
            conv: false,
        });
        y
    }
    /// Number of parameters the recorded layers hold (the length of a Jacobian column).
    pub fn params(&self) -> i64 {
        self.layers
            .iter()
            .map(|l| l.weight.numel() as i64 + l.bias.as_ref().map_or(0, |b| b.numel() as i64))
            .sum()
    }
}

/// Padding of a stride-1 convolution from its input and output sizes.
fn same_padding(l: &Layer) -> Result<[i64; 2]> {
    let (xs, ys, ws) = (l.x.size(), l.y.size(), l.weight.size());
    let mut pad = [0i64; 2];
    for a in 0..2 {
        let twice = ys[2 + a] - xs[2 + a] + ws[2 + a] - 1;
        if twice < 0 || twice % 2 != 0 {
            bail!("per-sample Jacobian: a convolution is not stride 1 (input {xs:?}, output {ys:?}, kernel {ws:?})");
        }
        pad[a] = twice / 2;
    }
    Ok(pad)
}

/// Per-sample Jacobians of `f` (B, d), computed through the layers recorded while computing
/// it: (B, d, p), in `f`'s kind. Consumes the graph (the recorder's tensors stay valid).
pub fn per_sample(f: &Tensor, rec: &Recorder) -> Result<Tensor> {
    let (b, d) = (f.size()[0], f.size()[1]);
    let ys: Vec<&Tensor> = rec.layers.iter().map(|l| &l.y).collect();
    // δ of every layer for each output component: d batched backward passes.
    let mut deltas: Vec<Vec<Tensor>> = Vec::with_capacity(d as usize);
    for k in 0..d {
        let s = f.select(1, k).sum(f.kind());
        deltas.push(Tensor::run_backward(&[s], &ys, k + 1 < d, false));
    }
    // The products need no graph: without no_grad, the Jacobian would keep the whole forward
    // graph alive (the layer inputs require grad), and sums of Jacobians would chain them.
    tch::no_grad(|| products(&deltas, rec, b, d))
}

fn products(deltas: &[Vec<Tensor>], rec: &Recorder, b: i64, d: i64) -> Result<Tensor> {
    let mut blocks = Vec::with_capacity(2 * rec.layers.len());
    for (li, l) in rec.layers.iter().enumerate() {
        let delta =
            Tensor::stack(&deltas.iter().map(|dk| dk[li].shallow_clone()).collect::<Vec<_>>(), 1);
        let cout = l.weight.size()[0];
        if l.conv {
            let ws = l.weight.size();
            let pad = same_padding(l)?;
            // Per kernel offset (i, j): signals (B, d·C_out, L) × the input shifted by (i, j)
            // (B, L, C_in). Measured 2.6× faster than one product with im2col's patches
            // (B, C_in·kh·kw, L), which are large and freshly allocated per layer.
            let sig = delta.reshape([b, d * cout, -1]);
            let (h, w) = (l.y.size()[2], l.y.size()[3]);
            let xp = if pad == [0, 0] {
                l.x.shallow_clone()
            } else {
                l.x.constant_pad_nd([pad[1], pad[1], pad[0], pad[0]])
            };
            let cin = ws[1];
            let mut per_offset = Vec::with_capacity((ws[2] * ws[3]) as usize);
            for i in 0..ws[2] {
                for j in 0..ws[3] {
                    let shifted = xp.narrow(2, i, h).narrow(3, j, w).reshape([b, cin, -1]);
                    per_offset.push(sig.bmm(&shifted.transpose(1, 2)));
                }
            }
            // (B, d·C_out, C_in, kh·kw): the weight's (C_out, C_in, kh, kw) order per component.
            blocks.push(Tensor::stack(&per_offset, 3).reshape([b, d, -1]));
            if l.bias.is_some() {
                blocks.push(
                    sig.sum_dim_intlist([2i64].as_slice(), false, sig.kind()).reshape([b, d, cout]),
                );
            }
        } else {
            // (B, d, C_out, 1) × (B, 1, 1, C_in).
            blocks.push((delta.unsqueeze(3) * l.x.unsqueeze(1).unsqueeze(1)).reshape([b, d, -1]));
            if l.bias.is_some() {
                blocks.push(delta);
            }
        }
    }
    Ok(Tensor::cat(&blocks, 2))
}

/// The oracle: one backward pass per sample and output component onto the parameters.
/// `f` (B, d) must have been computed through the recorded layers; returns (B, d, p).
pub fn explicit_loop(f: &Tensor, rec: &Recorder) -> Tensor {
    let params: Vec<&Tensor> =
        rec.layers.iter().flat_map(|l| std::iter::once(&l.weight).chain(l.bias.as_ref())).collect();
    per_sample_loop(f, &params, false)
}

/// One backward pass per sample and component of `f` (B, d) onto `params`: (B, d, p). With
/// `create_graph` the Jacobians stay differentiable (double back-propagation).
pub fn per_sample_loop<T: std::borrow::Borrow<Tensor>>(
    f: &Tensor,
    params: &[T],
    create_graph: bool,
) -> Tensor {
    let (b, d) = (f.size()[0], f.size()[1]);
    let mut rows = Vec::with_capacity(b as usize);
    for i in 0..b {
        let mut comps = Vec::with_capacity(d as usize);
        for k in 0..d {
            let g = Tensor::run_backward(&[f.get(i).get(k)], params, true, create_graph);
            comps.push(Tensor::cat(&g.iter().map(|t| t.flatten(0, -1)).collect::<Vec<_>>(), 0));
        }
        rows.push(Tensor::stack(&comps, 0));
    }
    Tensor::stack(&rows, 0)
}

/// Largest |a − b| relative to max |b| (both (B, d, p)).
pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let num = (a - b).abs().max().to_kind(Kind::Double).double_value(&[]);
    num / b.abs().max().to_kind(Kind::Double).double_value(&[]).max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{mean_of, Net, NetConfig};
    use tch::{Device, Kind};

    fn tiny_net(vs: &nn::VarStore) -> Net {
        let cfg = NetConfig {
            reference_bands: 2,
            moving_bands: 1,
            tile_size: 16,
            centre_offset: 4,
            centre_size: 8,
            width: 2,
            depth: 3,
            scale_px: 1.0,
            corr_radius: 1,
        };
        Net::new(&vs.root(), cfg)
    }

    #[test]
    fn batched_jacobian_matches_the_explicit_loop_in_f64() {
        tch::manual_seed(3);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = tiny_net(&vs);
        vs.double();
        let opts = (Kind::Double, Device::Cpu);
        let (r, m) = (Tensor::randn([5, 2, 16, 16], opts), Tensor::randn([5, 1, 16, 16], opts));
        let mut rec = Recorder::default();
        let f = mean_of(&net.forward_with(&r, &m, &mut |c, x| rec.conv(c, x)));
        let slow = explicit_loop(&f, &rec);
        let fast = per_sample(&f, &rec).unwrap();
        assert_eq!(fast.size(), [5, 2, crate::model::param_count(&vs)]);
        assert_eq!(rec.params(), crate::model::param_count(&vs));
        let err = max_rel_diff(&fast, &slow);
        assert!(err <= 1e-10, "relative difference {err}");
        // And the samples really differ (the test would pass on a batch of copies otherwise).
        assert!(max_rel_diff(&fast.get(0), &fast.get(1)) > 1e-3);
    }

    #[test]
    fn linear_layers_match_the_explicit_loop() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let l1 = nn::linear(vs.root() / "a", 3, 5, Default::default());
        let l2 = nn::linear(vs.root() / "b", 5, 2, Default::default());
        let x = Tensor::randn([7, 3], (Kind::Float, Device::Cpu));
        let mut rec = Recorder::default();
        let h = rec.linear(&l1, &x).relu();
        let f = rec.linear(&l2, &h);
        let slow = explicit_loop(&f, &rec);
        let fast = per_sample(&f, &rec).unwrap();
        assert_eq!(fast.size(), [7, 2, 3 * 5 + 5 + 5 * 2 + 2]);
        assert!(max_rel_diff(&fast, &slow) <= 1e-6);
    }
}
