//! [`StreamBroker`]: a Redis stream consumed by a consumer group, at-least-once, for many
//! replicas sharing the work.
//!
//! # On the wire
//!
//! A stream entry's `body` field is the message body; every other field is a header, except
//! Pythia's own fields, which all start with `pythia-` (see [`fields`]) and are never shown to
//! the handler. A field named `header_<name>` is the header `<name>` (the Python
//! `pythia-framework` writes headers that way). So any producer can feed a worker:
//!
//! ```text
//! XADD jobs * body '{"order": 7}' tenant acme            → body {"order": 7}, header tenant=acme
//! XADD jobs * user 7 action signup                       → body {"user":"7","action":"signup"}
//! ```
//!
//! An entry without a `body` field has as body the JSON object of its fields (values as
//! strings, invalid UTF-8 replaced), and no headers.
//!
//! The message id is the `pythia-id` field when present, else the entry id; the attempt number
//! is `pythia-attempt` (1 when absent) plus the deliveries that ended with a dead consumer; the
//! enqueue time is `pythia-enqueued-at` (ms; kept by retries and hand-backs), else the time in
//! the entry id, when Redis added it.

pub mod checkpoint;
mod commands;
mod entry_id;
mod fetch;
mod group;
pub mod producer;
pub mod reader;
mod reclaim;
mod settle;
mod trim;
mod wire;

pub use self::commands::StreamCommands;
use self::commands::{Item, SettleOptions};
pub use self::entry_id::StreamEntryId;
use self::wire::*;
pub use self::wire::{decode_group_read, fields, message_from_entry};

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connection::{BlockingSlot, SharedConnection};
use bytes::Bytes;
use pythia_core::message::unix_millis;
use pythia_core::{
    Broker, BrokerError, Delivery, DeliveryGuarantee, Headers, Message, Outcome, QueueStats,
    Settlement, Source,
};
use redis::streams::StreamInfoConsumersReply;
use redis::{RedisWrite, ToRedisArgs, Value};
use tokio::sync::Mutex;

use crate::connection::RedisConnection;
use crate::consumer::liveness::{Liveness, Membership, NotOwned};
use crate::consumer::recent_settlements::RecentSettlements;
use crate::consumer::retry_schedule::{DeadLetterCap, delay_ms, promote_due_to_stream};
use crate::keys::{QueueKeys, unique_consumer_name};
use crate::list::reliable::RECLAIMED_TOTAL;
use crate::queues::registry::{QueueKind, Registration};

/// Counter of the entries removed from a stream (a producer's `MAXLEN ~`, an `XTRIM`) before the
/// consumer group was delivered them: messages lost. Labels `queue` (the stream) and `group`.
/// See [`StreamBroker::count_trimmed_undelivered`].
pub const TRIMMED_UNDELIVERED_TOTAL: &str = "pythia_stream_trimmed_undelivered_total";

/// Most entries one fetch asks for (`XREADGROUP … COUNT`).
pub const MAX_FETCH_BATCH: usize = 10_000;
/// Entries claimed from a dead consumer per script call.
const CLAIM_BATCH: usize = 200;
/// Most reclaimed entries waiting in memory for the runtime; more are claimed once these are
/// handed out.
const RECLAIMED_QUEUE_CAP: usize = 1000;
/// Retries, dead letters and hand-backs per settle script call.
const SETTLE_SCRIPT_BATCH: usize = 500;
/// Most processed entries one trim removes (a bound on the time Redis spends in it).
const TRIM_LIMIT: u64 = 1_000_000;
/// Most undelivered entries counted one by one for the depth gauge when Redis does not know the
/// group's lag (Redis 6.2, or 7 after deletions).
const DEPTH_COUNT_LIMIT: u64 = 10_000;

/// Where a new consumer group starts reading.
///
/// Only a group the broker creates is affected: an existing group keeps its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GroupStart {
    /// Only entries added after the group is created (`$`), for event streams where the
    /// backlog does not matter. Entries produced before the first worker ever started are not
    /// delivered, unless the group was created first ([`StreamBroker::ensure_group`]).
    NewEntries,
    /// Every entry already in the stream (`0`), the default: a job queue processes the jobs
    /// queued before its first worker started.
    #[default]
    Beginning,
}

impl GroupStart {
    fn as_arg(self) -> &'static str {
        match self {
            Self::NewEntries => "$",
            Self::Beginning => "0",
        }
    }

    /// `"new"` or `"beginning"`, as configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewEntries => "new",
            Self::Beginning => "beginning",
        }
    }
}

