//! The detailed, typed view of one queue — what `pythia inspect` prints and the dashboard's
//! queue page shows: [`QueueInspection`], built by [`inspect_queue`], [`inspect_sharded`] and
//! [`inspect_channels`].
//!
//! Where [`QueueReport`](super::QueueReport) is one row per queue (`pythia queues`, the
//! dashboard's overview), an inspection goes down to each consumer: a list's registered
//! consumers with their in-flight and staged messages and heartbeat, a stream's groups with
//! their lag, pending entries and consumers, a sharded stream's shards, a channel's
//! subscribers; and the memory Redis spends on the queue and on Pythia's keys for it.
//!
//! The numbers come from the brokers' own [`stats`](pythia_core::Broker::stats) where they
//! have them (a list's depth, retries, dead letters, oldest message), the key names from
//! [`QueueKeys`].
//!
//! # Serialisation
//!
//! Every type is [`Serialize`](serde::Serialize): the JSON of an inspection is the document
//! of `pythia inspect --json` and of the dashboard's `GET /api/queues/<queue>`. Field names
//! are part of that contract; `null` stands for "unknown" (the server refused `MEMORY
//! USAGE`, a heartbeat without expiry, …).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(conn: &pythia_redis::RedisConnection) -> Result<(), Box<dyn std::error::Error>> {
//! use pythia_redis::queues::inspect::{InspectOptions, QueueInspection, inspect_queue};
//!
//! match inspect_queue(conn, "jobs", &InspectOptions::new()).await? {
//!     QueueInspection::List(list) => {
//!         for c in &list.consumers {
//!             println!("{}: {} in flight, alive: {}", c.name, c.in_flight, c.alive);
//!         }
//!     }
//!     QueueInspection::Stream(stream) => println!("{} groups", stream.groups.len()),
//!     other => println!("{}", serde_json::to_string(&other)?),
//! }
//! # Ok(()) }
//! ```

mod error;
mod list;
mod model;
mod pubsub;
mod stream;

use std::time::SystemTime;

use pythia_core::BrokerError;

use super::counters::{DailyCounts, utc_day};
use super::registry::QueueKind;
use super::report::stored_layout;
use crate::connection::RedisConnection;
use crate::dlq::DeadLetterQueue;
use crate::gate::is_paused;
use crate::keys::QueueKeys;
use crate::list::ListSide;
use crate::sharded_stream::ShardedQueue;

pub use error::InspectError;
pub use model::{
    ChannelReport, ConsumerReport, GroupConsumerReport, GroupInspection, Heartbeat, ListInspection,
    MemoryUsage, PubsubInspection, QueueInspection, ShardLayout, ShardedGroupReport,
    ShardedInspection, StreamInspection,
};
pub use pubsub::inspect_channels;
pub use stream::inspect_sharded;

/// What [`inspect_queue`] looks at: the kind of the queue (else read from its key), the end
/// of a list consumers pop, and one consumer group of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectOptions {
    kind: Option<QueueKind>,
    side: ListSide,
    group: Option<String>,
}

