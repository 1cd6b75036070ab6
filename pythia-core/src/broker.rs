//! The backend's side: the [`Broker`] trait, what it delivers ([`Delivery`]) and how each
//! delivery ends ([`Outcome`], [`Settlement`]).

use std::future::Future;
use std::time::Duration;

use crate::error::BrokerError;
use crate::message::{Message, Source};

/// What a broker promises about delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryGuarantee {
    /// A message may be lost (a worker crash mid-message), never delivered twice.
    AtMostOnce,
    /// A message is never lost once accepted; after a crash it may be delivered again.
    AtLeastOnce,
}

impl DeliveryGuarantee {
    /// `"at-most-once"` or `"at-least-once"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AtMostOnce => "at-most-once",
            Self::AtLeastOnce => "at-least-once",
        }
    }
}

/// How one delivery ends, as the runtime decides from the worker's result.
///
/// A protocol between the runtime and every broker, so deliberately **exhaustive** (not
/// `#[non_exhaustive]`, STYLE rule 4): a new variant must break every broker's build, never fall
/// into a wildcard arm that acks. Brokers match every variant by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed: remove it.
    Ack,
    /// Failed transiently: deliver it again after `delay`, with the attempt number raised.
    Retry {
        /// How long to wait before the next attempt.
        delay: Duration,
    },
    /// Failed for good: move it to the dead-letter queue with `reason`.
    DeadLetter {
        /// The last error, as text.
        reason: String,
    },
}

impl Outcome {
    /// A short label for metrics and logs: `ack`, `retry`, `dead_letter`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::Retry { .. } => "retry",
            Self::DeadLetter { .. } => "dead_letter",
        }
    }
}

/// A fetched message and the broker's handle on it.
#[derive(Debug)]
pub struct Delivery<T> {
    /// The broker's own handle (a stream entry id, an in-flight slot).
    pub token: T,
    /// The decoded message.
    pub message: Message,
}

impl<T> Delivery<T> {
    /// A delivery of `message` known to the broker as `token`.
    pub fn new(token: T, message: Message) -> Self {
        Self { token, message }
    }
}

/// A delivery and how it ended, handed back to [`Broker::settle`].
#[derive(Debug)]
pub struct Settlement<T> {
    /// The broker's handle from the [`Delivery`].
    pub token: T,
    /// The message as it was delivered (the broker needs it to re-enqueue or dead-letter).
    pub message: Message,
    /// What to do with it.
    pub outcome: Outcome,
}

/// A snapshot of a queue as the broker sees it, for gauges, `pythia inspect` and dashboards.
///
/// Counts the broker cannot know stay 0 (`None` for the age).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Messages waiting to be delivered.
    pub depth: u64,
    /// Messages delivered and not yet settled, by any consumer.
    pub in_flight: u64,
    /// Retries waiting for their time.
    pub scheduled: u64,
    /// Entries in the dead-letter queue.
    pub dead_letters: u64,
    /// Age of the next message to be delivered, when known.
    pub oldest_age: Option<Duration>,
    /// Consumers registered for the queue.
    pub consumers: u64,
}

