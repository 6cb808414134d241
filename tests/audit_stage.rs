//! `simreg audit` and `simreg report` through the CLI on a tiny synthetic run with gross label
//! errors: the outputs, their consistency, the run without truth, and bad input.
mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    (header, lines.map(|l| l.split(',').map(String::from).collect()).collect())
}

/// Every `src="..."` of the page names a file that exists in the report directory.
fn assert_links_exist(report: &Path) -> usize {
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let mut n = 0;
    for part in html.split("src=\"").skip(1) {
        let target = &part[..part.find('"').unwrap()];
        assert!(
            !target.starts_with('/') && !target.contains(".."),
            "the page links outside its directory: {target}"
        );
        let f = report.join(target);
        assert!(
            std::fs::metadata(&f).map(|m| m.len() > 100).unwrap_or(false),
            "index.html references a missing file: {target}"
        );
        n += 1;
    }
    n
}

#[test]
fn audit_and_report_on_a_run_with_gross_label_errors() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    let d = |p: &str| run.join(p).to_string_lossy().into_owned();
    ok(&["synth", "--out", &d("synth"), "--size", "160", "--seed", "5"]);
    ok(&[
        "tile",
        "--reference",
        &d("synth/optical.tif"),
        "--moving",
        &d("synth/sar.tif"),
        "--tile-size",
        "32",
        "--overlap",
        "16",
        "--out",
        &d("tiles"),
    ]);
    ok(&[
        "labels",
        "--tiles",
        &d("tiles"),
        "--out",
        &d("labels"),
        "--amplitude",
        "3",
        "--noise",
        "iid",
        "--sigma",
        "1",
        "--outliers",
        "0.1",
        "--outlier-magnitude",
        "10",
        "--seed",
        "2",
    ]);
    // Bad input first: the stages that are missing are named.
    let o = simreg(&["audit", &d("")]);
    assert!(!o.status.success() && stderr(&o).contains("`train` stage first"), "{}", stderr(&o));
    ok(&[
        "train",
        "--labels",
        &d("labels"),
        "--out",
        &d("train"),
        "--width",
        "4",
        "--depth",
        "2",
        "--corr-radius",
        "1",
        "--batch",
        "8",
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]);
    let o = simreg(&["audit", &d("")]);
    assert!(
        !o.status.success() && stderr(&o).contains("`similarity` stage first"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).trim().lines().count(), 1, "one-line error: {}", stderr(&o));
    ok(&["similarity", &d(""), "--device", "cpu", "--n-queries", "2", "--k", "3"]);

    let s = ok(&["audit", &d(""), "--top", "5"]);
    assert_eq!(s["n_tiles"], 81);
    assert_eq!(s["n_heldout"], 16);
    let p = s["predicted_rmse_px"].as_f64().unwrap();
    let [lo, hi] = [0, 1].map(|k| s["predicted_rmse_interval_px"][k].as_f64().unwrap());
    assert!(p.is_finite() && p >= 0.0 && lo <= hi, "{s}");
    assert!(s["measured_rmse_px"].as_f64().unwrap() > 0.0);
    let n_out = s["n_outliers_true"].as_u64().unwrap();
    assert!(n_out >= 2, "10 % of 81 tiles drew a gross error: {n_out}");
    for k in ["auroc", "auroc_residual_only"] {
        let a = s[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{k} = {a}");
    }
    // Gross errors of 10 px on 1-px noise stand out even for a barely trained network.
    assert!(s["auroc"].as_f64().unwrap() > 0.8, "{s}");
    let n_flagged = s["n_flagged"].as_u64().unwrap() as usize;
    assert!(n_flagged >= 5);

    // audit.csv: every tile once, ranked by decreasing score, positions in lon/lat.
    let (header, rows) = csv(&run.join("audit/audit.csv"));
    let col =
        |n: &str| header.iter().position(|h| h == n).unwrap_or_else(|| panic!("no column {n}"));
    assert_eq!(rows.len(), 81);
    let scores: Vec<f64> = rows.iter().map(|r| r[col("score")].parse().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    assert!(rows.iter().enumerate().all(|(i, r)| r[col("rank")] == (i + 1).to_string()));
    // The synthetic scene sits at UTM 31N (500 000, 5 000 000): ≈ 3° E, 45.1° N.
    for r in &rows {
        let (lon, lat): (f64, f64) =
            (r[col("lon")].parse().unwrap(), r[col("lat")].parse().unwrap());
        assert!((lon - 3.0).abs() < 0.02 && (lat - 45.15).abs() < 0.05, "{lon}, {lat}");
        let x: f64 = r[col("centre_x")].parse().unwrap();
        assert!((500_000.0..500_000.0 + 160.0 * 2.0 + 1.0).contains(&x), "{x}");
    }
    assert!(header.iter().any(|h| h == "true_error_px") && header.iter().any(|h| h == "outlier"));
    let outliers = rows.iter().filter(|r| r[col("outlier")] == "true").count() as u64;
    assert_eq!(outliers, n_out);

    // flagged.geojson: the flagged tiles' footprints, worst first, in lon/lat.
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("audit/flagged.geojson")).unwrap())
            .unwrap();
    let f = g["features"].as_array().unwrap();
    assert_eq!(f.len(), n_flagged);
    assert_eq!(f[0]["properties"]["tile"].as_str().unwrap(), rows[0][col("tile")]);
    let ring = f[0]["geometry"]["coordinates"][0].as_array().unwrap();
    assert_eq!(ring.len(), 5);
    assert_eq!(ring[0], ring[4]);
    assert!((ring[0][0].as_f64().unwrap() - 3.0).abs() < 0.02);

    // The report: every linked file exists; the summary gathers every stage.
    let r = ok(&["report", &d("")]);
    assert_eq!(r["has_truth"], true);
    let n_links = assert_links_exist(&run.join("report"));
    assert!(n_links >= 20 + 3, "accuracy, training, histogram, the top 20, ...: {n_links} images");
    let html = std::fs::read_to_string(run.join("report/index.html")).unwrap();
    for needle in [
        "Accuracy against label noise",
        "Training",
        "Most suspicious labels",
        "Tiles the network sees as alike",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    // The first paragraph states the measured result, with the training's own figures.
    let train: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("train/summary.json")).unwrap())
            .unwrap();
    let head = html.split("<p class=\"headline\">").nth(1).expect("a headline paragraph");
    let head = head.split("</p>").next().unwrap();
    let net = format!("{:.2} px from the truth", train["net_rmse_truth_px"].as_f64().unwrap());
    let labels = format!("{:.2} px", train["label_rmse_truth_px"].as_f64().unwrap());
    assert!(head.contains(&net) && head.contains(&labels), "{head}");
    let first = |needle: &str| html.find(needle).unwrap();
    assert!(first("<p class=\"headline\">") < first("<p>Run:"), "the headline comes first");
    let sum: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report/summary.json")).unwrap())
            .unwrap();
    for k in ["tiles", "labels", "train", "similarity", "audit", "report"] {
        assert!(sum.get(k).is_some(), "report/summary.json lacks {k}");
    }
    assert_eq!(sum["audit"]["n_flagged"].as_u64().unwrap() as usize, n_flagged);

    // Without truth: no truth-based numbers, and the report says so.
    std::fs::rename(run.join("labels/truth.json"), run.join("labels/truth.json.away")).unwrap();
    let s = ok(&["audit", &d("")]);
    for k in ["measured_rmse_px", "auroc", "auroc_residual_only", "n_outliers_true"] {
        assert!(s.get(k).is_none(), "{k} without truth");
    }
    assert!(
        (s["predicted_rmse_px"].as_f64().unwrap() - p).abs() < 1e-9,
        "the estimate never reads the truth"
    );
    let (header, _) = csv(&run.join("audit/audit.csv"));
    assert!(!header.iter().any(|h| h == "true_error_px"));
    let r = ok(&["report", &d("")]);
    assert_eq!(r["has_truth"], false);
    assert_links_exist(&run.join("report"));
    let html = std::fs::read_to_string(run.join("report/index.html")).unwrap();
    assert!(html.contains("has no truth"), "the report says the truth-based plots are left out");
    assert!(!html.contains("class=\"headline\""), "no result against a truth it does not have");
    assert!(!html.contains("measured against truth"));

    // Damaged artefacts are named, never read as "absent" or as something else (issue 21).
    let audit_summary = run.join("audit/summary.json");
    let kept = std::fs::read(&audit_summary).unwrap();
    std::fs::write(&audit_summary, &kept[..kept.len() / 2]).unwrap();
    let o = simreg(&["report", &d("")]);
    let err = stderr(&o);
    assert!(!o.status.success(), "a corrupt audit summary is not 'no audit': {err}");
    assert!(err.contains("audit/summary.json") && err.contains("not readable"), "{err}");
    std::fs::write(&audit_summary, &kept).unwrap();
    let ns = run.join("similarity/ns.csv");
    let text = std::fs::read_to_string(&ns).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&ns, lines[..lines.len() / 2].join("\n") + "\n").unwrap();
    let o = simreg(&["audit", &d("")]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("ns.csv") && err.contains("truncated"), "{err}");
    assert!(!err.contains("held-out"), "not blamed on the held-out tiles: {err}");
}

#[test]
fn report_and_audit_name_the_missing_stage() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().to_string_lossy().into_owned();
    let o = simreg(&["report", &run]);
    assert!(
        !o.status.success() && stderr(&o).contains("run the `labels` stage first"),
        "{}",
        stderr(&o)
    );
    let o = simreg(&["audit", &run]);
    assert!(!o.status.success() && stderr(&o).contains("`labels` stage first"), "{}", stderr(&o));
    let o = simreg(&["audit", &run, "--threshold=-1"]);
    assert!(!o.status.success() && stderr(&o).contains("threshold"), "{}", stderr(&o));
}
