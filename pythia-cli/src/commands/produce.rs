//! `pythia produce`: push messages from arguments, a file, stdin, or a generator, pipelined,
//! optionally paced, with progress on long runs.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use pythia::redis::{
    DelayedProducer, Encoding, JobStatusStore, ListProducer, Publisher, ShardedStreamProducer,
    StreamProducer,
};
use pythia::{Headers, Message};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{BrokerKind, QueueArgs, parse_duration};
use crate::error::CliError;

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

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("invalid header {s:?}: expected KEY=VALUE")),
    }
}

/// Messages per pipeline when not paced.
const CHUNK: usize = 1000;

/// Where bodies come from.
enum Bodies {
    /// The given bodies, cycled up to `count` (once each without a count).
    Given { items: Vec<Vec<u8>>, next: usize },
    /// Numbered bodies of a fixed size.
    Generated { size: usize, next: u64 },
    /// Lines of a reader (stdin or a file), after `first` when it was read ahead.
    Lines {
        first: Option<Vec<u8>>,
        lines: tokio::io::Lines<BufReader<Box<dyn tokio::io::AsyncRead + Unpin + Send>>>,
    },
}

/// The lines of `r`.
fn lines_of(
    r: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
) -> tokio::io::Lines<BufReader<Box<dyn tokio::io::AsyncRead + Unpin + Send>>> {
    BufReader::new(r).lines()
}

/// A body of exactly `size` bytes that starts with its number.
pub(crate) fn numbered_body(i: u64, size: usize) -> Vec<u8> {
    let mut b = format!("{i:012}").into_bytes();
    b.resize(size.max(1), b'x');
    b.truncate(size);
    b
}

impl Bodies {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, CliError> {
        match self {
            Self::Given { items, next } => {
                let b = items[*next % items.len()].clone();
                *next += 1;
                Ok(Some(b))
            }
            Self::Generated { size, next } => {
                let b = numbered_body(*next, *size);
                *next += 1;
                Ok(Some(b))
            }
            Self::Lines { first, lines } => match first.take() {
                Some(line) => Ok(Some(line)),
                None => Ok(lines
                    .next_line()
                    .await
                    .map_err(|e| CliError::usage(format!("cannot read input: {e}")))?
                    .map(String::into_bytes)),
            },
        }
    }
}

