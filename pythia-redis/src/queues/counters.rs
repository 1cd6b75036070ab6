//! Processed / failed / retried counters per queue and UTC day, kept in Redis as Sidekiq and
//! asynq keep theirs.
//!
//! # Behaviour
//!
//! * [`CountingBroker`] wraps any broker. After each settle **succeeds** it adds the batch's
//!   outcomes to three in-process atomics (`Ack` → processed, `DeadLetter` → failed, `Retry`
//!   → retried); nothing is sent to Redis per message or per batch.
//! * The counts are flushed from the maintenance task, at most every [`FLUSH_EVERY`], in one
//!   pipeline of `INCRBY` + `EXPIRE` per non-zero counter on
//!   `<prefix>:{<queue>}:stat:<counter>:<YYYY-MM-DD>` ([`QueueKeys::stat`]), and once more on
//!   close. A periodic flush (rather than one `INCRBY` per settled batch) keeps the cost
//!   independent of the batch size: a worker settling 100,000 messages a second in batches
//!   of 50 sends one pipeline every 2 s instead of 2,000 commands.
//! * Each day's key lives [`COUNTER_TTL`] (90 days, asynq's retention).
//! * A failed flush keeps the counts for the next one. A process that dies loses at most the
//!   counts of its last [`FLUSH_EVERY`]: the counters are a throughput view, not a ledger.
//! * A settle that fails and is retried by the runtime is counted once, when it succeeds.
//!
//! [`QueueKeys::stat`]: crate::QueueKeys::stat

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use pythia_core::{
    Broker, BrokerError, Delivery, DeliveryGuarantee, Outcome, QueueStats, Settlement, Source,
};

use crate::QueueKeys;
use crate::call::Call;
use crate::connection::RedisConnection;

/// Longest time between two flushes of a busy worker's counts.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// How long each day's counter key is kept.
pub const COUNTER_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// The counters' names, in [`DailyCounts`] order.
const COUNTERS: [&str; 3] = ["processed", "failed", "retried"];

/// One queue's counts for one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DailyCounts {
    /// Messages acknowledged.
    pub processed: u64,
    /// Messages dead-lettered.
    pub failed: u64,
    /// Deliveries sent back for another attempt.
    pub retried: u64,
}

impl DailyCounts {
    /// The counts of `queue` on `day` (`YYYY-MM-DD`, UTC); zeros for a day without any.
    pub async fn read(conn: &RedisConnection, queue: &str, day: &str) -> Result<Self, BrokerError> {
        let keys = QueueKeys::new(conn.config().key_prefix(), queue);
        let mut m = conn.manager();
        let (processed, failed, retried): (Option<u64>, Option<u64>, Option<u64>) =
            read_call(&keys, day)
                .query(&mut m)
                .await
                .map_err(|e| conn.error("read counters", e))?;
        Ok(Self {
            processed: processed.unwrap_or(0),
            failed: failed.unwrap_or(0),
            retried: retried.unwrap_or(0),
        })
    }

    /// The counts of `queue` today (UTC).
    pub async fn today(conn: &RedisConnection, queue: &str) -> Result<Self, BrokerError> {
        Self::read(conn, queue, &utc_day(SystemTime::now())).await
    }
}

