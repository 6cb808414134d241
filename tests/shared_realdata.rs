//! The tile stage on the real pairs in ../shared/realdata (needs ../shared: see `shared_dir`).
mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn tile_json(args: &[String]) -> Value {
    let mut a: Vec<&str> = vec!["tile"];
    a.extend(args.iter().map(String::as_str));
    a.push("--json");
    let o = simreg(&a);
    assert!(o.status.success(), "simreg {a:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn s(p: impl AsRef<Path>) -> String {
    p.as_ref().to_string_lossy().into_owned()
}

fn resamplings(man: &Value, modality: usize) -> Vec<Value> {
    man["scenes"][0]["modalities"][modality]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["resampling"].clone())
        .collect()
}

#[test]
fn shared_gefolki_s1s2_same_grid_is_exact() {
    let Some(rd) = shared_dir("shared_gefolki_s1s2_same_grid_is_exact") else { return };
    let t = tempfile::tempdir().unwrap();
    let (r, m) = (rd.join("gefolki_s1s2/S2_patch11.tif"), rd.join("gefolki_s1s2/S1_patch11.tif"));
    let out = t.path().join("t");
    let sum = tile_json(&[
        "--reference".into(),
        s(&r),
        "--moving".into(),
        s(&m),
        "--out".into(),
        s(&out),
    ]);
    assert_eq!(sum["n_tiles"], 25); // 448 px, tile 128, stride 96: 0, 96, 192, 288, 320 (shifted)
    let man = manifest(&out);
    assert_eq!(resamplings(&man, 1), [Value::Null]);
    let tile = &man["tiles"][7];
    let (col, row) = (
        tile["window"]["col"].as_u64().unwrap() as usize,
        tile["window"]["row"].as_u64().unwrap() as usize,
    );
    let (bands, ..) = read_all(&out.join(tile["path"].as_str().unwrap()));
    let (src, ..) = read_all(&r);
    for y in 0..128 {
        for x in 0..128 {
            assert_eq!(bands[2][y * 128 + x], src[2][(row + y) * 448 + col + x]);
        }
    }
}

#[test]
fn shared_gefolki_uavsar_is_warped_onto_the_optical_grid() {
    let Some(rd) = shared_dir("shared_gefolki_uavsar_is_warped_onto_the_optical_grid") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let d = rd.join("gefolki_uavsar");
    let stem = "lngley_05521_09059_000_090813_L090_CX_01_pauli_x016_y020";
    let out = t.path().join("t");
    let sum = tile_json(&[
        "--reference".into(),
        s(d.join(format!("{stem}_optique.tif"))),
        "--moving".into(),
        s(d.join(format!("{stem}_radar.tif"))),
        "--moving-kind".into(),
        "optical".into(),
        "--out".into(),
        s(&out),
    ]);
    let man = manifest(&out);
    assert_eq!(resamplings(&man, 1), [Value::from("bilinear")]);
    // The radar grid is ~0.7 px off and 0.04 % smaller: the last column or row has no radar data.
    assert!(sum["n_tiles"].as_u64().unwrap() >= 90, "{sum}");
    assert!(man["scenes"][0]["modalities"][1]["sources"][0]["coverage"].as_f64().unwrap() > 0.99);
}

#[test]
fn shared_bigearthnet_bands_at_10_20_60_m_land_on_the_10_m_grid() {
    let Some(rd) = shared_dir("shared_bigearthnet_bands_at_10_20_60_m_land_on_the_10_m_grid")
    else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let s2 = rd.join(
        "bigearthnet_mm/s2-tiny/S2A_MSIL2A_20170617T113321_36_85/S2A_MSIL2A_20170617T113321_36_85",
    );
    let s1 = rd.join("bigearthnet_mm/s1-tiny/S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85/S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85");
    let mut args = vec!["--reference".to_string()];
    for b in ["B02", "B03", "B04", "B08", "B11", "B01"] {
        args.push(format!("{}_{b}.tif", s(&s2)));
    }
    args.extend([
        "--moving".into(),
        format!("{}_VV.tif", s(&s1)),
        format!("{}_VH.tif", s(&s1)),
        "--tile-size".into(),
        "64".into(),
        "--overlap".into(),
        "16".into(),
        "--out".into(),
        s(t.path().join("t")),
    ]);
    let sum = tile_json(&args);
    assert_eq!(sum["n_tiles"], 9);
    let man = manifest(&t.path().join("t"));
    let none = Value::Null;
    let bil = Value::from("bilinear");
    assert_eq!(
        resamplings(&man, 0),
        [none.clone(), none.clone(), none.clone(), none.clone(), bil.clone(), bil]
    );
    assert_eq!(resamplings(&man, 1), [none.clone(), none]);
    assert_eq!(man["scenes"][0]["modalities"][1]["kind"], "sar-db");
    let vv = man["scenes"][0]["modalities"][1]["bands"][0]["stats"]["p50"].as_f64().unwrap();
    assert!((-25.0..0.0).contains(&vv), "VV median {vv} dB");
    assert_eq!(man["scenes"][0]["grid"]["width"], 120);
}

