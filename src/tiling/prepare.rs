//! Bringing every modality of a scene onto the reference grid: open and check each input,
//! warp the ones on another grid, rasterise vector maps, and list the bands a tile will hold.
use crate::artefacts::tiles::{ModalityInput, SourceEntry, TileDtype, TileParams};
use crate::raster::kind::{resolve_kind, ModalityKind, Role};
use crate::raster::warp::{check_placeable, same_crs, warp_onto_grid, WarpOptions, WarpOutput};
use crate::raster::write::{write_geotiff, BandData, Compression, GeoTiffOptions, SampleType};
use crate::raster::{open_raster, rasterize::rasterize_vector, Grid};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// A band as the tiler reads it: from the original file when it is on the reference grid
/// (up to a whole-pixel offset), otherwise through a warping VRT (or from a rasterised work
/// file) on that grid.
#[derive(Clone, Debug)]
pub struct BandSource {
    pub read_from: PathBuf,
    pub read_band: usize,
    /// The sample type of `read_from`'s band as GDAL names it.
    pub read_dtype: String,
    /// The band of `read_from` that is 0 where `read_band` has no data (a warping VRT's alpha).
    pub mask_band: Option<usize>,
    /// The reference grid's pixel (c, r) is `read_from`'s (c + dx, r + dy).
    pub offset: [i64; 2],
    /// Nodata of `read_from` (none in warping VRTs, NaN in work files).
    pub nodata: Option<f64>,
    /// Nodata declared by the source file itself.
    pub source_nodata: Option<f64>,
    /// The source band's sample type as GDAL names it ("Byte", "Float32", ...).
    pub dtype: String,
    pub description: String,
    pub source: PathBuf,
    pub source_band: usize,
}

#[derive(Clone, Debug)]
pub struct PreparedModality {
    pub role: Role,
    pub kind: ModalityKind,
    pub bands: Vec<BandSource>,
    pub sources: Vec<SourceEntry>,
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

pub(super) fn is_vector_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("geojson" | "json" | "gpkg" | "shp" | "kml" | "gml" | "fgb")
    )
}

/// Reads the reference grid (the first reference file's) and checks it can be tiled.
pub fn reference_grid(input: &ModalityInput) -> Result<Grid> {
    let Some(first) = input.files.first() else { bail!("no reference raster given") };
    let info = open_raster(first, Role::Reference.name())?;
    crate::raster::warp::check_reference_crs(&info.grid, first)?;
    if !info.grid.is_north_up() {
        bail!("reference '{}': rotated or south-up geotransform {:?}; only north-up grids can be tiled", first.display(), info.grid.geotransform);
    }
    Ok(info.grid)
}

/// The sample type of tiles holding `bands`: their common type when tiles can keep it and
/// `--dtype source` (the default), Float32 otherwise.
pub fn tile_sample_type<'a>(
    dtype: TileDtype,
    mut bands: impl Iterator<Item = &'a str>,
) -> SampleType {
    let Some(first) = bands.next() else { return SampleType::Float32 };
    match (dtype, SampleType::from_gdal_name(first)) {
        (TileDtype::Source, Some(t)) if bands.all(|b| b == first) => t,
        _ => SampleType::Float32,
    }
}

