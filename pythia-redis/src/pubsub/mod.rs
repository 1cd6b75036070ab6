//! [`PubSubBroker`]: Redis pub/sub (`SUBSCRIBE` / `PSUBSCRIBE`, or sharded `SSUBSCRIBE` on a
//! Redis Cluster) behind the one [`Worker`](pythia_core::Worker) trait. Fan-out, at-most-once,
//! with a bounded in-process buffer.

mod buffer;
mod builder;
mod commands;
pub mod publisher;

mod sharded;
mod subscriber;

use self::buffer::*;
pub use self::builder::PubSubBuilder;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use futures_util::StreamExt;
use pythia_core::{
    Broker, BrokerError, BrokerErrorKind, CancellationToken, Delivery, DeliveryGuarantee, Message,
    Outcome, QueueStats, Settlement, Source, envelope,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::connection::RedisConnection;
use crate::consumer::retry_schedule::DeadLetterCap;
use sharded::{Event, ShardedLink};

/// Times the subscription was restored after a lost connection, by `queue` and `broker`.
pub const RECONNECTS_TOTAL: &str = "pythia_pubsub_reconnects_total";
/// Messages dropped in process, by `queue`, `broker` and `policy`: `drop_oldest` or
/// `drop_newest` (the [`Overflow`] policy, when the buffer was full) or `shutdown` (still
/// buffered, waiting for a retry or handed back when the broker closed).
pub const DROPPED_TOTAL: &str = "pythia_pubsub_dropped_total";

/// Messages moved from the subscription into the buffer per lock.
const READ_CHUNK: usize = 512;
/// Chunks the reader moves into the buffer before it yields to other tasks.
const CHUNKS_PER_TURN: usize = 64;
/// Distinct (channel, pattern) sources remembered before the cache starts over.
const SOURCE_CACHE_CAP: usize = 1024;
/// A connection that stayed up this long resets the reconnect backoff; one lost sooner waits
/// before the next attempt, so a server that drops every new subscriber is not hammered.
const STABLE_UPTIME: Duration = Duration::from_secs(1);
/// The longest wait between resubscribe attempts, before jitter.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);
/// How long `close` waits for the subscriber task to let go of its connection.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What the buffer gives up when a message arrives and it is full.
///
/// The buffer holds messages received but not yet fetched, plus in-process retries waiting
/// for their time; [`PubSubBuilder::with_capacity`] bounds the two together. Each drop is
/// counted in [`PubSubCounters::dropped`] and in `pythia_pubsub_dropped_total{policy}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the oldest buffered message to make room: a worker that falls behind sees the most
    /// recent messages (right for state updates, prices, presence). The default.
    #[default]
    DropOldest,
    /// Drop the arriving message: a worker that falls behind sees the earliest messages, and
    /// what arrives while the buffer is full is lost.
    DropNewest,
}

impl Overflow {
    /// `"drop_oldest"` or `"drop_newest"`, the `policy` label of the dropped counter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DropOldest => "drop_oldest",
            Self::DropNewest => "drop_newest",
        }
    }
}

impl std::str::FromStr for Overflow {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "drop_oldest" | "oldest" => Ok(Self::DropOldest),
            "drop_newest" | "newest" => Ok(Self::DropNewest),
            other => Err(BrokerError::config(format!(
                "invalid overflow policy {other:?}: expected \"drop-oldest\" or \"drop-newest\""
            ))),
        }
    }
}

/// A snapshot of a [`PubSubBroker`]'s in-process counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PubSubCounters {
    /// Messages received from the subscription since it started.
    pub received: u64,
    /// Messages waiting in the buffer now.
    pub buffered: usize,
    /// In-process retries waiting for their time now.
    pub pending_retries: usize,
    /// The most messages held at once (buffered plus pending retries); never above the capacity.
    pub peak_held: usize,
    /// Messages dropped by the [`Overflow`] policy because the buffer was full.
    pub dropped: u64,
    /// Messages dropped because the broker closed while they were buffered, waiting for a
    /// retry, or fetched and not processed.
    pub dropped_at_shutdown: u64,
    /// Times the subscription was restored after a lost connection.
    pub reconnects: u64,
    /// Whether the subscription is live right now.
    pub connected: bool,
}