impl FromStr for GroupStart {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        match s.to_ascii_lowercase().as_str() {
            "new" | "$" | "latest" => Ok(Self::NewEntries),
            "beginning" | "0" | "earliest" => Ok(Self::Beginning),
            other => Err(BrokerError::config(format!(
                "invalid group start {other:?}: expected \"new\" or \"beginning\""
            ))),
        }
    }
}

/// Reclaimed entries: waiting for the runtime, and handed to it but not yet settled.
#[derive(Debug, Default)]
struct Reclaimed {
    queue: VecDeque<Delivery<StreamEntryId>>,
    in_flight: HashSet<StreamEntryId>,
}

/// Consumes a Redis stream with a consumer group, at-least-once: the workhorse for many
/// replicas (Kubernetes pods) sharing one stream.
///
/// # How
///
/// * **Fetch**: `XREADGROUP GROUP <group> <consumer> COUNT <n> BLOCK <ms> STREAMS <stream> >` on
///   a connection of its own (a blocking read must not stall the shared one), with `n` the
///   runtime's free capacity. The reply is walked as raw [`redis::Value`]s, moving the bytes
///   into the message. The group is created on first use (`XGROUP CREATE … MKSTREAM`, at
///   [`GroupStart`], the beginning of the stream by default); if it disappears (the stream was
///   deleted) it is created again at the start of the stream. Each broker has a consumer name
///   unique to its process ([`unique_consumer_name`]).
/// * **Ack**: one `XACK` with every id of a settled batch, after processing.
/// * **Retry**: a Lua script acknowledges the entry and, only if it was still pending (so a
///   settle repeated after a lost reply does nothing twice), adds its fields with the attempt
///   raised to the schedule `<prefix>:{stream}:scheduled` (a sorted set by due time). Any
///   worker's maintenance moves due retries back onto the stream as new entries (Lua, atomic),
///   marked for this group (`pythia-group`: other groups reading the stream ack them unseen).
///   A retry lives in Redis: it survives the worker.
/// * **Dead letter**: past `max_attempts` (or rejected), the entry's fields plus
///   `pythia-error`, `pythia-attempt`, `pythia-failed-at` and `pythia-entry-id` go to the stream
///   `<prefix>:{stream}:dlq` (all kept unless a dead-letter cap is set), and the original is acked, in
///   one script.
/// * **Liveness and reclaim**: the consumer keeps a heartbeat key
///   `<prefix>:{stream}:heartbeat:<consumer>` (a TTL refreshed by [`Broker::maintain`]) and is
///   listed in `<prefix>:{stream}:consumers:<group>`. Maintenance looks at the group's consumers
///   (`XINFO CONSUMERS`): a Pythia consumer whose heartbeat expired is dead, and a live one
///   claims its pending entries (`XPENDING` + `XCLAIM` in one script that re-checks the
///   heartbeat) and delivers them before new ones; the dead consumer is then removed from the
///   group. A live consumer's entries are never taken, however long its job runs. Consumers
///   Pythia does not know (other tools) are treated as dead after
///   [`with_foreign_idle_timeout`](Self::with_foreign_idle_timeout) of idleness.
/// * **Poison messages**: a reclaimed entry's attempt is its `pythia-attempt` plus its delivery
///   count, so a message that kills its worker every time comes back with a higher attempt each
///   time and the runtime dead-letters it, without running it, once past `max_attempts`.
/// * **Shutdown**: deliveries the runtime did not process are handed back: acked and added
///   again as new entries (same id and attempt) for this group, in one script. The heartbeat is
///   deleted, and the consumer leaves the group (`XGROUP DELCONSUMER`) when nothing is pending
///   for it; anything that is (a settle that could not reach Redis) is reclaimed at once by the
///   other consumers.
/// * **Burst mode**: [`Broker::is_drained`] first reclaims dead consumers' entries, then is true
///   when no entry waits after the group's last-delivered id, nothing is pending for any
///   consumer of the group, and no retry is scheduled.
/// * **Gauges**: [`Broker::stats`] reports the group's lag as the depth, its pending entries as
///   in flight, its consumers, scheduled retries, dead letters and the age of the next entry.
///
/// # Memory: acked entries do not pile up
///
/// `XACK` removes an entry from the group's pending list, not from the stream. Two mechanisms,
/// both configurable, keep the stream short:
///
/// * **Trimming processed entries** (on by default,
///   [`with_trim_processed`](Self::with_trim_processed)): every maintenance interval, one script
///   finds the oldest entry any consumer group of the stream still needs (the smallest pending
///   id, or the last-delivered id) and runs `XTRIM MINID ~ <that id>`. Entries a group has not
///   processed are never trimmed, so this is safe with several groups on one stream. The stream
///   holds the backlog, what is in flight, and at most one maintenance interval of processed
///   entries (plus part of one radix-tree node, 100 entries by default). An entry of a 100-byte
///   body with `pythia-id` takes about 160 bytes of Redis memory (about 125 for the body alone),
///   so at 250,000 messages/s the processed entries waiting for the next trim peak near 40 MB
///   with the default 1 s interval; shorten the interval or delete on ack to lower that. Readers
///   outside any group (`XREAD`) are not accounted for, and a group nobody reads any more holds
///   everything after its position: remove it (`XGROUP DESTROY`).
/// * **Deleting on ack** ([`with_delete_on_ack`](Self::with_delete_on_ack), off by default):
///   `XDEL` in the same round trip as the `XACK`. Processed entries go at once, at the cost of
///   an `XDEL` per batch; but an entry is deleted for every group, so use it only when this
///   group is the stream's only reader.
///
/// The [`StreamProducer`](crate::StreamProducer) trims nothing by default. Its opt-in hard cap
/// ([`with_max_len`](crate::StreamProducer::with_max_len), `XADD … MAXLEN ~ n`, `pythia produce
/// --max-len`) drops the oldest entries whether processed or not, pending and undelivered ones
/// included: size it above the worst backlog you expect. Entries trimmed before the group was
/// delivered them are lost: counted in [`TRIMMED_UNDELIVERED_TOTAL`] and logged
/// ([`count_trimmed_undelivered`](Self::count_trimmed_undelivered)). An entry trimmed while
/// pending is still acked and settled normally; a retry, dead letter or hand-back of it is
/// rebuilt from the message the worker holds, and one trimmed before a dead consumer's entries
/// are reclaimed is lost and logged.
///
/// # Delivery guarantee: at-least-once
///
/// An entry is acked only after its handler finished (or it was dead-lettered or scheduled for
/// retry, atomically with the ack). If a worker dies, its entries stay in the group's pending
/// list and are delivered again by a live consumer once the dead one's heartbeat expires
/// (`heartbeat_ttl`, 10 s by default); they may therefore run twice. A read whose reply is lost
/// on the way (a dropped connection) is recovered by this consumer from its own pending list,
/// and so is a claim of a dead consumer's entries whose reply is lost (a reply timeout, a
/// killed connection): the claim names its entries beforehand, and the next fetch delivers
/// those it finds pending for this consumer.
/// Retries and hand-backs are new entries of the stream: relative order is not kept for them.
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_core::{Message, Worker, WorkerError, WorkerRuntime};
/// use pythia_redis::{RedisConfig, RedisConnection, StreamBroker, StreamProducer};
///
/// struct Print;
/// impl Worker for Print {
///     async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
///         println!("{} (attempt {})", String::from_utf8_lossy(msg.body()), msg.attempt());
///         Ok(())
///     }
/// }
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// // The group starts at the beginning: the entry added before the first run is processed.
/// let broker = StreamBroker::new(&conn, "events", "billing")
///     .with_heartbeat_ttl(Duration::from_secs(10));
/// StreamProducer::new(&conn, "events").add(&Message::new("invoice 7")).await?;
/// println!("consuming as {}", broker.consumer());
/// WorkerRuntime::new(broker, Print).with_concurrency(64).run().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamBroker {
    conn: RedisConnection,
    manager: SharedConnection,
    keys: QueueKeys,
    source: Source,
    group: String,
    /// The ack commands (built without I/O).
    commands: StreamCommands,
    /// Its name, heartbeat, registration and when it may judge the others.
    membership: Membership,
    start: GroupStart,
    /// Settlements of deliveries another consumer had reclaimed.
    not_owned: NotOwned,
    foreign_idle_timeout: Option<Duration>,
    delete_on_ack: bool,
    trim_processed: bool,
    dead_letter_cap: DeadLetterCap,
    group_ready: AtomicBool,
    group_lost: AtomicBool,
    recovering: AtomicBool,
    /// Entries a previous process under this consumer name left pending may remain.
    own_leftovers: AtomicBool,
    /// The last of those leftovers taken back: they stay pending for this consumer once taken,
    /// so the next look starts after it.
    leftovers_taken: StdMutex<Option<StreamEntryId>>,
    read_mark: StdMutex<StreamEntryId>,
    /// Entries a claim whose reply was lost may have moved into this consumer's pending list.
    unanswered_claims: StdMutex<Vec<StreamEntryId>>,
    blocking: BlockingSlot,
    reclaimed: StdMutex<Reclaimed>,
    claim_lock: Mutex<()>,
    reclaimed_total: metrics::Counter,
    trimmed_undelivered_total: metrics::Counter,
    /// Sent again after a connection error (a failover can lose the last acks).
    recent: RecentSettlements<StreamEntryId>,
    /// Writes the queue registry in the first maintenance (`None` for a sharded queue's shard:
    /// the sharded broker registers the queue).
    registration: Option<Registration>,
}