#[test]
fn shared_arosics_jpeg2000_pair() {
    let Some(rd) = shared_dir("shared_arosics_jpeg2000_pair") else { return };
    let t = tempfile::tempdir().unwrap();
    let d = rd.join("arosics_s2_s2");
    let out = t.path().join("t");
    let sum = tile_json(&[
        "--reference".into(),
        s(d.join("ref_S2A_20160608T153121_T33UUU_sub.jp2")),
        "--moving".into(),
        s(d.join("tgt_S2A_20160529T153631_T33UUU_sub.jp2")),
        "--tile-size".into(),
        "256".into(),
        "--overlap".into(),
        "0".into(),
        "--out".into(),
        s(&out),
    ]);
    let man = manifest(&out);
    assert_eq!(man["scenes"][0]["modalities"][0]["sources"][0]["driver"], "JP2OpenJPEG");
    assert_eq!(man["scenes"][0]["modalities"][1]["kind"], "optical");
    // The target covers only part of the reference: windows without it are rejected.
    assert!(
        sum["n_tiles"].as_u64().unwrap() > 20 && sum["n_rejected"].as_u64().unwrap() > 0,
        "{sum}"
    );
}

#[test]
fn shared_landsat_with_dem_in_a_crs_without_epsg_code() {
    let Some(rd) = shared_dir("shared_landsat_with_dem_in_a_crs_without_epsg_code") else { return };
    let t = tempfile::tempdir().unwrap();
    let d = rd.join("single_images");
    let out = t.path().join("t");
    let sum = tile_json(&[
        "--reference".into(),
        s(d.join("L7_ETMs.tif")),
        "--moving".into(),
        s(d.join("olinda_dem_utm25s.tif")),
        "--moving-kind".into(),
        "dem".into(),
        "--tile-size".into(),
        "64".into(),
        "--overlap".into(),
        "16".into(),
        "--out".into(),
        s(&out),
    ]);
    let man = manifest(&out);
    assert_eq!(resamplings(&man, 1), [Value::from("bilinear")]);
    assert_eq!(man["scenes"][0]["modalities"][1]["kind"], "dem");
    assert!(sum["n_tiles"].as_u64().unwrap() >= 25, "{sum}");
    assert_eq!(read_all(&out.join(man["tiles"][0]["path"].as_str().unwrap())).0.len(), 7);
}

#[test]
fn shared_bigearthnet_labels_with_zero_displacement_reproduce_the_sar_tiles() {
    let Some(rd) =
        shared_dir("shared_bigearthnet_labels_with_zero_displacement_reproduce_the_sar_tiles")
    else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let s2 = rd.join(
        "bigearthnet_mm/s2-tiny/S2A_MSIL2A_20171221T112501_56_35/S2A_MSIL2A_20171221T112501_56_35",
    );
    let s1 = rd.join("bigearthnet_mm/s1-tiny/S1A_IW_GRDH_1SDV_20171221T064238_29SND_56_35/S1A_IW_GRDH_1SDV_20171221T064238_29SND_56_35");
    let tiles = t.path().join("run/tiles");
    tile_json(&[
        "--reference".into(),
        format!("{}_B04.tif", s(&s2)),
        "--moving".into(),
        format!("{}_VV.tif", s(&s1)),
        format!("{}_VH.tif", s(&s1)),
        "--tile-size".into(),
        "64".into(),
        "--overlap".into(),
        "16".into(),
        "--out".into(),
        s(&tiles),
    ]);
    let labels = t.path().join("run/labels");
    // Zero displacement: the displaced SAR tiles (resampled as linear power, back to dB) must
    // equal the tiles' SAR bands.
    let o = simreg(&[
        "labels",
        "--tiles",
        &s(&tiles),
        "--out",
        &s(&labels),
        "--amplitude",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let man = manifest(&tiles);
    let lab: Value =
        serde_json::from_str(&std::fs::read_to_string(labels.join("labels.json")).unwrap())
            .unwrap();
    for tile in man["tiles"].as_array().unwrap() {
        let (tile_px, ..) = read_all(&tiles.join(tile["path"].as_str().unwrap()));
        let (mv, ..) =
            read_all(&labels.join(lab[tile["id"].as_str().unwrap()]["moving"].as_str().unwrap()));
        for b in 0..2 {
            for (a, c) in tile_px[1 + b].iter().zip(&mv[b]) {
                assert!((a - c).abs() < 1e-3, "{a} dB vs {c} dB");
            }
        }
    }
    // With a 3 px translation the SAR really moves (and stays finite in dB).
    let o = simreg(&[
        "labels",
        "--tiles",
        &s(&tiles),
        "--out",
        &s(t.path().join("run/l3")),
        "--amplitude",
        "3",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}
