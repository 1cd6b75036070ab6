//! [`ReliableListBroker`]: a Redis list consumed at-least-once, with per-consumer in-flight
//! storage, heartbeats, and a reaper that returns a dead consumer's work.

mod reap;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client_metrics::Op;

use crate::connection::{BlockingSlot, SharedConnection};
use pythia_core::{
    Broker, BrokerError, Delivery, DeliveryGuarantee, Outcome, QueueStats, Settlement, Source,
    envelope,
};

use super::ReliableListCommands;
use crate::connection::RedisConnection;
use crate::consumer::liveness::{Liveness, Membership, NotOwned};
use crate::consumer::recent_settlements::RecentSettlements;
use crate::consumer::retry_schedule::{DeadLetterCap, promote_due};
use crate::keys::{QueueKeys, unique_consumer_name};
use crate::list::{ListSide, list_stats};
use crate::queues::registry::{QueueKind, Registration};

/// Items per fetch script call: the in-flight `HSET` takes two values per item, well below
/// Lua's `unpack` limit of about 8,000.
pub const MAX_FETCH_BATCH: usize = 1000;
/// Items per reap script call.
const REAP_BATCH: usize = 500;

/// Reclaimed from dead consumers.
pub const RECLAIMED_TOTAL: &str = "pythia_reclaimed_total";

/// Consumes a Redis list at-least-once.
///
/// # How
///
/// * **Fetch**: a Lua script pops up to N items and records each in this consumer's in-flight
///   hash `<prefix>:{queue}:inflight:<consumer>` under a delivery id of its own, in one atomic
///   step. Equal bodies are distinct deliveries. When the queue is empty, a `BLMOVE` on a
///   dedicated connection parks the next item in the consumer's staging list (also owned by
///   the consumer, so a crash there loses nothing) and wakes the fetch. A fetch whose reply is
///   lost (a killed connection, a reply timeout, a server that died after persisting the move)
///   is read back from the in-flight hash by the next fetch, so its items are not stranded
///   there while the consumer lives.
/// * **Ack**: one `HDEL` of many delivery ids. **Retry**: removed from in-flight and added to the
///   retry schedule (a sorted set) in the same script, with the attempt raised; promoted back
///   to the queue when due. **Dead letter**: removed and pushed to `<prefix>:{queue}:dlq` with
///   the reason (all kept unless a cap is set). Settling the same batch twice changes nothing.
/// * **Liveness**: the consumer refreshes `<prefix>:{queue}:heartbeat:<consumer>` (a key with a
///   TTL) every maintenance interval and is listed in `<prefix>:{queue}:consumers`. Any live
///   consumer's maintenance returns the in-flight items of a consumer whose heartbeat has expired
///   to the front of the queue, with their attempt raised (so a message that kills its worker
///   every time is dead-lettered after `max_attempts`). A live consumer running a long job keeps
///   its items however long the job takes.
/// * **Identity**: each broker gets a unique consumer name (see
///   [`unique_consumer_name`]), so replicas never share in-flight storage.
/// * **Shutdown**: unprocessed deliveries are handed back to the front of the queue; the
///   heartbeat is deleted, so anything left (a settle that could not reach Redis) is reclaimed
///   at once by the next consumer.
///
/// # Delivery guarantee: at-least-once
///
/// A message is removed from Redis only after its handler finished (or it was dead-lettered).
/// After a crash it is delivered again, once the dead consumer's heartbeat expires
/// (`heartbeat_ttl`, 10 s by default).
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_redis::{RedisConfig, RedisConnection, ReliableListBroker};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let broker = ReliableListBroker::new(&conn, "jobs").with_heartbeat_ttl(Duration::from_secs(5));
/// println!("consuming as {}", broker.consumer());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ReliableListBroker {
    conn: RedisConnection,
    manager: SharedConnection,
    keys: QueueKeys,
    source: Source,
    side: ListSide,
    /// Its name, heartbeat, registration and when it may judge the others.
    membership: Membership,
    in_flight_key: String,
    commands: ReliableListCommands,
    next_delivery: AtomicU64,
    /// Delivery ids of fetches whose reply never arrived (first id, count): the script may have
    /// moved items into the in-flight hash under them, where nobody would deliver them while
    /// this consumer lives. The next fetch reads them back.
    unanswered: std::sync::Mutex<Vec<(u64, usize)>>,
    last_fetch_empty: AtomicBool,
    /// Settlements of deliveries another consumer had reclaimed.
    not_owned: NotOwned,
    dead_letter_cap: DeadLetterCap,
    blocking: BlockingSlot,
    reclaimed: metrics::Counter,
    /// Sent again after a connection error (a failover can lose the last acks).
    recent: RecentSettlements<u64>,
    registration: Registration,
}