/// Consumes Redis pub/sub: `SUBSCRIBE` to channels and `PSUBSCRIBE` to patterns, on a
/// dedicated connection; on a Redis Cluster, sharded pub/sub (`SSUBSCRIBE`).
///
/// # How
///
/// * **Receiving.** A task owned by the broker reads the subscription as fast as Redis sends
///   and puts each message into a bounded in-process buffer. [`fetch`](Broker::fetch) takes up
///   to `max` from the buffer, waiting up to the configuration's block timeout when it is
///   empty. Each payload is decoded with [`envelope::decode`]: a Pythia envelope, a Python
///   `pythia-framework` JSON item, or a raw body. The message's [`Source`] names the channel
///   it was published on and, for a pattern subscription, the pattern that matched.
/// * **Fan-out.** Every subscriber receives every message published while it is subscribed:
///   two workers subscribed to one channel both process each message. To share work between
///   workers instead, use a list or a stream.
/// * **Overflow.** The buffer holds at most [`with_capacity`](PubSubBuilder::with_capacity)
///   messages (buffered plus pending retries). When a publisher outpaces the worker, the
///   [`Overflow`] policy drops the oldest buffered or the arriving message, and counts it, so
///   memory stays bounded.
/// * **Reconnects.** When the connection is lost (the server closed it, restarted, or stopped
///   answering the periodic `PING`), the broker opens a new one and subscribes again by itself,
///   retrying with exponential backoff and jitter. It logs the outage once (`warn`) and the
///   recovery once (`info`, with the length of the gap), counts it in
///   `pythia_pubsub_reconnects_total`, reports [`is_connected`](Self::is_connected), and makes
///   [`maintain`](Broker::maintain) fail while it is down, so the runtime's readiness probe
///   says so. Buffered messages are still delivered during an outage.
/// * **Settling.** `Ack` does nothing (there is nothing in Redis to remove). `Retry` is an
///   in-process redelivery: the message goes back into the buffer after the delay with its
///   attempt raised; nothing is written to Redis, so a pending retry is lost if the process
///   stops. `DeadLetter` pushes the message, the reason and the time onto the
///   dead-letter list (`<prefix>:{<name>}:dlq` unless configured otherwise), or logs
///   and drops it when the broker has no dead-letter list.
/// * **Shutdown.** Nothing can be handed back: deliveries released by the runtime, buffered
///   messages and pending retries are dropped when the broker closes, counted in
///   [`PubSubCounters::dropped_at_shutdown`] and logged.
/// * **Burst mode** ends once the buffer is empty, no retry is pending and a fetch waited a
///   full block timeout for nothing: a pub/sub worker in burst mode processes what arrives and
///   stops when publishers go quiet.
///
/// # Delivery guarantee: at-most-once
///
/// Redis pub/sub keeps nothing. A message published while no subscriber is connected (before
/// [`subscribe`](PubSubBuilder::subscribe), during a reconnect, after the worker stopped) is
/// gone; so is a message dropped by the overflow policy, one in the buffer or waiting for an
/// in-process retry when the process stops or crashes, and one whose handler was running when
/// the process died. Nothing is delivered twice to one subscriber, except by a retry or when
/// its subscriptions overlap (a channel also matched by one of its patterns).
/// When messages must not be lost, publish to a reliable list
/// ([`ReliableListBroker`](crate::ReliableListBroker)) or a stream instead.
///
/// # On a Redis Cluster
///
/// When the [`RedisConnection`] is a cluster ([`RedisConfig::with_cluster`]), the broker uses
/// sharded pub/sub: each channel is subscribed with `SSUBSCRIBE` on the node that owns its
/// hash slot, through one RESP3 cluster connection, and a [`Publisher`](crate::Publisher)
/// publishes with `SPUBLISH` to the same node. (Classic `PUBLISH` on a cluster is broadcast to
/// every node over the cluster bus; sharded messages stay in their shard.) Messages take the
/// same path into the same buffer, with the same overflow policy, counters and settling.
///
/// * **Patterns** have no sharded form: [`subscribe`](PubSubBuilder::subscribe) refuses them
///   with a [`BrokerErrorKind::Config`] error on a cluster.
/// * **Liveness.** The subscription counts as lost when a node's connection drops (the redis
///   crate's `Disconnection` notice, for any node of the cluster), when a node unsubscribes a
///   channel because its slot moved (a failover or a resharding: the server's `sunsubscribe`),
///   or when the periodic check fails: at the [ping interval](PubSubBuilder::with_ping_interval),
///   `ROLE` to the node of every slot the channels live in, which must answer within the
///   response timeout and be the slot's master (or a replica whose master is gone). The
///   broker then drops the cluster connection and opens a new one (a fresh slot map from the
///   seed nodes, every channel subscribed again), with the backoff, logs and counters
///   described above. Every channel of the broker misses what is published during that
///   reopening (about 0.1 s on loopback), not only the channels of the node that failed. The
///   redis crate's own resubscription is not relied on: after a master was killed, or a slot
///   moved, it was seen to leave the subscription silent for good.
/// * **Failover.** When the master owning a channel's slot dies, the broker subscribes again
///   at once: until the cluster promotes a replica, the subscription goes to the shard's
///   replica, which serves sharded pub/sub for its master's slots and keeps its subscribers
///   when promoted. A [`Publisher`](crate::Publisher) gets retryable errors until the
///   promotion. Messages published while the broker reopens are lost (at-most-once).
///
/// [`RedisConfig::with_cluster`]: crate::RedisConfig::with_cluster
///
/// ```no_run
/// use pythia_core::{Message, Worker, WorkerError, WorkerRuntime};
/// use pythia_redis::{Overflow, PubSubBroker, RedisConfig, RedisConnection};
///
/// struct Print;
/// impl Worker for Print {
///     async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
///         let pattern = msg.source().pattern().unwrap_or("-");
///         println!("{} ({pattern}): {:?}", msg.source().name(), msg.body());
///         Ok(())
///     }
/// }
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let broker = PubSubBroker::builder(&conn)
///     .channel("news")
///     .pattern("orders.*")
///     .with_capacity(50_000)
///     .with_overflow(Overflow::DropOldest)
///     .subscribe()
///     .await?;
/// WorkerRuntime::new(broker, Print).run().await?;
/// # Ok(()) }
/// ```
pub struct PubSubBroker {
    shared: Arc<Shared>,
    source: Source,
    sharded: bool,
    conn: RedisConnection,
    channels: Vec<String>,
    patterns: Vec<String>,
    dead_letters: Option<String>,
    dead_letter_cap: DeadLetterCap,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for PubSubBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubBroker")
            .field("name", &self.source.name())
            .field("channels", &self.channels)
            .field("patterns", &self.patterns)
            .field("sharded", &self.sharded)
            .field("capacity", &self.shared.capacity)
            .field("overflow", &self.shared.overflow)
            .field("dead_letters", &self.dead_letters)
            .field("counters", &self.counters())
            .finish()
    }
}