impl StreamBroker {
    /// Default heartbeat lifetime: a consumer silent this long is dead: 10 s.
    pub const DEFAULT_HEARTBEAT_TTL: Duration = Liveness::DEFAULT_HEARTBEAT_TTL;
    /// Default interval of heartbeats, retry promotion, reclaim and trimming: 1 s.
    pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Liveness::DEFAULT_INTERVAL;
    /// Default idle time after which a consumer without a Pythia heartbeat (another tool) is
    /// treated as dead and its entries are reclaimed: 1 hour.
    pub const DEFAULT_FOREIGN_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

    /// A broker consuming `stream` in consumer group `group`, under a fresh unique consumer
    /// name.
    pub fn new(conn: &RedisConnection, stream: &str, group: &str) -> Self {
        Self::build(conn, stream, group, &unique_consumer_name(), false)
    }

    /// A broker with an explicit consumer name, e.g. a StatefulSet pod's stable name. The name
    /// must be unique among live consumers of the group: prefer [`new`](Self::new). Entries a
    /// previous process under the same name left pending are taken back by the first fetches,
    /// with the attempt raised, before anything new.
    pub fn with_consumer_name(
        conn: &RedisConnection,
        stream: &str,
        group: &str,
        consumer: &str,
    ) -> Self {
        Self::build(conn, stream, group, consumer, true)
    }