impl ReliableListBroker {
    /// Default heartbeat lifetime: a consumer silent this long is dead: 10 s.
    pub const DEFAULT_HEARTBEAT_TTL: Duration = Liveness::DEFAULT_HEARTBEAT_TTL;
    /// Default interval of heartbeats, retry promotion and reaping: 1 s.
    pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Liveness::DEFAULT_INTERVAL;

    /// A broker consuming the list `queue` at-least-once, under a fresh unique consumer name.
    pub fn new(conn: &RedisConnection, queue: &str) -> Self {
        Self::with_consumer_name(conn, queue, &unique_consumer_name())
    }

    /// A broker with an explicit consumer name. The name must be unique among live consumers:
    /// prefer [`new`](Self::new).
    pub fn with_consumer_name(conn: &RedisConnection, queue: &str, consumer: &str) -> Self {
        let keys = QueueKeys::new(conn.config().key_prefix(), queue);
        let source = Source::new("reliable-list", queue);
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            in_flight_key: keys.in_flight(consumer),
            commands: ReliableListCommands::new(&keys, consumer),
            membership: Membership::new(consumer, keys.heartbeat(consumer), keys.consumers()),
            reclaimed: metrics::counter!(RECLAIMED_TOTAL, "queue" => queue.to_owned(), "broker" => "reliable-list"),
            keys,
            source,
            side: ListSide::default(),
            next_delivery: AtomicU64::new(1),
            unanswered: std::sync::Mutex::new(Vec::new()),
            last_fetch_empty: AtomicBool::new(false),
            not_owned: NotOwned::new(queue, "reliable-list"),
            dead_letter_cap: DeadLetterCap::new(queue),
            blocking: BlockingSlot::default(),
            recent: RecentSettlements::new(),
            registration: Registration::broker(conn, queue, QueueKind::ReliableList),
        }
    }

    /// Which end to pop.
    #[must_use]
    pub fn with_side(mut self, side: ListSide) -> Self {
        self.side = side;
        self
    }

    /// How long a silent consumer counts as alive (at least 3 maintenance intervals).
    #[must_use]
    pub fn with_heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.membership = self.membership.with_heartbeat_ttl(ttl);
        self
    }

    /// Interval of heartbeats, retry promotion and reaping (50 ms to 10 s; the heartbeat TTL is
    /// raised to at least three intervals).
    #[must_use]
    pub fn with_maintenance_interval(mut self, d: Duration) -> Self {
        self.membership = self.membership.with_interval(d);
        self
    }

    /// How many dead letters to keep (0 = no cap, the default: every dead letter is kept until replayed or purged). A cap
    /// trims the oldest; what it trims is counted in `pythia_dead_letters_trimmed_total` and
    /// logged.
    #[must_use]
    pub fn with_dead_letter_cap(mut self, cap: usize) -> Self {
        self.dead_letter_cap = self.dead_letter_cap.with_cap(cap);
        self
    }

    /// This consumer's name.
    pub fn consumer(&self) -> &str {
        self.membership.consumer()
    }

    /// The keys this broker uses.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    fn mgr(&self) -> SharedConnection {
        self.manager.clone()
    }

    async fn heartbeat(&self) -> Result<(), BrokerError> {
        let mut m = self.mgr();
        self.membership.beat(&self.conn, &mut m).await
    }

    async fn ensure_registered(&self) -> Result<(), BrokerError> {
        if !self.membership.registered.load(Ordering::Acquire) {
            // A name given by the caller (a StatefulSet pod's) may be a crashed process's: what
            // it left in flight is returned before this one records deliveries of its own.
            let left = self.reap(self.membership.consumer(), true).await?;
            if left > 0 {
                tracing::info!(consumer = %self.membership.consumer(), returned = left, "returned what an earlier process under this consumer name left in flight");
            }
            self.heartbeat().await?;
            self.membership.registered.store(true, Ordering::Release);
            tracing::debug!(consumer = %self.membership.consumer(), queue = self.keys.queue(), "reliable-list consumer registered");
        }
        Ok(())
    }

    async fn move_batch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        let first = self.next_delivery.fetch_add(max as u64, Ordering::Relaxed);
        let mut m = self.mgr();
        let started = Instant::now();
        let fetched = self
            .commands
            .fetch(
                max,
                first,
                self.side,
                self.membership.liveness().heartbeat_ttl_ms(),
            )
            .query(&mut m)
            .await;
        self.conn.client_metrics().observe(Op::Fetch, started);
        let items: Vec<Vec<u8>> = match fetched {
            Ok(items) => items,
            Err(e) => {
                // The script may have run and only its reply been lost (a killed connection, a
                // reply timeout, a server that died after persisting the move).
                self.unanswered
                    .lock()
                    .expect("unanswered lock")
                    .push((first, max));
                return Err(self.conn.error("fetch", e));
            }
        };
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                let msg = envelope::decode(raw.into(), &self.source);
                Delivery::new(first + i as u64, msg)
            })
            .collect())
    }

    /// Delivers what fetches whose reply was lost moved into the in-flight hash: the items
    /// stored under their delivery ids (ids nothing was stored under come back empty), at most
    /// `max` at a time.
    async fn recover_unanswered(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        let ranges = std::mem::take(&mut *self.unanswered.lock().expect("unanswered lock"));
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<u64> = ranges
            .iter()
            .flat_map(|&(first, n)| first..first + n as u64)
            .collect();
        let mut m = self.mgr();
        let mut pipe = redis::pipe();
        for chunk in ids.chunks(MAX_FETCH_BATCH) {
            pipe.cmd("HMGET").arg(&self.in_flight_key).arg(chunk);
        }
        let found: Vec<Vec<Option<Vec<u8>>>> = match pipe.query_async(&mut m).await {
            Ok(v) => v,
            Err(e) => {
                self.unanswered
                    .lock()
                    .expect("unanswered lock")
                    .extend(ranges);
                return Err(self.conn.error("fetch (recovering a lost reply)", e));
            }
        };
        let mut batch: Vec<Delivery<u64>> = ids
            .into_iter()
            .zip(found.into_iter().flatten())
            .filter_map(|(id, raw)| {
                let msg = envelope::decode(raw?.into(), &self.source);
                Some(Delivery::new(id, msg))
            })
            .collect();
        if batch.len() > max {
            let rest = batch.split_off(max);
            self.unanswered
                .lock()
                .expect("unanswered lock")
                .extend(rest.iter().map(|d| (d.token, 1)));
        }
        if !batch.is_empty() {
            tracing::warn!(
                count = batch.len(),
                consumer = %self.membership.consumer(),
                "recovered in-flight items whose fetch reply was lost"
            );
        }
        Ok(batch)
    }

    /// Waits (up to the block timeout) for an item and parks it in the staging list.
    async fn wait_for_item(&self) -> Result<bool, BrokerError> {
        let timeout = self.conn.config().block_timeout().as_secs_f64();
        self.blocking
            .query::<Option<Vec<u8>>>(&self.conn, &self.commands.wait_for_item(self.side, timeout))
            .await?
            .map(|v| v.is_some())
            .map_err(|e| self.conn.error("BLMOVE", e))
    }

    /// [`Broker::try_fetch`]: what is in the queue now (or recovered), without waiting.
    async fn try_fetch_batch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        self.ensure_registered().await?;
        let max = max.clamp(1, MAX_FETCH_BATCH);
        let recovered = self.recover_unanswered(max).await?;
        if !recovered.is_empty() {
            return Ok(recovered);
        }
        self.move_batch(max).await
    }

    async fn fetch_batch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        self.ensure_registered().await?;
        let max = max.clamp(1, MAX_FETCH_BATCH);
        let recovered = self.recover_unanswered(max).await?;
        if !recovered.is_empty() {
            return Ok(recovered);
        }
        // After an empty fetch, wait for the next item first: one round trip less per wake-up.
        if !self.last_fetch_empty.load(Ordering::Relaxed) {
            let batch = self.move_batch(max).await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
        let batch = if self.wait_for_item().await? {
            self.move_batch(max).await?
        } else {
            Vec::new()
        };
        self.last_fetch_empty
            .store(batch.is_empty(), Ordering::Relaxed);
        Ok(batch)
    }

    /// Settles `batch`; returns how many of its deliveries were still in this consumer's
    /// in-flight hash.
    async fn settle_batch(&self, batch: &[Settlement<u64>]) -> Result<u64, BrokerError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut m = self.mgr();
        let started = Instant::now();
        if batch.iter().all(|s| s.outcome == Outcome::Ack) {
            let acked = self.commands.acks(batch).query::<u64>(&mut m).await;
            self.conn.client_metrics().observe(Op::Settle, started);
            return acked.map_err(|e| self.conn.error("ack", e));
        }
        let settled = self
            .commands
            .settle(batch, self.dead_letter_cap.get())
            .query(&mut m)
            .await;
        self.conn.client_metrics().observe(Op::Settle, started);
        let (settled, trimmed): (u64, u64) = settled.map_err(|e| self.conn.error("settle", e))?;
        self.dead_letter_cap.trimmed(trimmed);
        Ok(settled)
    }

    /// After a connection error (once the connection works again): sends the recent
    /// settlements again, so that acks a failover lost do not leave processed messages in
    /// this consumer's in-flight hash (see `recent_settlements`).
    async fn resend_recent(&self) -> Result<(), BrokerError> {
        let Some((acks, others)) = self.recent.to_resend() else {
            return Ok(());
        };
        let mut m = self.mgr();
        let mut removed = 0u64;
        for chunk in acks.chunks(10_000) {
            let n: Result<u64, _> = redis::cmd("HDEL")
                .arg(&self.in_flight_key)
                .arg(chunk)
                .query_async(&mut m)
                .await;
            match n {
                Ok(n) => removed += n,
                Err(e) => {
                    self.recent.suspect();
                    return Err(self.conn.error("ack (resent after a connection error)", e));
                }
            }
        }
        if let Err(e) = self.settle_batch(&others).await {
            self.recent.suspect();
            return Err(e);
        }
        if removed > 0 {
            tracing::warn!(
                removed,
                consumer = %self.membership.consumer(),
                "acks lost by the server (a failover?) were sent again"
            );
        }
        Ok(())
    }
}

