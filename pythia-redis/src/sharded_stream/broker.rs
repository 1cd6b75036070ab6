//! [`ShardedStreamBroker`]: one [`StreamBroker`] per shard behind one [`Broker`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures_util::future::join_all;
use pythia_core::{
    Broker, BrokerError, Delivery, DeliveryGuarantee, Message, Outcome, QueueStats, Settlement,
    Source,
};
use tokio::time::Instant;

use super::fetch::{Batch, ShardState};
use super::{ShardEntryId, ShardedQueue, first_error};
use crate::connection::RedisConnection;
use crate::keys::unique_consumer_name;
use crate::queues::registry::{QueueKind, Registration};
use crate::stream::{GroupStart, StreamBroker, StreamEntryId};

/// Consumes every shard of a [`ShardedQueue`] in one consumer group, at-least-once: many
/// replicas share the queue as they share a stream, and the queue's load spreads over the
/// cluster's masters.
///
/// # How
///
/// It is one [`StreamBroker`] per shard, all under one consumer name (unique to the process,
/// [`unique_consumer_name`]), each with its own dedicated connection for reads. Everything a
/// [`StreamBroker`] does, each shard does on its own: consumer group, batched `XACK`, retries
/// scheduled in the shard's `…:scheduled` and added back to **the shard that failed them**,
/// dead letters in **the shard's own** dead-letter stream `<prefix>:{<shard stream>}:dlq`,
/// heartbeats and reclaim of dead consumers' pending entries, trimming, lost-reply recovery.
/// Its settings (`with_start`, `with_heartbeat_ttl`, …) apply to every shard; set them before
/// the broker is used.
///
/// * **Fetch** never cancels a read: a read cancelled after the server delivered would leave
///   its entries pending under this live consumer, where nobody takes them. First, the shards
///   share the batch in one concurrent round of non-blocking `XREADGROUP`s: every shard gets
///   an equal share, or, for a batch smaller than 64 entries a shard, as many shards as it has
///   room for (a backlog then costs one read per fetch, not one per shard). The shard asked
///   first, which also gets the rounding extra, rotates with each fetch. Then, while the batch
///   is not full, shards that filled their share and shards not yet asked are read in turn
///   for the rest. Only when every shard is empty does one blocking read wait, on the shards
///   in turn, for at most the [poll interval](Self::with_poll_interval) (100 ms by default, at
///   most the connection's block timeout): that interval bounds how long a new entry on
///   another shard waits on an idle consumer, at the cost of about `N + 1` reads per interval
///   while idle.
/// * **A slow or unreachable shard does not hold up the others.** Each read runs as a task of
///   its own; one that has not answered within its block time plus 250 ms (or the poll
///   interval, if longer) is left running, and the fetch returns what the other shards gave.
///   Its entries go to a later fetch (first, so a shard's order is kept), and the shard is not
///   read again until it has answered; after a failed read it is left alone for 500 ms. Its
///   error is logged once, and returned only when no shard gave anything. Maintenance
///   likewise runs per shard, and a shard whose maintenance is still running is not started
///   again, so the other shards' heartbeats stay fresh while one master fails over.
/// * **Settle** and **release** split the batch by shard and settle each part on its shard,
///   all at once; a settle repeated after a failure repeats every part, which is idempotent.
///   A settle waits for every part (the runtime retries the whole batch while one shard is
///   unreachable; the other shards' parts are applied on the first attempt).
/// * **Drain check**, **stats** and **close** run on every shard at once. Stats add up depth,
///   in-flight, retries and dead letters; the consumer count and the age of the next entry are
///   the largest over the shards. Close first waits for reads still running and hands back
///   every entry read and not yet delivered, to its shard.
/// * Messages carry the logical queue as their [`Source`], so metrics, job status and
///   idempotency records are per logical queue; the token says the shard.
///
/// # Ordering
///
/// Each shard is a stream: entries are delivered in the order they were added to it (so the
/// messages of one key, produced with
/// [`ShardedStreamProducer::add_keyed`](super::ShardedStreamProducer::add_keyed), are
/// delivered in order). There is no order across shards. Retries and hand-backs are new
/// entries, as with a stream; several consumers, or a runtime concurrency above 1, process
/// entries of one shard concurrently.
///
/// # Cost
///
/// Each consumer keeps one dedicated read connection per shard (on a cluster, one cluster
/// connection per shard, which connects to each master it is routed to), and one heartbeat key
/// per shard, refreshed every maintenance interval. Reads and maintenance are spawned on the
/// tokio runtime that calls the broker.
///
/// ```no_run
/// use pythia_core::{Message, WorkerRuntime, worker_fn};
/// use pythia_redis::{
///     RedisConfig, RedisConnection, ShardedQueue, ShardedStreamBroker, ShardedStreamProducer,
/// };
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let queue = ShardedQueue::new("orders", 4)?;
/// let broker = ShardedStreamBroker::new(&conn, &queue, "billing");
/// broker.ensure_group().await?;
/// let producer = ShardedStreamProducer::new(&conn, &queue);
/// producer.add(&Message::new("invoice 7")).await?;
/// producer.add_keyed("customer 42", &Message::new("order 1 of customer 42")).await?;
/// WorkerRuntime::new(broker, worker_fn(|msg: Message| async move {
///     println!("{:?}", msg.body());
///     Ok(())
/// }))
/// .with_burst(true)
/// .run()
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ShardedStreamBroker {
    pub(super) conn: RedisConnection,
    pub(super) queue: ShardedQueue,
    pub(super) shards: Arc<Vec<StreamBroker>>,
    pub(super) states: Vec<ShardState>,
    pub(super) source: Source,
    pub(super) group: String,
    pub(super) consumer: String,
    pub(super) poll_interval: Duration,
    /// The shard that goes first in the next fetch.
    pub(super) next: AtomicUsize,
    pub(super) ready: AtomicBool,
    /// Entries of a finished read that did not fit in the fetch that collected them.
    pub(super) surplus: StdMutex<VecDeque<Delivery<ShardEntryId>>>,
    /// Writes the queue registry in the first maintenance.
    registration: Registration,
}

