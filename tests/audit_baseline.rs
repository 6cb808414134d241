//! The audit's image-only baseline on synthetic optical/SAR tiles with known displacements:
//! CFOG matching against phase correlation of gradient magnitudes (the baseline it replaced).
//! The label-free estimate is only as good as this baseline's errors are independent of the
//! network's; fewer gross failures is what made it calibrated at σ = 1 (README).
mod common;
use common::*;
use simreg::artefacts::labels::LabelsDir;
use simreg::artefacts::tiles::Manifest;
use simreg::audit::baseline::{tile_images, tile_shift};
use simreg::matching::phase::{gradient_magnitude, phase_correlation_within};

#[test]
fn cfog_fails_far_less_often_than_phase_correlation_on_optical_sar_tiles() {
    let t = tempfile::tempdir().unwrap();
    let d = |p: &str| t.path().join(p).to_string_lossy().into_owned();
    ok(&["synth", "--out", &d("synth"), "--size", "256", "--seed", "9"]);
    ok(&[
        "tile",
        "--reference",
        &d("synth/optical.tif"),
        "--moving",
        &d("synth/sar.tif"),
        "--tile-size",
        "64",
        "--overlap",
        "32",
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
        "4",
        "--noise",
        "iid",
        "--sigma",
        "0",
        "--seed",
        "3",
    ]);
    simreg::raster::init_gdal();
    let manifest = Manifest::load(&t.path().join("tiles")).unwrap();
    let labels_dir = LabelsDir::new(t.path().join("labels"));
    let labels = labels_dir.labels().unwrap();
    let truth = labels_dir.truth().unwrap().unwrap();
    let (mut cfog, mut phase) = (vec![], vec![]);
    for tile in &manifest.tiles {
        let scene = manifest.scene(&tile.scene).unwrap();
        let (tile_path, moving) = (
            t.path().join("tiles").join(&tile.path),
            t.path().join("labels").join(&labels[&tile.id].moving),
        );
        let d = truth[&tile.id].displacement;
        let err = |dx: f64, dy: f64| (dx - d[0]).abs().max((dy - d[1]).abs());
        let c = tile_shift(scene, &tile_path, &moving, 8.0).unwrap();
        cfog.push(err(c.dx, c.dy));
        let (r, m, w, h) = tile_images(scene, &tile_path, &moving).unwrap();
        let p = phase_correlation_within(
            &gradient_magnitude(&r, w, h),
            &gradient_magnitude(&m, w, h),
            w,
            h,
            8.0,
        );
        phase.push(err(p.dx, p.dy));
    }
    let n = cfog.len() as f64;
    assert!(n >= 40.0, "{n} tiles");
    let failures = |e: &[f64]| e.iter().filter(|&&v| v > 2.0).count() as f64 / n;
    let median = |e: &[f64]| {
        let mut v = e.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (fc, fp) = (failures(&cfog), failures(&phase));
    eprintln!("{n} tiles: failures (> 2 px) CFOG {fc:.3}, phase correlation {fp:.3}; median max-axis error {:.2} / {:.2} px", median(&cfog), median(&phase));
    assert!(fc < 0.15, "CFOG fails on {fc:.3} of the tiles");
    assert!(fc <= 0.5 * fp, "CFOG {fc:.3} against phase correlation {fp:.3}");
    assert!(median(&cfog) < 1.0, "median error {}", median(&cfog));
}
