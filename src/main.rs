mod cli;

use clap::Parser;
use cli::{Cli, Command, TileArgs};
use simreg::pipeline::{self, Pipeline};
use simreg::tiling::{
    self, manifest::TileParams, prepare::ModalityInput, SceneInput, TileOptions, TileSummary,
};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, like every other error: clap's first line, without its usage tips.
            let text = e.render().to_string();
            let first =
                text.lines().next().unwrap_or("bad arguments").trim_start_matches("error: ");
            eprintln!("simreg: error: {first}");
            return ExitCode::from(2);
        }
    };
    init_logging(cli.verbose, cli.quiet);
    let threads =
        cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // simreg-learn failed and said why in its own line.
        Err(e) if e.downcast_ref::<simreg::learn::ChildFailed>().is_some() => ExitCode::from(
            e.downcast_ref::<simreg::learn::ChildFailed>().map_or(1, |c| c.0.clamp(1, 255) as u8),
        ),
        Err(e) => {
            // One line: the error and its causes, joined.
            eprintln!("simreg: error: {}", simreg::raster::one_line(format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = if quiet { "error" } else { ["warn", "info", "debug"][verbose.min(2) as usize] };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIMREG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Tile(args) => {
            let json = args.json;
            let (scene, params, out) = tile_inputs(args);
            let s = tiling::run(&[scene], &params, &out, &TileOptions { quiet: cli.quiet })?;
            print_tile_summary(&s, json, cli.quiet)
        }
        Command::Synth(a) => {
            let params = simreg::synth::SynthParams {
                size: a.size,
                pixel_size: a.pixel_size,
                seed: a.seed,
                looks: a.looks,
                building_density: a.building_density,
                road_spacing: a.road_spacing,
                parcel_density: a.parcel_density,
                water_fraction: a.water_fraction,
                haze: a.haze,
                ..Default::default()
            };
            let s = simreg::synth::run(&params, &a.out)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else if !cli.quiet {
                println!(
                    "synthetic scene in {}: {}x{} px at {} m, {} buildings, {} roads, {} parcels",
                    s.out.display(),
                    a.size,
                    a.size,
                    a.pixel_size,
                    s.n_buildings,
                    s.n_roads,
                    s.n_parcels
                );
            }
            Ok(())
        }
        Command::Labels(a) => {
            let bias = match a.bias.as_deref() {
                None => [0.0, 0.0],
                Some([dx, dy]) => [*dx, *dy],
                Some(other) => anyhow::bail!("--bias takes two values DX,DY, not {}", other.len()),
            };
            let params = simreg::labels::LabelParams {
                amplitude: a.amplitude,
                field_amplitude: a.field_amplitude,
                bumps: a.bumps,
                bump_scale: a.bump_scale,
                centre: a.centre,
                interp: a.interp,
                seed: a.seed,
                noise: simreg::labels::noise::NoiseParams {
                    model: a.noise,
                    sigma: a.sigma,
                    corr_length: a.corr_length,
                    outliers: a.outliers,
                    outlier_magnitude: a.outlier_magnitude,
                    bias,
                },
            };
            let s = simreg::labels::run(
                &a.tiles,
                &a.out,
                &params,
                &simreg::labels::LabelOptions { quiet: cli.quiet },
            )?;
            // The noise parameters are recorded only in the run's effective pipeline file.
            pipeline::record_stage(&a.out, "labels", &params)?;
            print_labels_summary(&s, a.json, cli.quiet)
        }
        Command::Train(a) => {
            let params = simreg::learn::TrainParams {
                epochs: a.epochs,
                batch: a.batch,
                lr: a.lr,
                weight_decay: a.weight_decay,
                width: a.width,
                depth: a.depth,
                corr_radius: a.corr_radius,
                val_fraction: a.val_fraction,
                patience: a.patience,
                augment: !a.no_augment,
                seed: a.seed,
                device: a.device,
                enforce_similarity: a.enforce_similarity,
                pairs: a.pairs,
                enforce_sign: a.enforce_sign,
            };
            let s = simreg::learn::run_train(
                &a.labels,
                &a.out,
                &params,
                cli.quiet || a.json,
                cli.threads,
            )?;
            pipeline::record_stage(&a.out, "train", &params)?;
            print_train_summary(&s, a.json, cli.quiet)
        }
        Command::Predict(a) => {
            let s = simreg::learn::run_predict(
                &a.model,
                a.tiles.as_deref(),
                a.labels.as_deref(),
                &a.out,
                a.device,
                cli.threads,
            )?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else if !cli.quiet {
                let r = s
                    .rmse_labels_px
                    .map_or(String::new(), |v| format!("; RMSE vs labels {v:.3} px per axis"));
                println!("predicted {} tiles into {}{r}", s.n_tiles, s.out.display());
            }
            Ok(())
        }
        Command::Similarity(a) => {
            let need = |v: Option<std::path::PathBuf>,
                        sub: &str,
                        what: &str|
             -> anyhow::Result<std::path::PathBuf> {
                v.or_else(|| a.run.as_ref().map(|r| r.join(sub)))
                    .ok_or_else(|| anyhow::anyhow!("similarity: give a run directory or --{what}"))
            };
            let (model, labels, out) = (
                need(a.model.clone(), "train", "model")?,
                need(a.labels.clone(), "labels", "labels")?,
                need(a.out.clone(), "similarity", "out")?,
            );
            let params = simreg::learn::SimilarityParams {
                queries: a.query.clone(),
                n_queries: a.n_queries,
                k: a.k,
                max_memory_mb: a.max_memory,
                sketch_dim: a.sketch_dim,
                check_tiles: a.check_tiles,
                seed: a.seed,
                device: a.device,
            };
            let s = simreg::learn::run_similarity(
                &model,
                &labels,
                &out,
                &params,
                cli.quiet || a.json,
                cli.threads,
            )?;
            pipeline::record_stage(&out, "similarity", &params)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else if !cli.quiet {
                println!(
                    "similarity of {} tiles ({} trained on, {} parameters) in {}: N_S mean {:.1}, median {:.1}; {:.1} Jacobians/s; linear vs pairwise N_S max rel. error {:.1e}",
                    s.n_tiles, s.n_train, s.params, s.out.display(), s.ns_mean, s.ns_median, s.jacobians_per_s, s.linear_vs_pairwise_max_rel_err
                );
            }
            Ok(())
        }
        Command::Audit(a) => {
            let out = a.out.clone().unwrap_or_else(|| a.run.join("audit"));
            let params = simreg::audit::AuditParams {
                threshold: a.threshold,
                top: a.top,
                max_shift: a.max_shift,
            };
            let s = simreg::audit::run(&a.run, &out, &params, cli.quiet || a.json)?;
            pipeline::record_stage(&out, "audit", &params)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else if !cli.quiet {
                let measured = s
                    .measured_rmse_px
                    .map_or(String::new(), |m| format!(" (measured against truth: {m:.3} px)"));
                let auroc = match (s.auroc, s.auroc_residual_only) {
                    (Some(a), Some(r)) => format!("; AUROC {a:.3} (residual alone {r:.3})"),
                    _ => String::new(),
                };
                println!(
                    "audit of {} tiles in {}: network RMSE on held-out tiles, label-free {:.3} px{measured}; label noise {:.3} px; {} tiles flagged{auroc}",
                    s.n_tiles, s.out.display(), s.predicted_rmse_px, s.label_noise_inlier_rmse_px, s.n_flagged
                );
            }
            Ok(())
        }
        Command::Report(a) => {
            let out = a.out.clone().unwrap_or_else(|| a.run.join("report"));
            let s = simreg::report::run(&a.run, &out)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else if !cli.quiet {
                println!("report: {}", s.index.display());
            }
            Ok(())
        }
        Command::Toy1d(a) => {
            let params = simreg::learn::Toy1dParams {
                frequencies: a.frequencies,
                seeds: a.seeds,
                n: a.n,
                epochs: a.epochs,
                lr: a.lr,
                batch: a.batch,
            };
            params.check()?;
            let s = simreg::learn::run_toy1d(&a.out, &params, cli.quiet || a.json, cli.threads)?;
            pipeline::record_stage(&a.out, "toy1d", &params)?;
            print_toy1d_summary(&s, a.json, cli.quiet)
        }
        Command::EnforceStudy(a) => {
            #[derive(serde::Deserialize)]
            struct Inline {
                p: simreg::learn::EnforceStudyParams,
            }
            let inline: Inline =
                toml::from_str(&format!("p = {{ {} }}", a.params)).map_err(|e| {
                    anyhow::anyhow!(
                        "--params '{}': {}",
                        a.params,
                        simreg::raster::one_line(e.message())
                    )
                })?;
            let params = inline.p;
            let v = simreg::learn::run_enforce_study(
                &a.labels,
                &a.out,
                &params,
                cli.quiet || a.json,
                cli.threads,
            )?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if !cli.quiet {
                println!(
                    "enforce study in {} (step cost ratio {:.2}):",
                    a.out.display(),
                    v["step_cost_ratio"].as_f64().unwrap_or(f64::NAN)
                );
                for arm in &params.arms {
                    let x = &v["arms"][arm];
                    println!(
                        "  {arm:9}  reached {}/{}  steps {:?} ± {:?}  final error {:.3} ± {:.3} px",
                        x["reached"],
                        x["seeds"],
                        x["steps_mean"].as_f64(),
                        x["steps_std"].as_f64(),
                        x["final_error_mean"].as_f64().unwrap_or(f64::NAN),
                        x["final_error_std"].as_f64().unwrap_or(f64::NAN)
                    );
                }
            }
            Ok(())
        }
        Command::Align(a) => align(a, cli.threads, cli.quiet),
        Command::Batch(a) => batch(a, cli.threads, cli.quiet),
        Command::Run(args) => {
            let p = Pipeline::load(&args.pipeline)?;
            let out = args.out.or_else(|| p.run.out.clone()).unwrap_or_else(|| {
                let stem = args
                    .pipeline
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "run".into());
                std::path::Path::new("runs").join(stem)
            });
            let s = pipeline::run(&p, &out, cli.quiet, cli.threads)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                for sy in &s.synth {
                    if !cli.quiet {
                        println!(
                            "synthetic scene {}: {} buildings, {} roads, {} parcels",
                            sy.out.display(),
                            sy.n_buildings,
                            sy.n_roads,
                            sy.n_parcels
                        );
                    }
                }
                if let Some(t) = &s.tile {
                    print_tile_summary(t, false, cli.quiet)?;
                }
                if let Some(l) = &s.labels {
                    print_labels_summary(l, false, cli.quiet)?;
                }
                if let Some(t) = &s.train {
                    print_train_summary(t, false, cli.quiet)?;
                }
                if let (Some(sm), false) = (&s.similarity, cli.quiet) {
                    println!(
                        "similarity: {} tiles, N_S mean {:.1} median {:.1} → {}",
                        sm.n_tiles,
                        sm.ns_mean,
                        sm.ns_median,
                        sm.out.display()
                    );
                }
                if let (Some(a), false) = (&s.audit, cli.quiet) {
                    let measured = a
                        .measured_rmse_px
                        .map_or(String::new(), |m| format!(" (against truth {m:.3} px)"));
                    println!(
                        "audit: network RMSE on held-out tiles, label-free {:.3} px{measured}; label noise {:.3} px; {} labels flagged → {}",
                        a.predicted_rmse_px, a.label_noise_inlier_rmse_px, a.n_flagged, a.out.display()
                    );
                }
                if let Some(t) = &s.toy1d {
                    print_toy1d_summary(t, false, cli.quiet)?;
                }
                if !s.sweep.is_empty() && !cli.quiet {
                    println!("noise sweep (held-out RMSE per axis, px): σ | labels vs truth | network vs truth | ratio");
                    for t in &s.sweep {
                        let (l, n) = (
                            t.label_rmse_truth_px.unwrap_or(f64::NAN),
                            t.net_rmse_truth_px.unwrap_or(f64::NAN),
                        );
                        let ratio =
                            if l > 1e-6 { format!("{:>5.2}", n / l) } else { "    -".into() };
                        println!(
                            "  {:>4} | {l:>6.3} | {n:>6.3} | {ratio}",
                            t.sigma_px.unwrap_or(f64::NAN)
                        );
                    }
                }
            }
            if !args.json && !cli.quiet {
                println!("run directory: {}", s.run_dir.display());
            }
            Ok(())
        }
        Command::Info { json, device } => {
            // GDAL here; libtorch in simreg-learn (loading it is what simreg avoids).
            let mut cmd = simreg::learn::command(false, cli.threads)?;
            cmd.arg("info");
            if let Some(d) = device {
                cmd.arg("--device").arg(d.name());
            }
            let gdal = gdal::version::version_info("RELEASE_NAME");
            if json {
                let out = cmd.arg("--json").output()?;
                if !out.status.success() {
                    eprint!("{}", String::from_utf8_lossy(&out.stderr));
                    return Err(simreg::learn::ChildFailed(out.status.code().unwrap_or(1)).into());
                }
                let torch: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                let v = serde_json::json!({"simreg": env!("CARGO_PKG_VERSION"), "gdal": gdal, "libtorch": torch});
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            } else {
                println!("simreg {} | GDAL {gdal}", env!("CARGO_PKG_VERSION"));
                simreg::learn::run_child(cmd)
            }
        }
    }
}