    /// A broker under `consumer`; `reused_name` when the name may be a previous process's (its
    /// leftovers are taken back first). The sharded broker gives every shard the same name.
    pub(crate) fn build(
        conn: &RedisConnection,
        stream: &str,
        group: &str,
        consumer: &str,
        reused_name: bool,
    ) -> Self {
        let keys = QueueKeys::new(conn.config().key_prefix(), stream);
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            source: Source::new("stream", stream),
            group: group.to_owned(),
            commands: StreamCommands::new(&keys, group),
            membership: Membership::new(
                consumer,
                keys.heartbeat(consumer),
                keys.group_consumers(group),
            ),
            reclaimed_total: metrics::counter!(RECLAIMED_TOTAL, "queue" => stream.to_owned(), "broker" => "stream"),
            trimmed_undelivered_total: metrics::counter!(TRIMMED_UNDELIVERED_TOTAL, "queue" => stream.to_owned(), "group" => group.to_owned()),
            keys,
            start: GroupStart::default(),
            not_owned: NotOwned::new(stream, "stream"),
            foreign_idle_timeout: Some(Self::DEFAULT_FOREIGN_IDLE_TIMEOUT),
            delete_on_ack: false,
            trim_processed: true,
            dead_letter_cap: DeadLetterCap::new(stream),
            group_ready: AtomicBool::new(false),
            group_lost: AtomicBool::new(false),
            recovering: AtomicBool::new(false),
            own_leftovers: AtomicBool::new(reused_name),
            leftovers_taken: StdMutex::new(None),
            read_mark: StdMutex::new(StreamEntryId::default()),
            unanswered_claims: StdMutex::new(Vec::new()),
            blocking: BlockingSlot::default(),
            reclaimed: StdMutex::new(Reclaimed::default()),
            claim_lock: Mutex::new(()),
            recent: RecentSettlements::new(),
            registration: Some(Registration::broker(conn, stream, QueueKind::Stream)),
        }
    }

    /// The source its messages carry (the sharded broker's shards carry the logical queue).
    pub(crate) fn with_message_source(mut self, source: Source) -> Self {
        self.source = source;
        self.registration = None;
        self
    }

    /// Where the group starts when this broker creates it (default: the beginning of the
    /// stream, so that nothing queued before the first worker is skipped).
    #[must_use]
    pub fn with_start(mut self, start: GroupStart) -> Self {
        self.start = start;
        self
    }

    /// How long a silent consumer counts as alive (at least 3 maintenance intervals).
    #[must_use]
    pub fn with_heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.membership = self.membership.with_heartbeat_ttl(ttl);
        self
    }

    /// Interval of heartbeats, retry promotion, reclaim and trimming (50 ms to 10 s; the
    /// heartbeat TTL is raised to at least three intervals).
    #[must_use]
    pub fn with_maintenance_interval(mut self, d: Duration) -> Self {
        self.membership = self.membership.with_interval(d);
        self
    }

    /// After how long without activity a consumer of the group that has no Pythia heartbeat
    /// (another tool) counts as dead, so its pending entries idle that long are reclaimed;
    /// `None` never reclaims them (at least 1 s).
    #[must_use]
    pub fn with_foreign_idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.foreign_idle_timeout = d.map(|d| d.max(Duration::from_secs(1)));
        self
    }

    /// Whether to `XDEL` entries as they are settled (default: no). Only for a stream this group
    /// alone reads: a deleted entry is gone for every group.
    #[must_use]
    pub fn with_delete_on_ack(mut self, on: bool) -> Self {
        self.delete_on_ack = on;
        self
    }

    /// Whether maintenance trims the entries every group of the stream has processed
    /// (`XTRIM MINID ~`; default: yes).
    #[must_use]
    pub fn with_trim_processed(mut self, on: bool) -> Self {
        self.trim_processed = on;
        self
    }

    /// How many dead letters to keep, approximately (`XADD MAXLEN ~`) (0 = no cap, the default: every dead letter is kept until replayed or purged). A cap
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

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The stream key.
    pub fn stream(&self) -> &str {
        self.keys.queue()
    }

    /// The keys this broker uses (the dead-letter key is a stream).
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    fn mgr(&self) -> SharedConnection {
        self.manager.clone()
    }
}

