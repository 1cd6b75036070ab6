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
pub mod producer;
pub mod reader;

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
use redis::{RedisWrite, ScriptInvocation, ToRedisArgs, Value};
use tokio::sync::Mutex;

use crate::connection::RedisConnection;
use crate::consumer::liveness::{Liveness, NotOwned, ReapGate};
use crate::consumer::recent_settlements::RecentSettlements;
use crate::consumer::retry_schedule::{DEFAULT_DEAD_LETTER_CAP, delay_ms, promote_due_to_stream};
use crate::keys::{QueueKeys, unique_consumer_name};
use crate::list::reliable::RECLAIMED_TOTAL;
use crate::scripts::{
    STREAM_CLAIM, STREAM_DRAINED, STREAM_LEAVE, STREAM_SETTLE, STREAM_STATS, STREAM_TRIM,
    STREAM_TRIMMED,
};

/// Counter of the entries removed from a stream (a producer's `MAXLEN ~`, an `XTRIM`) before the
/// consumer group was delivered them: messages lost. Labels `queue` (the stream) and `group`.
/// See [`StreamBroker::count_trimmed_undelivered`].
pub const TRIMMED_UNDELIVERED_TOTAL: &str = "pythia_stream_trimmed_undelivered_total";

/// The field names Pythia reads and writes in stream entries.
///
/// Every field of Pythia's own starts with [`RESERVED_PREFIX`](fields::RESERVED_PREFIX); such
/// fields are never headers, and a producer refuses headers named `body` or starting with the
/// prefix.
pub mod fields {
    /// The message body.
    pub const BODY: &str = "body";
    /// Prefix of Pythia's own fields.
    pub const RESERVED_PREFIX: &str = "pythia-";
    /// Prefix under which the Python `pythia-framework` writes headers (`header_tenant`).
    pub const PYTHON_HEADER_PREFIX: &str = "header_";
    /// The message id, stable across retries.
    pub const ID: &str = "pythia-id";
    /// The attempt number of the delivery this entry starts (1 when absent).
    pub const ATTEMPT: &str = "pythia-attempt";
    /// When the message was first enqueued, in milliseconds since the Unix epoch, for entries
    /// whose id does not say it (retries, hand-backs, replays).
    pub const ENQUEUED_AT: &str = "pythia-enqueued-at";
    /// The consumer group a retried or handed-back entry is for: other groups reading the same
    /// stream acknowledge it without delivering it.
    pub const GROUP: &str = "pythia-group";
    /// Dead letters: the last error.
    pub const ERROR: &str = "pythia-error";
    /// Dead letters: when the message was dead-lettered (ms since the Unix epoch).
    pub const FAILED_AT: &str = "pythia-failed-at";
    /// Dead letters: the id of the stream entry that was dead-lettered.
    pub const ENTRY_ID: &str = "pythia-entry-id";
}

/// One field of a stream entry: name, value.
type FieldPair = (Vec<u8>, Vec<u8>);

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
/// Reads in a row that may come back with nothing but entries for other groups.
const SKIP_ROUNDS: usize = 4;

/// The id of a stream entry, `<milliseconds>-<sequence>`: the token of a [`StreamBroker`]
/// delivery. Copy, no allocation, ordered like Redis orders entries.
///
/// ```
/// use pythia_redis::StreamEntryId;
///
/// let id: StreamEntryId = "1700000000123-4".parse().unwrap();
/// assert_eq!((id.ms(), id.seq()), (1_700_000_000_123, 4));
/// assert_eq!(id.to_string(), "1700000000123-4");
/// assert!(id < StreamEntryId::new(1_700_000_000_123, 5));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamEntryId {
    ms: u64,
    seq: u64,
}

impl StreamEntryId {
    /// The id `<ms>-<seq>`.
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The millisecond part: when Redis added the entry (for ids Redis generated).
    pub fn ms(self) -> u64 {
        self.ms
    }

    /// The sequence number within the millisecond.
    pub fn seq(self) -> u64 {
        self.seq
    }

    /// The time in the id.
    pub fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.ms)
    }

    /// Parses `<ms>-<seq>` (or `<ms>`, sequence 0) from bytes.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        fn number(digits: &[u8]) -> Option<u64> {
            if digits.is_empty() {
                return None;
            }
            digits.iter().try_fold(0u64, |n, d| {
                let d = d.wrapping_sub(b'0');
                (d < 10).then_some(())?;
                n.checked_mul(10)?.checked_add(u64::from(d))
            })
        }
        match raw.iter().position(|b| *b == b'-') {
            Some(dash) => Some(Self {
                ms: number(&raw[..dash])?,
                seq: number(&raw[dash + 1..])?,
            }),
            None => Some(Self {
                ms: number(raw)?,
                seq: 0,
            }),
        }
    }
}

impl fmt::Display for StreamEntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamEntryId {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        Self::parse(s.as_bytes()).ok_or_else(|| {
            BrokerError::config(format!(
                "invalid stream entry id {s:?}: expected <ms>-<seq>"
            ))
        })
    }
}

impl ToRedisArgs for StreamEntryId {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        use std::io::Write;
        // Formatted straight into the command buffer: no allocation per acked id.
        let _ = write!(out.writer_for_next_arg(), "{}-{}", self.ms, self.seq);
    }
}

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
///   `<prefix>:{stream}:dlq` (`XADD MAXLEN ~` the dead-letter cap), and the original is acked, in
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
    consumer: String,
    heartbeat_key: String,
    consumers_key: String,
    scheduled_key: String,
    dead_letters_key: String,
    start: GroupStart,
    liveness: Liveness,
    /// Whether this consumer may take others' silence for death yet (see [`ReapGate`]).
    reap_gate: ReapGate,
    /// Settlements of deliveries another consumer had reclaimed.
    not_owned: NotOwned,
    foreign_idle_timeout: Option<Duration>,
    delete_on_ack: bool,
    trim_processed: bool,
    dead_letter_cap: usize,
    group_ready: AtomicBool,
    group_lost: AtomicBool,
    registered: AtomicBool,
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
}

/// What a read gave: deliveries, ids to ack without delivering (entries for other groups,
/// entries deleted while pending), and the last id seen.
struct ReadBatch {
    deliveries: Vec<Delivery<StreamEntryId>>,
    to_ack: Vec<StreamEntryId>,
    last: Option<StreamEntryId>,
}

