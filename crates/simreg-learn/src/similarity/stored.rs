//! S_A = Σ_{j ∈ S} A_j stored beside the similarity outputs (`s_a.safetensors` + `s_a.json`),
//! so that N_S of a new input against the training set costs one Jacobian (`simreg align`'s
//! reliability band). Tied to the exact weights it was computed with (a hash of the file).
use super::{batch_jacobians, kernel, NsAccumulator, D};
use crate::model::Net;
use crate::train::data::LabelledRun;
use crate::train::{SplitFile, SPLIT_FILE};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use simreg::util::atomic;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub const SA_FILE: &str = "s_a.safetensors";
pub const SA_META: &str = "s_a.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaMeta {
    /// blake3 of the model.safetensors S_A was computed with.
    pub model_hash: String,
    /// |S|: the number of training tiles summed.
    pub n_train: usize,
    pub params: i64,
    /// N_S(x) = ½·⟨A_x, S_A⟩ (d = 2); N_S / n_train is the fraction of the training set the
    /// input counts as neighbours.
    pub formula: String,
}

pub fn model_hash(model_dir: &Path) -> Result<String> {
    let path = model_dir.join("model.safetensors");
    let bytes =
        std::fs::read(&path).with_context(|| format!("model '{}': cannot read", path.display()))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// Writes S_A (d, p) and its description into `dir`.
pub fn write(dir: &Path, s_a: &Tensor, n_train: usize, model_dir: &Path) -> Result<()> {
    let meta = SaMeta {
        model_hash: model_hash(model_dir)?,
        n_train,
        params: s_a.size()[1],
        formula: "N_S(x) = 0.5 * <A_x, S_A>, A_x = G_x K_xx^{-1/2}".into(),
    };
    let tmp = simreg::raster::write::temp_path(&dir.join(SA_FILE));
    Tensor::write_safetensors(&[("s_a", &s_a.to_kind(Kind::Double).to(Device::Cpu))], &tmp)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot write '{}': {}",
                tmp.display(),
                simreg::raster::torch_message(e)
            )
        })?;
    std::fs::rename(&tmp, dir.join(SA_FILE))?;
    atomic::write_json(&dir.join(SA_META), &meta)
}

/// Reads S_A from `dir` when present; refuses one computed with other weights.
pub fn read(dir: &Path, model_dir: &Path) -> Result<Option<(Tensor, SaMeta)>> {
    let (f, m) = (dir.join(SA_FILE), dir.join(SA_META));
    if !f.is_file() || !m.is_file() {
        return Ok(None);
    }
    let meta: SaMeta = serde_json::from_str(&std::fs::read_to_string(&m)?)
        .with_context(|| format!("'{}': not valid", m.display()))?;
    if meta.model_hash != model_hash(model_dir)? {
        bail!("S_A in '{}' was computed with other weights than '{}' (retrained since?): rerun `simreg similarity`, or pass --labels to recompute it", dir.display(), model_dir.join("model.safetensors").display());
    }
    let t = Tensor::read_safetensors(&f)
        .map_err(|e| anyhow::anyhow!("'{}': {}", f.display(), simreg::raster::torch_message(e)))?;
    let s_a = t
        .into_iter()
        .find(|(n, _)| n == "s_a")
        .map(|(_, t)| t)
        .with_context(|| format!("'{}': no tensor 's_a'", f.display()))?;
    Ok(Some((s_a, meta)))
}

/// S_A over the tiles the model was trained on (`split.json`), from the labelled run: pass 1
/// of the similarity stage alone (|S| Jacobians).
pub fn compute(
    net: &Net,
    model_dir: &Path,
    labels_dir: &Path,
    tiles_input_hash: &str,
    batch: usize,
    device: Device,
) -> Result<(Tensor, SaMeta)> {
    let run = LabelledRun::open(labels_dir)?;
    if run.target.tiles_input_hash != tiles_input_hash {
        bail!(
            "labels '{}' are not the run model '{}' was trained on (other tiles)",
            labels_dir.display(),
            model_dir.display()
        );
    }
    let split_path = model_dir.join(SPLIT_FILE);
    let split: SplitFile = serde_json::from_str(
        &std::fs::read_to_string(&split_path)
            .with_context(|| format!("model '{}': no {SPLIT_FILE}", model_dir.display()))?,
    )?;
    let index: BTreeMap<&str, usize> =
        run.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let train: Vec<usize> = split
        .train
        .iter()
        .map(|id| {
            index.get(id.as_str()).copied().with_context(|| {
                format!("training tile '{id}' is not in labels '{}'", labels_dir.display())
            })
        })
        .collect::<Result<_>>()?;
    let (t, cr, cm) =
        (run.target.tile_size as i64, run.reference_bands as i64, run.moving_bands as i64);
    let mut acc: Option<NsAccumulator> = None;
    for chunk in train.chunks(batch.max(1)) {
        let s = run.read(chunk)?;
        let b = chunk.len() as i64;
        let (r, m) = (
            Tensor::from_slice(&s.reference).view([b, cr, t, t]).to(device),
            Tensor::from_slice(&s.moving).view([b, cm, t, t]).to(device),
        );
        let (gt, _) = batch_jacobians(net, &r, &m)?;
        let (a, _) = kernel::polar(&gt);
        acc.get_or_insert_with(|| NsAccumulator::new(D, gt.size()[2], gt.device())).add(&a);
    }
    let acc = acc.context("empty training set")?;
    let meta = SaMeta {
        model_hash: model_hash(model_dir)?,
        n_train: train.len(),
        params: acc.s_a.size()[1],
        formula: "N_S(x) = 0.5 * <A_x, S_A>, A_x = G_x K_xx^{-1/2}".into(),
    };
    Ok((acc.s_a, meta))
}
