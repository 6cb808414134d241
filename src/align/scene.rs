//! Whole-scene alignment, window by window.
//!
//! **Windows.** A regular lattice of windows of the estimator's side T (the network's tile size)
//! at a step s (default: the network's centre-window size, T/2): node (i, j) is centred near
//! (i·s + s/2, j·s + s/2), its window shifted flush inside the raster at the edges. Each window
//! gets one displacement vector (the network's f(x), the centre-window mean it was trained to
//! predict; or the phase-correlation shift), located at the window's centre.
//!
//! **Blending.** The field at a pixel is the weighted mean of the vectors of the nodes within
//! h = max(s, T/2) of it, with separable raised-cosine weights cos²(π t / 2h): with h = s the
//! weights of a regular lattice sum to one (a partition of unity), so the field is a smooth
//! interpolation of the lattice with no seams at tile borders. The reliability band is blended
//! alike.
//!
//! **Memory.** Pass 1 reads the inputs region by region (blocks of 16 × 16 windows) and keeps
//! only the lattice (a few numbers per window: ~48 bytes per s² pixels); pass 2 computes and
//! writes the outputs in 512 × 512 blocks into tiled work files, which GDAL's COG driver copies
//! into Cloud-Optimised GeoTIFFs block by block. Nothing holds a whole scene.
use super::estimate::{self, Estimation};
use super::io::{band_stats, WorkRaster};
use super::quality::flag_names;
use crate::artefacts::align::{
    AlignDir, AlignRequest, AlignSummary, ApplySummary, BaselineSummary, OutlierCounts,
};
use crate::raster::bands::BandReader;
use crate::raster::bounds::{check_bounded, check_space, InputLimits};
use crate::raster::kind::{resolve_kind, ModalityKind, Role};
use crate::raster::stats::BandStats;
use crate::raster::{open_raster, warp, Grid, RasterInfo, Window};
use crate::util::{atomic, output};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One window's estimate: displacement (px) and its reliability (method-specific).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub dx: f64,
    pub dy: f64,
    pub reliability: f64,
}

/// A batch of windows, normalised as the network's training inputs: reference (n, cr, t, t)
/// and moving (n, cm, t, t), row-major.
pub struct Windows<'a> {
    pub reference: &'a [f32],
    pub moving: &'a [f32],
    pub n: usize,
    pub cr: usize,
    pub cm: usize,
    pub t: usize,
}

/// A per-window displacement estimator.
pub trait WindowModel {
    fn method(&self) -> &'static str;
    /// What its reliability number means (goes into summary.json).
    fn reliability(&self) -> String;
    fn estimate(&mut self, w: &Windows) -> Result<Vec<Estimate>>;
    /// The reliability below which a window's estimate is flagged unreliable (None: the
    /// method has no calibrated threshold).
    fn min_reliability(&self) -> Option<f64> {
        None
    }
}

pub use super::estimators::{Cfog, PhaseCorrelation};

/// What the engine needs to know about the estimator's inputs.
pub struct ModelShape {
    /// Window side.
    pub tile: usize,
    /// Default step (the network's centre-window size).
    pub stride: usize,
    /// Band counts the estimator needs (None: any).
    pub bands: Option<(usize, usize)>,
}

/// The inputs of a run, opened and checked.
pub(super) struct Inputs {
    pub(super) grid: Grid,
    pub(super) reference: BandReader,
    pub(super) moving: BandReader,
    pub(super) rb: Vec<usize>,
    pub(super) mb: Vec<usize>,
    pub(super) r_stats: Vec<BandStats>,
    pub(super) m_stats: Vec<BandStats>,
    pub(super) moving_kind: ModalityKind,
    pub(super) truth: Option<BandReader>,
}

fn pick_bands(info: &RasterInfo, asked: &Option<Vec<usize>>, role: &str) -> Result<Vec<usize>> {
    let n = info.bands.len();
    match asked {
        None => Ok((1..=n).collect()),
        Some(v) => {
            if let Some(&b) = v.iter().find(|&&b| b == 0 || b > n) {
                bail!("{role} '{}': has {n} band(s); band {b} was asked for", info.path.display());
            }
            Ok(v.clone())
        }
    }
}

/// Whether the moving raster must be warped onto the reference grid (its grid differs).
fn needs_warp(moving: &Grid, grid: &Grid) -> bool {
    !(moving.same_geometry(grid) && warp::same_crs(&moving.crs_wkt, &grid.crs_wkt))
}

