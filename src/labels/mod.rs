//! The `labels` stage: turns aligned tiles into a registration problem with noisy labels.
//!
//! For each tile: draw a displacement field D, warp the moving modality by it (read from the
//! on-grid copy with a margin, so no missing pixels enter), and record the noisy label
//! L = mean over the centre window of (D + ε). Truth (D and ε) goes to `truth.json` and
//! `truth/`, which no training stage reads.
//!
//! Convention: D is in pixels of the reference grid, x to the east and y to the south. The
//! moving content that belongs at reference position p appears at p + D(p) in the displaced
//! moving tile (out(q) = moving(q − D(q))); registering means moving it back by −D.
pub mod field;
pub mod noise;
mod shard;

pub use shard::{merge, run_shard};

use crate::artefacts::labels::{
    LabelEntry, LabelParams, LabelSummary, LabelsDir, NoiseModel, Target, TruthEntry,
    TARGET_DEFINITION,
};
use crate::artefacts::tiles::{Manifest, TileEntry, TilesDir};
use crate::artefacts::{read_json, write_json};
use crate::raster::bands::OpenFiles;
use crate::raster::kind::{ModalityKind, Role};
use crate::raster::resample::{self as warp, Source};
use crate::raster::write::{write_geotiff, BandData, GeoTiffOptions};
use crate::raster::Window;
use crate::util::{fingerprint, output};
use anyhow::{bail, Context, Result};
use field::{Field, FieldParams};
use indicatif::{ParallelProgressIterator, ProgressBar, ProgressStyle};
use noise::SmoothNoise;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct LabelOptions {
    pub quiet: bool,
}

/// Runs the stage on the tiles in `tiles_dir`, writing `out` (replaced as a whole when done).
pub fn run(
    tiles_dir: &Path,
    out: &Path,
    p: &LabelParams,
    opts: &LabelOptions,
) -> Result<LabelSummary> {
    let start = Instant::now();
    let (manifest, centre, hash) = checked_inputs(tiles_dir, p)?;
    let claim = output::claim(out, "labels", &[tiles_dir])?;
    if let Some(s) = up_to_date(out, &hash, start) {
        return Ok(s);
    }
    let summary = claim.build(|partial| {
        label_all(&manifest, tiles_dir, partial, out, p, centre, &hash, opts, start)
    })?;
    Ok(LabelSummary { seconds: start.elapsed().as_secs_f64(), ..summary })
}

/// The summary of `out` when it holds labels of the same inputs and parameters (`hash`), and
/// a summary this simreg reads (an older one is made again).
fn up_to_date(out: &Path, hash: &str, start: Instant) -> Option<LabelSummary> {
    let done = LabelsDir::new(out);
    let h = std::fs::read_to_string(done.input_hash()).ok()?;
    let mut s = read_json::<LabelSummary>(&done.summary_json()).ok()?;
    (h.trim() == hash && s.params.is_some()).then(|| {
        s.up_to_date = true;
        s.seconds = start.elapsed().as_secs_f64();
        s
    })
}

/// The tiles' manifest (every tile present), the centre window, and the hash of the inputs
/// and parameters.
fn checked_inputs(tiles_dir: &Path, p: &LabelParams) -> Result<(Manifest, usize, String)> {
    let tiles = TilesDir::new(tiles_dir);
    let manifest = tiles.manifest()?;
    for t in &manifest.tiles {
        if !tiles.file(&t.path).is_file() {
            bail!(
                "tiles manifest '{}': tile '{}' is missing ({})",
                tiles.manifest_json().display(),
                t.id,
                tiles.file(&t.path).display()
            );
        }
    }
    let size = manifest.params.tile_size;
    let centre = p.centre.unwrap_or(size / 2);
    check(p, size, centre)?;
    let hash = fingerprint::hash_json(&(&manifest.input_hash, p));
    Ok((manifest, centre, hash))
}

/// How fields are drawn, from the stage's parameters.
fn field_params(p: &LabelParams) -> FieldParams {
    FieldParams {
        amplitude: p.amplitude,
        field_amplitude: p.field_amplitude,
        bumps: p.bumps,
        bump_scale: p.bump_scale,
    }
}

fn check(p: &LabelParams, size: usize, centre: usize) -> Result<()> {
    p.check()?;
    if centre == 0 || centre > size || (size - centre) % 2 != 0 {
        bail!("centre window {centre} must be within 1..={size} and leave an even margin in a {size}-pixel tile");
    }
    let margin = (size - centre) / 2;
    let reach = field_params(p).max_abs();
    if reach > margin as f64 {
        bail!("amplitude {reach} px (translation {} + field {}) exceeds the tile's margin of {margin} px around its {centre}-pixel centre window", p.amplitude, p.field_amplitude);
    }
    Ok(())
}

/// One tile's label and truth.
#[derive(Debug, Serialize, Deserialize)]
struct Labelled {
    id: String,
    label: LabelEntry,
    truth: TruthEntry,
}