#[derive(Clone, Copy)]
enum ReadFrom {
    /// New entries (`>`), blocking this long (`None`: not blocking).
    New(Option<u64>),
    /// This consumer's pending entries after the id (history), not blocking.
    PendingAfter(StreamEntryId),
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
            consumer: consumer.to_owned(),
            heartbeat_key: keys.heartbeat(consumer),
            consumers_key: keys.group_consumers(group),
            scheduled_key: keys.scheduled(),
            dead_letters_key: keys.dead_letters(),
            reclaimed_total: metrics::counter!(RECLAIMED_TOTAL, "queue" => stream.to_owned(), "broker" => "stream"),
            trimmed_undelivered_total: metrics::counter!(TRIMMED_UNDELIVERED_TOTAL, "queue" => stream.to_owned(), "group" => group.to_owned()),
            keys,
            start: GroupStart::default(),
            liveness: Liveness::default(),
            reap_gate: ReapGate::default(),
            not_owned: NotOwned::new(stream, "stream"),
            foreign_idle_timeout: Some(Self::DEFAULT_FOREIGN_IDLE_TIMEOUT),
            delete_on_ack: false,
            trim_processed: true,
            dead_letter_cap: DEFAULT_DEAD_LETTER_CAP,
            group_ready: AtomicBool::new(false),
            group_lost: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            recovering: AtomicBool::new(false),
            own_leftovers: AtomicBool::new(reused_name),
            leftovers_taken: StdMutex::new(None),
            read_mark: StdMutex::new(StreamEntryId::default()),
            unanswered_claims: StdMutex::new(Vec::new()),
            blocking: BlockingSlot::default(),
            reclaimed: StdMutex::new(Reclaimed::default()),
            claim_lock: Mutex::new(()),
            recent: RecentSettlements::new(),
        }
    }

    /// The source its messages carry (the sharded broker's shards carry the logical queue).
    pub(crate) fn with_message_source(mut self, source: Source) -> Self {
        self.source = source;
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
        self.liveness = self.liveness.with_heartbeat_ttl(ttl);
        self
    }

    /// Interval of heartbeats, retry promotion, reclaim and trimming (50 ms to 10 s; the
    /// heartbeat TTL is raised to at least three intervals).
    #[must_use]
    pub fn with_maintenance_interval(mut self, d: Duration) -> Self {
        self.liveness = self.liveness.with_interval(d);
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

    /// How many dead letters to keep, approximately (`XADD MAXLEN ~`; 0 = no cap).
    #[must_use]
    pub fn with_dead_letter_cap(mut self, cap: usize) -> Self {
        self.dead_letter_cap = cap;
        self
    }

    /// This consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
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

    /// Creates the consumer group at the configured [`GroupStart`] (and the stream, if missing)
    /// unless it exists. With [`GroupStart::NewEntries`], call it before producing, so that
    /// nothing produced before the first worker starts is skipped.
    pub async fn ensure_group(&self) -> Result<(), BrokerError> {
        let start = if self.group_lost.load(Ordering::Acquire) {
            // The group vanished while consuming (the stream was deleted): what is in the
            // stream now was added since, and must not be skipped.
            GroupStart::Beginning
        } else {
            self.start
        };
        let mut m = self.mgr();
        let res: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream())
            .arg(&self.group)
            .arg(start.as_arg())
            .arg("MKSTREAM")
            .query_async(&mut m)
            .await;
        let created = match res {
            Ok(()) => {
                tracing::debug!(stream = self.stream(), group = %self.group, start = start.as_str(), "consumer group created");
                true
            }
            Err(e) if e.code() == Some("BUSYGROUP") => false,
            Err(e) => return Err(self.conn.error("XGROUP CREATE", e)),
        };
        // Before the first read: a read past entries trimmed unread would hide them, in a group
        // whose read counter Redis does not know yet.
        self.check_trimmed(created).await?;
        self.group_lost.store(false, Ordering::Release);
        self.group_ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn ensure_group_once(&self) -> Result<(), BrokerError> {
        if !self.group_ready.load(Ordering::Acquire) {
            self.ensure_group().await?;
        }
        Ok(())
    }

    async fn heartbeat(&self) -> Result<(), BrokerError> {
        let mut m = self.mgr();
        self.liveness
            .beat(
                &self.reap_gate,
                &self.conn,
                &mut m,
                &self.heartbeat_key,
                &self.consumers_key,
                &self.consumer,
            )
            .await?;
        self.registered.store(true, Ordering::Release);
        Ok(())
    }

    async fn ensure_ready(&self) -> Result<(), BrokerError> {
        self.ensure_group_once().await?;
        if self.own_leftovers.load(Ordering::Acquire) {
            // A name given by the caller may be a restarted process's: what it left pending is
            // nobody else's to reclaim while this one keeps the heartbeat alive.
            let (n, all) = self
                .claim_from(&self.consumer, false, Duration::ZERO)
                .await?;
            if all {
                self.own_leftovers.store(false, Ordering::Release);
            }
            if n > 0 {
                tracing::info!(consumer = %self.consumer, taken_back = n, "took back entries left pending under this consumer name");
            }
        }
        if !self.registered.load(Ordering::Acquire) {
            self.heartbeat().await?;
            tracing::debug!(consumer = %self.consumer, stream = self.stream(), group = %self.group, "stream consumer registered");
        }
        Ok(())
    }

    /// Marks the group as gone when Redis says so, so the next call creates it again.
    fn note_error(&self, e: &redis::RedisError) {
        if e.code() == Some("NOGROUP") {
            self.group_ready.store(false, Ordering::Release);
            self.group_lost.store(true, Ordering::Release);
        }
    }

    fn block_ms(&self) -> u64 {
        (self.conn.config().block_timeout().as_millis() as u64).max(1)
    }

    /// One `XREADGROUP` on the dedicated connection.
    async fn read_group(&self, max: usize, from: ReadFrom) -> Result<ReadBatch, BrokerError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(max);
        match from {
            ReadFrom::New(block_ms) => {
                if let Some(ms) = block_ms {
                    cmd.arg("BLOCK").arg(ms);
                }
                cmd.arg("STREAMS").arg(self.stream()).arg(">")
            }
            ReadFrom::PendingAfter(id) => cmd.arg("STREAMS").arg(self.stream()).arg(id),
        };
        let reply: Value = match self.blocking.query(&self.conn, &cmd).await? {
            Ok(v) => v,
            Err(e) => {
                self.note_error(&e);
                if matches!(from, ReadFrom::New(_)) && e.code() != Some("NOGROUP") {
                    // The server may have delivered entries whose reply never arrived: they sit
                    // in this consumer's pending list, and nobody else will take them while it
                    // lives. Read them back before anything new.
                    self.recovering.store(true, Ordering::Release);
                }
                return Err(self.conn.error("XREADGROUP", e));
            }
        };
        Ok(self.decode_read(reply))
    }

    fn decode_read(&self, reply: Value) -> ReadBatch {
        decode_read_reply(reply, &self.group, &self.source)
    }

    /// Acknowledges `ids` (and deletes them with `delete_on_ack`); returns how many were still
    /// pending in the group.
    async fn ack_ids(&self, ids: &[StreamEntryId]) -> Result<u64, BrokerError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut m = self.mgr();
        let mut xack = redis::cmd("XACK");
        xack.arg(self.stream()).arg(&self.group).arg(ids);
        let res = if self.delete_on_ack {
            redis::pipe()
                .atomic()
                .add_command(xack)
                .cmd("XDEL")
                .arg(self.stream())
                .arg(ids)
                .ignore()
                .query_async::<(u64,)>(&mut m)
                .await
                .map(|(acked,)| acked)
        } else {
            xack.query_async::<u64>(&mut m).await
        };
        res.map_err(|e| self.conn.error("XACK", e))
    }

    /// Takes up to `max` reclaimed entries waiting for the runtime.
    fn take_reclaimed(&self, max: usize) -> Vec<Delivery<StreamEntryId>> {
        let mut r = self.reclaimed.lock().expect("reclaimed lock");
        if r.queue.is_empty() {
            return Vec::new();
        }
        let n = max.min(r.queue.len());
        let batch: Vec<_> = r.queue.drain(..n).collect();
        for d in &batch {
            r.in_flight.insert(d.token);
        }
        batch
    }

    fn forget_reclaimed(&self, ids: impl Iterator<Item = StreamEntryId>) {
        let mut r = self.reclaimed.lock().expect("reclaimed lock");
        if !r.in_flight.is_empty() {
            for id in ids {
                r.in_flight.remove(&id);
            }
        }
    }

    fn reclaimed_len(&self) -> usize {
        self.reclaimed.lock().expect("reclaimed lock").queue.len()
    }

    /// Reads back entries delivered to this consumer by a read whose reply was lost.
    async fn recover_lost_reply(
        &self,
        max: usize,
    ) -> Result<Vec<Delivery<StreamEntryId>>, BrokerError> {
        // No claim may add entries to this consumer's pending list while it is read back.
        let _claiming = self.claim_lock.lock().await;
        let from = *self.read_mark.lock().expect("read mark lock");
        let batch = self.read_group(max, ReadFrom::PendingAfter(from)).await?;
        let Some(last) = batch.last else {
            self.recovering.store(false, Ordering::Release);
            return Ok(Vec::new());
        };
        *self.read_mark.lock().expect("read mark lock") = last;
        self.ack_ids(&batch.to_ack).await?;
        let deliveries: Vec<_> = {
            let r = self.reclaimed.lock().expect("reclaimed lock");
            // Entries of a claim whose reply was lost are delivered by the claim's recovery.
            let claimed = self
                .unanswered_claims
                .lock()
                .expect("unanswered claims lock");
            batch
                .deliveries
                .into_iter()
                .filter(|d| {
                    !r.in_flight.contains(&d.token)
                        && !r.queue.iter().any(|q| q.token == d.token)
                        && !claimed.contains(&d.token)
                })
                .collect()
        };
        if !deliveries.is_empty() {
            // The history read counted a delivery; this is the same delivery as the lost one.
            let ids: Vec<StreamEntryId> = deliveries.iter().map(|d| d.token).collect();
            let mut m = self.mgr();
            redis::cmd("XCLAIM")
                .arg(self.stream())
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(0)
                .arg(&ids)
                .arg("RETRYCOUNT")
                .arg(1)
                .arg("JUSTID")
                .query_async::<Value>(&mut m)
                .await
                .map_err(|e| self.conn.error("XCLAIM", e))?;
            tracing::warn!(
                count = deliveries.len(),
                consumer = %self.consumer,
                "recovered entries whose read reply was lost"
            );
        }
        Ok(deliveries)
    }

    /// Claims the pending entries of every dead consumer of the group for this one; they are
    /// delivered by the next fetches, before new entries. Returns how many were claimed.
    ///
    /// A Pythia consumer is dead when its heartbeat has expired; a consumer without one (another
    /// tool) when it has been idle longer than the foreign idle timeout. Dead consumers left
    /// with nothing pending are removed from the group. Nothing is judged until this consumer
    /// has heartbeated without a break for a whole heartbeat lifetime (after it starts, and
    /// after any outage), so a Redis outage longer than the lifetime never makes live consumers
    /// reclaim each other's running jobs.
    pub async fn reclaim_dead_consumers(&self) -> Result<u64, BrokerError> {
        self.ensure_group_once().await?;
        if !self.reap_gate.is_open(&self.liveness) {
            // Not until this consumer has heartbeated without a break for a whole lifetime
            // (after it starts, and after any outage): see `consumer/liveness.rs`.
            return Ok(0);
        }
        let mut m = self.mgr();
        let (info, members): (StreamInfoConsumersReply, Vec<String>) = match redis::pipe()
            .cmd("XINFO")
            .arg("CONSUMERS")
            .arg(self.stream())
            .arg(&self.group)
            .smembers(&self.consumers_key)
            .query_async(&mut m)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.note_error(&e);
                return Err(self.conn.error("XINFO CONSUMERS", e));
            }
        };
        let others: Vec<&String> = members.iter().filter(|c| **c != self.consumer).collect();
        let mut alive = HashSet::new();
        if !others.is_empty() {
            let mut pipe = redis::pipe();
            for c in &others {
                pipe.exists(self.keys.heartbeat(c));
            }
            let beats: Vec<bool> = pipe
                .query_async(&mut m)
                .await
                .map_err(|e| self.conn.error("heartbeat check", e))?;
            alive.extend(
                others
                    .iter()
                    .zip(beats)
                    .filter(|(_, b)| *b)
                    .map(|(c, _)| c.as_str()),
            );
        }
        let in_group: HashSet<&str> = info.consumers.iter().map(|c| c.name.as_str()).collect();
        let stale: Vec<&&String> = others
            .iter()
            .filter(|c| !in_group.contains(c.as_str()) && !alive.contains(c.as_str()))
            .collect();
        if !stale.is_empty() {
            // Registered, never read, and gone: nothing of theirs to reclaim.
            let _: () = redis::cmd("SREM")
                .arg(&self.consumers_key)
                .arg(&stale)
                .query_async(&mut m)
                .await
                .map_err(|e| self.conn.error("SREM", e))?;
        }
        let mut total = 0;
        for c in &info.consumers {
            if c.name == self.consumer || alive.contains(c.name.as_str()) {
                continue;
            }
            let pythia = members.contains(&c.name);
            if pythia {
                total += self.claim_from(&c.name, true, Duration::ZERO).await?.0;
            } else if let Some(limit) = self.foreign_idle_timeout
                && c.idle as u128 >= limit.as_millis()
            {
                total += self.claim_from(&c.name, false, limit).await?.0;
            }
        }
        Ok(total)
    }

    async fn claim_from(
        &self,
        dead: &str,
        check_heartbeat: bool,
        min_idle: Duration,
    ) -> Result<(u64, bool), BrokerError> {
        let _claiming = self.claim_lock.lock().await;
        let mut m = self.mgr();
        let (mut total, mut lost) = (0u64, 0u64);
        let mut all = false;
        loop {
            let room = RECLAIMED_QUEUE_CAP.saturating_sub(self.reclaimed_len());
            let want = room.min(CLAIM_BATCH);
            if want == 0 {
                break;
            }
            // A dead consumer's claimed entries leave its pending list; this consumer's own
            // leftovers do not, so they are walked past.
            let after = if dead == self.consumer {
                *self.leftovers_taken.lock().expect("leftovers lock")
            } else {
                None
            };
            let candidates = self.pending_of(dead, min_idle, after, want).await?;
            if dead == self.consumer
                && let Some(last) = candidates.last()
            {
                *self.leftovers_taken.lock().expect("leftovers lock") = Some(*last);
            }
            let mut claim = STREAM_CLAIM.prepare_invoke();
            claim
                .key(self.stream())
                .key(self.keys.heartbeat(dead))
                .key(&self.consumers_key)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(dead)
                .arg(if check_heartbeat { "1" } else { "0" })
                .arg(min_idle.as_millis() as u64);
            for id in &candidates {
                claim.arg(*id);
            }
            let reply: Value = match claim.invoke_async(&mut m).await {
                Ok(reply) => reply,
                Err(e) => {
                    self.note_error(&e);
                    // The script may have run and only its reply been lost (a reply timeout, a
                    // killed connection): the entries would sit in this live consumer's pending
                    // list, where nobody else takes them. The next fetch looks for them there.
                    self.unanswered_claims
                        .lock()
                        .expect("unanswered claims lock")
                        .extend(candidates);
                    return Err(self.conn.error("reclaim", e));
                }
            };
            let Value::Array(items) = reply else {
                return Err(BrokerError::backend(
                    "reclaim script gave a malformed reply",
                ));
            };
            let mut items = items.into_iter();
            let status = items.next().and_then(as_int).unwrap_or(-1);
            lost += items.next().and_then(as_int).unwrap_or(0).max(0) as u64;
            if status < 0 {
                all = true;
                break; // its heartbeat came back: alive after all
            }
            let mut got = Vec::new();
            let mut to_ack = Vec::new();
            while let (Some(id), Some(count), Some(fields)) =
                (items.next(), items.next(), items.next())
            {
                let (Some(id_bytes), Some(count), Value::Array(fields)) =
                    (value_bytes(id), as_int(count), fields)
                else {
                    continue;
                };
                let Some(id) = StreamEntryId::parse(&id_bytes) else {
                    continue;
                };
                let extra = u32::try_from(count.max(0)).unwrap_or(u32::MAX);
                match decode_fields(
                    id,
                    id_bytes,
                    FieldPairs::new(fields),
                    Some(&self.group),
                    &self.source,
                    extra,
                ) {
                    Some(msg) => got.push(Delivery::new(id, msg)),
                    None => to_ack.push(id),
                }
            }
            self.ack_ids(&to_ack).await?;
            let claimed = got.len() + to_ack.len();
            total += got.len() as u64;
            self.reclaimed
                .lock()
                .expect("reclaimed lock")
                .queue
                .extend(got);
            if status == 1 || claimed < want {
                all = true;
                break;
            }
        }
        if lost > 0 {
            tracing::warn!(
                dead_consumer = dead,
                lost,
                stream = self.stream(),
                "entries of a dead consumer were trimmed from the stream before they were processed; raise the producer's MAXLEN or remove it"
            );
        }
        if total > 0 {
            self.reclaimed_total.increment(total);
            tracing::info!(
                dead_consumer = dead,
                reclaimed = total,
                stream = self.stream(),
                group = %self.group,
                "claimed a dead consumer's pending entries"
            );
        }
        Ok((total, all))
    }

    /// Up to `max` ids pending for `consumer`, idle at least `min_idle`, oldest first, after
    /// `after` when given.
    async fn pending_of(
        &self,
        consumer: &str,
        min_idle: Duration,
        after: Option<StreamEntryId>,
        max: usize,
    ) -> Result<Vec<StreamEntryId>, BrokerError> {
        let mut m = self.mgr();
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let rows: Vec<Value> = redis::cmd("XPENDING")
            .arg(self.stream())
            .arg(&self.group)
            .arg("IDLE")
            .arg(min_idle.as_millis() as u64)
            .arg(start)
            .arg("+")
            .arg(max)
            .arg(consumer)
            .query_async(&mut m)
            .await
            .map_err(|e| {
                self.note_error(&e);
                self.conn.error("XPENDING", e)
            })?;
        Ok(rows
            .into_iter()
            .filter_map(pending_row)
            .map(|(id, _)| id)
            .collect())
    }

    /// Delivers the entries that claims whose reply was lost moved into this consumer's pending
    /// list (through the reclaimed queue, so before new entries): of the ids those claims named,
    /// the ones pending for this consumer that it has not delivered. Entries deleted from the
    /// stream meanwhile are acked and logged as lost.
    async fn recover_unanswered_claims(&self) -> Result<(), BrokerError> {
        let _claiming = self.claim_lock.lock().await;
        let ids = std::mem::take(
            &mut *self
                .unanswered_claims
                .lock()
                .expect("unanswered claims lock"),
        );
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("XPENDING")
                .arg(self.stream())
                .arg(&self.group)
                .arg(id)
                .arg(id)
                .arg(1)
                .arg(&self.consumer)
                .cmd("XRANGE")
                .arg(self.stream())
                .arg(id)
                .arg(id);
        }
        let mut m = self.mgr();
        let replies: Vec<Value> = match pipe.query_async(&mut m).await {
            Ok(replies) => replies,
            Err(e) => {
                self.note_error(&e);
                self.unanswered_claims
                    .lock()
                    .expect("unanswered claims lock")
                    .extend(ids);
                return Err(self.conn.error("reclaim (recovering a lost reply)", e));
            }
        };
        let mut replies = replies.into_iter();
        let (mut got, mut to_ack, mut gone) = (Vec::new(), Vec::new(), 0usize);
        {
            let r = self.reclaimed.lock().expect("reclaimed lock");
            for id in ids {
                let (Some(pending), Some(range)) = (replies.next(), replies.next()) else {
                    break;
                };
                let Some(count) = pending_rows(pending)
                    .into_iter()
                    .find_map(|(p, count)| (p == id).then_some(count))
                else {
                    continue; // never claimed for this consumer
                };
                if r.in_flight.contains(&id) || r.queue.iter().any(|q| q.token == id) {
                    continue;
                }
                let entry = match range {
                    Value::Array(entries) => entries.into_iter().next().and_then(split_entry),
                    _ => None,
                };
                let Some((id_bytes, Some(fields))) = entry else {
                    gone += 1; // deleted while pending
                    to_ack.push(id);
                    continue;
                };
                // The claim counted a delivery to this consumer; the ones before were to the
                // dead one.
                let extra = u32::try_from(count.saturating_sub(1)).unwrap_or(u32::MAX);
                match decode_fields(
                    id,
                    id_bytes,
                    FieldPairs::new(fields),
                    Some(&self.group),
                    &self.source,
                    extra,
                ) {
                    Some(msg) => got.push(Delivery::new(id, msg)),
                    None => to_ack.push(id),
                }
            }
        }
        self.ack_ids(&to_ack).await?;
        if gone > 0 {
            tracing::warn!(
                lost = gone,
                stream = self.stream(),
                "claimed entries were trimmed from the stream before they were processed; raise the producer's MAXLEN or remove it"
            );
        }
        if !got.is_empty() {
            tracing::warn!(
                count = got.len(),
                consumer = %self.consumer,
                "recovered claimed entries whose claim reply was lost"
            );
            self.reclaimed_total.increment(got.len() as u64);
            self.reclaimed
                .lock()
                .expect("reclaimed lock")
                .queue
                .extend(got);
        }
        Ok(())
    }

    fn has_unanswered_claims(&self) -> bool {
        !self
            .unanswered_claims
            .lock()
            .expect("unanswered claims lock")
            .is_empty()
    }

    /// Moves due retries and delayed messages onto the stream; returns how many moved.
    pub async fn promote_due_retries(&self) -> Result<u64, BrokerError> {
        let mut m = self.mgr();
        promote_due_to_stream(&self.conn, &mut m, &self.keys).await
    }

    /// Trims the entries every consumer group of the stream has processed (see "Memory" above);
    /// returns how many were removed.
    pub async fn trim_processed_entries(&self) -> Result<u64, BrokerError> {
        let mut m = self.mgr();
        STREAM_TRIM
            .key(self.stream())
            .arg(TRIM_LIMIT)
            .invoke_async(&mut m)
            .await
            .map_err(|e| self.conn.error("trim", e))
    }

    /// Counts the entries removed from the stream (a producer's `MAXLEN ~`, an `XTRIM`) before
    /// this group was delivered them, since any consumer of the group last counted: those
    /// messages are lost. A count above 0 is added to the counter
    /// [`TRIMMED_UNDELIVERED_TOTAL`] and logged as a warning, once: the count is then cleared
    /// in Redis (the group's read counter, `XGROUP SETID … ENTRIESREAD`, which also makes its lag
    /// true again), so another consumer does not report the same entries.
    ///
    /// Maintenance calls it every interval, and [`ensure_group`](Self::ensure_group) before the
    /// first read. It needs Redis 7.0 (0 before). The count is known while the group's position
    /// is before the stream's first entry (the state a trim of undelivered entries leaves, until
    /// the group reads on), and, on Redis 7.0, also once the group has caught up. Later Redis
    /// versions count entries a group reads past as read, so there a trim that happens and is
    /// read past between two maintenance intervals goes uncounted: the count is a lower bound.
    /// Entries trimmed before the group existed are not counted. The consumers' own trim
    /// ([`with_trim_processed`](Self::with_trim_processed)) never removes an undelivered entry.
    pub async fn count_trimmed_undelivered(&self) -> Result<u64, BrokerError> {
        self.check_trimmed(false).await
    }

    /// [`count_trimmed_undelivered`](Self::count_trimmed_undelivered); `just_created` when this
    /// broker has just created the group (what was removed before is not its loss).
    async fn check_trimmed(&self, just_created: bool) -> Result<u64, BrokerError> {
        let mut m = self.mgr();
        let missed: i64 = STREAM_TRIMMED
            .key(self.stream())
            .arg(&self.group)
            .arg(if just_created { "1" } else { "0" })
            .invoke_async(&mut m)
            .await
            .map_err(|e| self.conn.error("count trimmed entries", e))?;
        let missed = missed.max(0) as u64;
        if missed > 0 {
            self.trimmed_undelivered_total.increment(missed);
            tracing::warn!(
                stream = self.stream(),
                group = %self.group,
                lost = missed,
                "entries were trimmed from the stream before the group was delivered them (a producer's MAXLEN or an XTRIM): they are lost; raise --max-len or remove it"
            );
        }
        Ok(missed)
    }

    /// Runs the settle script over retries, dead letters and hand-backs (plus plain acks).
    async fn settle_script(
        &self,
        acks: &[StreamEntryId],
        items: &[(StreamEntryId, &Message, Item<'_>)],
    ) -> Result<u64, BrokerError> {
        let mut m = self.mgr();
        let now = unix_millis(SystemTime::now());
        let mut chunks = items.chunks(SETTLE_SCRIPT_BATCH);
        let mut acks = Some(acks);
        let mut settled = 0;
        loop {
            let chunk = chunks.next();
            let first = acks.take();
            if chunk.is_none() && first.is_none() {
                return Ok(settled);
            }
            let mut inv = STREAM_SETTLE.prepare_invoke();
            inv.key(self.stream())
                .key(&self.scheduled_key)
                .key(&self.dead_letters_key)
                .arg(&self.group)
                .arg(self.dead_letter_cap)
                .arg(if self.delete_on_ack { "1" } else { "0" });
            let first = first.unwrap_or(&[]);
            inv.arg(first.len());
            for id in first {
                inv.arg(*id);
            }
            let chunk = chunk.unwrap_or(&[]);
            for (token, msg, item) in chunk {
                self.push_item(&mut inv, *token, msg, *item, now);
            }
            let (n, too_big): (u64, Vec<Vec<u8>>) = inv
                .invoke_async(&mut m)
                .await
                .map_err(|e| self.conn.error("settle", e))?;
            settled += n;
            for id in too_big.iter().filter_map(|id| StreamEntryId::parse(id)) {
                if let Some((token, msg, item)) = chunk.iter().find(|(t, _, _)| *t == id) {
                    self.settle_by_transaction(&mut m, *token, msg, *item, now)
                        .await?;
                    settled += 1;
                }
            }
        }
    }

    /// Dead-letters or hands back one entry with too many fields for the settle script: its
    /// fields (read back, Pythia's replaced) are added where they go, then the entry is
    /// acknowledged, in one `MULTI` transaction. Unlike the script this is not idempotent: sent
    /// again after a lost reply, the entry is added twice (never lost).
    async fn settle_by_transaction(
        &self,
        m: &mut SharedConnection,
        token: StreamEntryId,
        msg: &Message,
        item: Item<'_>,
        now: u64,
    ) -> Result<(), BrokerError> {
        let found: Vec<(String, Vec<FieldPair>)> = redis::cmd("XRANGE")
            .arg(self.stream())
            .arg(token)
            .arg(token)
            .query_async(m)
            .await
            .map_err(|e| self.conn.error("settle (XRANGE)", e))?;
        let (_, _, set) = self.pythia_fields(token, msg, item, now);
        let mut fields: Vec<FieldPair> = match found.into_iter().next() {
            Some((_, fields)) => fields,
            None => std::iter::once((fields::BODY.as_bytes().to_vec(), msg.body().to_vec()))
                .chain(
                    msg.headers()
                        .iter()
                        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
                )
                .collect(),
        };
        fields.retain(|(k, _)| !set.iter().any(|(name, _)| name.as_bytes() == k));
        fields.extend(
            set.into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes())),
        );
        let mut pipe = redis::pipe();
        pipe.atomic();
        let target = match item {
            Item::DeadLetter { .. } => &self.dead_letters_key,
            _ => self.stream(),
        };
        let mut add = redis::cmd("XADD");
        add.arg(target);
        if matches!(item, Item::DeadLetter { .. }) && self.dead_letter_cap > 0 {
            add.arg("MAXLEN").arg("~").arg(self.dead_letter_cap);
        }
        add.arg("*").arg(&fields);
        pipe.add_command(add).ignore();
        pipe.cmd("XACK")
            .arg(self.stream())
            .arg(&self.group)
            .arg(token)
            .ignore();
        if self.delete_on_ack {
            pipe.cmd("XDEL").arg(self.stream()).arg(token).ignore();
        }
        pipe.query_async::<()>(m)
            .await
            .map_err(|e| self.conn.error("settle (transaction)", e))?;
        tracing::info!(
            entry = %token,
            fields = fields.len(),
            "settled an entry with too many fields for a script by a transaction"
        );
        Ok(())
    }

    /// The operation, the retry delay and Pythia's fields for one settled entry (see
    /// `lua/stream_settle.lua`).
    fn pythia_fields(
        &self,
        token: StreamEntryId,
        msg: &Message,
        item: Item<'_>,
        now: u64,
    ) -> (&'static str, u64, Vec<(&'static str, String)>) {
        let enqueued = msg.enqueued_at().map(unix_millis).unwrap_or(token.ms());
        let (op, delay, attempt, reason) = match item {
            Item::Retry { delay } => ("r", delay, msg.attempt().saturating_add(1), None),
            Item::DeadLetter { reason } => ("d", 0, msg.attempt(), Some(reason)),
            Item::HandBack => ("l", 0, msg.attempt(), None),
        };
        let mut set = vec![
            (fields::ID, msg.id().to_owned()),
            (fields::ATTEMPT, attempt.to_string()),
            (fields::ENQUEUED_AT, enqueued.to_string()),
            (fields::GROUP, self.group.clone()),
        ];
        if let Some(reason) = reason {
            set.push((fields::ERROR, reason.to_owned()));
            set.push((fields::FAILED_AT, now.to_string()));
            set.push((fields::ENTRY_ID, token.to_string()));
        }
        (op, delay, set)
    }

    fn push_item(
        &self,
        inv: &mut ScriptInvocation<'_>,
        token: StreamEntryId,
        msg: &Message,
        item: Item<'_>,
        now: u64,
    ) {
        let (op, delay, set) = self.pythia_fields(token, msg, item, now);
        inv.arg(op).arg(token).arg(delay).arg(set.len());
        for (k, v) in &set {
            inv.arg(*k).arg(v);
        }
        // Stand-ins, used only if the entry is gone from the stream.
        inv.arg(1 + msg.headers().len())
            .arg(fields::BODY)
            .arg(msg.body().as_ref());
        for (k, v) in msg.headers() {
            inv.arg(k).arg(v);
        }
    }

    /// [`Broker::fetch`] with the read blocking up to `block_ms` (`None`: not at all, an empty
    /// batch at once when nothing is new). For the sharded broker, which polls its shards.
    pub(crate) async fn fetch_blocking(
        &self,
        max: usize,
        block_ms: Option<u64>,
    ) -> Result<Vec<Delivery<StreamEntryId>>, BrokerError> {
        self.fetch_batch(max, block_ms)
            .await
            .inspect_err(|e| self.recent.note(e))
    }

    async fn fetch_batch(
        &self,
        max: usize,
        block_ms: Option<u64>,
    ) -> Result<Vec<Delivery<StreamEntryId>>, BrokerError> {
        self.ensure_ready().await?;
        let max = max.clamp(1, MAX_FETCH_BATCH);
        if self.has_unanswered_claims() {
            self.recover_unanswered_claims().await?;
        }
        let reclaimed = self.take_reclaimed(max);
        if !reclaimed.is_empty() {
            return Ok(reclaimed);
        }
        if self.recovering.load(Ordering::Acquire) {
            let recovered = self.recover_lost_reply(max).await?;
            if !recovered.is_empty() || self.recovering.load(Ordering::Acquire) {
                return Ok(recovered);
            }
        }
        for _ in 0..SKIP_ROUNDS {
            let batch = self.read_group(max, ReadFrom::New(block_ms)).await?;
            if let Some(last) = batch.last {
                *self.read_mark.lock().expect("read mark lock") = last;
            }
            self.ack_ids(&batch.to_ack).await?;
            if !batch.deliveries.is_empty() || batch.to_ack.is_empty() {
                return Ok(batch.deliveries);
            }
        }
        Ok(Vec::new())
    }

    /// [`Broker::settle`] of `(token, message, outcome)` triples, so that the sharded broker
    /// settles a shard's part of a batch without copying the messages.
    pub(crate) async fn settle_refs(
        &self,
        batch: &[(StreamEntryId, &Message, &Outcome)],
    ) -> Result<(), BrokerError> {
        let settled = self
            .settle_now(batch)
            .await
            .inspect_err(|e| self.recent.note(e))?;
        let not_owned = (batch.len() as u64).saturating_sub(settled);
        if not_owned > 0 {
            self.not_owned.note(not_owned, &self.consumer);
        }
        self.recent.record_refs(batch.iter().copied());
        Ok(())
    }

    /// After a connection error (once the connection works again): sends the recent
    /// settlements again (the settle script and XACK are idempotent), so that acks a failover
    /// lost do not leave processed entries pending for this live consumer, where nothing
    /// claims them (see `recent_settlements`).
    async fn resend_recent(&self) -> Result<(), BrokerError> {
        let Some((acks, others)) = self.recent.to_resend() else {
            return Ok(());
        };
        let refs: Vec<_> = others
            .iter()
            .map(|s| (s.token, &s.message, &s.outcome))
            .collect();
        let mut sent = Ok(0);
        for chunk in acks.chunks(10_000) {
            sent = self.ack_ids(chunk).await;
            if sent.is_err() {
                break;
            }
        }
        if sent.is_ok() {
            sent = self.settle_now(&refs).await;
        }
        if sent.is_err() {
            self.recent.suspect();
        }
        sent.map(drop)
    }

    /// Settles `batch`; returns how many of its entries were still pending in the group.
    async fn settle_now(
        &self,
        batch: &[(StreamEntryId, &Message, &Outcome)],
    ) -> Result<u64, BrokerError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let settled = if batch.iter().all(|s| *s.2 == Outcome::Ack) {
            let ids: Vec<StreamEntryId> = batch.iter().map(|s| s.0).collect();
            self.ack_ids(&ids).await?
        } else {
            let mut acks = Vec::new();
            let mut items = Vec::new();
            for &(token, message, outcome) in batch {
                match outcome {
                    Outcome::Retry { delay } => {
                        let delay = delay_ms(*delay);
                        items.push((token, message, Item::Retry { delay }));
                    }
                    Outcome::DeadLetter { reason } => {
                        items.push((token, message, Item::DeadLetter { reason }));
                    }
                    Outcome::Ack => acks.push(token),
                }
            }
            self.settle_script(&acks, &items).await?
        };
        self.forget_reclaimed(batch.iter().map(|s| s.0));
        Ok(settled)
    }

    /// Acks deliveries and adds them again as new entries for this group, unchanged.
    async fn hand_back(&self, batch: &[Delivery<StreamEntryId>]) -> Result<(), BrokerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let items: Vec<_> = batch
            .iter()
            .map(|d| (d.token, &d.message, Item::HandBack))
            .collect();
        self.settle_script(&[], &items).await.map(drop)
    }
}

