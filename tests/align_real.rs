//! The semi-synthetic real-data acceptance test of `simreg align` (issue 7): real Sentinel-1/2
//! pairs from ../shared/realdata never seen in training — the eastern 128 columns of the GeFolki
//! pair (the model of pipelines/real_s1s2_align.toml trains on the western 320) and the three
//! BigEarthNet-MM pairs — their SAR image displaced by a known smooth field, then aligned with
//! the network and the phase-correlation baseline. Targets: median error ≤ 0.5 px and ≤ 0.5×
//! the baseline's, for every pair. Both are printed for every pair and written to
//! target/align_real.json.
//!
//! The network test is #[ignore]d from the default suite: it needs the model, whose training
//! (`simreg run pipelines/real_s1s2_align.toml`, ~17 min on 2 cores: 150 epochs) it starts itself when
//! runs/real_s1s2_align/train is missing. Run it with
//! `cargo test --release --test align_real -- --ignored`.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The real pairs: (name, reference, moving), stacking BigEarthNet's S2 bands B, G, R (the
/// GeFolki S2 band order) into a VRT.
fn real_pairs(shared: &Path, dir: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pairs = vec![(
        "gefolki_s1s2_east".to_string(),
        repo.join("pipelines/real_s1s2_align/S2_test.vrt"),
        repo.join("pipelines/real_s1s2_align/S1_test.vrt"),
    )];
    let ben = shared.join("bigearthnet_mm");
    for (s1, s2) in [
        ("S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85", "S2A_MSIL2A_20170617T113321_36_85"),
        ("S1A_IW_GRDH_1SDV_20170617T064724_29UPU_4_55", "S2A_MSIL2A_20170617T113321_4_55"),
        ("S1A_IW_GRDH_1SDV_20171221T064238_29SND_56_35", "S2A_MSIL2A_20171221T112501_56_35"),
    ] {
        let vrt = dir.join(format!("{s2}.vrt"));
        let b = |band: &str| s(&ben.join("s2-tiny").join(s2).join(format!("{s2}_{band}.tif")));
        gdal_tool("gdalbuildvrt", &["-q", "-separate", &s(&vrt), &b("B02"), &b("B03"), &b("B04")]);
        pairs.push((
            format!(
                "bigearthnet_{}",
                s2.rsplit_once("113321_").or(s2.rsplit_once("112501_")).unwrap().1
            ),
            vrt,
            ben.join("s1-tiny").join(s1).join(format!("{s1}_VV.tif")),
        ));
    }
    pairs
}

/// D = (2, −1.5) + a smooth field of amplitude ~1 px (within the training labels' 4 + 1 px),
/// written on the grid of `like` as truth.tif (D) and neg.tif (−D).
fn fields(like: &Path, dir: &Path) {
    let (_, gt, w, h, wkt) = read_all(like);
    let (mut dx, mut dy) = (vec![0.0; w * h], vec![0.0; w * h]);
    for r in 0..h {
        for c in 0..w {
            let (x, y) = (c as f64 + 0.5, r as f64 + 0.5);
            dx[r * w + c] = 2.0
                + (std::f64::consts::TAU * x / 200.0).sin()
                    * (std::f64::consts::TAU * y / 260.0).cos();
            dy[r * w + c] = -1.5 + 0.8 * (std::f64::consts::TAU * (x + y) / 230.0).cos();
        }
    }
    for (name, sign) in [("truth.tif", 1.0), ("neg.tif", -1.0)] {
        let bands =
            vec![dx.iter().map(|v| sign * v).collect(), dy.iter().map(|v| sign * v).collect()];
        Fixture {
            width: w,
            height: h,
            geotransform: gt,
            epsg: None,
            wkt: Some(wkt.clone()),
            nodata: None,
            bands,
        }
        .write_f32(&dir.join(name));
    }
}

/// Displaces each pair's moving image by the known field; returns (name, reference, displaced, truth).
fn semi_synthetic(shared: &Path, dir: &Path) -> Vec<(String, PathBuf, PathBuf, PathBuf)> {
    real_pairs(shared, dir)
        .into_iter()
        .map(|(name, reference, moving)| {
            let d = dir.join(&name);
            std::fs::create_dir_all(&d).unwrap();
            // The moving raster on the reference grid first (BigEarthNet: same grid already).
            fields(&reference, &d);
            ok(&[
                "align",
                "--apply",
                &s(&d.join("neg.tif")),
                "--moving",
                &s(&moving),
                "--out",
                &s(&d.join("displaced")),
            ]);
            (name, reference, d.join("displaced/corrected.tif"), d.join("truth.tif"))
        })
        .collect()
}

