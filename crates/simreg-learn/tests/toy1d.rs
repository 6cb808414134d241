//! The paper's 1-D toy (paper.md §5, check 8 of §7) in a reduced configuration: n = 512
//! samples, 40 epochs at lr 1e-3, three seeds, f ∈ {1, 2, 4, 8}. The paper's properties must already hold:
//! the mean N_S strictly decreases with f, and N_S is anti-correlated with log(1 + curvature) at
//! f ≤ 2.
use simreg::artefacts::toy1d::Toy1dParams;
use simreg_learn::toy1d;

fn reduced() -> Toy1dParams {
    // 20× fewer Adam steps than the defaults (n 2048 → 512, 200 → 40 epochs): a larger lr.
    Toy1dParams { n: 512, epochs: 40, lr: 1e-3, ..Default::default() }
}

#[test]
fn reduced_toy_shows_the_papers_trends_and_writes_its_outputs() {
    tch::set_num_threads(1);
    let p = reduced();
    assert_eq!((p.frequencies.as_slice(), p.seeds.len()), ([1, 2, 4, 8].as_slice(), 3));
    let out = std::env::temp_dir().join(format!("simreg-toy1d-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let s = toy1d::run(&out, &p, true).unwrap();

    for t in &s.frequencies {
        eprintln!(
            "f = {}: N_S {:?} corr {:?} MAE {:?} N_S range [{}, {}]",
            t.f, t.ns_mean_per_seed, t.corr_per_seed, t.mae_per_seed, t.ns_min, t.ns_max
        );
    }
    assert_eq!(s.params, 21_057);
    let fs: Vec<u32> = s.frequencies.iter().map(|t| t.f).collect();
    assert_eq!(fs, [1, 2, 4, 8]);
    let ns: Vec<f64> = s.frequencies.iter().map(|t| t.ns_mean).collect();
    // Fewer neighbours at higher frequency: strictly, on the mean over the seeds.
    assert!(ns.windows(2).all(|w| w[1] < w[0]), "mean N_S per f: {ns:?}");
    assert_eq!(s.ns_strictly_decreasing, Some(true));
    // Fewer neighbours where the target bends more, at low frequency.
    for t in &s.frequencies[..2] {
        let c = t.corr_mean.unwrap();
        assert!(
            c < -0.5,
            "f = {}: corr(N_S, log(1 + curvature)) = {c} (per seed {:?})",
            t.f,
            t.corr_per_seed
        );
    }
    assert_eq!(s.corr_below_minus_half_for_f_le_2, Some(true));
    // The network learned the target (mean |sin| is 2/π ≈ 0.64): a bound per frequency.
    for (t, bound) in s.frequencies.iter().zip([0.03, 0.04, 0.08, 0.25]) {
        assert!(t.mae < bound, "f = {}: MAE {} ≥ {bound}", t.f, t.mae);
        assert_eq!(t.ns_mean_per_seed.len(), 3);
    }

    // samples.csv: one row per (f, seed, sample), consistent with the summary.
    let csv = std::fs::read_to_string(out.join("samples.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("f,seed,alpha,ns,curvature,pred,target"));
    let rows: Vec<Vec<f64>> =
        lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 4 * 3 * 512);
    let n = p.n as f64;
    for r in &rows {
        let (f, alpha, ns, curv, pred, target) = (r[0], r[2], r[3], r[4], r[5], r[6]);
        assert!((0.0..1.0).contains(&alpha));
        assert!((target - (2.0 * std::f64::consts::PI * f * alpha).sin()).abs() < 1e-12);
        assert!(curv >= 0.0 && pred.is_finite());
        // |k^C| ≤ 1, so N_S ≤ n; at low frequency every gradient shares a large common
        // component (paper.md §5), so N_S ≥ k^C(x, x) = 1.
        assert!(ns <= n + 1e-6, "N_S {ns} > n");
        if f <= 2.0 {
            assert!(ns >= 1.0 - 1e-6, "f = {f}: N_S {ns} < 1");
        }
    }
    for t in &s.frequencies {
        let sub: Vec<&Vec<f64>> =
            rows.iter().filter(|r| r[0] == t.f as f64 && r[1] == 0.0).collect();
        let mean = sub.iter().map(|r| r[3]).sum::<f64>() / sub.len() as f64;
        assert!((mean - t.ns_mean_per_seed[0]).abs() <= 1e-9 * mean.abs(), "f = {}", t.f);
    }
    assert_eq!(
        std::fs::read_to_string(out.join("summary.json")).unwrap(),
        serde_json::to_string_pretty(&s).unwrap() + "\n"
    );
    assert!(!out
        .with_file_name(format!("{}.partial", out.file_name().unwrap().to_string_lossy()))
        .exists());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_run_depends_on_its_seed_only_and_bad_parameters_are_refused() {
    tch::set_num_threads(1);
    let p = Toy1dParams { n: 96, epochs: 2, batch: 32, ..Default::default() };
    let a = toy1d::run_one(2, 7, &p).unwrap();
    let b = toy1d::run_one(2, 7, &p).unwrap();
    assert_eq!(a.ns, b.ns);
    assert_eq!(a.pred, b.pred);
    let c = toy1d::run_one(2, 8, &p).unwrap();
    assert_ne!(a.ns, c.ns);
    assert_ne!(a.alpha, c.alpha);

    let bad = |q: Toy1dParams| {
        toy1d::experiment(&q, &mut |_| {}).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(bad(Toy1dParams { frequencies: vec![], ..p.clone() }).contains("frequencies is empty"));
    assert!(bad(Toy1dParams { frequencies: vec![1, 0], ..p.clone() }).contains("positive"));
    assert!(bad(Toy1dParams { frequencies: vec![2, 2], ..p.clone() }).contains("duplicates"));
    assert!(bad(Toy1dParams { seeds: vec![], ..p.clone() }).contains("seeds is empty"));
    assert!(bad(Toy1dParams { n: 1, ..p.clone() }).contains("at least 2"));
    assert!(bad(Toy1dParams { epochs: 0, ..p.clone() }).contains("epochs"));
    assert!(bad(Toy1dParams { batch: 0, ..p.clone() }).contains("batch"));
    assert!(bad(Toy1dParams { lr: f64::NAN, ..p.clone() }).contains("lr"));
    assert!(bad(Toy1dParams { lr: -1e-3, ..p.clone() }).contains("lr"));
    // Unknown fields in the JSON/TOML form are refused too.
    assert!(serde_json::from_str::<Toy1dParams>(r#"{"epoch": 3}"#).is_err());
}
