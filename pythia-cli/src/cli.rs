//! The command line: every flag, its environment variable and its default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pythia::redis::{GroupStart, Overflow};

/// Background workers on Redis: run a worker, feed a queue, or see it all in one command.
#[derive(Debug, Parser)]
#[command(
    name = "pythia",
    // The version, git commit and enabled features (build.rs).
    version = env!("PYTHIA_VERSION_LINE"),
    about = "Background workers on Redis",
    long_about = "Background workers on Redis.\n\n\
        Quick start (starts a throwaway redis-server when no --redis-url is given):\n  \
        pythia quickstart\n\n\
        Operate a queue:\n  \
        pythia inspect --queue jobs        depth, consumers, retries, dead letters, memory\n  \
        pythia dlq list --queue jobs       dead letters; `dlq replay` and `dlq purge` too\n  \
        pythia pause --queue jobs          every worker stops fetching; `pythia resume`\n  \
        pythia scheduled list --queue jobs delayed messages and retries; `cancel --id`\n  \
        pythia doctor                      is this Redis fit for a queue?\n  \
        pythia dashboard                   the same in a browser, at http://127.0.0.1:9191\n\n\
        Exit codes: 0 success; 1 runtime failure (Redis error, handler stack failure) or a \
        `pythia doctor` check that FAILed; 2 bad input or configuration (unknown option, bad \
        URL, bad config file, refused password, `dlq purge` or `empty` without --yes and no terminal); \
        69 Redis unreachable within --connect-timeout."
)]
pub(crate) struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, value_enum, env = "PYTHIA_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `pythia_core=debug`). Default:
    /// RUST_LOG when set, else `info`.
    #[arg(long, global = true, env = "PYTHIA_LOG")]
    pub(crate) log: Option<String>,

    /// Runtime threads: 1 runs everything on one thread (leanest), more use tokio's
    /// multi-thread scheduler. Default: one per CPU.
    #[arg(long, global = true, env = "PYTHIA_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) threads: Option<u16>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a worker over a queue until stopped (SIGTERM / Ctrl-C), or until drained with --burst.
    Run(Box<RunArgs>),
    /// Push messages onto a queue: from arguments, a file, stdin, or generated (--count).
    Produce(ProduceArgs),
    /// Show a queue's state: depth, consumers and their heartbeats, retries, dead letters,
    /// memory (lists and streams), or subscriber counts (pub/sub).
    Inspect(InspectArgs),
    /// List every queue under the key prefix: type, depth, in flight, scheduled, dead letters,
    /// consumers, oldest message, paused, processed and failed today.
    Queues(QueuesArgs),
    /// List, replay or purge a queue's dead letters.
    Dlq(DlqArgs),
    /// Pause a queue: its workers, on every replica, stop fetching within a second and finish
    /// what they hold (`pythia resume` undoes it).
    Pause(crate::commands::pause::PauseArgs),
    /// Resume a paused queue: its workers fetch again within a second.
    Resume(crate::commands::pause::PauseArgs),
    /// Delete every message waiting in a queue (asks on a terminal; --yes otherwise).
    Empty(crate::commands::empty::EmptyArgs),
    /// List or cancel a queue's delayed messages and scheduled retries.
    Scheduled(crate::commands::scheduled::ScheduledArgs),
    /// Show a job's status record and timeline: state, attempts, times, progress, last error,
    /// result, events (workers with job tracking write it; `produce --track` records it as
    /// queued).
    Job(JobArgs),
    /// List a queue's recent jobs in one state (queued, running, succeeded, failed, dead),
    /// newest first.
    Jobs(crate::commands::jobs::JobsArgs),
    /// Check that a Redis server is fit for a queue: version, eviction policy, persistence,
    /// ACL permissions, idle timeout, latency. Exit 1 when a check FAILs.
    Doctor(DoctorArgs),
    /// Serve a web dashboard of every queue under the key prefix: depth, consumers, rates and
    /// charts, dead letters to replay or delete, and the JSON API behind it.
    Dashboard(DashboardArgs),
    /// One command that shows Pythia working: a local Redis, a batch of messages, a worker.
    Quickstart(QuickstartArgs),
    /// Measure throughput, CPU, memory and latency of each delivery mode against the bare
    /// client loop of the same Redis commands.
    Bench(BenchArgs),
    /// Print a shell completion script, e.g. `pythia completions bash >
    /// /etc/bash_completion.d/pythia` or `pythia completions zsh > "${fpath[1]}/_pythia"`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `pythia man > /usr/local/share/man/man1/pythia.1`.
    Man,
    /// One measured run inside `pythia bench` (internal).
    #[command(hide = true)]
    BenchChild(BenchChildArgs),
}

/// `pythia completions`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish (also elvish, powershell).
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The delivery mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BrokerKind {
    /// A Redis list, popped in batches: at-most-once, fastest.
    List,
    /// A Redis list with per-consumer in-flight storage and crash recovery: at-least-once.
    ReliableList,
    /// A Redis stream read by a consumer group: at-least-once, many replicas share the work.
    Stream,
    /// Redis pub/sub channels and patterns: at-most-once fan-out, nothing kept for absent
    /// subscribers.
    Pubsub,
}

impl BrokerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::ReliableList => "reliable-list",
            Self::Stream => "stream",
            Self::Pubsub => "pubsub",
        }
    }
}

