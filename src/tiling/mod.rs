//! The `tile` stage: multimodal rasters → pair-aware tiles on the reference grid + a manifest.
//!
//! Every modality is brought onto the reference grid (read in place when its grid is the
//! reference grid up to a whole-pixel offset, warped on read through a VRT when it differs,
//! rasterised when it is a vector map), then the same window is cut from all of them into
//! one GeoTIFF per tile (bands: reference, moving, map) in the sources' common sample type
//! (Float32 when they differ; NaN or a free integer value = nodata).
pub mod budget;
mod cut;
pub mod plan;
pub mod prepare;
mod shard;

pub use shard::{merge, run_shard};

use crate::artefacts::tiles::{
    BandEntry, Manifest, ModalityEntry, Placement, SceneEntry, SceneInput, TileEntry, TileParams,
    TileSummary, TilesDir, MANIFEST_FORMAT,
};
use crate::raster::kind::Role;
use crate::raster::stats;
use crate::raster::write::GeoTiffOptions;
use crate::raster::{Grid, Window};
use crate::util::{atomic, fingerprint, output};
use anyhow::{bail, Context, Result};
use cut::{SceneCtx, StripType, WindowOutcome};
use indicatif::{ProgressBar, ProgressStyle};
use plan::plan_windows;
use prepare::{prepare_modality, reference_grid, tile_sample_type};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// At most this many windows of a tile row are read as one strip.
const STRIP_WINDOWS: usize = 32;

#[derive(Clone, Debug, Default)]
pub struct TileOptions {
    pub quiet: bool,
    /// `--max-pixels`.
    pub limits: crate::raster::bounds::InputLimits,
    /// Reads every band through f32 even where the sources' own type would do (tests check
    /// that both paths write the same tiles).
    #[doc(hidden)]
    pub converted_reads: bool,
}

/// Runs the stage; `out` is replaced as a whole when done, or left as it was on error.
pub fn run(
    scenes: &[SceneInput],
    params: &TileParams,
    out: &Path,
    opts: &TileOptions,
) -> Result<TileSummary> {
    let start = Instant::now();
    let (scenes, hash) = checked_inputs(scenes, params)?;
    let scenes = scenes.as_slice();
    let files = input_files(scenes);
    let claim = output::claim(out, "tile", &files)?;

    let dir = TilesDir::new(out);
    if let Ok(m) = dir.manifest() {
        if m.input_hash == hash && m.tiles.iter().all(|t| out.join(&t.path).is_file()) {
            let s = summary_of(&m, out, true, 0, start);
            tracing::info!("tiles '{}' are up to date: nothing to do", out.display());
            return Ok(s);
        }
    }
    // Before anything is written: inputs readable, declared sizes bounded, output fits.
    budget::check(scenes, params, out, opts.limits.max_pixels)?;
    // An interrupted run with the same inputs keeps its partial output: its finished tiles
    // are reused. An error discards it (nothing half-written).
    let resume = |partial: &Path| {
        std::fs::read_to_string(TilesDir::new(partial).input_hash()).is_ok_and(|h| h.trim() == hash)
    };
    claim.build_resumable(resume, |partial| {
        let building = TilesDir::new(partial);
        std::fs::write(building.input_hash(), &hash)?;
        let (manifest, n_reused) = tile_all(scenes, params, partial, &hash, opts)?;
        let summary = summary_of(&manifest, out, false, n_reused, start);
        crate::artefacts::write_json(&building.summary_json(), &summary)?;
        crate::artefacts::write_json(&building.manifest_json(), &manifest)?;
        std::fs::remove_file(building.input_hash())?;
        Ok(summary)
    })
}