impl ShardedStreamBroker {
    /// Default longest blocking read while every shard is empty: 100 ms.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

    /// A broker consuming every shard of `queue` in consumer group `group`, under a fresh
    /// unique consumer name.
    pub fn new(conn: &RedisConnection, queue: &ShardedQueue, group: &str) -> Self {
        Self::build(conn, queue, group, &unique_consumer_name(), false)
    }

    /// A broker with an explicit consumer name, unique among the group's live consumers (see
    /// [`StreamBroker::with_consumer_name`]).
    pub fn with_consumer_name(
        conn: &RedisConnection,
        queue: &ShardedQueue,
        group: &str,
        consumer: &str,
    ) -> Self {
        Self::build(conn, queue, group, consumer, true)
    }

    fn build(
        conn: &RedisConnection,
        queue: &ShardedQueue,
        group: &str,
        consumer: &str,
        reused_name: bool,
    ) -> Self {
        let source = Source::new("stream", queue.name());
        let shards: Vec<StreamBroker> = queue
            .streams()
            .iter()
            .map(|stream| {
                StreamBroker::build(conn, stream, group, consumer, reused_name)
                    .with_message_source(source.clone())
            })
            .collect();
        Self {
            conn: conn.clone(),
            queue: queue.clone(),
            states: shards.iter().map(|_| ShardState::default()).collect(),
            shards: Arc::new(shards),
            source,
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            next: AtomicUsize::new(fastrand::usize(..queue.shard_count())),
            ready: AtomicBool::new(false),
            surplus: StdMutex::new(VecDeque::new()),
            registration: Registration::broker(conn, queue.name(), QueueKind::ShardedStream),
        }
    }

    /// Applies a setting to every shard.
    ///
    /// # Panics
    ///
    /// When a read or maintenance this broker started is still running: settings come before
    /// use.
    fn each(mut self, f: impl Fn(StreamBroker) -> StreamBroker) -> Self {
        let shards = Arc::try_unwrap(self.shards)
            .expect("ShardedStreamBroker settings must be set before the broker is used");
        self.shards = Arc::new(shards.into_iter().map(f).collect());
        self
    }

    /// Where each shard's group starts when this broker creates it (default: the beginning of
    /// the shard; with [`GroupStart::NewEntries`], call [`ensure_group`](Self::ensure_group)
    /// before producing).
    #[must_use]
    pub fn with_start(self, start: GroupStart) -> Self {
        self.each(|s| s.with_start(start))
    }

    /// How long a silent consumer counts as alive ([`StreamBroker::with_heartbeat_ttl`]).
    #[must_use]
    pub fn with_heartbeat_ttl(self, ttl: Duration) -> Self {
        self.each(|s| s.with_heartbeat_ttl(ttl))
    }

    /// Interval of heartbeats, retry promotion, reclaim and trimming, on every shard
    /// ([`StreamBroker::with_maintenance_interval`]).
    #[must_use]
    pub fn with_maintenance_interval(self, d: Duration) -> Self {
        self.each(|s| s.with_maintenance_interval(d))
    }

    /// Idle time after which a consumer without a Pythia heartbeat counts as dead
    /// ([`StreamBroker::with_foreign_idle_timeout`]).
    #[must_use]
    pub fn with_foreign_idle_timeout(self, d: Option<Duration>) -> Self {
        self.each(|s| s.with_foreign_idle_timeout(d))
    }