/// What the settle script does with one entry besides acking it.
#[derive(Clone, Copy)]
enum Item<'a> {
    /// Due after this many milliseconds (on the server's clock).
    Retry {
        delay: u64,
    },
    DeadLetter {
        reason: &'a str,
    },
    HandBack,
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
        let (pending, undelivered, scheduled): (i64, i64, i64) = STREAM_DRAINED
            .key(self.stream())
            .key(&self.scheduled_key)
            .arg(&self.group)
            .invoke_async(&mut m)
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
        Some(self.liveness.interval())
    }

    /// Depth: entries not yet delivered to the group (its lag; counted up to 10,000 when Redis
    /// does not know it); in flight: pending for any consumer of the group; oldest age: of the
    /// next entry to deliver, by its id.
    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        let mut m = self.mgr();
        let (depth, pending, consumers, next, scheduled, dead): (u64, u64, u64, String, u64, u64) =
            STREAM_STATS
                .key(self.stream())
                .key(&self.scheduled_key)
                .key(&self.dead_letters_key)
                .arg(&self.group)
                .arg(DEPTH_COUNT_LIMIT)
                .invoke_async(&mut m)
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
        if !self.registered.load(Ordering::Acquire) {
            return handed_back;
        }
        let mut m = self.mgr();
        redis::cmd("DEL")
            .arg(&self.heartbeat_key)
            .query_async::<()>(&mut m)
            .await
            .map_err(|e| self.conn.error("close", e))?;
        self.registered.store(false, Ordering::Release);
        let left: i64 = STREAM_LEAVE
            .key(self.stream())
            .key(&self.consumers_key)
            .arg(&self.group)
            .arg(&self.consumer)
            .invoke_async(&mut m)
            .await
            .map_err(|e| self.conn.error("leave group", e))?;
        if left == 0 {
            tracing::warn!(consumer = %self.consumer, "left entries pending on shutdown; the other consumers reclaim them now");
        }
        handed_back
    }
}

