//! The `train` stage: the displacement-regression network trained on the **noisy** labels.
//! Validation each epoch against the labels and, for reporting only, against the truth.
pub mod augment;
pub mod data;
pub mod predict;

use crate::model::{mean_of, param_count, Net};
use anyhow::{bail, Context, Result};
use augment::Symmetry;
use data::Dataset;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use simreg::artefacts::labels::LabelsDir;
use simreg::artefacts::train::{
    LogLine, ModelInfo, NetConfig, SplitFile, TrainDir, TrainParams, TrainSummary,
};
use simreg::artefacts::write_json;
use simreg::util::{atomic, output};
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// Names the network's code: bumped whenever `model::Net` changes shape for the same config.
pub const ARCH: &str = "correlation-pyramid/2";

#[derive(Serialize, Deserialize)]
struct ResumeState {
    epoch: usize,
    step: usize,
    best_epoch: usize,
    best_val: f64,
    bad_epochs: usize,
    train_seconds: f64,
    trained_samples: usize,
    key: String,
}

#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub quiet: bool,
}

pub(crate) struct Split {
    pub(crate) train: Vec<usize>,
    pub(crate) val: Vec<usize>,
}

pub(crate) fn split(n: usize, val_fraction: f64, seed: u64) -> Split {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5911_7000);
    idx.shuffle(&mut rng);
    let n_val =
        if n >= 2 { ((n as f64 * val_fraction).round() as usize).clamp(1, n - 1) } else { 0 };
    let mut val = idx[..n_val].to_vec();
    let mut train = idx[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Split { train, val }
}

/// Tensors of the whole data set on the device.
pub(crate) struct Tensors {
    pub(crate) reference: Tensor,
    pub(crate) moving: Tensor,
    pub(crate) field: Tensor,
    pub(crate) label: Tensor,
}

pub(crate) fn tensors(d: &Dataset, scale: f64, device: Device) -> Tensors {
    let (n, t, c) = (d.len() as i64, d.target.tile_size as i64, d.target.centre_size as i64);
    let label: Vec<f32> = d.label.iter().flat_map(|l| [l[0], l[1]]).collect();
    Tensors {
        reference: Tensor::from_slice(&d.reference)
            .view([n, d.reference_bands as i64, t, t])
            .to(device),
        moving: Tensor::from_slice(&d.moving).view([n, d.moving_bands as i64, t, t]).to(device),
        field: (Tensor::from_slice(&d.label_field).view([n, 2, c, c]) / scale).to(device),
        label: (Tensor::from_slice(&label).view([n, 2]) / scale).to(device),
    }
}

/// The training loss, in output units: L2 of the dense prediction against the dense (noisy)
/// label field plus L2 of its centre-window mean against the (noisy) label.
pub fn loss(dense: &Tensor, field: &Tensor, label: &Tensor) -> Tensor {
    (dense - field).square().mean(Kind::Float) + (mean_of(dense) - label).square().mean(Kind::Float)
}

/// The output unit: the RMS of the training labels (data-derived; at least 0.5 px).
pub(crate) fn label_scale(d: &Dataset, train: &[usize]) -> f64 {
    let ms: f64 = train
        .iter()
        .map(|&i| (d.label[i][0] as f64).powi(2) + (d.label[i][1] as f64).powi(2))
        .sum::<f64>()
        / (2 * train.len()) as f64;
    ms.sqrt().max(0.5)
}

/// Predictions (px) for the samples `idx`, in batches, without gradients.
pub fn predict(
    net: &Net,
    reference: &Tensor,
    moving: &Tensor,
    idx: &[usize],
    batch: usize,
) -> Vec<[f64; 2]> {
    let mut out = Vec::with_capacity(idx.len());
    tch::no_grad(|| {
        for chunk in idx.chunks(batch.max(1)) {
            let i = Tensor::from_slice(&chunk.iter().map(|&v| v as i64).collect::<Vec<_>>())
                .to(reference.device());
            let m =
                mean_of(&net.forward(&reference.index_select(0, &i), &moving.index_select(0, &i)))
                    .to(Device::Cpu)
                    .to_kind(Kind::Double);
            for k in 0..chunk.len() as i64 {
                out.push([
                    m.double_value(&[k, 0]) * net.config.scale_px,
                    m.double_value(&[k, 1]) * net.config.scale_px,
                ]);
            }
        }
    });
    out
}

