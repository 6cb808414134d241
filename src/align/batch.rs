//! `simreg batch`: every reference/moving pair in a folder tree or a zip archive of GeoTIFFs,
//! aligned in parallel; a bad pair is recorded and the batch goes on. `status.csv` (pair,
//! status, error, timings) is rewritten after each pair, so an interrupted batch resumes: a
//! pair already done (ok, or failed) with unchanged inputs and settings is not redone.
//!
//! **Pairs.** `--pattern` is a file name with `{role}` where reference and moving names differ
//! and at most one `*`, e.g. `{role}.tif` (a folder per pair holding reference.tif and
//! moving.tif) or `*_{role}.tif` (scene1_reference.tif + scene1_moving.tif); files of one folder
//! whose `*` parts agree form a pair. Zip entries are read in place through GDAL's /vsizip/.
use crate::artefacts::align::{
    AlignParams, AlignRequest, AlignSummary, BatchDir, BatchParams, BatchSummary, Method, StatusRow,
};
use crate::util::shard::Shard;
use crate::util::text::one_line;
use crate::util::{atomic, fingerprint, output, table};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// A pair found in the input: its name and the files (paths GDAL opens).
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub name: String,
    pub reference: Option<String>,
    pub moving: Option<String>,
    /// What identifies the inputs' content (sizes, times, CRCs): a change redoes the pair.
    pub key: String,
    /// Why the pair is refused without being opened (a hostile archive member's path).
    pub problem: Option<String>,
}

/// `name` against a pattern piece with at most one `*`: the text the `*` stands for.
fn glob(pattern: &str, name: &str) -> Option<String> {
    match pattern.split_once('*') {
        None => (pattern == name).then(String::new),
        Some((pre, post)) => {
            (name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post))
                .then(|| name[pre.len()..name.len() - post.len()].to_string())
        }
    }
}

/// Refuses a `--max-shift` that no pair could meet (before any pair is tried).
pub fn check_max_shift(max_shift: f64) -> Result<()> {
    if !(max_shift.is_finite() && max_shift > 0.0) {
        bail!("--max-shift must be a positive number of pixels, not {max_shift}");
    }
    Ok(())
}

/// Refuses a pattern that cannot pair files.
pub fn check_pattern(p: &BatchParams) -> Result<()> {
    if !p.pattern.contains("{role}") || p.pattern.matches('*').count() > 1 {
        bail!("--pattern '{}': needs {{role}} and at most one '*'", p.pattern);
    }
    if p.reference_role == p.moving_role {
        bail!("--reference-role and --moving-role must differ");
    }
    Ok(())
}

