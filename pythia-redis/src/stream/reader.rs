//! [`StreamReader`]: reads a stream with plain `XREAD` (no consumer group), resuming from its
//! [`Checkpoint`] after a restart.

use std::time::Duration;

use crate::call::Call;
use crate::connection::BlockingSlot;
use pythia_core::{BrokerError, CancellationToken, Message, Outcome, RetryPolicy, Source, Worker};
use redis::Value;
use tokio::sync::Mutex;

use crate::connection::RedisConnection;
use crate::connection::transient_retry::retry_transient;
use crate::stream::checkpoint::Checkpoint;
use crate::stream::{StreamEntryId, message_from_entry};

/// Where a [`StreamReader`] without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReaderStart {
    /// Entries added after the reader first looks (the default).
    #[default]
    NewEntries,
    /// The first entry of the stream.
    Beginning,
}

/// Reads every entry of a stream in order with `XREAD`, outside any consumer group, and keeps
/// its position in a [`Checkpoint`] so that a restarted reader resumes where it was.
///
/// # Behaviour
///
/// * **Start**: from the checkpoint if there is one, else from [`ReaderStart`] (new entries by
///   default: the stream's last id when the reader first reads).
/// * **Reading**: [`read`](Self::read) runs `XREAD COUNT <batch> BLOCK <block timeout>` on a
///   connection of its own and advances the reader's position in memory; nothing is saved
///   until [`commit`](Self::commit).
/// * **[`run`](Self::run)** hands each entry to a [`Worker`], one at a time, and commits the
///   last finished entry after each batch and when stopped: at-least-once, so after a crash
///   the entries of the unfinished batch are read again. A failed entry is retried in process
///   by the [`RetryPolicy`] (its delays, its `max_attempts`); one that still fails, or is
///   rejected, is logged and skipped (a plain reader has no dead-letter queue: use a consumer
///   group for that). Stopped while an entry still fails (waiting for its retry), the reader
///   commits only the entries before it: the next run reads it again. Redis errors while reading are logged once per outage and retried with
///   backoff.
/// * Entries are decoded like a [`StreamBroker`](crate::StreamBroker)'s (`body`, headers,
///   `pythia-id`, …); entries written for a consumer group's retries are read like any other.
///
/// ```no_run
/// use pythia_core::{CancellationToken, Message, Worker, WorkerError};
/// use pythia_redis::{ReaderStart, RedisConfig, RedisConnection, StreamReader};
///
/// struct Audit;
/// impl Worker for Audit {
///     async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
///         println!("{} {:?}", msg.id(), msg.body());
///         Ok(())
///     }
/// }
///
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let reader = StreamReader::new(&conn, "events", "audit-log").with_start(ReaderStart::Beginning);
/// let stop = CancellationToken::new();
/// let processed = reader.run(&Audit, stop).await?; // until cancelled; resumes after a restart
/// # let _ = processed; Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamReader {
    conn: RedisConnection,
    checkpoint: Checkpoint,
    source: Source,
    start: ReaderStart,
    batch: usize,
    policy: RetryPolicy,
    position: Mutex<Option<StreamEntryId>>,
    blocking: BlockingSlot,
}

impl StreamReader {
    /// Default entries per read: 256.
    pub const DEFAULT_BATCH: usize = 256;

    /// Reader `reader` of `stream`, its checkpoint `<prefix>:{stream}:checkpoint:<reader>`.
    pub fn new(conn: &RedisConnection, stream: &str, reader: &str) -> Self {
        Self {
            conn: conn.clone(),
            checkpoint: Checkpoint::new(conn, stream, reader),
            source: Source::new("stream", stream),
            start: ReaderStart::default(),
            batch: Self::DEFAULT_BATCH,
            policy: RetryPolicy::default(),
            position: Mutex::new(None),
            blocking: BlockingSlot::default(),
        }
    }