#[allow(clippy::too_many_arguments)]
fn label_all(
    m: &Manifest,
    tiles_dir: &Path,
    dir: &Path,
    out: &Path,
    p: &LabelParams,
    centre: usize,
    hash: &str,
    opts: &LabelOptions,
    start: Instant,
) -> Result<LabelSummary> {
    let done = label_range(m, tiles_dir, dir, p, centre, 0..m.tiles.len(), opts)?;
    write_outputs(m, tiles_dir, dir, out, p, centre, hash, done, start)
}

/// Labels tiles `range` of the manifest into `dir`: each tile's draws come from its own
/// random stream (its index), so any split of the tiles labels each one alike.
fn label_range(
    m: &Manifest,
    tiles_dir: &Path,
    dir: &Path,
    p: &LabelParams,
    centre: usize,
    range: std::ops::Range<usize>,
    opts: &LabelOptions,
) -> Result<Vec<Labelled>> {
    let size = m.params.tile_size;
    // One correlated-noise field per scene (two components), shared by its tiles.
    let scene_noise: BTreeMap<&str, [SmoothNoise; 2]> = m
        .scenes
        .iter()
        .enumerate()
        .filter(|_| p.noise.model == NoiseModel::Correlated)
        .map(|(i, s)| {
            let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
            rng.set_stream((1 << 40) + i as u64);
            (
                s.name.as_str(),
                [
                    SmoothNoise::new(p.noise.sigma, p.noise.corr_length, &mut rng),
                    SmoothNoise::new(p.noise.sigma, p.noise.corr_length, &mut rng),
                ],
            )
        })
        .collect();
    let moving_kind = |scene: &str| -> ModalityKind {
        m.scene(scene)
            .and_then(|s| s.modalities.iter().find(|md| md.role == Role::Moving))
            .map_or(ModalityKind::Optical, |md| md.kind)
    };
    let pb = if opts.quiet { ProgressBar::hidden() } else { ProgressBar::new(range.len() as u64) };
    pb.set_style(
        ProgressStyle::with_template("labels [{bar:30}] {pos}/{len} tiles ({per_sec}, eta {eta})")
            .unwrap()
            .progress_chars("=> "),
    );
    let done: Vec<Labelled> = m.tiles[range.clone()]
        .par_iter()
        .zip(range)
        .progress_with(pb.clone())
        .map_init(OpenFiles::default, |open, (t, i)| {
            let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
            rng.set_stream(i as u64);
            label_tile(
                open,
                m,
                tiles_dir,
                dir,
                t,
                p,
                size,
                centre,
                &mut rng,
                scene_noise.get(t.scene.as_str()),
                moving_kind(&t.scene),
            )
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();
    Ok(done)
}

/// RMS of the label noise per axis, summed in tile order (any split of the tiles gives the
/// same figures).
fn label_noise_rmse(labelled: &[Labelled]) -> [f64; 2] {
    let (mut sx, mut sy) = (0.0, 0.0);
    for l in labelled {
        sx += l.truth.noise[0].powi(2);
        sy += l.truth.noise[1].powi(2);
    }
    let n = labelled.len() as f64;
    [(sx / n).sqrt(), (sy / n).sqrt()]
}

/// The stage's JSON outputs from every tile's label and truth (in manifest order).
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    m: &Manifest,
    tiles_dir: &Path,
    dir: &Path,
    out: &Path,
    p: &LabelParams,
    centre: usize,
    hash: &str,
    done: Vec<Labelled>,
    start: Instant,
) -> Result<LabelSummary> {
    let size = m.params.tile_size;
    let tiles_abs = std::fs::canonicalize(tiles_dir)?;
    let label_noise_rmse_px = label_noise_rmse(&done);
    let mut labels = BTreeMap::new();
    let mut truth = BTreeMap::new();
    for l in done {
        labels.insert(l.id.clone(), l.label);
        truth.insert(l.id, l.truth);
    }
    let n = labels.len();
    let files = LabelsDir::new(dir);
    write_json(&files.labels_json(), &labels)?;
    write_json(&files.truth_json(), &truth)?;
    let moving_bands = m
        .scenes
        .first()
        .and_then(|s| s.modalities.iter().find(|md| md.role == Role::Moving))
        .map(|md| md.bands.iter().map(|b| b.description.clone()).collect())
        .unwrap_or_default();
    let target = Target {
        definition: TARGET_DEFINITION.into(),
        units: "pixels of the reference grid".into(),
        axes: "x to the east (columns), y to the south (rows)".into(),
        tile_size: size,
        centre_offset: (size - centre) / 2,
        centre_size: centre,
        tiles_dir: tiles_abs,
        tiles_input_hash: m.input_hash.clone(),
        moving_bands,
    };
    write_json(&files.target_json(), &target)?;
    let summary = LabelSummary {
        out: out.to_path_buf(),
        up_to_date: false,
        n_tiles: n,
        noise_model: p.noise.model_name(),
        label_noise_rmse_px,
        // What the run took, as recorded on disk (a rerun that finds it up to date keeps it).
        seconds: start.elapsed().as_secs_f64(),
        params: Some(p.clone()),
    };
    write_json(&files.summary_json(), &summary)?;
    std::fs::write(files.input_hash(), hash)?;
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn label_tile(
    open: &mut OpenFiles,
    m: &Manifest,
    tiles_dir: &Path,
    dir: &Path,
    t: &TileEntry,
    p: &LabelParams,
    size: usize,
    centre: usize,
    rng: &mut ChaCha8Rng,
    scene_noise: Option<&[SmoothNoise; 2]>,
    kind: ModalityKind,
) -> Result<Labelled> {
    let scene = m
        .scene(&t.scene)
        .with_context(|| format!("tile '{}' names unknown scene '{}'", t.id, t.scene))?;
    let d = Field::draw(size, &field_params(p), rng);
    let (noise_offset, outlier) = noise::tile_offset_flagged(&p.noise, rng);
    // Dense noise over the tile: per-tile constant part + the scene's smooth field.
    let mut ex = vec![noise_offset[0]; size * size];
    let mut ey = vec![noise_offset[1]; size * size];
    if let Some([fx, fy]) = scene_noise {
        for i in 0..size * size {
            let (x, y) = (
                t.window.col as f64 + (i % size) as f64 + 0.5,
                t.window.row as f64 + (i / size) as f64 + 0.5,
            );
            ex[i] += fx.at(x, y);
            ey[i] += fy.at(x, y);
        }
    }
    let lx: Vec<f64> = d.dx.iter().zip(&ex).map(|(a, b)| a + b).collect();
    let ly: Vec<f64> = d.dy.iter().zip(&ey).map(|(a, b)| a + b).collect();
    let truth_mean = d.centre_mean(centre);
    let label = field::centre_mean(&lx, &ly, size, centre);

    // The moving modality around the tile, with room for the largest displacement.
    let margin = d.max_abs().ceil() as usize + 3;
    let around = Window {
        col: t.window.col - margin as i64,
        row: t.window.row - margin as i64,
        width: size + 2 * margin,
        height: size + 2 * margin,
    };
    let bands = scene.read_modality(open, tiles_dir, Role::Moving, around)?;
    let descs: Vec<String> = scene
        .modalities
        .iter()
        .find(|md| md.role == Role::Moving)
        .map(|md| md.bands.iter().map(|b| b.description.clone()).collect())
        .unwrap_or_default();
    let warped: Vec<BandData> = bands
        .into_iter()
        .zip(descs)
        .map(|(mut px, description)| {
            // SAR in dB is resampled as linear power, then brought back to dB.
            if kind == ModalityKind::SarDb {
                px.iter_mut().for_each(|v| *v = 10f32.powf(*v / 10.0));
            }
            let src = Source { pixels: &px, width: around.width, height: around.height, margin };
            let out = warp::warp(&src, &d.dx, &d.dy, size, p.interp);
            let pixels =
                out.iter()
                    .map(|&v| {
                        if kind == ModalityKind::SarDb {
                            (10.0 * v.log10()) as f32
                        } else {
                            v as f32
                        }
                    })
                    .collect();
            BandData { description, pixels }
        })
        .collect();

    let stem = t.id.clone();
    let moving = PathBuf::from(format!("{stem}.moving.tif"));
    let label_field = PathBuf::from(format!("{stem}.label.tif"));
    let truth_field = PathBuf::from(format!("truth/{stem}.field.tif"));
    for f in [&moving, &truth_field] {
        if let Some(parent) = dir.join(f).parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let opts = GeoTiffOptions::default();
    let crs = &scene.grid.crs_wkt;
    write_geotiff(
        &dir.join(&moving),
        crs,
        t.geotransform,
        size,
        size,
        warped,
        &[("SIMREG_TILE_ID", t.id.clone())],
        opts,
    )?;
    let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let two = |a: &[f64], b: &[f64]| {
        vec![
            BandData { description: "dx".into(), pixels: as_f32(a) },
            BandData { description: "dy".into(), pixels: as_f32(b) },
        ]
    };
    write_geotiff(
        &dir.join(&label_field),
        crs,
        t.geotransform,
        size,
        size,
        two(&lx, &ly),
        &[("SIMREG_UNITS", "px, x east, y south".into())],
        opts,
    )?;
    write_geotiff(
        &dir.join(&truth_field),
        crs,
        t.geotransform,
        size,
        size,
        two(&d.dx, &d.dy),
        &[("SIMREG_UNITS", "px, x east, y south".into())],
        opts,
    )?;
    Ok(Labelled {
        id: t.id.clone(),
        label: LabelEntry { label, moving, label_field },
        truth: TruthEntry {
            displacement: truth_mean,
            noise: [label[0] - truth_mean[0], label[1] - truth_mean[1]],
            field: truth_field,
            outlier,
        },
    })
}