impl Broker for StreamBroker {
    type Token = StreamEntryId;

    fn guarantee(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    fn source(&self) -> &Source {
        &self.source
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<StreamEntryId>>, BrokerError> {
        self.fetch_blocking(max, Some(self.block_ms())).await
    }

    async fn try_fetch(&self, max: usize) -> Result<Vec<Delivery<StreamEntryId>>, BrokerError> {
        self.fetch_blocking(max, None).await
    }

    async fn settle(&self, batch: &[Settlement<StreamEntryId>]) -> Result<(), BrokerError> {
        let refs: Vec<_> = batch
            .iter()
            .map(|s| (s.token, &s.message, &s.outcome))
            .collect();
        self.settle_refs(&refs).await
    }

    async fn release(&self, batch: Vec<Delivery<StreamEntryId>>) -> Result<(), BrokerError> {
        self.hand_back(&batch).await?;
        self.forget_reclaimed(batch.iter().map(|d| d.token));
        Ok(())
    }

    /// Drained means: dead consumers' entries reclaimed (and none waiting here), no entry after
    /// the group's last-delivered id, nothing pending for any consumer of the group, and no
    /// retry scheduled.
    async fn is_drained(&self) -> Result<bool, BrokerError> {
        self.ensure_group_once().await?;
        self.reclaim_dead_consumers().await?;
        if self.reclaimed_len() > 0
            || self.recovering.load(Ordering::Acquire)
            || self.has_unanswered_claims()
        {
            return Ok(false);
        }
        let mut m = self.mgr();
        let (pending, undelivered, scheduled): (i64, i64, i64) = self
            .commands
            .drained()
            .query(&mut m)
            .await
            .map_err(|e| self.conn.error("drain check", e))?;
        if pending < 0 {
            self.group_ready.store(false, Ordering::Release);
            self.group_lost.store(true, Ordering::Release);
            return Ok(false);
        }
        Ok(pending == 0 && undelivered == 0 && scheduled == 0)
    }

    async fn maintain(&self) -> Result<(), BrokerError> {
        if let Some(r) = &self.registration {
            r.ensure_in_background(&self.conn);
        }
        self.heartbeat()
            .await
            .inspect_err(|e| self.recent.note(e))?;
        self.resend_recent().await?;
        self.promote_due_retries().await?;
        self.reclaim_dead_consumers().await?;
        if self.trim_processed {
            self.trim_processed_entries().await?;
        }
        self.count_trimmed_undelivered().await?;
        Ok(())
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        Some(self.membership.liveness().interval())
    }

    /// Depth: entries not yet delivered to the group (its lag; counted up to 10,000 when Redis
    /// does not know it); in flight: pending for any consumer of the group; oldest age: of the
    /// next entry to deliver, by its id.
    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        self.conn.sample_memory().await;
        let mut m = self.mgr();
        let (depth, pending, consumers, next, scheduled, dead): (u64, u64, u64, String, u64, u64) =
            self.commands
                .stats(DEPTH_COUNT_LIMIT)
                .query(&mut m)
                .await
                .map_err(|e| self.conn.error("stats", e))?;
        let mut stats = QueueStats::default();
        stats.depth = depth;
        stats.in_flight = pending;
        stats.consumers = consumers;
        stats.scheduled = scheduled;
        stats.dead_letters = dead;
        stats.oldest_age = StreamEntryId::parse(next.as_bytes())
            .and_then(|id| SystemTime::now().duration_since(id.time()).ok());
        Ok(Some(stats))
    }

    async fn close(&self) -> Result<(), BrokerError> {
        let waiting: Vec<_> = self
            .reclaimed
            .lock()
            .expect("reclaimed lock")
            .queue
            .drain(..)
            .collect();
        let handed_back = self.hand_back(&waiting).await;
        if !self.membership.registered.load(Ordering::Acquire) {
            return handed_back;
        }
        let mut m = self.mgr();
        redis::cmd("DEL")
            .arg(self.membership.heartbeat_key())
            .query_async::<()>(&mut m)
            .await
            .map_err(|e| self.conn.error("close", e))?;
        self.membership.registered.store(false, Ordering::Release);
        let left: i64 = self
            .commands
            .leave(self.membership.registry(), self.membership.consumer())
            .query(&mut m)
            .await
            .map_err(|e| self.conn.error("leave group", e))?;
        if left == 0 {
            tracing::warn!(consumer = %self.membership.consumer(), "left entries pending on shutdown; the other consumers reclaim them now");
        }
        handed_back
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &[u8])]) -> Value {
        let flat = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k.as_bytes()), bulk(v)])
            .collect();
        Value::Array(vec![bulk(id.as_bytes()), Value::Array(flat)])
    }

    fn decode(fields: &[(&str, &[u8])], group: Option<&str>, extra: u32) -> Option<Message> {
        let pairs = fields
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()));
        decode_fields(
            StreamEntryId::new(1_700_000_000_000, 3),
            b"1700000000000-3".to_vec(),
            pairs,
            group,
            &Source::new("stream", "s"),
            extra,
        )
    }

    #[test]
    fn entry_ids_parse_format_and_order() {
        let id = StreamEntryId::parse(b"1526919030474-55").unwrap();
        assert_eq!((id.ms(), id.seq()), (1_526_919_030_474, 55));
        assert_eq!(id.to_string(), "1526919030474-55");
        assert_eq!(StreamEntryId::parse(b"7"), Some(StreamEntryId::new(7, 0)));
        for bad in [&b""[..], b"-1", b"1-", b"a-b", b"1-2-3", b"\xff"] {
            assert_eq!(StreamEntryId::parse(bad), None, "{bad:?}");
        }
        assert!(StreamEntryId::new(1, 9) < StreamEntryId::new(2, 0));
        assert!("x".parse::<StreamEntryId>().is_err());
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&[StreamEntryId::new(1, 2), StreamEntryId::new(3, 4)][..]);
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(args, [b"XACK".to_vec(), b"1-2".to_vec(), b"3-4".to_vec()]);
    }

    #[test]
    fn pythia_fields_are_not_headers() {
        let m = decode(
            &[
                ("body", b"hi"),
                ("pythia-id", b"abc"),
                ("pythia-attempt", b"3"),
                ("pythia-enqueued-at", b"1600000000000"),
                ("pythia-something-new", b"x"),
                ("tenant", b"acme"),
                ("header_trace", b"t1"),
            ],
            Some("g"),
            0,
        )
        .unwrap();
        assert_eq!(m.body().as_ref(), b"hi");
        assert_eq!(m.id(), "abc");
        assert_eq!(m.attempt(), 3);
        assert_eq!(m.enqueued_at().map(unix_millis), Some(1_600_000_000_000));
        assert_eq!(m.headers().len(), 2);
        assert_eq!(m.header("tenant"), Some("acme"));
        assert_eq!(m.header("trace"), Some("t1"));
    }

    #[test]
    fn foreign_entries_get_the_entry_id_and_time() {
        let m = decode(&[("body", b"x")], None, 0).unwrap();
        assert_eq!(m.id(), "1700000000000-3");
        assert_eq!(m.attempt(), 1);
        assert_eq!(m.enqueued_at().map(unix_millis), Some(1_700_000_000_000));
        let m = decode(&[("body", &[0xff, 0]), ("bin", &[0xff])], None, 0).unwrap();
        assert_eq!(m.body().as_ref(), &[0xff, 0]);
        assert_eq!(m.header("bin"), Some("\u{fffd}"));
    }

    #[test]
    fn an_entry_without_a_body_is_the_json_object_of_its_fields() {
        let m = decode(&[("user", b"7"), ("pythia-id", b"i")], None, 0).unwrap();
        assert_eq!(m.body().as_ref(), br#"{"user":"7"}"#);
        assert!(m.headers().is_empty());
        assert_eq!(m.id(), "i");
    }

    #[test]
    fn entries_for_another_group_are_skipped() {
        let fields: &[(&str, &[u8])] = &[("body", b"x"), ("pythia-group", b"other")];
        assert!(decode(fields, Some("mine"), 0).is_none());
        assert!(decode(fields, Some("other"), 0).is_some());
        assert!(decode(fields, None, 0).is_some());
    }

    #[test]
    fn deliveries_to_dead_consumers_count_as_attempts() {
        let m = decode(&[("body", b"x"), ("pythia-attempt", b"2")], None, 3).unwrap();
        assert_eq!(m.attempt(), 5);
        let m = decode(&[("body", b"x"), ("pythia-attempt", b"junk")], None, 0).unwrap();
        assert_eq!(m.attempt(), 1);
    }

    #[test]
    fn replies_parse_in_resp2_and_resp3_shapes() {
        let entries = vec![
            entry("1-1", &[("body", b"a")]),
            // A deleted entry in a pending-list read.
            Value::Array(vec![bulk(b"1-2"), Value::Nil]),
        ];
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk(b"s"),
            Value::Array(entries.clone()),
        ])]);
        let resp3 = Value::Map(vec![(bulk(b"s"), Value::Array(entries))]);
        for reply in [resp2, resp3] {
            let got = reply_entries(reply);
            assert_eq!(got.len(), 2);
            let mut it = got.into_iter();
            let (id, fields) = split_entry(it.next().unwrap()).unwrap();
            assert_eq!(id, b"1-1");
            let pairs: Vec<_> = FieldPairs::new(fields.unwrap()).collect();
            assert_eq!(pairs, [(b"body".to_vec(), b"a".to_vec())]);
            let (id, fields) = split_entry(it.next().unwrap()).unwrap();
            assert_eq!(id, b"1-2");
            assert!(fields.is_none());
        }
        assert!(reply_entries(Value::Nil).is_empty());
        let map_fields = FieldList::Map(vec![(bulk(b"body"), bulk(b"b"))]);
        let pairs: Vec<_> = FieldPairs::new(map_fields).collect();
        assert_eq!(pairs, [(b"body".to_vec(), b"b".to_vec())]);
    }

    #[test]
    fn extended_xpending_rows_give_id_and_delivery_count() {
        let row = |id: &[u8], count: i64| {
            Value::Array(vec![
                bulk(id),
                bulk(b"c"),
                Value::Int(12),
                Value::Int(count),
            ])
        };
        let reply = Value::Array(vec![row(b"1-2", 3), bulk(b"junk"), row(b"x", 1)]);
        assert_eq!(pending_rows(reply), [(StreamEntryId::new(1, 2), 3)]);
        assert!(pending_rows(Value::Nil).is_empty());
    }

    #[test]
    fn group_start_parses() {
        assert_eq!("new".parse::<GroupStart>().unwrap(), GroupStart::NewEntries);
        assert_eq!("0".parse::<GroupStart>().unwrap(), GroupStart::Beginning);
        assert!("middle".parse::<GroupStart>().is_err());
        assert_eq!(GroupStart::default().as_arg(), "0");
    }
}
