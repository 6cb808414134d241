//! The similarity stage split into shards (`simreg similarity --shard K/N`, `similarity
//! reduce`, `merge similarity`), so that N processes — the tasks of a Slurm job array — share
//! its Jacobians:
//! - pass 1: shard K sums the polar factors of its range of S into a partial S_A (d × p f64,
//!   with its count);
//! - reduce: the partials summed in shard order (a fixed order: the same S_A at every rerun);
//! - pass 2: shard K computes the N_S rows of its range of all samples (and their sketches and
//!   kernels against the held samples) against the reduced S_A;
//! - merge: the rows in order, and every output written as one process writes it.
//!
//! Shards split at [`BLOCK`] boundaries and every shard uses the batch size pass 1's shards
//! chose, so each sample's Jacobian is computed in the same batch as in one process: N_S
//! differs from a one-process run only by the order S_A's partial sums are added in.
use super::stage::{with_progress, write_outputs, Setup};
use super::stored::{read_tensor, read_tensors, write_tensors};
use super::{held_pass, pass1, pass2, NsAccumulator, Passes, Rows, BLOCK, D};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use simreg::artefacts::labels::LabelsDir;
use simreg::artefacts::similarity::{
    SimilarityParams, SimilarityReduceSummary, SimilarityShardSummary, SimilaritySummary,
};
use simreg::artefacts::{read_json, write_json, JsonArtefact};
use simreg::util::output;
use simreg::util::shard::{read_all, Shard, ShardJson, SHARD_JSON};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Tensor};

const PASS1_FORMAT: &str = "simreg-similarity-s-a-shard/1";
const PASS2_FORMAT: &str = "simreg-similarity-ns-shard/1";
const REDUCE_FORMAT: &str = "simreg-similarity-reduce/1";
/// A reduced S_A's description, written last.
pub const REDUCE_JSON: &str = "reduce.json";
/// A pass-1 shard's partial S_A, and the reduced sum.
const S_A: &str = "s_a.safetensors";
/// A pass-2 shard's rows.
const ROWS: &str = "rows.safetensors";

/// What a split's shards are computed from: the same for every shard of one split.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Inputs {
    model: PathBuf,
    labels: PathBuf,
    params: SimilarityParams,
    /// blake3 of the model's weights, the labels and the parameters that change results.
    input_hash: String,
}

impl Inputs {
    fn of(model: &Path, labels: &Path, p: &SimilarityParams) -> Result<Inputs> {
        let mut h = blake3::Hasher::new();
        h.update(super::stored::model_hash(model)?.as_bytes());
        let dir = LabelsDir::new(labels);
        for f in [dir.labels_json(), dir.target_json()] {
            let bytes = std::fs::read(&f)
                .with_context(|| format!("labels '{}': cannot read", f.display()))?;
            h.update(blake3::hash(&bytes).as_bytes());
        }
        // The device and the memory budget do not change the values (the batch is fixed by
        // pass 1's shards).
        let q = SimilarityParams {
            device: SimilarityParams::default().device,
            max_memory_mb: 0.0,
            ..p.clone()
        };
        h.update(serde_json::to_string(&q)?.as_bytes());
        let canon = |d: &Path| {
            std::fs::canonicalize(d).with_context(|| format!("'{}': not found", d.display()))
        };
        Ok(Inputs {
            model: canon(model)?,
            labels: canon(labels)?,
            params: p.clone(),
            input_hash: h.finalize().to_hex().to_string(),
        })
    }
}

/// A pass-1 shard's `shard.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Pass1Shard {
    format: String,
    shard: Shard,
    #[serde(flatten)]
    inputs: Inputs,
    batch: usize,
    /// The shard's range of S (positions in the training list).
    samples: Range<usize>,
    jacobian_seconds: f64,
}

/// A pass-2 shard's `shard.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Pass2Shard {
    format: String,
    shard: Shard,
    #[serde(flatten)]
    inputs: Inputs,
    /// The reduced S_A it used (a folder written by `similarity reduce`) and its hash.
    s_a: PathBuf,
    s_a_hash: String,
    batch: usize,
    /// The shard's range of all samples.
    samples: Range<usize>,
}

/// `reduce.json`: the reduced S_A beside it.
#[derive(Debug, Serialize, Deserialize)]
struct Reduced {
    format: String,
    #[serde(flatten)]
    inputs: Inputs,
    shards: usize,
    batch: usize,
    n_train: usize,
    /// p: S_A is d × p.
    n_params: i64,
    jacobian_seconds: f64,
    /// blake3 of `s_a.safetensors`.
    s_a_hash: String,
}

