//! Robust per-band normalisation statistics (percentiles over valid pixels of accepted tiles).
use serde::{Deserialize, Serialize};

/// Each tile contributes at most this many valid pixels per band (a strided sample)...
pub const SAMPLES_PER_TILE: usize = 4096;
/// ...and a scene about this many in all, so the percentiles cost O(1) in the scene size.
pub const SAMPLES_PER_SCENE: usize = 1 << 20;

/// How many samples each of `n_windows` tiles contributes per band.
pub fn samples_per_tile(n_windows: usize) -> usize {
    (SAMPLES_PER_SCENE / n_windows.max(1)).clamp(256, SAMPLES_PER_TILE)
}

/// The scale statistics are taken in: SAR intensities are summarised in dB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatScale {
    Linear,
    Db,
}

impl StatScale {
    /// Maps a (valid) pixel value to the statistics' scale; None when it has no value there
    /// (non-positive intensity in dB).
    pub fn apply(self, v: f32) -> Option<f32> {
        match self {
            StatScale::Linear => Some(v),
            StatScale::Db => (v > 0.0).then(|| 10.0 * v.log10()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandStats {
    pub scale: StatScale,
    /// Number of sampled values the statistics rest on.
    pub n: usize,
    pub p01: f32,
    pub p02: f32,
    pub p50: f32,
    pub p98: f32,
    pub p99: f32,
    pub mean: f64,
    pub std: f64,
}

impl BandStats {
    /// The network's input normalisation of a raw pixel value: (v − median) / half the 2–98 %
    /// range on the statistics' scale, clamped to ±8; nodata (and no value in dB) → 0.
    pub fn normalise(&self, v: f32) -> f32 {
        let half = ((self.p98 - self.p02) / 2.0).max(1e-6);
        let z = (self.scale.apply(v).unwrap_or(f32::NAN) - self.p50) / half;
        if z.is_finite() {
            z.clamp(-8.0, 8.0)
        } else {
            0.0
        }
    }
}

/// The stride that keeps at most `max` of `n_valid` values.
pub fn sample_step(n_valid: usize, max: usize) -> usize {
    n_valid.div_ceil(max).max(1)
}

/// Every `sample_step`-th of the `n_valid` `values`, at most `max` of them.
pub fn strided_sample(values: impl Iterator<Item = f32>, n_valid: usize, max: usize) -> Vec<f32> {
    values.step_by(sample_step(n_valid, max)).take(max).collect()
}

/// Percentiles by the nearest-rank method on the sorted sample; None for an empty sample.
pub fn summarise(mut sample: Vec<f32>, scale: StatScale) -> Option<BandStats> {
    sample.retain(|v| v.is_finite());
    if sample.is_empty() {
        return None;
    }
    let n = sample.len();
    let mean = sample.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = sample.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    // Selection instead of a full sort: O(n) per percentile.
    let mut pct = |p: f64| {
        *sample
            .select_nth_unstable_by(((p / 100.0) * (n - 1) as f64).round() as usize, f32::total_cmp)
            .1
    };
    Some(BandStats {
        scale,
        n,
        p01: pct(1.0),
        p02: pct(2.0),
        p50: pct(50.0),
        p98: pct(98.0),
        p99: pct(99.0),
        mean,
        std: var.sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_ramp() {
        let mut shuffled: Vec<f32> = (0..=100).map(|v| ((v * 37) % 101) as f32).collect();
        shuffled.push(f32::NAN);
        let s = summarise(shuffled, StatScale::Linear).unwrap();
        assert_eq!((s.p01, s.p02, s.p50, s.p98, s.p99), (1.0, 2.0, 50.0, 98.0, 99.0));
        assert!((s.mean - 50.0).abs() < 1e-12);
        assert!(summarise(vec![f32::NAN], StatScale::Linear).is_none());
    }

    #[test]
    fn db_scale() {
        assert_eq!(StatScale::Db.apply(100.0), Some(20.0));
        assert_eq!(StatScale::Db.apply(0.0), None);
        assert_eq!(StatScale::Linear.apply(-3.0), Some(-3.0));
    }

    #[test]
    fn sample_is_bounded_and_strided() {
        let s = strided_sample((0..10_000).map(|v| v as f32), 10_000, SAMPLES_PER_TILE);
        assert!(s.len() <= SAMPLES_PER_TILE);
        assert_eq!(s[1] - s[0], 3.0);
        assert_eq!(samples_per_tile(10), SAMPLES_PER_TILE);
        assert_eq!(samples_per_tile(1_000_000), 256);
    }
}
