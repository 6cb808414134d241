//! A stage's resume key: a hash of its parameters and of its input files' identity.
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// Identity of an input file: canonical path, size and modification time (as `make` would).
/// Content hashing would be exact but would read every input before deciding there is no work.
#[derive(Serialize)]
struct FileId {
    path: String,
    size: u64,
    mtime_ns: u128,
}

/// A GDAL virtual path (`/vsizip/ARCHIVE/MEMBER`, ...) is identified by its archive on disk
/// (the longest prefix that is a file) and the member's name: a changed archive changes every
/// member's identity. One with no file on disk (a URL) is identified by its path alone.
pub fn file_id(path: &Path) -> Result<impl Serialize> {
    let text = path.to_string_lossy();
    let Some(rest) = text.strip_prefix("/vsi").filter(|_| !path.is_file()) else {
        return disk_id(path);
    };
    // `/vsizip//abs/a.zip/m` keeps its `//` in batch; a normalised path has lost it.
    let inner = rest.split_once('/').map_or("", |(_, r)| r).trim_start_matches('/');
    let archive = std::iter::successors(Some(Path::new(inner)), |p| p.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .find_map(|p| [p.to_path_buf(), Path::new("/").join(p)].into_iter().find(|f| f.is_file()));
    let Some(archive) = archive else {
        return Ok(FileId { path: text.into_owned(), size: 0, mtime_ns: 0 });
    };
    let outer = disk_id(&archive)?;
    let member = inner.get(archive.to_string_lossy().trim_start_matches('/').len()..).unwrap_or("");
    Ok(FileId { path: format!("{}:{member}", outer.path), ..outer })
}

fn disk_id(path: &Path) -> Result<FileId> {
    let canon = std::fs::canonicalize(path)
        .with_context(|| format!("'{}': cannot resolve path", path.display()))?;
    let meta = std::fs::metadata(&canon)?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(FileId { path: canon.to_string_lossy().into_owned(), size: meta.len(), mtime_ns })
}

/// blake3 of the JSON form of `value`.
pub fn hash_json(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).expect("serialisable");
    blake3::hash(&bytes).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: &str) -> String {
        serde_json::to_string(&file_id(Path::new(p)).unwrap()).unwrap()
    }

    #[test]
    fn an_archive_member_is_identified_by_its_archive_and_name() {
        let t = tempfile::tempdir().unwrap();
        let zip = t.path().join("pairs.zip");
        std::fs::write(&zip, b"first").unwrap();
        let z = zip.to_string_lossy().into_owned();
        // Both spellings GDAL accepts (batch keeps the `//`) name the same member.
        let a = id(&format!("/vsizip/{z}/p/reference.tif"));
        assert_eq!(a, id(&format!("/vsizip{z}/p/reference.tif")));
        assert!(a.contains("pairs.zip:/p/reference.tif"), "{a}");
        assert_ne!(a, id(&format!("/vsizip/{z}/p/moving.tif")));
        // A rewritten archive is a new input for every member.
        std::fs::write(&zip, b"second, longer").unwrap();
        assert_ne!(a, id(&format!("/vsizip/{z}/p/reference.tif")));
        // A virtual path with no file behind it (a URL) keeps its path; a missing file fails.
        assert!(id("/vsicurl/https://example.org/a.tif").contains("example.org"));
        assert!(file_id(&t.path().join("missing.tif")).is_err());
    }
}