/// Decodes a stream entry read by other means (`XRANGE`, a dead-letter stream) the way a
/// [`StreamBroker`] does: see the [module docs](self).
///
/// ```
/// use pythia_core::Source;
/// use pythia_redis::stream::message_from_entry;
///
/// let fields = vec![
///     (b"body".to_vec(), b"hello".to_vec()),
///     (b"header_tenant".to_vec(), b"acme".to_vec()),
///     (b"pythia-attempt".to_vec(), b"2".to_vec()),
/// ];
/// let msg = message_from_entry("1700000000000-0", fields, &Source::new("stream", "jobs"));
/// assert_eq!(msg.body().as_ref(), b"hello");
/// assert_eq!(msg.header("tenant"), Some("acme"));
/// assert_eq!((msg.id(), msg.attempt()), ("1700000000000-0", 2));
/// ```
pub fn message_from_entry(id: &str, fields: Vec<(Vec<u8>, Vec<u8>)>, source: &Source) -> Message {
    let entry = StreamEntryId::parse(id.as_bytes()).unwrap_or_default();
    decode_fields(
        entry,
        id.as_bytes().to_vec(),
        fields.into_iter(),
        None,
        source,
        0,
    )
    .expect("no group filter, so never skipped")
}

/// **Benchmark hook, not API** (used by `benches/stream_reply.rs`; may change or go away):
/// decodes a one-stream `XREADGROUP` reply for consumer group `group` exactly as the broker
/// does (the same function). Returns the deliveries and the number of entries that would be
/// acked without being delivered.
#[doc(hidden)]
pub fn decode_read_reply_for_bench(
    reply: Value,
    group: &str,
    source: &Source,
) -> (Vec<Delivery<StreamEntryId>>, usize) {
    let batch = decode_read_reply(reply, group, source);
    (batch.deliveries, batch.to_ack.len())
}

