//! The `report` stage: `RUN/report/index.html` (self-contained: it references only files in
//! `RUN/report/`) and `RUN/report/summary.json` (every stage's summary). Accuracy against label
//! noise (for a noise-sweep run, every σ), training curves, the N_S histogram with a
//! representative tile per bin, nearest-neighbour galleries, the audit's top 20 with their
//! labels drawn as arrows; for a similarity-enforcement study (RUN/enforce_study.json), its
//! curves per arm and table. Truth-based plots appear only when the run has truth, and the page
//! says when they are left out.
pub mod plots;

use crate::audit::{baseline, inputs, AuditSummary};
use crate::labels::LabelEntry;
use crate::util::atomic;
use anyhow::{bail, Context, Result};
use plots::Series;
use plotters::style::RGBColor;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const MARKER: &str = "index.html";
/// Tiles in the audit gallery.
const TOP: usize = 20;
/// The similarity-enforcement study's results (`simreg enforce-study`, `[enforce_study]`).
const ENFORCE: &str = "enforce_study.json";
const ARM_COLOURS: [(&str, RGBColor); 3] = [
    ("baseline", RGBColor(90, 90, 90)),
    ("plus_cos", RGBColor(200, 60, 50)),
    ("minus_cos", RGBColor(50, 80, 200)),
];

/// What `simreg report` returns.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReportSummary {
    pub out: PathBuf,
    pub index: PathBuf,
    pub has_truth: bool,
    pub files: Vec<String>,
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// A number from a JSON object, None for absent or null.
fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One point of the accuracy-vs-σ plot.
struct SigmaPoint {
    sigma: f64,
    label: Option<f64>,
    network: Option<f64>,
    predicted: Option<f64>,
    interval: Option<[f64; 2]>,
}

/// The runs to report accuracy for: every `RUN/sweep/sigma_*` (sorted by σ), or the run itself.
fn sigma_points(run: &Path) -> Vec<SigmaPoint> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run.join("sweep"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("train").join("summary.json").exists())
                .collect()
        })
        .unwrap_or_default();
    if dirs.is_empty() {
        dirs.push(run.to_path_buf());
    }
    let mut pts: Vec<SigmaPoint> = dirs
        .iter()
        .filter_map(|d| {
            let train = read_json(&d.join("train").join("summary.json"))?;
            let audit = read_json(&d.join("audit").join("summary.json"));
            Some(SigmaPoint {
                sigma: num(&train, "sigma_px")?,
                label: num(&train, "label_rmse_truth_px"),
                network: num(&train, "net_rmse_truth_px"),
                predicted: audit.as_ref().and_then(|a| num(a, "predicted_rmse_px")),
                interval: audit.as_ref().and_then(|a| {
                    serde_json::from_value(a.get("predicted_rmse_interval_px")?.clone()).ok()
                }),
            })
        })
        .collect();
    pts.sort_by(|a, b| a.sigma.total_cmp(&b.sigma));
    pts
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

/// Tile pairs as the report shows them.
struct Thumbs<'a> {
    inp: &'a inputs::RunInputs,
    labels: BTreeMap<String, LabelEntry>,
}

impl Thumbs<'_> {
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
            .inp
            .manifest
            .tiles
            .iter()
            .find(|t| t.id == id)
            .with_context(|| format!("tile '{id}' is not in the manifest"))?;
        let scene = self.inp.manifest.scene(&t.scene).context("unknown scene")?;
        let reference = scene
            .modalities
            .iter()
            .find(|m| m.role == crate::tiling::manifest::Role::Reference)
            .context("no reference modality")?;
        let idx: Vec<usize> = reference.bands.iter().map(|b| b.tile_band).collect();
        let (rb, w, _) = baseline::read_bands(&self.inp.tiles_dir.join(&t.path), Some(&idx))?;
        let moving = self.inp.labels_dir.join(
            &self.labels.get(id).with_context(|| format!("no label for tile '{id}'"))?.moving,
        );
        let (mb, _, _) = baseline::read_bands(&moving, None)?;
        let img =
            crate::thumbs::pair_image(&normalise(&rb), rb.len(), &normalise(&mb), mb.len(), w);
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
        crate::thumbs::save_png(&img, path)
    }
}

