//! `simreg similarity`: runs the two passes over a labelled run with its trained model, and
//! writes ns.csv, one N_S raster per scene, knn.json (+ thumbnails) and summary.json.
use super::{
    kernel, memory_per_sample, peak_rss_mb, sketch::CountSketch, two_passes, Passes, Sets, BLOCK, D,
};
use crate::model::Net;
use crate::train::data::LabelledRun;
use crate::train::predict::load_model;
use anyhow::{bail, Context, Result};
use simreg::artefacts::similarity::{
    write_ns_csv, KnnNeighbour, KnnQuery, NsRow, SimilarityDir, SimilarityParams,
    SimilaritySummary, Split,
};
use simreg::artefacts::write_json;
use simreg::raster::write::{write_geotiff, BandData, Compression, GeoTiffOptions};
use simreg::util::output;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Tensor};

/// The stage (see the module doc).
pub fn run(
    model_dir: &Path,
    labels_dir: &Path,
    out: &Path,
    p: &SimilarityParams,
    quiet: bool,
) -> Result<SimilaritySummary> {
    let start = Instant::now();
    // Claimed before the work: a foreign folder or a second writer is refused at once.
    let claim = output::claim(out, "similarity", &[model_dir, labels_dir])?;
    let s = Setup::new(model_dir, labels_dir, p, None, quiet)?;
    let passes = with_progress(quiet, s.run.len(), |progress| {
        two_passes(&s.net, s.sets(), s.batch, s.sketch.as_ref(), &mut |i| s.load(i), progress)
    })?;
    claim.build(|partial| write_outputs(&s, &passes, out, partial, start))
}

/// The working memory of the process before the passes, MB (libtorch and the model; measured
/// ≈ 190 MB on CPU), in the batch size's budget.
const BASE_MB: usize = 256;

/// What every form of the stage (one process, its shards, their merge) sets up alike: the
/// model, the labelled run, the sets S and held, the batch size and the sketch.
pub struct Setup {
    pub model_dir: PathBuf,
    pub device: tch::Device,
    _vs: tch::nn::VarStore,
    pub net: Net,
    pub run: LabelledRun,
    pub train: Vec<usize>,
    pub in_train: Vec<bool>,
    pub queries: Vec<usize>,
    /// The queries, then check tiles from S: exact kernels against every sample.
    pub held: Vec<usize>,
    pub batch: usize,
    pub sketch: Option<CountSketch>,
    pub params: i64,
    pub p: SimilarityParams,
}

