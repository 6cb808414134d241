//! `tile --shard K/N` and `merge tile`: the windows of all scenes, in tiling order, split into
//! N contiguous ranges. Shard K cuts its range into a tiles folder of its own (tiles, grid
//! files, and `shard.json` + `samples.bin`: what the scenes' entries need from its windows);
//! the merge links every shard's files into one tiles folder and writes the manifest that one
//! process tiling everything would have written (the same entries, statistics and order).
use super::{
    assemble, budget, checked_inputs, cut_scene, input_files, scene_windows, summary_of,
    ScenePiece, TileOptions,
};
use crate::artefacts::tiles::{SceneInput, TileParams, TileSummary, TilesDir};
use crate::artefacts::{read_json, write_json};
use crate::util::shard::{read_all, Shard, ShardJson, SHARD_JSON};
use crate::util::{atomic, output};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

const SHARD_FORMAT: &str = "simreg-tile-shard/1";
const SAMPLES_BIN: &str = "samples.bin";

/// `shard.json`: which windows a shard cut, and per scene piece what its entry needs.
#[derive(Debug, Serialize, Deserialize)]
struct ShardFile {
    format: String,
    /// The hash of all the inputs and parameters (the same for every shard of one tiling).
    input_hash: String,
    shard: Shard,
    params: TileParams,
    /// The shard's range of the windows of all scenes, in tiling order.
    windows: std::ops::Range<usize>,
    n_windows_total: usize,
    pieces: Vec<ScenePiece>,
    /// Per piece and band, how many samples of `samples.bin` (little-endian f32, in piece then
    /// band order) are its.
    sample_counts: Vec<Vec<usize>>,
}

impl crate::artefacts::JsonArtefact for ShardFile {
    const WHAT: &'static str = "tile shard";
    const MADE_BY: &'static str = "simreg tile --shard K/N";
}

impl ShardJson for ShardFile {
    const FORMAT: &'static str = SHARD_FORMAT;
    const STAGE: &'static str = "tile";
    fn shard(&self) -> Shard {
        self.shard
    }
    fn input_hash(&self) -> &str {
        &self.input_hash
    }
}

/// Cuts shard `shard` of the windows of `scenes` into `out` (replaced as a whole when done; a
/// rerun with the same inputs finds it done).
pub fn run_shard(
    scenes: &[SceneInput],
    params: &TileParams,
    out: &Path,
    opts: &TileOptions,
    shard: Shard,
) -> Result<TileSummary> {
    let start = Instant::now();
    let (scenes, hash) = checked_inputs(scenes, params)?;
    let claim = output::claim(out, "tile", &input_files(&scenes))?;
    if let Ok(f) = read_json::<ShardFile>(&out.join(SHARD_JSON)) {
        if f.format == SHARD_FORMAT && f.input_hash == hash && f.shard == shard {
            tracing::info!("tile shard {shard} in '{}' is done: nothing to do", out.display());
            return Ok(shard_summary(&f, out, true, start));
        }
    }
    budget::check(&scenes, params, out, opts.limits.max_pixels)?;
    let windows: Vec<_> = scenes.iter().map(|s| scene_windows(s, params)).collect::<Result<_>>()?;
    let total: usize = windows.iter().map(|(_, w)| w.len()).sum();
    let mine = shard.range(total);
    claim.build(|partial| {
        let mut pieces = Vec::new();
        let mut first = 0;
        for (index, (scene, (grid, w))) in scenes.iter().zip(&windows).enumerate() {
            // This scene's windows are first..first + w.len() of all.
            let lo = mine.start.clamp(first, first + w.len()) - first;
            let hi = mine.end.clamp(first, first + w.len()) - first;
            first += w.len();
            if lo < hi {
                let grid = grid.clone();
                pieces.push(cut_scene(scene, index, grid, w, lo..hi, params, partial, opts)?);
            }
        }
        let mut bytes = Vec::new();
        let sample_counts = pieces
            .iter()
            .map(|p| {
                p.samples
                    .iter()
                    .map(|s| {
                        bytes.extend(s.iter().flat_map(|v| v.to_le_bytes()));
                        s.len()
                    })
                    .collect()
            })
            .collect();
        atomic::write_bytes(&partial.join(SAMPLES_BIN), &bytes)?;
        let f = ShardFile {
            format: SHARD_FORMAT.into(),
            input_hash: hash.clone(),
            shard,
            params: params.clone(),
            windows: mine.clone(),
            n_windows_total: total,
            pieces,
            sample_counts,
        };
        // Last: a shard folder with a shard.json is complete.
        write_json(&partial.join(SHARD_JSON), &f)?;
        Ok(shard_summary(&f, out, false, start))
    })
}

