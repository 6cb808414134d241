//! Poor messages and bad values (issue 21): every refusal is one line that names the option or
//! the file and the problem, and nothing is run or written.
mod common;
use common::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `simreg tile` of `r` and `m` into `out`, in 32-px tiles.
fn tile_args<'a>(r: &'a Path, m: &'a Path, out: &'a Path) -> [&'a str; 11] {
    [
        "tile",
        "--reference",
        s(r),
        "--moving",
        s(m),
        "--tile-size",
        "32",
        "--overlap",
        "8",
        "--out",
        s(out),
    ]
}

/// Expects exit status non-zero with one line containing every needle.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let o = simreg(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} should be refused: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line expected:\n{err}");
    assert!(err.starts_with("simreg: error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: '{n}' expected in: {err}");
    }
    err
}

#[test]
fn a_missing_required_argument_is_named_in_full_for_every_subcommand() {
    // (subcommand and the arguments given, the names the error must list)
    let cases: &[(&[&str], &[&str])] = &[
        (&["tile", "--reference", "a.tif", "--moving", "b.tif"], &["--out <DIR>"]),
        (&["tile", "--out", "x"], &["--reference <FILE>", "--moving <FILE>"]),
        (&["synth"], &["--out <DIR>"]),
        (&["labels", "--tiles", "t"], &["--out <DIR>", "--amplitude"]),
        (&["train", "--out", "x"], &["--labels <DIR>"]),
        (&["predict", "--model", "m", "--tiles", "t"], &["--out <DIR>"]),
        (&["audit"], &["<RUN>"]),
        (&["report"], &["<RUN>"]),
        (&["toy1d"], &["--out <DIR>"]),
        (&["align", "--reference", "a.tif", "--moving", "b.tif"], &["--out <DIR>"]),
        (&["batch", "--out", "x"], &["--input <DIR_OR_ZIP>"]),
        (&["run"], &["<PIPELINE>"]),
    ];
    for (args, names) in cases {
        let mut n = vec!["required arguments were not provided"];
        n.extend_from_slice(names);
        refused(args, &n);
    }
}

#[test]
fn a_negative_number_for_an_unsigned_option_names_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["tile", "--reference", "a", "--moving", "b", "--out", "x", "--tile-size", "-5"],
            "'--tile-size <TILE_SIZE>'",
        ),
        (&["synth", "--out", "x", "--size", "-64"], "'--size <SIZE>'"),
        (
            &["labels", "--tiles", "t", "--out", "x", "--amplitude", "3", "--seed", "-1"],
            "'--seed <SEED>'",
        ),
        (&["train", "--labels", "l", "--out", "x", "--epochs", "-2"], "'--epochs <EPOCHS>'"),
        (&["batch", "--input", "i", "--out", "x", "--jobs", "-1"], "'--jobs <JOBS>'"),
        (&["audit", "run", "--top", "-3"], "'--top <K>'"),
    ];
    for (args, option) in cases {
        let bad = args.last().unwrap();
        refused(args, &[&format!("invalid value '{bad}'"), option]);
    }
}

#[test]
fn bad_numbers_are_refused_with_the_option_and_the_value() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run/x");
    let o = s(&out);
    refused(&["train", "--labels", "l", "--out", o, "--lr", "NaN"], &["lr", "NaN"]);
    refused(&["train", "--labels", "l", "--out", o, "--lr", "-1"], &["lr", "-1"]);
    refused(&["train", "--labels", "l", "--out", o, "--weight-decay", "NaN"], &["weight-decay"]);
    refused(&["audit", s(t.path()), "--max-shift", "-1"], &["max-shift", "-1"]);
    refused(&["audit", s(t.path()), "--max-shift", "NaN"], &["max-shift", "NaN"]);
    assert!(!t.path().join("run").exists(), "nothing written for a refused value");
}

#[test]
fn a_pipeline_is_validated_whole_before_any_stage_runs() {
    let t = tempfile::tempdir().unwrap();
    let base = "[synth.a]\nsize = 96\n[tile]\ntile_size = 32\noverlap = 16\n[[tile.scene]]\nsynth = \"a\"\n[labels]\namplitude = 3.0\nnoise = { model = \"iid\", sigma = 1.0 }\n";
    let cases = [
        ("[train]\nlr = nan\n", vec!["[train]", "lr", "NaN"]),
        ("[train]\nepochs = 0\n", vec!["[train]", "epochs"]),
        ("[train]\n[audit]\nmax_shift = -1.0\n", vec!["[audit]", "max-shift"]),
        ("[train]\n[sweep]\nsigma = []\n", vec!["[sweep]", "sigma is empty"]),
        ("[train]\n[sweep]\nsigma = [1.0, -2.0]\n", vec!["[sweep]", "-2"]),
    ];
    for (i, (tail, needles)) in cases.iter().enumerate() {
        let p = t.path().join(format!("p{i}.toml"));
        std::fs::write(&p, format!("{base}{tail}")).unwrap();
        let run = t.path().join(format!("run{i}"));
        let mut n = vec![format!("p{i}.toml")];
        n.extend(needles.iter().map(|s| s.to_string()));
        refused(
            &["run", s(&p), "--out", s(&run)],
            &n.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(!run.exists(), "case {i}: the run started before the pipeline was checked");
    }
}

#[test]
fn rasters_without_a_crs_are_refused_naming_the_reference() {
    let t = tempfile::tempdir().unwrap();
    let p = |n: &str| t.path().join(n);
    let mut f = Fixture::utm(64, 64, 1, noise);
    f.write_u16(&p("opt.tif"));
    Fixture::utm(64, 64, 1, |b, c, r| noise(b + 3, c, r)).write_f32(&p("sar.tif"));
    f.epsg = None;
    f.write_u16(&p("opt_nocrs.tif"));
    let mut g = Fixture::utm(64, 64, 1, |b, c, r| noise(b + 3, c, r));
    g.epsg = None;
    g.write_f32(&p("sar_nocrs.tif"));
    let out = p("run/out");
    for (reference, moving) in [("opt_nocrs.tif", "sar_nocrs.tif"), ("opt_nocrs.tif", "sar.tif")] {
        let (r, m) = (p(reference), p(moving));
        let err = refused(&tile_args(&r, &m, &out), &["reference", reference, "has no CRS"]);
        assert!(!err.contains(moving), "the reference is at fault, not the moving raster: {err}");
        let align = [
            "align",
            "--method",
            "phase-correlation",
            "--reference",
            s(&r),
            "--moving",
            s(&m),
            "--out",
            s(&out),
        ];
        refused(&align, &["reference", reference, "has no CRS"]);
        assert!(!out.exists());
    }
    // A moving raster without a CRS against a georeferenced reference: the moving one is named.
    let (r, m) = (p("opt.tif"), p("sar_nocrs.tif"));
    refused(&tile_args(&r, &m, &out), &["moving", "sar_nocrs.tif", "has no CRS"]);
}
