//! Nothing half-written: files are written under a temporary name and renamed; a stage's
//! output directory is built beside its final place (`<out>.partial`) and swapped in at the end.
//! Whose a directory is, and who is writing it, live in `output.rs`.
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Writes pretty JSON to `path` atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    write_bytes(path, text.as_bytes())
}

/// The temporary sibling written before renaming onto `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write '{}'", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename onto '{}'", path.display()))
}

/// `<out>.partial`, the directory a stage works in before it is swapped onto `out`.
pub fn partial_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Creates `dir` (and parents), naming it in the error.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("output '{}': cannot create directory", dir.display()))?;
    // Root ignores permission bits, so check writability by writing.
    let probe = dir.join(format!(".write-probe{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("output '{}': directory is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Moves the finished `partial` directory onto `out`, replacing a previous output.
pub fn swap_into_place(partial: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        let mut old = out.file_name().unwrap_or_default().to_os_string();
        old.push(format!(".old{}", std::process::id()));
        let old = out.with_file_name(old);
        std::fs::rename(out, &old)
            .with_context(|| format!("cannot move old output '{}' aside", out.display()))?;
        std::fs::rename(partial, out)
            .with_context(|| format!("cannot move '{}' into place", partial.display()))?;
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("cannot remove '{}'", old.display()))?;
    } else {
        std::fs::rename(partial, out)
            .with_context(|| format!("cannot move '{}' into place", partial.display()))?;
    }
    Ok(())
}

/// A hard link to `src` at `dst` (a copy across filesystems), for merging shard folders;
/// nothing when `dst` exists (files every shard writes alike, e.g. a scene's grid files).
pub fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    if dst.exists() {
        return Ok(());
    }
    if let Some(parent) = dst.parent() {
        create_dir(parent)?;
    }
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst)
            .with_context(|| format!("cannot copy '{}' to '{}'", src.display(), dst.display()))?;
    }
    Ok(())
}