    /// Where to start when there is no checkpoint.
    #[must_use]
    pub fn with_start(mut self, start: ReaderStart) -> Self {
        self.start = start;
        self
    }

    /// Entries per read (1 to 10,000).
    #[must_use]
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch = n.clamp(1, 10_000);
        self
    }

    /// TTL of the checkpoint (see [`Checkpoint::with_ttl`]).
    #[must_use]
    pub fn with_checkpoint_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.checkpoint = self.checkpoint.with_ttl(ttl);
        self
    }

    /// In-process retries of a failed entry in [`run`](Self::run).
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The id after which the next read starts (resolving the start on first use).
    pub async fn position(&self) -> Result<StreamEntryId, BrokerError> {
        let mut pos = self.position.lock().await;
        if let Some(p) = *pos {
            return Ok(p);
        }
        let p = match self.checkpoint.load().await? {
            Some(p) => p,
            None => match self.start {
                ReaderStart::Beginning => StreamEntryId::default(),
                ReaderStart::NewEntries => self.last_id().await?,
            },
        };
        *pos = Some(p);
        Ok(p)
    }

    /// The id of the stream's last entry (0-0 when empty).
    async fn last_id(&self) -> Result<StreamEntryId, BrokerError> {
        let stream = self.source.name();
        let last: Vec<(String, Value)> =
            retry_transient("read a stream's last id", || async move {
                let mut m = self.conn.manager();
                redis::cmd("XREVRANGE")
                    .arg(stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut m)
                    .await
                    .map_err(|e| self.conn.error("XREVRANGE", e))
            })
            .await?;
        Ok(last
            .first()
            .and_then(|(id, _)| id.parse().ok())
            .unwrap_or_default())
    }

    /// Reads the next entries after the position, waiting up to the connection's block timeout
    /// when there are none; advances the position past them.
    pub async fn read(&self) -> Result<Vec<(StreamEntryId, Message)>, BrokerError> {
        Ok(self.read_after().await?.1)
    }

    /// [`read`](Self::read), with the position the entries were read after.
    async fn read_after(
        &self,
    ) -> Result<(StreamEntryId, Vec<(StreamEntryId, Message)>), BrokerError> {
        let after = self.position().await?;
        let block_ms = self.conn.config().block_timeout().as_millis() as u64;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(self.batch)
            .arg("BLOCK")
            .arg(block_ms.max(1))
            .arg("STREAMS")
            .arg(self.source.name())
            .arg(after);
        let reply: Value = self
            .blocking
            .query(&self.conn, &Call::command(cmd))
            .await?
            .map_err(|e| self.conn.error("XREAD", e))?;
        let entries = parse_xread(reply);
        if let Some((last, _)) = entries.last() {
            *self.position.lock().await = Some(*last);
        }
        let messages = entries
            .into_iter()
            .map(|(id, fields)| {
                (
                    id,
                    message_from_entry(&id.to_string(), fields, &self.source),
                )
            })
            .collect();
        Ok((after, messages))
    }

    /// Saves `id` as processed (the checkpoint only moves forward); `true` if it moved.
    pub async fn commit(&self, id: StreamEntryId) -> Result<bool, BrokerError> {
        self.checkpoint.save(id).await
    }

    /// Reads and processes entries one at a time until `stop` is cancelled (see "Behaviour"),
    /// then commits and returns how many entries were processed (skipped ones included).
    ///
    /// Fails only on an error that a retry cannot fix (a Redis error reply such as a wrong key
    /// type, a bad checkpoint).
    pub async fn run<W: Worker>(
        &self,
        worker: &W,
        stop: CancellationToken,
    ) -> Result<u64, BrokerError> {
        let mut processed = 0u64;
        let mut failing = false;
        let mut pause = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let (from, batch) = match stop.run_until_cancelled(self.read_after()).await {
                None => break,
                Some(Ok(read)) => {
                    if failing {
                        tracing::info!(stream = self.source.name(), "stream reader recovered");
                        failing = false;
                        pause = Duration::from_millis(100);
                    }
                    read
                }
                Some(Err(e)) if e.is_retryable() => {
                    if !failing {
                        tracing::warn!(stream = self.source.name(), error = %e, "stream reader cannot read; will keep trying");
                    }
                    failing = true;
                    let _ = stop.run_until_cancelled(tokio::time::sleep(pause)).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
                Some(Err(e)) => return Err(e),
            };
            let mut done = None;
            let mut unfinished = false;
            for (id, msg) in batch {
                // An entry still failing when the reader was stopped is not done: it must not
                // be committed, and neither may anything after it.
                if stop.is_cancelled() || !self.process(worker, msg, &stop).await {
                    unfinished = true;
                    break;
                }
                done = Some(id);
                processed += 1;
            }
            if let Some(id) = done {
                self.commit(id).await?;
            }
            if unfinished {
                // Entries read but not finished are read again, from the checkpoint by the
                // next reader, from here by this one.
                *self.position.lock().await = Some(done.unwrap_or(from));
            }
        }
        Ok(processed)
    }

    /// One entry, retried in process by the policy; logged and skipped when it gives up.
    /// `false` when `stop` interrupted it while it was still failing: it is not done.
    async fn process<W: Worker>(
        &self,
        worker: &W,
        mut msg: Message,
        stop: &CancellationToken,
    ) -> bool {
        loop {
            let result = worker.process_message(&msg).await;
            match self.policy.outcome(&msg, &result) {
                Outcome::Ack => return true,
                Outcome::Retry { delay }
                    if stop
                        .run_until_cancelled(tokio::time::sleep(delay))
                        .await
                        .is_some() =>
                {
                    msg = msg.clone().with_attempt(msg.attempt().saturating_add(1));
                }
                Outcome::Retry { .. } => {
                    tracing::warn!(
                        stream = self.source.name(),
                        id = msg.id(),
                        "stopping while a stream entry still fails: not committed, it is read again"
                    );
                    return false;
                }
                Outcome::DeadLetter { reason } => {
                    tracing::error!(stream = self.source.name(), id = msg.id(), %reason, "stream entry skipped");
                    return true;
                }
            }
        }
    }
}

