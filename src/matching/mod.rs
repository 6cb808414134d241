//! Classical image matching, shared by the stages that estimate a displacement from the images
//! alone: phase correlation (`phase`) and CFOG (`cfog`, orientated-gradient channels). The
//! audit uses CFOG as its image-only measurement; `align` uses phase correlation as its
//! baseline.
//!
//! Convention as everywhere in simreg: content at p in the reference appears at p + D in the
//! moving image (x east = columns, y south = rows).
pub mod cfog;
pub mod phase;

pub use phase::Shift;

use crate::raster::kind::ModalityKind;

/// One image per modality for correlation: every band standardised (z-score over its finite
/// pixels), averaged, NaN → 0; SAR on a linear scale is taken to dB first. Averaging
/// standardised bands keeps the edges every band shares, whatever the band's units.
pub fn combine_bands(bands: &[Vec<f32>], kind: ModalityKind) -> Vec<f32> {
    let n = bands.first().map_or(0, |b| b.len());
    let mut out = vec![0f32; n];
    for b in bands {
        let v: Vec<f32> = if kind == ModalityKind::SarLinear {
            b.iter().map(|&x| if x > 0.0 { 10.0 * x.log10() } else { f32::NAN }).collect()
        } else {
            b.clone()
        };
        let finite: Vec<f64> = v.iter().filter(|x| x.is_finite()).map(|&x| x as f64).collect();
        if finite.len() < 2 {
            continue;
        }
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        let sd =
            (finite.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / finite.len() as f64).sqrt();
        if sd <= 0.0 {
            continue;
        }
        for (o, &x) in out.iter_mut().zip(&v) {
            if x.is_finite() {
                *o += ((x as f64 - mean) / sd) as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_bands_are_standardised_and_ignore_nan() {
        let a = vec![1.0, 2.0, 3.0, f32::NAN];
        let b = vec![10.0, 20.0, 30.0, 40.0];
        let c = combine_bands(&[a, b], ModalityKind::Optical);
        // Band a: z = −1.22, 0, 1.22, (NaN → 0); band b: z over 4 values.
        assert!((c[1] - (0.0 + (20.0 - 25.0) / 125f32.sqrt())).abs() < 1e-5, "{c:?}");
        assert!(c.iter().all(|x| x.is_finite()));
        // A constant band adds nothing.
        let d = combine_bands(&[vec![5.0; 4]], ModalityKind::Optical);
        assert_eq!(d, vec![0.0; 4]);
    }
}