/// `--group-start`: the library's own parser ([`GroupStart`]'s `FromStr`), with its values
/// listed in `--help`.
fn group_start_parser() -> impl clap::builder::TypedValueParser<Value = GroupStart> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    PossibleValuesParser::new([
        PossibleValue::new("beginning").help("Every entry already in the stream (`0`)"),
        PossibleValue::new("new").help("Only entries added after the group is created (`$`)"),
    ])
    .try_map(|s| s.parse::<GroupStart>())
}

impl QueueArgs {
    /// The sharded stream queue of `--shards N` (N > 1), `None` for one plain key or channel.
    pub(crate) fn sharded(
        &self,
    ) -> Result<Option<pythia::redis::ShardedQueue>, crate::error::CliError> {
        if self.shards <= 1 {
            return Ok(None);
        }
        if self.broker != BrokerKind::Stream {
            return sharded_queue(self.broker, "", self.shards);
        }
        sharded_queue(self.broker, self.single()?, self.shards)
    }

    /// The one queue of a list or stream broker.
    pub(crate) fn single(&self) -> Result<&str, crate::error::CliError> {
        if !self.pattern.is_empty() && self.broker != BrokerKind::Pubsub {
            return Err(crate::error::CliError::usage(format!(
                "--pattern is for --broker pubsub, not {}",
                self.broker.as_str()
            )));
        }
        match self.queue.as_slice() {
            [one] if !one.trim().is_empty() => Ok(one),
            [] => Err(crate::error::CliError::usage("--queue is required")),
            [_] => Err(crate::error::CliError::usage("--queue must not be empty")),
            many => Err(crate::error::CliError::usage(format!(
                "--queue given {} times; the {} broker consumes one queue (several channels are for --broker pubsub)",
                many.len(),
                self.broker.as_str()
            ))),
        }
    }
}

/// `--shards N` of a stream queue: `None` for the plain stream (N = 1), else the sharded
/// queue; a usage error with another broker than `stream`.
pub(crate) fn sharded_queue(
    broker: BrokerKind,
    queue: &str,
    shards: u16,
) -> Result<Option<pythia::redis::ShardedQueue>, crate::error::CliError> {
    if shards <= 1 {
        return Ok(None);
    }
    if broker != BrokerKind::Stream {
        return Err(crate::error::CliError::usage(format!(
            "--shards {shards} is for --broker stream (a sharded stream queue), not {}",
            broker.as_str()
        )));
    }
    pythia::redis::ShardedQueue::new(queue, usize::from(shards))
        .map(Some)
        .map_err(crate::error::CliError::usage)
}

/// Which end of a list consumers pop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Side {
    /// Consumers pop the right end; producers LPUSH (Sidekiq's convention).
    Right,
    /// Consumers pop the left end; producers RPUSH (Python pythia-framework, RQ).
    Left,
}

impl From<Side> for pythia::redis::ListSide {
    fn from(s: Side) -> Self {
        match s {
            Side::Right => Self::Right,
            Side::Left => Self::Left,
        }
    }
}

/// Which kind of Redis deployment the URLs name.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct TopologyArgs {
    /// The URLs are seed nodes of a Redis Cluster (any reachable one is enough).
    #[arg(long, env = "PYTHIA_CLUSTER", conflicts_with = "sentinel_master")]
    pub(crate) cluster: bool,

    /// The URLs are Redis Sentinels; connect to the master they know by this name and follow
    /// its failovers.
    #[arg(long, env = "PYTHIA_SENTINEL_MASTER", value_name = "NAME")]
    pub(crate) sentinel_master: Option<String>,
}

impl TopologyArgs {
    /// The library's form of these flags.
    pub(crate) fn topology(&self) -> pythia::redis::Topology {
        match (&self.sentinel_master, self.cluster) {
            (Some(master), _) => pythia::redis::Topology::Sentinel {
                master: master.clone(),
            },
            (None, true) => pythia::redis::Topology::Cluster,
            (None, false) => pythia::redis::Topology::Standalone,
        }
    }
}

/// Where Redis is: the URL(s), the kind of deployment, and the namespace of Pythia's keys. One
/// set of flags for every command that talks to Redis.
#[derive(Debug, Clone, Args)]
pub(crate) struct RedisArgs {
    /// A TOML file of settings: its keys are long flags (`redis_url` or `redis-url`, `queue`,
    /// `concurrency`, `retry_delay = "100ms"`, `burst = true`, …). One file serves every
    /// command: a key that is a flag of `pythia run` but not of this command is ignored. Flags
    /// and environment variables win over it; it wins over the defaults.
    #[arg(long, env = "PYTHIA_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Redis URL: redis://[user[:password]@]host[:port][/db], or rediss:// for TLS. With
    /// --cluster, comma-separated seed nodes; with --sentinel-master, the sentinels.
    #[arg(long, env = "REDIS_URL", default_value = pythia::redis::DEFAULT_URL, hide_env_values = true)]
    pub(crate) redis_url: String,

    #[command(flatten)]
    pub(crate) topology: TopologyArgs,

    /// Namespace of Pythia's own keys (`<prefix>:{queue}:…`).
    #[arg(long, env = "PYTHIA_KEY_PREFIX", default_value = "pythia")]
    pub(crate) key_prefix: String,

    /// How long to wait for an unreachable Redis, retrying with backoff, before exiting 69: a
    /// duration (`10s`, `2m`) or `forever`. Default: forever for `run` (a worker started before
    /// its Redis waits for it), 10s for the other commands.
    #[arg(long, env = "PYTHIA_CONNECT_TIMEOUT", value_name = "DURATION|forever", value_parser = parse_connect_timeout)]
    pub(crate) connect_timeout: Option<ConnectTimeout>,
}