/// A source of messages: Redis list, stream, pub/sub, or the in-memory broker.
///
/// The runtime calls [`fetch`](Broker::fetch) only while it has free capacity, hands each
/// finished delivery to [`settle`](Broker::settle) in batches (or, when the broker
/// [`throttle`](Broker::throttle)s for a rate-limited handler, hands it back with
/// [`release`](Broker::release)), calls
/// [`maintain`](Broker::maintain) periodically from a separate task (heartbeats, reaping dead
/// consumers, promoting due retries), and on shutdown [`release`](Broker::release)s what it did
/// not process and [`close`](Broker::close)s the broker.
///
/// # Contract
///
/// * `fetch` may wait (block) for messages, but must return within a bounded time (an empty
///   batch is fine) so that shutdown is prompt. The runtime never drops a `fetch` future before
///   it completes, so a broker need not make it cancel-safe.
/// * `settle` must be idempotent: when it fails the runtime calls it again with the same batch
///   until it succeeds (a settle is not dropped, since dropping an ack of an at-least-once
///   broker would leave the message in flight until the broker's own recovery), fetching
///   nothing meanwhile. Exceptions: an error of kind [`Config`](crate::BrokerErrorKind::Config)
///   or `Closed` stops the worker at once, and at the shutdown deadline the runtime gives up
///   (counting the outcomes as unsettled).
/// * `release` returns deliveries without counting an attempt, at shutdown and, after a
///   `throttle` that returned `true`, while running; an at-least-once broker must also recover
///   them by itself if the process dies before releasing.
pub trait Broker: Send + Sync + 'static {
    /// The broker's handle on one delivery.
    type Token: Send + Sync + 'static;

    /// What this broker promises.
    fn guarantee(&self) -> DeliveryGuarantee;

    /// The queue, stream or channel this broker consumes (used in metric labels and logs).
    fn source(&self) -> &Source;

    /// Fetches up to `max` messages, waiting a bounded time when none are ready.
    fn fetch(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Delivery<Self::Token>>, BrokerError>> + Send;

    /// Fetches up to `max` messages that are ready now, without waiting for new ones: an empty
    /// batch at once when none are ready.
    ///
    /// A [`QueueSet`](crate::queues::QueueSet) asks its queues in turn with this, so that an
    /// empty high-priority queue does not hold up a lower one that has work. The default calls
    /// [`fetch`](Broker::fetch), which may wait: a broker that can look without waiting should
    /// say so here.
    fn try_fetch(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Delivery<Self::Token>>, BrokerError>> + Send {
        self.fetch(max)
    }

    /// Applies the outcomes of a batch of finished deliveries. Must be idempotent.
    fn settle(
        &self,
        batch: &[Settlement<Self::Token>],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Hands back deliveries the runtime will not process (shutdown), without counting an attempt.
    fn release(
        &self,
        batch: Vec<Delivery<Self::Token>>,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Whether nothing is left to do: the queue is empty, no retry is scheduled and nothing is
    /// in flight or orphaned by a dead consumer. Burst mode ends when this is true and the
    /// runtime itself holds nothing.
    fn is_drained(&self) -> impl Future<Output = Result<bool, BrokerError>> + Send;

    /// Periodic housekeeping, run every [`maintenance_interval`](Broker::maintenance_interval)
    /// on its own task: heartbeats, reaping dead consumers, promoting due retries.
    fn maintain(&self) -> impl Future<Output = Result<(), BrokerError>> + Send {
        async { Ok(()) }
    }

    /// How often to call [`maintain`](Broker::maintain); `None` for never.
    fn maintenance_interval(&self) -> Option<Duration> {
        None
    }

    /// A snapshot of the queue, sampled periodically for the queue gauges. `None` when the
    /// broker has nothing to report.
    fn stats(&self) -> impl Future<Output = Result<Option<QueueStats>, BrokerError>> + Send {
        async { Ok(None) }
    }

    /// The queues this broker consumes, in its own order: its one [`source`](Broker::source)
    /// unless it consumes several (a [`QueueSet`](crate::queues::QueueSet)). The runtime labels
    /// each message's metrics with its own queue when there are several, and the queue gauges
    /// with [`stats_per_queue`](Broker::stats_per_queue).
    fn queues(&self) -> &[Source] {
        std::slice::from_ref(self.source())
    }

    /// One snapshot per queue of [`queues`](Broker::queues), in that order, sampled for the
    /// queue gauges. The default is [`stats`](Broker::stats) of the one queue.
    fn stats_per_queue(
        &self,
    ) -> impl Future<Output = Result<Vec<Option<QueueStats>>, BrokerError>> + Send {
        async { Ok(vec![self.stats().await?]) }
    }

    /// The handler of the delivery `token` said the downstream is rate-limiting it
    /// ([`WorkerError::rate_limited`](crate::WorkerError::rate_limited)): stop fetching from
    /// the queue that delivery came from for `pause`. Called by the runtime once per such
    /// failure; must not block.
    ///
    /// Return `true` when this broker does stop fetching for `pause`: the runtime then hands
    /// the delivery back with [`release`](Broker::release) (no attempt counted; nobody fetches
    /// it before the pause is over) instead of scheduling a retry. The default returns `false`:
    /// the message is scheduled as a retry after `pause`, counting an attempt, since handing
    /// it back to a broker that keeps fetching would call the limited downstream again at once.
    /// A broker that wraps others (a gate, a multi-queue broker) forwards it to the one that
    /// delivered `token`.
    fn throttle(&self, token: &Self::Token, pause: Duration) -> bool {
        let _ = (token, pause);
        false
    }

    /// Final clean-up after the last settle and release (drop heartbeats, leave groups).
    fn close(&self) -> impl Future<Output = Result<(), BrokerError>> + Send {
        async { Ok(()) }
    }
}