fn tile_inputs(a: TileArgs) -> (SceneInput, TileParams, std::path::PathBuf) {
    let scene = SceneInput {
        name: a.name,
        reference: ModalityInput {
            files: a.reference,
            bands: a.reference_bands,
            kind: a.reference_kind,
        },
        moving: ModalityInput { files: a.moving, bands: a.moving_bands, kind: a.moving_kind },
        map: a.map.map(|f| ModalityInput { files: vec![f], bands: None, kind: None }),
        synth: None,
    };
    let params = TileParams {
        tile_size: a.tile_size,
        overlap: a.overlap,
        min_valid: a.min_valid,
        edge: a.edge,
        deflate: a.deflate,
    };
    (scene, params, a.out)
}

fn print_tile_summary(s: &TileSummary, json: bool, quiet: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else if !quiet {
        if s.up_to_date {
            println!(
                "tiles up to date in {}: {} tiles from {} scene(s); nothing to do",
                s.out.display(),
                s.n_tiles,
                s.n_scenes
            );
        } else {
            println!(
                "tiled {} scene(s): {} tiles written to {} ({} windows, {} rejected below min-valid, {} reused) in {:.2} s ({:.1} tiles/s, {:.1} Mpx/s)",
                s.n_scenes, s.n_tiles, s.out.display(), s.n_windows, s.n_rejected, s.n_reused, s.seconds, s.tiles_per_s, s.megapixels_per_s
            );
        }
    }
    Ok(())
}