/// `--connect-timeout`: how long to wait for Redis to become reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectTimeout {
    /// Until it answers (or the process is stopped).
    Forever,
    /// At most this long from the first attempt.
    Within(Duration),
}

impl ConnectTimeout {
    /// The default of the one-shot commands (everything but `run`).
    pub(crate) const ONE_SHOT: Self = Self::Within(Duration::from_secs(10));
}

fn parse_connect_timeout(s: &str) -> Result<ConnectTimeout, String> {
    match s.trim() {
        "forever" | "never" | "inf" => Ok(ConnectTimeout::Forever),
        d => parse_duration(d).map(ConnectTimeout::Within),
    }
}

/// Where Redis is and which queue.
#[derive(Debug, Clone, Args)]
pub(crate) struct QueueArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Delivery mode.
    #[arg(long, value_enum, env = "PYTHIA_BROKER", default_value_t = BrokerKind::ReliableList)]
    pub(crate) broker: BrokerKind,

    /// The queue: the key of the list or stream (`redis-cli LPUSH <queue> …` feeds a list), or
    /// a pub/sub channel. Repeatable (or comma-separated): `pythia run` serves several lists or
    /// streams in strict priority, the first drained first (or as --weights says); several
    /// channels for pub/sub. Required (unless --pattern is given for pub/sub, or --weights
    /// names the queues); it may also come from --config.
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE", value_delimiter = ',')]
    pub(crate) queue: Vec<String>,

    /// A pub/sub channel pattern to PSUBSCRIBE to (e.g. `orders.*`). Repeatable.
    #[arg(long, env = "PYTHIA_PATTERN", value_delimiter = ',')]
    pub(crate) pattern: Vec<String>,

    /// Streams: spread the queue over this many streams, each in a Redis Cluster slot of its
    /// own (shard `i` is the stream `{<queue>#i.k}`); 1 is the plain stream `<queue>`. Every
    /// producer and consumer of the queue must give the same count (checked against
    /// `<prefix>:{<queue>}:shards`). With --broker stream only.
    #[arg(long, env = "PYTHIA_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) shards: u16,

    /// Consumer group of a stream.
    #[arg(long, env = "PYTHIA_GROUP", default_value = "pythia")]
    pub(crate) group: String,

    /// Where a new consumer group starts reading a stream: the `beginning` (every entry queued
    /// before the first worker ran is processed), or `new` entries only (event streams).
    #[arg(long, env = "PYTHIA_GROUP_START", default_value = "beginning", value_parser = group_start_parser())]
    pub(crate) group_start: GroupStart,

    /// Which end of the list consumers pop (producers push the other end).
    #[arg(long, value_enum, env = "PYTHIA_LIST_SIDE", default_value_t = Side::Right)]
    pub(crate) list_side: Side,
}

