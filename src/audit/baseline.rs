//! The classical estimate of every tile's displacement: CFOG matching (orientated-gradient
//! channels, `align::cfog`) between the reference tile and the displaced moving tile. The
//! audit uses it as a third, independent measurement of the same quantity (besides the label
//! and the network): its errors come from the image content, not from the labels.
//!
//! CFOG rather than phase correlation of gradient magnitudes: on the sweep's optical/SAR tiles
//! the latter failed (error > 2 px) on a third of the tiles, and its failures correlated with
//! the network's errors enough to bias the collocation low at σ = 1 (ratio 0.75); CFOG fails
//! on 7–8 % and brings every σ within ×1.25 (BENCHMARKS.md).
use crate::align::cfog::cfog_correlation_within;
use crate::align::phase::Shift;
use crate::raster::one_line;
use crate::tiling::manifest::{ModalityKind, Role, SceneEntry};
use anyhow::{bail, Result};
use gdal::Dataset;
use std::path::Path;

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

/// Reads bands `indices` (1-based) of a tile file as f32; every band when `indices` is None.
pub(crate) fn read_bands(
    path: &Path,
    indices: Option<&[usize]>,
) -> Result<(Vec<Vec<f32>>, usize, usize)> {
    let ds = Dataset::open(path)
        .map_err(|e| anyhow::anyhow!("tile '{}': cannot open: {}", path.display(), one_line(e)))?;
    let all: Vec<usize> = (1..=ds.raster_count()).collect();
    let indices = indices.unwrap_or(&all);
    let (w, h) = ds.raster_size();
    let mut out = Vec::with_capacity(indices.len());
    for &b in indices {
        if b == 0 || b > ds.raster_count() {
            bail!("tile '{}': has {} bands, band {b} expected", path.display(), ds.raster_count());
        }
        let band = ds.rasterband(b)?;
        let nodata = band.no_data_value().map(|v| v as f32);
        let mut v = band
            .read_as::<f32>((0, 0), (w, h), (w, h), None)
            .map_err(|e| {
                anyhow::anyhow!(
                    "tile '{}': reading band {b} failed (truncated or corrupt file?): {}",
                    path.display(),
                    one_line(e)
                )
            })?
            .data()
            .to_vec();
        if let Some(nd) = nodata {
            v.iter_mut().filter(|x| **x == nd).for_each(|x| *x = f32::NAN);
        }
        out.push(v);
    }
    Ok((out, w, h))
}

/// CFOG matching of one labelled tile: the reference bands of `tile` (the tile file) against
/// every band of `moving` (the displaced moving tile); the peak is searched within
/// ±`max_shift` px.
pub fn tile_shift(scene: &SceneEntry, tile: &Path, moving: &Path, max_shift: f64) -> Result<Shift> {
    let (r, m, w, h) = tile_images(scene, tile, moving)?;
    Ok(cfog_correlation_within(&r, &m, w, h, max_shift))
}

/// The two images a labelled tile is matched on (`combine_bands` of the reference bands of
/// `tile` and of every band of `moving`), and their width and height.
pub fn tile_images(
    scene: &SceneEntry,
    tile: &Path,
    moving: &Path,
) -> Result<(Vec<f32>, Vec<f32>, usize, usize)> {
    let reference = scene.modalities.iter().find(|m| m.role == Role::Reference);
    let moving_kind = scene
        .modalities
        .iter()
        .find(|m| m.role == Role::Moving)
        .map_or(ModalityKind::Optical, |m| m.kind);
    let Some(reference) = reference else {
        bail!("scene '{}': has no reference modality", scene.name)
    };
    let ref_idx: Vec<usize> = reference.bands.iter().map(|b| b.tile_band).collect();
    let (rb, w, h) = read_bands(tile, Some(&ref_idx))?;
    let (mb, mw, mh) = read_bands(moving, None)?;
    if (mw, mh) != (w, h) {
        bail!("moving tile '{}': {mw}×{mh} px, its reference tile is {w}×{h}", moving.display());
    }
    Ok((combine_bands(&rb, reference.kind), combine_bands(&mb, moving_kind), w, h))
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
