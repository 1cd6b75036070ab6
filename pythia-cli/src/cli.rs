//! The command line: `Cli`, the list of commands, and the flags several commands share (where
//! Redis is, which queue, durations); each command's own flags live next to it in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pythia::redis::GroupStart;

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
    Run(Box<crate::commands::run::RunArgs>),
    /// Push messages onto a queue: from arguments, a file, stdin, or generated (--count).
    Produce(crate::commands::produce::ProduceArgs),
    /// Show a queue's state: depth, consumers and their heartbeats, retries, dead letters,
    /// memory (lists and streams), or subscriber counts (pub/sub).
    Inspect(crate::commands::inspect::InspectArgs),
    /// List every queue under the key prefix: type, depth, in flight, scheduled, dead letters,
    /// consumers, oldest message, paused, processed and failed today.
    Queues(crate::commands::queues::QueuesArgs),
    /// List, replay or purge a queue's dead letters.
    Dlq(crate::commands::dlq::DlqArgs),
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
    Job(crate::commands::job::JobArgs),
    /// List a queue's recent jobs in one state (queued, running, succeeded, failed, dead),
    /// newest first.
    Jobs(crate::commands::jobs::JobsArgs),
    /// Check that a Redis server is fit for a queue: version, eviction policy, persistence,
    /// ACL permissions, idle timeout, latency. Exit 1 when a check FAILs.
    Doctor(crate::commands::doctor::DoctorArgs),
    /// Serve a web dashboard of every queue under the key prefix: depth, consumers, rates and
    /// charts, dead letters to replay or delete, and the JSON API behind it.
    Dashboard(crate::dashboard::DashboardArgs),
    /// One command that shows Pythia working: a local Redis, a batch of messages, a worker.
    Quickstart(crate::commands::quickstart::QuickstartArgs),
    /// Measure throughput, CPU, memory and latency of each delivery mode against the bare
    /// client loop of the same Redis commands.
    Bench(crate::commands::bench::BenchArgs),
    /// Print a shell completion script, e.g. `pythia completions bash >
    /// /etc/bash_completion.d/pythia` or `pythia completions zsh > "${fpath[1]}/_pythia"`.
    Completions(crate::commands::completions::CompletionsArgs),
    /// Print the man page (roff), e.g. `pythia man > /usr/local/share/man/man1/pythia.1`.
    Man,
    /// One measured run inside `pythia bench` (internal).
    #[command(hide = true)]
    BenchChild(crate::commands::bench::BenchChildArgs),
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
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