impl PubSubBroker {
    /// Default bound of the in-process buffer: 10,000 messages.
    pub const DEFAULT_CAPACITY: usize = 10_000;
    /// Default interval of the liveness `PING` on the subscribed connection: 5 s.
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);
    /// How often the runtime asks whether the subscription is live: 1 s.
    pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

    /// Starts configuring a broker on `conn`'s server; add channels or patterns, then
    /// [`subscribe`](PubSubBuilder::subscribe).
    pub fn builder(conn: &RedisConnection) -> PubSubBuilder {
        PubSubBuilder::new(conn)
    }

    /// The channels subscribed with `SUBSCRIBE` (`SSUBSCRIBE` when [`is_sharded`](Self::is_sharded)).
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Whether the channels are subscribed with sharded pub/sub (`SSUBSCRIBE`): true on a
    /// Redis Cluster.
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    /// The patterns subscribed with `PSUBSCRIBE`.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The dead-letter list, or `None` when dead letters are logged and dropped.
    pub fn dead_letter_list(&self) -> Option<&str> {
        self.dead_letters.as_deref()
    }

    /// The bound of the in-process buffer.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.shared.overflow
    }

    /// Whether the subscription is live right now (false during a reconnect and after close).
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire) && !self.subscriber_died()
    }

    /// Whether the subscriber task ended without being stopped (it never should: it retries
    /// forever), so that a dead task shows as a broken subscription instead of a silent stall.
    fn subscriber_died(&self) -> bool {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        task.as_ref().is_some_and(JoinHandle::is_finished)
    }

    /// Times the subscription was restored after a lost connection.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// Messages dropped by the overflow policy.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Messages waiting in the buffer now.
    pub fn buffered(&self) -> usize {
        self.shared.lock().buffer.len()
    }

    /// A snapshot of every counter.
    pub fn counters(&self) -> PubSubCounters {
        let (buffered, pending_retries, peak_held) = {
            let st = self.shared.lock();
            (st.buffer.len(), st.retries.len(), st.peak_held)
        };
        PubSubCounters {
            received: self.shared.received.load(Ordering::Relaxed),
            buffered,
            pending_retries,
            peak_held,
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            dropped_at_shutdown: self.shared.dropped_at_shutdown.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
            connected: self.is_connected(),
        }
    }

    fn closed_error(&self) -> BrokerError {
        BrokerError::new(
            BrokerErrorKind::Closed,
            format!("pub/sub broker {} is closed", self.source.name()),
        )
    }

    async fn push_dead_letters(
        &self,
        key: &str,
        items: &[(&Message, &str)],
    ) -> Result<(), BrokerError> {
        let now = SystemTime::now();
        let payloads: Vec<Vec<u8>> = items
            .iter()
            .map(|(m, reason)| envelope::encode_dead_letter(m, reason, now))
            .collect();
        let cap = self.dead_letter_cap.get();
        let mut m = self.conn.manager();
        let (len,): (u64,) = commands::push_dead_letters(key, &payloads, cap)
            .query(&mut m)
            .await
            .map_err(|e| self.conn.error("dead-letter push", e))?;
        if cap > 0 {
            self.dead_letter_cap.trimmed(len.saturating_sub(cap as u64));
        }
        Ok(())
    }
}