/// The UTC date of `t`, `YYYY-MM-DD`.
pub fn utc_day(t: SystemTime) -> String {
    let ms = pythia_core::message::unix_millis(t);
    use chrono::Datelike;
    let d = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .unwrap_or_default()
        .date_naive();
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// A broker that counts what it settles into the per-queue daily counters (see the module
/// docs for when they reach Redis).
///
/// ```no_run
/// use pythia_redis::queues::CountingBroker;
/// use pythia_redis::{RedisConfig, RedisConnection, StreamBroker};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let broker = CountingBroker::new(StreamBroker::new(&conn, "events", "billing"), &conn);
/// // WorkerRuntime::new(broker, worker) … as with the bare broker.
/// # drop(broker); Ok(()) }
/// ```
#[derive(Debug)]
pub struct CountingBroker<B> {
    inner: B,
    conn: RedisConnection,
    keys: QueueKeys,
    counts: [AtomicU64; 3],
    last_flush: Mutex<Instant>,
    on: bool,
    /// The last periodic flush failed (logged once per streak, not every 2 s).
    flush_failing: std::sync::atomic::AtomicBool,
}

impl<B: Broker> CountingBroker<B> {
    /// Counts what `inner` settles, under the name of its source and `conn`'s key prefix.
    pub fn new(inner: B, conn: &RedisConnection) -> Self {
        let keys = QueueKeys::new(conn.config().key_prefix(), inner.source().name());
        Self {
            inner,
            conn: conn.clone(),
            keys,
            counts: Default::default(),
            last_flush: Mutex::new(Instant::now()),
            on: true,
            flush_failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether to count (default: yes). Off, the wrapper passes everything through and never
    /// writes to Redis: one wrapper type for a program whose users switch counting on or off
    /// (`pythia run --no-counters`).
    #[must_use]
    pub fn with_counting(mut self, on: bool) -> Self {
        self.on = on;
        self
    }

    /// The wrapped broker.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Counts settled and not yet flushed: processed, failed, retried.
    pub fn unflushed(&self) -> DailyCounts {
        let [p, f, r] = &self.counts;
        DailyCounts {
            processed: p.load(Ordering::Relaxed),
            failed: f.load(Ordering::Relaxed),
            retried: r.load(Ordering::Relaxed),
        }
    }

    /// Sends the counts to Redis now (one pipeline; nothing when all are zero). On an error
    /// they are kept for the next flush.
    pub async fn flush(&self) -> Result<(), BrokerError> {
        let taken: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        *self.last_flush.lock().expect("flush lock") = Instant::now();
        if taken.iter().all(|&n| n == 0) {
            return Ok(());
        }
        let day = utc_day(SystemTime::now());
        let mut m = self.conn.manager();
        let call = flush_call(&self.keys, &day, &taken);
        if let Err(e) = call.query::<()>(&mut m).await {
            for (c, n) in self.counts.iter().zip(taken) {
                c.fetch_add(n, Ordering::Relaxed);
            }
            return Err(self.conn.error("flush counters", e));
        }
        Ok(())
    }

    fn flush_due(&self) -> bool {
        self.last_flush.lock().expect("flush lock").elapsed() >= FLUSH_EVERY
    }
}

impl<B: Broker> Broker for CountingBroker<B> {
    type Token = B::Token;

    fn guarantee(&self) -> DeliveryGuarantee {
        self.inner.guarantee()
    }

    fn source(&self) -> &Source {
        self.inner.source()
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<B::Token>>, BrokerError> {
        self.inner.fetch(max).await
    }

    async fn try_fetch(&self, max: usize) -> Result<Vec<Delivery<B::Token>>, BrokerError> {
        self.inner.try_fetch(max).await
    }

    fn throttle(&self, token: &B::Token, pause: Duration) -> bool {
        self.inner.throttle(token, pause)
    }

    async fn settle(&self, batch: &[Settlement<B::Token>]) -> Result<(), BrokerError> {
        self.inner.settle(batch).await?;
        if !self.on {
            return Ok(());
        }
        let mut n = [0u64; 3];
        for s in batch {
            let i = match s.outcome {
                Outcome::Ack => 0,
                Outcome::DeadLetter { .. } => 1,
                Outcome::Retry { .. } => 2,
            };
            n[i] += 1;
        }
        for (c, n) in self.counts.iter().zip(n) {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    async fn release(&self, batch: Vec<Delivery<B::Token>>) -> Result<(), BrokerError> {
        self.inner.release(batch).await
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        self.inner.is_drained().await
    }

    /// The inner broker's housekeeping, then a flush of the counts when [`FLUSH_EVERY`] has
    /// passed (a failed flush is logged and retried at the next one).
    async fn maintain(&self) -> Result<(), BrokerError> {
        let inner = if self.inner.maintenance_interval().is_some() {
            self.inner.maintain().await
        } else {
            Ok(())
        };
        if self.on && self.flush_due() {
            match self.flush().await {
                Ok(()) => {
                    if self.flush_failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(queue = %self.keys.queue(), "queue counters flushed again");
                    }
                }
                Err(e) => {
                    if !self.flush_failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(queue = %self.keys.queue(), error = %e, "could not flush the queue counters; kept for the next flush");
                    }
                }
            }
        }
        inner
    }

    /// The inner broker's interval, or [`FLUSH_EVERY`] for a broker without maintenance.
    fn maintenance_interval(&self) -> Option<Duration> {
        let inner = self.inner.maintenance_interval();
        if self.on {
            Some(inner.unwrap_or(FLUSH_EVERY))
        } else {
            inner
        }
    }

    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        self.inner.stats().await
    }

    /// The inner broker's close, then a last flush.
    async fn close(&self) -> Result<(), BrokerError> {
        let closed = self.inner.close().await;
        if !self.on {
            return closed;
        }
        let flushed = self.flush().await;
        closed.and(flushed)
    }
}

/// The counters of the queue `keys` name on `day`, one `GET` each in [`COUNTERS`] order,
/// pipelined (nil for a counter never written).
fn read_call(keys: &QueueKeys, day: &str) -> Call {
    let mut pipe = redis::pipe();
    for c in COUNTERS {
        pipe.get(keys.stat(c, day));
    }
    Call::pipeline(pipe)
}

/// `counts` ([`COUNTERS`] order) added to the queue's counters of `day`, each non-zero one with
/// `INCRBY` and its key's TTL renewed to [`COUNTER_TTL`], pipelined; replies nothing.
fn flush_call(keys: &QueueKeys, day: &str, counts: &[u64]) -> Call {
    let mut pipe = redis::pipe();
    for (name, &n) in COUNTERS.iter().zip(counts).filter(|(_, n)| **n > 0) {
        let key = keys.stat(name, day);
        pipe.incr(&key, n)
            .ignore()
            .expire(&key, COUNTER_TTL.as_secs() as i64)
            .ignore();
    }
    Call::pipeline(pipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_adds_and_renews_only_the_counters_that_moved() {
        let keys = QueueKeys::new("pythia", "mail");
        assert_eq!(
            flush_call(&keys, "2026-12-03", &[5, 0, 2]).commands_text(),
            [
                ["INCRBY", "pythia:{mail}:stat:processed:2026-12-03", "5"],
                [
                    "EXPIRE",
                    "pythia:{mail}:stat:processed:2026-12-03",
                    "7776000"
                ],
                ["INCRBY", "pythia:{mail}:stat:retried:2026-12-03", "2"],
                ["EXPIRE", "pythia:{mail}:stat:retried:2026-12-03", "7776000"],
            ]
        );
        assert_eq!(
            read_call(&keys, "2026-12-03").commands_text(),
            [
                ["GET", "pythia:{mail}:stat:processed:2026-12-03"],
                ["GET", "pythia:{mail}:stat:failed:2026-12-03"],
                ["GET", "pythia:{mail}:stat:retried:2026-12-03"],
            ]
        );
    }

    #[test]
    fn days_are_utc_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_342_400 + 86_399);
        assert_eq!(utc_day(t), "2026-12-04");
        assert_eq!(utc_day(SystemTime::UNIX_EPOCH), "1970-01-01");
    }
}