#[test]
fn shared_real_s1s2_pairs_align_with_the_baseline() {
    let Some(shared) = shared_dir("shared_real_s1s2_pairs_align_with_the_baseline") else { return };
    let t = tempfile::tempdir().unwrap();
    for (name, reference, moving, truth) in semi_synthetic(&shared, t.path()) {
        let out = t.path().join(&name).join("pc");
        let a = ok(&[
            "align",
            "--method",
            "phase-correlation",
            "--reference",
            &s(&reference),
            "--moving",
            &s(&moving),
            "--truth",
            &s(&truth),
            "--out",
            &s(&out),
        ]);
        let e = a["median_error_px"].as_f64().unwrap();
        eprintln!(
            "{name}: phase correlation median error {e:.3} px, global shift {}",
            a["baseline"]["global_shift_px"]
        );
        assert!(e.is_finite() && a["n_valid_windows"].as_u64().unwrap() > 0, "{name}: {a}");
        let (bands, ..) = read_all(&out.join("displacement.tif"));
        assert!(bands[0].iter().any(|v| v.is_finite()), "{name}: a displacement somewhere");
    }
}

#[test]
#[ignore = "acceptance: needs the real-data model (trains it when missing, minutes); cargo test --release --test align_real -- --ignored"]
fn shared_real_s1s2_semi_synthetic_network_meets_the_targets() {
    let Some(shared) = shared_dir("shared_real_s1s2_semi_synthetic_network_meets_the_targets")
    else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = std::env::var_os("SIMREG_REAL_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("runs/real_s1s2_align/train"));
    if !model.join("model.safetensors").is_file() {
        eprintln!(
            "training the real-data model: simreg run pipelines/real_s1s2_align.toml (minutes)"
        );
        ok(&["run", &s(&repo.join("pipelines/real_s1s2_align.toml"))]);
    }
    let t = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    // S_A: stored by `simreg similarity` if it ran, else computed by the first align (from
    // RUN/labels) and reused from its output.
    let mut similarity: Option<PathBuf> = None;
    for (name, reference, moving, truth) in semi_synthetic(&shared, t.path()) {
        let out = t.path().join(&name).join("net");
        let mut args = vec![
            "align".to_string(),
            "--method".into(),
            "network".into(),
            "--model".into(),
            s(&model),
            "--reference".into(),
            s(&reference),
            "--moving".into(),
            s(&moving),
            "--truth".into(),
            s(&truth),
            "--out".into(),
            s(&out),
            "--device".into(),
            "cpu".into(),
        ];
        if let Some(d) = &similarity {
            args.extend(["--similarity".into(), s(d)]);
        }
        let a = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        if out.join("s_a.safetensors").is_file() {
            similarity = Some(out.clone());
        }
        let (e, b) = (
            a["median_error_px"].as_f64().unwrap(),
            a["baseline_median_error_px"].as_f64().unwrap(),
        );
        eprintln!("{name}: network median error {e:.3} px, phase correlation {b:.3} px (ratio {:.2}); median N_S {}", e / b, a["median_reliability"]);
        report.push(serde_json::json!({"pair": name, "median_error_px": e, "baseline_median_error_px": b, "ratio": e / b, "median_reliability": a["median_reliability"], "mean_shift_px": a["mean_shift_px"], "n_valid_windows": a["n_valid_windows"]}));
    }
    std::fs::write(
        repo.join("target/align_real.json"),
        serde_json::to_string_pretty(&Value::from(report.clone())).unwrap(),
    )
    .unwrap();
    for r in &report {
        let (e, b) = (
            r["median_error_px"].as_f64().unwrap(),
            r["baseline_median_error_px"].as_f64().unwrap(),
        );
        assert!(e <= 0.5 && e <= 0.5 * b, "{}: median error {e:.3} px, baseline {b:.3} px: targets ≤ 0.5 px and ≤ 0.5× the baseline", r["pair"]);
    }
}

/// Every real optical/SAR pair of ../shared/realdata as (name, optical reference, SAR moving):
/// GeFolki's S1/S2 patch, the six BigEarthNet pairs (S2 B02, B03, B04 stacked in a VRT; S1 VV)
/// and the two SSL4EO-S12 pairs (S2 B4, B3, B2, B8; S1 VV, VH in dB).
fn optical_sar_pairs(shared: &Path, dir: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let g = shared.join("gefolki_s1s2");
    let mut pairs =
        vec![("gefolki_s1s2".to_string(), g.join("S2_patch11.tif"), g.join("S1_patch11.tif"))];
    let ben = [
        (
            "bigearthnet_mm/s1-tiny",
            "bigearthnet_mm/s2-tiny",
            "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85",
            "S2A_MSIL2A_20170617T113321_36_85",
        ),
        (
            "bigearthnet_mm/s1-tiny",
            "bigearthnet_mm/s2-tiny",
            "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_4_55",
            "S2A_MSIL2A_20170617T113321_4_55",
        ),
        (
            "bigearthnet_mm/s1-tiny",
            "bigearthnet_mm/s2-tiny",
            "S1A_IW_GRDH_1SDV_20171221T064238_29SND_56_35",
            "S2A_MSIL2A_20171221T112501_56_35",
        ),
        (
            "bigearthnet_common",
            "bigearthnet_common",
            "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48",
            "S2A_MSIL2A_20170613T101031_87_48",
        ),
        (
            "bigearthnet_common",
            "bigearthnet_common",
            "S1A_IW_GRDH_1SDV_20170925T043256_35VPK_69_24",
            "S2B_MSIL2A_20170924T93020_69_24",
        ),
        (
            "bigearthnet_common",
            "bigearthnet_common",
            "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_57_38",
            "S2B_MSIL2A_20180204T94161_57_38",
        ),
    ];
    for (d1, d2, s1, s2) in ben {
        let vrt = dir.join(format!("{s2}.vrt"));
        let b = |band: &str| s(&shared.join(d2).join(s2).join(format!("{s2}_{band}.tif")));
        gdal_tool("gdalbuildvrt", &["-q", "-separate", &s(&vrt), &b("B02"), &b("B03"), &b("B04")]);
        let name =
            format!("{}_{}", d1.split('/').next().unwrap(), s2.splitn(4, '_').nth(3).unwrap());
        pairs.push((name, vrt, shared.join(d1).join(s1).join(format!("{s1}_VV.tif"))));
    }
    let ssl = shared.join("ssl4eo_s12");
    for (s2, s1) in [("20200604", "20200607"), ("20200813", "20200903")] {
        pairs.push((
            format!("ssl4eo_{s2}"),
            ssl.join(format!("ssl4eo_0000200_{s2}_S2L2A_B4B3B2B8.tif")),
            ssl.join(format!("ssl4eo_0000200_{s1}_S1GRD_VVVH_dB_rawpixels_S2georef.tif")),
        ));
    }
    pairs
}

/// The moving raster displaced by a constant shift (sx, sy): content at p appears at p + s
/// (`--apply` of −s: out(q) = in(q − s), bilinear, SAR through linear power).
fn shifted(moving: &Path, (sx, sy): (f64, f64), dir: &Path) -> PathBuf {
    let (_, _, w, h, _) = read_all(moving);
    let neg = dir.join("neg.tif");
    write_like(moving, vec![vec![-sx; w * h], vec![-sy; w * h]], &neg);
    let out = dir.join("shifted");
    ok(&["align", "--apply", &s(&neg), "--moving", &s(moving), "--out", &s(&out)]);
    out.join("corrected.tif")
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Issue 18's shift-difference error on every real optical/SAR pair: each pair's SAR shifted by
/// (2.3, −1.7), (0.6, 0.4) and (−4.2, 3.1) px; error = |estimate on the shifted pair − estimate
/// on the pair as it comes − the shift| (which takes each pair's own misregistration out). Per
/// method (the scene's `shift_px`; and the whole-image phase correlation every run reports):
/// the median, the 90th percentile and the failures, printed and written to
/// target/align_real_methods.json.
#[test]
fn shared_real_optical_sar_pairs_auto_recovers_known_shifts() {
    let Some(shared) = shared_dir("shared_real_optical_sar_pairs_auto_recovers_known_shifts")
    else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let methods = ["phase-correlation", "cfog", "auto"];
    let shifts = [(2.3, -1.7), (0.6, 0.4), (-4.2, 3.1)];
    // method → errors, failures; plus the whole-image phase correlation.
    let mut errors: std::collections::BTreeMap<String, (Vec<f64>, usize)> = Default::default();
    let mut rows = Vec::new();
    for (name, reference, moving) in optical_sar_pairs(&shared, t.path()) {
        let d = t.path().join(&name);
        let run = |method: &str, m: &Path, out: &Path| -> Option<Value> {
            let o = simreg(&[
                "align",
                "--json",
                "--method",
                method,
                "--reference",
                &s(&reference),
                "--moving",
                &s(m),
                "--out",
                &s(out),
            ]);
            if o.status.success() {
                Some(serde_json::from_slice(&o.stdout).unwrap())
            } else {
                eprintln!("{name} {method}: {}", stderr(&o).trim());
                None
            }
        };
        let pair = |v: &Value, k: &str| [v[k][0].as_f64().unwrap(), v[k][1].as_f64().unwrap()];
        for method in methods {
            let base = run(method, &moving, &d.join(format!("{method}-0")));
            for (k, &(sx, sy)) in shifts.iter().enumerate() {
                let sd = d.join(format!("shift{k}"));
                std::fs::create_dir_all(&sd).unwrap();
                let m = if sd.join("shifted/corrected.tif").is_file() {
                    sd.join("shifted/corrected.tif")
                } else {
                    shifted(&moving, (sx, sy), &sd)
                };
                let got = run(method, &m, &d.join(format!("{method}-{k}")));
                let mut record = |label: &str, key: &str| {
                    let entry = errors.entry(label.to_string()).or_default();
                    match (&base, &got) {
                        (Some(b), Some(g)) => {
                            let (b, g) = (pair(b, key), pair(g, key));
                            let e =
                                ((g[0] - b[0] - sx).powi(2) + (g[1] - b[1] - sy).powi(2)).sqrt();
                            entry.0.push(e);
                            rows.push(serde_json::json!({"pair": name, "shift": [sx, sy], "method": label, "error_px": e}));
                        }
                        _ => entry.1 += 1,
                    }
                };
                record(method, "shift_px");
                if method == "phase-correlation" {
                    let b = base.as_ref().map(|b| b["baseline"].clone());
                    let g = got.as_ref().map(|g| g["baseline"].clone());
                    let entry = errors.entry("whole-image phase correlation".into()).or_default();
                    if let (Some(b), Some(g)) = (b, g) {
                        let (b, g) = (pair(&b, "global_shift_px"), pair(&g, "global_shift_px"));
                        entry
                            .0
                            .push(((g[0] - b[0] - sx).powi(2) + (g[1] - b[1] - sy).powi(2)).sqrt());
                    } else {
                        entry.1 += 1;
                    }
                }
            }
        }
    }
    let mut table = Vec::new();
    for (method, (e, failed)) in &errors {
        let (med, p90) =
            if e.is_empty() { (f64::NAN, f64::NAN) } else { (quantile(e, 0.5), quantile(e, 0.9)) };
        let gross = e.iter().filter(|&&x| x > 5.0).count();
        eprintln!("{method:>30}: median {med:.3} px, p90 {p90:.3} px, {} cases, {failed} failed, {gross} gross (> 5 px)", e.len());
        table.push(serde_json::json!({"method": method, "median_px": med, "p90_px": p90, "cases": e.len(), "failed": failed, "gross": gross}));
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        repo.join("target/align_real_methods.json"),
        serde_json::to_string_pretty(&serde_json::json!({"summary": table, "cases": rows}))
            .unwrap(),
    )
    .unwrap();
    // Measured 2026-12-06: auto answers all 27 (the snow-covered Finnish patch shifted by
    // (−4.2, 3.1), whose whole-scene CFOG margin 0.018 is below the 0.02 it trusts, is found by
    // windows searching ±16 px around zero: 1.16 px off) and never grossly.
    let (auto, failed) = &errors["auto"];
    assert!(*failed == 0 && auto.len() == 27, "auto: {} cases, {failed} failed", auto.len());
    assert!(quantile(auto, 0.9) < 1.5, "auto p90: {auto:?}");
    assert!(auto.iter().all(|&e| e < 5.0), "no gross miss: {auto:?}");
    let pc = &errors["phase-correlation"].0;
    assert!(quantile(auto, 0.5) < 0.5 * quantile(pc, 0.5), "auto beats windowed phase correlation");
}