macro_rules! shard_json {
    ($t:ty, $format:expr, $what:expr) => {
        impl JsonArtefact for $t {
            const WHAT: &'static str = $what;
            const MADE_BY: &'static str = "simreg similarity --shard K/N";
        }
        impl ShardJson for $t {
            const FORMAT: &'static str = $format;
            const STAGE: &'static str = $what;
            fn shard(&self) -> Shard {
                self.shard
            }
            fn input_hash(&self) -> &str {
                &self.inputs.input_hash
            }
        }
    };
}
shard_json!(Pass1Shard, PASS1_FORMAT, "similarity pass-1");
shard_json!(Pass2Shard, PASS2_FORMAT, "similarity pass-2");

impl JsonArtefact for Reduced {
    const WHAT: &'static str = "reduced S_A";
    const MADE_BY: &'static str = "simreg similarity reduce";
}

/// Shard `shard`'s part of `items`: whole blocks of [`BLOCK`], the K-th of N nearly equal runs.
pub fn shard_items(len: usize, shard: Shard) -> Range<usize> {
    let r = shard.range(len.div_ceil(BLOCK));
    (r.start * BLOCK).min(len)..(r.end * BLOCK).min(len)
}

fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// Reads the reduced S_A folder `dir`'s description.
fn read_reduced(dir: &Path) -> Result<Reduced> {
    let path = dir.join(REDUCE_JSON);
    if !path.is_file() {
        bail!(
            "'{}': not a reduced S_A (no {REDUCE_JSON}; made by `simreg similarity reduce`)",
            dir.display()
        );
    }
    let r: Reduced = read_json(&path)?;
    if r.format != REDUCE_FORMAT {
        bail!("'{}': format '{}', not '{REDUCE_FORMAT}'", path.display(), r.format);
    }
    Ok(r)
}

/// The reduced S_A in `dir`, checked against the hash `r` records.
fn read_s_a(dir: &Path, r: &Reduced) -> Result<Tensor> {
    let path = dir.join(S_A);
    if file_hash(&path)? != r.s_a_hash {
        bail!("'{}' changed since `similarity reduce` wrote it; reduce again", path.display());
    }
    read_tensor(&path, "s_a")
}

/// Runs pass 1 (`s_a` None) or pass 2 (with the reduced S_A folder) of shard `shard` into
/// `out` (replaced as a whole when done; a rerun with the same inputs finds it done).
pub fn run_shard(
    model_dir: &Path,
    labels_dir: &Path,
    out: &Path,
    p: &SimilarityParams,
    shard: Shard,
    s_a: Option<&Path>,
    quiet: bool,
) -> Result<SimilarityShardSummary> {
    let start = Instant::now();
    let mut inputs: Vec<&Path> = vec![model_dir, labels_dir];
    inputs.extend(s_a);
    let claim = output::claim(out, "similarity", &inputs)?;
    let ins = Inputs::of(model_dir, labels_dir, p)?;
    let summary = |pass, n_samples, up_to_date| SimilarityShardSummary {
        out: out.to_path_buf(),
        pass,
        shard,
        n_samples,
        up_to_date,
        seconds: start.elapsed().as_secs_f64(),
    };
    let Some(s_a_dir) = s_a else {
        if let Ok(f) = read_json::<Pass1Shard>(&out.join(SHARD_JSON)) {
            if f.format == PASS1_FORMAT && f.inputs.input_hash == ins.input_hash && f.shard == shard
            {
                return Ok(summary(1, f.samples.len(), true));
            }
        }
        let s = Setup::new(model_dir, labels_dir, p, None, quiet)?;
        let range = shard_items(s.train.len(), shard);
        let items = &s.train[range.clone()];
        let mut acc = NsAccumulator::new(D, s.params, s.device);
        let secs = with_progress(quiet, items.len(), |progress| {
            pass1(&s.net, items, s.batch, &mut acc, &mut |i| s.load(i), progress)
        })?;
        return claim.build(|partial| {
            write_tensors(&partial.join(S_A), &[("s_a", acc.s_a.shallow_clone())])?;
            let f = Pass1Shard {
                format: PASS1_FORMAT.into(),
                shard,
                inputs: ins.clone(),
                batch: s.batch,
                samples: range.clone(),
                jacobian_seconds: secs,
            };
            // Last: a shard folder with a shard.json is complete.
            write_json(&partial.join(SHARD_JSON), &f)?;
            Ok(summary(1, items.len(), false))
        });
    };

    let red = read_reduced(s_a_dir)?;
    if red.inputs.input_hash != ins.input_hash {
        bail!(
            "S_A in '{}' was reduced from shards of another model, labels or [similarity] \
             parameters than these; run pass 1 and reduce on these first",
            s_a_dir.display()
        );
    }
    if let Ok(f) = read_json::<Pass2Shard>(&out.join(SHARD_JSON)) {
        if f.format == PASS2_FORMAT
            && f.inputs.input_hash == ins.input_hash
            && f.shard == shard
            && f.s_a_hash == red.s_a_hash
        {
            return Ok(summary(2, f.samples.len(), true));
        }
    }
    let s = Setup::new(model_dir, labels_dir, p, Some(red.batch), quiet)?;
    let acc = NsAccumulator { s_a: read_s_a(s_a_dir, &red)?.to(s.device), n: red.n_train };
    let n = s.run.len();
    let range = shard_items(n, shard);
    let items: Vec<usize> = range.clone().collect();
    let rows = with_progress(quiet, items.len(), |progress| {
        let load = &mut |i: &[usize]| s.load(i);
        let held = held_pass(&s.net, &s.held, s.batch, load)?;
        pass2(&s.net, &items, s.batch, &acc, held.as_ref(), s.sketch.as_ref(), load, progress)
    })?;
    claim.build(|partial| {
        if !items.is_empty() {
            write_tensors(&partial.join(ROWS), &rows_tensors(&rows))?;
        }
        let f = Pass2Shard {
            format: PASS2_FORMAT.into(),
            shard,
            inputs: ins.clone(),
            s_a: std::fs::canonicalize(s_a_dir)?,
            s_a_hash: red.s_a_hash.clone(),
            batch: red.batch,
            samples: range.clone(),
        };
        write_json(&partial.join(SHARD_JSON), &f)?;
        Ok(summary(2, items.len(), false))
    })
}

