//! A count sketch of Jacobians: each parameter is hashed to one of m buckets with a random
//! sign, so ⟨S g, S g′⟩ is an unbiased estimate of ⟨g, g′⟩ (error ~ ‖g‖‖g′‖/√m). Costs O(p)
//! memory and time per sample where a dense Gaussian projection would hold an m × p matrix.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

pub struct CountSketch {
    bucket: Tensor,
    sign: Tensor,
    pub dim: i64,
}

impl CountSketch {
    pub fn new(p: i64, dim: i64, seed: u64, device: Device) -> CountSketch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC0_0A7);
        let bucket: Vec<i64> = (0..p).map(|_| rng.gen_range(0..dim)).collect();
        let sign: Vec<f32> = (0..p).map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 }).collect();
        CountSketch {
            bucket: Tensor::from_slice(&bucket).to(device),
            sign: Tensor::from_slice(&sign).to(device),
            dim,
        }
    }

    /// (B, d, p) → (B, d, m), in `gt`'s kind.
    pub fn apply(&self, gt: &Tensor) -> Tensor {
        let s = gt.size();
        let signed = gt * self.sign.to_kind(gt.kind());
        Tensor::zeros([s[0], s[1], self.dim], (gt.kind(), gt.device())).index_add(
            2,
            &self.bucket,
            &signed,
        )
    }

    pub fn bytes(p: i64) -> usize {
        p as usize * 12
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn sketched_inner_products_are_close_and_unbiased() {
        tch::manual_seed(0);
        let p = 20_000;
        let g = Tensor::randn([2, 2, p], (Kind::Double, Device::Cpu));
        let g1 = &g.get(0) * 0.8 + g.get(1) * 0.6; // correlated with g[0]
        let exact = (g.get(0) * &g1).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        let mut errs = Vec::new();
        for seed in 0..8 {
            let cs = CountSketch::new(p, 4096, seed, Device::Cpu);
            let s = cs.apply(&Tensor::stack(&[g.get(0), g1.shallow_clone()], 0));
            let est = (s.get(0) * s.get(1)).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
            errs.push(
                f64::try_from((&est - &exact).mean(Kind::Double)).unwrap()
                    / exact.mean(Kind::Double).double_value(&[]),
            );
        }
        // Each estimate within a few 1/√m of the norm product; their mean closer still.
        let norm = (p as f64) * 1.0 / exact.mean(Kind::Double).double_value(&[]);
        assert!(errs.iter().all(|e| e.abs() < 5.0 * norm / 64.0), "{errs:?}");
        let mean: f64 = errs.iter().sum::<f64>() / errs.len() as f64;
        assert!(mean.abs() < 2.5 * norm / 64.0 / (8f64).sqrt(), "mean relative error {mean}");
    }
}
