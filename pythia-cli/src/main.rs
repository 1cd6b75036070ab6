//! The `pythia` command: run workers over Redis queues, feed them, inspect them, handle their
//! dead letters, check the Redis they live in, and see it all work with `pythia quickstart`.
//! See `pythia --help`.

/// mimalloc instead of glibc's malloc: a worker allocates and frees a few small blocks per
/// message (the body, the message, its handler's future), and under glibc those calls were a
/// quarter of the worker's instructions (callgrind, list drain: 2,884 instructions per message
/// with glibc, 2,163 with mimalloc; the bare client loop 1,696 and 1,392). See BENCHMARKS.md.
/// A program embedding the library chooses its own allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod commands;
mod dashboard;
mod error;
mod exec;
mod http_worker;
mod local_redis;
mod output;

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

fn init_logging(cli: &Cli) {
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        crate::output::errln!("invalid --log filter {:?} ({e}); using \"info\"", cli.log);
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = match commands::config_file::parse_from(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(commands::config_file::ParseError::Clap(e)) => e.exit(),
        Err(commands::config_file::ParseError::Config(e)) => {
            crate::output::errln!("error: {e}");
            return ExitCode::from(e.code);
        }
    };
    init_logging(&cli);
    // --threads 1: everything on this thread (leanest); N: N worker threads; default: one per
    // CPU.
    let mut builder = match cli.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::output::errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run::run(*args).await,
            Command::Produce(args) => commands::produce::produce(args).await,
            Command::Inspect(args) => commands::inspect::inspect(args).await,
            Command::Dlq(args) => commands::dlq::dlq(args).await,
            Command::Job(args) => commands::job::job(args).await,
            Command::Doctor(args) => commands::doctor::doctor(args).await,
            Command::Dashboard(args) => dashboard::dashboard(args).await,
            Command::Quickstart(args) => commands::quickstart::quickstart(args).await,
            Command::Bench(args) => commands::bench::bench(args).await,
            Command::BenchChild(args) => commands::bench::child::bench_child(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_output_closed() {
                crate::output::errln!("error: {e}");
            }
            ExitCode::from(e.code)
        }
    }
}
