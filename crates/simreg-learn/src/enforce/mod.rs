//! Similarity-enforcing training (paper.md §6): a loss term on pairs of inputs known to be
//! similar, differentiated through their per-sample gradients (double back-propagation).
//!
//! The term is λ·(1 − k^C(x_a, x_b)) (`Sign::Minus`: raises the similarity, the paper's intent)
//! or λ·k^C(x_a, x_b) (`Sign::Plus`: what the reference code's released version adds, which
//! lowers it). k^C is the normalised kernel of the 2-D output f(x) (mean displacement), as in the
//! similarity stage, computed with a differentiable closed-form K^{-1/2} of the 2 × 2 Gram matrix.
pub mod study;

use crate::model::{mean_of, Net};
use tch::Tensor;

pub use simreg::artefacts::enforce::{EnforceSign as Sign, PairKind};

/// Two versions of each sample of a batch (N, C, H, W) that keep its displacement.
pub fn make_pairs(kind: PairKind, reference: &Tensor, moving: &Tensor) -> [(Tensor, Tensor); 2] {
    let one = || match kind {
        PairKind::Noise => {
            (reference + reference.randn_like() * 0.05, moving + moving.randn_like() * 0.3)
        }
        PairKind::Photometric => {
            let jitter = |x: &Tensor| {
                let s = x.size();
                let gain = Tensor::rand([s[0], s[1], 1, 1], (x.kind(), x.device())) * 0.4 + 0.8;
                let off = (Tensor::rand([s[0], s[1], 1, 1], (x.kind(), x.device())) - 0.5) * 0.4;
                x * gain + off
            };
            (jitter(reference), jitter(moving))
        }
    };
    [one(), one()]
}

/// K^{-1/2} of symmetric positive definite 2 × 2 matrices (…, 2, 2), in closed form and
/// differentiable: √K = (K + sI)/t with s = √det K, t = √(tr K + 2s). A tiny multiple of
/// tr K·I keeps it defined when K is near-singular.
pub fn inv_sqrt_2x2(k: &Tensor) -> Tensor {
    let eye = Tensor::eye(2, (k.kind(), k.device()));
    let tr =
        k.diagonal(0, -2, -1).sum_dim_intlist([-1i64].as_slice(), true, k.kind()).unsqueeze(-1);
    let k = k + &tr * 1e-9 * &eye;
    let s = k.det().sqrt().unsqueeze(-1).unsqueeze(-1);
    let tr =
        k.diagonal(0, -2, -1).sum_dim_intlist([-1i64].as_slice(), true, k.kind()).unsqueeze(-1);
    let t = (&tr + &s * 2.0).sqrt();
    ((k + s * eye) / t).inverse()
}

/// The per-sample gradients of f for a small batch, with their graph kept so that a loss on them
/// can be back-propagated to the parameters: (N, d, p).
pub fn jacobians_with_graph(
    net: &Net,
    params: &[Tensor],
    reference: &Tensor,
    moving: &Tensor,
) -> Tensor {
    crate::similarity::jacobian::per_sample_loop(
        &mean_of(&net.forward(reference, moving)),
        params,
        true,
    )
}

/// k^C(a_i, b_i) for Jacobians `ga`, `gb` (N, d, p): (N,), differentiable.
pub fn kc_pairs(ga: &Tensor, gb: &Tensor) -> Tensor {
    let polar = |g: &Tensor| inv_sqrt_2x2(&g.matmul(&g.transpose(1, 2))).matmul(g);
    let d = ga.size()[1] as f64;
    (polar(ga) * polar(gb)).sum_dim_intlist([1i64, 2].as_slice(), false, ga.kind()) / d
}

