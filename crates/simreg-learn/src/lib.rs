//! simreg's network stages, linked with libtorch: the displacement-regression network, its
//! training and prediction. Reads the artefacts of the GDAL-side stages (`simreg` crate).
pub mod align;
pub mod device;
pub mod enforce;
pub mod model;
pub mod similarity;
pub mod toy1d;
pub mod train;
