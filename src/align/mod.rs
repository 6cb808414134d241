//! Alignment of reference/moving pairs: whole-scene alignment window by window with any
//! per-window estimator (`scene`: the network in simreg-learn, phase correlation and CFOG in
//! `estimators`; `auto` fuses them coarse to fine, `estimate`; quality checks in `quality`),
//! re-applying a saved displacement raster (`scene::apply`), and batches of pairs from a
//! folder or zip archive (`batch`). Parameters, requests and summaries are in
//! `artefacts::align`.
pub mod batch;
pub mod batch_shard;
pub mod coarse;
pub mod default_model;
pub mod estimate;
pub mod estimators;
pub mod io;
pub mod quality;
pub mod scene;

use crate::artefacts::align::{AlignRequest, AlignSummary, Method};
use crate::learn::{self, Call};
use anyhow::{bail, Result};

/// Aligns one pair with the requested method: phase correlation here, the network in
/// simreg-learn (with `threads` threads).
pub fn run(req: AlignRequest, threads: Option<usize>) -> Result<AlignSummary> {
    run_with(req, threads, false)
}

/// As [`run`]; with `capture_errors`, the network's error comes back as this call's error
/// instead of being printed (`simreg batch` records it per pair).
pub fn run_with(
    mut req: AlignRequest,
    threads: Option<usize>,
    capture_errors: bool,
) -> Result<AlignSummary> {
    // The shipped model stands in for --model with `network` only: `auto` without --model is
    // CFOG alone, which on the real pairs the model never saw is the more accurate (fused:
    // 0.20 against 0.09 px median shift-difference error; as a fallback where CFOG finds no
    // reliable match it answered 4.8 px off and called it a success; BENCHMARKS.md).
    if req.params.model.is_none() && req.params.method == Method::Network {
        req.params.model = default_for(&req)?;
    }
    match req.params.method {
        Method::PhaseCorrelation => scene::run_phase_correlation(&req),
        Method::Cfog => scene::run_cfog(&req),
        Method::Auto if req.params.model.is_none() => scene::run_auto_classical(&req),
        Method::Auto | Method::Network => {
            if req.params.model.is_none() {
                bail!("--method network needs --model RUN/train (or --method phase-correlation)");
            }
            let how = Call { quiet: req.quiet, threads, capture_errors };
            learn::call(req, &how)
        }
    }
}

/// The shipped model for `--method network` without `--model` (`default_model::choose`).
fn default_for(req: &AlignRequest) -> Result<Option<std::path::PathBuf>> {
    let p = &req.params;
    crate::raster::init_gdal();
    let open = crate::raster::open::open_raster;
    let (ri, mi) = (open(&req.reference, "reference")?, open(&req.moving, "moving")?);
    default_model::choose((&ri, &p.reference_bands), (&mi, &p.moving_bands)).map(Some)
}