/// Groups file paths (relative, '/'-separated) into pairs by the pattern.
pub fn find_pairs(files: &[(String, String, String)], p: &BatchParams) -> Result<Vec<Pair>> {
    check_pattern(p)?;
    // (dir, star) → (reference, moving), each (GDAL path, key part).
    type Slot = Option<(String, String)>;
    let mut groups: BTreeMap<(String, String), (Slot, Slot)> = BTreeMap::new();
    let mut problems: BTreeMap<(String, String), String> = BTreeMap::new();
    for (rel, gdal_path, key) in files {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        // A zip member such as `../reference.tif` or `/x/reference.tif`: its pair would name
        // a folder outside `pairs/` (`..` is the batch folder itself).
        let hostile = rel.starts_with('/')
            || dir.split('/').any(|c| c == ".." || c == ".")
            || name == ".."
            || name == ".";
        for (is_ref, role) in [(true, &p.reference_role), (false, &p.moving_role)] {
            if let Some(star) = glob(&p.pattern.replace("{role}", role), name) {
                let at = (dir.to_string(), star);
                if hostile {
                    problems.insert(
                        at.clone(),
                        format!(
                            "member '{rel}': a path with '.', '..' or a leading '/' is refused"
                        ),
                    );
                }
                let g = groups.entry(at).or_default();
                let slot = if is_ref { &mut g.0 } else { &mut g.1 };
                *slot = Some((gdal_path.clone(), key.clone()));
            }
        }
    }
    Ok(groups
        .into_iter()
        .map(|((dir, star), (r, m))| {
            let problem = problems.remove(&(dir.clone(), star.clone()));
            let name = [dir.as_str(), star.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("/");
            let name = if name.is_empty() { "pair".to_string() } else { name };
            let key = format!(
                "{}|{}",
                r.as_ref().map_or("", |v| v.1.as_str()),
                m.as_ref().map_or("", |v| v.1.as_str())
            );
            Pair { name, reference: r.map(|v| v.0), moving: m.map(|v| v.0), key, problem }
        })
        .collect())
}

/// Every file of a folder tree or zip archive: (relative path, path for GDAL, identity).
pub fn list_files(input: &Path) -> Result<Vec<(String, String, String)>> {
    let meta = std::fs::metadata(input)
        .with_context(|| format!("input '{}': cannot read", input.display()))?;
    if meta.is_dir() {
        let mut out = Vec::new();
        let mut stack = vec![input.to_path_buf()];
        // Folders already listed (by their real path): a symlink back up the tree is a loop,
        // not an endless walk.
        let mut seen = std::collections::HashSet::new();
        seen.insert(std::fs::canonicalize(input)?);
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)
                .with_context(|| format!("input '{}': cannot list", d.display()))?
            {
                let path = e?.path();
                // Follows symlinks; a dangling or looping one is a file whose pair fails
                // (named, with the reason), not an error of the whole batch.
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_dir() => {
                        if std::fs::canonicalize(&path).is_ok_and(|real| seen.insert(real)) {
                            stack.push(path);
                        }
                        continue;
                    }
                    _ => {}
                }
                let rel =
                    path.strip_prefix(input).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                let key = match fingerprint::file_id(&path) {
                    Ok(id) => fingerprint::hash_json(&id),
                    Err(e) => format!("unreadable: {}", one_line(format!("{e:#}"))),
                };
                out.push((rel, path.to_string_lossy().into_owned(), key));
            }
        }
        out.sort();
        Ok(out)
    } else {
        let file = std::fs::File::open(input)
            .with_context(|| format!("input '{}': cannot open", input.display()))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| {
            anyhow::anyhow!(
                "input '{}': not a folder or a readable zip archive: {}",
                input.display(),
                one_line(e)
            )
        })?;
        let abs = std::fs::canonicalize(input)?;
        let mut out = Vec::new();
        for i in 0..zip.len() {
            let f = zip.by_index(i).map_err(|e| {
                anyhow::anyhow!("input '{}': entry {i}: {}", input.display(), one_line(e))
            })?;
            if f.is_dir() {
                continue;
            }
            let name = f.name().to_string();
            out.push((
                name.clone(),
                format!("/vsizip/{}/{}", abs.display(), name),
                format!("{}:{}:{}", name, f.crc32(), f.size()),
            ));
        }
        out.sort();
        Ok(out)
    }
}

pub(super) fn write_status(out: &BatchDir, rows: &BTreeMap<String, StatusRow>) -> Result<()> {
    table::write(&out.status_csv(), rows.values())
}

/// The table of an earlier run (empty when there is none or it cannot be read: everything is
/// redone).
pub(super) fn read_status(out: &BatchDir) -> BTreeMap<String, StatusRow> {
    out.status().unwrap_or_default().into_iter().map(|r| (r.pair.clone(), r)).collect()
}

/// Aligns one pair; the error is the one-line message.
fn align_pair(
    pair: &Pair,
    p: &BatchParams,
    out: &BatchDir,
    threads: Option<usize>,
) -> Result<AlignSummary> {
    if let Some(problem) = &pair.problem {
        bail!("{problem}");
    }
    let (Some(r), Some(m)) = (&pair.reference, &pair.moving) else {
        bail!(
            "incomplete pair: no {} file",
            if pair.reference.is_none() { &p.reference_role } else { &p.moving_role }
        );
    };
    let req = AlignRequest {
        reference: PathBuf::from(r),
        moving: PathBuf::from(m),
        out: out.pair(&pair.name).path().to_path_buf(),
        truth: None,
        params: AlignParams {
            method: p.method,
            model: p.model.clone(),
            max_shift: p.max_shift,
            ..AlignParams::default()
        },
        limits: p.limits,
        quiet: true,
    };
    match p.method {
        // No --model: as `align`, with the shipped model.
        Method::Network if req.params.model.is_none() => super::run_with(req, threads, true),
        // The network's errors captured: a bad pair is recorded, not printed.
        Method::Network | Method::Auto if req.params.model.is_some() => {
            let how = crate::learn::Call { quiet: true, threads, capture_errors: true };
            crate::learn::call(req, &how)
        }
        _ => super::run(req, threads),
    }
}

/// Aligns every pair found in `input` (a folder tree or zip archive) into `out`; each network
/// run may use `threads` threads.
pub fn run(
    input: &Path,
    out: &Path,
    p: &BatchParams,
    threads: Option<usize>,
    quiet: bool,
) -> Result<BatchSummary> {
    run_shard(input, out, p, threads, quiet, None)
}

