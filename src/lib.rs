//! simreg: multimodal satellite image registration with a learned model, and what that model
//! learned from noisy labels. One module per stage; typed artefacts on disk between stages.
//!
//! Layers, each importing only those below it:
//! - `util` (atomic files, fingerprints, tables, text, thumbnails) and `raster` (GDAL I/O,
//!   grids, band reading, warping, resampling, geodesy, statistics);
//! - `matching` (phase correlation, CFOG), shared by the stages that match images;
//! - `artefacts`: the contract between stages (parameters, summaries, tables, the run
//!   directory), and `learn`, the call into `simreg-learn` (the network stages);
//! - the stages: `synth`, `tiling`, `labels`, `audit`, `report`, `align`; a stage reads another
//!   stage's outputs only through `artefacts`;
//! - `pipeline`, which runs the stages of a pipeline file in order.
pub mod adapt;
pub mod align;
pub mod artefacts;
pub mod audit;
pub mod labels;
pub mod learn;
pub mod matching;
pub mod pipeline;
pub mod raster;
pub mod report;
pub mod synth;
pub mod tiling;
pub mod util;
