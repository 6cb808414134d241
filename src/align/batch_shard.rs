//! `batch --shard K/N` and `merge batch`: the pairs a batch finds, in its order, split into N
//! contiguous ranges. Shard K aligns its range into a batch folder of its own and, once every
//! pair of it is done (ok or failed), writes `shard.json`; the merge links every shard's pair
//! folders into one batch folder with one status table, as one process aligning every pair
//! writes it (each pair is aligned on its own, so its outputs do not depend on the split).
use super::batch::{read_status, write_status};
use crate::artefacts::align::{BatchDir, BatchParams, BatchSummary, StatusRow};
use crate::artefacts::{write_json, JsonArtefact};
use crate::util::shard::{read_all, Shard, ShardJson, SHARD_JSON};
use crate::util::{atomic, output};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SHARD_FORMAT: &str = "simreg-batch-shard/1";

/// `shard.json` of a batch shard.
#[derive(Debug, Serialize, Deserialize)]
struct ShardFile {
    format: String,
    /// The hash of every pair's inputs and the settings (the same for every shard of a split).
    input_hash: String,
    shard: Shard,
    input: PathBuf,
    pattern: String,
    method: String,
    /// The shard's range of the pairs, of `n_pairs`.
    pairs: std::ops::Range<usize>,
    n_pairs: usize,
}

impl JsonArtefact for ShardFile {
    const WHAT: &'static str = "batch shard";
    const MADE_BY: &'static str = "simreg batch --shard K/N";
}

impl ShardJson for ShardFile {
    const FORMAT: &'static str = SHARD_FORMAT;
    const STAGE: &'static str = "batch";
    fn shard(&self) -> Shard {
        self.shard
    }
    fn input_hash(&self) -> &str {
        &self.input_hash
    }
}

/// Marks the batch shard folder `out` complete.
pub(super) fn write_shard_json(
    out: &Path,
    shard: Shard,
    input_hash: String,
    input: PathBuf,
    params: &BatchParams,
    pairs: std::ops::Range<usize>,
    n_pairs: usize,
) -> Result<()> {
    let f = ShardFile {
        format: SHARD_FORMAT.into(),
        input_hash,
        shard,
        input,
        pattern: params.pattern.clone(),
        method: params.method.name().to_string(),
        pairs,
        n_pairs,
    };
    write_json(&out.join(SHARD_JSON), &f)
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(dir.join(&rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                stack.push(r);
            } else {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Merges the complete batch shards in `shards` into the batch folder `out` (replaced as a
/// whole when done). Refuses shards of other inputs or settings, and an incomplete set,
/// naming the shards missing.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<BatchSummary> {
    let start = Instant::now();
    let files: Vec<(PathBuf, ShardFile)> = read_all(shards)?;
    let inputs: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
    let claim = output::claim(out, "batch", &inputs)?;
    let mut rows: BTreeMap<String, StatusRow> = BTreeMap::new();
    for (dir, f) in &files {
        let got = read_status(&BatchDir::new(dir));
        if got.len() != f.pairs.len() {
            bail!(
                "batch shard '{}': {} pairs in its status table, {} in its range (edited?); run the shard again",
                dir.display(),
                got.len(),
                f.pairs.len()
            );
        }
        rows.extend(got);
    }
    claim.build(|partial| {
        for (dir, _) in &files {
            let pairs = dir.join("pairs");
            if pairs.is_dir() {
                for rel in files_under(&pairs)? {
                    let dst = partial.join("pairs").join(&rel);
                    if rel.file_name().is_some_and(|n| n == output::MARKER) {
                        // A pair folder's marker names the batch folder it is in: this one.
                        let m = output::marker_of(&pairs.join(&rel).with_file_name(""));
                        if let Some(mut m) = m {
                            m.run = output::resolve(out).join("pairs");
                            atomic::create_dir(dst.parent().expect("in a pair folder"))?;
                            atomic::write_json(&dst, &m)?;
                            continue;
                        }
                    }
                    atomic::link_or_copy(&pairs.join(&rel), &dst)?;
                }
            }
        }
        let dir = BatchDir::new(partial);
        write_status(&dir, &rows)?;
        let count = |s: &str| rows.values().filter(|r| r.status == s).count();
        let summary = BatchSummary {
            ok: count("ok"),
            failed: count("failed"),
            skipped: 0,
            processed: rows.len(),
            n_pairs: files[0].1.n_pairs,
            seconds: start.elapsed().as_secs_f64(),
        };
        write_json(&dir.summary_json(), &summary)?;
        Ok(summary)
    })
}