/// The scenes with absolute paths (the manifest is read later from other working
/// directories), checked, and the hash of the inputs and parameters.
fn checked_inputs(scenes: &[SceneInput], params: &TileParams) -> Result<(Vec<SceneInput>, String)> {
    let scenes: Vec<SceneInput> = scenes.iter().map(absolute_paths).collect::<Result<_>>()?;
    params.check()?;
    if scenes.is_empty() {
        bail!("no scene to tile");
    }
    if let Some(s) = scenes.iter().find_map(|s| s.synth.as_ref()) {
        bail!("scene refers to synthetic scene '{s}': only a pipeline with a [synth.{s}] table can resolve it");
    }
    let mut names: Vec<String> = scenes.iter().map(SceneInput::scene_name).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("two scenes are named '{}'; give them distinct names", w[0]);
    }
    let hash = input_hash(&scenes, params)?;
    Ok((scenes, hash))
}

/// Every input file of `scenes`.
fn input_files(scenes: &[SceneInput]) -> Vec<&Path> {
    scenes
        .iter()
        .flat_map(|s| [Some(&s.reference), Some(&s.moving), s.map.as_ref()])
        .flatten()
        .flat_map(|m| m.files.iter().map(PathBuf::as_path))
        .collect()
}

fn absolute_paths(s: &SceneInput) -> Result<SceneInput> {
    let mut s = s.clone();
    for m in [Some(&mut s.reference), Some(&mut s.moving), s.map.as_mut()].into_iter().flatten() {
        // GDAL's virtual paths are absolute already, and `absolute` would fold the `//` of
        // `/vsizip//abs/archive.zip`, making the archive relative.
        for f in m.files.iter_mut().filter(|f| !f.to_string_lossy().starts_with("/vsi")) {
            *f = std::path::absolute(&*f)
                .with_context(|| format!("input '{}': cannot resolve path", f.display()))?;
        }
    }
    Ok(s)
}

fn input_hash(scenes: &[SceneInput], params: &TileParams) -> Result<String> {
    let mut files = Vec::new();
    for s in scenes {
        for m in [Some(&s.reference), Some(&s.moving), s.map.as_ref()].into_iter().flatten() {
            for f in &m.files {
                files.push(fingerprint::file_id(f).map_err(|_| {
                    anyhow::anyhow!("input '{}': cannot read: no such file", f.display())
                })?);
            }
        }
    }
    Ok(fingerprint::hash_json(&(MANIFEST_FORMAT, params, scenes, files)))
}

fn summary_of(
    m: &Manifest,
    out: &Path,
    up_to_date: bool,
    n_reused: usize,
    start: Instant,
) -> TileSummary {
    let seconds = start.elapsed().as_secs_f64();
    let n_windows: usize = m.scenes.iter().map(|s| s.n_windows).sum();
    let px = (n_windows * m.params.tile_size * m.params.tile_size) as f64;
    TileSummary {
        out: out.to_path_buf(),
        up_to_date,
        n_scenes: m.scenes.len(),
        n_windows,
        n_tiles: m.tiles.len(),
        n_rejected: m.scenes.iter().map(|s| s.n_rejected).sum(),
        n_reused,
        seconds,
        tiles_per_s: m.tiles.len() as f64 / seconds.max(1e-9),
        megapixels_per_s: if up_to_date { 0.0 } else { px / 1e6 / seconds.max(1e-9) },
    }
}

fn tile_all(
    scenes: &[SceneInput],
    params: &TileParams,
    dir: &Path,
    hash: &str,
    opts: &TileOptions,
) -> Result<(Manifest, usize)> {
    let mut pieces = Vec::new();
    for (index, scene) in scenes.iter().enumerate() {
        let (grid, windows) = scene_windows(scene, params)?;
        let all = 0..windows.len();
        pieces.push(cut_scene(scene, index, grid, &windows, all, params, dir, opts)?);
    }
    assemble(pieces, params, hash)
}

/// A scene's reference grid and its windows, in tiling order.
fn scene_windows(
    scene: &SceneInput,
    params: &TileParams,
) -> Result<(Grid, Vec<(Window, Placement)>)> {
    let grid = reference_grid(&scene.reference)?;
    let windows =
        plan_windows(grid.width, grid.height, params.tile_size, params.overlap, params.edge)
            .with_context(|| format!("reference '{}'", scene.reference.files[0].display()))?;
    Ok((grid, windows))
}

