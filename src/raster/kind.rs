//! What a raster's pixels are (optical, SAR in dB or linear, elevation, map) and which role it
//! plays in a pair (reference, moving, map): decides resampling, normalisation statistics and
//! how SAR is interpolated.
use super::stats::StatScale;
use super::warp::Resampling;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a modality's pixels are; decides resampling and the scale of its statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModalityKind {
    /// Reflectance or digital numbers.
    Optical,
    /// SAR backscatter already in dB.
    SarDb,
    /// SAR intensity/amplitude on a linear scale (statistics in dB).
    SarLinear,
    /// Elevation.
    Dem,
    /// Classes or masks (nearest-neighbour resampling), or a rasterised vector map.
    Map,
}

impl ModalityKind {
    pub fn resampling(self) -> Resampling {
        if self == ModalityKind::Map {
            Resampling::Nearest
        } else {
            Resampling::Bilinear
        }
    }
    pub fn stat_scale(self) -> StatScale {
        if self == ModalityKind::SarLinear {
            StatScale::Db
        } else {
            StatScale::Linear
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reference,
    Moving,
    Map,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reference => "reference",
            Role::Moving => "moving",
            Role::Map => "map",
        }
    }
}

/// The kind of a modality whose kind was not given: a map is a map; the reference is optical;
/// a moving raster is optical when it holds integers, SAR in dB when its floats go negative,
/// linear SAR otherwise. Elevation must be asked for (`dem`).
pub fn resolve_kind(
    role: Role,
    file: &Path,
    info: &crate::raster::RasterInfo,
) -> Result<ModalityKind> {
    Ok(match role {
        Role::Map => ModalityKind::Map,
        Role::Reference => ModalityKind::Optical,
        Role::Moving => {
            if info.bands.iter().all(|b| b.is_integer) {
                ModalityKind::Optical
            } else {
                let ds = crate::raster::open::open_dataset(file, role.name())?;
                let band = ds.rasterband(1)?;
                let mm = band.compute_raster_min_max(true).map_err(|e| {
                    let msg = crate::util::text::one_line(e);
                    if msg.contains("no valid pixels") {
                        anyhow::anyhow!("moving '{}': all pixels are nodata", file.display())
                    } else {
                        anyhow::anyhow!("moving '{}': cannot read: {msg}", file.display())
                    }
                })?;
                if mm.min < 0.0 {
                    ModalityKind::SarDb
                } else {
                    ModalityKind::SarLinear
                }
            }
        }
    })
}