impl Drop for PubSubBroker {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl Broker for PubSubBroker {
    type Token = ();

    fn guarantee(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtMostOnce
    }

    fn source(&self) -> &Source {
        &self.source
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<()>>, BrokerError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let max = max.max(1);
        let deadline = Instant::now() + self.conn.config().block_timeout();
        loop {
            // Created before looking, so a message that arrives in between still wakes us.
            let woken = self.shared.wake.notified();
            let now = Instant::now();
            let (taken, next_due) = {
                let mut st = self.shared.lock();
                st.promote_due(now);
                let n = st.buffer.len().min(max);
                let taken: Vec<Buffered> = st.buffer.drain(..n).collect();
                (taken, st.next_due())
            };
            if !taken.is_empty() {
                return Ok(taken
                    .into_iter()
                    .map(|b| Delivery::new((), b.into_message()))
                    .collect());
            }
            if now >= deadline || self.shared.closed.load(Ordering::Acquire) {
                return Ok(Vec::new());
            }
            let wake_at = next_due.map_or(deadline, |due| due.min(deadline));
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    async fn settle(&self, batch: &[Settlement<()>]) -> Result<(), BrokerError> {
        let dead: Vec<(&Message, &str)> = batch
            .iter()
            .filter_map(|s| match &s.outcome {
                Outcome::DeadLetter { reason } => Some((&s.message, reason.as_str())),
                Outcome::Ack | Outcome::Retry { .. } => None,
            })
            .collect();
        // Redis first: when the push fails the runtime settles the same batch again, and the
        // in-process retries below must then be scheduled once, not twice.
        if !dead.is_empty() {
            match &self.dead_letters {
                Some(key) => self.push_dead_letters(key, &dead).await?,
                None => {
                    for (msg, reason) in &dead {
                        tracing::warn!(
                            subscription = self.source.name(),
                            id = msg.id(),
                            attempt = msg.attempt(),
                            %reason,
                            "dead letter dropped: this pub/sub broker keeps no dead-letter list"
                        );
                    }
                }
            }
        }
        let retries: Vec<(Duration, Message)> = batch
            .iter()
            .filter_map(|s| match &s.outcome {
                Outcome::Retry { delay } => Some((
                    *delay,
                    s.message
                        .clone()
                        .with_attempt(s.message.attempt().saturating_add(1)),
                )),
                Outcome::Ack | Outcome::DeadLetter { .. } => None,
            })
            .collect();
        if !retries.is_empty() {
            self.shared.schedule_retries(retries);
        }
        Ok(())
    }

    async fn release(&self, batch: Vec<Delivery<()>>) -> Result<(), BrokerError> {
        if !batch.is_empty() {
            self.shared.count_shutdown_drops(batch.len() as u64);
            tracing::warn!(
                subscription = self.source.name(),
                count = batch.len(),
                "pub/sub: unprocessed deliveries dropped at shutdown (pub/sub keeps nothing to hand back)"
            );
        }
        Ok(())
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        let st = self.shared.lock();
        Ok(st.buffer.is_empty() && st.retries.is_empty())
    }

    async fn maintain(&self) -> Result<(), BrokerError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.subscriber_died() {
            return Err(BrokerError::backend(format!(
                "pub/sub subscription {}: the subscriber task ended unexpectedly; nothing more \
                 will be received",
                self.source.name()
            )));
        }
        if self.is_connected() {
            return Ok(());
        }
        let since = self.shared.lock().down_since.map(|at| at.elapsed());
        Err(BrokerError::connection(format!(
            "pub/sub subscription {} to {} is down{}; resubscribing",
            self.source.name(),
            self.conn.config().masked_url(),
            since.map_or(String::new(), |d| format!(" for {d:.1?}")),
        )))
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        Some(Self::MAINTENANCE_INTERVAL)
    }

    /// `depth`: messages buffered in process; `scheduled`: in-process retries waiting;
    /// `oldest_age`: how long the next buffered message has waited since it was received;
    /// `dead_letters`: the length of the dead-letter list (0 without one). Pub/sub has no
    /// in-flight or consumer registry of its own, so those stay 0.
    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        let dead_letters = match &self.dead_letters {
            Some(key) => {
                let mut m = self.conn.manager();
                redis::cmd("LLEN")
                    .arg(key)
                    .query_async::<u64>(&mut m)
                    .await
                    .map_err(|e| self.conn.error("stats", e))?
            }
            None => 0,
        };
        let mut stats = QueueStats::default();
        {
            let st = self.shared.lock();
            stats.depth = st.buffer.len() as u64;
            stats.scheduled = st.retries.len() as u64;
            stats.oldest_age = st.buffer.front().and_then(|b| b.waited(Instant::now()));
        }
        stats.dead_letters = dead_letters;
        Ok(Some(stats))
    }