/// What handles each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BuiltinHandler {
    /// Print each body to stdout, one line per message, then ack. A closed stdout (`| head`)
    /// stops the worker and hands unprinted messages back (exit 141).
    Print,
    /// Ack without doing anything (for benchmarks and draining).
    Noop,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "Settings come from flags, then environment variables, then the \
    --config file, then defaults (a flag wins over all).",
    group(clap::ArgGroup::new("exec_command").args(["exec", "exec_persistent"]))
)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) queue: QueueArgs,

    /// Messages processed at once.
    #[arg(long, short = 'c', env = "PYTHIA_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) concurrency: u32,

    /// Upper bound of one fetch.
    #[arg(long, env = "PYTHIA_BATCH_SIZE", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) batch_size: u32,

    /// Messages fetched beyond --concurrency, waiting to start the moment a handler finishes:
    /// for many short I/O-bound handlers; keep 0 for long jobs (they would wait here while
    /// another worker idles).
    #[arg(long, env = "PYTHIA_PREFETCH", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub(crate) prefetch: u32,

    /// Weighted priority over several queues, Sidekiq's semantics: with
    /// `critical=6,default=3,low=1` each fetch picks a non-empty queue at random in proportion
    /// to its weight. Every --queue needs a weight of at least 1 (without --queue, the queues
    /// are these). Without --weights, several --queue are in strict priority. Not for pub/sub.
    #[arg(long, env = "PYTHIA_WEIGHTS", value_delimiter = ',', value_name = "QUEUE=N", value_parser = crate::commands::run_queues::parse_weight)]
    pub(crate) weights: Vec<(String, u32)>,

    /// Exit 0 once the queue is drained and nothing is in flight, printing a summary.
    #[arg(long, env = "PYTHIA_BURST")]
    pub(crate) burst: bool,

    /// Do not keep the per-queue daily processed/failed/retried counters in Redis (by default
    /// a worker adds its counts every 2 s, in one pipeline; `pythia queues` and the dashboard
    /// show them).
    #[arg(long, env = "PYTHIA_NO_COUNTERS")]
    pub(crate) no_counters: bool,

    /// Print the summary of the run (once drained with --burst, or stopped) as one JSON object
    /// on the last line of stdout instead of text on stderr: fetched, processed, acked,
    /// retried, dead_lettered, released, unsettled, panics, elapsed_seconds, active_seconds,
    /// rate_per_second.
    #[arg(long)]
    pub(crate) json: bool,

    /// Attempts per message in all (the first delivery counts) before it is dead-lettered.
    #[arg(long, env = "PYTHIA_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_attempts: u32,

    /// Delay before the first retry; doubles each attempt (with jitter), capped at 30 s.
    #[arg(long, env = "PYTHIA_RETRY_DELAY", default_value = "100ms", value_parser = parse_duration)]
    pub(crate) retry_delay: Duration,

    /// Time in-flight messages get to finish on SIGTERM / Ctrl-C before they are handed back.
    #[arg(long, env = "PYTHIA_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub(crate) shutdown_grace: Duration,

    /// Run this command per message: the body on stdin, the id, attempt, queue and headers in
    /// PYTHIA_* environment variables. Exit 0 acks; exit 65 rejects (dead-letters at once); any
    /// other exit (or a signal) retries. Run through `sh -c`; the body never reaches the command
    /// line. Its stdout is copied to the worker's; a closed stdout stops the worker (exit 141).
    #[arg(long, env = "PYTHIA_EXEC", conflicts_with = "handler")]
    pub(crate) exec: Option<String>,

    /// Start --exec-children long-lived `sh -c CMD` children and send them the messages as JSON
    /// lines on stdin ({"id","attempt","queue","headers","body" or "body_base64"}); each answers
    /// one line per message on stdout ({"id","outcome":"ack"|"retry"|"reject","after"?,
    /// "reason"?}), in any order. A child that dies, or writes a line that is not a reply, is
    /// restarted and the messages it held are retried. Same environment rules as --exec. See the
    /// README, "Persistent child handlers".
    #[arg(long, env = "PYTHIA_EXEC_PERSISTENT", value_name = "CMD", conflicts_with_all = ["exec", "handler", "http"])]
    pub(crate) exec_persistent: Option<String>,

    /// --exec-persistent: how many children to run [default: one per CPU, at most 8].
    #[arg(long, env = "PYTHIA_EXEC_CHILDREN", value_name = "N", requires = "exec_persistent", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) exec_children: Option<u32>,

    /// --exec-persistent: messages sent to one child and not yet answered, at most (--concurrency
    /// bounds them all).
    #[arg(long, env = "PYTHIA_EXEC_IN_FLIGHT", value_name = "N", default_value_t = crate::exec::persistent::DEFAULT_IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) exec_in_flight: u32,

    /// Let --exec and --exec-persistent commands inherit this environment variable. Repeatable (or comma-separated).
    /// Without it they get only PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_*, TZ,
    /// TMPDIR and TERM, plus the per-message PYTHIA_* variables: never REDIS_URL (the Redis
    /// password), PYTHIA_DASHBOARD_TOKEN or cloud credentials unless named here.
    #[arg(
        long,
        env = "PYTHIA_PASS_ENV",
        value_delimiter = ',',
        value_name = "NAME",
        requires = "exec_command"
    )]
    pub(crate) pass_env: Vec<String>,

    /// POST each message to this http:// or https:// URL: the body as the request body, the id,
    /// attempt, queue and headers as X-Pythia-* request headers. 2xx acks; 408, 429 and 5xx
    /// retry (after the Retry-After delay when given; a 429 with one also stops the queue's
    /// fetching that long, on every replica); any other 4xx rejects (dead-letters at once); a connection error or --http-timeout retries. Connections are kept alive; https://
    /// (binary built with the `tls` feature) speaks HTTP/2 when the server offers it.
    #[arg(long, env = "PYTHIA_HTTP", conflicts_with_all = ["exec", "handler"], value_parser = parse_http_url)]
    pub(crate) http: Option<crate::http_worker::HttpUrl>,

    /// Deadline of one --http request (connect, send, response).
    #[arg(long, env = "PYTHIA_HTTP_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub(crate) http_timeout: Duration,

    /// For an https:// --http URL: trust only the CA certificates in this PEM file (a private
    /// CA) instead of the system's roots.
    #[arg(
        long,
        env = "PYTHIA_HTTP_CA_FILE",
        value_name = "PEM_FILE",
        requires = "http"
    )]
    pub(crate) http_ca_file: Option<std::path::PathBuf>,

    /// A built-in handler, used when none of --exec, --exec-persistent and --http is given.
    #[arg(long, value_enum, env = "PYTHIA_HANDLER", default_value_t = BuiltinHandler::Print)]
    pub(crate) handler: BuiltinHandler,

    /// Where to serve /metrics, /healthz and /readyz; `off` disables the endpoint. Default:
    /// 0.0.0.0:9090, and when that port is taken (a second worker on the host) a warning and no
    /// endpoint; an address given here (or in the environment or --config) must be free.
    #[arg(long, env = "PYTHIA_METRICS_ADDR", value_name = "HOST:PORT|off", value_parser = parse_metrics_addr)]
    pub(crate) metrics_addr: Option<MetricsAddr>,

    /// Per-message deadline: an overrunning handler is cancelled and retried; `0` disables it.
    #[arg(long, env = "PYTHIA_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,

    /// Quick in-process retries of a transient failure before it goes back to Redis (0 = none).
    #[arg(long, env = "PYTHIA_INPROCESS_RETRIES", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub(crate) inprocess_retries: u32,

    /// Pub/sub: messages buffered in the worker at most; beyond it --overflow decides.
    #[arg(long, env = "PYTHIA_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) buffer: u64,

    /// Pub/sub: what a full buffer drops, each drop counted in pythia_pubsub_dropped_total.
    #[arg(long, env = "PYTHIA_OVERFLOW", default_value = "drop-oldest", value_parser = overflow_parser())]
    pub(crate) overflow: Overflow,

    /// Open the circuit breaker after this many consecutive failures (0 = no breaker). While open,
    /// nothing is fetched: messages wait in Redis.
    #[arg(long, env = "PYTHIA_BREAKER_FAILURES", default_value_t = 0)]
    pub(crate) breaker_failures: u32,

    /// How long an open breaker waits before letting a probe message through.
    #[arg(long, env = "PYTHIA_BREAKER_COOLDOWN", default_value = "30s", value_parser = parse_duration)]
    pub(crate) breaker_cooldown: Duration,

    /// Fetch at most this many messages of the queue, all replicas together: `500/s`, `30/m`
    /// or `2/h`. Enforced in Redis (`<prefix>:{queue}:ratelimit`): give every replica the
    /// same limit. Not for pub/sub.
    #[arg(long, env = "PYTHIA_RATE_LIMIT", value_name = "N/s|N/m|N/h")]
    pub(crate) rate_limit: Option<pythia::redis::RateLimit>,

    /// Share the circuit breaker with every replica through Redis (named after the queue): one
    /// replica's failures pause them all, one replica's probes resume them all. Needs
    /// --breaker-failures.
    #[arg(long, env = "PYTHIA_BREAKER_SHARED")]
    pub(crate) breaker_shared: bool,

    /// The shared breaker's store, set once connected (not a flag).
    #[arg(skip)]
    pub(crate) breaker_store: Option<pythia::redis::RedisCircuitStateStore>,
}

