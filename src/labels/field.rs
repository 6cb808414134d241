//! Displacement fields: a global translation plus an optional smooth field of Gaussian bumps
//! (the reference code's `create_displacement_field_maps`, drawn per tile).
use rand::Rng;

/// A dense displacement field over a `size`×`size` tile: dx (east) and dy (south) in pixels of
/// the reference grid, row-major. The moving content at reference position p is found at
/// p + D(p) in the displaced moving image.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub size: usize,
    pub dx: Vec<f64>,
    pub dy: Vec<f64>,
}

/// How fields are drawn (configured through `LabelParams`).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldParams {
    /// Global translation, uniform in [−amplitude, amplitude] px on each axis.
    pub amplitude: f64,
    /// Smooth part: each component is a sum of `bumps` signed Gaussian bumps, stretched to
    /// [−field_amplitude, field_amplitude] px (0 = translation only).
    pub field_amplitude: f64,
    pub bumps: usize,
    /// Bump standard deviation as a fraction of the tile side.
    pub bump_scale: f64,
}

impl FieldParams {
    /// Largest |D| a field can have on one axis.
    pub fn max_abs(&self) -> f64 {
        self.amplitude + self.field_amplitude
    }
}

impl Field {
    pub fn constant(size: usize, dx: f64, dy: f64) -> Field {
        Field { size, dx: vec![dx; size * size], dy: vec![dy; size * size] }
    }

    pub fn draw(size: usize, p: &FieldParams, rng: &mut impl Rng) -> Field {
        let t = [rng.gen_range(-1.0..=1.0) * p.amplitude, rng.gen_range(-1.0..=1.0) * p.amplitude];
        let mut f = Field::constant(size, t[0], t[1]);
        if p.field_amplitude > 0.0 && p.bumps > 0 {
            for comp in [&mut f.dx, &mut f.dy] {
                let s = p.bump_scale * size as f64;
                let bumps: Vec<(f64, f64, f64, f64, f64)> = (0..p.bumps)
                    .map(|_| {
                        let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
                        let (sx, sy) = (s * rng.gen_range(0.7..1.3), s * rng.gen_range(0.7..1.3));
                        (
                            rng.gen::<f64>() * size as f64,
                            rng.gen::<f64>() * size as f64,
                            sx,
                            sy,
                            sign,
                        )
                    })
                    .collect();
                let raw: Vec<f64> = (0..size * size)
                    .map(|i| {
                        let (x, y) = ((i % size) as f64 + 0.5, (i / size) as f64 + 0.5);
                        bumps
                            .iter()
                            .map(|(cx, cy, sx, sy, sign)| {
                                sign * (-0.5 * (((x - cx) / sx).powi(2) + ((y - cy) / sy).powi(2)))
                                    .exp()
                            })
                            .sum()
                    })
                    .collect();
                // Min–max stretch to [−1, 1], as the reference code does.
                let (lo, hi) =
                    raw.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v), hi.max(v))
                    });
                let span = (hi - lo).max(1e-12);
                for (c, r) in comp.iter_mut().zip(raw) {
                    *c += p.field_amplitude * (2.0 * (r - lo) / span - 1.0);
                }
            }
        }
        f
    }

    /// Mean over the centred window of side `centre`.
    pub fn centre_mean(&self, centre: usize) -> [f64; 2] {
        centre_mean(&self.dx, &self.dy, self.size, centre)
    }

    pub fn max_abs(&self) -> f64 {
        self.dx.iter().chain(&self.dy).fold(0.0f64, |m, v| m.max(v.abs()))
    }

    pub fn negated(&self) -> Field {
        Field {
            size: self.size,
            dx: self.dx.iter().map(|v| -v).collect(),
            dy: self.dy.iter().map(|v| -v).collect(),
        }
    }
}

/// Mean of two dense components over the centred `centre`×`centre` window of a `size` tile.
pub fn centre_mean(dx: &[f64], dy: &[f64], size: usize, centre: usize) -> [f64; 2] {
    let o = (size - centre) / 2;
    let (mut sx, mut sy) = (0.0, 0.0);
    for r in o..o + centre {
        for c in o..o + centre {
            sx += dx[r * size + c];
            sy += dy[r * size + c];
        }
    }
    let n = (centre * centre) as f64;
    [sx / n, sy / n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::resample::tests::image;
    use crate::raster::resample::{warp, Interp, Source};
    use rand::SeedableRng;

    #[test]
    fn translation_stays_in_range_and_field_is_stretched() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let p = FieldParams { amplitude: 3.0, field_amplitude: 1.5, bumps: 30, bump_scale: 0.3 };
        for _ in 0..20 {
            let f = Field::draw(32, &p, &mut rng);
            assert!(f.max_abs() <= p.max_abs() + 1e-12);
            // The smooth part spans exactly [−1.5, 1.5] around the translation on each axis.
            let (lo, hi) =
                f.dx.iter().fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            assert!((hi - lo - 3.0).abs() < 1e-9, "{lo} {hi}");
        }
        let c = Field::constant(8, 1.0, -2.0);
        assert_eq!(c.centre_mean(4), [1.0, -2.0]);
    }

    #[test]
    fn warp_by_d_then_minus_d_returns_the_tile() {
        // Backward warping by −D inverts warping by D exactly only for a translation; for a
        // smooth field the round trip samples I(q + D(q) − D(q + D(q))), off by at most
        // |∇D|·|D| px. Stated tolerance, in the interior (4 px from the borders): that
        // displacement times max|∇I| (≤ 0.25 here), plus twice the interpolation error bound.
        let (size, margin) = (64, 8);
        let px = image(size, margin);
        let w = size + 2 * margin;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let smooth = Field::draw(
            w,
            &FieldParams { amplitude: 2.0, field_amplitude: 1.5, bumps: 30, bump_scale: 0.5 },
            &mut rng,
        );
        let grad = |f: &[f64]| {
            let cells = (0..w - 1).flat_map(|r| (0..w - 1).map(move |c| r * w + c));
            cells
                .map(|i| (f[i + 1] - f[i]).abs().max((f[i + w] - f[i]).abs()))
                .fold(0.0f64, f64::max)
        };
        let first_order = grad(&smooth.dx).max(grad(&smooth.dy)) * smooth.max_abs() * 0.25;
        for (d, what) in [(Field::constant(w, 2.3, -1.6), "translation"), (smooth, "smooth field")]
        {
            for (interp, interp_err) in [(Interp::Bilinear, 0.0074), (Interp::Bicubic, 1e-3)] {
                let tol = 2.0 * interp_err + if what == "translation" { 0.0 } else { first_order };
                let src = Source { pixels: &px, width: w, height: w, margin: 0 };
                let once: Vec<f32> =
                    warp(&src, &d.dx, &d.dy, w, interp).iter().map(|&v| v as f32).collect();
                let back = d.negated();
                let src2 = Source { pixels: &once, width: w, height: w, margin: 0 };
                let twice = warp(&src2, &back.dx, &back.dy, w, interp);
                let inner = margin + 4;
                let mut worst = 0.0f64;
                for r in inner..w - inner {
                    for c in inner..w - inner {
                        worst = worst.max((twice[r * w + c] - px[r * w + c] as f64).abs());
                    }
                }
                assert!(
                    worst < tol,
                    "{what}, {interp:?}: round-trip error {worst} > tolerance {tol}"
                );
            }
        }
        assert!(first_order < 0.05, "the field is smooth: first-order term {first_order}");
    }
}