/// Checks the reference and moving rasters `ri`, `mi` of `req` (the moving one is warped onto
/// the reference grid into `work` when its grid differs) and opens them and the truth field.
fn open_inputs(
    req: &AlignRequest,
    shape: &ModelShape,
    ri: &RasterInfo,
    mi: &RasterInfo,
    work: &Path,
) -> Result<Inputs> {
    let grid = ri.grid.clone();
    warp::check_reference_crs(&grid, &req.reference)?;
    if !grid.is_north_up() {
        bail!("reference '{}': its geotransform is rotated or not north-up; warp it to a north-up grid first", req.reference.display());
    }
    if grid.width < shape.tile || grid.height < shape.tile {
        bail!(
            "reference '{}': {}x{} px is smaller than the {}-px alignment window",
            req.reference.display(),
            grid.width,
            grid.height,
            shape.tile
        );
    }
    let rb = pick_bands(ri, &req.params.reference_bands, "reference")?;
    let mb = pick_bands(mi, &req.params.moving_bands, "moving")?;
    if let Some((cr, cm)) = shape.bands {
        if rb.len() != cr {
            bail!("reference '{}': {} band(s) used, the model takes {cr} (choose with --reference-bands)", req.reference.display(), rb.len());
        }
        if mb.len() != cm {
            bail!(
                "moving '{}': {} band(s) used, the model takes {cm} (choose with --moving-bands)",
                req.moving.display(),
                mb.len()
            );
        }
    }
    let moving_path = if !needs_warp(&mi.grid, &grid) {
        req.moving.clone()
    } else {
        warp::check_placeable(&mi.grid, &grid, "moving", &req.moving)?;
        let dst = work.join("moving_on_grid.tif");
        let exact = warp::WarpOptions { exact: true, output: warp::WarpOutput::GeoTiff };
        warp::warp_onto_grid(
            &req.moving,
            "moving",
            &grid,
            warp::Resampling::Bilinear,
            &dst,
            exact,
        )?;
        dst
    };
    let moving_kind = match req.params.moving_kind {
        Some(k) => k,
        None => resolve_kind(Role::Moving, &req.moving, mi)?,
    };
    let reference = BandReader::open(&req.reference, "reference")?;
    let moving = BandReader::open(&moving_path, "moving")?;
    let r_stats = rb
        .iter()
        .map(|&b| band_stats(&reference, b, ModalityKind::Optical.stat_scale()))
        .collect::<Result<Vec<_>>>()?;
    let m_stats = mb
        .iter()
        .map(|&b| band_stats(&moving, b, moving_kind.stat_scale()))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| {
            if moving_path != req.moving {
                anyhow::anyhow!(
                    "moving '{}': no valid pixel on the reference grid ({e})",
                    req.moving.display()
                )
            } else {
                e
            }
        })?;
    let truth = match &req.truth {
        None => None,
        Some(p) => {
            let ti = open_raster(p, "truth")?;
            if !ti.grid.same_geometry(&grid) || !warp::same_crs(&ti.grid.crs_wkt, &grid.crs_wkt) {
                bail!("truth '{}': not on the reference grid (same CRS, geotransform and size needed)", p.display());
            }
            if ti.bands.len() < 2 {
                bail!("truth '{}': needs 2 bands (dx, dy), has {}", p.display(), ti.bands.len());
            }
            Some(BandReader::open(p, "truth")?)
        }
    };
    Ok(Inputs { grid, reference, moving, rb, mb, r_stats, m_stats, moving_kind, truth })
}

/// The window lattice along one axis: window starts (flush inside [0, n)), centres.
fn axis(n: usize, t: usize, s: usize) -> Vec<i64> {
    let count = n.div_ceil(s);
    (0..count).map(|i| ((i * s + s / 2) as i64 - (t / 2) as i64).clamp(0, (n - t) as i64)).collect()
}

/// The lattice: per node the primary and baseline estimates (None: too little valid data).
pub(super) struct Lattice {
    pub(super) xs: Vec<i64>,
    pub(super) ys: Vec<i64>,
    pub(super) t: usize,
    pub(super) h: f64,
    pub(super) primary: Vec<Option<Estimate>>,
    pub(super) baseline: Vec<Option<Estimate>>,
}

impl Lattice {
    pub(super) fn centre(&self, i: usize, j: usize) -> (f64, f64) {
        (self.xs[i] as f64 + self.t as f64 / 2.0, self.ys[j] as f64 + self.t as f64 / 2.0)
    }

    /// Nodes along an axis with centre within h of `p`: index range.
    fn range(starts: &[i64], t: usize, h: f64, p: f64) -> std::ops::Range<usize> {
        let c = |i: usize| starts[i] as f64 + t as f64 / 2.0;
        let lo = starts.partition_point(|&s| s as f64 + t as f64 / 2.0 <= p - h);
        let mut hi = lo;
        while hi < starts.len() && c(hi) < p + h {
            hi += 1;
        }
        lo..hi
    }

    fn weight(&self, d: f64) -> f64 {
        if d.abs() >= self.h {
            0.0
        } else {
            (std::f64::consts::FRAC_PI_2 * d / self.h).cos().powi(2)
        }
    }

