//! One of K worker processes of the scale scenario, all on the same stream consumer group or
//! reliable list: connects, prints `ready`, starts on a `go` line on stdin, drains in burst mode
//! with a handler that only records the message, and reports when it started, when it handled
//! its last message and which messages it handled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pythia::redis::{GroupStart, RedisConnection, ReliableListBroker, StreamBroker};
use pythia::{Message, Worker, WorkerError};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::child::{RunResult, drain, now_ns};
use super::processed_set::SeenBitmap;
use super::{BenchChildArgs, Scenario};
use crate::error::CliError;

/// `numbered_body` starts every body with its number in this many digits.
pub(crate) const NUMBER_DIGITS: usize = 12;

/// The consumer group the replicas share.
pub(crate) const GROUP: &str = "bench-scale";

/// What one replica saw, beside its [`RunResult`].
#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub(crate) struct ReplicaRecord {
    /// When it received `go`, in nanoseconds since the epoch.
    pub(crate) started_ns: u64,
    /// When its handler last returned (0 if it handled nothing).
    pub(crate) last_done_ns: u64,
    /// Handler calls, duplicates included.
    pub(crate) handled: u64,
    /// Bodies without a message number below `--messages` (none when the orchestrator preloaded).
    pub(crate) unnumbered: u64,
    /// The message numbers it handled, as half-open ranges.
    pub(crate) seen: Vec<[u64; 2]>,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    unnumbered: AtomicU64,
    last_done_ns: AtomicU64,
}

/// The handler: marks the body's number, counts the call, keeps the time.
#[derive(Clone)]
struct Tally {
    seen: Arc<SeenBitmap>,
    counters: Arc<Counters>,
}

impl Worker for Tally {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        if !message_number(msg.body()).is_some_and(|i| self.seen.mark(i)) {
            self.counters.unnumbered.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.handled.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_done_ns
            .fetch_max(now_ns() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// The number `numbered_body` wrote at the start of `body`.
fn message_number(body: &[u8]) -> Option<u64> {
    let digits = body.get(..NUMBER_DIGITS)?;
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Waits for the orchestrator's `go`, so that all replicas start together.
async fn wait_for_go() -> Result<u64, CliError> {
    crate::output::outln!("ready")?;
    let mut line = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .map_err(CliError::runtime)?;
    if line.trim() != "go" {
        return Err(CliError::runtime(format!(
            "replica: expected `go` on stdin, got {line:?}"
        )));
    }
    Ok(now_ns() as u64)
}

pub(crate) async fn replica(
    conn: &RedisConnection,
    args: &BenchChildArgs,
) -> Result<RunResult, CliError> {
    let tally = Tally {
        seen: Arc::new(SeenBitmap::new(args.messages)),
        counters: Arc::default(),
    };
    let (started_ns, mut result) = match args.scenario {
        Scenario::Stream => {
            let b = StreamBroker::new(conn, &args.queue, GROUP).with_start(GroupStart::Beginning);
            b.ensure_group().await.map_err(CliError::runtime)?;
            let started = wait_for_go().await?;
            (started, drain(b, tally.clone(), args).await?)
        }
        Scenario::ReliableList => {
            let b = ReliableListBroker::new(conn, &args.queue);
            let started = wait_for_go().await?;
            (started, drain(b, tally.clone(), args).await?)
        }
        other => {
            return Err(CliError::usage(format!(
                "--replica runs stream or reliable-list, not {}",
                other.name()
            )));
        }
    };
    let c = &tally.counters;
    result.replica = Some(ReplicaRecord {
        started_ns,
        last_done_ns: c.last_done_ns.load(Ordering::Relaxed),
        handled: c.handled.load(Ordering::Relaxed),
        unnumbered: c.unnumbered.load(Ordering::Relaxed),
        seen: tally.seen.ranges(),
    });
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::produce::numbered_body;

    #[test]
    fn reads_the_number_numbered_body_wrote() {
        assert_eq!(message_number(&numbered_body(123_456, 100)), Some(123_456));
        assert_eq!(message_number(&numbered_body(0, 12)), Some(0));
        assert_eq!(message_number(&numbered_body(7, 11)), None);
        assert_eq!(message_number(b"00000000001x-not-a-number"), None);
    }
}
