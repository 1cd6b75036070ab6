//! The typed report of a queue — what `pythia queues`, `pythia inspect` and the dashboard show —
//! built from the brokers' own [`stats`](pythia_core::Broker::stats), the registry, the pause
//! flag and the daily counters.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures_util::future::try_join_all;
use pythia_core::{Broker, BrokerError, QueueStats};
use redis::streams::{StreamInfoGroup, StreamInfoGroupsReply};
use serde::Serialize;

use super::counters::{DailyCounts, utc_day};
use super::registry::{QueueKind, registered_queues};
use crate::connection::RedisConnection;
use crate::gate::is_paused;
use crate::keys::QueueKeys;
use crate::{DeadLetterQueue, ListBroker, ReliableListBroker, StreamBroker};

/// One queue, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueReport {
    /// The queue's name (list, stream or channel key; a sharded queue's logical name).
    pub name: String,
    /// Its kind: from the registry, else read from the key.
    pub kind: QueueKind,
    /// Whether a producer or broker wrote it in the registry.
    pub registered: bool,
    /// Messages waiting: list length, a stream's lag summed over its groups (its length when
    /// it has no group).
    pub depth: u64,
    /// Messages delivered and not settled: reliable-list in-flight, stream pending entries.
    pub in_flight: u64,
    /// Retries and delayed messages waiting for their time.
    pub scheduled: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Consumers registered (a stream: over all its groups).
    pub consumers: u64,
    /// Age of the oldest message waiting, in seconds, when known.
    pub oldest_age_seconds: Option<f64>,
    /// Whether the queue is paused ([`is_paused`]).
    pub paused: bool,
    /// The UTC day the counters are of (`YYYY-MM-DD`).
    pub day: String,
    /// Today's processed / failed / retried counts.
    pub today: DailyCounts,
    /// A stream's consumer groups (a sharded stream's summed over its shards); empty otherwise.
    pub groups: Vec<GroupReport>,
}

/// One consumer group of a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GroupReport {
    /// The group's name.
    pub name: String,
    /// Entries not yet delivered to the group (its lag).
    pub depth: u64,
    /// Entries delivered and not acknowledged.
    pub in_flight: u64,
    /// Pythia consumers of the group.
    pub consumers: u64,
    /// Age of the next entry to deliver, in seconds.
    pub oldest_age_seconds: Option<f64>,
}

/// The report of every registered queue under the connection's key prefix, and of each of
/// `also` (names known otherwise, e.g. found among Pythia's keys), sorted by name.
pub async fn queue_reports(
    conn: &RedisConnection,
    also: &[String],
) -> Result<Vec<QueueReport>, BrokerError> {
    let mut names: BTreeMap<String, Option<QueueKind>> = registered_queues(conn)
        .await?
        .into_iter()
        .map(|(n, k)| (n, Some(k)))
        .collect();
    for n in also {
        names.entry(n.clone()).or_insert(None);
    }
    // One report's round trips do not wait for another's (the multiplexed connection
    // pipelines them); the order stays the names'.
    try_join_all(names.iter().map(|(name, kind)| report(conn, name, *kind))).await
}

/// The report of one queue; its kind from the registry, else read from its key.
pub async fn queue_report(conn: &RedisConnection, queue: &str) -> Result<QueueReport, BrokerError> {
    let mut m = conn.manager();
    let kind: Option<String> = redis::cmd("HGET")
        .arg(crate::keys::registry(conn.config().key_prefix()))
        .arg(queue)
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("HGET queues", e))?;
    report(conn, queue, kind.and_then(|k| k.parse().ok())).await
}

async fn report(
    conn: &RedisConnection,
    name: &str,
    registered: Option<QueueKind>,
) -> Result<QueueReport, BrokerError> {
    let kind = match registered {
        Some(k) => k,
        None => detect(conn, name).await?,
    };
    let day = utc_day(SystemTime::now());
    // The stats, the pause flag and today's counts are independent reads: sent together.
    let ((stats, groups), paused, today) = tokio::try_join!(
        kind_stats(conn, name, kind),
        is_paused(conn, name),
        DailyCounts::read(conn, name, &day),
    )?;
    Ok(QueueReport {
        name: name.to_owned(),
        kind,
        registered: registered.is_some(),
        depth: stats.depth,
        in_flight: stats.in_flight,
        scheduled: stats.scheduled,
        dead_letters: stats.dead_letters,
        consumers: stats.consumers,
        oldest_age_seconds: stats.oldest_age.map(|d| d.as_secs_f64()),
        paused,
        today,
        day,
        groups,
    })
}

/// The numbers of a queue of `kind`, from its broker's own stats.
async fn kind_stats(
    conn: &RedisConnection,
    name: &str,
    kind: QueueKind,
) -> Result<(QueueStats, Vec<GroupReport>), BrokerError> {
    Ok(match kind {
        QueueKind::List => (stats_of(ListBroker::new(conn, name)).await?, Vec::new()),
        QueueKind::ReliableList => (
            stats_of(ReliableListBroker::new(conn, name)).await?,
            Vec::new(),
        ),
        QueueKind::Stream => stream_stats(conn, name).await?,
        QueueKind::ShardedStream => sharded_stats(conn, name).await?,
        QueueKind::Pubsub => {
            let mut s = QueueStats::default();
            s.dead_letters = DeadLetterQueue::channel(conn, name).len().await?;
            (s, Vec::new())
        }
    })
}

