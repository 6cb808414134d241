//! The contract between stages: every file one stage writes and another reads, as a type.
//!
//! One file per stage's outputs (`tiles`, `synth`, `labels`, `train`, `predict`, `similarity`,
//! `audit`, `report`, `enforce`, `toy1d`, `align`), holding its parameters (each stage records
//! them in its own outputs), the rows of its tables, its summaries, and the directory type
//! that names its files; `run` names every path of a run directory; `learn` is the request
//! `simreg` sends to `simreg-learn`. Writers and readers share these types, and nothing reads
//! JSON by string keys.
//!
//! Reading an artefact that is missing, damaged or written by another version of simreg is a
//! one-line error naming the file and the command that writes it again.
pub mod adapt;
pub mod align;
pub mod audit;
pub mod enforce;
pub mod labels;
pub mod learn;
pub mod predict;
pub mod report;
pub mod run;
pub mod similarity;
pub mod synth;
pub mod tiles;
pub mod toy1d;
pub mod train;

pub use run::RunDir;

use crate::util::{atomic, text::one_line};
use anyhow::bail;
use anyhow::Result;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// A JSON file that one stage writes and others read.
pub trait JsonArtefact: Serialize + DeserializeOwned {
    /// What it is, in errors ("labels summary").
    const WHAT: &'static str;
    /// The command that writes it, in errors ("simreg labels").
    const MADE_BY: &'static str;
}

/// Reads a JSON artefact. A missing file, or one that does not parse (damaged, or written by
/// another version of simreg), is an error naming the file and the command that rewrites it.
pub fn read_json<T: JsonArtefact>(path: &Path) -> Result<T> {
    match read_json_if_present(path)? {
        Some(v) => Ok(v),
        None => bail!("no {} at '{}' (run `{}` first)", T::WHAT, path.display(), T::MADE_BY),
    }
}

/// `read_json`, with None for a file that does not exist (one that exists must parse).
pub fn read_json_if_present<T: JsonArtefact>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("{} '{}': cannot read: {}", T::WHAT, path.display(), one_line(e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        anyhow::anyhow!(
            "{} '{}': not readable ({}): damaged, or written by another version of simreg; \
             make it again with `{}`",
            T::WHAT,
            path.display(),
            one_line(e),
            T::MADE_BY
        )
    })
}

/// Writes a JSON artefact atomically (pretty-printed, as every artefact is).
pub fn write_json<T: JsonArtefact>(path: &Path, value: &T) -> Result<()> {
    atomic::write_json(path, value)
}

/// Fixed-precision numbers in CSV tables: each column keeps the digits it was designed with.
pub(crate) mod csv_format {
    use serde::Serializer;

    /// `{:.P}`.
    pub fn fixed<const P: usize, S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:.P$}"))
    }

    /// `{:.Pe}`.
    pub fn sci<const P: usize, S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:.P$e}"))
    }

    /// `{:.P}`, or an empty field.
    pub fn fixed_opt<const P: usize, S: Serializer>(
        v: &Option<f64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&format_args!("{v:.P$}")),
            None => s.serialize_str(""),
        }
    }
}

/// A number that JSON holds as null when it was NaN (serde_json writes NaN as null).
pub(crate) fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use serde::Deserialize;
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A column or field absent from an older file reads as NaN.
pub(crate) fn nan() -> f64 {
    f64::NAN
}

#[cfg(test)]
mod tests {
    use super::audit::{write_audit_csv, AuditDir, AuditRow};
    use super::labels::{LabelSummary, LabelsDir};
    use super::similarity::{write_ns_csv, NsRow, SimilarityDir, Split};

    fn ns_row(tile: &str, f_trace: f64) -> NsRow {
        NsRow {
            tile: tile.into(),
            split: Split::Val,
            ns: 12.3456789,
            g_norm: 0.000123456789,
            f_trace,
            neighbour_gap_px: 0.5,
            pred_dx: -1.23456,
            pred_dy: 2.0,
            label_dx: 0.1,
            label_dy: -0.1,
            predicted_error_px: 0.25,
        }
    }