    /// The blended field over a block: (dx, dy, reliability) per pixel, NaN where no valid node
    /// is within reach.
    fn blend(
        &self,
        which: &[Option<Estimate>],
        x0: usize,
        y0: usize,
        w: usize,
        h: usize,
    ) -> [Vec<f32>; 3] {
        let nx = self.xs.len();
        let rows: Vec<[Vec<f32>; 3]> = (0..h)
            .into_par_iter()
            .map(|r| {
                let py = (y0 + r) as f64 + 0.5;
                let jr = Lattice::range(&self.ys, self.t, self.h, py);
                let wy: Vec<(usize, f64)> =
                    jr.map(|j| (j, self.weight(py - self.centre(0, j).1))).collect();
                let mut out = [Vec::with_capacity(w), Vec::with_capacity(w), Vec::with_capacity(w)];
                for c in 0..w {
                    let px = (x0 + c) as f64 + 0.5;
                    let ir = Lattice::range(&self.xs, self.t, self.h, px);
                    let (mut sw, mut sx, mut sy, mut sr, mut swr) = (0.0, 0.0, 0.0, 0.0, 0.0);
                    for i in ir {
                        let wx = self.weight(px - self.centre(i, 0).0);
                        for &(j, wyj) in &wy {
                            if let Some(e) = which[j * nx + i] {
                                let wt = wx * wyj;
                                sw += wt;
                                sx += wt * e.dx;
                                sy += wt * e.dy;
                                if e.reliability.is_finite() {
                                    sr += wt * e.reliability;
                                    swr += wt;
                                }
                            }
                        }
                    }
                    let (dx, dy, rel) = if sw > 0.0 {
                        let rel = if swr > 0.0 { (sr / swr) as f32 } else { f32::NAN };
                        ((sx / sw) as f32, (sy / sw) as f32, rel)
                    } else {
                        (f32::NAN, f32::NAN, f32::NAN)
                    };
                    out[0].push(dx);
                    out[1].push(dy);
                    out[2].push(rel);
                }
                out
            })
            .collect();
        let mut out =
            [Vec::with_capacity(w * h), Vec::with_capacity(w * h), Vec::with_capacity(w * h)];
        for r in rows {
            for (o, v) in out.iter_mut().zip(r) {
                o.extend(v);
            }
        }
        out
    }
}

/// Normalised bands of a region, and which pixels are valid in every band.
pub(super) fn read_normalised(
    reader: &BandReader,
    bands: &[usize],
    stats: &[BandStats],
    win: Window,
    valid: &mut [bool],
) -> Result<Vec<Vec<f32>>> {
    bands
        .iter()
        .zip(stats)
        .map(|(&b, s)| {
            let px = reader.window(b, win)?;
            for (v, &p) in valid.iter_mut().zip(&px) {
                *v &= p.is_finite() && s.scale.apply(p).is_some();
            }
            Ok(px.into_iter().map(|v| s.normalise(v)).collect())
        })
        .collect()
}

const NODES_PER_BLOCK: usize = 16;
const OUT_BLOCK: usize = 512;
/// At most about this many pixels sampled for the median errors against `--truth`.
const ERROR_SAMPLES: f64 = 1_048_576.0;

