//! Alignment of reference/moving pairs: whole-scene alignment window by window with any
//! per-window estimator (`scene`: the network in simreg-learn, phase correlation and CFOG in
//! `estimators`; `auto` fuses them coarse to fine, `estimate`; quality checks in `quality`),
//! re-applying a saved displacement raster (`scene::apply`), and batches of pairs from a
//! folder or zip archive (`batch`). Parameters, requests and summaries are in
//! `artefacts::align`.
pub mod batch;
pub mod batch_shard;
pub mod coarse;
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
    match req.params.method {
        Method::PhaseCorrelation => scene::run_phase_correlation(&req),
        Method::Cfog => scene::run_cfog(&req),
        Method::Auto if req.params.model.is_none() => scene::run_auto_classical(&req),
        Method::Auto | Method::Network => {
            if req.params.model.is_none() {
                bail!("--method network needs --model RUN/train (or --method phase-correlation)");
            }
            let how = Call { quiet: req.quiet, threads, capture_errors: false };
            learn::call(req, &how)
        }
    }
}
