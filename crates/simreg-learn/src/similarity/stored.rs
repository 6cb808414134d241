//! S_A = Σ_{j ∈ S} A_j stored beside the similarity outputs (`s_a.safetensors` + `s_a.json`),
//! so that N_S of a new input against the training set costs one Jacobian (`simreg align`'s
//! reliability band). Tied to the exact weights it was computed with (a hash of the file).
use super::{NsAccumulator, D};
use crate::model::Net;
use crate::train::data::LabelledRun;
use anyhow::{bail, Context, Result};
use simreg::artefacts::similarity::{SaMeta, SimilarityDir};
use simreg::artefacts::train::TrainDir;
use simreg::artefacts::{read_json, write_json};
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub fn model_hash(model_dir: &Path) -> Result<String> {
    let path = TrainDir::new(model_dir).model_safetensors();
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
    let dir = SimilarityDir::new(dir);
    write_tensors(&dir.s_a_safetensors(), &[("s_a", s_a.to_kind(Kind::Double))])?;
    write_json(&dir.s_a_json(), &meta)
}

/// Writes tensors (moved to the CPU) as one safetensors file, atomically.
pub fn write_tensors(path: &Path, tensors: &[(&str, Tensor)]) -> Result<()> {
    let tmp = simreg::util::atomic::temp_path(path);
    let cpu: Vec<(&str, Tensor)> = tensors.iter().map(|(n, t)| (*n, t.to(Device::Cpu))).collect();
    Tensor::write_safetensors(&cpu, &tmp).map_err(|e| {
        anyhow::anyhow!(
            "cannot write '{}': {}",
            tmp.display(),
            simreg::util::text::torch_message(e)
        )
    })?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write '{}'", path.display()))
}

/// The tensors of the safetensors file `path`, by name.
pub fn read_tensors(path: &Path) -> Result<std::collections::BTreeMap<String, Tensor>> {
    let t = Tensor::read_safetensors(path).map_err(|e| {
        anyhow::anyhow!("'{}': {}", path.display(), simreg::util::text::torch_message(e))
    })?;
    Ok(t.into_iter().collect())
}

/// The tensor `name` of the safetensors file `path`.
pub fn read_tensor(path: &Path, name: &str) -> Result<Tensor> {
    read_tensors(path)?
        .remove(name)
        .with_context(|| format!("'{}': no tensor '{name}'", path.display()))
}

/// Reads S_A from `dir` when present; refuses one computed with other weights.
pub fn read(dir: &Path, model_dir: &Path) -> Result<Option<(Tensor, SaMeta)>> {
    let sim = SimilarityDir::new(dir);
    let (f, m) = (sim.s_a_safetensors(), sim.s_a_json());
    if !f.is_file() || !m.is_file() {
        return Ok(None);
    }
    let meta: SaMeta = read_json(&m)?;
    if meta.model_hash != model_hash(model_dir)? {
        bail!("S_A in '{}' was computed with other weights than '{}' (retrained since?): rerun `simreg similarity`, or pass --labels to recompute it", dir.display(), TrainDir::new(model_dir).model_safetensors().display());
    }
    let s_a = read_tensor(&f, "s_a")?;
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
    let train = run.trained_on(model_dir)?;
    let (t, cr, cm) =
        (run.target.tile_size as i64, run.reference_bands as i64, run.moving_bands as i64);
    let mut load = |chunk: &[usize]| -> Result<(Tensor, Tensor)> {
        let s = run.read(chunk)?;
        let b = chunk.len() as i64;
        Ok((
            Tensor::from_slice(&s.reference).view([b, cr, t, t]).to(device),
            Tensor::from_slice(&s.moving).view([b, cm, t, t]).to(device),
        ))
    };
    if train.is_empty() {
        bail!("model '{}': empty training set", model_dir.display());
    }
    let mut acc = NsAccumulator::new(D, super::param_count(net, device), device);
    super::pass1(net, &train, batch, &mut acc, &mut load, &mut |_, _, _| {})?;
    let meta = SaMeta {
        model_hash: model_hash(model_dir)?,
        n_train: train.len(),
        params: acc.s_a.size()[1],
        formula: "N_S(x) = 0.5 * <A_x, S_A>, A_x = G_x K_xx^{-1/2}".into(),
    };
    Ok((acc.s_a, meta))
}
