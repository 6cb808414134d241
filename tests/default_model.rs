//! The model shipped in models/default (issue 18): `simreg info` names it; `align --method
//! network` uses it without --model where the pair's bands fit it (B, G, R and one SAR band) and
//! otherwise says which bands to select; `auto` without --model stays CFOG alone.
mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

/// A synthetic pair in the default model's layout: optical B, G, R (of B, G, R, NIR) and VV.
fn pair(dir: &Path) -> (String, String, String, String) {
    let synth = dir.join("synth");
    // 10 m, as Sentinel-2 (the default model was trained at 3–20 m).
    ok(&["synth", "--out", &s(&synth), "--size", "256", "--seed", "9", "--pixel-size", "10"]);
    let (opt, sar) = (s(&synth.join("optical.tif")), s(&synth.join("sar.tif")));
    let bgr = s(&dir.join("bgr.tif"));
    let vv = s(&dir.join("vv.tif"));
    for (src, dst, bands) in [(&opt, &bgr, &["1", "2", "3"][..]), (&sar, &vv, &["1"][..])] {
        let mut a = vec!["-q".to_string()];
        for b in bands {
            a.extend(["-b".into(), b.to_string()]);
        }
        a.extend([src.clone(), dst.clone()]);
        let st = std::process::Command::new("gdal_translate").args(&a).status().unwrap();
        assert!(st.success());
    }
    (opt, sar, bgr, vv)
}

#[test]
fn info_names_the_default_model() {
    let o = simreg(&["info", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &v["default_model"];
    assert_eq!(m["name"], "simreg-default-s1s2/1", "{v}");
    let path = Path::new(m["path"].as_str().unwrap());
    assert!(path.join("model.safetensors").is_file(), "{}", path.display());
    assert!(path.join("../similarity/s_a.safetensors").is_file());
}

#[test]
fn network_without_model_uses_the_default_and_names_the_bands_it_takes() {
    let t = tempfile::tempdir().unwrap();
    let (opt, sar, bgr, vv) = pair(t.path());
    let run = |r: &str, m: &str, out: &Path, extra: &[&str]| {
        let out = s(out);
        let mut a = vec!["align", "--json", "--reference", r, "--moving", m, "--out", &out];
        a.extend(extra);
        simreg(&a)
    };
    let json = |o: &std::process::Output| -> Value {
        assert!(o.status.success(), "{}", stderr(o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // B, G, R and VV: the default network, its 64-px windows and N_S reliability.
    let net = json(&run(&bgr, &vv, &t.path().join("fits"), &["--method", "network"]));
    assert_eq!(net["method"], "network");
    assert!(net["model"].as_str().unwrap().ends_with("models/default/train"), "{net}");
    assert_eq!(net["window"], 64);
    assert!(net["reliability"].as_str().unwrap().contains("N_S"), "{}", net["reliability"]);
    // The four-band optical, three of its bands chosen: the same.
    let v = json(&run(
        &opt,
        &vv,
        &t.path().join("chosen"),
        &["--method", "network", "--reference-bands", "1,2,3"],
    ));
    assert!(v["model"].is_string(), "{v}");
    // auto without --model: CFOG alone, no model; the network agrees with it on this pair (the
    // synthetic SAR's double bounce makes both see ~0.6 px east).
    let a = json(&run(&bgr, &vv, &t.path().join("auto"), &[]));
    assert!(a.get("model").is_none() && a["window"] == 128, "{a}");
    let d = |k| net["shift_px"][k].as_f64().unwrap() - a["shift_px"][k].as_f64().unwrap();
    assert!(d(0).hypot(d(1)) < 0.5, "network {} against auto {}", net["shift_px"], a["shift_px"]);
    // Layouts the model does not take: one line naming the file and the flag, exit 1, nothing
    // written.
    for (r, m, file, flag) in
        [(&opt, &vv, &opt, "--reference-bands 1,2,3"), (&bgr, &sar, &sar, "--moving-bands")]
    {
        let out = t.path().join("refused");
        let o = run(r, m, &out, &["--method", "network"]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(file.as_str()) && err.contains(flag) && err.contains("blue, green, red"),
            "{err}"
        );
        assert!(!out.exists());
    }
}
