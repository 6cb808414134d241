//! `simreg-learn`: the network stages, started by `simreg` (users run `simreg train`,
//! `simreg predict`, `simreg info`). Its options mirror simreg's; training parameters arrive as
//! JSON (`--params-json`), already checked by simreg's command line or pipeline file.
use clap::{Parser, Subcommand};
use simreg::learn::{DeviceChoice, TrainParams};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "simreg-learn", version, about = "simreg's network stages (run through `simreg`)")]
struct Cli {
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Train {
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// TrainParams as JSON (defaults for absent fields)
        #[arg(long, default_value = "{}")]
        params_json: String,
    },
    Predict {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        tiles: Option<PathBuf>,
        #[arg(long)]
        labels: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
    },
    /// Whole-scene alignment with the network (simreg align --method network)
    Align {
        /// simreg::align::AlignRequest as JSON
        #[arg(long)]
        request_json: String,
    },
    /// Training throughput on random inputs (benchmarks: scripts/bench_train.sh)
    BenchTrain {
        #[command(flatten)]
        net: BenchNet,
        #[arg(long, default_value_t = 16)]
        batch: i64,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        #[arg(long, default_value_t = 30)]
        steps: usize,
    },
    Similarity {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// SimilarityParams as JSON (defaults for absent fields)
        #[arg(long, default_value = "{}")]
        params_json: String,
    },
    /// Baseline vs similarity-enforced training (both signs) over seeds: RUN/enforce_study.json
    EnforceStudy {
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "{}")]
        params_json: String,
    },
    /// Per-sample Jacobian throughput on random inputs (scripts/bench_similarity.sh)
    BenchJacobian {
        #[command(flatten)]
        net: BenchNet,
        #[arg(long, default_value_t = 32)]
        batch: i64,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
    },
    /// Linear-time N_S (both passes) over N random samples: seconds and peak RSS
    BenchNs {
        #[command(flatten)]
        net: BenchNet,
        #[arg(long)]
        n: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
    },
    /// The paper's 1-D toy (paper.md §5): N_S against frequency and curvature
    Toy1d {
        #[arg(long)]
        out: PathBuf,
        /// Toy1dParams as JSON (defaults for absent fields)
        #[arg(long, default_value = "{}")]
        params_json: String,
    },
    Info {
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum)]
        device: Option<DeviceChoice>,
    },
}

/// The network shape of the benchmarks (the defaults: the noise-sweep network).
#[derive(clap::Args, Clone)]
struct BenchNet {
    #[arg(long, default_value_t = 64)]
    tile: i64,
    #[arg(long, default_value_t = 4)]
    reference_bands: usize,
    #[arg(long, default_value_t = 2)]
    moving_bands: usize,
    #[arg(long, default_value_t = 8)]
    width: i64,
    #[arg(long, default_value_t = 3)]
    depth: usize,
    #[arg(long, default_value_t = 3)]
    corr_radius: i64,
}

impl BenchNet {
    fn config(&self) -> simreg_learn::model::NetConfig {
        simreg_learn::model::NetConfig {
            reference_bands: self.reference_bands,
            moving_bands: self.moving_bands,
            tile_size: self.tile as usize,
            centre_offset: self.tile as usize / 4,
            centre_size: self.tile as usize / 2,
            width: self.width,
            depth: self.depth,
            scale_px: 1.0,
            corr_radius: self.corr_radius,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIMREG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    // The toy's MLP is too small to gain from intra-op threads, and OpenMP threads competing
    // with other work for the cores slow it down many times: one thread unless asked.
    let all = || {
        if matches!(cli.command, Command::Toy1d { .. }) {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    };
    let threads = cli.threads.unwrap_or_else(all);
    simreg_learn::device::set_threads(threads);
    match dispatch(cli.command, cli.quiet) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simreg: error: {}", simreg::raster::torch_message(format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn dispatch(c: Command, quiet: bool) -> anyhow::Result<()> {
    match c {
        Command::Train { labels, out, params_json } => {
            let p: TrainParams = serde_json::from_str(&params_json)
                .map_err(|e| anyhow::anyhow!("training parameters: {e}"))?;
            simreg_learn::train::run(
                &labels,
                &out,
                &p,
                &simreg_learn::train::TrainOptions { quiet },
            )?;
        }
        Command::Predict { model, tiles, labels, out, device } => {
            let device = simreg_learn::device::resolve(device)?;
            simreg_learn::train::predict::run(
                &model,
                tiles.as_deref(),
                labels.as_deref(),
                &out,
                device,
            )?;
        }
        Command::Align { request_json } => {
            let req: simreg::align::AlignRequest = serde_json::from_str(&request_json)
                .map_err(|e| anyhow::anyhow!("align request: {e}"))?;
            simreg_learn::align::run(&req)?;
        }
        Command::Similarity { model, labels, out, params_json } => {
            let p: simreg::learn::SimilarityParams = serde_json::from_str(&params_json)
                .map_err(|e| anyhow::anyhow!("similarity parameters: {e}"))?;
            simreg_learn::similarity::stage::run(&model, &labels, &out, &p, quiet)?;
        }
        Command::Toy1d { out, params_json } => {
            let p: simreg::learn::Toy1dParams = serde_json::from_str(&params_json)
                .map_err(|e| anyhow::anyhow!("toy1d parameters: {e}"))?;
            simreg_learn::toy1d::run(&out, &p, quiet)?;
        }
        Command::EnforceStudy { labels, out, params_json } => {
            let p: simreg::learn::EnforceStudyParams = serde_json::from_str(&params_json)
                .map_err(|e| anyhow::anyhow!("enforce-study parameters: {e}"))?;
            simreg_learn::enforce::study::run(&labels, &out, &p, quiet)?;
        }
        Command::BenchJacobian { net, batch, warmup, steps } => {
            let r =
                simreg_learn::similarity::bench::jacobians(&net.config(), batch, warmup, steps)?;
            println!("{}", serde_json::to_string(&r)?);
        }
        Command::BenchNs { net, n, batch } => {
            let r = simreg_learn::similarity::bench::ns(&net.config(), n, batch)?;
            println!("{}", serde_json::to_string(&r)?);
        }
        Command::BenchTrain { net, batch, warmup, steps } => {
            let r = simreg_learn::train::bench_steps(&net.config(), batch, warmup, steps)?;
            println!("{}", serde_json::to_string(&r)?);
        }
        Command::Info { json, device } => {
            if let Some(d) = device {
                let dev = simreg_learn::device::resolve(d)?;
                if !json {
                    println!("device: {dev:?}");
                }
            }
            let info = simreg_learn::device::info();
            if json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                println!(
                    "libtorch 2.13.0 (CUDA built: {}, GPUs visible: {}) | threads {}",
                    info.libtorch_cuda_built, info.cuda_devices, info.threads
                );
            }
        }
    }
    Ok(())
}