/// As [`run`], for shard `shard` of the pairs (in name order) only: `out` is then a shard
/// folder, complete when its `shard.json` is written; `simreg merge batch` puts the N together.
pub fn run_shard(
    input: &Path,
    out: &Path,
    p: &BatchParams,
    threads: Option<usize>,
    quiet: bool,
    shard: Option<Shard>,
) -> Result<BatchSummary> {
    let dir = BatchDir::new(out);
    let start = Instant::now();
    // One writer per batch folder, and only a folder a batch made (it is updated in place).
    let claim = output::claim(out, "batch", &[input])?;
    crate::raster::init_gdal();
    let default_model = match (&p.model, p.method) {
        (None, Method::Network) => super::default_model::locate(),
        _ => None,
    };
    if p.method == Method::Network && p.model.is_none() && default_model.is_none() {
        bail!("--method network needs --model RUN/train (no default model found)");
    }
    check_max_shift(p.max_shift)?;
    let files = list_files(input)?;
    let pairs = find_pairs(&files, p)?;
    if pairs.is_empty() {
        bail!(
            "input '{}': no file matches --pattern '{}' with role '{}' or '{}'",
            input.display(),
            p.pattern,
            p.reference_role,
            p.moving_role
        );
    }
    atomic::create_dir(out)?;
    claim.mark(out)?;
    output::remove_temp_files(out);
    let model = p.model.as_ref().map(|m| m.to_string_lossy().into_owned());
    // Pairs done with the shipped model are redone when it changes (or is turned off).
    let default_model = match default_model {
        Some(d) => {
            let w = crate::artefacts::train::TrainDir::new(&d).model_safetensors();
            let bytes = std::fs::read(&w)
                .with_context(|| format!("default model '{}': cannot read", w.display()))?;
            Some(blake3::hash(&bytes).to_hex().to_string())
        }
        _ => None,
    };
    // The default --max-shift leaves the key as it was before the option existed, so that an
    // archive's done pairs stay done.
    let settings = match (p.max_shift == AlignParams::default().max_shift, &default_model) {
        (true, None) => fingerprint::hash_json(&(p.method.name(), model)),
        (false, None) => fingerprint::hash_json(&(p.method.name(), model, p.max_shift)),
        (_, Some(d)) => fingerprint::hash_json(&(p.method.name(), model, p.max_shift, d)),
    };
    let key = |pair: &Pair| fingerprint::hash_json(&(&pair.key, &settings));
    let all_pairs = pairs.len();
    let split = shard.map(|sh| {
        let range = sh.range(all_pairs);
        let hash = fingerprint::hash_json(&(pairs.iter().map(key).collect::<Vec<_>>(), &p.pattern));
        (sh, range, hash)
    });
    let pairs: Vec<Pair> = match &split {
        Some((_, range, _)) => pairs[range.clone()].to_vec(),
        None => pairs,
    };
    if split.is_some() {
        // Written again when every pair of the shard is done: until then it is not complete.
        let _ = std::fs::remove_file(out.join(crate::util::shard::SHARD_JSON));
    }
    let previous = read_status(&dir);
    let mut rows: BTreeMap<String, StatusRow> = BTreeMap::new();
    let mut todo = Vec::new();
    for pair in &pairs {
        match previous.get(&pair.name) {
            Some(r)
                if r.key == key(pair)
                    && (r.status == "ok" || (r.status == "failed" && !p.retry_failed))
                    && (r.status != "ok" || dir.pair(&pair.name).summary_json().is_file()) =>
            {
                rows.insert(pair.name.clone(), r.clone());
            }
            _ => todo.push(pair.clone()),
        }
    }
    let skipped = pairs.len() - todo.len();
    write_status(&dir, &rows)?;
    let rows = Mutex::new(rows);
    let bar = (!quiet).then(|| indicatif::ProgressBar::new(todo.len() as u64));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(p.jobs.max(1)).build()?;
    pool.install(|| {
        todo.par_iter().try_for_each(|pair| -> Result<()> {
            let t0 = Instant::now();
            let result = align_pair(pair, p, &dir, threads);
            let seconds = t0.elapsed().as_secs_f64();
            let mut row = StatusRow {
                pair: pair.name.clone(),
                status: "ok".into(),
                error: String::new(),
                seconds,
                megapixels_per_s: f64::NAN,
                shift_dx_px: f64::NAN,
                shift_dy_px: f64::NAN,
                reference: pair.reference.clone().unwrap_or_default(),
                moving: pair.moving.clone().unwrap_or_default(),
                key: key(pair),
            };
            match result {
                Ok(s) => {
                    row.megapixels_per_s = s.megapixels_per_s;
                    [row.shift_dx_px, row.shift_dy_px] = s.shift_px;
                }
                Err(e) => {
                    row.status = "failed".into();
                    row.error = one_line(format!("{e:#}"));
                    tracing::warn!("pair '{}': {}", pair.name, row.error);
                }
            }
            let mut rows = rows.lock().expect("not poisoned");
            rows.insert(pair.name.clone(), row);
            write_status(&dir, &rows)?;
            if let Some(b) = &bar {
                b.inc(1);
            }
            Ok(())
        })
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let rows = rows.into_inner().expect("not poisoned");
    let count = |s: &str| rows.values().filter(|r| r.status == s).count();
    let summary = BatchSummary {
        ok: count("ok"),
        failed: count("failed"),
        skipped,
        processed: todo.len(),
        n_pairs: pairs.len(),
        seconds: start.elapsed().as_secs_f64(),
    };
    crate::artefacts::write_json(&dir.summary_json(), &summary)?;
    if let Some((sh, range, hash)) = split {
        let input = std::fs::canonicalize(input)?;
        super::batch_shard::write_shard_json(out, sh, hash, input, p, range, all_pairs)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pattern: &str) -> BatchParams {
        BatchParams { pattern: pattern.into(), jobs: 1, ..BatchParams::default() }
    }

    fn files(names: &[&str]) -> Vec<(String, String, String)> {
        names.iter().map(|n| (n.to_string(), format!("/x/{n}"), n.to_string())).collect()
    }

    #[test]
    fn pairs_by_folder_and_by_star() {
        let f = files(&[
            "a/reference.tif",
            "a/moving.tif",
            "b/reference.tif",
            "c/moving.tif",
            "c/notes.txt",
        ]);
        let p = find_pairs(&f, &params("{role}.tif")).unwrap();
        assert_eq!(p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(p[0].reference.as_deref(), Some("/x/a/reference.tif"));
        assert_eq!(p[0].moving.as_deref(), Some("/x/a/moving.tif"));
        assert!(p[1].moving.is_none() && p[2].reference.is_none());

        let f = files(&[
            "s1_reference.tif",
            "s1_moving.tif",
            "s2_reference.tif",
            "s2_moving.tif",
            "d/s1_moving.tif",
        ]);
        let p = find_pairs(&f, &params("*_{role}.tif")).unwrap();
        assert_eq!(p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["s1", "s2", "d/s1"]);
        assert!(find_pairs(&f, &params("*_*_{role}")).is_err());
        assert!(find_pairs(&f, &params("x.tif")).is_err());
    }

    #[test]
    fn pair_folders_are_one_component_and_distinct() {
        use crate::artefacts::align::pair_folder;
        let names = ["a/b", "a__b", "a%2Fb", "..", ".", "a/..", "%", ""];
        let folders: std::collections::BTreeSet<String> =
            names.iter().map(|n| pair_folder(n)).collect();
        assert_eq!(folders.len(), names.len(), "{folders:?}");
        for f in &folders {
            assert!(!f.contains('/') && f != "." && f != ".." && !f.is_empty(), "{f}");
        }
    }

    #[test]
    fn a_hostile_member_path_is_a_pair_with_a_problem() {
        let f = files(&["../reference.tif", "../moving.tif", "ok/reference.tif", "ok/moving.tif"]);
        let p = find_pairs(&f, &params("{role}.tif")).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "..");
        assert!(p[0].problem.as_deref().unwrap().contains("'../"), "{:?}", p[0].problem);
        assert!(p[1].problem.is_none());
    }

    #[test]
    fn status_table_round_trips_quoted_errors() {
        let dir = tempfile::tempdir().unwrap();
        let row = |pair: &str, error: &str| StatusRow {
            pair: pair.into(),
            status: "failed".into(),
            error: error.into(),
            seconds: 0.5,
            megapixels_per_s: 0.0,
            shift_dx_px: f64::NAN,
            shift_dy_px: 1.25,
            reference: "r,1.tif".into(),
            moving: "m.tif".into(),
            key: "k".into(),
        };
        let rows: BTreeMap<String, StatusRow> = [row("a,b", "bad \"x\", y"), row("c", "")]
            .into_iter()
            .map(|r| (r.pair.clone(), r))
            .collect();
        write_status(&BatchDir::new(dir.path()), &rows).unwrap();
        let back = read_status(&BatchDir::new(dir.path()));
        assert_eq!(back.keys().collect::<Vec<_>>(), ["a,b", "c"]);
        assert_eq!(back["a,b"].error, "bad \"x\", y");
        assert_eq!(back["a,b"].reference, "r,1.tif");
        assert!(back["c"].shift_dx_px.is_nan() && back["c"].shift_dy_px == 1.25);
    }
}
