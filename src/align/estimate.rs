//! Pass 1 of an alignment as a whole: which estimators run on the windows, the whole-scene
//! stage of `--method auto`, the fusion of the network with CFOG, and the quality checks
//! (tie-point flags, the robust scene shift, the verdict).
//!
//! **auto**, coarse to fine: (1) CFOG over a central crop of the scene within `--max-shift`,
//! checked (its peak margin, and a peak on the bound is refused); (2) every window searched
//! around that shift (the moving window cut at its integer part) by CFOG within ±T/8 px and,
//! with a model, by the network; per window the two are fused by their reliabilities;
//! (3) flagged tie points are replaced by the robust scene shift, so that they do not bend the
//! field; (4) the scene's shift is the reliability-weighted biweight of the windows. Too few
//! reliable windows: the whole-scene match alone when it passed, else a failure.
use super::coarse::{self, Coarse, Crop};
use super::estimators::{Cfog, PhaseCorrelation, CFOG_MIN_MARGIN};
use super::quality::{self, Point, SceneShift};
use super::scene::{estimate_lattice, Estimate, Inputs, Lattice, ModelShape, WindowModel};
use crate::artefacts::align::AlignRequest;
use crate::matching::phase::Shift;
use anyhow::{bail, Result};

/// How a scene with too few reliable windows fails.
pub const NO_RELIABLE_MATCH: &str = "no reliable match";