/// `--overflow`: the library's own parser ([`Overflow`]'s `FromStr`), with its values listed in
/// `--help`.
fn overflow_parser() -> impl clap::builder::TypedValueParser<Value = Overflow> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    PossibleValuesParser::new([
        PossibleValue::new("drop-oldest")
            .help("Drop the oldest buffered message to make room (keep the freshest)"),
        PossibleValue::new("drop-newest").help("Drop the message that arrives (keep the earliest)"),
    ])
    .try_map(|s| s.parse::<Overflow>())
}

/// `pythia produce --wire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Wire {
    /// Pythia's envelope (id, attempt, enqueue time, headers, body).
    Pythia,
    /// The Python pythia-framework 1.0.x producers' format.
    PythiaPy,
    /// The body alone.
    Raw,
}

/// `--metrics-addr` when not given.
pub(crate) const DEFAULT_METRICS_ADDR: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 9090),
);

/// `--metrics-addr`: an address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricsAddr {
    /// No endpoint.
    Off,
    /// Serve on this address.
    At(std::net::SocketAddr),
}

fn parse_metrics_addr(s: &str) -> Result<MetricsAddr, String> {
    match s.trim() {
        "off" | "none" | "false" | "" => Ok(MetricsAddr::Off),
        a => a.parse().map(MetricsAddr::At).map_err(|_| {
            format!("invalid --metrics-addr {a:?}: expected HOST:PORT (e.g. 0.0.0.0:9090) or off")
        }),
    }
}

#[derive(Debug, Clone, Args)]
// Consumer-side settings of the shared queue flags: a producer has no group and no pattern.
#[command(
    mut_arg("group", |a| a.hide(true)),
    mut_arg("group_start", |a| a.hide(true)),
    mut_arg("pattern", |a| a.hide(true))
)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    pub(crate) queue: QueueArgs,

    /// Message bodies. `-` reads stdin, one message per line. With none: stdin when it is not
    /// a terminal (`… | pythia produce --queue q`), else --count generates.
    pub(crate) messages: Vec<String>,

    /// Read messages from this file, one per line.
    #[arg(long, conflicts_with = "messages")]
    pub(crate) file: Option<PathBuf>,

    /// Generate this many messages (bodies of --size bytes, numbered), or repeat the given ones
    /// until this many were sent.
    #[arg(long)]
    pub(crate) count: Option<u64>,

    /// Size in bytes of generated bodies.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,

    /// Messages per second at most (default: as fast as Redis takes them).
    #[arg(long)]
    pub(crate) rate: Option<f64>,

    /// A header for every message, as KEY=VALUE (repeatable). Not sent with --raw.
    #[arg(long = "header", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,

    /// Write bodies untouched, without Pythia's envelope (no id, headers or enqueue time).
    #[arg(long)]
    pub(crate) raw: bool,

    /// The wire format: `pythia` (the envelope), `pythia-py` (exactly what the Python
    /// pythia-framework 1.0.x producers write, for Python workers: JSON `{"body", "headers",
    /// "message_id"}` on a list, `body` and `header_<name>` fields on a stream, the body alone
    /// on a channel) or `raw` (same as --raw).
    #[arg(long, value_enum, default_value_t = Wire::Pythia, conflicts_with = "raw")]
    pub(crate) wire: Wire,

    /// Streams: trim to about this many entries on each add (`MAXLEN ~`); 0 (the default) =
    /// no cap. A cap drops the oldest entries even if no group was delivered them: with a
    /// backlog above it, messages are lost (the workers count them in
    /// pythia_stream_trimmed_undelivered_total and warn).
    #[arg(long, default_value_t = 0)]
    pub(crate) max_len: usize,

    /// Print each message's id on stdout, one per line, once sent (the summary then goes to
    /// stderr). Look a job up with `pythia job --queue <queue> <id>`.
    #[arg(long, conflicts_with = "raw")]
    pub(crate) print_ids: bool,

    /// Record each message as queued in its job status record (`<prefix>:{queue}:job:<id>`,
    /// kept 24 h) before sending it, for `pythia job`.
    #[arg(long, conflicts_with = "raw")]
    pub(crate) track: bool,

    /// Deliver after this delay (e.g. `30s`, `5m`): scheduled in Redis, promoted to the queue by
    /// any running worker when due; cancellable by id. Lists and streams only.
    #[arg(long, value_parser = parse_duration, conflicts_with_all = ["raw", "at"])]
    pub(crate) delay: Option<Duration>,

    /// Deliver at this time, RFC 3339 (e.g. `2026-11-22T08:00:00Z` or `…+01:00`).
    #[arg(long, value_parser = parse_rfc3339, conflicts_with = "raw")]
    pub(crate) at: Option<std::time::SystemTime>,

    /// Print the summary as one JSON object: queue, broker, shards (null unless sharded),
    /// produced, seconds, rate_per_second, subscriber_deliveries (pub/sub, else null),
    /// delay_seconds (--delay, else null), deliver_at (--at, RFC 3339, else null).
    #[arg(long, conflicts_with = "print_ids")]
    pub(crate) json: bool,
}

