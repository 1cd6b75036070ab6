//! A list queue's inspection: [`ListBroker::stats`](crate::ListBroker) for its numbers, the
//! registered consumers' in-flight hashes, staging lists and heartbeats.

use pythia_core::Broker;

use super::model::{ConsumerReport, Heartbeat, ListInspection};
use super::{InspectError, check_type, memory};
use crate::connection::RedisConnection;
use crate::keys::QueueKeys;
use crate::list::{ListBroker, ListSide};
use crate::queues::counters::DailyCounts;
use crate::queues::registry::QueueKind;

/// The list `queue`, as a `kind` queue popped at `side` (pause flag and counts left unset).
pub(super) async fn inspect(
    conn: &RedisConnection,
    queue: &str,
    kind: QueueKind,
    side: ListSide,
) -> Result<ListInspection, InspectError> {
    check_type(conn, queue, "list").await?;
    let keys = QueueKeys::new(conn.config().key_prefix(), queue);
    let stats = ListBroker::new(conn, queue)
        .with_side(side)
        .stats()
        .await?
        .unwrap_or_default();
    let mut m = conn.manager();
    let mut names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.consumers())
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("SMEMBERS", e))?;
    names.sort();
    let mut pipe = redis::pipe();
    for c in &names {
        pipe.hlen(keys.in_flight(c))
            .llen(keys.staging(c))
            .pttl(keys.heartbeat(c));
    }
    let counts: Vec<i64> = if names.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut m)
            .await
            .map_err(|e| conn.error("consumers", e))?
    };
    let consumers: Vec<ConsumerReport> = names
        .iter()
        .zip(counts.chunks(3))
        .map(|(c, n)| {
            let (alive, heartbeat_ttl_ms) = Heartbeat::from_pttl(n[2]);
            ConsumerReport {
                name: c.clone(),
                in_flight: n[0].max(0) as u64,
                staged: n[1].max(0) as u64,
                alive,
                heartbeat_ttl_ms,
            }
        })
        .collect();
    let mut own = vec![keys.scheduled(), keys.dead_letters(), keys.consumers()];
    for c in &names {
        own.extend([keys.in_flight(c), keys.staging(c), keys.heartbeat(c)]);
    }
    Ok(ListInspection {
        queue: queue.to_owned(),
        broker: kind,
        depth: stats.depth,
        in_flight: consumers.iter().map(|c| c.in_flight).sum(),
        scheduled: stats.scheduled,
        dead_letters: stats.dead_letters,
        oldest_age_seconds: stats.oldest_age.map(|d| d.as_secs_f64()),
        consumers,
        memory_bytes: memory(conn, queue, &own).await,
        paused: false,
        today: DailyCounts::default(),
    })
}