/// Pass 1: every window's estimate by each of `models`, region by region, the moving
/// windows cut `offset` px away (the estimates then measure from it, and have it added
/// back). Returns the window starts along x and y, per model its lattice of estimates
/// (`j·nx + i`), and per model the seconds it spent.
#[allow(clippy::type_complexity)]
pub(super) fn estimate_lattice(
    inp: &Inputs,
    shape: &ModelShape,
    stride: usize,
    req: &AlignRequest,
    models: &mut [&mut dyn WindowModel],
    offset: (i64, i64),
) -> Result<(Vec<i64>, Vec<i64>, Vec<Vec<Option<Estimate>>>, Vec<f64>)> {
    let (min_valid, batch, quiet) = (req.params.min_valid, req.params.batch, req.quiet);
    let (t, g) = (shape.tile, &inp.grid);
    let xs = axis(g.width, t, stride);
    let ys = axis(g.height, t, stride);
    let (nx, ny) = (xs.len(), ys.len());
    let mut est = vec![vec![None; nx * ny]; models.len()];
    let mut seconds = vec![0.0; models.len()];
    let (cr, cm) = (inp.rb.len(), inp.mb.len());
    let blocks: Vec<(usize, usize)> = (0..ny.div_ceil(NODES_PER_BLOCK))
        .flat_map(|bj| (0..nx.div_ceil(NODES_PER_BLOCK)).map(move |bi| (bi, bj)))
        .collect();
    let bar =
        (!quiet).then(|| indicatif::ProgressBar::new((nx * ny) as u64).with_message("windows"));
    for (bi, bj) in blocks {
        let (i0, i1) = (bi * NODES_PER_BLOCK, ((bi + 1) * NODES_PER_BLOCK).min(nx));
        let (j0, j1) = (bj * NODES_PER_BLOCK, ((bj + 1) * NODES_PER_BLOCK).min(ny));
        let (rx0, ry0) = (xs[i0], ys[j0]);
        let (rw, rh) = ((xs[i1 - 1] - rx0) as usize + t, (ys[j1 - 1] - ry0) as usize + t);
        let mut valid = vec![true; rw * rh];
        let region = Window { col: rx0, row: ry0, width: rw, height: rh };
        let moved = Window { col: rx0 + offset.0, row: ry0 + offset.1, ..region };
        let r = read_normalised(&inp.reference, &inp.rb, &inp.r_stats, region, &mut valid)?;
        let m = read_normalised(&inp.moving, &inp.mb, &inp.m_stats, moved, &mut valid)?;
        // Cut the windows with enough valid pixels.
        let mut nodes = Vec::new();
        let (mut wr, mut wm) = (Vec::new(), Vec::new());
        for (j, &y0) in ys.iter().enumerate().take(j1).skip(j0) {
            for (i, &x0) in xs.iter().enumerate().take(i1).skip(i0) {
                let (ox, oy) = ((x0 - rx0) as usize, (y0 - ry0) as usize);
                let n_valid: usize = (0..t)
                    .map(|y| valid[(oy + y) * rw + ox..][..t].iter().filter(|&&v| v).count())
                    .sum();
                if (n_valid as f64) < min_valid * (t * t) as f64 {
                    continue;
                }
                nodes.push(j * nx + i);
                for (src, dst) in [(&r, &mut wr), (&m, &mut wm)] {
                    for band in src.iter() {
                        for y in 0..t {
                            dst.extend_from_slice(&band[(oy + y) * rw + ox..][..t]);
                        }
                    }
                }
            }
        }
        for (k0, chunk) in nodes.chunks(batch.max(1)).enumerate() {
            let start = k0 * batch.max(1);
            let n = chunk.len();
            let win = Windows {
                reference: &wr[start * cr * t * t..][..n * cr * t * t],
                moving: &wm[start * cm * t * t..][..n * cm * t * t],
                n,
                cr,
                cm,
                t,
            };
            for (k, model) in models.iter_mut().enumerate() {
                let t0 = Instant::now();
                let e = model.estimate(&win)?;
                seconds[k] += t0.elapsed().as_secs_f64();
                for (&node, e) in chunk.iter().zip(&e) {
                    est[k][node] = (e.dx.is_finite() && e.dy.is_finite()).then_some(Estimate {
                        dx: e.dx + offset.0 as f64,
                        dy: e.dy + offset.1 as f64,
                        reliability: e.reliability,
                    });
                }
            }
        }
        if let Some(b) = &bar {
            b.inc(((i1 - i0) * (j1 - j0)) as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok((xs, ys, est, seconds))
}

/// Resamples bands of `src` over `block` by the field (dx, dy over the block): out(q) =
/// src(q + D(q)) (bilinear; SAR in dB through linear power). The moving content that belongs at
/// q sits at q + D(q), so this puts it back on the reference. NaN where D or the source is NaN.
fn resample_block(
    src: &BandReader,
    bands: &[usize],
    db: bool,
    [dx, dy]: [&[f32]; 2],
    block: Window,
) -> Result<Vec<Vec<f32>>> {
    let (w, h) = (block.width, block.height);
    let reach = dx.iter().chain(dy).filter(|v| v.is_finite()).fold(0f32, |a, v| a.max(v.abs()));
    if !reach.is_finite() || reach > 1e5 {
        bail!("displacement of {reach} px: not a usable displacement field");
    }
    let margin = reach.ceil() as usize + 2;
    let (rx0, ry0) = (block.col - margin as i64, block.row - margin as i64);
    let (rw, rh) = (w + 2 * margin, h + 2 * margin);
    bands
        .iter()
        .map(|&b| {
            let mut px = src.region(b, rx0, ry0, rw, rh)?;
            if db {
                px.iter_mut().for_each(|v| *v = 10f32.powf(*v / 10.0));
            }
            let source =
                crate::raster::resample::Source { pixels: &px, width: rw, height: rh, margin };
            let mut out: Vec<f32> = (0..w * h)
                .into_par_iter()
                .map(|k| {
                    let (c, r) = (k % w, k / w);
                    let (ddx, ddy) = (dx[k] as f64, dy[k] as f64);
                    if !ddx.is_finite() || !ddy.is_finite() {
                        return f32::NAN;
                    }
                    source.sample(
                        c as f64 + 0.5 + ddx,
                        r as f64 + 0.5 + ddy,
                        crate::raster::resample::Interp::Bilinear,
                    ) as f32
                })
                .collect();
            if db {
                out.iter_mut().for_each(|v| *v = 10.0 * v.log10());
            }
            Ok(out)
        })
        .collect()
}

/// Metadata of displacement rasters: units and the map-unit scale.
fn displacement_metadata(grid: &Grid, method: &str) -> Vec<(&'static str, String)> {
    let g = grid.geotransform;
    vec![
        ("SIMREG_METHOD", method.to_string()),
        ("SIMREG_UNITS", "reference pixels; x east (columns), y south (rows); content at p in the reference appears at p + D in the moving raster".into()),
        ("SIMREG_MAP_UNITS_PER_PX_X", format!("{}", g[1])),
        ("SIMREG_MAP_UNITS_PER_PX_Y", format!("{}", g[5])),
        ("SIMREG_MAP_SHIFT", format!("dx_map = dx·{} + dy·{}; dy_map = dx·{} + dy·{}", g[1], g[2], g[4], g[5])),
    ]
}

/// The median of the finite values (f64 for the lattice's figures, f32 for the error samples:
/// half the memory, ample for px errors).
fn median<T: Copy + Into<f64>>(mut v: Vec<T>) -> Option<f64> {
    v.retain(|&x| x.into().is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(|&a, &b| a.into().total_cmp(&b.into()));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2].into() } else { 0.5 * (v[n / 2 - 1].into() + v[n / 2].into()) })
}

fn mean_shift(e: &[Option<Estimate>]) -> [f64; 2] {
    let v: Vec<&Estimate> = e.iter().flatten().collect();
    let n = v.len().max(1) as f64;
    if v.is_empty() {
        return [f64::NAN, f64::NAN];
    }
    [v.iter().map(|e| e.dx).sum::<f64>() / n, v.iter().map(|e| e.dy).sum::<f64>() / n]
}

/// Tie points: CSV in the reference CRS (and lon/lat), GeoJSON in WGS 84 longitude/latitude as
/// RFC 7946 asks, with the reference-CRS position in the properties. A reference without a
/// CRS keeps its map coordinates in the GeoJSON (no lon/lat exists).
fn write_tiepoints(dir: &AlignDir, grid: &Grid, lat: &Lattice, flags: &[u8]) -> Result<()> {
    let g = grid.geotransform;
    let nx = lat.xs.len();
    let to_ll = crate::raster::geo::ToLonLat::new(&grid.crs_wkt)?;
    let mut csv = String::from("id,col,row,x,y,lon,lat,dx_px,dy_px,dx_map,dy_map,reliability,baseline_dx_px,baseline_dy_px,baseline_peak,flags\n");
    let mut features = Vec::new();
    // Node (i, j) is at j·nx + i: rows of the lattice in order.
    for (node, e) in lat.primary.iter().enumerate() {
        let Some(e) = *e else { continue };
        let (i, j) = (node % nx, node / nx);
        let (c, r) = lat.centre(i, j);
        let (x, y) = (g[0] + c * g[1] + r * g[2], g[3] + c * g[4] + r * g[5]);
        let ll = to_ll.apply(&[[x, y]])?.map(|v| v[0]);
        let (mx, my) = (e.dx * g[1] + e.dy * g[2], e.dx * g[4] + e.dy * g[5]);
        let b = lat.baseline[node];
        let (bx, by, bp) =
            b.map_or((f64::NAN, f64::NAN, f64::NAN), |b| (b.dx, b.dy, b.reliability));
        let id = format!("x{i:04}_y{j:04}");
        let (lon, la) = ll.map_or((String::new(), String::new()), |v| {
            (format!("{:.8}", v[0]), format!("{:.8}", v[1]))
        });
        let _ = writeln!(
            csv,
            "{id},{c},{r},{x},{y},{lon},{la},{:.4},{:.4},{:.6},{:.6},{:.6},{:.4},{:.4},{:.4},{}",
            e.dx,
            e.dy,
            mx,
            my,
            e.reliability,
            bx,
            by,
            bp,
            flag_names(flags[node])
        );
        let num =
            |v: f64| if v.is_finite() { serde_json::json!(v) } else { serde_json::Value::Null };
        let point = ll.unwrap_or([x, y]);
        features.push(serde_json::json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": point},
            "properties": {"id": id, "col": c, "row": r, "x": x, "y": y, "dx_px": e.dx, "dy_px": e.dy, "dx_map": mx, "dy_map": my,
                "reliability": num(e.reliability), "baseline_dx_px": num(bx), "baseline_dy_px": num(by), "baseline_peak": num(bp),
                "flags": flag_names(flags[node])}
        }));
    }
    let fc =
        serde_json::json!({"type": "FeatureCollection", "name": "tiepoints", "features": features});
    atomic::write_json(&dir.tiepoints_geojson(), &fc)?;
    atomic::write_bytes(&dir.tiepoints_csv(), csv.as_bytes())
}

