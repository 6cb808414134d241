//! The sharding contract (`--shard K/N`): shard K of N takes the K-th of N contiguous, nearly
//! equal ranges of a stage's work items (windows, tiles, pairs), so that N processes — e.g. the
//! tasks of a Slurm job array — split a stage without talking to each other, and a merge puts
//! their outputs together exactly as one process would have written them.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Shard `k` (1-based) of `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl Shard {
    /// The whole of the work: one shard of one.
    pub const ALL: Shard = Shard { k: 1, n: 1 };

    /// The items of `0..len` this shard takes.
    pub fn range(self, len: usize) -> Range<usize> {
        (self.k - 1) * len / self.n..self.k * len / self.n
    }

    /// "2-of-4": a folder name for the shard's outputs.
    pub fn dir_name(self) -> String {
        format!("{}-of-{}", self.k, self.n)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Shard> {
        let parse = || -> Option<Shard> {
            let (k, n) = s.split_once('/')?;
            Some(Shard { k: k.trim().parse().ok()?, n: n.trim().parse().ok()? })
        };
        match parse() {
            Some(sh) if sh.n >= 1 && (1..=sh.n).contains(&sh.k) => Ok(sh),
            _ => bail!("--shard '{s}': expected K/N with 1 ≤ K ≤ N, e.g. 2/4"),
        }
    }
}

/// The name of a shard folder's description file; written last, so a folder that has one is
/// a complete shard.
pub const SHARD_JSON: &str = "shard.json";

/// Reads the `shard.json` of the shard folder `dir`, which must be of `format` (e.g.
/// "simreg-tile-shard/1"); `what` names the kind in errors ("tile").
pub fn read_shard_json<T: crate::artefacts::JsonArtefact>(
    dir: &std::path::Path,
    format: &str,
    what: &str,
) -> Result<T> {
    let path = dir.join(SHARD_JSON);
    let Ok(text) = std::fs::read_to_string(&path) else {
        bail!("'{}': not a complete {what} shard (no {SHARD_JSON})", dir.display());
    };
    #[derive(Deserialize)]
    struct Format {
        format: String,
    }
    match serde_json::from_str::<Format>(&text) {
        Ok(f) if f.format == format => crate::artefacts::read_json(&path),
        Ok(f) => bail!(
            "'{}': a shard of format '{}', not a {what} shard ('{format}')",
            dir.display(),
            f.format
        ),
        Err(_) => bail!("'{}': not readable as a {what} shard", path.display()),
    }
}

/// A shard folder's `shard.json`.
pub trait ShardJson: crate::artefacts::JsonArtefact {
    /// Its `format` (e.g. "simreg-tile-shard/1").
    const FORMAT: &'static str;
    /// The stage, in errors ("tile").
    const STAGE: &'static str;
    fn shard(&self) -> Shard;
    /// The hash of the inputs and parameters (the same for every shard of one split).
    fn input_hash(&self) -> &str;
}

/// The `shard.json` of every folder in `dirs`, in shard order: all N shards of one split of
/// the same inputs, or an error naming what is missing or does not belong.
pub fn read_all<T: ShardJson>(dirs: &[std::path::PathBuf]) -> Result<Vec<(std::path::PathBuf, T)>> {
    let mut files: Vec<(std::path::PathBuf, T)> = dirs
        .iter()
        .map(|d| Ok((d.clone(), read_shard_json(d, T::FORMAT, T::STAGE)?)))
        .collect::<Result<_>>()?;
    files.sort_by_key(|(_, f)| f.shard().k);
    let got: Vec<Shard> = files.iter().map(|(_, f)| f.shard()).collect();
    let n = check_complete(&got, &format!("{} shards", T::STAGE))?;
    let hash = files[0].1.input_hash().to_string();
    if let Some((d, _)) = files.iter().find(|(_, f)| f.input_hash() != hash) {
        bail!(
            "{} shard '{}' was made from other inputs or parameters than shard 1/{n}",
            T::STAGE,
            d.display()
        );
    }
    Ok(files)
}

/// Checks that `got` (the shards found) are shards 1..=n of one split, naming those missing.
pub fn check_complete(got: &[Shard], what: &str) -> Result<usize> {
    let Some(n) = got.first().map(|s| s.n) else { bail!("{what}: no shard given") };
    if let Some(s) = got.iter().find(|s| s.n != n) {
        bail!("{what}: shard {s} belongs to a split into {} shards, the others to {n}", s.n);
    }
    let missing: Vec<String> =
        (1..=n).filter(|&k| !got.iter().any(|s| s.k == k)).map(|k| format!("{k}/{n}")).collect();
    if !missing.is_empty() {
        bail!(
            "{what}: incomplete: shard{} {} missing",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        );
    }
    if got.len() != n {
        bail!("{what}: a shard is given twice");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_items_once_in_order() {
        for len in [0, 1, 5, 17, 100] {
            for n in 1..=7 {
                let mut next = 0;
                for k in 1..=n {
                    let r = Shard { k, n }.range(len);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= len.div_ceil(n));
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn parse_and_completeness() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { k: 2, n: 4 });
        for bad in ["0/4", "5/4", "2", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let s = |k| Shard { k, n: 3 };
        assert_eq!(check_complete(&[s(2), s(1), s(3)], "x").unwrap(), 3);
        let e = check_complete(&[s(1)], "tiles").unwrap_err().to_string();
        assert_eq!(e, "tiles: incomplete: shards 2/3, 3/3 missing");
    }
}