    async fn close(&self) -> Result<(), BrokerError> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task
            && tokio::time::timeout(CLOSE_WAIT, &mut task).await.is_err()
        {
            task.abort();
        }
        self.shared.connected.store(false, Ordering::Release);
        let dropped = {
            let mut st = self.shared.lock();
            let n = st.buffer.len() + st.retries.len();
            st.buffer.clear();
            st.retries.clear();
            n as u64
        };
        self.shared.wake.notify_waiters();
        if dropped > 0 {
            self.shared.count_shutdown_drops(dropped);
            tracing::warn!(
                subscription = self.source.name(),
                count = dropped,
                "pub/sub broker closed: buffered messages and pending retries dropped"
            );
        }
        tracing::debug!(subscription = self.source.name(), "pub/sub unsubscribed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(n: usize) -> Buffered {
        Buffered::Raw(
            Bytes::from(n.to_string()),
            Source::new("pubsub", "c"),
            Instant::now(),
        )
    }

    fn bodies(st: &mut State) -> Vec<String> {
        st.buffer
            .drain(..)
            .map(|b| b.into_message().body_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn overflow_policies_keep_the_right_end() {
        for (policy, want) in [
            (Overflow::DropOldest, ["7", "8", "9"]),
            (Overflow::DropNewest, ["0", "1", "2"]),
        ] {
            let shared = Shared::new("t", 3, policy);
            shared.push_received((0..10).map(raw).collect());
            assert_eq!(shared.dropped.load(Ordering::Relaxed), 7, "{policy:?}");
            assert_eq!(shared.received.load(Ordering::Relaxed), 10);
            let mut st = shared.lock();
            assert_eq!(st.peak_held, 3);
            assert_eq!(bodies(&mut st), want, "{policy:?}");
        }
    }

    #[test]
    fn retries_count_against_the_capacity() {
        let shared = Shared::new("t", 2, Overflow::DropNewest);
        shared.push_received(vec![raw(0)]);
        shared.schedule_retries(vec![
            (Duration::from_secs(60), Message::new("r1")),
            (Duration::from_secs(60), Message::new("r2")),
        ]);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 1, "r2 had no room");
        shared.push_received(vec![raw(1)]);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(shared.lock().held(), 2);

        let shared = Shared::new("t", 2, Overflow::DropOldest);
        shared.push_received(vec![raw(0), raw(1)]);
        shared.schedule_retries(vec![(Duration::from_secs(60), Message::new("r"))]);
        let mut st = shared.lock();
        assert_eq!((st.buffer.len(), st.retries.len()), (1, 1));
        assert_eq!(bodies(&mut st), ["1"], "the oldest made room for the retry");
    }

    #[tokio::test(start_paused = true)]
    async fn due_retries_come_first_in_due_order() {
        let shared = Shared::new("t", 10, Overflow::DropOldest);
        shared.push_received(vec![raw(0)]);
        shared.schedule_retries(vec![
            (Duration::from_millis(200), Message::new("late")),
            (Duration::from_millis(100), Message::new("early")),
        ]);
        let mut st = shared.lock();
        st.promote_due(Instant::now());
        assert_eq!(st.buffer.len(), 1, "nothing due yet");
        assert_eq!(
            st.next_due(),
            Some(Instant::now() + Duration::from_millis(100))
        );
        st.promote_due(Instant::now() + Duration::from_millis(250));
        assert_eq!(bodies(&mut st), ["early", "late", "0"]);
    }

    #[test]
    fn overflow_parses_both_spellings() {
        assert_eq!(
            "drop-newest".parse::<Overflow>().unwrap(),
            Overflow::DropNewest
        );
        assert_eq!(
            "DROP_OLDEST".parse::<Overflow>().unwrap(),
            Overflow::DropOldest
        );
        assert!("lifo".parse::<Overflow>().is_err());
    }
}
