//! The arguments of `pythia bench` (the scenarios, sizes, runs) and of the hidden
//! `pythia bench-child` each measured run is.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::cli::parse_duration;

/// A `pythia bench` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// Drain a list with the at-most-once list broker (RPOP n).
    List,
    /// Drain a list with the at-least-once reliable list broker (Lua move + HDEL acks).
    ReliableList,
    /// Produce to a list: Pythia envelopes vs raw multi-value LPUSH.
    ProduceList,
    /// Reliable list with a handler that sleeps 10 ms, at --io-concurrency.
    IoBound,
    /// Enqueue-to-start latency at --latency-rate messages per second offered (reliable list).
    Latency,
    /// Drain a stream with a consumer group (XREADGROUP + batched XACK).
    Stream,
    /// Produce to a stream: Pythia entries vs raw pipelined XADD.
    ProduceStream,
    /// Receive published messages through the pub/sub broker.
    Pubsub,
    /// The --http handler draining a reliable list into a local keep-alive HTTP/1.1 endpoint
    /// (in-process) that answers 200 at once, at --http-concurrency; bare: the same client in a
    /// plain loop against the same endpoint, no Redis.
    Http,
    /// Reliable list drained by --exec-persistent children running the Python reference
    /// client (acks at once); bare: the same children fed over pipes, without Redis. Needs
    /// python3 (skipped without it).
    ExecPersistent,
    /// Horizontal scaling: for each --processes count K, K worker processes drain one stream
    /// consumer group, then one reliable list, together; aggregate rate, worker and Redis CPU,
    /// duplicates. Not in the default list (it runs 2 x K counts x --runs drains).
    Scale,
    /// Many queues in one worker, in this process: one reliable list, then two in strict
    /// priority, then three weighted 6:3:1, none emptied; each mode's rate against one queue
    /// and the share each queue got. Not in the default list.
    Priority,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::ReliableList => "reliable-list",
            Self::ProduceList => "produce-list",
            Self::IoBound => "io-bound",
            Self::Latency => "latency",
            Self::Stream => "stream",
            Self::ProduceStream => "produce-stream",
            Self::Pubsub => "pubsub",
            Self::Http => "http",
            Self::Scale => "scale",
            Self::Priority => "priority",
            Self::ExecPersistent => "exec-persistent",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// Use this Redis instead of starting a throwaway local redis-server.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,

    /// Scenarios to run, comma-separated (default: all but `scale` and `priority`).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) scenarios: Vec<Scenario>,

    /// Messages per throughput run.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=50_000_000))]
    pub(crate) messages: u64,

    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,

    /// Runs per scenario; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub(crate) runs: u32,

    /// Concurrency of the throughput runs.
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub(crate) concurrency: usize,

    /// Fetch batch size of the throughput runs.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch_size: usize,

    /// Concurrency of the io-bound run (each message sleeps 10 ms).
    #[arg(long, default_value_t = 1000)]
    pub(crate) io_concurrency: usize,

    /// Messages the measured worker fetches beyond its concurrency (`WorkerRuntime::with_prefetch`).
    #[arg(long, default_value_t = 0)]
    pub(crate) prefetch: usize,

    /// Requests in flight in the http run (`pythia run`'s default concurrency).
    #[arg(long, default_value_t = 64)]
    pub(crate) http_concurrency: usize,

    /// Messages per second offered in the latency run.
    #[arg(long, default_value_t = 10_000.0)]
    pub(crate) latency_rate: f64,

    /// Length of the latency run.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub(crate) latency_duration: Duration,

    /// Worker process counts of the scale scenario, comma-separated; the speed-up is relative to
    /// the smallest.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) processes: Vec<u16>,

    /// Runtime threads of the measured worker process (1 = current-thread runtime).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) worker_threads: Option<u16>,

    /// Children of the exec-persistent scenario [default: one per CPU, at most 8].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) exec_children: Option<u16>,

    /// Messages in flight per child in the exec-persistent scenario.
    #[arg(long, default_value_t = crate::exec::persistent::DEFAULT_IN_FLIGHT)]
    pub(crate) exec_in_flight: u32,

    /// Wrap the list, reliable-list and stream brokers in the daily counters, as `pythia run`
    /// does by default (to measure their cost against a run without).
    #[arg(long)]
    pub(crate) counters: bool,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// One measured run (spawned by `pythia bench` so that its CPU time and peak memory are its own).
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchChildArgs {
    #[arg(long)]
    pub(crate) redis_url: String,
    #[arg(long, value_enum)]
    pub(crate) scenario: Scenario,
    /// Run the bare client loop instead of the framework.
    #[arg(long)]
    pub(crate) bare: bool,
    /// One of several worker processes on the same stream or reliable list (the scale
    /// scenario): prints `ready`, starts on a `go` line on stdin, records which messages it
    /// processed.
    #[arg(long)]
    pub(crate) replica: bool,
    #[arg(long)]
    pub(crate) queue: String,
    #[arg(long)]
    pub(crate) messages: u64,
    #[arg(long)]
    pub(crate) size: usize,
    #[arg(long)]
    pub(crate) concurrency: usize,
    #[arg(long)]
    pub(crate) batch_size: usize,
    /// Messages fetched beyond the concurrency.
    #[arg(long, default_value_t = 0)]
    pub(crate) prefetch: usize,
    /// exec-persistent: children.
    #[arg(long)]
    pub(crate) exec_children: Option<u16>,
    /// exec-persistent: messages in flight per child.
    #[arg(long, default_value_t = crate::exec::persistent::DEFAULT_IN_FLIGHT)]
    pub(crate) exec_in_flight: u32,
    /// list, reliable-list, stream: with the daily counters.
    #[arg(long)]
    pub(crate) counters: bool,
}