/// A pass-2 shard's rows as named tensors (the optional ones only when computed).
fn rows_tensors(r: &Rows) -> Vec<(&'static str, Tensor)> {
    let b = r.ns.len() as i64;
    let mut t = vec![
        ("ns", Tensor::from_slice(&r.ns)),
        ("g_norm", Tensor::from_slice(&r.g_norm)),
        ("pred", Tensor::from_slice(&r.pred.concat()).view([b, 2])),
    ];
    if !r.sketches.is_empty() {
        t.push(("sketches", Tensor::cat(&r.sketches, 0)));
    }
    if !r.held_k.is_empty() {
        t.push(("held_k", Tensor::cat(&r.held_k, 1)));
        t.push(("held_kc", Tensor::cat(&r.held_kc, 1)));
    }
    t
}

/// Reads back the rows of the pass-2 shard in `dir`.
fn read_rows(dir: &Path, f: &Pass2Shard) -> Result<Rows> {
    if f.samples.is_empty() {
        return Ok(Rows::default());
    }
    let path = dir.join(ROWS);
    let mut t = read_tensors(&path)?;
    let mut take = |name: &str| {
        t.remove(name).with_context(|| format!("'{}': no tensor '{name}'", path.display()))
    };
    let vec = |t: Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1]));
    let (ns, g_norm, pred) = (vec(take("ns")?)?, vec(take("g_norm")?)?, vec(take("pred")?)?);
    if ns.len() != f.samples.len() || g_norm.len() != ns.len() || pred.len() != 2 * ns.len() {
        bail!(
            "'{}': {} rows, but the shard's range has {} samples",
            path.display(),
            ns.len(),
            f.samples.len()
        );
    }
    let (held_k, held_kc) = match (take("held_k"), take("held_kc")) {
        (Ok(k), Ok(kc)) => (vec![k], vec![kc]),
        _ => (vec![], vec![]),
    };
    Ok(Rows {
        ns,
        g_norm,
        pred: pred.chunks(2).map(|c| [c[0], c[1]]).collect(),
        sketches: take("sketches").into_iter().collect(),
        held_k,
        held_kc,
    })
}