impl InspectOptions {
    /// The kind read from the key, the right end of a list, every group.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Inspects the queue as this kind instead of reading it from the key (the key must
    /// then have the matching type, or not exist).
    #[must_use]
    pub fn with_kind(mut self, kind: QueueKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// The end of a list consumers pop: decides which message is the oldest.
    #[must_use]
    pub fn with_side(mut self, side: ListSide) -> Self {
        self.side = side;
        self
    }

    /// Only this consumer group of a stream ([`InspectError::NoSuchGroup`] when it has none).
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

/// Inspects `queue`; its kind from the options, else from its key ([`detect_kind`]).
///
/// A list or a stream also gets its pause flag and today's counts. A
/// [`ShardedStream`](QueueKind::ShardedStream) is inspected with the shard count its stored
/// layout holds; a [`Pubsub`](QueueKind::Pubsub) channel as [`inspect_channels`] of it.
pub async fn inspect_queue(
    conn: &RedisConnection,
    queue: &str,
    options: &InspectOptions,
) -> Result<QueueInspection, InspectError> {
    let kind = match options.kind {
        Some(k) => k,
        None => detect_kind(conn, queue).await?,
    };
    let group = options.group.as_deref();
    let mut inspection = match kind {
        QueueKind::Pubsub => {
            return Ok(QueueInspection::Pubsub(
                inspect_channels(conn, &[queue.to_owned()]).await?,
            ));
        }
        QueueKind::ShardedStream => {
            let sharded = stored_sharded_queue(conn, queue).await?;
            return Ok(QueueInspection::Sharded(
                inspect_sharded(conn, &sharded, group).await?,
            ));
        }
        QueueKind::Stream => QueueInspection::Stream(stream::inspect(conn, queue, group).await?),
        _ => QueueInspection::List(list::inspect(conn, queue, kind, options.side).await?),
    };
    // The pause flag and today's counters, as `pythia queues` reads them.
    let paused = is_paused(conn, queue).await?;
    let today = DailyCounts::read(conn, queue, &utc_day(SystemTime::now())).await?;
    match &mut inspection {
        QueueInspection::List(l) => {
            l.paused = paused;
            l.today = today;
        }
        QueueInspection::Stream(s) => {
            s.paused = Some(paused);
            s.today = Some(today);
        }
        _ => {}
    }
    Ok(inspection)
}

/// The kind of a queue from its key: a stream is a [`Stream`](QueueKind::Stream); a list (or
/// no key) a [`ReliableList`](QueueKind::ReliableList) when consumers are registered for it,
/// else a [`List`](QueueKind::List); any other type is [`InspectError::WrongType`].
pub async fn detect_kind(conn: &RedisConnection, queue: &str) -> Result<QueueKind, InspectError> {
    match key_type(conn, queue).await?.as_str() {
        "stream" => Ok(QueueKind::Stream),
        "list" | "none" => {
            let keys = QueueKeys::new(conn.config().key_prefix(), queue);
            let mut m = conn.manager();
            let consumers: u64 = redis::cmd("SCARD")
                .arg(keys.consumers())
                .query_async(&mut m)
                .await
                .map_err(|e| conn.error("SCARD", e))?;
            Ok(if consumers > 0 {
                QueueKind::ReliableList
            } else {
                QueueKind::List
            })
        }
        other => Err(InspectError::WrongType {
            key: queue.to_owned(),
            found: other.to_owned(),
            expected: "queue (a list or a stream)",
        }),
    }
}

/// The dead letters of `queue`, its kind read from its keys: a stream's (the queue or, once
/// it is gone, its dead letters are a stream), a list's (popped at `side`), and the kind (`None`
/// when neither key exists: a drained list or a channel, opened as a list). A key of another
/// type is [`InspectError::WrongType`].
pub async fn dead_letters_of(
    conn: &RedisConnection,
    queue: &str,
    side: ListSide,
) -> Result<(DeadLetterQueue, Option<QueueKind>), InspectError> {
    let dlq_key = QueueKeys::new(conn.config().key_prefix(), queue).dead_letters();
    let kind = match (
        key_type(conn, queue).await?.as_str(),
        key_type(conn, &dlq_key).await?.as_str(),
    ) {
        ("stream", _) | ("none", "stream") => Some(QueueKind::Stream),
        ("list", _) => Some(QueueKind::List),
        ("none", _) => None,
        (other, _) => {
            return Err(InspectError::WrongType {
                key: queue.to_owned(),
                found: other.to_owned(),
                expected: "queue (a list or a stream)",
            });
        }
    };
    let dlq = match kind {
        Some(QueueKind::Stream) => DeadLetterQueue::stream(conn, queue),
        _ => DeadLetterQueue::list(conn, queue).with_side(side),
    };
    Ok((dlq, kind))
}

/// The sharded queue `queue` as its stored layout describes it.
async fn stored_sharded_queue(
    conn: &RedisConnection,
    queue: &str,
) -> Result<ShardedQueue, InspectError> {
    let stored = stored_layout(conn, queue).await?;
    let shards = stored.as_deref().map_or(0, |s| s.lines().count());
    if shards == 0 {
        return Err(BrokerError::config(format!(
            "no shard layout stored for the sharded queue {queue:?}: give its shard count"
        ))
        .into());
    }
    Ok(ShardedQueue::new(queue, shards)?)
}

/// The Redis type of `key` (`none` when it does not exist).
async fn key_type(conn: &RedisConnection, key: &str) -> Result<String, BrokerError> {
    let mut m = conn.manager();
    redis::cmd("TYPE")
        .arg(key)
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("TYPE", e))
}

/// Fails with [`InspectError::WrongType`] when `key` exists with another type than `want`.
async fn check_type(
    conn: &RedisConnection,
    key: &str,
    want: &'static str,
) -> Result<(), InspectError> {
    match key_type(conn, key).await?.as_str() {
        "none" => Ok(()),
        t if t == want => Ok(()),
        other => Err(InspectError::WrongType {
            key: key.to_owned(),
            found: other.to_owned(),
            expected: want,
        }),
    }
}

/// `MEMORY USAGE` of the queue key and the sum over Pythia's keys `own` (missing keys count
/// 0); unknown when the server refuses `MEMORY USAGE`.
async fn memory(conn: &RedisConnection, queue: &str, own: &[String]) -> MemoryUsage {
    let mut pipe = redis::pipe();
    for k in std::iter::once(queue).chain(own.iter().map(String::as_str)) {
        pipe.cmd("MEMORY").arg("USAGE").arg(k);
    }
    let mut m = conn.manager();
    match pipe.query_async::<Vec<Option<u64>>>(&mut m).await {
        Ok(sizes) => MemoryUsage {
            queue: Some(sizes[0].unwrap_or(0)),
            pythia_keys: Some(sizes[1..].iter().flatten().sum()),
        },
        Err(e) => {
            tracing::warn!("MEMORY USAGE failed: {e}");
            MemoryUsage::default()
        }
    }
}
