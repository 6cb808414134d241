//! `simreg predict`: a trained model's displacement for every tile — a JSON of centre-window
//! means and dense fields as GeoTIFFs on each tile's grid.
use super::data;
use crate::model::Net;
use anyhow::{bail, Context, Result};
use simreg::artefacts::predict::{
    PredictDir, PredictShard, PredictSummary, Prediction, Predictions, SHARD_FORMAT,
};
use simreg::artefacts::tiles::{TileEntry, TilesDir};
use simreg::artefacts::train::{ModelInfo, TrainDir};
use simreg::artefacts::write_json;
use simreg::raster::write::{write_geotiff, BandData, Compression, GeoTiffOptions};
use simreg::util::output;
use simreg::util::shard::{Shard, SHARD_JSON};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// Loads a model directory written by `simreg train` (model.json + model.safetensors).
pub fn load_model(dir: &Path, device: Device) -> Result<(nn::VarStore, Net, ModelInfo)> {
    let files = TrainDir::new(dir);
    if !files.model_json().is_file() {
        bail!(
            "model '{}': no model.json (is it a `simreg train` output directory?)",
            dir.display()
        );
    }
    let info = files.model_info()?;
    if info.arch != super::ARCH {
        bail!(
            "model '{}': made for network '{}', this simreg builds '{}'; retrain it",
            dir.display(),
            info.arch,
            super::ARCH
        );
    }
    info.net.check()?;
    let mut vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), info.net.clone());
    let weights = files.model_safetensors();
    vs.load(&weights).map_err(|e| {
        anyhow::anyhow!(
            "model '{}': weights do not fit the architecture in model.json: {}",
            weights.display(),
            simreg::util::text::torch_message(e)
        )
    })?;
    Ok((vs, net, info))
}