impl Setup {
    /// Opens the model and the labels and checks they belong together; `batch` overrides the
    /// batch size the memory budget gives (the shards of one split use one batch size).
    pub fn new(
        model_dir: &Path,
        labels_dir: &Path,
        p: &SimilarityParams,
        batch: Option<usize>,
        quiet: bool,
    ) -> Result<Setup> {
        let device = crate::device::resolve(p.device)?;
        let (vs, net, info) = load_model(model_dir, device)?;
        let run = LabelledRun::open(labels_dir)?;
        if info.tiles_input_hash != run.target.tiles_input_hash {
            bail!("model '{}' was trained on other tiles than labels '{}' use (tiles '{}'); run similarity on the run the model was trained on", model_dir.display(), labels_dir.display(), run.target.tiles_dir.display());
        }
        let cfg = &info.net;
        if (cfg.reference_bands, cfg.moving_bands, cfg.tile_size)
            != (run.reference_bands, run.moving_bands, run.target.tile_size)
        {
            bail!("model '{}' expects {}+{} bands on {}-px tiles; labels '{}' have {}+{} bands on {}-px tiles", model_dir.display(), cfg.reference_bands, cfg.moving_bands, cfg.tile_size, labels_dir.display(), run.reference_bands, run.moving_bands, run.target.tile_size);
        }
        let train = run.trained_on(model_dir)?;
        let index: BTreeMap<&str, usize> =
            run.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let n = run.len();
        let in_train: Vec<bool> = {
            let mut v = vec![false; n];
            train.iter().for_each(|&i| v[i] = true);
            v
        };

        // Query tiles: as asked, or spread over the run; plus check tiles from S.
        let queries: Vec<usize> = if p.queries.is_empty() {
            (0..p.n_queries.min(n)).map(|k| (k * n + n / 2) / p.n_queries.max(1)).collect()
        } else {
            p.queries
                .iter()
                .map(|q| {
                    index.get(q.as_str()).copied().with_context(|| {
                        format!(
                            "query tile '{q}' is not a labelled tile of '{}' (ids look like '{}')",
                            labels_dir.display(),
                            run.ids[0]
                        )
                    })
                })
                .collect::<Result<_>>()?
        };
        let mut held = queries.clone();
        for k in 0..p.check_tiles.min(train.len()) {
            let i = train[(k * train.len()) / p.check_tiles.max(1)];
            if !held.contains(&i) {
                held.push(i);
            }
        }

        // Batch size from the memory budget.
        let (per_sample, params) = memory_per_sample(&net, device);
        let sketch_bytes = if p.sketch_dim > 0 {
            n * 2 * p.sketch_dim * 4 + CountSketch::bytes(params)
        } else {
            0
        };
        // The process itself (libtorch, the model) counts against the budget too: a fixed
        // estimate (≈ 190 MB measured on CPU), not this process's own measure, so that every
        // shard of a split, on any node, derives the same batch size from the same budget.
        let base = BASE_MB << 20;
        let fixed = base
            + params as usize * (4 + 8)
            + held.len() * (D as usize * params as usize * 16)
            + sketch_bytes;
        let budget = (p.max_memory_mb * 1024.0 * 1024.0) as usize;
        let need_one = fixed + per_sample;
        if budget < need_one {
            bail!("--max-memory {} MB is too small: one batch of one sample needs {:.0} MB ({:.0} MB for libtorch, the model, kernel sums, {} held tiles and sketches, {:.0} MB per sample)", p.max_memory_mb, need_one as f64 / 1048576.0, fixed as f64 / 1048576.0, held.len(), per_sample as f64 / 1048576.0);
        }
        let batch = batch.unwrap_or_else(|| ((budget - fixed) / per_sample).clamp(1, BLOCK).min(n));
        let sketch = (p.sketch_dim > 0)
            .then(|| CountSketch::new(params, p.sketch_dim as i64, p.seed, device));
        if !quiet {
            eprintln!("similarity: {n} tiles, |S| = {}, {params} parameters, batch {batch} (≈{:.0} MB per sample, budget {} MB), device {device:?}", train.len(), per_sample as f64 / 1048576.0, p.max_memory_mb);
        }
        Ok(Setup {
            model_dir: model_dir.to_path_buf(),
            device,
            _vs: vs,
            net,
            run,
            train,
            in_train,
            queries,
            held,
            batch,
            sketch,
            params,
            p: p.clone(),
        })
    }

    pub fn sets(&self) -> Sets<'_> {
        Sets { n: self.run.len(), train: &self.train, held: &self.held }
    }

    /// Samples `idx` as (reference, moving) tensors on the device.
    pub fn load(&self, idx: &[usize]) -> Result<(Tensor, Tensor)> {
        let run = &self.run;
        let (t, cr, cm) =
            (run.target.tile_size as i64, run.reference_bands as i64, run.moving_bands as i64);
        let s = run.read(idx)?;
        let b = idx.len() as i64;
        Ok((
            Tensor::from_slice(&s.reference).view([b, cr, t, t]).to(self.device),
            Tensor::from_slice(&s.moving).view([b, cm, t, t]).to(self.device),
        ))
    }
}