/// Per-axis RMSE pooled over both axes.
pub fn rmse(pred: &[[f64; 2]], target: &[[f64; 2]]) -> f64 {
    simreg::artefacts::predict::rmse(pred, target)
}

/// σ of the label noise, as the labels' summary records it (None for labels made before
/// simreg recorded it, with a warning naming the file to make again).
fn label_sigma(labels: &LabelsDir) -> Option<f64> {
    match labels.summary() {
        Ok(s) if s.params.is_some() => s.params.map(|p| p.noise.sigma),
        _ => {
            tracing::warn!(
                "labels summary '{}' does not record the label noise: σ is unknown in the \
                 training summary (make the labels again with `simreg labels` to record it)",
                labels.summary_json().display()
            );
            None
        }
    }
}

pub fn run(
    labels_dir: &Path,
    out: &Path,
    p: &TrainParams,
    opts: &TrainOptions,
) -> Result<TrainSummary> {
    let start = Instant::now();
    p.check()?;
    // Claimed before the work: a foreign folder or a second writer is refused at once. The
    // network is trained in `<out>.partial` and swapped onto `out` when complete: a killed
    // re-train never mixes new weights with the old run's summary.
    let claim = output::claim(out, "train", &[labels_dir])?;
    let partial = atomic::partial_dir(out);
    let dir = TrainDir::new(&partial);
    let device = crate::device::resolve(p.device)?;
    let data = data::load(labels_dir)?;
    let truth = data::load_truth(labels_dir)?;
    let sp = split(data.len(), p.val_fraction, p.seed);
    if sp.train.is_empty() {
        bail!(
            "labels '{}': empty training set after holding out validation tiles",
            labels_dir.display()
        );
    }
    let scale = label_scale(&data, &sp.train);
    // Fine-tuning: the starting model's network and output scale, its weights hashed into the
    // resume key.
    let init = match &p.init {
        Some(dir) => Some(init_model(dir, &data, labels_dir)?),
        None => None,
    };
    let config = NetConfig {
        reference_bands: data.reference_bands,
        moving_bands: data.moving_bands,
        tile_size: data.target.tile_size,
        centre_offset: data.target.centre_offset,
        centre_size: data.target.centre_size,
        width: p.width,
        depth: p.depth,
        scale_px: scale,
        corr_radius: p.corr_radius,
    };
    // The labels' centre window defines f(x) for this training; the rest is the init's.
    let config = match &init {
        Some((c, _, _)) => NetConfig {
            centre_offset: config.centre_offset,
            centre_size: config.centre_size,
            ..c.clone()
        },
        None => config,
    };
    config.check()?;
    let scale = config.scale_px;
    let info = ModelInfo {
        arch: ARCH.into(),
        net: config.clone(),
        tiles_input_hash: data.target.tiles_input_hash.clone(),
        moving_bands: data.target.moving_bands.clone(),
    };
    let init_hash = init.as_ref().map(|(_, _, h)| h.clone());
    let key = match &init_hash {
        None => simreg::util::fingerprint::hash_json(&(&info, p, &data.ids)),
        Some(h) => simreg::util::fingerprint::hash_json(&(&info, p, &data.ids, h)),
    };
    prepare_partial(&partial, out, &key)?;

    tch::manual_seed(p.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), config.clone());
    if let Some((_, weights, _)) = &init {
        vs.load(weights).map_err(|e| {
            anyhow::anyhow!(
                "--init '{}': weights do not fit: {}",
                weights.display(),
                simreg::util::text::torch_message(e)
            )
        })?;
    }
    let n_params = param_count(&vs);
    let mut opt = nn::Adam { wd: p.weight_decay, ..Default::default() }.build(&vs, p.lr)?;
    let tens = tensors(&data, scale, device);

    // Resume from the last checkpoint of the same training: the key covers the data, the
    // parameters and the network (ModelInfo), so a checkpoint of another architecture never
    // matches it.
    let ckpt = dir.checkpoint_safetensors();
    let state_path = dir.state_json();
    let mut st = ResumeState {
        epoch: 0,
        step: 0,
        best_epoch: 0,
        best_val: f64::INFINITY,
        bad_epochs: 0,
        train_seconds: 0.0,
        trained_samples: 0,
        key: key.clone(),
    };
    if let Some(s) = same_training(&partial, &key) {
        vs.load(&ckpt).map_err(|e| {
            anyhow::anyhow!(
                "checkpoint '{}': cannot load: {}",
                ckpt.display(),
                simreg::util::text::torch_message(e)
            )
        })?;
        st = s;
        tracing::info!("resuming training after epoch {}", st.epoch);
    }
    if st.epoch == 0 {
        let _ = std::fs::remove_file(dir.log_jsonl());
    }
    write_json(&dir.model_json(), &info)?;
    // Which tiles the network learned from: the similarity stage's set S.
    let ids_of = |v: &[usize]| v.iter().map(|&i| data.ids[i].clone()).collect::<Vec<_>>();
    write_json(&dir.split_json(), &SplitFile { train: ids_of(&sp.train), val: ids_of(&sp.val) })?;
    let val_labels: Vec<[f64; 2]> =
        sp.val.iter().map(|&i| [data.label[i][0] as f64, data.label[i][1] as f64]).collect();
    let val_truth: Option<Vec<[f64; 2]>> = truth.as_ref().map(|t| {
        sp.val.iter().map(|&i| t.get(&data.ids[i]).copied().unwrap_or([f64::NAN; 2])).collect()
    });

    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(dir.log_jsonl())?;
    let idx_tensor = |v: &[usize]| {
        Tensor::from_slice(&v.iter().map(|&i| i as i64).collect::<Vec<_>>()).to(device)
    };
    let params = vs.trainable_variables();
    let mut epoch = st.epoch;
    while epoch < p.epochs && st.bad_epochs < p.patience {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        rng.set_stream(epoch as u64 + 1);
        let lr = p.lr
            * (0.05
                + 0.95
                    * 0.5
                    * (1.0 + (std::f64::consts::PI * epoch as f64 / p.epochs as f64).cos()));
        opt.set_lr(lr);
        let mut order = sp.train.clone();
        order.shuffle(&mut rng);
        let t0 = Instant::now();
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(p.batch) {
            let i = idx_tensor(chunk);
            let sym = if p.augment {
                Symmetry::from_index(rng.gen_range(0..8))
            } else {
                Symmetry::IDENTITY
            };
            let r = sym.image(&tens.reference.index_select(0, &i));
            let m = sym.image(&tens.moving.index_select(0, &i));
            let f = sym.field(&tens.field.index_select(0, &i));
            let l = sym.vectors(&tens.label.index_select(0, &i));
            let dense = net.forward(&r, &m);
            let plain = loss(&dense, &f, &l);
            let loss = match p.enforce_similarity.filter(|l| *l > 0.0) {
                // Similarity enforcement on pairs made from the batch's first two samples.
                Some(lambda) => {
                    let k = (chunk.len() as i64).min(2);
                    let [a, b] = crate::enforce::make_pairs(
                        p.pairs.unwrap_or(crate::enforce::PairKind::Noise),
                        &r.narrow(0, 0, k),
                        &m.narrow(0, 0, k),
                    );
                    let sign = p.enforce_sign.unwrap_or(crate::enforce::Sign::Minus);
                    plain + crate::enforce::similarity_term(&net, &params, &a, &b, lambda, sign)
                }
                None => plain,
            };
            let v = loss.double_value(&[]);
            if !v.is_finite() {
                bail!("training diverged at epoch {} step {} (loss {v}); the last good checkpoint is kept in '{}'", epoch + 1, st.step, partial.display());
            }
            opt.backward_step(&loss);
            loss_sum += v;
            batches += 1;
            st.step += 1;
        }
        st.train_seconds += t0.elapsed().as_secs_f64();
        st.trained_samples += order.len();
        let pred = predict(&net, &tens.reference, &tens.moving, &sp.val, 64);
        let val_labels_rmse =
            if sp.val.is_empty() { loss_sum / batches as f64 } else { rmse(&pred, &val_labels) };
        let val_truth_rmse =
            val_truth.as_ref().filter(|_| !sp.val.is_empty()).map(|t| rmse(&pred, t));
        epoch += 1;
        st.epoch = epoch;
        if val_labels_rmse < st.best_val {
            st.best_val = val_labels_rmse;
            st.best_epoch = epoch;
            st.bad_epochs = 0;
            save(&vs, &dir.model_safetensors())?;
        } else {
            st.bad_epochs += 1;
        }
        save(&vs, &ckpt)?;
        atomic::write_json(&state_path, &st)?;
        let line = LogLine {
            epoch,
            step: st.step,
            lr,
            train_loss: loss_sum / batches as f64 * scale * scale,
            val_rmse_labels_px: val_labels_rmse,
            val_rmse_truth_px: val_truth_rmse,
            seconds: start.elapsed().as_secs_f64(),
        };
        writeln!(log, "{}", serde_json::to_string(&line)?)?;
        if !opts.quiet {
            eprintln!(
                "epoch {epoch:3}/{}  loss {:.4}  val rmse vs labels {:.3} px{}",
                p.epochs,
                line.train_loss,
                val_labels_rmse,
                val_truth_rmse.map_or(String::new(), |v| format!("  vs truth {v:.3} px"))
            );
        }
    }

    // Report with the best weights.
    vs.load(dir.model_safetensors())?;
    let pred = predict(&net, &tens.reference, &tens.moving, &sp.val, 64);
    let summary = TrainSummary {
        out: out.to_path_buf(),
        sigma_px: label_sigma(&LabelsDir::new(labels_dir)),
        n_train: sp.train.len(),
        n_val: sp.val.len(),
        params: n_params,
        epochs_run: st.epoch,
        best_epoch: st.best_epoch,
        label_rmse_truth_px: val_truth.as_ref().map(|t| rmse(&val_labels, t)),
        net_rmse_truth_px: val_truth.as_ref().map(|t| rmse(&pred, t)),
        net_rmse_labels_px: rmse(&pred, &val_labels),
        samples_per_s: st.trained_samples as f64 / st.train_seconds.max(1e-9),
        device: format!("{device:?}").to_lowercase(),
        seconds: start.elapsed().as_secs_f64(),
    };
    write_json(&dir.summary_json(), &summary)?;
    claim.mark(&partial)?;
    atomic::swap_into_place(&partial, out)?;
    Ok(summary)
}