fn print_labels_summary(
    s: &simreg::labels::LabelSummary,
    json: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else if !quiet {
        let state = if s.up_to_date { "up to date" } else { "written" };
        println!(
            "labels {state} in {}: {} tiles, noise model {}, label noise RMSE {:.3}/{:.3} px (x/y)",
            s.out.display(),
            s.n_tiles,
            s.noise_model,
            s.label_noise_rmse_px[0],
            s.label_noise_rmse_px[1]
        );
    }
    Ok(())
}

fn print_train_summary(
    s: &simreg::learn::TrainSummary,
    json: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else if !quiet {
        let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3} px"));
        println!(
            "trained {} parameters on {} tiles ({} held out) on {}, {:.0} samples/s; held-out RMSE per axis: labels vs truth {}, network vs truth {}, network vs labels {:.3} px; model in {}",
            s.params, s.n_train, s.n_val, s.device, s.samples_per_s, f(s.label_rmse_truth_px), f(s.net_rmse_truth_px), s.net_rmse_labels_px, s.out.display()
        );
    }
    Ok(())
}

fn print_toy1d_summary(
    s: &simreg::learn::Toy1dSummary,
    json: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else if !quiet {
        let flag = |v: Option<bool>| v.map_or("n/a", |b| if b { "yes" } else { "no" });
        println!(
            "1-D toy (seeds {:?}, n = {}, {} epochs, {:.1} s per run) → {}",
            s.settings.seeds,
            s.settings.n,
            s.settings.epochs,
            s.seconds_per_run,
            s.out.display()
        );
        println!("  f | mean N_S | corr(N_S, log(1+curvature)) | MAE");
        for t in &s.frequencies {
            let c = t.corr_mean.map_or("n/a".to_string(), |c| format!("{c:+.2}"));
            println!("  {:>2} | {:>8.1} | {c:>6} | {:.4}", t.f, t.ns_mean, t.mae);
        }
        println!(
            "  mean N_S strictly decreasing in f: {}; corr < -0.5 for f <= 2: {}",
            flag(s.ns_strictly_decreasing),
            flag(s.corr_below_minus_half_for_f_le_2)
        );
    }
    Ok(())
}

