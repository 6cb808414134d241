//! Quality of an alignment, as AROSICS reports it: per tie point, outlier flags (low
//! reliability, disagreement with its neighbours, RANSAC against an affine model); per scene, a
//! reliability-weighted, outlier-robust shift and a verdict with its reason.
//!
//! A plain mean over windows is no scene estimate: a few wild windows (water, a featureless
//! field, a seam) pull it anywhere. The scene shift here starts from the weighted median and
//! down-weights windows far from it (Tukey's biweight), so that half the windows may be wrong
//! without moving it.
use serde::{Deserialize, Serialize};

/// Outlier flags of a tie point (bits).
pub const UNRELIABLE: u8 = 1;
pub const INCONSISTENT: u8 = 2;
pub const RANSAC: u8 = 4;

/// The flags' names, as tiepoints.csv writes them ("" when none).
pub fn flag_names(f: u8) -> String {
    [(UNRELIABLE, "unreliable"), (INCONSISTENT, "inconsistent"), (RANSAC, "ransac")]
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("|")
}

/// A tie point: position (px), displacement (px), weight (≥ 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub dx: f64,
    pub dy: f64,
    pub w: f64,
}

/// The weighted median of `v` (value, weight); None when no weight is positive.
pub fn weighted_median(v: &mut [(f64, f64)]) -> Option<f64> {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|p| p.1.max(0.0)).sum();
    if total <= 0.0 {
        return None;
    }
    let mut acc = 0.0;
    for &(x, w) in v.iter() {
        acc += w.max(0.0);
        if acc >= total / 2.0 {
            return Some(x);
        }
    }
    v.last().map(|p| p.0)
}

/// A scene's robust shift.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneShift {
    /// [dx, dy] px.
    pub shift_px: [f64; 2],
    /// The residual scale the biweight used (px): ~ the windows' own scatter.
    pub scale_px: f64,
    /// Windows within the biweight's reach, and their summed weight.
    pub n_inliers: usize,
    pub weight: f64,
}

/// Floor of the residual scale (px): below it, sub-pixel scatter would make good windows
/// outliers.
const MIN_SCALE_PX: f64 = 0.25;

/// The reliability-weighted, outlier-robust shift of `points` (Tukey's biweight, c = 4.685
/// robust standard deviations, from the weighted median); None when no point has weight.
pub fn robust_shift(points: &[Point]) -> Option<SceneShift> {
    let pts: Vec<&Point> = points.iter().filter(|p| p.w > 0.0 && p.dx.is_finite()).collect();
    let mut sx: Vec<(f64, f64)> = pts.iter().map(|p| (p.dx, p.w)).collect();
    let mut sy: Vec<(f64, f64)> = pts.iter().map(|p| (p.dy, p.w)).collect();
    let (mut cx, mut cy) = (weighted_median(&mut sx)?, weighted_median(&mut sy)?);
    let resid = |cx: f64, cy: f64| -> Vec<f64> {
        pts.iter().map(|p| ((p.dx - cx).powi(2) + (p.dy - cy).powi(2)).sqrt()).collect()
    };
    let mut r: Vec<(f64, f64)> = resid(cx, cy).into_iter().zip(pts.iter().map(|p| p.w)).collect();
    // A 2-D residual norm's median is ~1.18 σ for Gaussian scatter.
    let scale = (weighted_median(&mut r).unwrap_or(0.0) / 1.18).max(MIN_SCALE_PX);
    let c = 4.685 * scale;
    for _ in 0..20 {
        let res = resid(cx, cy);
        let (mut sw, mut ax, mut ay) = (0.0, 0.0, 0.0);
        for (p, r) in pts.iter().zip(&res) {
            let u = r / c;
            let b = if u < 1.0 { (1.0 - u * u).powi(2) } else { 0.0 };
            sw += p.w * b;
            ax += p.w * b * p.dx;
            ay += p.w * b * p.dy;
        }
        if sw <= 0.0 {
            break;
        }
        let (nx, ny) = (ax / sw, ay / sw);
        let moved = (nx - cx).abs() + (ny - cy).abs();
        (cx, cy) = (nx, ny);
        if moved < 1e-6 {
            break;
        }
    }
    let res = resid(cx, cy);
    let inl: Vec<usize> = (0..pts.len()).filter(|&i| res[i] < c).collect();
    Some(SceneShift {
        shift_px: [cx, cy],
        scale_px: scale,
        n_inliers: inl.len(),
        weight: inl.iter().map(|&i| pts[i].w).sum(),
    })
}

