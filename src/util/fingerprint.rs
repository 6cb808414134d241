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

pub fn file_id(path: &Path) -> Result<impl Serialize> {
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