fn align(a: cli::AlignArgs, threads: Option<usize>, quiet: bool) -> anyhow::Result<()> {
    use simreg::align::{scene, AlignRequest, Method};
    if let Some(shifts) = &a.apply {
        let s = scene::apply(shifts, &a.moving, a.moving_kind, &a.out, quiet)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&s)?);
        } else if !quiet {
            println!(
                "applied '{}' to '{}': {}/corrected.tif (mean shift {:.3}, {:.3} px)",
                shifts.display(),
                a.moving.display(),
                a.out.display(),
                s.mean_shift_px[0],
                s.mean_shift_px[1]
            );
        }
        return Ok(());
    }
    let req = AlignRequest {
        method: a.method,
        reference: a.reference.clone().expect("clap: required without --apply"),
        moving: a.moving,
        out: a.out,
        truth: a.truth,
        reference_bands: a.reference_bands,
        moving_bands: a.moving_bands,
        moving_kind: a.moving_kind,
        stride: a.stride,
        window: a.window,
        min_valid: a.min_valid,
        batch: a.batch,
        model: a.model,
        similarity: a.similarity,
        labels: a.labels,
        no_reliability: a.no_reliability,
        device: a.device,
        quiet,
    };
    let s = match req.method {
        Method::PhaseCorrelation => scene::run_phase_correlation(&req)?,
        Method::Network => simreg::learn::run_align(&req, threads)?,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else if !quiet {
        let err = match (s.median_error_px, s.baseline_median_error_px) {
            (Some(e), Some(b)) => format!("; median error {e:.3} px (phase correlation {b:.3} px)"),
            _ => String::new(),
        };
        println!(
            "aligned {}x{} px with {} in {:.1} s ({:.2} Mpx/s): mean shift ({:.3}, {:.3}) px, phase correlation ({:.3}, {:.3}) px{err}; outputs in {}",
            s.width, s.height, s.method, s.seconds, s.megapixels_per_s, s.mean_shift_px[0], s.mean_shift_px[1], s.baseline.mean_shift_px[0], s.baseline.mean_shift_px[1], req.out.display()
        );
    }
    Ok(())
}

fn batch(a: cli::BatchArgs, threads: Option<usize>, quiet: bool) -> anyhow::Result<()> {
    let p = simreg::align::batch::BatchParams {
        input: a.input,
        pattern: a.pattern,
        reference_role: a.reference_role,
        moving_role: a.moving_role,
        out: a.out.clone(),
        method: a.method,
        model: a.model,
        jobs: a.jobs,
        retry_failed: a.retry_failed,
        threads: Some(threads.unwrap_or(1)),
        quiet,
    };
    let s = simreg::align::batch::run(&p)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else if !quiet {
        println!("batch: {} pairs: {} ok, {} failed ({} aligned now, {} done before) in {:.1} s; {}/status.csv", s.n_pairs, s.ok, s.failed, s.processed, s.skipped, s.seconds, a.out.display());
    }
    Ok(())
}
