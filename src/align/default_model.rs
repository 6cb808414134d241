//! The model shipped in the repository (`models/default/`, MODEL.md), which `align --method
//! network` (and `batch`) use when `--model` is absent: found beside the executable (an install), in the source tree it
//! was built from, or where `SIMREG_DEFAULT_MODEL` points.
use crate::artefacts::train::{ModelInfo, TrainDir};
use crate::raster::open::RasterInfo;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// What `simreg info` and the summaries call it.
pub const NAME: &str = "simreg-default-s1s2/1";

/// Its band layout, in words, for errors and warnings.
pub const LAYOUT: &str = "3 reference bands in the order blue, green, red (Sentinel-2 B02, B03, \
                          B04) and 1 SAR band (VV backscatter)";

/// Its train directory (`models/default/train`, beside `models/default/similarity`), if found.
pub fn locate() -> Option<PathBuf> {
    let mut places = Vec::new();
    if let Some(p) = std::env::var_os("SIMREG_DEFAULT_MODEL") {
        places.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/release/simreg → the checkout's models/; an install's share/simreg/models/.
        for up in exe.ancestors().skip(1).take(3) {
            places.push(up.join("models/default/train"));
            places.push(up.join("share/simreg/models/default/train"));
        }
    }
    places.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default/train"));
    places.into_iter().find(|p| TrainDir::new(p).model_json().is_file())
}

/// Its `model.json`.
pub fn info(dir: &Path) -> Result<ModelInfo> {
    TrainDir::new(dir).model_info()
}

/// The model `--method network` runs with when the user named none: the default one, when it
/// is found and the pair's bands fit it; otherwise an error saying which bands to select.
pub fn choose(
    reference: (&RasterInfo, &Option<Vec<usize>>),
    moving: (&RasterInfo, &Option<Vec<usize>>),
) -> Result<PathBuf> {
    let Some(dir) = locate() else {
        bail!("--method network needs --model RUN/train: no default model found (models/default/train beside the executable or in the source tree, or SIMREG_DEFAULT_MODEL)");
    };
    let net = info(&dir)?.net;
    let used = |(r, asked): (&RasterInfo, &Option<Vec<usize>>)| {
        asked.as_ref().map_or(r.bands.len(), Vec::len)
    };
    let (nr, nm) = (used(reference), used(moving));
    if nr == net.reference_bands && nm == net.moving_bands {
        return Ok(dir);
    }
    let (which, path, n, flag) = if nr != net.reference_bands {
        ("reference", &reference.0.path, nr, "--reference-bands")
    } else {
        ("moving", &moving.0.path, nm, "--moving-bands")
    };
    bail!(
        "{which} '{}': {n} band(s) used, the default model takes {LAYOUT}: choose them with {flag} (e.g. --reference-bands 1,2,3 --moving-bands 1 for B02, B03, B04 and VV; --reference-bands 3,2,1 for R, G, B order)",
        path.display()
    )
}