    /// Whether to `XDEL` entries as they are settled ([`StreamBroker::with_delete_on_ack`]).
    #[must_use]
    pub fn with_delete_on_ack(self, on: bool) -> Self {
        self.each(|s| s.with_delete_on_ack(on))
    }

    /// Whether maintenance trims processed entries ([`StreamBroker::with_trim_processed`]).
    #[must_use]
    pub fn with_trim_processed(self, on: bool) -> Self {
        self.each(|s| s.with_trim_processed(on))
    }

    /// How many dead letters each shard keeps, approximately
    /// ([`StreamBroker::with_dead_letter_cap`]).
    #[must_use]
    pub fn with_dead_letter_cap(self, cap: usize) -> Self {
        self.each(|s| s.with_dead_letter_cap(cap))
    }

    /// The longest blocking read while every shard is empty (10 ms to 10 s, and never above
    /// the connection's [block timeout](crate::RedisConfig::block_timeout)): the most a new
    /// entry waits on an idle consumer when it lands on another shard than the one the
    /// consumer waits on. Shorter means lower latency and more reads while idle.
    #[must_use]
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d.clamp(Duration::from_millis(10), Duration::from_secs(10));
        self
    }

    /// The queue and its shards.
    pub fn queue(&self) -> &ShardedQueue {
        &self.queue
    }

    /// The broker of each shard, by shard index (their keys, their dead-letter streams).
    pub fn shards(&self) -> &[StreamBroker] {
        &self.shards
    }

    /// This consumer's name, the same in every shard's group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Checks the stored layout (see the [module docs](super)) and creates every shard's
    /// consumer group unless it exists. Call it before producing when the groups start at new
    /// entries ([`GroupStart::NewEntries`]).
    pub async fn ensure_group(&self) -> Result<(), BrokerError> {
        self.queue.check_layout(&self.conn).await?;
        first_error(join_all(self.shards.iter().map(StreamBroker::ensure_group)).await)?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Claims the pending entries of every dead consumer, shard by shard
    /// ([`StreamBroker::reclaim_dead_consumers`]); returns how many were claimed.
    pub async fn reclaim_dead_consumers(&self) -> Result<u64, BrokerError> {
        let counts = first_error(
            join_all(self.shards.iter().map(StreamBroker::reclaim_dead_consumers)).await,
        )?;
        Ok(counts.into_iter().sum())
    }

    /// Moves due retries back onto their shards; returns how many moved.
    pub async fn promote_due_retries(&self) -> Result<u64, BrokerError> {
        let counts =
            first_error(join_all(self.shards.iter().map(StreamBroker::promote_due_retries)).await)?;
        Ok(counts.into_iter().sum())
    }

    pub(super) async fn ensure_ready(&self) -> Result<(), BrokerError> {
        if !self.ready.load(Ordering::Acquire) {
            self.ensure_group().await?;
        }
        Ok(())
    }

    fn shard_of(&self, token: ShardEntryId) -> Result<usize, BrokerError> {
        let shard = token.shard();
        if shard < self.shards.len() {
            Ok(shard)
        } else {
            Err(BrokerError::backend(format!(
                "token {token} names shard {shard}, but queue {:?} has {} shards",
                self.queue.name(),
                self.shards.len()
            )))
        }
    }

    /// Hands deliveries back to their shards, each shard's part at once.
    async fn hand_back(&self, batch: Vec<Delivery<ShardEntryId>>) -> Result<(), BrokerError> {
        let mut parts: Vec<Vec<Delivery<StreamEntryId>>> =
            self.shards.iter().map(|_| Vec::new()).collect();
        for d in batch {
            let shard = self.shard_of(d.token)?;
            parts[shard].push(Delivery::new(d.token.id(), d.message));
        }
        let releases = self
            .shards
            .iter()
            .zip(parts)
            .filter(|(_, part)| !part.is_empty())
            .map(|(shard, part)| shard.release(part));
        first_error(join_all(releases).await).map(drop)
    }
}

impl Broker for ShardedStreamBroker {
    type Token = ShardEntryId;

