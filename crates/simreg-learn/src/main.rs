//! `simreg-learn`: the network stages, started by `simreg` (users run `simreg train`,
//! `simreg predict`, `simreg info`, ...). `simreg-learn run` serves one request: the
//! `LearnRequest` as JSON on standard input (already checked by simreg's command line or
//! pipeline file), the stage's summary as JSON on standard output. The benchmarks are
//! subcommands of their own.
use clap::{Parser, Subcommand};
use serde::Serialize;
use simreg::artefacts::learn::{LearnRequest, TorchInfo};
use std::io::Read;
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
    /// Serves one request from simreg (`simreg::artefacts::learn::LearnRequest`, JSON on
    /// standard input); prints the stage's summary as JSON on standard output
    Run,
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
    // First: before any other thread starts (they inherit the blocked signals).
    simreg::util::interrupt::install();
    let cli = Cli::parse();
    let level = if cli.quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIMREG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let request = match &cli.command {
        Command::Run => match read_request() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("simreg: error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    // The toy's MLP is too small to gain from intra-op threads, and OpenMP threads competing
    // with other work for the cores slow it down many times: one thread unless asked.
    let all = || {
        if matches!(request, Some(LearnRequest::Toy1d(_))) {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    };
    let threads = cli.threads.unwrap_or_else(all);
    simreg_learn::device::set_threads(threads);
    let result = match request {
        Some(r) => serve(r, cli.quiet).map(|summary| println!("{summary}")),
        None => bench(cli.command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            simreg::util::interrupt::wait_if_pending();
            eprintln!("simreg: error: {}", simreg::util::text::torch_message(format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn read_request() -> anyhow::Result<LearnRequest> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "simreg-learn: not a request from this simreg ({e}): rebuild both (make build)"
        )
    })
}

fn json(v: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string(v)?)
}

/// Runs the stage a request asks for; returns its summary as JSON.
fn serve(req: LearnRequest, quiet: bool) -> anyhow::Result<String> {
    use simreg_learn::{align, device, enforce, similarity, toy1d, train};
    match req {
        LearnRequest::Train(r) => {
            json(&train::run(&r.labels, &r.out, &r.params, &train::TrainOptions { quiet })?)
        }
        LearnRequest::Predict(r) => {
            let dev = device::resolve(r.device)?;
            json(&train::predict::run(
                &r.model,
                r.tiles.as_deref(),
                r.labels.as_deref(),
                &r.out,
                dev,
                r.shard,
            )?)
        }
        LearnRequest::Align(r) => json(&align::run(&r)?),
        LearnRequest::Similarity(r) => {
            json(&similarity::stage::run(&r.model, &r.labels, &r.out, &r.params, quiet)?)
        }
        LearnRequest::SimilarityShard(r) => json(&similarity::shards::run_shard(
            &r.model,
            &r.labels,
            &r.out,
            &r.params,
            r.shard,
            r.s_a.as_deref(),
            quiet,
        )?),
        LearnRequest::SimilarityReduce(r) => json(&similarity::shards::reduce(&r.shards, &r.out)?),
        LearnRequest::SimilarityMerge(r) => json(&similarity::shards::merge(&r.shards, &r.out)?),
        LearnRequest::Toy1d(r) => json(&toy1d::run(&r.out, &r.params, quiet)?),
        LearnRequest::EnforceStudy(r) => {
            json(&enforce::study::run(&r.labels, &r.out, &r.params, quiet)?)
        }
        LearnRequest::Info(r) => {
            let resolved = r.device.map(device::resolve).transpose()?;
            let mut info: TorchInfo = device::info();
            info.device = resolved.map(|d| format!("{d:?}"));
            json(&info)
        }
    }
}

/// The benchmarks: one JSON line each.
fn bench(c: Command) -> anyhow::Result<()> {
    match c {
        Command::Run => unreachable!("served above"),
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
    }
    Ok(())
}