fn shard_summary(f: &ShardFile, out: &Path, up_to_date: bool, start: Instant) -> TileSummary {
    let seconds = start.elapsed().as_secs_f64();
    let n_tiles: usize = f.pieces.iter().map(|p| p.tiles.len()).sum();
    let px = (f.windows.len() * f.params.tile_size * f.params.tile_size) as f64;
    TileSummary {
        out: out.to_path_buf(),
        up_to_date,
        n_scenes: f.pieces.len(),
        n_windows: f.windows.len(),
        n_tiles,
        n_rejected: f.windows.len() - n_tiles,
        n_reused: f.pieces.iter().map(|p| p.n_reused).sum(),
        seconds,
        tiles_per_s: n_tiles as f64 / seconds.max(1e-9),
        megapixels_per_s: if up_to_date { 0.0 } else { px / 1e6 / seconds.max(1e-9) },
    }
}

/// Reads the statistics' samples of the shard `f` in `dir` into its pieces.
fn read_samples(dir: &Path, f: &mut ShardFile) -> Result<()> {
    let bin = dir.join(SAMPLES_BIN);
    let bytes = std::fs::read(&bin).with_context(|| format!("'{}': cannot read", bin.display()))?;
    let mut values = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let expected: usize = f.sample_counts.iter().flatten().sum();
    if bytes.len() != expected * 4 {
        bail!("'{}': {} bytes, expected {} (truncated?)", bin.display(), bytes.len(), expected * 4);
    }
    for (p, counts) in f.pieces.iter_mut().zip(&f.sample_counts) {
        p.samples = counts.iter().map(|&n| values.by_ref().take(n).collect()).collect();
    }
    Ok(())
}

/// Merges the complete tile shards in `shards` into the tiles folder `out` (replaced as a
/// whole when done): the manifest and tiles one process would have written. Refuses shards
/// of different inputs, and an incomplete set, naming the shards missing.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<TileSummary> {
    let start = Instant::now();
    let mut files: Vec<(PathBuf, ShardFile)> = read_all(shards)?;
    for (dir, f) in &mut files {
        read_samples(dir, f)?;
    }
    let (hash, params) = (files[0].1.input_hash.clone(), files[0].1.params.clone());
    let inputs: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
    let claim = output::claim(out, "tile", &inputs)?;
    if let Ok(m) = TilesDir::new(out).manifest() {
        if m.input_hash == hash && m.tiles.iter().all(|t| out.join(&t.path).is_file()) {
            tracing::info!("tiles '{}' are up to date: nothing to do", out.display());
            return Ok(summary_of(&m, out, true, 0, start));
        }
    }
    claim.build(|partial| {
        let mut pieces = Vec::new();
        for (dir, f) in files {
            for p in &f.pieces {
                let grid_files =
                    p.entry.modalities.iter().flat_map(|m| &m.bands).map(|b| &b.grid_file);
                let rels =
                    p.tiles.iter().map(|t| &t.path).chain(grid_files.filter(|g| g.is_relative()));
                for rel in rels {
                    atomic::link_or_copy(&dir.join(rel), &partial.join(rel))?;
                }
            }
            pieces.extend(f.pieces);
        }
        pieces.sort_by_key(|p| (p.index, p.range.start));
        let (manifest, n_reused) = assemble(pieces, &params, &hash)?;
        let summary = summary_of(&manifest, out, false, n_reused, start);
        let building = TilesDir::new(partial);
        write_json(&building.summary_json(), &summary)?;
        write_json(&building.manifest_json(), &manifest)?;
        Ok(summary)
    })
}
