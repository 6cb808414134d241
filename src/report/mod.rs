//! The `report` stage: `RUN/report/index.html` (self-contained: it references only files in
//! `RUN/report/`) and `RUN/report/summary.json` (every stage's summary). Accuracy against label
//! noise (for a noise-sweep run, every σ), training curves, the N_S histogram with a
//! representative tile per bin, nearest-neighbour galleries, the audit's top 20 with their
//! labels drawn as arrows; for a similarity-enforcement study (RUN/enforce_study.json), its
//! curves per arm and table. Truth-based plots appear only when the run has truth, and the page
//! says when they are left out. Every section is one function; everything is read through
//! `artefacts`, and a file that exists but cannot be read is an error naming it.
pub mod plots;

use crate::artefacts::audit::{AuditRow, AuditSummary, CalibrationBin};
use crate::artefacts::enforce::EnforceStudy;
use crate::artefacts::labels::Labels;
use crate::artefacts::report::{ReportDir, ReportFile, ReportInfo, ReportSummary};
use crate::artefacts::tiles::{Manifest, TilesDir};
use crate::artefacts::train::TrainSummary;
use crate::artefacts::{read_json, read_json_if_present, RunDir};
use crate::raster::bands::read_bands;
use crate::raster::kind::Role;
use crate::util::{atomic, output};
use anyhow::{bail, Context, Result};
use plots::Series;
use plotters::style::RGBColor;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Tiles in the audit gallery.
const TOP: usize = 20;
const ARM_COLOURS: [(&str, RGBColor); 3] = [
    ("baseline", RGBColor(90, 90, 90)),
    ("plus_cos", RGBColor(200, 60, 50)),
    ("minus_cos", RGBColor(50, 80, 200)),
];