/// An affine displacement model d = A·(x, y, 1): [a0, a1, a2] for dx, [a3, a4, a5] for dy.
pub type Affine = [f64; 6];

pub fn affine_at(a: &Affine, x: f64, y: f64) -> (f64, f64) {
    (a[0] * x + a[1] * y + a[2], a[3] * x + a[4] * y + a[5])
}

/// Weighted least-squares affine fit (None when the points are degenerate).
fn fit_affine(pts: &[&Point]) -> Option<Affine> {
    // Normal equations of [x y 1] for dx and for dy, f64 and centred for conditioning.
    let sw: f64 = pts.iter().map(|p| p.w).sum();
    if sw <= 0.0 {
        return None;
    }
    let (mx, my) = (
        pts.iter().map(|p| p.w * p.x).sum::<f64>() / sw,
        pts.iter().map(|p| p.w * p.y).sum::<f64>() / sw,
    );
    let mut m = [[0.0; 3]; 3];
    let (mut bx, mut by) = ([0.0; 3], [0.0; 3]);
    for p in pts {
        let v = [p.x - mx, p.y - my, 1.0];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += p.w * v[i] * v[j];
            }
            bx[i] += p.w * v[i] * p.dx;
            by[i] += p.w * v[i] * p.dy;
        }
    }
    let solve = |b: [f64; 3]| -> Option<[f64; 3]> {
        let det = |m: &[[f64; 3]; 3]| {
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        };
        let d = det(&m);
        let scale = m[0][0] * m[1][1] * m[2][2];
        if d.is_nan() || d.abs() <= 1e-12 * scale.abs().max(1e-300) {
            return None;
        }
        let mut out = [0.0; 3];
        for (k, o) in out.iter_mut().enumerate() {
            let mut mk = m;
            for r in 0..3 {
                mk[r][k] = b[r];
            }
            *o = det(&mk) / d;
        }
        Some(out)
    };
    let (ax, ay) = (solve(bx)?, solve(by)?);
    // Back from centred coordinates: d = a0 (x − mx) + a1 (y − my) + a2.
    Some([
        ax[0],
        ax[1],
        ax[2] - ax[0] * mx - ax[1] * my,
        ay[0],
        ay[1],
        ay[2] - ay[0] * mx - ay[1] * my,
    ])
}

/// RANSAC of an affine model over the points with weight: the model with the largest inlier
/// weight (residual ≤ `threshold` px) over `iterations` random triples (a fixed seed: the same
/// scene gives the same flags), refitted on its inliers. None with fewer than 6 points.
pub fn ransac_affine(
    points: &[Point],
    threshold: f64,
    iterations: usize,
) -> Option<(Affine, Vec<bool>)> {
    use rand::{Rng, SeedableRng};
    let idx: Vec<usize> = (0..points.len()).filter(|&i| points[i].w > 0.0).collect();
    if idx.len() < 6 {
        return None;
    }
    let inliers = |a: &Affine| -> Vec<bool> {
        points
            .iter()
            .map(|p| {
                let (ex, ey) = affine_at(a, p.x, p.y);
                p.w > 0.0 && ((p.dx - ex).powi(2) + (p.dy - ey).powi(2)).sqrt() <= threshold
            })
            .collect()
    };
    let score = |inl: &[bool]| -> f64 {
        inl.iter().zip(points).filter(|(k, _)| **k).map(|(_, p)| p.w).sum()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut best: Option<(f64, Affine)> = None;
    for _ in 0..iterations {
        let pick: Vec<&Point> = (0..3).map(|_| &points[idx[rng.gen_range(0..idx.len())]]).collect();
        let Some(a) = fit_affine(&pick) else { continue };
        let s = score(&inliers(&a));
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, a));
        }
    }
    let (_, a) = best?;
    let inl = inliers(&a);
    let chosen: Vec<&Point> =
        points.iter().zip(&inl).filter(|(_, k)| **k).map(|(p, _)| p).collect();
    let refit = fit_affine(&chosen).unwrap_or(a);
    Some((refit, inliers(&refit)))
}