/// Aligns `req.moving` onto `req.reference` with `primary` (and the phase-correlation baseline
/// beside it) into `req.out`: displacement.tif (COG: dx, dy, reliability), corrected.tif (COG:
/// the moving bands on the reference grid with the correction applied), tiepoints.geojson/.csv,
/// summary.json. Built in `<out>.partial` and swapped in when complete.
pub fn run(
    req: &AlignRequest,
    shape: &ModelShape,
    primary: &mut dyn WindowModel,
) -> Result<AlignSummary> {
    align(req, shape, Estimation::Single(primary))
}

/// `--method auto` (see `estimate`): on the windows of `shape` (the network's, with a model).
pub fn run_auto(
    req: &AlignRequest,
    shape: &ModelShape,
    network: Option<&mut dyn WindowModel>,
) -> Result<AlignSummary> {
    align(req, shape, Estimation::Auto(network))
}

fn align(req: &AlignRequest, shape: &ModelShape, est: Estimation) -> Result<AlignSummary> {
    let start = Instant::now();
    crate::raster::init_gdal();
    bound_block_cache();
    let stride = req.params.stride.unwrap_or(shape.stride);
    if stride == 0 {
        bail!("--stride must be at least 1 px");
    }
    if !(0.0..=1.0).contains(&req.params.min_valid) {
        bail!("--min-valid must be within [0, 1], not {}", req.params.min_valid);
    }
    let mut inputs = vec![req.reference.as_path(), req.moving.as_path()];
    inputs.extend(req.truth.as_deref());
    let ri = open_raster(&req.reference, "reference")?;
    let mi = open_raster(&req.moving, "moving")?;
    let m = mi.bands.len() as u64;
    // The moving raster warped onto the grid, then the displacement (3 bands) and the
    // corrected raster, each as a work raster and as its COG.
    let planes = if needs_warp(&mi.grid, &ri.grid) { m } else { 0 } + 2 * (3 + m);
    check_budget(&req.out, &[(&ri, "reference"), (&mi, "moving")], &ri.grid, planes, &req.limits)?;
    output::build_dir(&req.out, "align", &inputs, |partial| {
        let work = partial.join("work");
        atomic::create_dir(&work)?;
        let inp = open_inputs(req, shape, &ri, &mi, &work)?;
        let g = inp.grid.clone();
        let e = estimate::estimate(&inp, shape, stride, req, est)?;
        let (lat, global, method) = (&e.lat, e.global, e.method);
        let is_pc = method == "phase-correlation";
        let (t_primary, t_base) = (e.t_primary, e.t_base);
        let n_valid = lat.primary.iter().flatten().count();

        // Pass 2: outputs, block by block.
        let mut disp = WorkRaster::create(
            &work.join("displacement.tif"),
            &g,
            &["dx".into(), "dy".into(), "reliability".into()],
            &displacement_metadata(&g, method),
        )?;
        let descr: Vec<String> = inp.mb.iter().map(|b| format!("moving:b{b} corrected")).collect();
        let mut corr = WorkRaster::create(
            &work.join("corrected.tif"),
            &g,
            &descr,
            &[(
                "SIMREG_CORRECTED_BY",
                format!("{method} displacement, out(q) = moving(q + D(q)), bilinear"),
            )],
        )?;
        // Error samples: every k-th pixel in both directions, at most ~2^20 whatever the scene
        // size, in f32 and allocated once (the peak memory stays flat with the scene's size).
        let k = (((g.width * g.height) as f64 / ERROR_SAMPLES).sqrt().ceil() as usize).max(1);
        let cap = if inp.truth.is_some() { g.width.div_ceil(k) * g.height.div_ceil(k) } else { 0 };
        let (mut err, mut err_base) =
            (Vec::<f32>::with_capacity(cap), Vec::<f32>::with_capacity(cap));
        let db = inp.moving_kind == ModalityKind::SarDb;
        for by in (0..g.height).step_by(OUT_BLOCK) {
            for bx in (0..g.width).step_by(OUT_BLOCK) {
                let (w, h) = (OUT_BLOCK.min(g.width - bx), OUT_BLOCK.min(g.height - by));
                let block = Window { col: bx as i64, row: by as i64, width: w, height: h };
                let [dx, dy, rel] = lat.blend(&lat.primary, bx, by, w, h);
                if let Some(truth) = &inp.truth {
                    let tx = truth.window(1, block)?;
                    let ty = truth.window(2, block)?;
                    let [bdx, bdy, _] = if is_pc {
                        [dx.clone(), dy.clone(), Vec::new()]
                    } else {
                        lat.blend(&lat.baseline, bx, by, w, h)
                    };
                    for r in (0..h).filter(|r| (by + r) % k == 0) {
                        for c in (0..w).filter(|c| (bx + c) % k == 0) {
                            let i = r * w + c;
                            if tx[i].is_finite() && ty[i].is_finite() {
                                let e = |x: f32, y: f32| {
                                    (((x - tx[i]) as f64).powi(2) + ((y - ty[i]) as f64).powi(2))
                                        .sqrt() as f32
                                };
                                err.push(e(dx[i], dy[i]));
                                err_base.push(e(bdx[i], bdy[i]));
                            }
                        }
                    }
                }
                let bands = resample_block(&inp.moving, &inp.mb, db, [&dx, &dy], block)?;
                for (b, px) in bands.into_iter().enumerate() {
                    corr.write(b + 1, bx, by, w, h, px)?;
                }
                disp.write(1, bx, by, w, h, dx)?;
                disp.write(2, bx, by, w, h, dy)?;
                disp.write(3, bx, by, w, h, rel)?;
            }
        }
        let dir = AlignDir::new(partial);
        disp.into_cog(&dir.displacement_tif())?;
        corr.into_cog(&dir.corrected_tif())?;
        write_tiepoints(&dir, &g, lat, &e.flags)?;
        drop(inp.moving);
        let _ = std::fs::remove_dir_all(&work);

        let n_err = err.len();
        let seconds = start.elapsed().as_secs_f64();
        let summary = AlignSummary {
            // Auto without a model never reaches here with one set (`align::run`). The model
            // is the directory it was loaded from, so an adapt run names RUN/train.
            model: if is_pc || method == "cfog" {
                None
            } else {
                req.params.model.as_deref().map(model_dir)
            },
            method: method.to_string(),
            reference: req.reference.clone(),
            moving: req.moving.clone(),
            width: g.width,
            height: g.height,
            window: shape.tile,
            stride,
            n_windows: lat.primary.len(),
            n_valid_windows: n_valid,
            mean_shift_px: mean_shift(&lat.primary),
            shift_px: e.scene.shift_px,
            verdict: e.verdict.clone(),
            n_reliable_windows: e.n_reliable,
            outliers: OutlierCounts::of(&e.flags),
            max_shift_px: req.params.max_shift,
            coarse: e.coarse.clone(),
            similarity_before: e.similarity_before,
            similarity_after: e.similarity_after,
            median_reliability: median(
                lat.primary.iter().flatten().map(|e| e.reliability).collect(),
            ),
            reliability: e.reliability.clone(),
            megapixels_per_s: (g.width * g.height) as f64 / 1e6 / seconds,
            seconds,
            estimate_seconds: t_primary,
            median_error_px: inp.truth.as_ref().and(median(err)),
            baseline_median_error_px: inp.truth.as_ref().and(median(err_base)),
            n_error_samples: n_err,
            baseline: BaselineSummary {
                method: "phase-correlation".into(),
                mean_shift_px: mean_shift(&lat.baseline),
                median_peak: median(lat.baseline.iter().flatten().map(|e| e.reliability).collect()),
                global_shift_px: [global.dx, global.dy],
                global_peak: global.peak,
                estimate_seconds: t_base,
            },
            peak_rss_mb: peak_rss_mb(),
            outputs: file_names(&[
                dir.displacement_tif(),
                dir.corrected_tif(),
                dir.tiepoints_geojson(),
                dir.tiepoints_csv(),
                dir.summary_json(),
            ]),
        };
        crate::artefacts::write_json(&dir.summary_json(), &summary)?;
        Ok(summary)
    })
}

