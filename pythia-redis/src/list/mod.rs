//! [`ListBroker`]: a plain Redis list, popped in batches. At-most-once and the fastest mode.

mod commands;
pub mod producer;
pub mod reliable;

pub use self::commands::{ListCommands, ReliableListCommands};

use std::time::{Duration, Instant};

use crate::client_metrics::Op;

use crate::connection::{BlockingSlot, SharedConnection};
use bytes::Bytes;
use pythia_core::{
    Broker, BrokerError, Delivery, DeliveryGuarantee, QueueStats, Settlement, Source, envelope,
};

use crate::connection::RedisConnection;
use crate::consumer::retry_schedule::{DeadLetterCap, promote_due};
use crate::keys::QueueKeys;
use crate::queues::registry::{QueueKind, Registration};

/// Which end of the list consumers pop. Producers push on the other end, so the order is
/// first-in first-out either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ListSide {
    /// Pop the right end (`RPOP`/`BRPOP`); producers `LPUSH`. Sidekiq's convention. The default.
    #[default]
    Right,
    /// Pop the left end (`LPOP`/`BLPOP`); producers `RPUSH`. The Python `pythia-framework`'s
    /// and RQ's convention.
    Left,
}

impl ListSide {
    /// `"L"` or `"R"`: the end consumers pop, as the Lua scripts take it.
    pub(crate) fn pop_flag(self) -> &'static str {
        match self {
            Self::Right => "R",
            Self::Left => "L",
        }
    }

    /// `"L"` or `"R"`: the end producers push.
    pub(crate) fn push_flag(self) -> &'static str {
        match self {
            Self::Right => "L",
            Self::Left => "R",
        }
    }

    /// The pop command: `RPOP` or `LPOP`.
    pub(crate) fn pop_cmd(self) -> &'static str {
        match self {
            Self::Right => "RPOP",
            Self::Left => "LPOP",
        }
    }

    /// The blocking pop command: `BRPOP` or `BLPOP`.
    pub(crate) fn blocking_pop(self) -> &'static str {
        match self {
            Self::Right => "BRPOP",
            Self::Left => "BLPOP",
        }
    }

    /// `"RIGHT"` or `"LEFT"`: the end consumers pop, as `LMOVE`/`BLMOVE` take it.
    pub(crate) fn end(self) -> &'static str {
        match self {
            Self::Right => "RIGHT",
            Self::Left => "LEFT",
        }
    }

    /// The push command producers use: `LPUSH` or `RPUSH`.
    pub fn push_cmd(self) -> &'static str {
        match self {
            Self::Right => "LPUSH",
            Self::Left => "RPUSH",
        }
    }

    /// The command that puts an item back at the front: `RPUSH` or `LPUSH`.
    pub(crate) fn front_push_cmd(self) -> &'static str {
        match self {
            Self::Right => "RPUSH",
            Self::Left => "LPUSH",
        }
    }

    /// `"right"` or `"left"`, as configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Right => "right",
            Self::Left => "left",
        }
    }
}

impl std::str::FromStr for ListSide {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        match s.to_ascii_lowercase().as_str() {
            "right" | "r" => Ok(Self::Right),
            "left" | "l" => Ok(Self::Left),
            other => Err(BrokerError::config(format!(
                "invalid list side {other:?}: expected \"right\" or \"left\""
            ))),
        }
    }
}

/// Consumes a Redis list with `RPOP key count` (or `LPOP`), blocking with `BRPOP` on its own
/// connection when the list is empty.
///
/// # Delivery guarantee: at-most-once
///
/// An item is removed from Redis when it is popped. If the worker process dies before the
/// handler finishes, that item is **lost**. Use [`ReliableListBroker`](crate::ReliableListBroker)
/// or [`StreamBroker`-style brokers] when a message must survive a crash.
///
/// Within a live process nothing is lost: failed messages are scheduled for retry in Redis
/// (a sorted set promoted back to the queue when due), dead letters go to
/// `<prefix>:{queue}:dlq`, and on graceful shutdown unprocessed items go back to the front.
///
/// [`StreamBroker`-style brokers]: crate
///
/// ```no_run
/// use pythia_redis::{ListBroker, ListSide, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let broker = ListBroker::new(&conn, "jobs").with_side(ListSide::Right);
/// # let _ = broker; Ok(()) }
/// ```
#[derive(Debug)]
pub struct ListBroker {
    conn: RedisConnection,
    manager: SharedConnection,
    keys: QueueKeys,
    source: Source,
    side: ListSide,
    dead_letter_cap: DeadLetterCap,
    commands: ListCommands,
    maintenance_interval: Duration,
    blocking: BlockingSlot,
    registration: Registration,
}

impl ListBroker {
    /// Default interval between promotions of due retries: 500 ms.
    pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_millis(500);