/// Outlier flags of a lattice's tie points (`points[j·nx + i]`, None: no estimate).
///
/// - UNRELIABLE: reliability below `min_reliability` (when the method has such a threshold);
/// - INCONSISTENT: farther than max(1.5 px, 3 × the scene's scale) from the median of its
///   reliable neighbours (3 × 3, at least 3 of them);
/// - RANSAC: farther than max(1.5 px, 3 × scale) from the affine model RANSAC fits to the
///   reliable points.
pub fn flag(
    points: &[Option<Point>],
    reliability: &[f64],
    nx: usize,
    min_reliability: Option<f64>,
    scale: f64,
) -> Vec<u8> {
    let ny = points.len().checked_div(nx).unwrap_or(0);
    let mut flags: Vec<u8> = points
        .iter()
        .zip(reliability)
        .map(|(p, &r)| match (p, min_reliability) {
            (Some(_), Some(m)) if r.is_nan() || r < m => UNRELIABLE,
            _ => 0,
        })
        .collect();
    let tol = (3.0 * scale).max(1.5);
    let usable = |k: usize, flags: &[u8]| points[k].is_some() && flags[k] & UNRELIABLE == 0;
    let mut inconsistent = vec![false; points.len()];
    for j in 0..ny {
        for i in 0..nx {
            let k = j * nx + i;
            let Some(p) = points[k] else { continue };
            let mut nb: Vec<(f64, f64)> = Vec::new();
            for (di, dj) in
                [(-1i64, -1i64), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]
            {
                let (a, b) = (i as i64 + di, j as i64 + dj);
                if a < 0 || b < 0 || a >= nx as i64 || b >= ny as i64 {
                    continue;
                }
                let q = b as usize * nx + a as usize;
                if usable(q, &flags) {
                    let n = points[q].expect("usable");
                    nb.push((n.dx, n.dy));
                }
            }
            if nb.len() >= 3 {
                let mut xs: Vec<(f64, f64)> = nb.iter().map(|v| (v.0, 1.0)).collect();
                let mut ys: Vec<(f64, f64)> = nb.iter().map(|v| (v.1, 1.0)).collect();
                let (mx, my) =
                    (weighted_median(&mut xs).unwrap(), weighted_median(&mut ys).unwrap());
                inconsistent[k] = ((p.dx - mx).powi(2) + (p.dy - my).powi(2)).sqrt() > tol;
            }
        }
    }
    for (f, &b) in flags.iter_mut().zip(&inconsistent) {
        if b {
            *f |= INCONSISTENT;
        }
    }
    let reliable: Vec<Point> = points
        .iter()
        .zip(&flags)
        .map(|(p, &f)| match p {
            Some(p) if f & UNRELIABLE == 0 => *p,
            Some(p) => Point { w: 0.0, ..*p },
            None => Point { x: 0.0, y: 0.0, dx: f64::NAN, dy: f64::NAN, w: 0.0 },
        })
        .collect();
    if let Some((_, inl)) = ransac_affine(&reliable, tol, 200) {
        for (k, f) in flags.iter_mut().enumerate() {
            if reliable[k].w > 0.0 && !inl[k] {
                *f |= RANSAC;
            }
        }
    }
    flags
}