/// The resume state in `dir` if it belongs to the training `key` and its checkpoint is there.
fn same_training(dir: &Path, key: &str) -> Option<ResumeState> {
    let d = TrainDir::new(dir);
    let text = std::fs::read_to_string(d.state_json()).ok()?;
    let s: ResumeState = serde_json::from_str(&text).ok()?;
    (s.key == key && d.checkpoint_safetensors().is_file()).then_some(s)
}

/// Makes `partial` the place to train in: kept when it holds this same training (a killed or
/// interrupted run resumes), else a copy of the finished output `out` when that is this same
/// training (a rerun: nothing to train, the summary is written anew), else empty.
fn prepare_partial(partial: &Path, out: &Path, key: &str) -> Result<()> {
    if partial.exists() && same_training(partial, key).is_some() {
        output::remove_temp_files(partial);
        return Ok(());
    }
    if partial.exists() {
        std::fs::remove_dir_all(partial)
            .with_context(|| format!("cannot clear '{}'", partial.display()))?;
    }
    atomic::create_dir(partial)?;
    if same_training(out, key).is_some() {
        for e in std::fs::read_dir(out)
            .with_context(|| format!("train '{}': cannot list", out.display()))?
        {
            let e = e?;
            let name = e.file_name();
            let skip = name == output::MARKER
                || name == "summary.json"
                || output::is_temp_name(&name.to_string_lossy());
            if e.file_type()?.is_file() && !skip {
                std::fs::copy(e.path(), partial.join(&name)).with_context(|| {
                    format!("cannot copy '{}' to resume from it", e.path().display())
                })?;
            }
        }
    }
    Ok(())
}