/// Decodes an `XREADGROUP` reply for consumer group `group`: the deliveries, the entries to ack
/// without delivering (deleted while pending, or marked for another group), and the last id.
fn decode_read_reply(reply: Value, group: &str, source: &Source) -> ReadBatch {
    let entries = reply_entries(reply);
    let mut batch = ReadBatch {
        deliveries: Vec::with_capacity(entries.len()),
        to_ack: Vec::new(),
        last: None,
    };
    for entry in entries {
        let Some((id_bytes, fields)) = split_entry(entry) else {
            continue;
        };
        let Some(id) = StreamEntryId::parse(&id_bytes) else {
            continue;
        };
        batch.last = Some(id);
        let Some(fields) = fields else {
            // Deleted while pending: nothing left to deliver.
            batch.to_ack.push(id);
            continue;
        };
        match decode_fields(
            id,
            id_bytes,
            FieldPairs::new(fields),
            Some(group),
            source,
            0,
        ) {
            Some(msg) => batch.deliveries.push(Delivery::new(id, msg)),
            None => batch.to_ack.push(id),
        }
    }
    batch
}

/// Builds the message of one entry; `None` when the entry is marked for another group.
/// `extra_attempts` counts deliveries that ended with a dead consumer.
fn decode_fields(
    id: StreamEntryId,
    id_bytes: Vec<u8>,
    fields: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    group: Option<&str>,
    source: &Source,
    extra_attempts: u32,
) -> Option<Message> {
    let mut body = None;
    let mut pythia_id = None;
    let mut attempt = 1u32;
    let mut enqueued_ms = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (mut k, v) in fields {
        if k == fields::BODY.as_bytes() {
            body = Some(v);
            continue;
        }
        if let Some(name) = k.strip_prefix(fields::RESERVED_PREFIX.as_bytes()) {
            match name {
                b"id" => pythia_id = String::from_utf8(v).ok(),
                b"attempt" => {
                    attempt = parse_u64(&v)
                        .map(|a| a.clamp(1, u64::from(u32::MAX)) as u32)
                        .unwrap_or(1);
                }
                b"enqueued-at" => enqueued_ms = parse_u64(&v),
                b"group" => {
                    if let Some(g) = group
                        && v != g.as_bytes()
                    {
                        return None;
                    }
                }
                _ => {}
            }
            continue;
        }
        let prefix = fields::PYTHON_HEADER_PREFIX.len();
        if k.len() > prefix && k.starts_with(fields::PYTHON_HEADER_PREFIX.as_bytes()) {
            k.drain(..prefix);
        }
        headers.push((into_string(k), into_string(v)));
    }
    let body: Bytes = match body {
        Some(b) => b.into(),
        None => {
            // No body field: the fields are the payload.
            let object: serde_json::Map<String, serde_json::Value> = headers
                .drain(..)
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            serde_json::to_vec(&object)
                .expect("serialising strings cannot fail")
                .into()
        }
    };
    let enqueued = UNIX_EPOCH + Duration::from_millis(enqueued_ms.unwrap_or(id.ms()));
    // Built from its parts: `Message::new` would make an id and read the clock only to have
    // both replaced (about half of the decode time per entry).
    let mut msg = Message::from_parts(body, Some(enqueued), source.clone())
        .with_id(pythia_id.unwrap_or_else(|| into_string(id_bytes)));
    let attempt = attempt.saturating_add(extra_attempts);
    if attempt != 1 {
        msg = msg.with_attempt(attempt);
    }
    if !headers.is_empty() {
        msg = msg.with_headers(headers.into_iter().collect::<Headers>());
    }
    Some(msg)
}