/// Normalised cross-correlation of two images over the pixels finite in both (NaN when fewer
/// than 16 or either is constant).
pub fn ncc(a: &[f32], b: &[f32]) -> f64 {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(&x, &y)| (x as f64, y as f64))
        .collect();
    if pairs.len() < 16 {
        return f64::NAN;
    }
    let n = pairs.len() as f64;
    let (ma, mb) =
        (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, f: impl Fn(f64, f64) -> (f64, f64)) -> Vec<Point> {
        (0..n * n)
            .map(|k| {
                let (x, y) = ((k % n) as f64 * 32.0, (k / n) as f64 * 32.0);
                let (dx, dy) = f(x, y);
                Point { x, y, dx, dy, w: 1.0 }
            })
            .collect()
    }

    #[test]
    fn the_robust_shift_ignores_up_to_40_percent_of_wild_windows_where_the_mean_does_not() {
        let mut pts = grid(10, |_, _| (1.3, -0.7));
        // Small scatter on every point, and 40 wild ones pulling one way.
        for (k, p) in pts.iter_mut().enumerate() {
            p.dx += 0.1 * ((k * 7 % 11) as f64 / 11.0 - 0.5);
            p.dy += 0.1 * ((k * 5 % 13) as f64 / 13.0 - 0.5);
            if k % 5 < 2 {
                p.dx = -6.0 + (k % 3) as f64;
                p.dy = 4.0;
            }
        }
        let r = robust_shift(&pts).unwrap();
        assert!((r.shift_px[0] - 1.3).abs() < 0.05 && (r.shift_px[1] + 0.7).abs() < 0.05, "{r:?}");
        assert_eq!(r.n_inliers, 60);
        let mean = pts.iter().map(|p| p.dx).sum::<f64>() / pts.len() as f64;
        assert!((mean - 1.3).abs() > 2.0, "the plain mean is pulled: {mean}");
        // Weights: 60 % of the windows wild, but they weigh little.
        for (k, p) in pts.iter_mut().enumerate() {
            if k % 5 < 3 {
                (p.dx, p.dy, p.w) = (-6.0 + (k % 3) as f64, 4.0, 0.2);
            }
        }
        let r = robust_shift(&pts).unwrap();
        assert!((r.shift_px[0] - 1.3).abs() < 0.05 && r.n_inliers == 40, "{r:?}");
        assert!(robust_shift(&[]).is_none());
    }

    #[test]
    fn ransac_recovers_an_affine_field_and_flags_what_breaks_it() {
        let truth = |x: f64, y: f64| (0.5 + 0.002 * x - 0.001 * y, -1.0 + 0.0015 * y);
        let mut pts = grid(8, truth);
        for k in [3, 17, 40, 41] {
            pts[k].dx += 5.0;
        }
        let (a, inl) = ransac_affine(&pts, 0.5, 200).unwrap();
        for (k, &inlier) in inl.iter().enumerate() {
            assert_eq!(inlier, ![3, 17, 40, 41].contains(&k), "point {k}");
        }
        let (ex, ey) = affine_at(&a, 100.0, 50.0);
        let (tx, ty) = truth(100.0, 50.0);
        assert!((ex - tx).abs() < 1e-9 && (ey - ty).abs() < 1e-9);
        assert!(ransac_affine(&pts[..5], 0.5, 50).is_none(), "too few points");
    }

    #[test]
    fn flags_name_low_reliability_local_disagreement_and_ransac_outliers() {
        let n = 6;
        let pts: Vec<Option<Point>> = grid(n, |_, _| (1.0, 1.0))
            .into_iter()
            .enumerate()
            .map(|(k, p)| match k {
                14 => Some(Point { dx: 9.0, ..p }),
                20 => None,
                _ => Some(p),
            })
            .collect();
        let mut rel = vec![0.5; n * n];
        rel[7] = 0.01;
        let f = flag(&pts, &rel, n, Some(0.03), 0.25);
        assert_eq!(f[7], UNRELIABLE);
        assert_eq!(f[14], INCONSISTENT | RANSAC, "{}", flag_names(f[14]));
        assert_eq!(flag_names(f[14]), "inconsistent|ransac");
        assert_eq!(f[20], 0);
        assert_eq!(f.iter().filter(|&&x| x != 0).count(), 2);
        // No threshold (the network, phase correlation): nothing is unreliable by itself.
        assert_eq!(flag(&pts, &rel, n, None, 0.25)[7], 0);
    }

    #[test]
    fn ncc_is_one_for_an_affine_copy_and_near_zero_for_noise() {
        let a: Vec<f32> = (0..400).map(|i| ((i * 37 % 101) as f32).sin()).collect();
        let b: Vec<f32> = a.iter().map(|v| 3.0 * v + 1.0).collect();
        assert!((ncc(&a, &b) - 1.0).abs() < 1e-9);
        let c: Vec<f32> = (0..400).map(|i| ((i * 53 % 97) as f32 * 1.7).cos()).collect();
        assert!(ncc(&a, &c).abs() < 0.2);
        assert!(ncc(&a[..10], &b[..10]).is_nan());
    }
}