fn save(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let tmp = simreg::util::atomic::temp_path(path).with_extension("tmp.safetensors");
    vs.save(&tmp).with_context(|| format!("cannot write '{}'", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// What `simreg-learn bench-train` measures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResult {
    pub samples_per_s: f64,
    pub batch: i64,
    pub steps: usize,
    pub threads: i32,
    pub params: i64,
}

/// Training steps (forward, the training loss, backward, Adam) on random inputs of the
/// network's shape, on CPU: the throughput compared with PyTorch eager in
/// scripts/bench_train.sh (which builds the same network and loss in Python).
pub fn bench_steps(
    cfg: &NetConfig,
    batch: i64,
    warmup: usize,
    steps: usize,
) -> Result<BenchResult> {
    cfg.check()?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), cfg.clone());
    let mut opt = nn::Adam { wd: 1e-4, ..Default::default() }.build(&vs, 1e-3)?;
    let t = cfg.tile_size as i64;
    let c = cfg.centre_size as i64;
    let opts = (Kind::Float, Device::Cpu);
    let r = Tensor::randn([batch, cfg.reference_bands as i64, t, t], opts);
    let m = Tensor::randn([batch, cfg.moving_bands as i64, t, t], opts);
    let f = Tensor::randn([batch, 2, c, c], opts);
    let l = Tensor::randn([batch, 2], opts);
    let step = |opt: &mut nn::Optimizer| {
        let dense = net.forward(&r, &m);
        let loss = loss(&dense, &f, &l);
        opt.backward_step(&loss);
    };
    for _ in 0..warmup {
        step(&mut opt);
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        step(&mut opt);
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(BenchResult {
        samples_per_s: (batch as f64 * steps as f64) / secs,
        batch,
        steps,
        threads: tch::get_num_threads(),
        params: param_count(&vs),
    })
}

/// The model `--init` names: its network (checked against the labels' layout), its weights
/// file and their hash.
fn init_model(
    dir: &Path,
    data: &Dataset,
    labels_dir: &Path,
) -> Result<(NetConfig, std::path::PathBuf, String)> {
    let dir = simreg::align::scene::model_dir(dir);
    let files = TrainDir::new(&dir);
    if !files.model_json().is_file() {
        bail!("--init '{}': no model.json (a `simreg train` output directory?)", dir.display());
    }
    let info = files.model_info()?;
    if info.arch != ARCH {
        bail!(
            "--init '{}': made for network '{}', this simreg builds '{}'",
            dir.display(),
            info.arch,
            ARCH
        );
    }
    let c = &info.net;
    let want = (data.reference_bands, data.moving_bands, data.target.tile_size);
    if (c.reference_bands, c.moving_bands, c.tile_size) != want {
        bail!(
            "--init '{}': takes {} reference and {} moving band(s) on {}-px tiles; the labels '{}' have {}, {} on {} px (choose the tiles' bands to match)",
            dir.display(), c.reference_bands, c.moving_bands, c.tile_size,
            labels_dir.display(), want.0, want.1, want.2
        );
    }
    let weights = files.model_safetensors();
    let bytes = std::fs::read(&weights)
        .with_context(|| format!("--init '{}': cannot read", weights.display()))?;
    Ok((info.net.clone(), weights, blake3::hash(&bytes).to_hex().to_string()))
}