    fn guarantee(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    fn source(&self) -> &Source {
        &self.source
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<ShardEntryId>>, BrokerError> {
        self.fetch_shards(max, true).await
    }

    async fn try_fetch(&self, max: usize) -> Result<Vec<Delivery<ShardEntryId>>, BrokerError> {
        self.fetch_shards(max, false).await
    }

    async fn settle(&self, batch: &[Settlement<ShardEntryId>]) -> Result<(), BrokerError> {
        let mut parts: Vec<Vec<(StreamEntryId, &Message, &Outcome)>> =
            self.shards.iter().map(|_| Vec::new()).collect();
        for s in batch {
            parts[self.shard_of(s.token)?].push((s.token.id(), &s.message, &s.outcome));
        }
        let settles = self
            .shards
            .iter()
            .zip(&parts)
            .filter(|(_, part)| !part.is_empty())
            .map(|(shard, part)| shard.settle_refs(part));
        first_error(join_all(settles).await).map(drop)
    }

    async fn release(&self, batch: Vec<Delivery<ShardEntryId>>) -> Result<(), BrokerError> {
        self.hand_back(batch).await
    }

    /// Drained when every shard is ([`StreamBroker`]'s `is_drained`: dead consumers' entries
    /// reclaimed, nothing undelivered, pending or scheduled) and no entry read by this broker
    /// waits to be delivered (reads still running are waited for first).
    async fn is_drained(&self) -> Result<bool, BrokerError> {
        self.ensure_ready().await?;
        // The runtime is idle: wait for reads still running (their block time at most), and
        // keep what they give for the next fetch.
        let mut batch = Batch {
            max: 0,
            out: Vec::new(),
            failure: None,
        };
        for (shard, state) in self.states.iter().enumerate() {
            let parked = state.parked.lock().expect("parked read").take();
            if let Some(read) = parked {
                self.take_read(shard, read.await, &mut batch);
            }
        }
        if let Some(e) = batch.failure {
            return Err(e);
        }
        if !self.surplus.lock().expect("surplus").is_empty() {
            return Ok(false);
        }
        let drained = first_error(join_all(self.shards.iter().map(Broker::is_drained)).await)?;
        Ok(drained.into_iter().all(|d| d))
    }

    /// Runs every shard's maintenance as a task of its own and waits for them at most one
    /// maintenance interval; a shard whose previous maintenance still runs is not started
    /// again (its result counts when it ends). Returns the first error of those that finished.
    async fn maintain(&self) -> Result<(), BrokerError> {
        self.registration.ensure_in_background(&self.conn);
        let interval = self
            .maintenance_interval()
            .unwrap_or(Duration::from_secs(1));
        let deadline = Instant::now() + interval;
        let waits = self
            .states
            .iter()
            .enumerate()
            .map(|(shard, state)| async move {
                let mut slot = state.maintenance.lock().await;
                let task = slot.get_or_insert_with(|| {
                    let shards = Arc::clone(&self.shards);
                    tokio::spawn(async move { shards[shard].maintain().await })
                });
                match tokio::time::timeout_at(deadline, task).await {
                    Ok(joined) => {
                        *slot = None;
                        flatten(joined)
                    }
                    Err(_) => Ok(()),
                }
            });
        first_error(join_all(waits).await).map(drop)
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        self.shards[0].maintenance_interval()
    }

    /// The shards' stats added up (depth, in flight, scheduled, dead letters); consumers and
    /// the age of the next entry are the largest over the shards.
    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        let all = first_error(join_all(self.shards.iter().map(Broker::stats)).await)?;
        let mut total = QueueStats::default();
        for s in all.into_iter().flatten() {
            total.depth += s.depth;
            total.in_flight += s.in_flight;
            total.scheduled += s.scheduled;
            total.dead_letters += s.dead_letters;
            total.consumers = total.consumers.max(s.consumers);
            total.oldest_age = total.oldest_age.max(s.oldest_age);
        }
        Ok(Some(total))
    }

    /// Waits for reads and maintenance still running, hands back every entry read and not
    /// delivered (to its shard), then closes every shard.
    async fn close(&self) -> Result<(), BrokerError> {
        let mut waiting: Vec<Delivery<ShardEntryId>> =
            self.surplus.lock().expect("surplus").drain(..).collect();
        for (shard, state) in self.states.iter().enumerate() {
            let parked = state.parked.lock().expect("parked read").take();
            if let Some(read) = parked {
                match flatten(read.await) {
                    Ok(entries) => waiting.extend(entries.into_iter().map(|d| {
                        Delivery::new(ShardEntryId::new(shard as u32, d.token), d.message)
                    })),
                    Err(e) => {
                        tracing::debug!(shard, error = %e, "a read still running at close failed")
                    }
                }
            }
            if let Some(task) = state.maintenance.lock().await.take() {
                let _ = task.await;
            }
        }
        let handed_back = self.hand_back(waiting).await;
        let closed = first_error(join_all(self.shards.iter().map(Broker::close)).await).map(drop);
        handed_back.and(closed)
    }
}

/// A task's result, its panic or cancellation as a backend error.
fn flatten<T>(
    joined: Result<Result<T, BrokerError>, tokio::task::JoinError>,
) -> Result<T, BrokerError> {
    joined.unwrap_or_else(|e| Err(BrokerError::backend(format!("a shard task failed: {e}"))))
}