/// One entry: its id and fields.
type Entry = (StreamEntryId, Vec<(Vec<u8>, Vec<u8>)>);

/// The entries of a one-stream `XREAD` reply (RESP2 arrays or RESP3 maps); deleted entries
/// (no fields) are left out.
fn parse_xread(reply: Value) -> Vec<Entry> {
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let fields = parts.pop().expect("two parts");
            let Some(id) =
                bytes(parts.pop().expect("two parts")).and_then(|b| StreamEntryId::parse(&b))
            else {
                continue;
            };
            let pairs = match fields {
                Value::Array(flat) => {
                    let mut it = flat.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        if let (Some(k), Some(v)) = (bytes(k), bytes(v)) {
                            pairs.push((k, v));
                        }
                    }
                    pairs
                }
                Value::Map(map) => map
                    .into_iter()
                    .filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
                    .collect(),
                _ => continue,
            };
            out.push((id, pairs));
        }
    }
    out
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn xread_replies_parse_in_both_protocols() {
        let entry =
            |id: &str| Value::Array(vec![bulk(id), Value::Array(vec![bulk("body"), bulk("x")])]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                entry("1-0"),
                entry("2-5"),
                Value::Array(vec![bulk("3-0"), Value::Nil]),
            ]),
        ])]);
        let got = parse_xread(resp2);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, StreamEntryId::new(2, 5));
        assert_eq!(got[0].1, vec![(b"body".to_vec(), b"x".to_vec())]);
        let resp3 = Value::Map(vec![(bulk("s"), Value::Array(vec![entry("7-0")]))]);
        assert_eq!(parse_xread(resp3)[0].0, StreamEntryId::new(7, 0));
        assert!(parse_xread(Value::Nil).is_empty());
    }
}