/// Parses an RFC 3339 time (`2026-11-22T08:00:00Z`, `…+01:00`, fractions of a second) with
/// chrono's strict parser: a date that does not exist (`2026-02-31`) is refused, not rolled
/// over into the next month.
pub(crate) fn parse_rfc3339(s: &str) -> Result<std::time::SystemTime, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).map_err(|e| {
        format!("invalid time {s:?} ({e}): expected RFC 3339, e.g. 2026-11-22T08:00:00Z")
    })?;
    let secs = u64::try_from(t.timestamp()).map_err(|_| format!("{s:?} is before 1970"))?;
    Ok(std::time::UNIX_EPOCH + Duration::new(secs, t.timestamp_subsec_nanos()))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct QuickstartArgs {
    /// Use this Redis instead of starting a throwaway local redis-server.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,

    /// Messages to produce and process.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub(crate) messages: u64,

    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,

    /// Messages processed at once.
    #[arg(long, short = 'c', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) concurrency: u32,

    /// Print one JSON object instead of text: redis (the masked URL), throwaway_redis,
    /// messages, size, produced[] {messages, seconds}, modes[] {mode, processed, acked,
    /// dead_lettered, seconds, rate_per_second}, left, ok.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Which queue `inspect` and `dlq` look at.
#[derive(Debug, Clone, Args)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Delivery mode of the queue. Default: from the key's type (a stream key is a stream,
    /// anything else a list); give `pubsub` for a channel.
    #[arg(long, value_enum, env = "PYTHIA_BROKER")]
    pub(crate) broker: Option<BrokerKind>,

    /// The queue: the key of the list or stream, or a pub/sub channel. Several (repeated or
    /// comma-separated) only for `inspect --broker pubsub`; `dlq` works on one queue's dead
    /// letters.
    #[arg(
        long,
        short = 'q',
        env = "PYTHIA_QUEUE",
        value_delimiter = ',',
        required = true
    )]
    pub(crate) queue: Vec<String>,

    /// Which end of the list consumers pop: decides which message is the oldest, and where
    /// replayed dead letters are pushed (the other end, behind the backlog).
    #[arg(long, value_enum, env = "PYTHIA_LIST_SIDE", default_value_t = Side::Right)]
    pub(crate) list_side: Side,
}

impl TargetArgs {
    /// The one queue of a list or stream (or the one channel of a dead-letter list).
    pub(crate) fn single(&self) -> Result<&str, crate::error::CliError> {
        match self.queue.as_slice() {
            [one] if !one.trim().is_empty() => Ok(one),
            [_] | [] => Err(crate::error::CliError::usage("--queue must not be empty")),
            many => Err(crate::error::CliError::usage(format!(
                "--queue given {} times; only `inspect --broker pubsub` takes several channels",
                many.len()
            ))),
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "JSON fields (--json), lists and reliable lists: queue, broker, \
    depth, in_flight, scheduled, dead_letters, oldest_age_seconds (null when empty or unknown), \
    consumers[] {name, in_flight, staged, alive, heartbeat_ttl_ms (null when dead)}, \
    memory_bytes {queue, pythia_keys}, paused, today {processed, failed, retried}.\n\
    Streams: queue, broker, length, scheduled, dead_letters, memory_bytes {queue, pythia_keys}, \
    paused, today {processed, failed, retried}, \
    groups[] {name, lag (null when Redis cannot tell), lag_lower_bound, pending, \
    last_delivered_id, oldest_age_seconds, consumers[] {name, pending, idle_ms, pythia, alive, \
    heartbeat_ttl_ms}}.\n\
    Pub/sub: broker, channels[] {channel, subscribers, dead_letters}, pattern_subscriptions.\n\
    Sharded streams (--shards N, N > 1): queue (the logical name), broker, shard_count, layout \
    {key, stored_shards (null when not stored yet), matches (null likewise)}, totals over the \
    shards: length, scheduled, dead_letters, memory_bytes {queue, pythia_keys}, groups[] {name, \
    lag, lag_lower_bound, pending, shards_with_group} (summed over the shards that have the \
    group); and shards[]: each shard's stream report as above, with shard (its index).\n\
    Memory is MEMORY USAGE (sampled for big keys) of the queue key and of Pythia's keys for it \
    (retry schedule, dead letters, consumer set, in-flight, staging and heartbeat keys)."
)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Streams: show this consumer group only (default: every group).
    #[arg(long, env = "PYTHIA_GROUP")]
    pub(crate) group: Option<String>,

    /// A sharded stream queue of this many shards (as `run --shards`): each shard's stream
    /// report, and totals. 1 is the plain queue. Implies --broker stream.
    #[arg(long, env = "PYTHIA_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) shards: u16,

    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DlqArgs {
    #[command(subcommand)]
    pub(crate) action: DlqAction,
}

/// What to do with dead letters.
#[derive(Debug, Clone, Subcommand)]
#[command(
    after_long_help = "Dead letters live in `<prefix>:{queue}:dlq`: a list of envelopes \
    for list, reliable-list and pub/sub queues, a stream for stream queues."
)]
pub(crate) enum DlqAction {
    /// Show dead letters, newest first: id, attempts, when, error and a body preview.
    List(DlqListArgs),
    /// Put dead letters back on the queue (all, or those given by --id) with the attempt reset
    /// to 1, each atomically: a dead letter leaves the DLQ only when it was re-enqueued.
    Replay(DlqReplayArgs),
    /// Delete dead letters (all, or those given by --id). Asks for confirmation on a terminal;
    /// without one, refuses (exit 2) unless --yes is given.
    Purge(DlqPurgeArgs),
}

