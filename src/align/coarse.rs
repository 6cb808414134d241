//! The whole-scene stage of an alignment: one shift for a central crop of the scene (at most
//! 1024² px) by phase correlation (the baseline every run reports) and by CFOG within
//! `--max-shift` (what `--method auto` searches its windows around), and the pair's similarity
//! before and after a shift (NCC of gradient magnitudes).
use super::scene::{read_normalised, Inputs};
use crate::matching::cfog::{cfog_match_within, Match};
use crate::matching::phase::{gradient_magnitude, phase_correlation, Shift};
use crate::raster::Window;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Side of the central crop, at most (px).
const CROP: usize = 1024;

/// The band means of the central crop, reference and moving (NaN where either is invalid).
pub struct Crop {
    pub w: usize,
    pub h: usize,
    pub reference: Vec<f32>,
    pub moving: Vec<f32>,
}

pub(super) fn read_crop(inp: &Inputs) -> Result<Crop> {
    let g = &inp.grid;
    let (w, h) = (g.width.min(CROP), g.height.min(CROP));
    let (x0, y0) = (((g.width - w) / 2) as i64, ((g.height - h) / 2) as i64);
    let region = Window { col: x0, row: y0, width: w, height: h };
    // Each image keeps its own gaps: a mask shared by both would draw the same artificial
    // edges into both (the moving raster's nodata border after a shift, say), and they
    // would match at zero shift.
    let mean = |b: &[Vec<f32>]| -> Vec<f32> {
        (0..w * h).map(|i| b.iter().map(|x| x[i]).sum::<f32>() / b.len() as f32).collect()
    };
    let mut valid = vec![true; w * h];
    let r = mean(&read_normalised(&inp.reference, &inp.rb, &inp.r_stats, region, &mut valid)?);
    let mut valid = vec![true; w * h];
    let m = mean(&read_normalised(&inp.moving, &inp.mb, &inp.m_stats, region, &mut valid)?);
    Ok(Crop { w, h, reference: r, moving: m })
}

impl Crop {
    /// Phase correlation of the gradient magnitudes: the baseline's whole-scene shift.
    pub fn phase_correlation(&self) -> Shift {
        phase_correlation(
            &gradient_magnitude(&self.reference, self.w, self.h),
            &gradient_magnitude(&self.moving, self.w, self.h),
            self.w,
            self.h,
        )
    }

    /// CFOG within ±`max_shift` px.
    pub fn cfog(&self, max_shift: f64) -> Match {
        cfog_match_within(&self.reference, &self.moving, self.w, self.h, max_shift)
    }

    /// NCC of the gradient magnitudes of the reference and of the moving crop sampled at
    /// p + `shift` (bilinear): the pair's similarity once corrected by `shift` ([0, 0]:
    /// as it comes).
    pub fn similarity(&self, shift: [f64; 2]) -> f64 {
        let (w, h) = (self.w, self.h);
        let moved: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64 + shift[0], (i / w) as f64 + shift[1]);
                bilinear(&self.moving, w, h, x, y)
            })
            .collect();
        let ga = gradient_magnitude(&self.reference, w, h);
        let gb = gradient_magnitude(&moved, w, h);
        // Gradients next to invalid pixels are not the scene's: NaN them out.
        let bad = |img: &[f32], i: usize| {
            let (x, y) = (i % w, i / w);
            [(0i64, 0i64), (-1, 0), (1, 0), (0, -1), (0, 1)].iter().any(|(dx, dy)| {
                let (a, b) = (x as i64 + dx, y as i64 + dy);
                a >= 0
                    && b >= 0
                    && (a as usize) < w
                    && (b as usize) < h
                    && !img[b as usize * w + a as usize].is_finite()
            })
        };
        let ga: Vec<f32> = (0..w * h)
            .map(|i| if bad(&self.reference, i) || bad(&moved, i) { f32::NAN } else { ga[i] })
            .collect();
        super::quality::ncc(&ga, &gb)
    }
}

/// Bilinear sample of `img` at (x, y) (pixel centres at integers); NaN outside or next to NaN.
fn bilinear(img: &[f32], w: usize, h: usize, x: f64, y: f64) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    if x0 < 0.0 || y0 < 0.0 || x0 + 1.0 >= w as f64 || y0 + 1.0 >= h as f64 {
        return f32::NAN;
    }
    let (fx, fy) = (x - x0, y - y0);
    let (i, j) = (x0 as usize, y0 as usize);
    let at = |a: usize, b: usize| img[b * w + a] as f64;
    let v = at(i, j) * (1.0 - fx) * (1.0 - fy)
        + at(i + 1, j) * fx * (1.0 - fy)
        + at(i, j + 1) * (1.0 - fx) * fy
        + at(i + 1, j + 1) * fx * fy;
    v as f32
}

/// Below this CFOG peak margin a whole-scene match is not trusted (a crop of hundreds of
/// pixels matches with margins of 0.05 or more where it matches at all; see `estimators`).
pub const MIN_SCENE_MARGIN: f64 = 0.02;

/// `--method auto`'s whole-scene estimate (summary.json `coarse`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coarse {
    pub method: String,
    pub shift_px: [f64; 2],
    pub peak: f64,
    pub margin: f64,
    /// Whether the windows were searched around it (else around 0, and why not).
    pub used: bool,
    /// Whether its peak lies on the `--max-shift` bound.
    pub at_bound: bool,
    pub note: String,
}

/// The whole-scene CFOG match, checked: a margin below `MIN_SCENE_MARGIN` (ambiguous) or a
/// peak on the `max_shift` bound (the match may lie beyond) is reported and not used.
pub fn coarse(crop: &Crop, max_shift: f64) -> Coarse {
    // The crop must leave room for the search.
    let bound = max_shift.min((crop.w.min(crop.h) / 2) as f64 - 2.0);
    let m = crop.cfog(bound);
    let s = m.shift;
    let (used, note) = if m.at_bound(bound) {
        (false, format!("the best whole-scene match lies on the search bound ({bound} px): the shift may be larger (raise --max-shift)"))
    } else if m.margin() < MIN_SCENE_MARGIN {
        (
            false,
            format!(
                "no distinct whole-scene match (CFOG peak margin {:.3} < {MIN_SCENE_MARGIN})",
                m.margin()
            ),
        )
    } else {
        (true, "windows searched around it".to_string())
    };
    Coarse {
        method: "cfog".into(),
        shift_px: [s.dx, s.dy],
        peak: s.peak,
        margin: m.margin(),
        used,
        at_bound: m.at_bound(bound),
        note,
    }
}