pub(crate) async fn produce(args: ProduceArgs) -> Result<(), CliError> {
    if let Some(r) = args.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(CliError::usage(format!(
            "--rate must be a positive number, got {r}"
        )));
    }
    let mut bodies = if let Some(path) = &args.file {
        let f = tokio::fs::File::open(path)
            .await
            .map_err(|e| CliError::usage(format!("cannot open {}: {e}", path.display())))?;
        Bodies::Lines {
            first: None,
            lines: lines_of(Box::new(f)),
        }
    } else if args.messages == ["-"] {
        Bodies::Lines {
            first: None,
            lines: lines_of(Box::new(tokio::io::stdin())),
        }
    } else if args.messages.is_empty() && args.count.is_none() && !std::io::stdin().is_terminal() {
        // `… | pythia produce --queue q`: stdin, as with `-`. Its first line is read before
        // connecting, so that an empty stdin is "nothing to produce", not zero messages sent.
        let mut lines = lines_of(Box::new(tokio::io::stdin()));
        let first = lines
            .next_line()
            .await
            .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
        match first {
            Some(line) => Bodies::Lines {
                first: Some(line.into_bytes()),
                lines,
            },
            None => {
                return Err(CliError::usage(
                    "nothing to produce: stdin is empty; give messages, `-` for stdin, \
                     --file PATH, or --count N",
                ));
            }
        }
    } else if !args.messages.is_empty() {
        Bodies::Given {
            items: args
                .messages
                .iter()
                .map(|m| m.clone().into_bytes())
                .collect(),
            next: 0,
        }
    } else if args.count.is_some() {
        Bodies::Generated {
            size: args.size,
            next: 0,
        }
    } else {
        return Err(CliError::usage(
            "nothing to produce: give messages, `-` for stdin, --file PATH, or --count N",
        ));
    };
    let limit = match (&bodies, args.count) {
        (_, Some(n)) => n,
        (Bodies::Given { items, .. }, None) => items.len() as u64,
        _ => u64::MAX,
    };

    let queue = args.queue.single()?.to_owned();
    let sharded = args.queue.sharded()?;
    if sharded.is_some() && (args.delay.is_some() || args.at.is_some()) {
        // Each shard has a schedule of its own: cancelling by id would need the shard, and a
        // DelayedProducer does not check the shard layout the way ShardedStreamProducer does.
        return Err(CliError::usage(
            "--delay and --at are not supported with --shards: produce to the plain stream \
             (--shards 1), or schedule from the application",
        ));
    }
    let conn = super::connect(&args.queue).await?;
    let encoding = match (args.raw, args.wire) {
        (true, _) | (false, Wire::Raw) => Encoding::Raw,
        (false, Wire::PythiaPy) => Encoding::PythiaPy,
        (false, Wire::Pythia) => Encoding::Envelope,
    };
    if encoding == Encoding::PythiaPy && (args.delay.is_some() || args.at.is_some()) {
        return Err(CliError::usage(
            "--wire pythia-py cannot be combined with --delay or --at: the Python format has no \
             schedule; produce when due",
        ));
    }
    let when = match (args.delay, args.at) {
        (Some(d), _) => Some(When::In(d)),
        (_, Some(at)) => Some(When::At(at)),
        _ => None,
    };
    let sink = match (args.queue.broker, when, &sharded) {
        (_, _, Some(sharded)) => Sink::Sharded(
            ShardedStreamProducer::new(&conn, sharded)
                .with_encoding(encoding)
                .with_max_len((args.max_len > 0).then_some(args.max_len)),
        ),
        (BrokerKind::Pubsub, Some(_), None) => {
            return Err(CliError::usage(
                "--delay and --at need a list or a stream: pub/sub keeps nothing to deliver later",
            ));
        }
        (BrokerKind::List | BrokerKind::ReliableList, Some(when), None) => Sink::Delayed(
            DelayedProducer::list(&conn, &queue).with_side(args.queue.list_side.into()),
            when,
        ),
        (BrokerKind::Stream, Some(when), None) => {
            Sink::Delayed(DelayedProducer::stream(&conn, &queue), when)
        }
        (BrokerKind::List | BrokerKind::ReliableList, None, None) => Sink::List(
            ListProducer::new(&conn, &queue)
                .with_side(args.queue.list_side.into())
                .with_encoding(encoding),
        ),
        (BrokerKind::Stream, None, None) => Sink::Stream(
            StreamProducer::new(&conn, &queue)
                .with_encoding(encoding)
                .with_max_len((args.max_len > 0).then_some(args.max_len)),
        ),
        (BrokerKind::Pubsub, None, None) => {
            Sink::Channel(Publisher::new(&conn, &queue).with_encoding(encoding))
        }
    };
    let status = args.track.then(|| JobStatusStore::new(&conn, &queue));
    let mut receivers = 0u64;
    let headers: Headers = args.headers.iter().cloned().collect();
    let chunk = match args.rate {
        Some(r) => ((r / 20.0) as usize).clamp(1, CHUNK),
        None => CHUNK,
    };

    let started = Instant::now();
    let mut last_report = started;
    let mut sent = 0u64;
    let mut done = false;
    while !done && sent < limit {
        let mut batch = Vec::with_capacity(chunk);
        while batch.len() < chunk && sent + (batch.len() as u64) < limit {
            match bodies.next().await? {
                Some(b) => batch.push(Message::new(b).with_headers(headers.clone())),
                None => {
                    done = true;
                    break;
                }
            }
        }
        if batch.is_empty() {
            break;
        }
        if let Some(status) = &status {
            // Before sending: a fast worker's record is then never older than "queued".
            status
                .record_queued(&batch)
                .await
                .map_err(CliError::runtime)?;
        }
        let (n, heard) = sink.send(&batch).await.map_err(CliError::runtime)?;
        if args.print_ids {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            for m in &batch {
                writeln!(out, "{}", m.id()).map_err(|e| CliError::output(&e))?;
            }
        }
        sent += n;
        receivers += heard;
        if let Some(rate) = args.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let pct = if limit == u64::MAX {
                String::new()
            } else {
                format!(" ({:.0}%)", sent as f64 * 100.0 / limit as f64)
            };
            crate::output::errln!(
                "… {sent} sent{pct}, {:.0} msg/s",
                sent as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let heard = if args.queue.broker == BrokerKind::Pubsub {
        format!(", {receivers} deliveries to subscribers")
    } else {
        String::new()
    };
    let kind = match &sharded {
        Some(q) => format!("sharded stream ({} shards)", q.shard_count()),
        None => args.queue.broker.as_str().to_owned(),
    };
    let rate = sent as f64 / secs.max(1e-9);
    if args.json {
        let doc = serde_json::json!({
            "queue": queue,
            "broker": args.queue.broker.as_str(),
            "shards": sharded.as_ref().map(|q| q.shard_count()),
            "produced": sent,
            "seconds": secs,
            "rate_per_second": rate,
            "subscriber_deliveries": (args.queue.broker == BrokerKind::Pubsub).then_some(receivers),
            "delay_seconds": args.delay.map(|d| d.as_secs_f64()),
            "deliver_at": args.at.map(super::rfc3339),
        });
        return crate::output::outln!("{doc}");
    }
    let summary = format!(
        "produced {sent} messages to {kind} {queue:?} in {secs:.3}s ({rate:.0} msg/s){heard}"
    );
    if args.print_ids {
        crate::output::errln!("{summary}"); // stdout holds the ids alone
    } else {
        crate::output::outln!("{summary}")?;
    }
    Ok(())
}

/// When a delayed message is due.
#[derive(Debug, Clone, Copy)]
enum When {
    In(Duration),
    At(std::time::SystemTime),
}

/// Where produced messages go.
enum Sink {
    List(ListProducer),
    Stream(StreamProducer),
    /// Round robin over the shards of a sharded stream queue.
    Sharded(ShardedStreamProducer),
    Channel(Publisher),
    Delayed(DelayedProducer, When),
}

impl Sink {
    /// Sends a batch; returns how many were sent and, for channels, how many subscribers
    /// received them in all.
    async fn send(&self, batch: &[Message]) -> Result<(u64, u64), pythia::BrokerError> {
        match self {
            Self::List(p) => Ok((p.push_many(batch).await? as u64, 0)),
            Self::Stream(p) => Ok((p.add_many(batch).await?.len() as u64, 0)),
            Self::Sharded(p) => Ok((p.add_many(batch).await?.len() as u64, 0)),
            Self::Channel(p) => {
                let counts = p.publish_many(batch).await?;
                Ok((counts.len() as u64, counts.iter().map(|c| *c as u64).sum()))
            }
            Self::Delayed(p, when) => {
                match when {
                    // --delay counts on the Redis server's clock, not this machine's.
                    When::In(d) => p.schedule_many_in(batch, *d).await?,
                    When::At(t) => {
                        let items: Vec<(Message, std::time::SystemTime)> =
                            batch.iter().map(|m| (m.clone(), *t)).collect();
                        p.schedule_many(&items).await?
                    }
                };
                Ok((batch.len() as u64, 0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
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

    use super::*;

    #[test]
    fn numbered_bodies_have_the_exact_size() {
        assert_eq!(numbered_body(7, 100).len(), 100);
        assert_eq!(&numbered_body(7, 100)[..12], b"000000000007");
        assert_eq!(numbered_body(7, 5), b"00000");
    }
}