/// The (id, delivery count) of one row of an extended `XPENDING` reply
/// (`[id, consumer, idle ms, delivery count]`).
fn pending_row(row: Value) -> Option<(StreamEntryId, u64)> {
    let Value::Array(parts) = row else {
        return None;
    };
    let mut parts = parts.into_iter();
    let id = StreamEntryId::parse(&value_bytes(parts.next()?)?)?;
    let count = as_int(parts.nth(2)?)?;
    Some((id, count.max(0) as u64))
}

/// The rows of an extended `XPENDING` reply.
fn pending_rows(reply: Value) -> Vec<(StreamEntryId, u64)> {
    match reply {
        Value::Array(rows) => rows.into_iter().filter_map(pending_row).collect(),
        _ => Vec::new(),
    }
}

fn into_string(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

fn as_int(v: Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(i),
        other => value_bytes(other)
            .and_then(|b| parse_u64(&b))
            .map(|u| u as i64),
    }
}

fn value_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        _ => None,
    }
}

/// The `[id, fields]` entries of a one-stream `XREADGROUP` reply (RESP2 array or RESP3 map).
fn reply_entries(reply: Value) -> Vec<Value> {
    let entries = match reply {
        Value::Array(streams) => streams.into_iter().next().and_then(|s| match s {
            Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
            _ => None,
        }),
        Value::Map(streams) => streams.into_iter().next().map(|(_, e)| e),
        _ => None,
    };
    match entries {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    }
}

