//! Whose an output directory is, and who is writing it.
//!
//! - **Ownership.** Every directory a stage writes holds a marker, `.simreg-output.json`, naming
//!   the stage and the run. A stage replaces a directory only if it is empty or its marker names
//!   this same stage; never because a common file (`summary.json`) is there. A stage's output may
//!   not be, hold or lie inside one of its own inputs.
//! - **Locking.** A writer holds an exclusive `flock` on `<out>.lock` beside the directory (the
//!   directory itself is swapped, so it cannot hold the lock). A second writer is refused with
//!   the holder's pid. The kernel drops the lock when its holder dies, however it dies, so a lock
//!   left by a dead process is simply taken over; the file is removed on release.
//! - **Leftovers** of a killed run (`<out>.old<pid>`, `*.tmp<pid>` files) are removed by the
//!   next writer, under the lock.
use super::atomic::{create_dir, partial_dir, swap_into_place, write_json};
use super::interrupt::{self, Registered};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

/// The file that makes a directory simreg's.
pub const MARKER: &str = ".simreg-output.json";
/// The first line of a run's `pipeline.toml` that simreg wrote.
pub const PIPELINE_HEADER: &str = "# Written by simreg: this run's effective pipeline.";

/// What the marker says.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Marker {
    /// The stage that wrote the directory (`tile`, `labels`, ..., `run` for a run directory).
    pub stage: String,
    /// The run directory it belongs to (absolute), for provenance.
    pub run: PathBuf,
}

/// The marker of `dir`, if it has a readable one.
pub fn marker_of(dir: &Path) -> Option<Marker> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// `p` made absolute with symbolic links resolved as far as it exists (the rest appended).
pub fn resolve(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut r = c;
            for part in rest.iter().rev() {
                r.push(part);
            }
            return normalise(&r);
        }
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return normalise(&abs),
        }
    }
}

/// Drops `.` and folds `..` lexically (for the part of a path that does not exist yet).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `<out>.lock`, beside the output.
pub fn lock_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    out.with_file_name(name)
}

/// An exclusive lock on an output; released (and its file removed) on drop.
pub struct OutputLock {
    path: PathBuf,
    // Held for its flock: closing it releases the lock.
    _file: File,
    _on_signal: Registered,
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still held: a waiter that opened the old file sees it unlinked and
        // retries on a new one (see `lock`).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the exclusive lock of output `out`, or fails naming the process that holds it.
pub fn lock(out: &Path) -> Result<OutputLock> {
    let path = lock_path(out);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("output '{}': cannot create directory", out.display()))?;
    }
    for _ in 0..100 {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| {
                format!("output '{}': cannot create lock '{}'", out.display(), path.display())
            })?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                bail!("output '{}': cannot lock '{}': {err}", out.display(), path.display());
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = text.trim();
            let holder = if holder.is_empty() { "unknown".to_string() } else { holder.to_string() };
            bail!(
                "output '{}': another simreg process (pid {holder}) is writing it; wait for it \
                 to finish (lock '{}')",
                out.display(),
                path.display()
            );
        }
        // The file may have been removed by the previous holder between open and flock.
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            continue;
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        return Ok(OutputLock {
            _on_signal: interrupt::unlock_on_signal(&path),
            path,
            _file: file,
        });
    }
    bail!("output '{}': cannot take lock '{}' (it keeps changing)", out.display(), path.display())
}

/// Refuses `out` unless it is absent, empty, or written by `stage` (its marker says so).
pub fn check_owner(out: &Path, stage: &str) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(out) else { return Ok(()) };
    if meta.file_type().is_symlink() {
        bail!(
            "output '{}': is a symbolic link; give the directory it points to, or another --out",
            out.display()
        );
    }
    if !meta.is_dir() {
        bail!("output '{}': exists and is not a directory", out.display());
    }
    let empty = std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
    if empty {
        return Ok(());
    }
    match marker_of(out) {
        Some(m) if m.stage == stage => Ok(()),
        Some(m) => bail!(
            "output '{}': holds simreg's {} output; refusing to replace it with the {stage} \
             stage's (give another --out)",
            out.display(),
            m.stage
        ),
        None => bail!(
            "output '{}': exists and was not written by simreg's {stage} stage (no {MARKER}); \
             refusing to replace it (give another --out, or remove it yourself)",
            out.display()
        ),
    }
}