/// The manifest of pieces covering every window of every scene (several pieces of a scene,
/// from shards, follow one another in window order).
fn assemble(pieces: Vec<ScenePiece>, params: &TileParams, hash: &str) -> Result<(Manifest, usize)> {
    let mut entries = Vec::new();
    let mut tiles = Vec::new();
    let mut reused = 0;
    let mut pieces = pieces.into_iter().peekable();
    while let Some(first) = pieces.next() {
        let mut scene = vec![first];
        while let Some(p) = pieces.next_if(|p| p.index == scene[0].index) {
            scene.push(p);
        }
        let (entry, mut t, r) = finish_scene(scene)?;
        entries.push(entry);
        tiles.append(&mut t);
        reused += r;
    }
    if tiles.is_empty() {
        bail!(
            "no tile reached --min-valid {} (every window had too much nodata)",
            params.min_valid
        );
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        simreg_version: env!("CARGO_PKG_VERSION").into(),
        input_hash: hash.into(),
        params: params.clone(),
        scenes: entries,
        tiles,
    };
    Ok((manifest, reused))
}

/// Windows `range` of one scene, cut: its tiles and what the scene's entry needs from them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ScenePiece {
    /// The scene's place in the input order.
    pub index: usize,
    pub range: std::ops::Range<usize>,
    /// The scene's entry without statistics, counting this piece's tiles.
    pub entry: SceneEntry,
    pub tiles: Vec<TileEntry>,
    pub n_reused: usize,
    /// Per modality, pixels of the piece's windows where all of its bands are valid.
    pub valid_per_modality: Vec<usize>,
    /// Per band, the statistics' samples of the piece's tiles, in window order (kept out of
    /// shard.json, in samples.bin).
    #[serde(skip)]
    pub samples: Vec<Vec<f32>>,
}

/// One scene's entry and tiles from its pieces (in window order, covering every window).
fn finish_scene(pieces: Vec<ScenePiece>) -> Result<(SceneEntry, Vec<TileEntry>, usize)> {
    let mut entry = pieces[0].entry.clone();
    let n_bands: usize = entry.modalities.iter().map(|m| m.bands.len()).sum();
    let mut samples = vec![Vec::new(); n_bands];
    let mut valid = vec![0; entry.modalities.len()];
    let (mut tiles, mut reused) = (Vec::new(), 0);
    for p in pieces {
        for (all, s) in samples.iter_mut().zip(p.samples) {
            all.extend(s);
        }
        for (all, v) in valid.iter_mut().zip(p.valid_per_modality) {
            *all += v;
        }
        tiles.extend(p.tiles);
        reused += p.n_reused;
    }
    for (m, &v) in entry.modalities.iter().zip(&valid) {
        if v == 0 {
            bail!("{}: all pixels are nodata on the reference grid", m.label());
        }
    }
    let mut samples = samples.into_iter();
    for m in &mut entry.modalities {
        for b in &mut m.bands {
            b.stats = stats::summarise(samples.next().expect("one per band"), m.kind.stat_scale());
        }
    }
    entry.n_tiles = tiles.len();
    entry.n_rejected = entry.n_windows - tiles.len();
    tracing::info!("scene {}: {} tiles, {} rejected", entry.name, entry.n_tiles, entry.n_rejected);
    Ok((entry, tiles, reused))
}