/// How a run estimates its windows.
pub enum Estimation<'a> {
    /// One estimator; the phase-correlation baseline is computed beside (unless it is it).
    Single(&'a mut dyn WindowModel),
    /// `--method auto`, with the network when a model is given.
    Auto(Option<&'a mut dyn WindowModel>),
}

/// Fewer reliable windows than this is no window estimate (a scene-wide one may remain).
pub const MIN_RELIABLE_WINDOWS: usize = 3;

/// A fused window below this weight (relative to the scene's typical window) is unreliable.
const MIN_FUSED_WEIGHT: f64 = 0.1;

/// Where the network and CFOG differ by more than this (px), they are not averaged: the
/// more reliable one is kept.
const FUSE_AGREE_PX: f64 = 2.0;

pub(super) struct Estimated {
    pub lat: Lattice,
    pub flags: Vec<u8>,
    pub method: &'static str,
    pub reliability: String,
    pub t_primary: f64,
    pub t_base: f64,
    pub global: Shift,
    pub coarse: Option<Coarse>,
    pub scene: SceneShift,
    pub n_reliable: usize,
    pub verdict: String,
    pub similarity_before: Option<f64>,
    pub similarity_after: Option<f64>,
}

/// A tie point's weight from its reliability (larger is better for every method; NaN, as the
/// network's without S_A: 1).
fn weight(r: f64) -> f64 {
    if r.is_finite() {
        r.max(0.0)
    } else {
        1.0
    }
}

/// The median of the positive finite values (1 when none).
fn typical(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.filter(|x| x.is_finite() && *x > 0.0).collect();
    if v.is_empty() {
        return 1.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Per window, the network and CFOG fused: each weighted by its reliability relative to its
/// typical window in this scene (N_S for the network, the peak margin for CFOG), averaged
/// where they agree within `FUSE_AGREE_PX`, else the heavier kept. The reliability of the
/// result is its weight (a typical window of one method alone: 1).
pub fn fuse(net: &[Option<Estimate>], cfog: &[Option<Estimate>]) -> Vec<Option<Estimate>> {
    let tn = typical(net.iter().flatten().map(|e| e.reliability));
    let tc = typical(cfog.iter().flatten().map(|e| e.reliability));
    net.iter()
        .zip(cfog)
        .map(|(n, c)| {
            let wn =
                n.map(
                    |e| if e.reliability.is_finite() { e.reliability.max(0.0) / tn } else { 1.0 },
                );
            let wc = c.map(|e| e.reliability.max(0.0) / tc);
            match (n, c) {
                (Some(n), Some(c)) => {
                    let (wn, wc) = (wn.unwrap(), wc.unwrap());
                    let apart = ((n.dx - c.dx).powi(2) + (n.dy - c.dy).powi(2)).sqrt();
                    if apart <= FUSE_AGREE_PX && wn + wc > 0.0 {
                        let w = wn + wc;
                        Some(Estimate {
                            dx: (wn * n.dx + wc * c.dx) / w,
                            dy: (wn * n.dy + wc * c.dy) / w,
                            reliability: w,
                        })
                    } else if wn >= wc {
                        Some(Estimate { reliability: wn, ..*n })
                    } else {
                        Some(Estimate { reliability: wc, ..*c })
                    }
                }
                (Some(n), None) => Some(Estimate { reliability: wn.unwrap(), ..*n }),
                (None, Some(c)) => Some(Estimate { reliability: wc.unwrap(), ..*c }),
                (None, None) => None,
            }
        })
        .collect()
}

/// Pass 1: the lattice of estimates and its quality.
pub(super) fn estimate(
    inp: &Inputs,
    shape: &ModelShape,
    stride: usize,
    req: &AlignRequest,
    est: Estimation,
) -> Result<Estimated> {
    let max_shift = req.params.max_shift;
    if max_shift.is_nan() || max_shift <= 0.0 {
        bail!("--max-shift must be a positive number of pixels, not {max_shift}");
    }
    let crop: Crop = coarse::read_crop(inp)?;
    let global = crop.phase_correlation();
    let t = shape.tile;
    let auto = matches!(est, Estimation::Auto(_));
    let coarse = auto.then(|| coarse::coarse(&crop, max_shift));
    let names = || format!("'{}' and '{}'", req.reference.display(), req.moving.display());
    if let Some(c) = coarse.as_ref().filter(|c| c.at_bound && c.margin >= coarse::MIN_SCENE_MARGIN)
    {
        // A distinct whole-scene match on the bound: the pair is likely farther off than
        // searched, and windows searched within the bound would only find look-alikes.
        bail!("shift beyond --max-shift between {}: the best whole-scene match, ({:.1}, {:.1}) px, lies on the {max_shift}-px bound (raise --max-shift if the pair may be that far off)", names(), c.shift_px[0], c.shift_px[1]);
    }
    let offset = match &coarse {
        Some(c) if c.used => (c.shift_px[0].round() as i64, c.shift_px[1].round() as i64),
        _ => (0, 0),
    };
    // Around a checked scene-wide shift, windows need search only its local departures;
    // without one they search as wide as `--method cfog` (±8 px missed the snow patch's 5.6 px
    // and BigEarthNet 56_35's 7.5 px; ±16 found both, BENCHMARKS.md).
    let around = coarse.as_ref().is_some_and(|c| c.used);
    let radius = if around { (t / 8) as f64 } else { (t / 4) as f64 }.min(max_shift);
    let mut pc = PhaseCorrelation;
    let mut cfog = Cfog { radius };
    let (method, reliability, min_rel, fused, mut models): (_, _, _, _, Vec<&mut dyn WindowModel>) =
        match est {
            Estimation::Single(p) if p.method() == "phase-correlation" => {
                (p.method(), p.reliability(), p.min_reliability(), false, vec![p])
            }
            Estimation::Single(p) => {
                (p.method(), p.reliability(), p.min_reliability(), false, vec![p, &mut pc])
            }
            Estimation::Auto(None) => {
                let r = format!("auto (CFOG windows): {}", cfog.reliability());
                ("auto", r, Some(CFOG_MIN_MARGIN), false, vec![&mut cfog, &mut pc])
            }
            Estimation::Auto(Some(n)) => {
                let r = format!("auto (network and CFOG fused): the window's weight relative to a typical window of one method alone (the network's N_S, CFOG's peak margin); below {MIN_FUSED_WEIGHT}: flagged");
                ("auto", r, Some(MIN_FUSED_WEIGHT), true, vec![n, &mut cfog, &mut pc])
            }
        };
    let (xs, ys, mut lattices, seconds) =
        estimate_lattice(inp, shape, stride, req, &mut models, offset)?;
    drop(models);
    let (primary, baseline, t_primary, t_base) = if lattices.len() == 1 {
        (lattices[0].clone(), lattices.remove(0), seconds[0], seconds[0])
    } else if fused {
        (fuse(&lattices[0], &lattices[1]), lattices.remove(2), seconds[0] + seconds[1], seconds[2])
    } else {
        (lattices[0].clone(), lattices.remove(1), seconds[0], seconds[1])
    };
    let h = (stride as f64).max(t as f64 / 2.0);
    let mut lat = Lattice { xs, ys, t, h, primary, baseline };
    let n_valid = lat.primary.iter().flatten().count();
    if n_valid == 0 {
        bail!("no window of {0}x{0} px has {1:.0} % valid pixels in both '{2}' and '{3}' (do they overlap with data?)", t, req.params.min_valid * 100.0, req.reference.display(), req.moving.display());
    }

    // Quality: flags, then the scene's shift over the unflagged windows.
    let nx = lat.xs.len();
    let points: Vec<Option<Point>> = lat
        .primary
        .iter()
        .enumerate()
        .map(|(k, e)| {
            e.map(|e| {
                let (x, y) = lat.centre(k % nx, k / nx);
                Point { x, y, dx: e.dx, dy: e.dy, w: weight(e.reliability) }
            })
        })
        .collect();
    let rel: Vec<f64> = lat.primary.iter().map(|e| e.map_or(f64::NAN, |e| e.reliability)).collect();
    let usable = |p: &Option<Point>, r: f64| -> Option<Point> {
        p.filter(|_| min_rel.is_none_or(|m| r >= m))
    };
    let first: Vec<Point> = points.iter().zip(&rel).filter_map(|(p, &r)| usable(p, r)).collect();
    let scale = quality::robust_shift(&first).map_or(1.0, |s| s.scale_px);
    let flags = quality::flag(&points, &rel, nx, min_rel, scale);
    let good: Vec<Point> =
        points.iter().zip(&flags).filter_map(|(p, &f)| p.filter(|_| f == 0)).collect();
    let n_reliable = good.len();
    let whole = || {
        let c = coarse.as_ref().expect("auto");
        SceneShift { shift_px: c.shift_px, scale_px: f64::NAN, n_inliers: 0, weight: 0.0 }
    };
    let (scene, verdict) = if n_reliable >= MIN_RELIABLE_WINDOWS {
        // Reliable windows all of weight 0 (a method without a threshold, every peak 0):
        // weigh them alike.
        let alike: Vec<Point> = good.iter().map(|p| Point { w: 1.0, ..*p }).collect();
        let s = quality::robust_shift(&good)
            .or_else(|| quality::robust_shift(&alike))
            .expect("reliable windows");
        let v = format!(
            "success: {n_reliable} of {n_valid} windows reliable, {} within the biweight",
            s.n_inliers
        );
        (s, v)
    } else if coarse.as_ref().is_some_and(|c| c.used) {
        (
            whole(),
            format!(
                "success: the whole-scene match only ({n_reliable} of {n_valid} windows reliable)"
            ),
        )
    } else if min_rel.is_some() {
        let why = coarse.as_ref().map_or(String::new(), |c| format!("; {}", c.note));
        bail!("{NO_RELIABLE_MATCH} between {}: {n_reliable} of {n_valid} windows reliable (at least {MIN_RELIABLE_WINDOWS} needed){why}", names());
    } else {
        let all: Vec<Point> = points.iter().flatten().copied().collect();
        let s = quality::robust_shift(&all).expect("valid windows");
        (s, format!("success: {n_valid} windows"))
    };
    let [sx, sy] = scene.shift_px;
    if sx.abs() > max_shift || sy.abs() > max_shift {
        bail!("shift beyond --max-shift between {}: ({sx:.2}, {sy:.2}) px, bound {max_shift} px (raise --max-shift if the pair is that far off)", names());
    }
    if auto {
        // Flagged windows (and, with none reliable, every window) give way to the scene's
        // shift: they must not bend the field.
        for (e, &f) in lat.primary.iter_mut().zip(&flags) {
            if let Some(v) = e {
                if f != 0 || n_reliable < MIN_RELIABLE_WINDOWS {
                    *v = Estimate { dx: sx, dy: sy, reliability: 0.0 };
                }
            }
        }
    }
    let finite = |v: f64| v.is_finite().then_some(v);
    Ok(Estimated {
        lat,
        flags,
        method,
        reliability,
        t_primary,
        t_base,
        global,
        coarse,
        scene,
        n_reliable,
        verdict,
        similarity_before: finite(crop.similarity([0.0, 0.0])),
        similarity_after: finite(crop.similarity(scene.shift_px)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(dx: f64, dy: f64, reliability: f64) -> Option<Estimate> {
        Some(Estimate { dx, dy, reliability })
    }

    #[test]
    fn fusion_averages_agreeing_windows_by_relative_reliability_and_keeps_the_heavier_otherwise() {
        // Typical N_S 100, typical margin 0.1.
        let net =
            [e(1.0, 0.0, 100.0), e(1.0, 0.0, 100.0), e(5.0, 5.0, 50.0), None, e(0.0, 0.0, 100.0)];
        let cfog = [e(2.0, 0.0, 0.1), e(1.0, 1.0, 0.3), e(0.0, 0.0, 0.1), e(3.0, 3.0, 0.1), None];
        let f = fuse(&net, &cfog);
        let f: Vec<Estimate> = f.into_iter().map(|x| x.unwrap()).collect();
        assert!((f[0].dx - 1.5).abs() < 1e-12 && (f[0].reliability - 2.0).abs() < 1e-12);
        assert!((f[1].dy - 0.75).abs() < 1e-12, "CFOG 3× its typical weight: {:?}", f[1]);
        // 7 px apart: CFOG (1.0) outweighs the network (0.5).
        assert_eq!((f[2].dx, f[2].reliability), (0.0, 1.0));
        assert_eq!((f[3].dx, f[4].dx), (3.0, 0.0));
        assert!(fuse(&[None], &[None])[0].is_none());
    }
}