async fn stats_of<B: Broker>(b: B) -> Result<QueueStats, BrokerError> {
    Ok(b.stats().await?.unwrap_or_default())
}

/// The kind of an unregistered queue from its key: a stream is a stream; a list (or nothing)
/// is a reliable list when consumers are registered for it, else a list.
async fn detect(conn: &RedisConnection, name: &str) -> Result<QueueKind, BrokerError> {
    let keys = QueueKeys::new(conn.config().key_prefix(), name);
    let mut m = conn.manager();
    let (t, consumers): (String, u64) = redis::pipe()
        .cmd("TYPE")
        .arg(name)
        .scard(keys.consumers())
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("TYPE", e))?;
    Ok(match t.as_str() {
        "stream" => QueueKind::Stream,
        _ if consumers > 0 => QueueKind::ReliableList,
        _ => QueueKind::List,
    })
}

/// A stream's totals and groups, each group's numbers from [`StreamBroker::stats`].
async fn stream_stats(
    conn: &RedisConnection,
    stream: &str,
) -> Result<(QueueStats, Vec<GroupReport>), BrokerError> {
    let (t, length, scheduled, dead) = stream_totals(conn, stream).await?;
    let mut total = QueueStats::default();
    total.scheduled = scheduled;
    total.dead_letters = dead;
    if t != "stream" {
        return Ok((total, Vec::new()));
    }
    let info = stream_groups(conn, stream).await?;
    if info.is_empty() {
        total.depth = length;
        return Ok((total, Vec::new()));
    }
    let mut groups = Vec::with_capacity(info.len());
    let mut oldest: Option<Duration> = None;
    for g in info {
        let s = stats_of(StreamBroker::new(conn, stream, &g.name)).await?;
        total.depth += s.depth;
        total.in_flight += s.in_flight;
        total.consumers += s.consumers;
        oldest = oldest.max(s.oldest_age);
        groups.push(GroupReport {
            name: g.name,
            depth: s.depth,
            in_flight: s.in_flight,
            consumers: s.consumers,
            oldest_age_seconds: s.oldest_age.map(|d| d.as_secs_f64()),
        });
    }
    total.oldest_age = oldest;
    Ok((total, groups))
}

/// The type of `stream`'s key (`none` when it does not exist), its length, and its scheduled
/// retries and dead letters: one pipeline.
pub(super) async fn stream_totals(
    conn: &RedisConnection,
    stream: &str,
) -> Result<(String, u64, u64, u64), BrokerError> {
    let keys = QueueKeys::new(conn.config().key_prefix(), stream);
    let mut m = conn.manager();
    redis::pipe()
        .cmd("TYPE")
        .arg(stream)
        .xlen(stream)
        .zcard(keys.scheduled())
        .xlen(keys.dead_letters())
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("XLEN", e))
}

/// The consumer groups of the stream `stream` (`XINFO GROUPS`; the key must exist).
pub(super) async fn stream_groups(
    conn: &RedisConnection,
    stream: &str,
) -> Result<Vec<StreamInfoGroup>, BrokerError> {
    let mut m = conn.manager();
    let info: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("XINFO GROUPS", e))?;
    Ok(info.groups)
}

/// The layout stored for the sharded queue `queue`: its shards' streams, one a line (`None`
/// before any producer or consumer ran).
pub(super) async fn stored_layout(
    conn: &RedisConnection,
    queue: &str,
) -> Result<Option<String>, BrokerError> {
    let layout = QueueKeys::new(conn.config().key_prefix(), queue).shard_layout();
    let mut m = conn.manager();
    redis::cmd("GET")
        .arg(&layout)
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("GET shard layout", e))
}

/// A sharded queue's totals and groups: its shards' (from its layout key) summed.
async fn sharded_stats(
    conn: &RedisConnection,
    queue: &str,
) -> Result<(QueueStats, Vec<GroupReport>), BrokerError> {
    let shards = stored_layout(conn, queue).await?;
    let mut total = QueueStats::default();
    let mut groups: BTreeMap<String, GroupReport> = BTreeMap::new();
    for shard in shards.as_deref().unwrap_or("").lines() {
        let (s, gs) = Box::pin(stream_stats(conn, shard)).await?;
        total.depth += s.depth;
        total.in_flight += s.in_flight;
        total.scheduled += s.scheduled;
        total.dead_letters += s.dead_letters;
        total.consumers += s.consumers;
        total.oldest_age = total.oldest_age.max(s.oldest_age);
        for g in gs {
            let e = groups.entry(g.name.clone()).or_insert(GroupReport {
                name: g.name,
                depth: 0,
                in_flight: 0,
                consumers: 0,
                oldest_age_seconds: None,
            });
            e.depth += g.depth;
            e.in_flight += g.in_flight;
            e.consumers = e.consumers.max(g.consumers);
            e.oldest_age_seconds = match (e.oldest_age_seconds, g.oldest_age_seconds) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Ok((total, groups.into_values().collect()))
}