/// Cuts windows `range` of scene `index` (on its reference `grid`, whose windows are
/// `windows`) into tiles under `dir`.
#[allow(clippy::too_many_arguments)]
fn cut_scene(
    scene: &SceneInput,
    index: usize,
    grid: Grid,
    windows: &[(Window, Placement)],
    range: std::ops::Range<usize>,
    params: &TileParams,
    dir: &Path,
    opts: &TileOptions,
) -> Result<ScenePiece> {
    let name = scene.scene_name();
    // Warping VRTs and rasterised copies on the reference grid stay with the tiles (later
    // stages read around tiles from them).
    let work = dir.join(&name).join("grid");
    atomic::create_dir(&work)?;
    let mut mods = vec![
        prepare_modality(Role::Reference, &scene.reference, &grid, &work, params)?,
        prepare_modality(Role::Moving, &scene.moving, &grid, &work, params)?,
    ];
    if let Some(map) = &scene.map {
        mods.push(prepare_modality(Role::Map, map, &grid, &work, params)?);
    }
    let all_bands = || mods.iter().flat_map(|m| m.bands.iter());
    let sample = tile_sample_type(params.dtype, all_bands().map(|b| b.dtype.as_str()));
    let preferred_nodata = all_bands().find_map(|b| b.source_nodata);
    let scene_dir = dir.join(&name);
    atomic::create_dir(&scene_dir)?;

    let mine = &windows[range.clone()];
    let pb = if opts.quiet { ProgressBar::hidden() } else { ProgressBar::new(mine.len() as u64) };
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tiles ({per_sec}, eta {eta})")
            .unwrap()
            .progress_chars("=> "),
    );
    pb.set_message(format!("tiling {name}"));
    let ctx = SceneCtx {
        name: &name,
        grid: &grid,
        mods: &mods,
        params,
        dir,
        samples_per_tile: stats::samples_per_tile(windows.len()),
        write: GeoTiffOptions { compress: params.compress, sample, preferred_nodata },
        strip_type: StripType::of(&mods, sample, opts.converted_reads),
    };
    // Windows of one tile row, in runs of at most STRIP_WINDOWS: each run is read once per
    // band as a strip (a few large reads instead of many small ones; memory bounded).
    let runs: Vec<&[(Window, Placement)]> = mine
        .chunk_by(|a, b| a.0.row == b.0.row)
        .flat_map(|row| row.chunks(STRIP_WINDOWS))
        .collect();
    let outcomes: Vec<WindowOutcome> = runs
        .par_iter()
        .map(|run| {
            let out = ctx.cut_run(run);
            pb.inc(run.len() as u64);
            out
        })
        .collect::<Result<Vec<Vec<_>>>>()?
        .into_iter()
        .flatten()
        .collect();
    pb.finish_and_clear();

    let n_bands: usize = mods.iter().map(|m| m.bands.len()).sum();
    let mut samples = vec![Vec::new(); n_bands];
    let mut valid_per_modality = vec![0; mods.len()];
    for o in &outcomes {
        for (all, v) in valid_per_modality.iter_mut().zip(&o.valid_per_modality) {
            *all += v;
        }
        if o.tile.is_some() {
            for (b, s) in o.samples.iter().enumerate() {
                samples[b].extend_from_slice(s);
            }
        }
    }
    let mut modalities = Vec::new();
    let mut tile_band = 0;
    for m in &mods {
        let bands = m
            .bands
            .iter()
            .map(|b| {
                tile_band += 1;
                BandEntry {
                    tile_band,
                    description: b.description.clone(),
                    source: b.source.clone(),
                    source_band: b.source_band,
                    grid_file: b
                        .read_from
                        .strip_prefix(dir)
                        .map_or_else(|_| b.read_from.clone(), Path::to_path_buf),
                    grid_band: b.read_band,
                    grid_mask_band: b.mask_band,
                    grid_offset: b.offset,
                    // NaN is nodata anyway (and JSON has no NaN: it would read back as none).
                    nodata: b.nodata.filter(|n| !n.is_nan()),
                    stats: None,
                }
            })
            .collect();
        modalities.push(ModalityEntry {
            role: m.role,
            kind: m.kind,
            sources: m.sources.clone(),
            bands,
        });
    }
    let n_reused = outcomes.iter().filter(|o| o.reused).count();
    let tiles: Vec<TileEntry> = outcomes.into_iter().filter_map(|o| o.tile).collect();
    let entry = SceneEntry {
        name: name.clone(),
        grid,
        sample_type: sample,
        modalities,
        n_windows: windows.len(),
        n_tiles: tiles.len(),
        n_rejected: mine.len() - tiles.len(),
    };
    Ok(ScenePiece { index, range, entry, tiles, n_reused, valid_per_modality, samples })
}
