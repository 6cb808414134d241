//! What a tiling run will write, known before it writes anything (issue 21): every input's
//! first block is read and its declared size bounded, then the output — tiles plus rasterised
//! maps on the reference grid (warps are VRTs, read on the fly) — is estimated from the
//! declared sizes and checked against the free space. A corrupt header claiming 60000² px is
//! refused in milliseconds instead of filling the disk.
use super::plan::plan_windows;
use super::prepare::{is_vector_file, tile_sample_type};
use crate::artefacts::tiles::{ModalityInput, SceneInput, TileParams};
use crate::raster::bounds::{check_bounded, check_space};
use crate::raster::kind::Role;
use crate::raster::open_raster;
use anyhow::{Context, Result};
use std::path::Path;

/// Bytes per pixel and band of rasterised maps (Float32, DEFLATE not counted).
const MAP_BYTES: u64 = 4;

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
    let plane = grid.width as u64 * grid.height as u64 * MAP_BYTES;
    let (mut bands, mut work, mut dtypes) = (0u64, 0u64, Vec::new());
    let mods = [Some((Role::Reference, &scene.reference)), Some((Role::Moving, &scene.moving))]
        .into_iter()
        .chain([scene.map.as_ref().map(|m| (Role::Map, m))]);
    for (role, input) in mods.flatten() {
        let (b, w) = modality_bytes(role, input, plane, max_pixels, &mut dtypes)?;
        bands += b;
        work += w;
    }
    let sample = tile_sample_type(params.dtype, dtypes.iter().map(String::as_str));
    let windows =
        plan_windows(grid.width, grid.height, params.tile_size, params.overlap, params.edge)
            .with_context(|| format!("reference '{}'", first.display()))?;
    let tile = (params.tile_size as u64).pow(2) * sample.bytes();
    Ok((windows.len() as u64 * tile * bands, work))
}

/// (bands in tiles, work-file bytes) of one modality (a vector map is rasterised into 2
/// bands); the sample type of each band is pushed onto `dtypes`.
fn modality_bytes(
    role: Role,
    input: &ModalityInput,
    plane: u64,
    max_pixels: u64,
    dtypes: &mut Vec<String>,
) -> Result<(u64, u64)> {
    let (mut bands, mut work) = (0u64, 0u64);
    for file in &input.files {
        if role == Role::Map && is_vector_file(file) {
            bands += 2;
            work += 2 * plane;
            dtypes.extend(["Float32".to_string(), "Float32".to_string()]);
            continue;
        }
        let info = open_raster(file, role.name())?;
        check_bounded(&info, role.name(), max_pixels)?;
        bands += info.bands.len() as u64;
        dtypes.extend(info.bands.iter().map(|b| b.dtype.clone()));
    }
    let kept = input.bands.as_ref().map_or(bands, |sel| sel.len() as u64);
    Ok((kept, work))
}