/// Opens, checks and (where needed) warps the files of one modality onto `grid`.
pub fn prepare_modality(
    role: Role,
    input: &ModalityInput,
    grid: &Grid,
    work: &Path,
    params: &TileParams,
) -> Result<PreparedModality> {
    if input.files.is_empty() {
        bail!("no {} file given", role.name());
    }
    let mut bands = Vec::new();
    let mut sources = Vec::new();
    let mut kind = input.kind;
    for (i, file) in input.files.iter().enumerate() {
        let shown = file.display();
        if role == Role::Map && is_vector_file(file) {
            let map = rasterize_vector(file, role.name(), grid)?;
            let dst = work.join(format!("{}_{i}_rasterised.tif", role.name()));
            let b = vec![
                BandData { description: "fill".into(), pixels: map.fill },
                BandData { description: "edge".into(), pixels: map.edge },
            ];
            write_geotiff(
                &dst,
                &grid.crs_wkt,
                grid.geotransform,
                grid.width,
                grid.height,
                b,
                &[],
                GeoTiffOptions::compressed(Compression::Deflate),
            )?;
            for (k, name) in ["fill", "edge"].iter().enumerate() {
                bands.push(BandSource {
                    read_from: dst.clone(),
                    read_band: k + 1,
                    read_dtype: "Float32".into(),
                    mask_band: None,
                    offset: [0, 0],
                    nodata: None,
                    source_nodata: None,
                    dtype: "Float32".into(),
                    description: format!("{}:{}:{name}", role.name(), stem(file)),
                    source: file.clone(),
                    source_band: k + 1,
                });
            }
            sources.push(SourceEntry {
                path: file.clone(),
                driver: "vector".into(),
                resampling: None,
                rasterised: true,
                coverage: 1.0,
                in_place_misfit_px: None,
            });
            kind = Some(ModalityKind::Map);
            continue;
        }
        let info = open_raster(file, role.name())?;
        let coverage = check_placeable(&info.grid, grid, role.name(), file)?;
        let k = match kind {
            Some(k) => k,
            None => {
                let k = resolve_kind(role, file, &info)?;
                kind = Some(k);
                k
            }
        };
        // The reference grid's pixel (c, r) is the file's (c + dx, r + dy), to within `misfit`.
        let in_place = if same_crs(&info.grid.crs_wkt, &grid.crs_wkt) {
            grid.whole_pixel_offset(&info.grid, params.in_place_tolerance_px)
        } else {
            None
        };
        // Warped samples keep the file's type when tiles may keep it (its bands share one).
        let warp_type = match info.bands.first().map(|b| b.dtype.as_str()) {
            Some(t)
                if params.dtype == TileDtype::Source && info.bands.iter().all(|b| b.dtype == t) =>
            {
                SampleType::from_gdal_name(t).unwrap_or(SampleType::Float32)
            }
            _ => SampleType::Float32,
        };
        let (read_from, offset, resampling) = match in_place {
            Some((dx, dy, _)) => (file.clone(), [dx, dy], None),
            None => {
                // A VRT that warps as the tiler reads: no warped copy of the grid on disk.
                let dst = work.join(format!("{}_{i}_warped.vrt", role.name()));
                if !dst.exists() {
                    tracing::info!(
                        "warping {} '{shown}' onto the reference grid ({:?})",
                        role.name(),
                        k.resampling()
                    );
                    let opts = WarpOptions {
                        exact: params.exact_warp,
                        output: WarpOutput::MaskedVrt(warp_type),
                    };
                    warp_onto_grid(file, role.name(), grid, k.resampling(), &dst, opts)?;
                }
                (dst, [0, 0], Some(k.resampling()))
            }
        };
        for b in &info.bands {
            let desc = if b.description.is_empty() {
                format!("b{}", b.index)
            } else {
                format!("b{}={}", b.index, b.description)
            };
            bands.push(BandSource {
                read_from: read_from.clone(),
                read_band: b.index,
                read_dtype: if in_place.is_some() {
                    b.dtype.clone()
                } else {
                    warp_type.gdal_name().into()
                },
                mask_band: in_place.is_none().then_some(info.bands.len() + 1),
                offset,
                nodata: if in_place.is_some() { b.nodata } else { None },
                source_nodata: b.nodata,
                dtype: b.dtype.clone(),
                description: format!("{}:{}:{desc}", role.name(), stem(file)),
                source: file.clone(),
                source_band: b.index,
            });
        }
        sources.push(SourceEntry {
            path: file.clone(),
            driver: info.driver.clone(),
            resampling,
            rasterised: false,
            coverage,
            in_place_misfit_px: in_place.map(|(_, _, misfit)| misfit),
        });
    }
    if let Some(sel) = &input.bands {
        let n = bands.len();
        if sel.is_empty() {
            bail!("{} band selection is empty", role.name());
        }
        let mut picked = Vec::with_capacity(sel.len());
        for &b in sel {
            if b == 0 || b > n {
                bail!(
                    "{} '{}': band {b} out of range (the {} has {n} band{} in all)",
                    role.name(),
                    input.files[0].display(),
                    role.name(),
                    if n == 1 { "" } else { "s" }
                );
            }
            picked.push(bands[b - 1].clone());
        }
        bands = picked;
    }
    Ok(PreparedModality { role, kind: kind.expect("set by the first file"), bands, sources })
}
