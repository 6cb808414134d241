//! Resampling an image by a displacement field: out(q) = src(q − D(q)).
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Interp {
    Bilinear,
    /// Catmull–Rom (a = −0.5) cubic convolution.
    Bicubic,
}

/// A source image around a tile: `width`×`height` pixels whose (0, 0) pixel sits at
/// (−`margin`, −`margin`) in tile pixel coordinates.
pub struct Source<'a> {
    pub pixels: &'a [f32],
    pub width: usize,
    pub height: usize,
    pub margin: usize,
}

impl Source<'_> {
    fn at(&self, c: i64, r: i64) -> f64 {
        if c < 0 || r < 0 || c >= self.width as i64 || r >= self.height as i64 {
            return f64::NAN;
        }
        self.pixels[r as usize * self.width + c as usize] as f64
    }

    /// Value at tile coordinates (x, y) (pixel centres at integer + 0.5).
    pub fn sample(&self, x: f64, y: f64, interp: Interp) -> f64 {
        // Continuous source-array coordinates with pixel centres at integers.
        let u = x - 0.5 + self.margin as f64;
        let v = y - 0.5 + self.margin as f64;
        let (c0, r0) = (u.floor() as i64, v.floor() as i64);
        let (fx, fy) = (u - c0 as f64, v - r0 as f64);
        let (wx, wy) = match interp {
            Interp::Bilinear => (vec![1.0 - fx, fx], vec![1.0 - fy, fy]),
            Interp::Bicubic => (cubic_weights(fx).to_vec(), cubic_weights(fy).to_vec()),
        };
        let first = if interp == Interp::Bilinear { 0 } else { -1 };
        let mut acc = 0.0;
        for (j, wyj) in wy.iter().enumerate() {
            for (i, wxi) in wx.iter().enumerate() {
                // Zero-weight taps are skipped: a nodata neighbour that does not contribute
                // (e.g. an exact pixel-centre sample next to the raster edge) must not turn
                // the result into NaN.
                let w = wxi * wyj;
                if w != 0.0 {
                    acc += w * self.at(c0 + first + i as i64, r0 + first + j as i64);
                }
            }
        }
        acc
    }
}

fn cubic_weights(t: f64) -> [f64; 4] {
    let a = -0.5;
    let w = |x: f64| {
        let x = x.abs();
        if x <= 1.0 {
            (a + 2.0) * x.powi(3) - (a + 3.0) * x.powi(2) + 1.0
        } else if x < 2.0 {
            a * x.powi(3) - 5.0 * a * x.powi(2) + 8.0 * a * x - 4.0 * a
        } else {
            0.0
        }
    };
    [w(1.0 + t), w(t), w(1.0 - t), w(2.0 - t)]
}

/// Warps `src` by the field (dx, dy) over a `size`×`size` tile: out(q) = src(q − D(q)).
pub fn warp(src: &Source<'_>, dx: &[f64], dy: &[f64], size: usize, interp: Interp) -> Vec<f64> {
    (0..size * size)
        .map(|i| {
            let (x, y) = ((i % size) as f64 + 0.5, (i / size) as f64 + 0.5);
            src.sample(x - dx[i], y - dy[i], interp)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn analytic(x: f64, y: f64) -> f64 {
        (0.21 * x + 0.07 * y).sin() + 0.5 * (0.13 * y - 0.05 * x).cos()
    }

    /// An analytic image on a tile with margin, sampled at pixel centres.
    pub(crate) fn image(size: usize, margin: usize) -> Vec<f32> {
        let w = size + 2 * margin;
        (0..w * w)
            .map(|i| {
                analytic((i % w) as f64 + 0.5 - margin as f64, (i / w) as f64 + 0.5 - margin as f64)
                    as f32
            })
            .collect()
    }

    #[test]
    fn subpixel_shift_matches_the_analytic_shift() {
        let (size, margin) = (48, 4);
        let px = image(size, margin);
        let src =
            Source { pixels: &px, width: size + 2 * margin, height: size + 2 * margin, margin };
        let (dx, dy) = (vec![0.37; size * size], vec![-0.61; size * size]);
        // Bilinear: within its error bound (|f_xx| + |f_yy|)/8 ≈ 0.0073 for this image;
        // bicubic (third order) an order of magnitude better.
        for (interp, tol) in [(Interp::Bilinear, 0.0074), (Interp::Bicubic, 1e-3)] {
            let out = warp(&src, &dx, &dy, size, interp);
            let worst = (0..size * size)
                .map(|i| {
                    (out[i]
                        - analytic((i % size) as f64 + 0.5 - 0.37, (i / size) as f64 + 0.5 + 0.61))
                    .abs()
                })
                .fold(0.0f64, f64::max);
            assert!(worst < tol, "{interp:?}: worst error {worst} (tolerance {tol})");
        }
    }

    #[test]
    fn nodata_neighbours_with_zero_weight_do_not_spread() {
        // 2×2 source whose right column is nodata: sampling the left pixel centres exactly
        // gives their values; a sample that mixes in nodata is nodata.
        let px = [1.0, f32::NAN, 2.0, f32::NAN];
        let src = Source { pixels: &px, width: 2, height: 2, margin: 0 };
        for interp in [Interp::Bilinear, Interp::Bicubic] {
            assert_eq!(src.sample(0.5, 0.5, interp), 1.0, "{interp:?}");
            assert_eq!(src.sample(0.5, 1.5, interp), 2.0, "{interp:?}");
            assert!(src.sample(0.9, 0.5, interp).is_nan(), "{interp:?}");
        }
    }
}