/// GDAL's block cache, through which every work file and COG is written and read, defaults to
/// 5 % of the machine's memory and fills up with the scene's blocks: bounded here, so that peak
/// memory stops growing with the scene once it is full (measured, phase correlation: peak RSS
/// 195 → 368 MB from 1024² to 2048² with GDAL's default; 194, 263, 289 MB at 1024², 2048², 4096²
/// with 64 MB).
pub const BLOCK_CACHE_MB: i64 = 64;

fn bound_block_cache() {
    // SAFETY: GDALSetCacheMax64 only sets a global limit (thread-safe in GDAL).
    unsafe { gdal_sys::GDALSetCacheMax64(BLOCK_CACHE_MB << 20) };
}

/// Peak resident memory of this process (VmHWM), MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Before any write (issue 21): every input's first block readable and its declared size
/// within `--max-pixels`, and `planes` Float32 planes of `grid` fitting the free space.
fn check_budget(
    out: &Path,
    inputs: &[(&RasterInfo, &str)],
    grid: &Grid,
    planes: u64,
    limits: &InputLimits,
) -> Result<()> {
    for (info, role) in inputs {
        check_bounded(info, role, limits.max_pixels)?;
    }
    let bytes = planes * grid.width as u64 * grid.height as u64 * 4;
    check_space(
        out,
        bytes,
        &format!("{planes} Float32 planes of {}x{} px", grid.width, grid.height),
    )
}