/// Refuses an output that is one of the stage's inputs, holds one, or lies inside an input
/// directory.
pub fn check_not_input(out: &Path, stage: &str, inputs: &[&Path]) -> Result<()> {
    let o = resolve(out);
    for input in inputs {
        let i = resolve(input);
        if i == o || i.starts_with(&o) {
            bail!(
                "output '{}': is or holds the {stage} stage's input '{}'; give another --out",
                out.display(),
                input.display()
            );
        }
        if o.starts_with(&i) {
            bail!(
                "output '{}': lies inside the {stage} stage's input '{}'; give another --out",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Whether `name` is a temporary file simreg writes before a rename (`NAME.tmp<pid>...`).
pub fn is_temp_name(name: &str) -> bool {
    name.match_indices(".tmp").any(|(i, _)| {
        let rest = &name[i + 4..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0 && (digits == rest.len() || rest.as_bytes()[digits] == b'.'))
            || rest.starts_with(".safetensors")
    })
}

/// Removes the temporary files a killed writer left in `dir` (and its subdirectories).
pub fn remove_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let (path, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
        match e.file_type() {
            Ok(t) if t.is_dir() => remove_temp_files(&path),
            Ok(t) if t.is_file() && is_temp_name(&name) => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

/// Removes what a killed writer of `out` left beside it: `<out>.old<pid>`, a previous output
/// moved aside for the swap (only when its marker says it is simreg's: a user's
/// `results.old2019` is not touched).
fn remove_leftovers(out: &Path) {
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else { return };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let other = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = other.strip_prefix(name.as_ref()) else { continue };
        let pid = rest.strip_prefix(".old");
        let p = e.path();
        if pid.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            && p.is_dir()
            && marker_of(&p).is_some()
        {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

/// The right to write a stage's output: locked, owned (or free), not an input; leftovers of
/// killed runs removed. Dropping it releases the lock.
pub struct Claim {
    out: PathBuf,
    marker: Marker,
    _lock: OutputLock,
}

/// Claims `out` for `stage`, whose inputs are `inputs`.
pub fn claim(out: &Path, stage: &str, inputs: &[&Path]) -> Result<Claim> {
    check_not_input(out, stage, inputs)?;
    let lock = lock(out)?;
    check_owner(out, stage)?;
    remove_leftovers(out);
    let run = resolve(out).parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Claim { out: out.to_path_buf(), marker: Marker { stage: stage.into(), run }, _lock: lock })
}

impl Claim {
    /// The output directory claimed.
    pub fn out(&self) -> &Path {
        &self.out
    }
    /// Writes the marker into `dir` (the output, or the partial directory that becomes it).
    pub fn mark(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(MARKER), &self.marker)
    }
}

/// Whether every entry of `dir` is something simreg writes in a run directory: stage outputs
/// (marked), their partial or lock files, and the run's own files (a `pipeline.toml` that
/// simreg wrote). A run directory made by stage commands alone has no run marker yet.
fn is_simreg_folder(dir: &Path) -> bool {
    const RUN_FILES: [&str; 4] =
        [MARKER, "noise_sweep.json", "enforce_study.json", "enforce_curves.csv"];
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().all(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => marker_of(&path).is_some() || name.ends_with(".partial"),
            Ok(t) if t.is_file() => {
                RUN_FILES.contains(&name.as_str())
                    || name.ends_with(".lock")
                    || is_temp_name(&name)
                    || (name == "pipeline.toml" && written_by_simreg(&path))
            }
            _ => false,
        }
    })
}

/// Whether `dir` is a run directory simreg made: marked as a run, or (made by stage commands
/// alone, before any `simreg run`) unmarked and holding only simreg's outputs.
pub fn is_run_folder(dir: &Path) -> bool {
    match marker_of(dir) {
        Some(m) => m.stage == "run",
        None => is_simreg_folder(dir),
    }
}

/// Whether a run's `pipeline.toml` was written by simreg (its first line says so).
pub fn written_by_simreg(pipeline_toml: &Path) -> bool {
    std::fs::read_to_string(pipeline_toml).is_ok_and(|t| t.lines().next() == Some(PIPELINE_HEADER))
}

/// Claims run directory `dir` for `simreg run`: locked; absent, empty, marked as a run, or
/// holding only simreg's outputs; created and marked.
pub fn claim_run(dir: &Path) -> Result<Claim> {
    let lock = lock(dir)?;
    let run = Marker { stage: "run".into(), run: resolve(dir) };
    if dir.exists() && !is_run_folder(dir) {
        check_owner(dir, "run")?;
    }
    remove_leftovers(dir);
    create_dir(dir)?;
    // `pipeline.toml.tmp<pid>` and the like, at the top of the run folder only.
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let temp = is_temp_name(&e.file_name().to_string_lossy());
        if temp && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let c = Claim { out: dir.to_path_buf(), marker: run, _lock: lock };
    c.mark(dir)?;
    Ok(c)
}

/// Builds a stage's output directory: claims `out` (see [`claim`]) and builds it (see
/// [`Claim::build`]).
pub fn build_dir<T>(
    out: &Path,
    stage: &str,
    inputs: &[&Path],
    build: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    claim(out, stage, inputs)?.build(build)
}

type Resume<'a> = Option<Box<dyn FnOnce(&Path) -> bool + 'a>>;

impl Claim {
    /// Builds the output in `<out>.partial` with `build`, marks it and swaps it onto `out`. On
    /// error, or on SIGINT or SIGTERM, the partial directory is removed and `out` is left as it
    /// was. (Stages that compute long before writing claim first, so that a second writer or a
    /// foreign folder is refused before the work.)
    pub fn build<T>(self, build: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        self.build_in_partial(None, build)
    }

    /// As [`Claim::build`], but a partial directory left by a killed or interrupted run is
    /// continued when `resume(partial)` says it can be (its temporary files are removed
    /// first); it is kept on SIGINT or SIGTERM, and removed on error.
    pub fn build_resumable<T>(
        self,
        resume: impl FnOnce(&Path) -> bool,
        build: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        self.build_in_partial(Some(Box::new(resume)), build)
    }

    fn build_in_partial<T>(
        self,
        resume: Resume<'_>,
        build: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let out = self.out.clone();
        let partial = partial_dir(&out);
        let resumable = resume.is_some();
        let resumed = partial.exists() && resume.is_some_and(|r| r(&partial));
        if resumed {
            remove_temp_files(&partial);
        } else if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("cannot clear '{}'", partial.display()))?;
        }
        create_dir(&partial)?;
        let _on_signal = (!resumable).then(|| interrupt::remove_on_signal(&partial));
        match build(&partial).and_then(|v| self.mark(&partial).map(|_| v)) {
            Ok(v) => {
                swap_into_place(&partial, &out)?;
                Ok(v)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        for n in ["a.tif.tmp123", "state.json.tmp9", "x.tmp12.tif", "c.safetensors.tmp.safetensors"]
        {
            assert!(is_temp_name(n), "{n}");
        }
        for n in ["a.tif", "tmp123", "a.tmpl", "a.tmp", "t_0001.tif", "a.tmpx1"] {
            assert!(!is_temp_name(n), "{n}");
        }
    }

    #[test]
    fn resolve_folds_missing_parts() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().canonicalize().unwrap();
        assert_eq!(resolve(&t.path().join("a/../b/./c")), base.join("b/c"));
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink(t.path().join("real"), t.path().join("link")).unwrap();
        assert_eq!(resolve(&t.path().join("link/x")), base.join("real/x"));
    }

    #[test]
    fn a_second_lock_names_the_holder_and_a_released_one_is_taken_over() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let held = lock(&out).unwrap();
        let e = lock(&out).err().unwrap().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(held);
        assert!(!lock_path(&out).exists());
        // A stale file (its holder died: no flock on it) is taken over.
        std::fs::write(lock_path(&out), "999999\n").unwrap();
        let again = lock(&out).unwrap();
        let text = std::fs::read_to_string(lock_path(&out)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        drop(again);
    }

    #[test]
    fn ownership_by_marker_only() {
        let t = tempfile::tempdir().unwrap();
        let mine = t.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::write(mine.join("summary.json"), "{}").unwrap();
        assert!(check_owner(&mine, "align").is_err());
        let c = claim(&t.path().join("labels"), "labels", &[]).unwrap();
        let d = t.path().join("labels");
        std::fs::create_dir(&d).unwrap();
        c.mark(&d).unwrap();
        drop(c);
        assert!(check_owner(&d, "labels").is_ok());
        let e = check_owner(&d, "similarity").unwrap_err().to_string();
        assert!(e.contains("holds simreg's labels output"), "{e}");
    }

    #[test]
    fn outputs_may_not_touch_inputs() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("run");
        std::fs::create_dir_all(run.join("labels")).unwrap();
        let labels = run.join("labels");
        assert!(check_not_input(&labels, "similarity", &[&labels]).is_err());
        assert!(check_not_input(&run, "audit", &[&labels]).is_err());
        assert!(check_not_input(&labels.join("x"), "audit", &[&labels]).is_err());
        assert!(check_not_input(&run.join("similarity"), "similarity", &[&labels]).is_ok());
    }

    #[test]
    fn build_dir_swaps_in_a_marked_directory_and_clears_leftovers() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("tiles");
        std::fs::create_dir_all(t.path().join("tiles.old4242")).unwrap();
        std::fs::write(
            t.path().join("tiles.old4242").join(MARKER),
            r#"{"stage":"tile","run":"/"}"#,
        )
        .unwrap();
        // A user's folder of the same shape, without a marker, stays.
        std::fs::create_dir_all(t.path().join("tiles.old2019")).unwrap();
        build_dir(&out, "tile", &[], |p| Ok(std::fs::write(p.join("a"), "1")?)).unwrap();
        assert_eq!(marker_of(&out).unwrap().stage, "tile");
        assert!(
            !t.path().join("tiles.old4242").exists() && t.path().join("tiles.old2019").exists()
        );
        assert!(!t.path().join("tiles.partial").exists() && !lock_path(&out).exists());
        // An error leaves the previous output as it was.
        let e = build_dir(&out, "tile", &[], |p| -> Result<()> {
            std::fs::write(p.join("a"), "2")?;
            bail!("boom")
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "1");
    }
}