/// Builds the report of `run` into `out` (normally `RUN/report`).
pub fn run(run: &Path, out: &Path) -> Result<ReportSummary> {
    crate::raster::init_gdal();
    plots::init_font()?;
    // A noise sweep or a similarity-enforcement study is reported from its own results.
    let own_results = run.join("sweep").exists() || run.join(ENFORCE).exists();
    for (dir, stage) in
        [("labels", "labels"), ("train", "train"), ("similarity", "similarity"), ("audit", "audit")]
    {
        if !run.join(dir).join("summary.json").exists() && !own_results {
            bail!("run '{}': no {stage} output (RUN/{dir}/summary.json): run the `{stage}` stage first", run.display());
        }
    }
    let single = !run.join("sweep").exists();
    atomic::build_dir(out, MARKER, |_| false, |partial| build(run, out, partial, single))
}

fn build(run: &Path, out: &Path, dir: &Path, single: bool) -> Result<ReportSummary> {
    let mut html = String::new();
    let mut files: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // Every stage's summary, gathered.
    let mut all = serde_json::Map::new();
    for stage in ["tiles", "labels", "train", "similarity", "audit"] {
        if let Some(v) = read_json(&run.join(stage).join("summary.json")) {
            all.insert(stage.into(), v);
        }
    }
    if let Some(v) = read_json(&run.join("noise_sweep.json")) {
        all.insert("noise_sweep".into(), v);
    }
    let audit: Option<AuditSummary> =
        all.get("audit").and_then(|v| serde_json::from_value(v.clone()).ok());
    let has_truth = run.join("labels").join("truth.json").exists()
        || (!single && all.contains_key("noise_sweep"));

    // 0. The similarity-enforcement study.
    // Optional, but when present it must parse: a broken file is an error, not a blank section.
    let study_path = run.join(ENFORCE);
    let study: Option<Value> = match std::fs::read_to_string(&study_path) {
        Ok(text) => Some(serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("'{}': not a study result ({e})", study_path.display())
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => anyhow::bail!("'{}': cannot read ({e})", study_path.display()),
    };
    let is_study = study.is_some();
    if let Some(v) = study {
        enforce_section(&v, dir, &mut html, &mut files)?;
        all.insert("enforce_study".into(), v);
    }

    // 1. Accuracy against label noise.
    let pts = sigma_points(run);
    if !pts.is_empty() {
        let _ = writeln!(html, "<h2>Accuracy against label noise</h2>");
        let mut series = vec![];
        if has_truth {
            series.push(Series {
                name: "labels vs truth",
                colour: RGBColor(200, 60, 50),
                points: pts.iter().filter_map(|p| Some((p.sigma, p.label?))).collect(),
                bars: None,
                band: None,
            });
            series.push(Series {
                name: "network vs truth (held out)",
                colour: RGBColor(40, 120, 60),
                points: pts.iter().filter_map(|p| Some((p.sigma, p.network?))).collect(),
                bars: None,
                band: None,
            });
        }
        let pred: Vec<(f64, f64)> =
            pts.iter().filter_map(|p| Some((p.sigma, p.predicted?))).collect();
        if !pred.is_empty() {
            let bars = pts
                .iter()
                .filter_map(|p| Some((p.sigma, p.interval?[0], p.interval?[1])))
                .collect();
            series.push(Series {
                name: "network, label-free estimate (5-95 %)",
                colour: RGBColor(50, 80, 200),
                points: pred,
                bars: Some(bars),
                band: None,
            });
        }
        if series.iter().any(|s| !s.points.is_empty()) {
            plots::lines(
                &dir.join("accuracy_vs_sigma.png"),
                "RMSE per axis against label noise",
                "label noise sigma (px)",
                "RMSE (px)",
                &series,
                true,
            )?;
            files.push("accuracy_vs_sigma.png".into());
            let _ = writeln!(
                html,
                "<img src=\"accuracy_vs_sigma.png\" alt=\"accuracy against sigma\">"
            );
        }
        let _ = writeln!(html, "<table><tr><th>σ (px)</th><th>labels vs truth</th><th>network vs truth</th><th>ratio</th><th>label-free estimate</th><th>5–95 %</th></tr>");
        let f = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.3}"));
        for p in &pts {
            let ratio = match (p.network, p.label) {
                (Some(n), Some(l)) if l > 1e-6 => format!("{:.2}", n / l),
                _ => "–".into(),
            };
            let iv = p.interval.map_or("–".into(), |i| format!("{:.2}–{:.2}", i[0], i[1]));
            let _ = writeln!(html, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{ratio}</td><td>{}</td><td>{iv}</td></tr>", p.sigma, f(p.label), f(p.network), f(p.predicted));
        }
        let _ = writeln!(html, "</table>");
    }
    if !has_truth && !is_study {
        notes.push("This run has no truth (RUN/labels/truth.json): plots against the truth are left out; the label-free estimates are shown alone.".into());
    }

    // 2. Training curves.
    if let Ok(text) = std::fs::read_to_string(run.join("train").join("log.jsonl")) {
        let rows: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let col = |k: &str| {
            rows.iter().filter_map(|r| Some((num(r, "epoch")?, num(r, k)?))).collect::<Vec<_>>()
        };
        let mut series = vec![Series {
            name: "held-out RMSE vs labels",
            colour: RGBColor(200, 60, 50),
            points: col("val_rmse_labels_px"),
            bars: None,
            band: None,
        }];
        if has_truth {
            series.push(Series {
                name: "held-out RMSE vs truth",
                colour: RGBColor(40, 120, 60),
                points: col("val_rmse_truth_px"),
                bars: None,
                band: None,
            });
        }
        // The loss is the dense-field MSE plus the centre-mean MSE: ≈ twice the per-axis MSE.
        series.push(Series {
            name: "training: sqrt(loss / 2)",
            colour: RGBColor(120, 120, 120),
            points: col("train_loss")
                .into_iter()
                .map(|(e, l)| (e, (l.max(0.0) / 2.0).sqrt()))
                .collect(),
            bars: None,
            band: None,
        });
        if series[0].points.len() > 0 {
            plots::lines(
                &dir.join("training.png"),
                "Training",
                "epoch",
                "RMSE per axis (px)",
                &series,
                true,
            )?;
            files.push("training.png".into());
            let _ = writeln!(
                html,
                "<h2>Training</h2><img src=\"training.png\" alt=\"training curves\">"
            );
        }
    }

    // 3. The audit: N_S histogram with representative tiles, calibration, top 20.
    let csv_path = run.join("audit").join("audit.csv");
    if let (Some(a), true) = (&audit, csv_path.exists()) {
        let inp = inputs::load(run)?;
        let labels_path = inp.labels_dir.join("labels.json");
        let labels: BTreeMap<String, LabelEntry> =
            serde_json::from_str(&std::fs::read_to_string(&labels_path)?)
                .with_context(|| format!("'{}': not a labels file", labels_path.display()))?;
        let thumbs = Thumbs { inp: &inp, labels };
        let rows = read_audit_csv(&csv_path)?;
        let ns: Vec<f64> = rows.iter().map(|r| r.ns).collect();
        let edges = plots::histogram(
            &dir.join("ns_histogram.png"),
            "Neighbour count N_S (how many tiles the network sees as this one)",
            "N_S",
            &ns,
            8,
        )?;
        files.push("ns_histogram.png".into());
        let _ = writeln!(html, "<h2>Neighbour count N<sub>S</sub></h2><img src=\"ns_histogram.png\" alt=\"N_S histogram\"><div class=\"gallery\">");
        for (k, (lo, hi)) in edges.iter().enumerate() {
            let mid = (lo + hi) / 2.0;
            let inside = rows.iter().filter(|r| r.ns >= *lo && r.ns <= *hi);
            if let Some(r) = inside.min_by(|a, b| (a.ns - mid).abs().total_cmp(&(b.ns - mid).abs()))
            {
                let name = format!("ns_bin{k}.png");
                thumbs.write(&r.tile, 2, &[], &dir.join(&name))?;
                files.push(name.clone());
                let _ = writeln!(html, "<figure><img src=\"{name}\" alt=\"{}\"><figcaption>N_S {:.0}–{:.0}: {} (N_S {:.0})</figcaption></figure>", esc(&r.tile), lo, hi, esc(&r.tile), r.ns);
            }
        }
        let _ = writeln!(html, "</div>");

        let _ = writeln!(
            html,
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
            let pts = |f: &dyn Fn(&crate::audit::CalibrationBin) -> f64| {
                a.calibration
                    .iter()
                    .map(|b| ((b.ns_min + b.ns_max) / 2.0, f(b)))
                    .collect::<Vec<_>>()
            };
            let series = [
                Series {
                    name: "label-free predicted",
                    colour: RGBColor(50, 80, 200),
                    points: pts(&|b| b.predicted_rmse_px),
                    bars: None,
                    band: None,
                },
                Series {
                    name: "measured against truth",
                    colour: RGBColor(40, 120, 60),
                    points: pts(&|b| b.measured_rmse_px.unwrap_or(f64::NAN)),
                    bars: None,
                    band: None,
                },
            ];
            plots::lines(
                &dir.join("calibration.png"),
                "Network RMSE on held-out tiles, by N_S quintile",
                "N_S (bin centre)",
                "RMSE per axis (px)",
                &series,
                true,
            )?;
            files.push("calibration.png".into());
            let _ = writeln!(html, "<img src=\"calibration.png\" alt=\"calibration by N_S\">");
        }

        let _ = writeln!(html, "<h2>Most suspicious labels</h2><p>{} tiles flagged (score &gt; {}){}. Arrows ×4 from the tile centre: <span style=\"color:#d22\">label</span>, <span style=\"color:#1a1\">network</span>, <span style=\"color:#33f\">CFOG baseline</span>. Full table: RUN/audit/audit.csv; footprints: RUN/audit/flagged.geojson.</p><div class=\"gallery\">",
            a.n_flagged, a.threshold,
            match (a.auroc, a.auroc_residual_only) { (Some(x), Some(r)) => format!("; against the truth's gross errors: AUROC {x:.3} (residual alone {r:.3})"), _ => String::new() });
        for r in rows.iter().take(TOP) {
            let name = format!("audit_{:02}.png", r.rank);
            thumbs.write(
                &r.tile,
                3,
                &[(r.label, [220, 30, 30]), (r.pred, [20, 170, 20]), (r.base, [50, 50, 255])],
                &dir.join(&name),
            )?;
            files.push(name.clone());
            let _ = writeln!(html, "<figure><img src=\"{name}\" alt=\"{}\"><figcaption>#{} {} score {:.1}, N_S {:.0}, residual {:.2} px</figcaption></figure>", esc(&r.tile), r.rank, esc(&r.tile), r.score, r.ns, r.residual);
        }
        let _ = writeln!(html, "</div>");
    } else if single && !is_study {
        notes.push("No audit (RUN/audit): run `simreg audit RUN` for the label-free estimates and the label ranking.".into());
    } else if !single {
        notes.push("A noise sweep: each σ's similarity and audit are in RUN/sweep/sigma_<σ>/; `simreg report RUN/sweep/sigma_<σ>` makes that σ's full report.".into());
    }

    // 4. Nearest-neighbour galleries (the similarity stage's query tiles and thumbnails).
    if let Some(Value::Array(queries)) = read_json(&run.join("similarity").join("knn.json")) {
        let _ = writeln!(html, "<h2>Tiles the network sees as alike</h2><p>For a few query tiles, the most similar training tiles by k<sup>C</sup> (reference | moving).</p>");
        std::fs::create_dir_all(dir.join("knn"))?;
        let mut copy = |rel: &str| -> Result<String> {
            let name = format!(
                "knn/{}",
                Path::new(rel).file_name().context("thumbnail name")?.to_string_lossy()
            );
            std::fs::copy(run.join("similarity").join(rel), dir.join(&name))
                .with_context(|| format!("cannot copy thumbnail '{rel}'"))?;
            files.push(name.clone());
            Ok(name)
        };
        for q in queries.iter().take(4) {
            let (Some(id), Some(th)) =
                (q.get("id").and_then(Value::as_str), q.get("thumbnail").and_then(Value::as_str))
            else {
                continue;
            };
            let name = copy(th)?;
            let _ = writeln!(html, "<div class=\"gallery\"><figure class=\"query\"><img src=\"{name}\" alt=\"{}\"><figcaption>query {} (N_S {:.0})</figcaption></figure>", esc(id), esc(id), num(q, "ns_linear").unwrap_or(f64::NAN));
            for nb in q.get("neighbours").and_then(Value::as_array).into_iter().flatten().take(6) {
                let (Some(nid), Some(nth)) = (
                    nb.get("id").and_then(Value::as_str),
                    nb.get("thumbnail").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let name = copy(nth)?;
                let _ = writeln!(html, "<figure><img src=\"{name}\" alt=\"{}\"><figcaption>{} k<sup>C</sup> {:.3}</figcaption></figure>", esc(nid), esc(nid), num(nb, "kc").unwrap_or(f64::NAN));
            }
            let _ = writeln!(html, "</div>");
        }
    }

    let mut summary = all;
    summary.insert("report".into(), json!({ "has_truth": has_truth, "files": files }));
    atomic::write_json(&dir.join("summary.json"), &Value::Object(summary))?;
    let notes_html: String =
        notes.iter().map(|n| format!("<p class=\"note\">{}</p>\n", esc(n))).collect();
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>simreg report: {title}</title><style>\nbody{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}} table{{border-collapse:collapse}} td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}\n.gallery{{display:flex;flex-wrap:wrap;gap:8px}} figure{{margin:0;font-size:12px}} .query{{border:2px solid #33f}} .note{{background:#fff4d6;padding:6px}} img{{max-width:100%}}\n</style></head><body>\n<h1>simreg report</h1><p>Run: {title}</p>\n{notes_html}{html}</body></html>\n",
        title = esc(&run.display().to_string())
    );
    atomic::write_bytes(&dir.join(MARKER), page.as_bytes())?;
    Ok(ReportSummary { out: out.to_path_buf(), index: out.join(MARKER), has_truth, files })
}

/// The study's held-out error against steps per arm (mean ± std over seeds) and its table.
fn enforce_section(
    v: &Value,
    dir: &Path,
    html: &mut String,
    files: &mut Vec<String>,
) -> Result<()> {
    let threshold = v.get("params").and_then(|p| num(p, "threshold_px"));
    let mut series = vec![];
    let mut rows = String::new();
    let f = |x: Option<f64>, d: usize| x.map_or("–".to_string(), |x| format!("{x:.d$}"));
    for (arm, colour) in ARM_COLOURS {
        let Some(a) = v.get("arms").and_then(|a| a.get(arm)) else { continue };
        let curve: Vec<(f64, f64, f64)> = a
            .get("curve")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c.get(0)?.as_f64()?, c.get(1)?.as_f64()?, c.get(2)?.as_f64()?)))
            .collect();
        let name = match arm {
            "baseline" => "baseline (labels only)",
            "plus_cos" => "+λ·k^C (reference code's sign)",
            _ => "+λ·(1 − k^C) (the paper's intent)",
        };
        series.push(Series {
            name,
            colour,
            points: curve.iter().map(|c| (c.0, c.1)).collect(),
            bars: None,
            band: Some(curve.iter().map(|c| (c.0, c.1 - c.2, c.1 + c.2)).collect()),
        });
        let _ = writeln!(
            rows,
            "<tr><td style=\"text-align:left\">{arm}</td><td>{}/{}</td><td>{}</td><td>{} ± {}</td><td>{}</td></tr>",
            a["reached"],
            a["seeds"],
            match (num(a, "steps_mean"), num(a, "steps_std")) {
                (Some(m), Some(sd)) => format!("{m:.0} ± {sd:.0}"),
                _ => "–".into(),
            },
            f(num(a, "final_error_mean"), 3),
            f(num(a, "final_error_std"), 3),
            f(num(a, "seconds_per_step"), 4)
        );
    }
    if series.is_empty() {
        return Ok(());
    }
    let last = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0.0, f64::max);
    if let Some(t) = threshold {
        series.push(Series {
            name: "error threshold",
            colour: RGBColor(40, 150, 60),
            points: vec![(0.0, t), (last, t)],
            bars: None,
            band: None,
        });
    }
    plots::lines(
        &dir.join("enforce_study.png"),
        "Held-out error against truth while training (mean ± std over seeds)",
        "training step",
        "RMSE per axis (px)",
        &series,
        true,
    )?;
    files.push("enforce_study.png".into());
    let _ = writeln!(
        html,
        "<h2>Similarity-enforcing training</h2><img src=\"enforce_study.png\" alt=\"enforcement study curves\"><table><tr><th>arm</th><th>reached {} px</th><th>steps to it (mean ± std)</th><th>final error (px)</th><th>s per step</th></tr>\n{rows}</table><p>Cost of an enforced step against a plain one: {}. Steps are counted at the evaluations (every {} steps); the mean and std are over the seeds that reach the threshold.</p>",
        f(threshold, 2),
        num(v, "step_cost_ratio").map_or("not measured (needs the baseline and minus_cos arms)".into(), |r| format!("{r:.1}×")),
        v.get("params").and_then(|p| p.get("eval_every")).map_or("–".into(), |x| x.to_string())
    );
    Ok(())
}

/// The columns of audit.csv the report draws, by name.
#[derive(serde::Deserialize)]
struct AuditRecord {
    tile: String,
    rank: usize,
    score: f64,
    residual_px: f64,
    ns: f64,
    label_dx: f64,
    label_dy: f64,
    pred_dx: f64,
    pred_dy: f64,
    baseline_dx: f64,
    baseline_dy: f64,
}

struct AuditRow {
    tile: String,
    rank: usize,
    score: f64,
    residual: f64,
    ns: f64,
    label: [f64; 2],
    pred: [f64; 2],
    base: [f64; 2],
}

fn read_audit_csv(path: &Path) -> Result<Vec<AuditRow>> {
    Ok(crate::util::table::read::<AuditRecord>(path)?
        .into_iter()
        .map(|r| AuditRow {
            tile: r.tile,
            rank: r.rank,
            score: r.score,
            residual: r.residual_px,
            ns: r.ns,
            label: [r.label_dx, r.label_dy],
            pred: [r.pred_dx, r.pred_dy],
            base: [r.baseline_dx, r.baseline_dy],
        })
        .collect())
}