    #[test]
    fn ns_csv_keeps_its_columns_and_digits_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimilarityDir::new(dir.path());
        write_ns_csv(&sim.ns_csv(), &[ns_row("s/x00000_y00000", 1.5), ns_row("s/x1", f64::NAN)])
            .unwrap();
        let text = std::fs::read_to_string(sim.ns_csv()).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "tile,split,ns,g_norm,f_trace,neighbour_gap_px,pred_dx,pred_dy,label_dx,label_dy,predicted_error_px"
        );
        assert_eq!(
            lines.next().unwrap(),
            "s/x00000_y00000,val,12.345679,1.234568e-4,1.500000e0,0.5000,-1.2346,2.0000,0.1000,-0.1000,0.2500"
        );
        let back = sim.ns_rows().unwrap();
        assert_eq!(
            (back[0].split, back[0].ns, back[0].pred()),
            (Split::Val, 12.345679, [-1.2346, 2.0])
        );
        assert!(back[1].f_trace.is_nan());
        // An older table without the sketch columns still reads (NaN there).
        std::fs::write(
            sim.ns_csv(),
            "tile,split,ns,g_norm,pred_dx,pred_dy,label_dx,label_dy\na,train,1,2,3,4,5,6\n",
        )
        .unwrap();
        let old = sim.ns_rows().unwrap();
        assert!(old[0].train() && old[0].f_trace.is_nan() && old[0].label() == [5.0, 6.0]);
        // A bad split names the file.
        std::fs::write(
            sim.ns_csv(),
            "tile,split,ns,g_norm,pred_dx,pred_dy,label_dx,label_dy\na,test,1,2,3,4,5,6\n",
        )
        .unwrap();
        let e = sim.ns_rows().unwrap_err().to_string();
        assert!(e.contains("ns.csv") && e.contains("test") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn audit_csv_has_truth_columns_only_with_truth() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditDir::new(dir.path());
        let row = AuditRow {
            tile: "s/t".into(),
            rank: 1,
            score: 7.1235,
            residual_px: 1.0,
            ns: 3.125,
            split: Split::Train,
            centre_x: 500000.0,
            centre_y: 1.0,
            lon: None,
            lat: None,
            label_dx: 0.0,
            label_dy: 0.0,
            pred_dx: 0.0,
            pred_dy: 0.0,
            baseline_dx: 0.0,
            baseline_dy: 0.0,
            baseline_peak: 0.5,
            predicted_error_px: 0.1,
            true_error_px: None,
            label_error_px: None,
            outlier: None,
        };
        write_audit_csv(&audit.audit_csv(), std::slice::from_ref(&row)).unwrap();
        let text = std::fs::read_to_string(audit.audit_csv()).unwrap();
        assert!(text.starts_with("tile,rank,score,residual_px,ns,split,centre_x,centre_y,lon,lat,"));
        assert!(text.lines().next().unwrap().ends_with(",predicted_error_px"), "{text}");
        assert!(text.contains("s/t,1,7.1235,1.0000,3.125,train,500000.000,1.000,,,"), "{text}");
        assert_eq!(audit.rows().unwrap(), vec![row.clone()]);
        let with_truth = AuditRow {
            lon: Some(3.0),
            lat: Some(45.0),
            true_error_px: Some(0.5),
            label_error_px: Some(2.0),
            outlier: Some(true),
            ..row
        };
        write_audit_csv(&audit.audit_csv(), std::slice::from_ref(&with_truth)).unwrap();
        let text = std::fs::read_to_string(audit.audit_csv()).unwrap();
        assert!(text.lines().next().unwrap().ends_with(",true_error_px,label_error_px,outlier"));
        assert!(
            text.contains(",3.0000000,45.0000000,")
                && text.trim_end().ends_with(",0.5000,2.0000,true"),
            "{text}"
        );
        assert_eq!(audit.rows().unwrap(), vec![with_truth]);
    }

    #[test]
    fn artefacts_of_older_runs_read_or_name_the_file_to_make_again() {
        let dir = tempfile::tempdir().unwrap();
        let labels = LabelsDir::new(dir.path());
        // A labels summary written before the labels recorded their parameters still reads.
        std::fs::write(
            labels.summary_json(),
            r#"{"out": "x", "up_to_date": false, "n_tiles": 3, "noise_model": "iid",
                "label_noise_rmse_px": [1.0, 1.1], "seconds": 0.5}"#,
        )
        .unwrap();
        let s: LabelSummary = labels.summary().unwrap();
        assert!(s.params.is_none() && s.n_tiles == 3);
        // A damaged one is an error naming the file and the command that makes it again.
        std::fs::write(labels.summary_json(), "{\"out\": ").unwrap();
        let e = labels.summary().unwrap_err().to_string();
        assert!(e.contains("summary.json") && e.contains("`simreg labels`"), "{e}");
        // A missing one names the stage to run.
        let e = labels.target().unwrap_err().to_string();
        assert!(e.contains("target.json") && e.contains("run `simreg labels` first"), "{e}");
        // An optional artefact that is absent is None; present, it must parse.
        assert!(labels.truth().unwrap().is_none());
        std::fs::write(labels.truth_json(), "[]").unwrap();
        assert!(labels.truth().is_err());
    }
}
