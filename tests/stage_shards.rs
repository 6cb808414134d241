//! `tile`/`labels --shard K/N` and `merge tile`/`merge labels` (issue 20): shards of the work,
//! merged, give the files one process writes; incomplete or mixed shards are refused.
mod common;
use common::*;
use simreg::artefacts::tiles::{ModalityInput, SceneInput, TileParams};
use simreg::raster::kind::ModalityKind;
use simreg::tiling::{self, TileOptions};
use simreg::util::shard::Shard;
use std::path::{Path, PathBuf};

fn one(f: &Path, kind: ModalityKind) -> ModalityInput {
    ModalityInput { files: vec![f.to_path_buf()], bands: None, kind: Some(kind) }
}

/// Two scenes: Byte optical with a moving raster that needs a warp, and UInt16 with nodata on
/// one grid.
fn scenes(dir: &Path) -> Vec<SceneInput> {
    let r = dir.join("a_ref.tif");
    Fixture::utm(96, 70, 2, |b, c, r| (noise(b, c, r) * 250.0).floor() + 1.0).write_u8(&r);
    let m = dir.join("a_mov.tif");
    let mut f = Fixture::utm(80, 60, 1, |b, c, r| (noise(b + 4, c, r) * 255.0).floor());
    f.geotransform = [400003.3, 12.0, 0.0, 5099996.7, 0.0, -12.0];
    f.write_u8(&m);
    let r2 = dir.join("b_ref.tif");
    let mut f = Fixture::utm(64, 64, 1, |_, c, r| (noise(9, c, r) * 60000.0).floor());
    f.nodata = Some(0.0);
    f.write_u16(&r2);
    let m2 = dir.join("b_mov.tif");
    let mut f = Fixture::utm(64, 64, 2, |b, c, r| (noise(b + 11, c, r) * 60000.0).floor());
    f.nodata = Some(0.0);
    f.write_u16(&m2);
    vec![
        SceneInput {
            name: None,
            reference: one(&r, ModalityKind::Optical),
            moving: one(&m, ModalityKind::Optical),
            map: None,
            synth: None,
        },
        SceneInput {
            name: None,
            reference: one(&r2, ModalityKind::Optical),
            moving: one(&m2, ModalityKind::Optical),
            map: None,
            synth: None,
        },
    ]
}

fn params() -> TileParams {
    TileParams { tile_size: 32, overlap: 8, min_valid: 0.5, ..TileParams::default() }
}

fn quiet() -> TileOptions {
    TileOptions { quiet: true, ..TileOptions::default() }
}

/// Every file under `dir`, relative, except the summary (it records seconds) and the
/// ownership marker.
fn files(dir: &Path) -> Vec<PathBuf> {
    let keep = |rel: &PathBuf| rel != Path::new("summary.json") && !rel.starts_with(".simreg");
    files_under(dir).into_iter().filter(keep).collect()
}

#[test]
fn merged_shards_equal_one_process_tiling() {
    let t = tempfile::tempdir().unwrap();
    let sc = scenes(t.path());
    let whole = t.path().join("whole");
    let s = tiling::run(&sc, &params(), &whole, &quiet()).unwrap();
    assert!(s.n_tiles >= 10, "{} tiles", s.n_tiles);
    for n in [3, 7] {
        let dirs: Vec<PathBuf> =
            (1..=n).map(|k| t.path().join(format!("shards{n}/{k}-of-{n}"))).collect();
        let mut cut = 0;
        for (k, d) in dirs.iter().enumerate() {
            let s = tiling::run_shard(&sc, &params(), d, &quiet(), Shard { k: k + 1, n }).unwrap();
            cut += s.n_windows;
        }
        assert_eq!(cut, s.n_windows, "the shards cut every window once");
        // Any order of the shard folders.
        let mut given = dirs.clone();
        given.reverse();
        let merged = t.path().join(format!("merged{n}"));
        let m = tiling::merge(&given, &merged).unwrap();
        assert_eq!((m.n_tiles, m.n_windows, m.n_rejected), (s.n_tiles, s.n_windows, s.n_rejected));
        let (a, b) = (files(&whole), files(&merged));
        assert_eq!(a, b, "the same files");
        for f in &a {
            let (x, y) =
                (std::fs::read(whole.join(f)).unwrap(), std::fs::read(merged.join(f)).unwrap());
            if f.extension().is_some_and(|e| e == "json") && x != y {
                let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                panic!("{} differs:\n{}", f.display(), first_difference(&s(&x), &s(&y)));
            }
            assert!(x == y, "{} differs", f.display());
        }
        // A rerun of a done shard, or of the merge, does nothing.
        let again =
            tiling::run_shard(&sc, &params(), &dirs[0], &quiet(), Shard { k: 1, n }).unwrap();
        assert!(again.up_to_date);
        assert!(tiling::merge(&given, &merged).unwrap().up_to_date);
    }
    // Later stages read the merged tiles (the moving scene's warping VRT came from a shard).
    let labels = t.path().join("labels");
    let (tiles, labels) = (merged_path(t.path()), labels.to_string_lossy().into_owned());
    let s = ok(&["labels", "--tiles", &tiles, "--out", &labels, "--amplitude", "2"]);
    assert!(s["n_tiles"].as_u64().unwrap() >= 10);
}

fn merged_path(dir: &Path) -> String {
    dir.join("merged3").to_string_lossy().into_owned()
}