/// Runs `work` with a progress bar over `n` samples (none when quiet).
pub fn with_progress<T>(
    quiet: bool,
    n: usize,
    work: impl FnOnce(&mut dyn FnMut(&str, usize, usize)) -> Result<T>,
) -> Result<T> {
    let bar = (!quiet).then(|| indicatif::ProgressBar::new(n as u64));
    let mut progress = |what: &str, done: usize, total: usize| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_message(what.to_string());
            b.set_position(done as u64);
        }
    };
    let out = work(&mut progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out
}

/// Writes the stage's outputs from the passes into `partial` (which becomes `out`).
pub fn write_outputs(
    s: &Setup,
    passes: &Passes,
    out: &Path,
    partial: &Path,
    start: Instant,
) -> Result<SimilaritySummary> {
    let (run, train, held, queries, p) = (&s.run, &s.train, &s.held, &s.queries, &s.p);
    let (n, batch, device, model_dir) = (run.len(), s.batch, s.device, s.model_dir.as_path());
    let (t, cr, cm) =
        (run.target.tile_size as i64, run.reference_bands as i64, run.moving_bands as i64);
    let labels: Vec<[f64; 2]> = run.labels.iter().map(|e| e.label).collect();
    let of = |v: &[[f64; 2]]| train.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let sigma_hat = crate::train::rmse(&of(&passes.pred), &of(&labels));
    let sketched = s.sketch.as_ref().map(|_| sketched_factors(passes, train));
    let in_train = &s.in_train;
    let dir = SimilarityDir::new(partial);
    // Exact values for the held tiles.
    let ti = Tensor::from_slice(&train.iter().map(|&v| v as i64).collect::<Vec<_>>());
    let k_s = passes.held_k.index_select(1, &ti);
    let f_exact = kernel::denoising_factors(&k_s);
    let y = Tensor::from_slice(&passes.pred.iter().flat_map(|v| *v).collect::<Vec<_>>())
        .view([n as i64, 2]);
    let e_exact = kernel::neighbour_averages(&k_s, &y.index_select(0, &ti));
    let ns_pair =
        passes.held_kc.index_select(1, &ti).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    let mut max_rel = 0.0f64;
    for (h, &i) in held.iter().enumerate() {
        let pw = ns_pair.double_value(&[h as i64]);
        max_rel = max_rel.max((passes.ns[i] - pw).abs() / pw.abs().max(1e-12));
    }
    let mut knn = Vec::new();
    let (mut err_f, mut err_k) = (None::<f64>, None::<f64>);
    let mut thumbs: Vec<usize> = Vec::new();
    for (h, &i) in queries.iter().enumerate() {
        let h = h as i64;
        let row: Vec<f64> = Vec::try_from(passes.held_kc.get(h))?;
        let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let mut hist = vec![0usize; 20];
        for &v in &row {
            hist[(((v + 1.0) / 2.0 * 20.0).floor() as usize).min(19)] += 1;
        }
        let fe = f_exact.get(h);
        let f_trace_exact = fe.trace().double_value(&[]);
        let f_trace_sketch = sketched.as_ref().map(|s| s.f_trace[i]);
        if let (Some(fs), Some(sk)) = (f_trace_sketch, &passes.sketches) {
            err_f =
                Some(err_f.unwrap_or(0.0).max((fs - f_trace_exact).abs() / f_trace_exact.abs()));
            let est = sk
                .index_select(0, &ti)
                .to_kind(Kind::Double)
                .unsqueeze(0)
                .matmul(&sk.get(i as i64).to_kind(Kind::Double).transpose(0, 1))
                .squeeze_dim(0);
            let exact = passes.held_k.get(h).index_select(0, &ti);
            let e = ((&est - &exact).abs().max() / exact.abs().max()).double_value(&[]);
            err_k = Some(err_k.unwrap_or(0.0).max(e));
        }
        let gap = {
            let e = e_exact.get(h);
            ((passes.pred[i][0] - e.double_value(&[0])).powi(2)
                + (passes.pred[i][1] - e.double_value(&[1])).powi(2))
            .sqrt()
        };
        let neighbours: Vec<KnnNeighbour> = order
            .iter()
            .take(p.k)
            .map(|&j| KnnNeighbour {
                id: run.ids[j].clone(),
                kc: row[j],
                thumbnail: SimilarityDir::thumbnail(&run.ids[j]),
            })
            .collect();
        thumbs.push(i);
        thumbs.extend(order.iter().take(p.k));
        knn.push(KnnQuery {
            id: run.ids[i].clone(),
            thumbnail: SimilarityDir::thumbnail(&run.ids[i]),
            ns_linear: passes.ns[i],
            ns_pairwise: ns_pair.double_value(&[h]),
            f_exact: [
                [fe.double_value(&[0, 0]), fe.double_value(&[0, 1])],
                [fe.double_value(&[1, 0]), fe.double_value(&[1, 1])],
            ],
            f_trace_exact,
            f_trace_sketch,
            neighbour_gap_px: gap,
            kc_histogram: hist,
            neighbours,
        });
    }
    thumbs.sort_unstable();
    thumbs.dedup();
    let s = run.read(&thumbs)?;
    let (tu, cr, cm) = (t as usize, cr as usize, cm as usize);
    for (k, &i) in thumbs.iter().enumerate() {
        let path = dir.path().join(SimilarityDir::thumbnail(&run.ids[i]));
        std::fs::create_dir_all(path.parent().expect("thumbs/"))?;
        simreg::util::thumbs::write_pair_png(
            &path,
            &s.reference[k * cr * tu * tu..][..cr * tu * tu],
            cr,
            &s.moving[k * cm * tu * tu..][..cm * tu * tu],
            cm,
            tu,
        )?;
    }
    write_json(&dir.knn_json(), &knn)?;
    super::stored::write(partial, &passes.s_a, train.len(), model_dir)?;

    let rows: Vec<NsRow> = (0..n)
        .map(|i| {
            let (ft, gap) =
                sketched.as_ref().map_or((f64::NAN, f64::NAN), |s| (s.f_trace[i], s.gap[i]));
            NsRow {
                tile: run.ids[i].clone(),
                split: if in_train[i] { Split::Train } else { Split::Val },
                ns: passes.ns[i],
                g_norm: passes.g_norm[i],
                f_trace: ft,
                neighbour_gap_px: gap,
                pred_dx: passes.pred[i][0],
                pred_dy: passes.pred[i][1],
                label_dx: labels[i][0],
                label_dy: labels[i][1],
                predicted_error_px: sigma_hat * (ft / 2.0).sqrt(),
            }
        })
        .collect();
    write_ns_csv(&dir.ns_csv(), &rows)?;
    write_ns_rasters(run, passes, &dir)?;

    let mut sorted = passes.ns.clone();
    sorted.sort_by(f64::total_cmp);
    let summary = SimilaritySummary {
        out: out.to_path_buf(),
        n_tiles: n,
        n_train: train.len(),
        params: passes.params,
        ns_mean: passes.ns.iter().sum::<f64>() / n as f64,
        ns_median: median(&sorted),
        jacobians_per_s: passes.jacobians as f64 / passes.jacobian_seconds.max(1e-9),
        batch,
        peak_rss_mb: peak_rss_mb(),
        linear_vs_pairwise_max_rel_err: max_rel,
        n_checked: held.len(),
        sketch_dim: p.sketch_dim,
        sketch_rel_err_f_trace: err_f,
        sketch_rel_err_kernel: err_k,
        sigma_hat_px: sigma_hat,
        device: format!("{device:?}").to_lowercase(),
        seconds: start.elapsed().as_secs_f64(),
    };
    write_json(&dir.summary_json(), &summary)?;
    Ok(summary)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// Denoising-factor traces and neighbour gaps of every tile from the count sketches.
struct Sketched {
    f_trace: Vec<f64>,
    gap: Vec<f64>,
}

fn sketched_factors(passes: &Passes, train: &[usize]) -> Sketched {
    let sk = passes.sketches.as_ref().expect("sketches asked for").to_kind(Kind::Double);
    let (n, m) = (sk.size()[0], sk.size()[2]);
    let ti = Tensor::from_slice(&train.iter().map(|&v| v as i64).collect::<Vec<_>>());
    let s_train = sk.index_select(0, &ti).reshape([-1, m]); // (|S|·d, m)
    let y =
        Tensor::from_slice(&passes.pred.iter().flat_map(|v| *v).collect::<Vec<_>>()).view([n, 2]);
    let y_s = y.index_select(0, &ti);
    let ns = train.len() as i64;
    let (mut f_trace, mut gap) = (Vec::with_capacity(n as usize), Vec::with_capacity(n as usize));
    let chunk = 64;
    let mut start = 0;
    while start < n {
        let c = chunk.min(n - start);
        let sc = sk.narrow(0, start, c).reshape([-1, m]); // (c·d, m)
                                                          // [j·d + a, i·d + b] = ⟨S g_j^a, S g_i^b⟩ ≈ K(x_j, x_i)[a, b].
        let k = s_train.matmul(&sc.transpose(0, 1)).view([ns, D, c, D]).permute([2, 0, 1, 3]);
        let f = kernel::denoising_factors(&k);
        f_trace.extend(
            Vec::<f64>::try_from(f.diagonal(0, 1, 2).sum_dim_intlist(
                [1i64].as_slice(),
                false,
                Kind::Double,
            ))
            .unwrap_or_default(),
        );
        let e = kernel::neighbour_averages(&k, &y_s);
        let d = (y.narrow(0, start, c) - e)
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
            .sqrt();
        gap.extend(Vec::<f64>::try_from(d).unwrap_or_default());
        start += c;
    }
    Sketched { f_trace, gap }
}

/// One GeoTIFF per scene, `ns_<scene>.tif`: each cell holds the mean N_S of the tiles whose
/// centre window covers it (NaN where none does). Scenes larger than 4096² cells are written
/// at a whole-number coarser resolution.
fn write_ns_rasters(run: &LabelledRun, passes: &Passes, dir: &SimilarityDir) -> Result<()> {
    let (o, c) = (run.target.centre_offset as i64, run.target.centre_size as i64);
    for scene in &run.manifest.scenes {
        let g = &scene.grid;
        let factor =
            ((g.width * g.height) as f64 / (4096.0 * 4096.0)).sqrt().ceil().max(1.0) as usize;
        let (w, h) = (g.width.div_ceil(factor), g.height.div_ceil(factor));
        let (mut sum, mut count) = (vec![0f64; w * h], vec![0u32; w * h]);
        for i in 0..run.len() {
            let tile = run.tile(i);
            if tile.scene != scene.name {
                continue;
            }
            let (c0, r0) = (tile.window.col + o, tile.window.row + o);
            // Cells whose centre lies inside the centre window.
            let cells = |a: i64| ((a as f64 / factor as f64 - 0.5).ceil().max(0.0)) as usize;
            let (x0, x1) = (cells(c0), cells(c0 + c).min(w));
            let (y0, y1) = (cells(r0), cells(r0 + c).min(h));
            for y in y0..y1 {
                for x in x0..x1 {
                    sum[y * w + x] += passes.ns[i];
                    count[y * w + x] += 1;
                }
            }
        }
        let px: Vec<f32> = sum
            .iter()
            .zip(&count)
            .map(|(s, &k)| if k > 0 { (s / k as f64) as f32 } else { f32::NAN })
            .collect();
        let mut gt = g.geotransform;
        for k in [1, 2, 4, 5] {
            gt[k] *= factor as f64;
        }
        let path = dir.ns_tif(&scene.name);
        write_geotiff(
            &path,
            &g.crs_wkt,
            gt,
            w,
            h,
            vec![BandData { description: "N_S".into(), pixels: px }],
            &[("SIMREG_NS_CELL_FACTOR", factor.to_string())],
            GeoTiffOptions::compressed(Compression::Deflate),
        )?;
    }
    Ok(())
}
