//! Label-noise models: what separates a recorded label from the true displacement.
//! Models compose: a base model (iid or correlated) + a constant bias + gross outliers.
//! The parameters (`NoiseParams`) are part of the labels' contract (`artefacts::labels`).
use crate::artefacts::labels::{NoiseModel, NoiseParams};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// A stationary Gaussian random field with squared-exponential covariance, by random Fourier
/// features: ε(p) = σ·√(2/M)·Σ cos(ω_m·p + b_m), ω_m ~ N(0, I/L²), b_m ~ U[0, 2π).
#[derive(Clone, Debug)]
pub struct SmoothNoise {
    sigma: f64,
    features: Vec<([f64; 2], f64)>,
}

pub const FOURIER_FEATURES: usize = 512;

impl SmoothNoise {
    pub fn new(sigma: f64, corr_length: f64, rng: &mut impl Rng) -> SmoothNoise {
        let features = (0..FOURIER_FEATURES)
            .map(|_| {
                let wx: f64 = StandardNormal.sample(rng);
                let wy: f64 = StandardNormal.sample(rng);
                ([wx / corr_length, wy / corr_length], rng.gen::<f64>() * std::f64::consts::TAU)
            })
            .collect();
        SmoothNoise { sigma, features }
    }

    /// Value at scene pixel coordinates (x, y).
    pub fn at(&self, x: f64, y: f64) -> f64 {
        let s: f64 = self.features.iter().map(|(w, b)| (w[0] * x + w[1] * y + b).cos()).sum();
        self.sigma * (2.0 / self.features.len() as f64).sqrt() * s
    }
}

/// Per-tile constant part of the noise (iid draw, bias, outlier), px.
pub fn tile_offset(p: &NoiseParams, rng: &mut impl Rng) -> [f64; 2] {
    tile_offset_flagged(p, rng).0
}

/// [`tile_offset`], and whether the tile drew a gross error (recorded in truth.json, so that an
/// audit's ranking can be scored).
pub fn tile_offset_flagged(p: &NoiseParams, rng: &mut impl Rng) -> ([f64; 2], bool) {
    let mut e = p.bias.0;
    if p.model == NoiseModel::Iid {
        let nx: f64 = StandardNormal.sample(rng);
        let ny: f64 = StandardNormal.sample(rng);
        e[0] += p.sigma * nx;
        e[1] += p.sigma * ny;
    }
    // Always draw, so enabling outliers does not change the other tiles' noise.
    let (u, phi) = (rng.gen::<f64>(), rng.gen::<f64>() * std::f64::consts::TAU);
    let outlier = u < p.outliers;
    if outlier {
        e[0] += p.outlier_magnitude * phi.cos();
        e[1] += p.outlier_magnitude * phi.sin();
    }
    (e, outlier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artefacts::labels::Offset;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn std(v: &[f64]) -> f64 {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    }

    #[test]
    fn iid_noise_has_the_set_sigma_within_3_percent() {
        let p = NoiseParams {
            model: NoiseModel::Iid,
            sigma: 2.0,
            corr_length: 0.0,
            outliers: 0.0,
            outlier_magnitude: 0.0,
            bias: Offset([0.0, 0.0]),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (xs, ys): (Vec<f64>, Vec<f64>) =
            (0..20_000).map(|_| tile_offset(&p, &mut rng)).map(|e| (e[0], e[1])).unzip();
        for s in [std(&xs), std(&ys)] {
            assert!((s / 2.0 - 1.0).abs() < 0.03, "sample σ {s}");
        }
    }

    #[test]
    fn correlated_noise_has_the_set_sigma_and_correlation_length() {
        let (sigma, l) = (1.5, 40.0);
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        // σ: 200 fields × 60 points far apart (n = 12 000).
        let mut vals = Vec::new();
        for _ in 0..200 {
            let f = SmoothNoise::new(sigma, l, &mut rng);
            vals.extend((0..60).map(|k| f.at(1000.0 * k as f64, 777.0 * k as f64)));
        }
        let s = std(&vals);
        assert!((s / sigma - 1.0).abs() < 0.03, "sample σ {s}");
        // Correlation at distance d: mean over fields of ε(p)ε(p + d)/σ²; the empirical
        // correlation length is where it falls to e^(−1/2).
        let fields: Vec<SmoothNoise> =
            (0..300).map(|_| SmoothNoise::new(sigma, l, &mut rng)).collect();
        let corr = |d: f64| {
            let mut acc = 0.0;
            let mut n = 0.0;
            for (i, f) in fields.iter().enumerate() {
                for k in 0..20 {
                    let (x, y) = (5000.0 * k as f64 + i as f64, -3000.0 * k as f64);
                    let a = (k as f64) * 0.7;
                    acc += f.at(x, y) * f.at(x + d * a.cos(), y + d * a.sin());
                    n += 1.0;
                }
            }
            acc / n / (sigma * sigma)
        };
        let target = (-0.5f64).exp();
        let mut d = 0.0;
        while corr(d) > target {
            d += 1.0;
        }
        assert!((d / l - 1.0).abs() < 0.1, "empirical correlation length {d} vs {l}");
        assert!(corr(3.0 * l).abs() < 0.1);
    }

    #[test]
    fn outliers_and_bias_compose() {
        let p = NoiseParams {
            model: NoiseModel::None,
            sigma: 0.0,
            corr_length: 0.0,
            outliers: 0.05,
            outlier_magnitude: 12.0,
            bias: Offset([1.0, -0.5]),
        };
        assert_eq!(p.model_name(), "bias+outliers");
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let e: Vec<[f64; 2]> = (0..20_000).map(|_| tile_offset(&p, &mut rng)).collect();
        let gross = e
            .iter()
            .filter(|v| ((v[0] - 1.0).powi(2) + (v[1] + 0.5).powi(2)).sqrt() > 11.99)
            .count();
        assert!((gross as f64 / 20_000.0 - 0.05).abs() < 0.005, "{gross}");
        assert!(e.iter().filter(|v| **v == [1.0, -0.5]).count() == 20_000 - gross);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let ok = NoiseParams {
            model: NoiseModel::Iid,
            sigma: 1.0,
            corr_length: 0.0,
            outliers: 0.0,
            outlier_magnitude: 0.0,
            bias: Offset([0.0, 0.0]),
        };
        assert!(ok.check().is_ok());
        assert!(NoiseParams { sigma: -1.0, ..ok.clone() }
            .check()
            .unwrap_err()
            .to_string()
            .contains("non-negative"));
        assert!(NoiseParams { model: NoiseModel::Correlated, ..ok.clone() }.check().is_err());
        assert!(NoiseParams { outliers: 1.5, ..ok.clone() }.check().is_err());
    }
}
