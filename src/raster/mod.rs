//! GDAL I/O: grids, opening and validating rasters, warping onto a grid, rasterising vectors,
//! writing GeoTIFFs atomically.
pub mod bands;
pub mod bounds;
pub mod geo;
pub mod grid;
pub mod kind;
pub mod open;
pub mod rasterize;
pub mod resample;
pub mod stats;
pub mod warp;
pub mod write;

pub use grid::{Grid, Window};
pub use open::{open_raster, RasterInfo};

use std::sync::Once;

/// Routes GDAL's own error printing into `tracing`, so a failure reaches the user once, as our
/// one-line error (GDAL's message is carried in the `gdal::errors::GdalError`).
pub fn init_gdal() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gdal::config::set_error_handler(|class, code, msg| {
            tracing::debug!(target: "gdal", "{class:?} {code}: {msg}");
        });
        // No .aux.xml side files next to inputs: inputs are never modified.
        let _ = gdal::config::set_config_option("GDAL_PAM_ENABLED", "NO");
    });
}
