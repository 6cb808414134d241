//! simreg: multimodal satellite image registration with a learned model, and what that model
//! learned from noisy labels. One module per stage; typed artefacts on disk between stages.
//!
//! Data flows one way: raster ← tiling ← (labels ← train ← similarity ← audit ← report).
pub mod align;
pub mod audit;
pub mod labels;
pub mod learn;
pub mod pipeline;
pub mod raster;
pub mod report;
pub mod synth;
pub mod thumbs;
pub mod tiling;
pub mod util;
