//! The classical estimate of every tile's displacement: CFOG matching (orientated-gradient
//! channels, `matching::cfog`) between the reference tile and the displaced moving tile. The
//! audit uses it as a third, independent measurement of the same quantity (besides the label
//! and the network): its errors come from the image content, not from the labels.
//!
//! CFOG rather than phase correlation of gradient magnitudes: on the sweep's optical/SAR tiles
//! the latter failed (error > 2 px) on a third of the tiles, and its failures correlated with
//! the network's errors enough to bias the collocation low at σ = 1 (ratio 0.75); CFOG fails
//! on 7–8 % and brings every σ within ×1.25 (BENCHMARKS.md).
use crate::artefacts::tiles::SceneEntry;
use crate::matching::cfog::cfog_correlation_within;
use crate::matching::{combine_bands, Shift};
use crate::raster::bands::read_bands;
use crate::raster::kind::{ModalityKind, Role};
use anyhow::{bail, Result};
use std::path::Path;

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
    let (rb, w, h) = read_bands(tile, Some(&ref_idx), "tile")?;
    let (mb, mw, mh) = read_bands(moving, None, "moving tile")?;
    if (mw, mh) != (w, h) {
        bail!("moving tile '{}': {mw}×{mh} px, its reference tile is {w}×{h}", moving.display());
    }
    Ok((combine_bands(&rb, reference.kind), combine_bands(&mb, moving_kind), w, h))
}