/// Splits an entry into its id and its fields (`None` when the entry was deleted).
fn split_entry(entry: Value) -> Option<(Vec<u8>, Option<FieldList>)> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop().expect("two parts");
    let id = value_bytes(parts.pop().expect("two parts"))?;
    let fields = match fields {
        Value::Array(flat) => Some(FieldList::Flat(flat)),
        Value::Map(pairs) => Some(FieldList::Map(pairs)),
        _ => None,
    };
    Some((id, fields))
}

/// An entry's fields as the server sent them.
enum FieldList {
    Flat(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

impl From<Vec<Value>> for FieldList {
    fn from(flat: Vec<Value>) -> Self {
        Self::Flat(flat)
    }
}

/// Field/value byte pairs of an entry, moved out of the reply without copying.
enum FieldPairs {
    Flat(std::vec::IntoIter<Value>),
    Map(std::vec::IntoIter<(Value, Value)>),
}

impl FieldPairs {
    fn new(fields: impl Into<FieldList>) -> Self {
        match fields.into() {
            FieldList::Flat(v) => Self::Flat(v.into_iter()),
            FieldList::Map(v) => Self::Map(v.into_iter()),
        }
    }
}

impl Iterator for FieldPairs {
    type Item = (Vec<u8>, Vec<u8>);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (k, v) = match self {
                Self::Flat(it) => (it.next()?, it.next()?),
                Self::Map(it) => it.next()?,
            };
            if let (Some(k), Some(v)) = (value_bytes(k), value_bytes(v)) {
                return Some((k, v));
            }
        }
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
