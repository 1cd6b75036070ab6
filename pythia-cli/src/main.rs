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
mod logging;
mod output;

use std::process::ExitCode;

use crate::cli::Command;
use crate::commands::config_file::ParseError;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let early_format = logging::format_before_parsing(&argv);
    let cli = match commands::config_file::parse_from(argv) {
        Ok(cli) => cli,
        // --help and --version print to stdout; errors go to stderr, as JSON when asked for.
        Err(ParseError::Clap(e)) if e.use_stderr() && early_format == cli::LogFormat::Json => {
            let text = e.render().to_string();
            let text = text.trim_end();
            logging::error(
                early_format,
                text.strip_prefix("error: ").unwrap_or(text),
                2,
            );
            return ExitCode::from(2);
        }
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::Config(e)) => {
            logging::error(early_format, &e.message, e.code);
            return ExitCode::from(e.code);
        }
    };
    logging::init(&cli);
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
            let message = format!("cannot start the async runtime: {e}");
            logging::error(cli.log_format, &message, 1);
            return ExitCode::from(1);
        }
    };
    let log_format = cli.log_format;
    let result = rt.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run::run(*args).await,
            Command::Produce(args) => commands::produce::produce(args).await,
            Command::Inspect(args) => commands::inspect::inspect(args).await,
            Command::Queues(args) => commands::queues::queues(args).await,
            Command::Dlq(args) => commands::dlq::dlq(args).await,
            Command::Job(args) => commands::job::job(args).await,
            Command::Jobs(args) => commands::jobs::jobs(args).await,
            Command::Pause(args) => commands::pause::pause(args).await,
            Command::Resume(args) => commands::pause::resume(args).await,
            Command::Empty(args) => commands::empty::empty(args).await,
            Command::Scheduled(args) => commands::scheduled::scheduled(args).await,
            Command::Doctor(args) => commands::doctor::doctor(args).await,
            Command::Dashboard(args) => dashboard::dashboard(args).await,
            Command::Quickstart(args) => commands::quickstart::quickstart(args).await,
            Command::Bench(args) => commands::bench::bench(args).await,
            Command::Completions(args) => commands::completions::completions(&args),
            Command::Man => commands::completions::man(),
            Command::BenchChild(args) => commands::bench::child::bench_child(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_output_closed() {
                logging::error(log_format, &e.message, e.code);
            }
            ExitCode::from(e.code)
        }
    }
}