/// `x` to `d` decimals; "–" when it is not a number.
fn fixed(x: f64, d: usize) -> String {
    if x.is_finite() {
        format!("{x:.d$}")
    } else {
        "–".into()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Builds the report of `run` into `out` (normally `RUN/report`).
pub fn run(run: &RunDir, out: &Path) -> Result<ReportSummary> {
    crate::raster::init_gdal();
    plots::init_font()?;
    // Optional, but when present it must parse: a broken file is an error, not a blank section.
    let study = run.enforce_study().study()?;
    // A noise sweep or a similarity-enforcement study is reported from its own results.
    let sweep = run.is_sweep();
    if !sweep && study.is_none() {
        for (summary, stage) in [
            (run.labels().summary_json(), "labels"),
            (run.train().summary_json(), "train"),
            (run.similarity().summary_json(), "similarity"),
            (run.audit().summary_json(), "audit"),
        ] {
            if !summary.exists() {
                bail!(
                    "run '{}': no {stage} output (RUN/{stage}/summary.json): run the `{stage}` \
                     stage first",
                    run.path().display()
                );
            }
        }
    }
    let inputs: Vec<PathBuf> = vec![
        run.tiles().path().into(),
        run.labels().path().into(),
        run.train().path().into(),
        run.similarity().path().into(),
        run.audit().path().into(),
        run.path().join("sweep"),
    ];
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    output::build_dir(out, "report", &inputs, |partial| {
        let mut page = Page {
            dir: partial,
            headline: None,
            html: String::new(),
            files: Vec::new(),
            notes: Vec::new(),
        };
        let summary = build(run, sweep, study, &mut page)?;
        page.write(run, out, summary)
    })
}

/// The page being built: its headline (the measured result in one sentence, shown first), its
/// HTML, the files it references, the notes shown after the headline.
struct Page<'a> {
    dir: &'a Path,
    headline: Option<String>,
    html: String,
    files: Vec<String>,
    notes: Vec<String>,
}

impl Page<'_> {
    /// Draws a line plot into the report; returns the tag that shows it.
    fn plot(
        &mut self,
        name: &str,
        title: &str,
        axes: [&str; 2],
        series: &[Series],
        alt: &str,
    ) -> Result<String> {
        plots::lines(&self.dir.join(name), title, axes[0], axes[1], series, true)?;
        self.files.push(name.into());
        Ok(format!("<img src=\"{name}\" alt=\"{alt}\">"))
    }

    /// Writes summary.json and index.html.
    fn write(self, run: &RunDir, out: &Path, mut file: ReportFile) -> Result<ReportSummary> {
        let dir = ReportDir::new(self.dir);
        file.report.files = self.files.clone();
        // Keys sorted at every level, as JSON objects read back and written again are.
        let value = serde_json::to_value(&file)?;
        atomic::write_json(&dir.summary_json(), &value)?;
        let notes: String =
            self.notes.iter().map(|n| format!("<p class=\"note\">{}</p>\n", esc(n))).collect();
        let headline = self
            .headline
            .as_deref()
            .map_or(String::new(), |h| format!("<p class=\"headline\">{}</p>\n", esc(h)));
        let page = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>simreg \
             report: {title}</title><style>\nbody{{font-family:sans-serif;max-width:1100px;\
             margin:2em auto;color:#222}} table{{border-collapse:collapse}} td,th{{border:1px \
             solid #bbb;padding:3px 8px;text-align:right}}\n.gallery{{display:flex;flex-wrap:\
             wrap;gap:8px}} figure{{margin:0;font-size:12px}} .query{{border:2px solid #33f}} \
             .note{{background:#fff4d6;padding:6px}} img{{max-width:100%}} .headline{{font-size:1.15em}}\n\
             </style></head><body>\n<h1>simreg report</h1>\n{headline}<p>Run: {title}</p>\n\
             {notes}{html}</body></html>\n",
            title = esc(&run.path().display().to_string()),
            html = self.html,
        );
        atomic::write_bytes(&dir.index_html(), page.as_bytes())?;
        let final_dir = ReportDir::new(out);
        Ok(ReportSummary {
            out: out.to_path_buf(),
            index: final_dir.index_html(),
            has_truth: file.report.has_truth,
            files: self.files,
        })
    }
}

/// Every section, in page order; returns the gathered summaries.
fn build(
    run: &RunDir,
    sweep: bool,
    study: Option<EnforceStudy>,
    page: &mut Page,
) -> Result<ReportFile> {
    let mut file = ReportFile {
        tiles: read_json_if_present(&run.tiles().summary_json())?,
        labels: read_json_if_present(&run.labels().summary_json())?,
        train: read_json_if_present(&run.train().summary_json())?,
        similarity: read_json_if_present(&run.similarity().summary_json())?,
        audit: run.audit().summary_if_present()?,
        noise_sweep: read_json_if_present(&run.noise_sweep_json())?,
        enforce_study: None,
        report: ReportInfo::default(),
    };
    let has_truth = run.labels().truth_json().exists() || (sweep && file.noise_sweep.is_some());
    file.report.has_truth = has_truth;
    let is_study = study.is_some();
    if let Some(s) = &study {
        enforce_section(s, page)?;
    }
    file.enforce_study = study;
    accuracy_section(run, has_truth, page)?;
    if !has_truth && !is_study {
        page.notes.push("This run has no truth (RUN/labels/truth.json): plots against the truth are left out; the label-free estimates are shown alone.".into());
    }
    training_section(run, has_truth, page)?;
    if sweep {
        sweep_training_section(run, has_truth, page)?;
    }
    match &file.audit {
        Some(a) if run.audit().audit_csv().exists() => {
            let thumbs = Thumbs::load(run)?;
            let rows = run.audit().rows()?;
            neighbour_count_section(&rows, &thumbs, page)?;
            estimate_section(a, has_truth, page)?;
            suspicious_section(a, &rows, &thumbs, page)?;
        }
        _ if !sweep && !is_study => page.notes.push(
            "No audit (RUN/audit): run `simreg audit RUN` for the label-free estimates and the label ranking.".into(),
        ),
        _ if sweep => page.notes.push(
            "A noise sweep: each σ's similarity and audit are in RUN/sweep/sigma_<σ>/; `simreg report RUN/sweep/sigma_<σ>` makes that σ's full report.".into(),
        ),
        _ => {}
    }
    neighbours_section(run, page)?;
    Ok(file)
}

/// One point of the accuracy-vs-σ plot.
struct SigmaPoint {
    sigma: f64,
    label: Option<f64>,
    network: Option<f64>,
    predicted: Option<f64>,
    interval: Option<[f64; 2]>,
}

/// The runs to report accuracy for: every sub-run of a sweep (sorted by σ), or the run itself;
/// runs whose σ is not recorded are left out.
fn sigma_points(run: &RunDir) -> Result<Vec<SigmaPoint>> {
    let mut runs = run.sweep_runs();
    if runs.is_empty() {
        runs.push(run.clone());
    }
    let mut pts = Vec::new();
    for (sigma, r, train) in by_sigma(runs)? {
        let audit = r.audit().summary_if_present()?;
        pts.push(SigmaPoint {
            sigma,
            label: train.label_rmse_truth_px,
            network: train.net_rmse_truth_px,
            predicted: audit.as_ref().map(|a| a.predicted_rmse_px),
            interval: audit.as_ref().map(|a| a.predicted_rmse_interval_px),
        });
    }
    Ok(pts)
}

/// The runs with a training summary that records its σ, with that summary, sorted by σ.
fn by_sigma(runs: Vec<RunDir>) -> Result<Vec<(f64, RunDir, TrainSummary)>> {
    let mut out = Vec::new();
    for r in runs {
        let Some(train) = read_json_if_present::<TrainSummary>(&r.train().summary_json())? else {
            continue;
        };
        if let Some(sigma) = train.sigma_px {
            out.push((sigma, r, train));
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

/// Accuracy against label noise: labels and network against the truth, the label-free
/// estimate with its interval; a plot and a table.
fn accuracy_section(run: &RunDir, has_truth: bool, page: &mut Page) -> Result<()> {
    let pts = sigma_points(run)?;
    if pts.is_empty() {
        return Ok(());
    }
    if has_truth {
        page.headline = headline(&pts);
    }
    let _ = writeln!(page.html, "<h2>Accuracy against label noise</h2>");
    let mut series = vec![];
    if has_truth {
        series.push(Series::line(
            "labels vs truth",
            RGBColor(200, 60, 50),
            pts.iter().filter_map(|p| Some((p.sigma, p.label?))).collect(),
        ));
        series.push(Series::line(
            "network vs truth (held out)",
            RGBColor(40, 120, 60),
            pts.iter().filter_map(|p| Some((p.sigma, p.network?))).collect(),
        ));
    }
    let pred: Vec<(f64, f64)> = pts.iter().filter_map(|p| Some((p.sigma, p.predicted?))).collect();
    if !pred.is_empty() {
        let bars =
            pts.iter().filter_map(|p| Some((p.sigma, p.interval?[0], p.interval?[1]))).collect();
        series.push(Series {
            bars: Some(bars),
            ..Series::line("network, label-free estimate (5-95 %)", RGBColor(50, 80, 200), pred)
        });
    }
    if series.iter().any(|s| !s.points.is_empty()) {
        let img = page.plot(
            "accuracy_vs_sigma.png",
            "RMSE per axis against label noise",
            ["label noise sigma (px)", "RMSE (px)"],
            &series,
            "accuracy against sigma",
        )?;
        let _ = writeln!(page.html, "{img}");
    }
    let _ = writeln!(
        page.html,
        "<table><tr><th>σ (px)</th><th>labels vs truth</th><th>network vs truth</th>\
         <th>ratio</th><th>label-free estimate</th><th>5–95 %</th></tr>"
    );
    let f = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.3}"));
    for p in &pts {
        let ratio = match (p.network, p.label) {
            (Some(n), Some(l)) if l > 1e-6 => format!("{:.2}", n / l),
            _ => "–".into(),
        };
        let iv = p.interval.map_or("–".into(), |i| format!("{:.2}–{:.2}", i[0], i[1]));
        let _ = writeln!(
            page.html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{ratio}</td><td>{}</td><td>{iv}</td></tr>",
            p.sigma,
            f(p.label),
            f(p.network),
            f(p.predicted)
        );
    }
    let _ = writeln!(page.html, "</table>");
    Ok(())
}

/// The measured result in one sentence, at the noisiest σ with both errors against the truth:
/// does the network beat its labels (auto-denoising), and by how much.
fn headline(pts: &[SigmaPoint]) -> Option<String> {
    let p = pts.iter().rev().find(|p| p.label.is_some() && p.network.is_some())?;
    let (l, n) = (p.label?, p.network?);
    let estimate = match (p.predicted, p.interval) {
        (Some(e), Some([a, b])) => {
            format!("; without the truth, the audit estimates {e:.2} px (5–95 %: {a:.2}–{b:.2})")
        }
        _ => String::new(),
    };
    let verdict = if n < l {
        format!("{:.2}× its labels' {l:.2} px: it is more accurate than its labels", n / l)
    } else {
        format!("no better than its labels' {l:.2} px: it did not denoise them")
    };
    Some(format!(
        "Trained on labels with noise σ = {} px, the network is {n:.2} px from the truth on \
         held-out tiles (RMSE per axis), {verdict}{estimate}.",
        p.sigma
    ))
}

/// Training curves from the run's log.
fn training_section(run: &RunDir, has_truth: bool, page: &mut Page) -> Result<()> {
    if !run.train().log_jsonl().exists() {
        return Ok(());
    }
    let rows = run.train().log()?;
    let col = |f: &dyn Fn(&crate::artefacts::train::LogLine) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((r.epoch as f64, f(r).filter(|v| v.is_finite())?)))
            .collect()
    };
    let mut series = vec![Series::line(
        "held-out RMSE vs labels",
        RGBColor(200, 60, 50),
        col(&|r| Some(r.val_rmse_labels_px)),
    )];
    if has_truth {
        series.push(Series::line(
            "held-out RMSE vs truth",
            RGBColor(40, 120, 60),
            col(&|r| r.val_rmse_truth_px),
        ));
    }
    // The loss is the dense-field MSE plus the centre-mean MSE: ≈ twice the per-axis MSE.
    series.push(Series::line(
        "training: sqrt(loss / 2)",
        RGBColor(120, 120, 120),
        col(&|r| Some((r.train_loss.max(0.0) / 2.0).sqrt())),
    ));
    if !series[0].points.is_empty() {
        let img = page.plot(
            "training.png",
            "Training",
            ["epoch", "RMSE per axis (px)"],
            &series,
            "training curves",
        )?;
        let _ = writeln!(page.html, "<h2>Training</h2>{img}");
    }
    Ok(())
}

/// A noise sweep's training curves: per σ, the held-out error by epoch (against the truth when
/// the run has it, else against the labels), so that one sees when each σ learnt.
fn sweep_training_section(run: &RunDir, has_truth: bool, page: &mut Page) -> Result<()> {
    const COLOURS: [RGBColor; 6] = [
        RGBColor(40, 120, 60),
        RGBColor(50, 80, 200),
        RGBColor(200, 60, 50),
        RGBColor(150, 90, 20),
        RGBColor(130, 40, 150),
        RGBColor(90, 90, 90),
    ];
    let runs: Vec<(f64, RunDir, TrainSummary)> = by_sigma(run.sweep_runs())?
        .into_iter()
        .filter(|(_, r, _)| r.train().log_jsonl().exists())
        .collect();
    let names: Vec<String> = runs.iter().map(|(sigma, ..)| format!("sigma = {sigma} px")).collect();
    let mut series = Vec::new();
    for (k, (_, r, _)) in runs.iter().enumerate() {
        let points = r
            .train()
            .log()?
            .iter()
            .filter_map(|l| {
                let v = if has_truth { l.val_rmse_truth_px? } else { l.val_rmse_labels_px };
                v.is_finite().then_some((l.epoch as f64, v))
            })
            .collect();
        series.push(Series::line(&names[k], COLOURS[k % COLOURS.len()], points));
    }
    if series.iter().all(|s| s.points.is_empty()) {
        return Ok(());
    }
    let against = if has_truth { "truth" } else { "labels" };
    let img = page.plot(
        "sweep_training.png",
        &format!("Held-out RMSE against the {against} while training, per label noise"),
        ["epoch", "RMSE per axis (px)"],
        &series,
        "training curves per sigma",
    )?;
    let _ = writeln!(page.html, "<h2>Training, per σ</h2>{img}");
    Ok(())
}

/// The N_S histogram with the tile nearest each bin's middle.
fn neighbour_count_section(rows: &[AuditRow], thumbs: &Thumbs, page: &mut Page) -> Result<()> {
    let ns: Vec<f64> = rows.iter().map(|r| r.ns).collect();
    let edges = plots::histogram(
        &page.dir.join("ns_histogram.png"),
        "Neighbour count N_S (how many tiles the network sees as this one)",
        "N_S",
        &ns,
        8,
    )?;
    page.files.push("ns_histogram.png".into());
    let _ = writeln!(page.html, "<h2>Neighbour count N<sub>S</sub></h2><img src=\"ns_histogram.png\" alt=\"N_S histogram\"><div class=\"gallery\">");
    for (k, (lo, hi)) in edges.iter().enumerate() {
        let mid = (lo + hi) / 2.0;
        let inside = rows.iter().filter(|r| r.ns >= *lo && r.ns <= *hi);
        if let Some(r) = inside.min_by(|a, b| (a.ns - mid).abs().total_cmp(&(b.ns - mid).abs())) {
            let name = format!("ns_bin{k}.png");
            thumbs.write(&r.tile, 2, &[], &page.dir.join(&name))?;
            page.files.push(name.clone());
            let _ = writeln!(page.html, "<figure><img src=\"{name}\" alt=\"{}\"><figcaption>N_S {:.0}–{:.0}: {} (N_S {:.0})</figcaption></figure>", esc(&r.tile), lo, hi, esc(&r.tile), r.ns);
        }
    }
    let _ = writeln!(page.html, "</div>");
    Ok(())
}

/// The label-free error estimate, and its calibration by N_S band when the run has truth.
fn estimate_section(a: &AuditSummary, has_truth: bool, page: &mut Page) -> Result<()> {
    let _ = writeln!(
        page.html,
        "<h2>Label-free error estimate</h2><p>Network RMSE on held-out tiles, label-free: <b>{:.3} px</b> (bootstrap 5–95 %: {:.2}–{:.2}){}; label noise {:.3} px ({:.3} px without the flagged labels); the paper's σ̂·√(tr F) estimate: {}. Estimator: triple collocation with calibration of labels, network and the CFOG baseline (README, “Label-free estimates”).</p>",
        a.predicted_rmse_px,
        a.predicted_rmse_interval_px[0],
        a.predicted_rmse_interval_px[1],
        a.measured_rmse_px.map_or(String::new(), |m| format!(", measured against truth: {m:.3} px")),
        a.label_noise_rmse_px,
        a.label_noise_inlier_rmse_px,
        a.paper_predicted_rmse_px.map_or("–".into(), |p| format!("{p:.3} px"))
    );
    if has_truth && a.calibration.iter().all(|b| b.measured_rmse_px.is_some()) {
        let pts = |f: &dyn Fn(&CalibrationBin) -> f64| {
            a.calibration.iter().map(|b| ((b.ns_min + b.ns_max) / 2.0, f(b))).collect::<Vec<_>>()
        };
        let series = [
            Series::line(
                "label-free predicted",
                RGBColor(50, 80, 200),
                pts(&|b| b.predicted_rmse_px),
            ),
            Series::line(
                "measured against truth",
                RGBColor(40, 120, 60),
                pts(&|b| b.measured_rmse_px.unwrap_or(f64::NAN)),
            ),
        ];
        let img = page.plot(
            "calibration.png",
            "Network RMSE on held-out tiles, by N_S quintile",
            ["N_S (bin centre)", "RMSE per axis (px)"],
            &series,
            "calibration by N_S",
        )?;
        let _ = writeln!(page.html, "{img}");
    }
    Ok(())
}

/// The audit's most suspicious labels, with label, network and baseline drawn as arrows.
fn suspicious_section(
    a: &AuditSummary,
    rows: &[AuditRow],
    thumbs: &Thumbs,
    page: &mut Page,
) -> Result<()> {
    let _ = writeln!(page.html, "<h2>Most suspicious labels</h2><p>{} tiles flagged (score &gt; {}){}. Arrows ×4 from the tile centre: <span style=\"color:#d22\">label</span>, <span style=\"color:#1a1\">network</span>, <span style=\"color:#33f\">CFOG baseline</span>. Full table: RUN/audit/audit.csv; footprints: RUN/audit/flagged.geojson.</p><div class=\"gallery\">",
        a.n_flagged, a.threshold,
        match (a.auroc, a.auroc_residual_only) { (Some(x), Some(r)) => format!("; against the truth's gross errors: AUROC {x:.3} (residual alone {r:.3})"), _ => String::new() });
    for r in rows.iter().take(TOP) {
        let name = format!("audit_{:02}.png", r.rank);
        let arrows =
            [(r.label(), [220, 30, 30]), (r.pred(), [20, 170, 20]), (r.baseline(), [50, 50, 255])];
        thumbs.write(&r.tile, 3, &arrows, &page.dir.join(&name))?;
        page.files.push(name.clone());
        let _ = writeln!(page.html, "<figure><img src=\"{name}\" alt=\"{}\"><figcaption>#{} {} score {:.1}, N_S {:.0}, residual {:.2} px</figcaption></figure>", esc(&r.tile), r.rank, esc(&r.tile), r.score, r.ns, r.residual_px);
    }
    let _ = writeln!(page.html, "</div>");
    Ok(())
}

/// Nearest-neighbour galleries: the similarity stage's query tiles and thumbnails.
fn neighbours_section(run: &RunDir, page: &mut Page) -> Result<()> {
    let similarity = run.similarity();
    let Some(queries) = similarity.knn()? else { return Ok(()) };
    let _ = writeln!(page.html, "<h2>Tiles the network sees as alike</h2><p>For a few query tiles, the most similar training tiles by k<sup>C</sup> (reference | moving).</p>");
    std::fs::create_dir_all(page.dir.join("knn"))?;
    let copy = |rel: &str, files: &mut Vec<String>| -> Result<String> {
        let name = format!(
            "knn/{}",
            Path::new(rel).file_name().context("thumbnail name")?.to_string_lossy()
        );
        std::fs::copy(similarity.path().join(rel), page.dir.join(&name))
            .with_context(|| format!("cannot copy thumbnail '{rel}'"))?;
        files.push(name.clone());
        Ok(name)
    };
    for q in queries.iter().take(4) {
        let name = copy(&q.thumbnail, &mut page.files)?;
        let _ = writeln!(page.html, "<div class=\"gallery\"><figure class=\"query\"><img src=\"{name}\" alt=\"{}\"><figcaption>query {} (N_S {:.0})</figcaption></figure>", esc(&q.id), esc(&q.id), q.ns_linear);
        for nb in q.neighbours.iter().take(6) {
            let name = copy(&nb.thumbnail, &mut page.files)?;
            let _ = writeln!(page.html, "<figure><img src=\"{name}\" alt=\"{}\"><figcaption>{} k<sup>C</sup> {:.3}</figcaption></figure>", esc(&nb.id), esc(&nb.id), nb.kc);
        }
        let _ = writeln!(page.html, "</div>");
    }
    Ok(())
}

/// The study's held-out error against steps per arm (mean ± std over seeds) and its table.
fn enforce_section(v: &EnforceStudy, page: &mut Page) -> Result<()> {
    let threshold = v.params.threshold_px;
    let mut series = vec![];
    let mut rows = String::new();
    for (arm, colour) in ARM_COLOURS {
        let Some(a) = v.arms.get(arm) else { continue };
        let name = match arm {
            "baseline" => "baseline (labels only)",
            "plus_cos" => "+λ·k^C (reference code's sign)",
            _ => "+λ·(1 − k^C) (the paper's intent)",
        };
        series.push(Series {
            band: Some(a.curve.iter().map(|c| (c.0 as f64, c.1 - c.2, c.1 + c.2)).collect()),
            ..Series::line(name, colour, a.curve.iter().map(|c| (c.0 as f64, c.1)).collect())
        });
        let steps = match (a.steps_mean, a.steps_std) {
            (Some(m), Some(sd)) => format!("{m:.0} ± {sd:.0}"),
            _ => "–".into(),
        };
        let ci = |c: Option<[f64; 2]>, d: usize| {
            c.map_or("–".to_string(), |[lo, hi]| format!("{}–{}", fixed(lo, d), fixed(hi, d)))
        };
        let _ = writeln!(
            rows,
            "<tr><td style=\"text-align:left\">{arm}</td><td>{}/{}</td><td>{steps}</td><td>{}\
             </td><td>{} ± {}</td><td>{}</td><td>{}</td></tr>",
            a.reached,
            a.seeds,
            ci(a.steps_ci95, 0),
            fixed(a.final_error_mean, 3),
            fixed(a.final_error_std, 3),
            ci(a.final_error_ci95, 3),
            fixed(a.seconds_per_step, 4)
        );
    }
    if series.is_empty() {
        return Ok(());
    }
    let last = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0.0, f64::max);
    series.push(Series::line(
        "error threshold",
        RGBColor(40, 150, 60),
        vec![(0.0, threshold), (last, threshold)],
    ));
    let img = page.plot(
        "enforce_study.png",
        "Held-out error against truth while training (mean ± std over seeds)",
        ["training step", "RMSE per axis (px)"],
        &series,
        "enforcement study curves",
    )?;
    let _ = writeln!(
        page.html,
        "<h2>Similarity-enforcing training</h2>{img}<table><tr><th>arm</th><th>reached {threshold:.2} px</th><th>steps to it (mean ± std)</th><th>95 % CI</th><th>final error (px, mean ± std)</th><th>95 % CI</th><th>s per step</th></tr>\n{rows}</table><p>Cost of an enforced step against a plain one: {}. Steps are counted at the evaluations (every {} steps); the mean and std are over the seeds that reach the threshold.</p>",
        v.step_cost_ratio.map_or("not measured (needs the baseline and minus_cos arms)".into(), |r| format!("{r:.1}×")),
        v.params.eval_every
    );
    Ok(())
}

/// Tile pairs as the report shows them: the labelled run's tiles and displaced moving tiles.
struct Thumbs {
    manifest: Manifest,
    tiles: TilesDir,
    labels_dir: std::path::PathBuf,
    labels: Labels,
}

impl Thumbs {
    fn load(run: &RunDir) -> Result<Thumbs> {
        let labels = run.labels();
        let target = labels.target()?;
        let tiles = TilesDir::new(&target.tiles_dir);
        Ok(Thumbs {
            manifest: tiles.manifest()?,
            tiles,
            labels_dir: labels.path().to_path_buf(),
            labels: read_json(&labels.labels_json())?,
        })
    }

    /// Reference | moving, ×`scale`, with arrows from the centre of the reference panel:
    /// (vector, colour) × 4 px per px of displacement.
    fn write(
        &self,
        id: &str,
        scale: u32,
        arrows: &[([f64; 2], [u8; 3])],
        path: &Path,
    ) -> Result<()> {
        let t = self
            .manifest
            .tiles
            .iter()
            .find(|t| t.id == id)
            .with_context(|| format!("tile '{id}' is not in the manifest"))?;
        let scene = self.manifest.scene(&t.scene).context("unknown scene")?;
        let reference = scene
            .modalities
            .iter()
            .find(|m| m.role == Role::Reference)
            .context("no reference modality")?;
        let idx: Vec<usize> = reference.bands.iter().map(|b| b.tile_band).collect();
        let (rb, w, _) = read_bands(&self.tiles.file(&t.path), Some(&idx), "tile")?;
        let entry = self.labels.get(id).with_context(|| format!("no label for tile '{id}'"))?;
        let (mb, _, _) = read_bands(&self.labels_dir.join(&entry.moving), None, "moving tile")?;
        let img = crate::util::thumbs::pair_image(
            &normalise(&rb),
            rb.len(),
            &normalise(&mb),
            mb.len(),
            w,
        );
        let mut img = image::imageops::resize(
            &img,
            img.width() * scale,
            img.height() * scale,
            image::imageops::FilterType::Nearest,
        );
        let c = (w as f32 * scale as f32 / 2.0, w as f32 * scale as f32 / 2.0);
        for (v, col) in arrows {
            let k = 4.0 * scale as f32 / 3.0;
            let end = (c.0 + v[0] as f32 * k, c.1 + v[1] as f32 * k);
            let colour = image::Rgb(*col);
            imageproc::drawing::draw_line_segment_mut(&mut img, c, end, colour);
            imageproc::drawing::draw_line_segment_mut(
                &mut img,
                (c.0 + 1.0, c.1),
                (end.0 + 1.0, end.1),
                colour,
            );
            imageproc::drawing::draw_filled_circle_mut(
                &mut img,
                (end.0 as i32, end.1 as i32),
                3,
                colour,
            );
        }
        crate::util::thumbs::save_png(&img, path)
    }
}

/// Normalises each band to ≈ −1…1 by its 2nd–98th percentiles (what the thumbnails expect).
fn normalise(bands: &[Vec<f32>]) -> Vec<f32> {
    let mut out = Vec::new();
    for b in bands {
        let mut v: Vec<f32> = b.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f32::total_cmp);
        let (lo, hi) = if v.is_empty() {
            (0.0, 1.0)
        } else {
            (v[v.len() * 2 / 100], v[(v.len() * 98 / 100).min(v.len() - 1)])
        };
        let span = (hi - lo).max(1e-6);
        out.extend(
            b.iter().map(|&x| if x.is_finite() { 2.0 * (x - lo) / span - 1.0 } else { -1.0 }),
        );
    }
    out
}