    /// A broker consuming the list `queue` (popping the right end).
    pub fn new(conn: &RedisConnection, queue: &str) -> Self {
        let keys = QueueKeys::new(conn.config().key_prefix(), queue);
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            commands: ListCommands::new(&keys),
            keys,
            source: Source::new("list", queue),
            side: ListSide::default(),
            dead_letter_cap: DeadLetterCap::new(queue),
            maintenance_interval: Self::DEFAULT_MAINTENANCE_INTERVAL,
            blocking: BlockingSlot::default(),
            registration: Registration::broker(conn, queue, QueueKind::List),
        }
    }

    /// Which end to pop.
    #[must_use]
    pub fn with_side(mut self, side: ListSide) -> Self {
        self.side = side;
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

    /// How often due retries are promoted (50 ms to 60 s).
    #[must_use]
    pub fn with_maintenance_interval(mut self, d: Duration) -> Self {
        self.maintenance_interval = d.clamp(Duration::from_millis(50), Duration::from_secs(60));
        self
    }

    /// The keys this broker uses.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    fn deliveries(&self, items: Vec<Vec<u8>>) -> Vec<Delivery<()>> {
        items
            .into_iter()
            .map(|raw| Delivery::new((), envelope::decode(Bytes::from(raw), &self.source)))
            .collect()
    }

    async fn blocking_pop(&self) -> Result<Option<Vec<u8>>, BrokerError> {
        let timeout = self.conn.config().block_timeout().as_secs_f64();
        self.blocking
            .query::<Option<(String, Vec<u8>)>>(
                &self.conn,
                &self.commands.blocking_pop(self.side, timeout),
            )
            .await?
            .map(|v| v.map(|(_, item)| item))
            .map_err(|e| self.conn.error(self.side.blocking_pop(), e))
    }
}

impl ListBroker {
    /// Pops up to `max` items without waiting (`LPOP key count`).
    async fn pop_ready(&self, max: usize) -> Result<Vec<Vec<u8>>, BrokerError> {
        let mut m = self.manager.clone();
        let started = Instant::now();
        let items: Result<Option<Vec<Vec<u8>>>, _> = redis::cmd(self.side.pop_cmd())
            .arg(self.keys.queue())
            .arg(max.max(1))
            .query_async(&mut m)
            .await;
        self.conn.client_metrics().observe(Op::Fetch, started);
        let items = items.map_err(|e| self.conn.error(self.side.pop_cmd(), e))?;
        Ok(items.unwrap_or_default())
    }
}

impl Broker for ListBroker {
    type Token = ();

    fn guarantee(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtMostOnce
    }

    fn source(&self) -> &Source {
        &self.source
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<()>>, BrokerError> {
        let items = self.pop_ready(max).await?;
        if !items.is_empty() {
            return Ok(self.deliveries(items));
        }
        Ok(self.deliveries(self.blocking_pop().await?.into_iter().collect()))
    }

    async fn try_fetch(&self, max: usize) -> Result<Vec<Delivery<()>>, BrokerError> {
        let items = self.pop_ready(max).await?;
        Ok(self.deliveries(items))
    }

    async fn settle(&self, batch: &[Settlement<()>]) -> Result<(), BrokerError> {
        let Some(call) = self.commands.settle(batch, self.dead_letter_cap.get()) else {
            return Ok(()); // acks of popped items need no round trip
        };
        let mut m = self.manager.clone();
        let started = Instant::now();
        let settled = call.query(&mut m).await;
        self.conn.client_metrics().observe(Op::Settle, started);
        let (_, trimmed): (u64, u64) = settled.map_err(|e| self.conn.error("settle", e))?;
        self.dead_letter_cap.trimmed(trimmed);
        Ok(())
    }

    /// Unprocessed messages go back to the front, as envelopes (a raw item comes back with its
    /// body untouched and the id it was given).
    async fn release(&self, batch: Vec<Delivery<()>>) -> Result<(), BrokerError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Back to the front, first one last, so the first is popped next.
        let items: Vec<Vec<u8>> = batch
            .iter()
            .rev()
            .map(|d| envelope::encode(&d.message))
            .collect();
        let mut m = self.manager.clone();
        redis::cmd(self.side.front_push_cmd())
            .arg(self.keys.queue())
            .arg(&items)
            .query_async::<()>(&mut m)
            .await
            .map_err(|e| self.conn.error("release", e))
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        let mut m = self.manager.clone();
        let (len, scheduled): (u64, u64) = redis::pipe()
            .llen(self.keys.queue())
            .zcard(self.keys.scheduled())
            .query_async(&mut m)
            .await
            .map_err(|e| self.conn.error("drain check", e))?;
        Ok(len == 0 && scheduled == 0)
    }

    async fn maintain(&self) -> Result<(), BrokerError> {
        self.registration.ensure_in_background(&self.conn);
        let mut m = self.manager.clone();
        promote_due(&self.conn, &mut m, &self.keys, self.side).await?;
        Ok(())
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        Some(self.maintenance_interval)
    }

    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        list_stats(&self.conn, &self.keys, self.side, &self.source)
            .await
            .map(Some)
    }
}

/// Depth, scheduled retries, dead letters and the age of the next item of a list queue.
pub(crate) async fn list_stats(
    conn: &RedisConnection,
    keys: &QueueKeys,
    side: ListSide,
    source: &Source,
) -> Result<QueueStats, BrokerError> {
    let next_index: isize = match side {
        ListSide::Right => -1,
        ListSide::Left => 0,
    };
    conn.sample_memory().await;
    let mut m = conn.manager();
    let (depth, scheduled, dead, next): (u64, u64, u64, Option<Vec<u8>>) = redis::pipe()
        .llen(keys.queue())
        .zcard(keys.scheduled())
        .llen(keys.dead_letters())
        .lindex(keys.queue(), next_index)
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("stats", e))?;
    let mut stats = QueueStats::default();
    stats.depth = depth;
    stats.scheduled = scheduled;
    stats.dead_letters = dead;
    stats.oldest_age = next.and_then(|raw| envelope::decode(raw.into(), source).age());
    Ok(stats)
}
