//! The per-tile label-quality score, and how well a ranking finds known bad labels.
//!
//! A label is suspicious when it disagrees with the best label-free estimate of the truth more
//! than that estimate's own uncertainty allows. The estimate combines the network and the
//! CFOG baseline by inverse variance; the network's variance at a tile is the neighbour-count
//! model's: small where the network has many look-alikes (N_S large), so a large residual
//! there is strong evidence, and large on isolated tiles, where it is not.

/// Inverse-variance combination of two estimates (per-axis variances `va`, `vb`): the combined
/// value and its variance.
pub fn combine(a: [f64; 2], va: f64, b: [f64; 2], vb: f64) -> ([f64; 2], f64) {
    let (wa, wb) = (1.0 / va.max(1e-9), 1.0 / vb.max(1e-9));
    let w = wa + wb;
    ([(wa * a[0] + wb * b[0]) / w, (wa * a[1] + wb * b[1]) / w], 1.0 / w)
}

/// The score: |y − t̂|² / (2·(σ² + var t̂)), a per-axis χ²-like statistic (mean ≈ 1 for a label
/// with only the estimated noise).
pub fn label_score(label: [f64; 2], estimate: [f64; 2], var_estimate: f64, sigma2: f64) -> f64 {
    let d2 = (label[0] - estimate[0]).powi(2) + (label[1] - estimate[1]).powi(2);
    d2 / (2.0 * (sigma2 + var_estimate).max(1e-12))
}

/// Area under the ROC curve of `scores` (higher = more suspicious) for the `positive` tiles:
/// the probability that a random positive outscores a random negative (ties count ½).
/// None without both classes.
pub fn auroc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    // Mann–Whitney U from mid-ranks.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| positive[idx[k]]).count() as f64 * mid;
        i = j + 1;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_matches_a_pairwise_count() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.05];
        let p = [false, true, false, true, false, false, true];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..s.len() {
            for j in 0..s.len() {
                if p[i] && !p[j] {
                    pairs += 1.0;
                    wins += if s[i] > s[j] {
                        1.0
                    } else if s[i] == s[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((auroc(&s, &p).unwrap() - wins / pairs).abs() < 1e-12);
        assert_eq!(auroc(&[1.0, 2.0], &[false, true]), Some(1.0));
        assert_eq!(auroc(&[1.0, 2.0], &[true, false]), Some(0.0));
        assert_eq!(auroc(&[1.0, 2.0], &[true, true]), None);
    }

    #[test]
    fn combination_weights_by_inverse_variance() {
        let (c, v) = combine([0.0, 0.0], 1.0, [3.0, 6.0], 2.0);
        assert!((c[0] - 1.0).abs() < 1e-12 && (c[1] - 2.0).abs() < 1e-12);
        assert!((v - 2.0 / 3.0).abs() < 1e-12);
        // A gross disagreement on a tile whose estimate is tight scores higher than the same
        // disagreement where the estimate is loose.
        let tight = label_score([5.0, 0.0], [0.0, 0.0], 0.1, 1.0);
        let loose = label_score([5.0, 0.0], [0.0, 0.0], 4.0, 1.0);
        assert!(tight > 3.0 * loose);
    }

    /// The bound behind the 6-px figure: with label noise σ per axis and gross errors of
    /// exactly 3σ in a random direction, even a score that knows the truth (|y − t|, the
    /// likelihood-ratio statistic here) cannot reach AUROC 0.95 (≈ 0.947); at 6σ it is ≈ 1.
    #[test]
    fn known_truth_bounds_the_auroc_of_any_label_score() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let noise = Normal::new(0.0, 2.0).unwrap();
        let oracle = |magnitude: f64, rng: &mut rand_chacha::ChaCha8Rng| {
            let n = 40_000;
            let (mut s, mut p) = (Vec::with_capacity(2 * n), Vec::with_capacity(2 * n));
            for k in 0..2 * n {
                let gross = k < n;
                let phi = rand::Rng::gen_range(rng, 0.0..std::f64::consts::TAU);
                let g = if gross { magnitude } else { 0.0 };
                let (ex, ey) =
                    (noise.sample(rng) + g * phi.cos(), noise.sample(rng) + g * phi.sin());
                s.push(ex * ex + ey * ey);
                p.push(gross);
            }
            auroc(&s, &p).unwrap()
        };
        let at_3_sigma = oracle(6.0, &mut rng);
        assert!((0.940..0.950).contains(&at_3_sigma), "{at_3_sigma}");
        assert!(oracle(12.0, &mut rng) > 0.999);
    }
}
