//! The classical per-window estimators of `scene` (the network is in simreg-learn): phase
//! correlation of gradient magnitudes, and CFOG (Ye et al. 2019; its authors state that the
//! matching framework is patented and offered for research use only — simreg keeps it one
//! method among several, swappable through `--method`).
//!
//! Both work on the band means of a window's normalised bands (SAR already in dB).
use super::scene::{Estimate, WindowModel, Windows};
use crate::matching::cfog::cfog_match_within;
use crate::matching::phase::{gradient_magnitude, phase_correlation};
use anyhow::Result;
use rayon::prelude::*;

/// Window `k`'s reference and moving band means (t × t each).
fn band_means(w: &Windows, k: usize) -> (Vec<f32>, Vec<f32>) {
    let (t, cr, cm) = (w.t, w.cr, w.cm);
    let mean = |px: &[f32], c: usize| -> Vec<f32> {
        (0..t * t).map(|i| (0..c).map(|b| px[b * t * t + i]).sum::<f32>() / c as f32).collect()
    };
    (
        mean(&w.reference[k * cr * t * t..][..cr * t * t], cr),
        mean(&w.moving[k * cm * t * t..][..cm * t * t], cm),
    )
}

/// Phase correlation of the band-mean gradient magnitudes of each window (SAR in dB: the
/// normalisation works on dB already); reliability = correlation peak height.
pub struct PhaseCorrelation;

impl WindowModel for PhaseCorrelation {
    fn method(&self) -> &'static str {
        "phase-correlation"
    }
    fn reliability(&self) -> String {
        "phase-correlation peak height (1: identical up to a shift, ~0: nothing correlates)".into()
    }
    fn estimate(&mut self, w: &Windows) -> Result<Vec<Estimate>> {
        Ok((0..w.n)
            .into_par_iter()
            .map(|k| {
                let (r, m) = band_means(w, k);
                let t = w.t;
                let s = phase_correlation(
                    &gradient_magnitude(&r, t, t),
                    &gradient_magnitude(&m, t, t),
                    t,
                    t,
                );
                Estimate { dx: s.dx, dy: s.dy, reliability: s.peak }
            })
            .collect())
    }
}

/// CFOG matching of each window's band means within ±`radius` px; reliability = the peak's
/// margin over the rest of the correlation surface (`cfog::Match::margin`): ~0 when another
/// shift matches about as well, whatever the peak's height.
pub struct Cfog {
    pub radius: f64,
}

/// Below this margin a CFOG window is flagged unreliable (measured on the synthetic
/// optical/SAR scenes of `tests/align_methods.rs`, 128-px windows: matching windows have a
/// median margin of 0.09–0.10 and all 64 of a scene pass; between unrelated scenes none of
/// 36 does).
pub const CFOG_MIN_MARGIN: f64 = 0.03;

impl WindowModel for Cfog {
    fn method(&self) -> &'static str {
        "cfog"
    }
    fn reliability(&self) -> String {
        format!(
            "CFOG peak margin: normalised correlation peak minus the highest value {} px or more away (0: ambiguous; below {CFOG_MIN_MARGIN}: flagged)",
            crate::matching::cfog::SECOND_PEAK_GAP + 1
        )
    }
    fn min_reliability(&self) -> Option<f64> {
        Some(CFOG_MIN_MARGIN)
    }
    fn estimate(&mut self, w: &Windows) -> Result<Vec<Estimate>> {
        Ok((0..w.n)
            .into_par_iter()
            .map(|k| {
                let (r, m) = band_means(w, k);
                let found = cfog_match_within(&r, &m, w.t, w.t, self.radius);
                let s = found.shift;
                // A peak on the search bound is no estimate: the match lies beyond it.
                if found.at_bound(self.radius) {
                    return Estimate { dx: s.dx, dy: s.dy, reliability: 0.0 };
                }
                Estimate { dx: s.dx, dy: s.dy, reliability: found.margin() }
            })
            .collect())
    }
}