impl Broker for ReliableListBroker {
    type Token = u64;

    fn guarantee(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    fn source(&self) -> &Source {
        &self.source
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        self.fetch_batch(max)
            .await
            .inspect_err(|e| self.recent.note(e))
    }

    async fn try_fetch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        self.try_fetch_batch(max)
            .await
            .inspect_err(|e| self.recent.note(e))
    }

    async fn settle(&self, batch: &[Settlement<u64>]) -> Result<(), BrokerError> {
        let settled = self
            .settle_batch(batch)
            .await
            .inspect_err(|e| self.recent.note(e))?;
        self.not_owned
            .settled(batch.len(), settled, self.membership.consumer());
        self.recent.record(batch);
        Ok(())
    }

    async fn release(&self, batch: Vec<Delivery<u64>>) -> Result<(), BrokerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut m = self.mgr();
        self.commands
            .release(batch.iter().map(|d| d.token), self.side)
            .query::<u64>(&mut m)
            .await
            .map(drop)
            .map_err(|e| self.conn.error("release", e))
    }

    /// Drained means nothing queued, nothing scheduled, and nothing in flight or staged by any
    /// consumer: a live consumer's work may still fail and come back, and a dead one's is
    /// reclaimed once its heartbeat expires.
    async fn is_drained(&self) -> Result<bool, BrokerError> {
        self.reap_dead_consumers().await?;
        let mut m = self.mgr();
        let members = self.consumers(&mut m).await?;
        let mut pipe = redis::pipe();
        pipe.llen(self.keys.queue()).zcard(self.keys.scheduled());
        for c in members
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(self.membership.consumer()))
        {
            pipe.hlen(self.keys.in_flight(c)).llen(self.keys.staging(c));
        }
        let counts: Vec<u64> = pipe
            .query_async(&mut m)
            .await
            .map_err(|e| self.conn.error("drain check", e))?;
        Ok(counts.iter().all(|n| *n == 0))
    }

    async fn maintain(&self) -> Result<(), BrokerError> {
        self.registration.ensure_in_background(&self.conn);
        self.ensure_registered()
            .await
            .inspect_err(|e| self.recent.note(e))?;
        self.heartbeat()
            .await
            .inspect_err(|e| self.recent.note(e))?;
        self.resend_recent().await?;
        let mut m = self.mgr();
        promote_due(&self.conn, &mut m, &self.keys, self.side).await?;
        self.reap_dead_consumers().await?;
        Ok(())
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        Some(self.membership.liveness().interval())
    }

    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        let mut stats = list_stats(&self.conn, &self.keys, self.side, &self.source).await?;
        let mut m = self.mgr();
        let members = self.consumers(&mut m).await?;
        if members.is_empty() {
            // The client refuses an empty pipeline ("empty command").
            return Ok(Some(stats));
        }
        let mut pipe = redis::pipe();
        for c in &members {
            pipe.hlen(self.keys.in_flight(c));
        }
        let in_flight: Vec<u64> = pipe
            .query_async(&mut m)
            .await
            .map_err(|e| self.conn.error("stats", e))?;
        stats.in_flight = in_flight.iter().sum();
        stats.consumers = members.len() as u64;
        Ok(Some(stats))
    }

    async fn close(&self) -> Result<(), BrokerError> {
        if !self.membership.registered.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut m = self.mgr();
        redis::cmd("DEL")
            .arg(self.membership.heartbeat_key())
            .query_async::<()>(&mut m)
            .await
            .map_err(|e| self.conn.error("close", e))?;
        // Staged items go back, and with nothing in flight the consumer is forgotten.
        self.reap(self.membership.consumer(), true).await?;
        Ok(())
    }
}