/// Sums the partial S_A of the pass-1 shards in `shards` (all N of one split), in shard order,
/// into the folder `out`.
pub fn reduce(shards: &[PathBuf], out: &Path) -> Result<SimilarityReduceSummary> {
    let start = Instant::now();
    let files: Vec<(PathBuf, Pass1Shard)> = read_all(shards)?;
    let (d1, first) = (&files[0].0, &files[0].1);
    let n = files.len();
    if let Some((d, f)) = files.iter().find(|(_, f)| f.batch != first.batch) {
        bail!(
            "similarity pass-1 shards '{}' and '{}' used batch sizes {} and {} (their \
             --max-memory or memory differ): run them with one budget",
            d1.display(),
            d.display(),
            first.batch,
            f.batch
        );
    }
    let inputs: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
    let claim = output::claim(out, "similarity", &inputs)?;
    let summary = |r: &Reduced, up_to_date| SimilarityReduceSummary {
        out: out.to_path_buf(),
        shards: n,
        n_train: r.n_train,
        params: r.n_params,
        up_to_date,
        seconds: start.elapsed().as_secs_f64(),
    };
    if let Ok(r) = read_reduced(out) {
        if r.inputs.input_hash == first.inputs.input_hash
            && r.shards == n
            && file_hash(&out.join(S_A)).ok().as_deref() == Some(r.s_a_hash.as_str())
        {
            return Ok(summary(&r, true));
        }
    }
    // A fixed order: shard 1's partial, plus shard 2's, and so on.
    let mut s_a: Option<Tensor> = None;
    for (dir, _) in &files {
        let part = read_tensor(&dir.join(S_A), "s_a")?.to_kind(Kind::Double);
        s_a = Some(match s_a {
            None => part,
            Some(sum) => {
                if sum.size() != part.size() {
                    bail!(
                        "'{}': a partial S_A of shape {:?}, shard 1's is {:?}",
                        dir.join(S_A).display(),
                        part.size(),
                        sum.size()
                    );
                }
                sum + part
            }
        });
    }
    let s_a = s_a.expect("read_all gives at least one shard");
    claim.build(|partial| {
        let path = partial.join(S_A);
        write_tensors(&path, &[("s_a", s_a.shallow_clone())])?;
        let r = Reduced {
            format: REDUCE_FORMAT.into(),
            inputs: first.inputs.clone(),
            shards: n,
            batch: first.batch,
            n_train: files.iter().map(|(_, f)| f.samples.len()).sum(),
            n_params: s_a.size()[1],
            jacobian_seconds: files.iter().map(|(_, f)| f.jacobian_seconds).sum(),
            s_a_hash: file_hash(&path)?,
        };
        write_json(&partial.join(REDUCE_JSON), &r)?;
        Ok(summary(&r, false))
    })
}

/// Merges the pass-2 shards in `shards` (all N of one split, against one reduced S_A) into
/// the similarity folder `out`, written as one process writes it.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<SimilaritySummary> {
    let start = Instant::now();
    let files: Vec<(PathBuf, Pass2Shard)> = read_all(shards)?;
    let first = &files[0].1;
    if let Some((d, _)) = files.iter().find(|(_, f)| f.s_a_hash != first.s_a_hash) {
        bail!(
            "similarity pass-2 shard '{}' used another S_A than shard 1/{}: rerun it",
            d.display(),
            files.len()
        );
    }
    let red = read_reduced(&first.s_a)?;
    let s_a = read_s_a(&first.s_a, &red)?;
    if red.s_a_hash != first.s_a_hash {
        bail!(
            "S_A in '{}' was reduced again since the pass-2 shards used it: rerun them",
            first.s_a.display()
        );
    }
    let i = &first.inputs;
    if Inputs::of(&i.model, &i.labels, &i.params)?.input_hash != i.input_hash {
        bail!(
            "model '{}' or labels '{}' changed since the similarity shards were computed; \
             compute them again",
            i.model.display(),
            i.labels.display()
        );
    }
    let mut inputs: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
    inputs.extend([i.model.as_path(), i.labels.as_path(), first.s_a.as_path()]);
    let claim = output::claim(out, "similarity", &inputs)?;
    let s = Setup::new(&i.model, &i.labels, &i.params, Some(red.batch), true)?;
    let mut rows = Rows::default();
    for (dir, f) in &files {
        rows.extend(read_rows(dir, f)?);
    }
    if rows.ns.len() != s.run.len() {
        bail!(
            "similarity pass-2 shards hold {} rows, the labels {} tiles",
            rows.ns.len(),
            s.run.len()
        );
    }
    let acc = NsAccumulator { s_a, n: red.n_train };
    let passes = Passes::new(
        rows,
        &acc,
        s.held.len(),
        s.sketch.is_some(),
        red.n_train,
        red.jacobian_seconds,
    );
    claim.build(|partial| write_outputs(&s, &passes, out, partial, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_at_block_boundaries_and_cover_everything() {
        for len in [0, 1, 63, 64, 65, 200, 1000] {
            for n in 1..=6 {
                let mut next = 0;
                for k in 1..=n {
                    let r = shard_items(len, Shard { k, n });
                    assert_eq!(r.start, next);
                    assert!(r.start % BLOCK == 0 || r.start == len);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }
}