#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "JSON fields (--json): queue, broker (null when the queue key does not \
    exist and --broker was not given), key (of the dead letters), total, dead_letters[] {id, \
    entry_id (streams), original_entry_id (streams), attempts, failed_at (RFC 3339, UTC), \
    failed_at_ms, error, headers, body (lossy UTF-8, truncated to --preview), body_bytes}."
)]
pub(crate) struct DlqListArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Show at most this many (newest first).
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,

    /// Characters of each body shown (escaped; longer bodies are cut with …).
    #[arg(long, default_value_t = 60)]
    pub(crate) preview: usize,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DlqReplayArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Replay only the dead letter with this id (the `id` column of `dlq list`; for streams
    /// the dead-letter entry id works too). Repeatable. Without it, every dead letter.
    #[arg(long = "id", value_name = "ID")]
    pub(crate) ids: Vec<String>,

    /// Print one JSON object: queue, broker, replayed, missing, unheard.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DlqPurgeArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Delete only the dead letter with this id (as for `replay`). Repeatable. Without it,
    /// every dead letter.
    #[arg(long = "id", value_name = "ID")]
    pub(crate) ids: Vec<String>,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    /// Print one JSON object: queue, broker, deleted.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `pythia queues`.
#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "A queue is listed from its first message: every producer and worker \
    writes its name and type once in the registry hash <prefix>:queues. Counts of today (UTC) \
    come from the daily counters workers keep (pythia run, unless --no-counters).\n\
    JSON fields (--json): prefix, queues[] {name, kind (list, reliable-list, stream, \
    sharded-stream, pubsub), registered, depth, in_flight, scheduled, dead_letters, consumers, \
    oldest_age_seconds (or null), paused, day (YYYY-MM-DD), today {processed, failed, retried}, \
    groups[] {name, depth, in_flight, consumers, oldest_age_seconds} (streams)}."
)]
pub(crate) struct QueuesArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Also list queues found among Pythia's keys (SCAN of every master), not only those in the
    /// registry (queues last used by a version without it).
    #[arg(long)]
    pub(crate) scan: bool,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "Each check prints PASS, WARN or FAIL with the fix. Exit 0 when \
    nothing FAILed (warnings allowed), 1 when a check FAILed, 69 when Redis cannot be reached.\n\
    JSON fields (--json): redis_url (password masked), server_version, checks[] {check, status \
    (pass, warn, fail), detail, fix (null when none)}, passed, warnings, failures."
)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Check the ACL key permissions on this queue's keys (default: a placeholder queue
    /// `pythia-doctor`).
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: Option<String>,

    /// Print one JSON document instead of lines.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