#[test]
fn a_merge_refuses_incomplete_or_mixed_shards_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let sc = scenes(t.path());
    let d = |k: usize| t.path().join(format!("{k}-of-3"));
    for k in [1, 3] {
        tiling::run_shard(&sc, &params(), &d(k), &quiet(), Shard { k, n: 3 }).unwrap();
    }
    let out = t.path().join("tiles");
    let e = tiling::merge(&[d(1), d(3)], &out).unwrap_err().to_string();
    assert!(e.contains("shard 2/3 missing"), "{e}");
    assert!(!out.exists());
    // Shard 2 cut with other parameters.
    let other = TileParams { min_valid: 0.6, ..params() };
    tiling::run_shard(&sc, &other, &d(2), &quiet(), Shard { k: 2, n: 3 }).unwrap();
    let e = format!("{:#}", tiling::merge(&[d(1), d(2), d(3)], &out).unwrap_err());
    assert!(e.contains("2-of-3") && e.contains("other inputs or parameters"), "{e}");
    assert!(!out.exists());
    // A folder that is not a finished shard is named.
    let e = format!("{:#}", tiling::merge(&[d(1), t.path().join("nope")], &out).unwrap_err());
    assert!(e.contains("nope") && e.contains("not a complete tile shard"), "{e}");
}

#[test]
fn the_command_line_shards_a_scene_and_merges_it() {
    let t = tempfile::tempdir().unwrap();
    let sc = scenes(t.path());
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (r, m) = (s(&sc[0].reference.files[0]), s(&sc[0].moving.files[0]));
    let base = ["tile", "--reference", &r, "--moving", &m, "--tile-size", "32", "--overlap", "8"];
    let whole = t.path().join("whole");
    let w = ok(&[&base[..], &["--out", &s(&whole)]].concat());
    let mut dirs = Vec::new();
    for k in 1..=2 {
        let d = s(&t.path().join(format!("{k}-of-2")));
        let shard = format!("{k}/2");
        ok(&[&base[..], &["--shard", &shard, "--out", &d]].concat());
        dirs.push(d);
    }
    let merged = t.path().join("merged");
    let mut args = vec!["merge", "tile", "--out"];
    let mo = s(&merged);
    args.push(&mo);
    args.extend(dirs.iter().map(String::as_str));
    let got = ok(&args);
    assert_eq!(got["n_tiles"], w["n_tiles"]);
    let man = |d: &Path| std::fs::read_to_string(d.join("manifest.json")).unwrap();
    assert!(
        man(&whole) == man(&merged),
        "manifests differ:\n{}",
        first_difference(&man(&whole), &man(&merged))
    );
    let o = simreg(&["tile", "--reference", &r, "--moving", &m, "--shard", "3/2", "--out", "x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("expected K/N with 1 ≤ K ≤ N"), "{}", stderr(&o));
}

/// The first line where two texts differ, with its neighbours.
fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let i = la.iter().zip(&lb).position(|(x, y)| x != y).unwrap_or(la.len().min(lb.len()));
    let around = |l: &[&str]| l[i.saturating_sub(3)..(i + 3).min(l.len())].join("\n");
    format!("line {}:\n--- one process\n{}\n--- merged\n{}", i + 1, around(&la), around(&lb))
}

#[test]
fn merged_labels_shards_equal_one_process_labels() {
    let t = tempfile::tempdir().unwrap();
    let sc = scenes(t.path());
    let tiles = t.path().join("tiles");
    tiling::run(&sc, &params(), &tiles, &quiet()).unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    // Correlated noise: a field per scene, shared by tiles that land in different shards.
    let label_args =
        ["--amplitude", "2", "--noise", "correlated", "--sigma", "1", "--corr-length", "40"];
    let labels = |extra: &[&str], out: &Path| {
        let base = ["labels", "--tiles", &s(&tiles), "--out", &s(out)];
        ok(&[&base[..], &label_args[..], extra].concat())
    };
    let whole = t.path().join("whole");
    let w = labels(&[], &whole);
    let dirs: Vec<PathBuf> = (1..=3).map(|k| t.path().join(format!("l{k}-of-3"))).collect();
    for (k, d) in dirs.iter().enumerate() {
        labels(&["--shard", &format!("{}/3", k + 1)], d);
    }
    let merged = t.path().join("merged");
    let mo = s(&merged);
    let ds: Vec<String> = dirs.iter().rev().map(|d| s(d)).collect();
    let mut args = vec!["merge", "labels", "--out", &mo];
    args.extend(ds.iter().map(String::as_str));
    let m = ok(&args);
    assert_eq!(m["n_tiles"], w["n_tiles"]);
    assert_eq!(m["label_noise_rmse_px"], w["label_noise_rmse_px"], "summed in the same order");
    let (a, b) = (files(&whole), files(&merged));
    assert_eq!(a, b, "the same files");
    assert!(a.iter().any(|f| f.to_string_lossy().ends_with(".moving.tif")));
    for f in &a {
        assert!(hash_file(&whole.join(f)) == hash_file(&merged.join(f)), "{} differs", f.display());
    }
    // Shards of one stage are not shards of another; a missing shard is named.
    let e = tiling::merge(&dirs, &t.path().join("x")).unwrap_err().to_string();
    assert!(e.contains("not a tile shard"), "{e}");
    let e = simreg(&["merge", "labels", "--out", &s(&t.path().join("y")), &ds[0], &ds[1]]);
    assert!(!e.status.success() && stderr(&e).contains("shard 1/3 missing"), "{}", stderr(&e));
}
