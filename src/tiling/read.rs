//! Reading windows of bands on the reference grid (tiles, strips, and areas around tiles).
use super::manifest::{Role, SceneEntry};
use super::plan::Window;
use crate::raster::{one_line, Grid};
use anyhow::{bail, Result};
use gdal::Dataset;
use std::path::{Path, PathBuf};

/// Datasets opened so far by one worker, one per file.
#[derive(Default)]
pub struct OpenFiles(Vec<(PathBuf, Dataset)>);

impl OpenFiles {
    fn get(&mut self, path: &Path, what: &dyn Fn() -> String) -> Result<&Dataset> {
        let i = match self.0.iter().position(|(p, _)| p == path) {
            Some(i) => i,
            None => {
                let ds = Dataset::open(path)
                    .map_err(|e| anyhow::anyhow!("{}: cannot open: {}", what(), one_line(e)))?;
                self.0.push((path.to_path_buf(), ds));
                self.0.len() - 1
            }
        };
        Ok(&self.0[i].1)
    }
}

/// The window `win` of band `band` of `path` (a raster on `grid`) as f32, row-major; NaN
/// outside the raster and where the value is `nodata`. `what` names the data in errors.
pub fn read_window(
    open: &mut OpenFiles,
    path: &Path,
    band: usize,
    nodata: Option<f64>,
    grid: &Grid,
    win: Window,
    what: impl Fn() -> String,
) -> Result<Vec<f32>> {
    let ds = open.get(path, &what)?;
    let mut out = vec![f32::NAN; win.width * win.height];
    let x0 = win.col.max(0);
    let y0 = win.row.max(0);
    let x1 = (win.col + win.width as i64).min(grid.width as i64);
    let y1 = (win.row + win.height as i64).min(grid.height as i64);
    if x1 <= x0 || y1 <= y0 {
        return Ok(out);
    }
    let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let buf = ds
        .rasterband(band)?
        .read_as::<f32>((x0 as isize, y0 as isize), (w, h), (w, h), None)
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: reading pixels ({x0},{y0})+{w}x{h} failed (truncated or corrupt file?): {}",
                what(),
                one_line(e)
            )
        })?;
    let data = buf.data();
    let nodata = nodata.map(|v| v as f32);
    let (ox, oy) = ((x0 - win.col) as usize, (y0 - win.row) as usize);
    for r in 0..h {
        let dst = &mut out[(oy + r) * win.width + ox..][..w];
        dst.copy_from_slice(&data[r * w..][..w]);
        if let Some(nd) = nodata {
            for v in dst.iter_mut() {
                if *v == nd {
                    *v = f32::NAN;
                }
            }
        }
    }
    Ok(out)
}

/// Every band of modality `role` of a tiled scene over `win` (which may reach past the tiles,
/// e.g. a tile plus a margin); `tiles_dir` is where the manifest lives.
pub fn read_modality(
    open: &mut OpenFiles,
    tiles_dir: &Path,
    scene: &SceneEntry,
    role: Role,
    win: Window,
) -> Result<Vec<Vec<f32>>> {
    let Some(m) = scene.modalities.iter().find(|m| m.role == role) else {
        bail!("scene '{}' has no {} modality", scene.name, role.name());
    };
    m.bands
        .iter()
        .map(|b| {
            let path = if b.grid_file.is_relative() {
                tiles_dir.join(&b.grid_file)
            } else {
                b.grid_file.clone()
            };
            read_window(open, &path, b.grid_band, b.nodata, &scene.grid, win, || {
                format!("{} '{}'", role.name(), path.display())
            })
        })
        .collect()
}