The record is the hash <prefix>:{queue}:job:<id> and its timeline the list \
<prefix>:{queue}:job-events:<id>, written by workers with job tracking \
(pythia::redis::JobTrackingExt::with_job_status: running, then succeeded, failed (a retry follows) \
or dead, and the handler's progress and events) and by producers that track their messages \
(`pythia produce --track`: queued). They expire 24 h after their last change by default. Exit 1 \
when there is no record.

JSON fields (--json): id, queue, state (queued, running, succeeded, failed, dead), attempts, \
queued_at, started_at, finished_at, updated_at (RFC 3339, UTC, or null), progress (`42%`, `3/10`, \
or null), last_error (or null), result (the handler's result as text, or null), result_hex (a \
result that is not UTF-8, or null), events (oldest first: at, kind, attempt and the event's other \
fields).")]
pub(crate) struct JobArgs {
    /// The message (job) id, as `pythia produce --print-ids` prints it.
    pub(crate) id: String,

    /// The queue the job went to (its records are under the queue's key prefix and hash tag).
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: String,

    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Most timeline events shown.
    #[arg(long, default_value_t = 100)]
    pub(crate) events: usize,

    /// Timeline events skipped first (the oldest).
    #[arg(long, default_value_t = 0)]
    pub(crate) events_offset: usize,
}

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
Pages: / (every queue), /queues/<queue> (consumers and charts), /queues/<queue>/dlq (dead \
letters, with replay and delete after a confirmation page). Numbers and charts refresh every 2 s \
from the JSON API below; nothing is loaded from outside this server.

JSON API (<queue> percent-encoded; every response is JSON):
  GET  /api/overview               every queue: broker, depth (streams: lag of all groups), \
in_flight (streams: pending), scheduled, dead_letters, oldest_age_seconds, consumers, \
consumers_alive, net_drain_per_second, dead_lettered_per_second, error, history {t_ms, depth, \
in_flight, scheduled, dead_letters}; and circuit_breakers {shared_in_redis: false, note}
  GET  /api/queues/<queue>         the document of `pythia inspect --queue <queue> --json`
  GET  /api/queues/<queue>/history the samples kept in memory and the rates
  GET  /api/queues/<queue>/dlq     the document of `pythia dlq list --json` (?limit=50, \
?preview=200), each dead letter with body_binary and body_hex (the first bytes) as well
  GET  /api/csrf                   {csrf_token}
  POST /api/queues/<queue>/dlq/replay  body {\"ids\": [...]} or {\"all\": true}: {replayed, \
missing, unheard}
  POST /api/queues/<queue>/dlq/delete  body {\"ids\": [...]} or {\"all\": true}: {deleted}
Errors: {error} with 400 (bad request), 401 (no or wrong token), 403 (CSRF or Origin), 404 \
(unknown dead letter), 502 (Redis failed).

Security: every POST needs the header X-CSRF-Token (or the form field csrf) with this process's \
random CSRF token, and a browser's Origin or Referer must be this server (403 otherwise). With \
--token, every request needs `Authorization: Bearer <token>` or the session cookie that \
opening /?token=<token> (or the login form) sets (401 otherwise). On a loopback address only \
Host headers naming that address are served (no DNS rebinding). Another address than loopback \
requires --token. Responses carry Content-Security-Policy: default-src 'self' and \
X-Content-Type-Options: nosniff; message bodies and errors are shown HTML-escaped and cut, \
binary bodies as hex.

Rates are computed by this process from its samples (every --interval, kept for --history, lost \
on restart): net drain = decrease per second of depth + in flight + scheduled over the last \
minute (negative: the backlog grows; it is not the processing rate, which each worker's /metrics \
reports as pythia_messages_total); dead-lettered = increase per second of the dead letters. \
Queues are found by SCANning <prefix>:{*}:* and <prefix>:q:* every 10 s and by --queue; a list queue that never \
retried or dead-lettered anything leaves no key of Pythia's: name it with --queue.")]
pub(crate) struct DashboardArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Address to serve on. Loopback by default; any other address requires --token.
    #[arg(long, env = "PYTHIA_DASHBOARD_ADDR", default_value = "127.0.0.1:9191")]
    pub(crate) addr: std::net::SocketAddr,

    /// Require this token on every request: the header `Authorization: Bearer <token>`, or a
    /// session cookie set by opening /?token=<token> once (or the login form). Prefer the
    /// environment variable: a flag is visible to every user of the machine in `ps`.
    #[arg(long, env = "PYTHIA_DASHBOARD_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// Always show this queue (repeatable, or comma-separated), besides those found from
    /// Pythia's keys.
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE", value_delimiter = ',')]
    pub(crate) queue: Vec<String>,

    /// Which end of the list consumers pop: decides which message is the oldest, and where
    /// replayed dead letters are pushed (the other end, behind the backlog).
    #[arg(long, value_enum, env = "PYTHIA_LIST_SIDE", default_value_t = Side::Right)]
    pub(crate) list_side: Side,

    /// How often every queue is sampled for the charts and rates.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) interval: Duration,

    /// How long samples are kept in memory (the span of the charts; at most 10,000 samples
    /// per queue).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub(crate) history: Duration,
}

fn parse_http_url(s: &str) -> Result<crate::http_worker::HttpUrl, String> {
    s.parse()
}

/// Parses a duration in humantime's syntax (`250ms`, `30s`, `2m`, `1h30m`, `1d`, `500us`), or
/// a bare number of seconds (`2`, `0.5`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bare_seconds = !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    let d = if bare_seconds {
        let n: f64 = s
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected e.g. 250ms, 30s, 1h30m"))?;
        Duration::try_from_secs_f64(n).map_err(|_| format!("duration out of range: {s:?}"))?
    } else {
        humantime::parse_duration(s).map_err(|e| {
            format!("invalid duration {s:?} ({e}): expected e.g. 250ms, 30s, 1h30m, 1d")
        })?
    };
    if d > MAX_DURATION {
        return Err(format!("duration out of range: {s:?}"));
    }
    Ok(d)
}

/// The longest duration a flag takes (about 31 years): beyond it, a typo.
const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("invalid header {s:?}: expected KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("500us").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("2m 30s").unwrap(), Duration::from_secs(150));
        for bad in ["5 fortnights", "-1s", "", "1e3", "inf", "40years", "1.5.2"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_times() {
        use std::time::{Duration, UNIX_EPOCH};
        let t = |s| {
            parse_rfc3339(s)
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
        };
        assert_eq!(t("1970-01-01T00:00:00Z"), Duration::ZERO);
        assert_eq!(t("2026-11-22T08:00:00Z").as_secs(), 1_795_334_400);
        assert_eq!(t("2026-11-22T09:00:00+01:00").as_secs(), 1_795_334_400);
        assert_eq!(
            t("2000-02-29T12:30:15.25Z"),
            Duration::from_millis(951_827_415_250)
        );
        for bad in [
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T08:00:00",
            "yesterday",
            "2026-11-22T08:00:00+0100",
            "2026-02-31T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers() {
        assert_eq!(parse_header("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_header("=x").is_err());
        assert!(parse_header("novalue").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
