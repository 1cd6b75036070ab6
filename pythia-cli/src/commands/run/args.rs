//! The arguments of `pythia run`: the queue, concurrency, retries, the handler (built-in,
//! `--exec`, `--exec-persistent`, `--http`), the metrics endpoint, resilience and pub/sub
//! buffering.

use std::time::Duration;

use clap::{Args, ValueEnum};
use pythia::redis::Overflow;

use crate::cli::{QueueArgs, parse_duration};

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

fn parse_http_url(s: &str) -> Result<crate::http_worker::HttpUrl, String> {
    s.parse()
}
