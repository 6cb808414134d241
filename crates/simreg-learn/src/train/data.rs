//! Training data: tiles (reference bands) + displaced moving tiles + noisy labels, normalised
//! with each scene's robust statistics. Truth is loaded apart, for reporting only.
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use simreg::artefacts::labels::{LabelEntry, LabelsDir, Target};
use simreg::artefacts::tiles::{Manifest, SceneEntry, TileEntry, TilesDir};
use simreg::artefacts::train::TrainDir;
use simreg::raster::bands::{read_bands, BandReader};
use simreg::raster::kind::Role;
use simreg::raster::stats::BandStats;
use std::collections::BTreeMap;
use std::path::Path;

/// All samples of a labelled run, in memory (row-major, band-major per sample).
pub struct Dataset {
    pub ids: Vec<String>,
    pub reference: Vec<f32>,
    pub moving: Vec<f32>,
    /// Dense noisy label over the centre window: (2, C, C) per sample, px.
    pub label_field: Vec<f32>,
    /// Noisy centre-window mean, px.
    pub label: Vec<[f32; 2]>,
    pub reference_bands: usize,
    pub moving_bands: usize,
    pub target: Target,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The statistics that normalise band `band` of `role` in `scene` (`BandStats::normalise`).
fn normaliser(scene: &SceneEntry, role: Role, band: usize) -> Result<&BandStats> {
    let m = scene
        .modalities
        .iter()
        .find(|m| m.role == role)
        .with_context(|| format!("scene '{}' has no {} modality", scene.name, role.name()))?;
    let b = &m.bands[band];
    b.stats.as_ref().with_context(|| {
        format!("scene '{}': band '{}' has no statistics", scene.name, b.description)
    })
}

/// The 1-based bands of modality `role` in the scene's tile files.
fn tile_bands(scene: &SceneEntry, role: Role) -> Vec<usize> {
    scene
        .modalities
        .iter()
        .find(|m| m.role == role)
        .map(|m| m.bands.iter().map(|b| b.tile_band).collect())
        .unwrap_or_default()
}

/// Reads `bands` (1-based) of the raster at `path`, normalised as band k of `role` in `scene`.
fn read_normalised(
    path: &Path,
    bands: &[usize],
    scene: &SceneEntry,
    role: Role,
    what: &str,
) -> Result<Vec<f32>> {
    let (px, _, _) = read_bands(path, Some(bands), what)?;
    let mut out = Vec::with_capacity(px.iter().map(Vec::len).sum());
    for (k, band) in px.iter().enumerate() {
        let s = normaliser(scene, role, k)?;
        out.extend(band.iter().map(|&v| s.normalise(v)));
    }
    Ok(out)
}

/// Network inputs of some tiles, normalised (row-major, band-major per sample).
pub struct Inputs {
    pub ids: Vec<String>,
    pub reference: Vec<f32>,
    pub moving: Vec<f32>,
    pub reference_bands: usize,
    pub moving_bands: usize,
}

/// Network inputs of tiles as cut (reference and moving bands from the tile files), for
/// predicting on data without labels.
pub fn load_tiles(tiles_dir: &Path) -> Result<Inputs> {
    let manifest = TilesDir::new(tiles_dir).manifest()?;
    let first = manifest.scenes.first().context("tiles manifest has no scene")?;
    let (cr, cm) =
        (tile_bands(first, Role::Reference).len(), tile_bands(first, Role::Moving).len());
    let loaded: Vec<(Vec<f32>, Vec<f32>)> = manifest
        .tiles
        .par_iter()
        .map(|t| {
            let scene = manifest
                .scene(&t.scene)
                .with_context(|| format!("tile '{}': unknown scene", t.id))?;
            let (rb, mb) = (tile_bands(scene, Role::Reference), tile_bands(scene, Role::Moving));
            if (rb.len(), mb.len()) != (cr, cm) {
                bail!(
                    "tiles '{}': scene '{}' has another band layout than '{}'",
                    tiles_dir.display(),
                    scene.name,
                    first.name
                );
            }
            let path = tiles_dir.join(&t.path);
            Ok((
                read_normalised(&path, &rb, scene, Role::Reference, "tile")?,
                read_normalised(&path, &mb, scene, Role::Moving, "tile")?,
            ))
        })
        .collect::<Result<_>>()?;
    let ids = manifest.tiles.iter().map(|t| t.id.clone()).collect();
    let (mut r, mut m) = (Vec::new(), Vec::new());
    for (a, b) in loaded {
        r.extend(a);
        m.extend(b);
    }
    Ok(Inputs { ids, reference: r, moving: m, reference_bands: cr, moving_bands: cm })
}

/// A labelled run opened for reading: what every sample is, checked, with nothing loaded yet.
pub struct LabelledRun {
    pub dir: std::path::PathBuf,
    pub target: Target,
    pub manifest: Manifest,
    pub ids: Vec<String>,
    pub labels: Vec<LabelEntry>,
    /// Sample i's position in `manifest.tiles`.
    tile_index: Vec<usize>,
    pub reference_bands: usize,
    pub moving_bands: usize,
}

/// The network inputs and dense labels of some samples (row-major, band-major per sample).
pub struct Samples {
    pub reference: Vec<f32>,
    pub moving: Vec<f32>,
    pub label_field: Vec<f32>,
}

impl LabelledRun {
    /// Opens a labelled run. Errors name what is wrong: labels made from other tiles, tiles
    /// missing, band layouts that differ between scenes, an empty set.
    pub fn open(labels_dir: &Path) -> Result<LabelledRun> {
        let dir = LabelsDir::new(labels_dir);
        let target = dir.target()?;
        let labels = dir.labels()?;
        let manifest = TilesDir::new(&target.tiles_dir).manifest()?;
        if manifest.input_hash != target.tiles_input_hash {
            bail!("labels '{}' were made from other tiles than those now in '{}' (the tiles were re-cut): rerun `simreg labels`", labels_dir.display(), target.tiles_dir.display());
        }
        if labels.is_empty() {
            bail!("labels '{}': empty training set (no labelled tile)", labels_dir.display());
        }
        let layout = |s: &SceneEntry, role: Role| tile_bands(s, role).len();
        let first = manifest.scenes.first().context("tiles manifest has no scene")?;
        let (cr, cm) = (layout(first, Role::Reference), layout(first, Role::Moving));
        for s in &manifest.scenes {
            if (layout(s, Role::Reference), layout(s, Role::Moving)) != (cr, cm) {
                bail!("tiles '{}': scene '{}' has {}+{} reference+moving bands but '{}' has {cr}+{cm}; train on scenes with one band layout", target.tiles_dir.display(), s.name, layout(s, Role::Reference), layout(s, Role::Moving), first.name);
            }
        }
        let pos: BTreeMap<&str, usize> =
            manifest.tiles.iter().enumerate().map(|(k, t)| (t.id.as_str(), k)).collect();
        let tile_index = labels
            .keys()
            .map(|id| {
                pos.get(id.as_str()).copied().with_context(|| {
                    format!("labels name tile '{id}', which the tiles manifest does not have")
                })
            })
            .collect::<Result<_>>()?;
        let (ids, labels) = labels.into_iter().unzip();
        Ok(LabelledRun {
            dir: labels_dir.to_path_buf(),
            target,
            manifest,
            ids,
            labels,
            tile_index,
            reference_bands: cr,
            moving_bands: cm,
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The tile entry of sample `i`.
    pub fn tile(&self, i: usize) -> &TileEntry {
        &self.manifest.tiles[self.tile_index[i]]
    }

    /// The samples the model in `model_dir` was trained on (its `split.json`): the similarity
    /// stage's set S.
    pub fn trained_on(&self, model_dir: &Path) -> Result<Vec<usize>> {
        let split = TrainDir::new(model_dir).split()?;
        let index: BTreeMap<&str, usize> =
            self.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        split
            .train
            .iter()
            .map(|id| {
                index.get(id.as_str()).copied().with_context(|| {
                    format!(
                        "model '{}' was trained on tile '{id}', which labels '{}' do not have",
                        model_dir.display(),
                        self.dir.display()
                    )
                })
            })
            .collect()
    }

    /// Reads samples `idx` (in that order) from disk, in parallel.
    pub fn read(&self, idx: &[usize]) -> Result<Samples> {
        let (t, c, o) = (self.target.tile_size, self.target.centre_size, self.target.centre_offset);
        let cm = self.moving_bands;
        type One = (Vec<f32>, Vec<f32>, Vec<f32>);
        let loaded: Vec<One> = idx
            .par_iter()
            .map(|&i| -> Result<One> {
                let (id, e) = (&self.ids[i], &self.labels[i]);
                let tile = self.tile(i);
                let scene = self
                    .manifest
                    .scene(&tile.scene)
                    .with_context(|| format!("tile '{id}': unknown scene"))?;
                let reference = read_normalised(
                    &self.target.tiles_dir.join(&tile.path),
                    &tile_bands(scene, Role::Reference),
                    scene,
                    Role::Reference,
                    "tile",
                )?;
                let moving = read_normalised(
                    &self.dir.join(&e.moving),
                    &(1..=cm).collect::<Vec<_>>(),
                    scene,
                    Role::Moving,
                    "moving tile",
                )?;
                let lf = BandReader::open(&self.dir.join(&e.label_field), "label field")?;
                let mut field = Vec::with_capacity(2 * c * c);
                for k in 0..2 {
                    let px = lf.band(k + 1)?;
                    for r in o..o + c {
                        field.extend_from_slice(&px[r * t + o..][..c]);
                    }
                }
                Ok((reference, moving, field))
            })
            .collect::<Result<_>>()?;
        let mut s = Samples {
            reference: Vec::with_capacity(idx.len() * self.reference_bands * t * t),
            moving: Vec::with_capacity(idx.len() * cm * t * t),
            label_field: Vec::with_capacity(idx.len() * 2 * c * c),
        };
        for (r, m, f) in loaded {
            s.reference.extend(r);
            s.moving.extend(m);
            s.label_field.extend(f);
        }
        Ok(s)
    }
}

/// Loads a labelled run into memory (see `LabelledRun::open` for the checks).
pub fn load(labels_dir: &Path) -> Result<Dataset> {
    let run = LabelledRun::open(labels_dir)?;
    let all: Vec<usize> = (0..run.len()).collect();
    let s = run.read(&all)?;
    Ok(Dataset {
        label: run.labels.iter().map(|e| [e.label[0] as f32, e.label[1] as f32]).collect(),
        ids: run.ids,
        reference: s.reference,
        moving: s.moving,
        label_field: s.label_field,
        reference_bands: run.reference_bands,
        moving_bands: run.moving_bands,
        target: run.target,
    })
}

/// True centre-window means by tile id, for evaluation only (None when the run has no truth).
pub fn load_truth(labels_dir: &Path) -> Result<Option<BTreeMap<String, [f64; 2]>>> {
    let t = LabelsDir::new(labels_dir).truth()?;
    Ok(t.map(|t| t.into_iter().map(|(k, v)| (k, v.displacement)).collect()))
}
