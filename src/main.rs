mod cli;

use cli::{Cli, Command, Executor, MergeStage};
use serde::Serialize;
use simreg::artefacts::enforce::EnforceStudyParams;
use simreg::artefacts::learn::{
    EnforceStudyRequest, InfoRequest, PredictRequest, SimilarityMergeRequest,
    SimilarityReduceRequest, SimilarityRequest, SimilarityShardRequest, Toy1dRequest, TrainRequest,
};
use simreg::artefacts::tiles::{ModalityInput, SceneInput};
use simreg::artefacts::{align::AlignRequest, RunDir};
use simreg::learn::{self, Call, ChildFailed};
use simreg::pipeline::{self, Pipeline};
use simreg::util::text::one_line;
use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    // First: before any other thread starts (they inherit the blocked signals).
    simreg::util::interrupt::install();
    let cli = match cli::parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("simreg: error: {}", cli::one_line_error(&e));
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
        Err(e) if e.downcast_ref::<ChildFailed>().is_some() => {
            let code = e.downcast_ref::<ChildFailed>().map_or(1, |c| c.0);
            ExitCode::from(code.clamp(1, 255) as u8)
        }
        Err(e) => {
            // Interrupted: the consequent error is not the story; the handler exits.
            simreg::util::interrupt::wait_if_pending();
            // One line: the error and its causes, joined.
            eprintln!("simreg: error: {}", one_line(format!("{e:#}")));
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

/// Prints a summary: its JSON with `--json`, else its one `Display` (nothing with `--quiet`).
fn print<S: Serialize + Display>(s: &S, json: bool, quiet: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else if !quiet {
        println!("{s}");
    }
    Ok(())
}

/// Prints a summary as JSON with `--json`, else as text (even with `--quiet`: it is the
/// command's answer).
fn print_json_or<S: Serialize + Display>(s: &S, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        println!("{s}");
    }
    Ok(())
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let quiet = cli.quiet;
    // The learning stages run in simreg-learn; with --json its progress would only be noise.
    let call =
        |json: bool| Call { quiet: quiet || json, threads: cli.threads, capture_errors: false };
    match cli.command {
        Command::Tile(a) => {
            let scene = SceneInput {
                name: a.name,
                reference: ModalityInput {
                    files: a.reference,
                    bands: a.reference_bands,
                    kind: a.reference_kind,
                },
                moving: ModalityInput {
                    files: a.moving,
                    bands: a.moving_bands,
                    kind: a.moving_kind,
                },
                map: a.map.map(|f| ModalityInput { files: vec![f], bands: None, kind: None }),
                synth: None,
            };
            let opts =
                simreg::tiling::TileOptions { quiet, limits: a.limits, ..Default::default() };
            let s = match a.shard {
                Some(shard) => {
                    simreg::tiling::run_shard(&[scene], &a.params, &a.out, &opts, shard)?
                }
                None => simreg::tiling::run(&[scene], &a.params, &a.out, &opts)?,
            };
            print(&s, a.json, quiet)
        }
        Command::Merge(a) => match a.stage {
            MergeStage::Tile => print(&simreg::tiling::merge(&a.shards, &a.out)?, a.json, quiet),
            MergeStage::Labels => print(&simreg::labels::merge(&a.shards, &a.out)?, a.json, quiet),
            MergeStage::Predict => {
                print(&simreg::artefacts::predict::merge(&a.shards, &a.out)?, a.json, quiet)
            }
            MergeStage::Batch => {
                print(&simreg::align::batch_shard::merge(&a.shards, &a.out)?, a.json, quiet)
            }
            MergeStage::Similarity => {
                let req = SimilarityMergeRequest { shards: a.shards, out: a.out };
                print(&learn::call(req, &call(a.json))?, a.json, quiet)
            }
        },
        Command::Synth(a) => print(&simreg::synth::run(&a.params, &a.out)?, a.json, quiet),
        Command::Labels(a) => {
            let opts = simreg::labels::LabelOptions { quiet };
            let s = match a.shard {
                Some(shard) => {
                    simreg::labels::run_shard(&a.tiles, &a.out, &a.params, &opts, shard)?
                }
                None => {
                    let s = simreg::labels::run(&a.tiles, &a.out, &a.params, &opts)?;
                    pipeline::record_stage(&a.out, "labels", &a.params)?;
                    s
                }
            };
            print(&s, a.json, quiet)
        }
        Command::Train(a) => {
            a.params.check()?;
            let req =
                TrainRequest { labels: a.labels, out: a.out.clone(), params: a.params.clone() };
            let s = learn::call(req, &call(a.json))?;
            pipeline::record_stage(&a.out, "train", &a.params)?;
            print(&s, a.json, quiet)
        }
        Command::Predict(a) => {
            let req = PredictRequest {
                model: a.model,
                tiles: a.tiles,
                labels: a.labels,
                out: a.out,
                device: a.device,
                shard: a.shard,
            };
            print(&learn::call(req, &call(true))?, a.json, quiet)
        }
        Command::Similarity(a) => {
            if let Some(cli::SimilarityCommand::Reduce(r)) = a.command {
                let req = SimilarityReduceRequest { shards: r.shards, out: r.out };
                return print(&learn::call(req, &call(r.json))?, r.json, quiet);
            }
            let run = a.run.as_ref().map(RunDir::new);
            let need = |v: Option<PathBuf>, of_run: &dyn Fn(&RunDir) -> PathBuf, what: &str| {
                v.or_else(|| run.as_ref().map(of_run))
                    .ok_or_else(|| anyhow::anyhow!("similarity: give a run directory or --{what}"))
            };
            let req = SimilarityRequest {
                model: need(a.model, &|r| r.train().path().into(), "model")?,
                labels: need(a.labels, &|r| r.labels().path().into(), "labels")?,
                out: need(a.out, &|r| r.similarity().path().into(), "out")?,
                params: a.params.clone(),
            };
            if let Some(shard) = a.shard {
                let req = SimilarityShardRequest {
                    model: req.model,
                    labels: req.labels,
                    out: req.out,
                    params: req.params,
                    shard,
                    s_a: a.s_a,
                };
                return print(&learn::call(req, &call(a.json))?, a.json, quiet);
            }
            let out = req.out.clone();
            let s = learn::call(req, &call(a.json))?;
            pipeline::record_stage(&out, "similarity", &a.params)?;
            print(&s, a.json, quiet)
        }
        Command::Audit(a) => {
            let run = RunDir::new(&a.run);
            let out = a.out.unwrap_or_else(|| run.audit().path().into());
            let s = simreg::audit::run(&run, &out, &a.params, quiet || a.json)?;
            pipeline::record_stage(&out, "audit", &a.params)?;
            print(&s, a.json, quiet)
        }
        Command::Report(a) => {
            let run = RunDir::new(&a.run);
            let out = a.out.unwrap_or_else(|| run.report().path().into());
            print(&simreg::report::run(&run, &out)?, a.json, quiet)
        }
        Command::Toy1d(a) => {
            a.params.check()?;
            let req = Toy1dRequest { out: a.out.clone(), params: a.params.clone() };
            let s = learn::call(req, &call(a.json))?;
            pipeline::record_stage(&a.out, "toy1d", &a.params)?;
            print(&s, a.json, quiet)
        }
        Command::EnforceStudy(a) => {
            #[derive(serde::Deserialize)]
            struct Inline {
                p: EnforceStudyParams,
            }
            let inline: Inline =
                toml::from_str(&format!("p = {{ {} }}", a.params)).map_err(|e| {
                    anyhow::anyhow!("--params '{}': {}", a.params, one_line(e.message()))
                })?;
            let req = EnforceStudyRequest { labels: a.labels, out: a.out, params: inline.p };
            print(&learn::call(req, &call(a.json))?, a.json, quiet)
        }
        Command::Align(a) => {
            if let Some(shifts) = &a.apply {
                let s = simreg::align::scene::apply(
                    shifts,
                    &a.moving,
                    a.params.moving_kind,
                    &a.out,
                    &a.limits,
                    quiet,
                )?;
                return print(&s, a.json, quiet);
            }
            let req = AlignRequest {
                reference: a.reference.expect("clap: required without --apply"),
                moving: a.moving,
                out: a.out,
                truth: a.truth,
                params: a.params,
                limits: a.limits,
                quiet,
            };
            let s = simreg::align::run(req, cli.threads)?;
            print(&s, a.json, quiet)
        }
        Command::Batch(a) => {
            let s = simreg::align::batch::run_shard(
                &a.input,
                &a.out,
                &a.params,
                Some(cli.threads.unwrap_or(1)),
                quiet,
                a.shard,
            )?;
            print(&s, a.json, quiet)
        }
        Command::Adapt(a) => {
            let s = simreg::adapt::run(&a.pairs, &a.out, &a.params, quiet, cli.threads)?;
            print(&s, a.json, quiet)
        }
        Command::Run(a) => {
            let p = Pipeline::load(&a.pipeline)?;
            let out = a.out.or_else(|| p.run.out.clone()).unwrap_or_else(|| {
                let stem = a
                    .pipeline
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "run".into());
                std::path::Path::new("runs").join(stem)
            });
            if let Some(stage) = a.step {
                let o = pipeline::steps::StepOptions {
                    shard: a.shard,
                    shards: a.shards,
                    quiet,
                    threads: cli.threads,
                };
                return pipeline::steps::run_step(&p, &out, stage, a.sigma, &o);
            }
            match a.executor {
                Executor::Local => {
                    print(&pipeline::run(&p, &out, quiet, cli.threads)?, a.json, quiet)
                }
                Executor::Slurm => {
                    let o = pipeline::slurm::SlurmOptions {
                        shards: a.shards,
                        partition: a.partition,
                        gpu_partition: a.gpu_partition,
                        account: a.account,
                        time: a.time,
                        cpus_per_task: a.cpus_per_task,
                    };
                    print_json_or(&pipeline::slurm::submit(&p, &a.pipeline, &out, &o)?, a.json)
                }
            }
        }
        Command::Status { run, json } => {
            let s = pipeline::slurm::status(&run)?;
            print_json_or(&s, json)
        }
        Command::Info { json, device } => {
            // GDAL here; libtorch in simreg-learn (loading it is what simreg avoids).
            let torch = learn::call(InfoRequest { device }, &call(true))?;
            let gdal = gdal::version::version_info("RELEASE_NAME");
            use simreg::align::default_model;
            let model = default_model::locate();
            let model_line = match &model {
                Some(d) => format!(
                    "default model: {} ({}; {}) in {}",
                    default_model::NAME,
                    default_model::info(d)
                        .map_or_else(|e| format!("unreadable: {e:#}"), |i| i.arch),
                    default_model::LAYOUT,
                    d.display()
                ),
                None => {
                    "default model: not found (align --method auto uses CFOG alone; pass --model)"
                        .into()
                }
            };
            if json {
                let v = serde_json::json!({"simreg": env!("CARGO_PKG_VERSION"), "gdal": gdal, "libtorch": torch,
                    "default_model": model.as_ref().map(|d| serde_json::json!({"name": default_model::NAME, "path": d, "layout": default_model::LAYOUT}))});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("simreg {} | GDAL {gdal}", env!("CARGO_PKG_VERSION"));
                println!("{torch}");
                println!("{model_line}");
            }
            Ok(())
        }
    }
}