/// `simreg align --apply SHIFTS.tif`: resamples `moving` (on the same grid as the shifts) by
/// the saved displacement into `out/corrected.tif` (COG) + summary.json.
pub fn apply(
    shifts: &Path,
    moving: &Path,
    moving_kind: Option<ModalityKind>,
    out: &Path,
    limits: &InputLimits,
    quiet: bool,
) -> Result<ApplySummary> {
    let start = Instant::now();
    crate::raster::init_gdal();
    bound_block_cache();
    let si = open_raster(shifts, "shifts")?;
    let mi = open_raster(moving, "moving")?;
    if si.bands.len() < 2 {
        bail!("shifts '{}': needs bands dx, dy; has {} band(s)", shifts.display(), si.bands.len());
    }
    if !mi.grid.same_geometry(&si.grid) || !warp::same_crs(&mi.grid.crs_wkt, &si.grid.crs_wkt) {
        bail!("moving '{}': not on the grid of shifts '{}' (same CRS, geotransform and size needed; align it first)", moving.display(), shifts.display());
    }
    let kind = match moving_kind {
        Some(k) => k,
        None => resolve_kind(Role::Moving, moving, &mi)?,
    };
    let g = si.grid.clone();
    let bands: Vec<usize> = (1..=mi.bands.len()).collect();
    let planes = 2 * mi.bands.len() as u64;
    check_budget(out, &[(&si, "shifts"), (&mi, "moving")], &g, planes, limits)?;
    output::build_dir(out, "align", &[shifts, moving], |partial| {
        let sr = BandReader::open(shifts, "shifts")?;
        let mr = BandReader::open(moving, "moving")?;
        let descr: Vec<String> = bands.iter().map(|b| format!("moving:b{b} corrected")).collect();
        let mut corr = WorkRaster::create(
            &partial.join("corrected.work.tif"),
            &g,
            &descr,
            &[(
                "SIMREG_CORRECTED_BY",
                format!("'{}', out(q) = moving(q + D(q)), bilinear", shifts.display()),
            )],
        )?;
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0usize);
        let bar = (!quiet).then(|| indicatif::ProgressBar::new(g.height as u64));
        for by in (0..g.height).step_by(OUT_BLOCK) {
            for bx in (0..g.width).step_by(OUT_BLOCK) {
                let (w, h) = (OUT_BLOCK.min(g.width - bx), OUT_BLOCK.min(g.height - by));
                let block = Window { col: bx as i64, row: by as i64, width: w, height: h };
                let dx = sr.window(1, block)?;
                let dy = sr.window(2, block)?;
                for (a, b) in dx.iter().zip(&dy).filter(|(a, b)| a.is_finite() && b.is_finite()) {
                    sx += *a as f64;
                    sy += *b as f64;
                    n += 1;
                }
                let db = kind == ModalityKind::SarDb;
                let px = resample_block(&mr, &bands, db, [&dx, &dy], block)
                    .with_context(|| format!("shifts '{}'", shifts.display()))?;
                for (b, p) in px.into_iter().enumerate() {
                    corr.write(b + 1, bx, by, w, h, p)?;
                }
            }
            if let Some(b) = &bar {
                b.inc(OUT_BLOCK.min(g.height - by) as u64);
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if n == 0 {
            bail!("shifts '{}': no valid displacement (all nodata)", shifts.display());
        }
        let dir = AlignDir::new(partial);
        corr.into_cog(&dir.corrected_tif())?;
        let seconds = start.elapsed().as_secs_f64();
        let s = ApplySummary {
            method: "apply".into(),
            shifts: shifts.to_path_buf(),
            moving: moving.to_path_buf(),
            width: g.width,
            height: g.height,
            mean_shift_px: [sx / n as f64, sy / n as f64],
            megapixels_per_s: (g.width * g.height) as f64 / 1e6 / seconds,
            seconds,
            outputs: file_names(&[dir.corrected_tif(), dir.summary_json()]),
        };
        crate::artefacts::write_json(&dir.summary_json(), &s)?;
        Ok(s)
    })
}

/// The window of the classical methods: `--window`, or `default` halved (down to 32 px) until
/// the reference holds it one and a half times, so that a small scene (a 120-px patch) still
/// gets a lattice of windows; stride half of it.
fn classical_shape(req: &AlignRequest, default: usize) -> Result<ModelShape> {
    let t = match req.params.window {
        Some(t) => t,
        None => {
            let g = open_raster(&req.reference, "reference")?.grid;
            let side = g.width.min(g.height);
            let mut t = default;
            while t > 32 && 3 * t > 2 * side {
                t /= 2;
            }
            t
        }
    };
    if t < 8 {
        bail!("--window must be at least 8 px");
    }
    Ok(ModelShape { tile: t, stride: t / 2, bands: None })
}

/// The phase-correlation run (no network): `simreg align --method phase-correlation`.
pub fn run_phase_correlation(req: &AlignRequest) -> Result<AlignSummary> {
    run(req, &classical_shape(req, 64)?, &mut PhaseCorrelation)
}

/// Window side of CFOG and of `auto` without a network (px): CFOG's orientation histograms
/// need more ground than phase correlation to peak distinctly on optical/SAR.
pub const CFOG_WINDOW: usize = 128;

/// `simreg align --method cfog`: CFOG per window within ±min(--max-shift, window/4) px.
pub fn run_cfog(req: &AlignRequest) -> Result<AlignSummary> {
    let shape = classical_shape(req, CFOG_WINDOW)?;
    let radius = ((shape.tile / 4) as f64).min(req.params.max_shift);
    run(req, &shape, &mut Cfog { radius })
}

/// `simreg align --method auto` without a model: CFOG windows around the whole-scene match.
pub fn run_auto_classical(req: &AlignRequest) -> Result<AlignSummary> {
    run_auto(req, &classical_shape(req, CFOG_WINDOW)?, None)
}

/// The model directory of `--model`: a `simreg train` directory, its model.safetensors, or a
/// `simreg adapt` run (whose model is in RUN/train).
pub fn model_dir(model: &Path) -> PathBuf {
    if model.is_file() {
        return model.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    }
    let train = model.join("train");
    if !model.join("model.json").is_file() && train.join("model.json").is_file() {
        return train;
    }
    model.to_path_buf()
}

/// The names of output files, as summaries list them.
fn file_names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned())).collect()
}
