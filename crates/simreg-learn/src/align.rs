//! `simreg align --method network` (and `auto` with `--model`, fused with CFOG there): the
//! trained network as the per-window estimator of
//! `simreg::align::scene` (windows, blending, outputs and the phase-correlation baseline live
//! there). Each window's displacement is f(x), the centre-window mean the network was trained
//! to predict; its reliability is N_S(x) = ½·⟨A_x, S_A⟩ against the training set (paper §2),
//! one Jacobian per window with S_A stored by `simreg similarity` (or computed here from the
//! labelled run when none is stored).
use crate::model::{mean_of, Net};
use crate::similarity::{batch_jacobians, kernel, stored};
use crate::train::predict::load_model;
use anyhow::Result;
use simreg::align::scene::{self, Estimate, ModelShape, WindowModel, Windows};
use simreg::artefacts::align::{AlignRequest, AlignSummary, Method};
use simreg::artefacts::labels::LabelsDir;
use simreg::artefacts::RunDir;
use tch::{nn, Device, Kind, Tensor};

struct NetModel {
    _vs: nn::VarStore,
    net: Net,
    device: Device,
    s_a: Option<Tensor>,
    reliability: String,
}

impl WindowModel for NetModel {
    fn method(&self) -> &'static str {
        "network"
    }
    fn reliability(&self) -> String {
        self.reliability.clone()
    }
    fn estimate(&mut self, w: &Windows) -> Result<Vec<Estimate>> {
        let (n, t) = (w.n as i64, w.t as i64);
        let r = Tensor::from_slice(w.reference).view([n, w.cr as i64, t, t]).to(self.device);
        let m = Tensor::from_slice(w.moving).view([n, w.cm as i64, t, t]).to(self.device);
        let (y, ns) = match &self.s_a {
            Some(s_a) => {
                let (gt, y) = batch_jacobians(&self.net, &r, &m)?;
                let (a, _) = kernel::polar(&gt);
                let ns = (a * s_a.unsqueeze(0)).sum_dim_intlist(
                    [1i64, 2].as_slice(),
                    false,
                    Kind::Double,
                ) / 2.0;
                (y, Some(Vec::<f64>::try_from(ns.to(Device::Cpu))?))
            }
            None => {
                let y = tch::no_grad(|| mean_of(&self.net.forward(&r, &m)))
                    .to(Device::Cpu)
                    .to_kind(Kind::Double)
                    * self.net.config.scale_px;
                (y, None)
            }
        };
        let y: Vec<f64> = Vec::try_from(y.flatten(0, -1))?;
        Ok((0..w.n)
            .map(|k| Estimate {
                dx: y[2 * k],
                dy: y[2 * k + 1],
                reliability: ns.as_ref().map_or(f64::NAN, |v| v[k]),
            })
            .collect())
    }
}

pub fn run(req: &AlignRequest) -> Result<AlignSummary> {
    let device = crate::device::resolve(req.params.device)?;
    let model = req
        .params
        .model
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--method network needs --model RUN/train"))?;
    let dir = scene::model_dir(model);
    let (vs, net, info) = load_model(&dir, device)?;
    // The run the model belongs to (RUN/train): its similarity and labels by default.
    let run = RunDir::of_stage(&dir);
    let mut computed = None;
    let (s_a, reliability) = if req.params.no_reliability {
        (None, "none (--no-reliability): NaN".to_string())
    } else {
        let sim = req.params.similarity.clone().unwrap_or_else(|| run.similarity().path().into());
        match stored::read(&sim, &dir)? {
            Some((s, meta)) => (
                Some(s),
                format!(
                    "N_S against the {} training tiles (S_A from '{}'): 0.5*<A_x, S_A>",
                    meta.n_train,
                    sim.display()
                ),
            ),
            None => {
                let labels =
                    req.params.labels.clone().unwrap_or_else(|| run.labels().path().into());
                if LabelsDir::new(&labels).target_json().is_file() {
                    if !req.quiet {
                        eprintln!("align: no stored S_A in '{}'; computing it from the training tiles of '{}' (run `simreg similarity` to store it)", sim.display(), labels.display());
                    }
                    let (s, meta) = stored::compute(
                        &net,
                        &dir,
                        &labels,
                        &info.tiles_input_hash,
                        req.params.batch,
                        device,
                    )?;
                    computed = Some((s.shallow_clone(), meta.n_train));
                    (Some(s), format!("N_S against the {} training tiles (S_A computed from '{}'): 0.5*<A_x, S_A>", meta.n_train, labels.display()))
                } else {
                    eprintln!("align: warning: no S_A in '{}' and no labelled run at '{}': the reliability band is NaN (pass --similarity or --labels)", sim.display(), labels.display());
                    (
                        None,
                        "none (no S_A stored and no labelled run to compute it): NaN".to_string(),
                    )
                }
            }
        }
    };
    let s_a = s_a.map(|s| s.to_kind(Kind::Double).to(device));
    if let Some(s) = &s_a {
        let p: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        if s.size() != [2, p] {
            anyhow::bail!(
                "S_A has shape {:?}, the model has {p} parameters: it belongs to another model",
                s.size()
            );
        }
    }
    let cfg = &info.net;
    let shape = ModelShape {
        tile: cfg.tile_size,
        stride: cfg.centre_size,
        bands: Some((cfg.reference_bands, cfg.moving_bands)),
    };
    let mut m = NetModel { _vs: vs, net, device, s_a, reliability };
    let summary = if req.params.method == Method::Auto {
        scene::run_auto(req, &shape, Some(&mut m))?
    } else {
        scene::run(req, &shape, &mut m)?
    };
    // Keep a computed S_A beside the outputs: `--similarity OUT` reuses it.
    if let Some((s, n)) = computed {
        stored::write(&req.out, &s, n, &dir)?;
    }
    Ok(summary)
}
