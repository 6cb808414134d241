//! What a tiling run will write, known before it writes anything (issue 21): every input's
//! first block is read and its declared size bounded, then the output — tiles plus warped and
//! rasterised copies on the reference grid — is estimated from the declared sizes and checked
//! against the free space. A corrupt header claiming 60000² px is refused in milliseconds
//! instead of filling the disk.
use super::plan::plan_windows;
use super::prepare::is_vector_file;
use crate::artefacts::tiles::{ModalityInput, SceneInput, TileParams};
use crate::raster::bounds::{check_bounded, check_space};
use crate::raster::kind::Role;
use crate::raster::open_raster;
use crate::raster::warp::same_crs;
use anyhow::{Context, Result};
use std::path::Path;

/// Bytes per pixel and band in tiles and work files (Float32, before any compression).
const BYTES: u64 = 4;

/// Checks every raster of `scenes` and that their tiles fit where `out` is written.
pub fn check(
    scenes: &[SceneInput],
    params: &TileParams,
    out: &Path,
    max_pixels: u64,
) -> Result<()> {
    let (mut tiles, mut work) = (0u64, 0u64);
    for scene in scenes {
        let (t, w) = scene_bytes(scene, params, max_pixels)?;
        tiles += t;
        work += w;
    }
    check_space(
        out,
        tiles + work,
        &format!(
            "{} of tiles and {} of copies on the reference grid",
            crate::raster::bounds::human_bytes(tiles),
            crate::raster::bounds::human_bytes(work)
        ),
    )
}

/// (tile bytes, work-file bytes) of one scene.
fn scene_bytes(scene: &SceneInput, params: &TileParams, max_pixels: u64) -> Result<(u64, u64)> {
    let first = scene.reference.files.first().context("no reference raster given")?;
    let reference = open_raster(first, Role::Reference.name())?;
    check_bounded(&reference, Role::Reference.name(), max_pixels)?;
    let grid = &reference.grid;
    let plane = grid.width as u64 * grid.height as u64 * BYTES;
    let (mut bands, mut work) = (0u64, 0u64);
    let mods = [Some((Role::Reference, &scene.reference)), Some((Role::Moving, &scene.moving))]
        .into_iter()
        .chain([scene.map.as_ref().map(|m| (Role::Map, m))]);
    for (role, input) in mods.flatten() {
        let (b, w) = modality_bytes(role, input, grid, plane, max_pixels)?;
        bands += b;
        work += w;
    }
    let windows =
        plan_windows(grid.width, grid.height, params.tile_size, params.overlap, params.edge)
            .with_context(|| format!("reference '{}'", first.display()))?;
    let tile = (params.tile_size as u64).pow(2) * BYTES;
    Ok((windows.len() as u64 * tile * bands, work))
}

/// (bands in tiles, work-file bytes) of one modality: a raster off the reference grid is
/// warped onto it, a vector map rasterised (2 bands).
fn modality_bytes(
    role: Role,
    input: &ModalityInput,
    grid: &crate::raster::Grid,
    plane: u64,
    max_pixels: u64,
) -> Result<(u64, u64)> {
    let (mut bands, mut work) = (0u64, 0u64);
    for file in &input.files {
        if role == Role::Map && is_vector_file(file) {
            bands += 2;
            work += 2 * plane;
            continue;
        }
        let info = open_raster(file, role.name())?;
        check_bounded(&info, role.name(), max_pixels)?;
        let n = info.bands.len() as u64;
        bands += n;
        if !(info.grid.same_geometry(grid) && same_crs(&info.grid.crs_wkt, &grid.crs_wkt)) {
            work += n * plane;
        }
    }
    let kept = input.bands.as_ref().map_or(bands, |sel| sel.len() as u64);
    Ok((kept, work))
}