/// Predicts for the tiles in `tiles_dir`, or — with `labels_dir` — for the labelled tiles with
/// their displaced moving tiles.
pub fn run(
    model_dir: &Path,
    tiles_dir: Option<&Path>,
    labels_dir: Option<&Path>,
    out: &Path,
    device: Device,
    shard: Option<Shard>,
) -> Result<PredictSummary> {
    let mut inputs = vec![model_dir];
    inputs.extend(tiles_dir.into_iter().chain(labels_dir));
    let claim = output::claim(out, "predict", &inputs)?;
    let (_vs, net, info) = load_model(model_dir, device)?;
    let (inputs, labels, tiles_dir) = match (labels_dir, tiles_dir) {
        (Some(l), _) => {
            let d = data::load(l)?;
            let labels: Vec<[f64; 2]> =
                d.label.iter().map(|v| [v[0] as f64, v[1] as f64]).collect();
            let td = d.target.tiles_dir.clone();
            let inputs = data::Inputs {
                ids: d.ids,
                reference: d.reference,
                moving: d.moving,
                reference_bands: d.reference_bands,
                moving_bands: d.moving_bands,
            };
            (inputs, Some(labels), td)
        }
        (None, Some(t)) => (data::load_tiles(t)?, None, t.to_path_buf()),
        (None, None) => bail!("predict needs --tiles or --labels"),
    };
    let data::Inputs { ids, reference, moving, reference_bands: cr, moving_bands: cm } = inputs;
    let manifest = TilesDir::new(&tiles_dir).manifest()?;
    let n_all = ids.len();
    let range = shard.map_or(0..n_all, |sh| sh.range(n_all));
    let input_hash = {
        let mut h = blake3::Hasher::new();
        h.update(crate::similarity::stored::model_hash(model_dir)?.as_bytes());
        h.update(manifest.input_hash.as_bytes());
        if let Some(l) = &labels {
            h.update(serde_json::to_string(l)?.as_bytes());
        }
        h.update(serde_json::to_string(&ids)?.as_bytes());
        h.finalize().to_hex().to_string()
    };
    // A shard: its range of the tiles only.
    let (per_r, per_m) = (cr * info.net.tile_size.pow(2), cm * info.net.tile_size.pow(2));
    let reference = reference[range.start * per_r..range.end * per_r].to_vec();
    let moving = moving[range.start * per_m..range.end * per_m].to_vec();
    let labels = labels.map(|l| l[range.clone()].to_vec());
    let ids = ids[range.clone()].to_vec();
    let cfg = &info.net;
    if (cfg.reference_bands, cfg.moving_bands) != (cr, cm)
        || cfg.tile_size != manifest.params.tile_size
    {
        bail!(
            "model '{}' expects {}+{} reference+moving bands on {}-pixel tiles; the tiles have {cr}+{cm} bands of {} pixels",
            model_dir.display(), cfg.reference_bands, cfg.moving_bands, cfg.tile_size, manifest.params.tile_size
        );
    }
    let (n, t) = (ids.len() as i64, cfg.tile_size as i64);
    let r = Tensor::from_slice(&reference).view([n, cr as i64, t, t]).to(device);
    let m = Tensor::from_slice(&moving).view([n, cm as i64, t, t]).to(device);
    let by_id: BTreeMap<&str, &TileEntry> =
        manifest.tiles.iter().map(|t| (t.id.as_str(), t)).collect();
    claim.build(|partial| {
        let dir = PredictDir::new(partial);
        let mut preds = Predictions::new();
        let mut means = Vec::with_capacity(ids.len());
        let (o, c) = (cfg.centre_offset, cfg.centre_size);
        for (k, id) in ids.iter().enumerate() {
            let tile = by_id
                .get(id.as_str())
                .with_context(|| format!("tile '{id}' is not in the tiles manifest"))?;
            let dense =
                tch::no_grad(|| net.forward(&r.narrow(0, k as i64, 1), &m.narrow(0, k as i64, 1)))
                    .to(Device::Cpu)
                    .to_kind(Kind::Double)
                    * cfg.scale_px;
            let v: Vec<f64> = Vec::try_from(dense.flatten(0, -1))?;
            let mut bands = [
                vec![f32::NAN; cfg.tile_size * cfg.tile_size],
                vec![f32::NAN; cfg.tile_size * cfg.tile_size],
            ];
            for (b, band) in bands.iter_mut().enumerate() {
                for y in 0..c {
                    for x in 0..c {
                        band[(o + y) * cfg.tile_size + o + x] = v[b * c * c + y * c + x] as f32;
                    }
                }
            }
            let mean = [
                v[..c * c].iter().sum::<f64>() / (c * c) as f64,
                v[c * c..].iter().sum::<f64>() / (c * c) as f64,
            ];
            let field = PathBuf::from(format!("{id}.field.tif"));
            let path = dir.path().join(&field);
            std::fs::create_dir_all(path.parent().expect("has a parent"))?;
            let crs =
                manifest.scene(&tile.scene).map(|s| s.grid.crs_wkt.clone()).unwrap_or_default();
            let [dx, dy] = bands;
            let data = vec![
                BandData { description: "dx".into(), pixels: dx },
                BandData { description: "dy".into(), pixels: dy },
            ];
            write_geotiff(
                &path,
                &crs,
                tile.geotransform,
                cfg.tile_size,
                cfg.tile_size,
                data,
                &[("SIMREG_UNITS", "px, x east, y south".into())],
                GeoTiffOptions::compressed(Compression::Deflate),
            )?;
            means.push(mean);
            preds.insert(id.clone(), Prediction { displacement: mean, field });
        }
        write_json(&dir.predictions_json(), &preds)?;
        let summary = PredictSummary {
            out: out.to_path_buf(),
            n_tiles: ids.len(),
            rmse_labels_px: labels.as_ref().map(|l| super::rmse(&means, l)),
            device: format!("{device:?}").to_lowercase(),
        };
        write_json(&dir.summary_json(), &summary)?;
        if let Some(sh) = shard {
            // Last: a shard folder with a shard.json is complete.
            let f = PredictShard {
                format: SHARD_FORMAT.into(),
                input_hash,
                shard: sh,
                tiles: range,
                n_tiles: n_all,
                ids: ids.clone(),
                means,
                labels,
                device: summary.device.clone(),
            };
            write_json(&partial.join(SHARD_JSON), &f)?;
        }
        Ok(summary)
    })
}
