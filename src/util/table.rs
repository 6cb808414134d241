//! CSV tables the stages hand to each other (the `csv` crate: quoting, columns by name).
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Reads every row of `path` into `T`, matching columns by header name (extra columns are
/// ignored). An error names the file and the line.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut r = csv::Reader::from_path(path)
        .with_context(|| format!("'{}': cannot read", path.display()))?;
    r.deserialize()
        .map(|row| {
            row.map_err(|e| {
                anyhow::anyhow!("'{}': {}", path.display(), crate::util::text::one_line(e))
            })
        })
        .collect()
}

/// Writes `rows` with a header to `path` atomically (temporary file, then rename).
pub fn write<T: Serialize>(path: &Path, rows: impl IntoIterator<Item = T>) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row).with_context(|| format!("'{}': cannot encode a row", path.display()))?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("'{}': {}", path.display(), e))?;
    super::atomic::write_bytes(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Row {
        name: String,
        value: f64,
    }

    #[test]
    fn rows_round_trip_with_quotes_and_extra_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        let rows = vec![
            Row { name: "a,b".into(), value: 1.5 },
            Row { name: "bad \"x\", y".into(), value: -2.0 },
        ];
        write(&p, &rows).unwrap();
        assert_eq!(read::<Row>(&p).unwrap(), rows);
        // Columns by name: another order and an extra column read the same.
        std::fs::write(&p, "value,extra,name\n1.5,z,\"a,b\"\n").unwrap();
        assert_eq!(read::<Row>(&p).unwrap(), rows[..1]);
        // A bad number: one line naming the file.
        std::fs::write(&p, "name,value\na,x\n").unwrap();
        let e = read::<Row>(&p).unwrap_err().to_string();
        assert!(e.contains("t.csv") && !e.contains('\n'), "{e}");
        assert!(read::<Row>(&dir.path().join("none.csv")).is_err());
    }
}
