//! `labels --shard K/N` and `merge labels`: the tiles of the manifest, in order, split into N
//! contiguous ranges. Shard K labels its range into a folder of its own (the displaced moving
//! tiles, dense labels and truth, and `shard.json` with each tile's label and truth); the
//! merge links every shard's files into one labels folder and writes the JSON files one
//! process would have written (each tile draws from its own random stream, so the labels do
//! not depend on the split).
use super::{checked_inputs, label_range, up_to_date, write_outputs, LabelOptions, Labelled};
use crate::artefacts::labels::{LabelParams, LabelSummary};
use crate::artefacts::{read_json, write_json, JsonArtefact};
use crate::util::shard::{read_all, Shard, ShardJson, SHARD_JSON};
use crate::util::{atomic, output};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

const SHARD_FORMAT: &str = "simreg-labels-shard/1";

/// `shard.json`: the tiles a shard labelled, and their labels and truth.
#[derive(Debug, Serialize, Deserialize)]
struct ShardFile {
    format: String,
    /// The hash of the tiles and parameters (the same for every shard of one split).
    input_hash: String,
    shard: Shard,
    tiles_dir: PathBuf,
    params: LabelParams,
    /// The shard's range of the manifest's tiles.
    tiles: std::ops::Range<usize>,
    labelled: Vec<Labelled>,
}

impl JsonArtefact for ShardFile {
    const WHAT: &'static str = "labels shard";
    const MADE_BY: &'static str = "simreg labels --shard K/N";
}

impl ShardJson for ShardFile {
    const FORMAT: &'static str = SHARD_FORMAT;
    const STAGE: &'static str = "labels";
    fn shard(&self) -> Shard {
        self.shard
    }
    fn input_hash(&self) -> &str {
        &self.input_hash
    }
}

/// Labels shard `shard` of the tiles in `tiles_dir` into `out` (replaced as a whole when
/// done; a rerun with the same inputs finds it done).
pub fn run_shard(
    tiles_dir: &Path,
    out: &Path,
    p: &LabelParams,
    opts: &LabelOptions,
    shard: Shard,
) -> Result<LabelSummary> {
    let start = Instant::now();
    let (manifest, centre, hash) = checked_inputs(tiles_dir, p)?;
    let claim = output::claim(out, "labels", &[tiles_dir])?;
    let summary = |f: &ShardFile, up_to_date| LabelSummary {
        out: out.to_path_buf(),
        up_to_date,
        n_tiles: f.labelled.len(),
        noise_model: p.noise.model_name(),
        label_noise_rmse_px: super::label_noise_rmse(&f.labelled),
        seconds: start.elapsed().as_secs_f64(),
        params: Some(p.clone()),
    };
    if let Ok(f) = read_json::<ShardFile>(&out.join(SHARD_JSON)) {
        if f.format == SHARD_FORMAT && f.input_hash == hash && f.shard == shard {
            return Ok(summary(&f, true));
        }
    }
    let range = shard.range(manifest.tiles.len());
    claim.build(|partial| {
        let labelled = label_range(&manifest, tiles_dir, partial, p, centre, range.clone(), opts)?;
        let f = ShardFile {
            format: SHARD_FORMAT.into(),
            input_hash: hash.clone(),
            shard,
            tiles_dir: std::fs::canonicalize(tiles_dir)?,
            params: p.clone(),
            tiles: range,
            labelled,
        };
        // Last: a shard folder with a shard.json is complete.
        write_json(&partial.join(SHARD_JSON), &f)?;
        Ok(summary(&f, false))
    })
}

/// Merges the complete labels shards in `shards` into the labels folder `out` (replaced as a
/// whole when done), as one process labelling every tile writes it. Refuses shards of other
/// tiles or parameters, and an incomplete set, naming the shards missing.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<LabelSummary> {
    let start = Instant::now();
    let files: Vec<(PathBuf, ShardFile)> = read_all(shards)?;
    let first = &files[0].1;
    let (hash, p, tiles_dir) =
        (first.input_hash.clone(), first.params.clone(), first.tiles_dir.clone());
    let (manifest, centre, now) = checked_inputs(&tiles_dir, &p)?;
    if now != hash {
        bail!(
            "tiles '{}' changed since the labels shards were made; make them again",
            tiles_dir.display()
        );
    }
    let inputs: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
    let claim = output::claim(out, "labels", &inputs)?;
    if let Some(s) = up_to_date(out, &hash, start) {
        return Ok(s);
    }
    claim.build(|partial| {
        let mut done = Vec::new();
        for (dir, f) in files {
            for l in &f.labelled {
                for rel in [&l.label.moving, &l.label.label_field, &l.truth.field] {
                    atomic::link_or_copy(&dir.join(rel), &partial.join(rel))?;
                }
            }
            done.extend(f.labelled);
        }
        write_outputs(&manifest, &tiles_dir, partial, out, &p, centre, &hash, done, start)
    })
}