/// The similarity term for pairs (a_i, b_i): mean over pairs of λ(1 − k^C) or λk^C.
pub fn similarity_term(
    net: &Net,
    params: &[Tensor],
    a: &(Tensor, Tensor),
    b: &(Tensor, Tensor),
    lambda: f64,
    sign: Sign,
) -> Tensor {
    let ga = jacobians_with_graph(net, params, &a.0, &a.1);
    let gb = jacobians_with_graph(net, params, &b.0, &b.1);
    let kc = kc_pairs(&ga, &gb).mean(ga.kind());
    match sign {
        Sign::Minus => (kc.neg() + 1.0) * lambda,
        Sign::Plus => kc * lambda,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NetConfig;
    use crate::similarity::kernel;
    use rand::{Rng, SeedableRng};
    use tch::{nn, Device, Kind};

    const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

    #[test]
    fn closed_form_inverse_square_root_matches_the_eigendecomposition() {
        tch::manual_seed(1);
        let g = Tensor::randn([6, 2, 40], F64);
        let k = g.matmul(&g.transpose(1, 2));
        let a = inv_sqrt_2x2(&k);
        let b = kernel::inv_sqrt(&k);
        assert!((a - b).abs().max().double_value(&[]) <= 1e-7);
        // And k^C agrees with the similarity stage's.
        let (pa, _) = kernel::polar(&g);
        let kc = kernel::kc_matrix(&pa, &pa);
        let here = kc_pairs(&g.narrow(0, 0, 3), &g.narrow(0, 3, 3));
        for i in 0..3 {
            assert!((here.double_value(&[i]) - kc.double_value(&[i, i + 3])).abs() <= 1e-7);
        }
    }

    /// paper.md §7 check 10: the gradient of the similarity term (double back-propagation)
    /// against central finite differences, tiny convnet, f64: relative error ≤ 1e-4.
    #[test]
    fn double_backprop_gradient_matches_finite_differences() {
        // Everything random comes from a local seeded generator, not libtorch's global one,
        // which tests running in parallel share: the data (and whether a finite-difference step
        // crosses a max-pool switch) must not depend on the other tests.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut random = |shape: &[i64], s: f64| {
            let n: i64 = shape.iter().product();
            // Uniform with standard deviation s.
            let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0) * s * 3f64.sqrt()).collect();
            Tensor::from_slice(&v).view(shape)
        };
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(
            &vs.root(),
            NetConfig {
                reference_bands: 2,
                moving_bands: 1,
                tile_size: 8,
                centre_offset: 2,
                centre_size: 4,
                width: 2,
                depth: 2,
                scale_px: 1.0,
                corr_radius: 1,
            },
        );
        vs.double();
        let params = vs.trainable_variables();
        tch::no_grad(|| {
            for p in &params {
                let mut p = p.shallow_clone();
                let fan_in: i64 = p.size().iter().skip(1).product::<i64>().max(1);
                p.copy_(&random(&p.size(), 1.0 / (fan_in as f64).sqrt()));
            }
        });
        let a = (random(&[2, 2, 8, 8], 1.0), random(&[2, 1, 8, 8], 1.0));
        let b = (&a.0 + random(&[2, 2, 8, 8], 0.3), &a.1 + random(&[2, 1, 8, 8], 0.3));
        let dirs: Vec<Tensor> = params.iter().map(|p| random(&p.size(), 1.0)).collect();
        for sign in [Sign::Minus, Sign::Plus] {
            let term = similarity_term(&net, &params, &a, &b, 0.7, sign);
            let grads = Tensor::run_backward(&[&term], &params, false, false);
            // Directional derivative along a random direction, analytic vs central differences.
            // Parameters the term does not depend on (e.g. the output bias) have no gradient.
            let analytic: f64 = grads
                .iter()
                .zip(&dirs)
                .filter(|(g, _)| g.defined())
                .map(|(g, v)| (g * v).sum(Kind::Double).double_value(&[]))
                .sum();
            let h = 1e-5;
            let shift = |t: f64| {
                tch::no_grad(|| {
                    for (p, v) in params.iter().zip(&dirs) {
                        let mut p = p.shallow_clone();
                        let _ = p.g_add_(&(v * t));
                    }
                })
            };
            shift(h);
            let up = similarity_term(&net, &params, &a, &b, 0.7, sign).double_value(&[]);
            shift(-2.0 * h);
            let down = similarity_term(&net, &params, &a, &b, 0.7, sign).double_value(&[]);
            shift(h);
            let fd = (up - down) / (2.0 * h);
            let rel = (analytic - fd).abs() / fd.abs().max(1e-12);
            eprintln!("{sign:?}: analytic {analytic:.9e}, central differences {fd:.9e}, relative error {rel:.2e}");
            assert!(
                rel <= 1e-4,
                "{sign:?}: analytic {analytic}, finite differences {fd}, relative error {rel}"
            );
            assert!(fd.abs() > 1e-6, "the term depends on the parameters");
        }
    }
}
