//! A stream's inspection (`XINFO GROUPS` / `CONSUMERS`, each group's next entry, heartbeats)
//! and a sharded stream's: each shard's stream and totals over them.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;
use redis::streams::StreamInfoConsumersReply;

use super::model::{
    GroupConsumerReport, GroupInspection, Heartbeat, MemoryUsage, ShardLayout, ShardedGroupReport,
    ShardedInspection, StreamInspection,
};
use super::{InspectError, check_type, memory};
use crate::connection::RedisConnection;
use crate::keys::QueueKeys;
use crate::queues::registry::QueueKind;
use crate::queues::report::{stored_layout, stream_groups, stream_totals};
use crate::sharded_stream::ShardedQueue;
use crate::stream::StreamEntryId;

/// Most undelivered entries counted one by one when Redis does not know a group's lag.
const LAG_COUNT_LIMIT: usize = 10_000;

/// The stream `stream`, with every group or only `only_group` (pause flag and counts unset).
pub(super) async fn inspect(
    conn: &RedisConnection,
    stream: &str,
    only_group: Option<&str>,
) -> Result<StreamInspection, InspectError> {
    check_type(conn, stream, "stream").await?;
    let keys = QueueKeys::new(conn.config().key_prefix(), stream);
    let (key_type, length, scheduled, dead) = stream_totals(conn, stream).await?;
    let exists = key_type == "stream";
    let mut m = conn.manager();
    let groups = if exists {
        stream_groups(conn, stream).await?
    } else {
        Vec::new()
    };
    if let Some(g) = only_group
        && !groups.iter().any(|info| info.name == g)
    {
        return Err(InspectError::NoSuchGroup {
            queue: stream.to_owned(),
            group: g.to_owned(),
            groups: groups.into_iter().map(|i| i.name).collect(),
            sharded: false,
        });
    }
    let mut own = vec![keys.scheduled(), keys.dead_letters()];
    let mut out = Vec::new();
    for info in groups {
        if only_group.is_some_and(|g| g != info.name) {
            continue;
        }
        let after = format!("({}", info.last_delivered_id);
        let (lag, lag_lower_bound) = match info.lag {
            Some(l) => (l as u64, false),
            None => {
                let n = xrange_count(conn, stream, &after, LAG_COUNT_LIMIT).await?;
                (n as u64, n >= LAG_COUNT_LIMIT)
            }
        };
        let next: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut m)
            .await
            .map_err(|e| conn.error("XRANGE", e))?;
        let oldest = first_entry_id(next).and_then(|id| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH + Duration::from_millis(id.ms()))
                .ok()
        });
        let consumers: StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(&info.name)
            .query_async(&mut m)
            .await
            .map_err(|e| conn.error("XINFO CONSUMERS", e))?;
        let members: BTreeSet<String> = redis::cmd("SMEMBERS")
            .arg(keys.group_consumers(&info.name))
            .query_async(&mut m)
            .await
            .map_err(|e| conn.error("SMEMBERS", e))?;
        own.push(keys.group_consumers(&info.name));
        // Registered consumers Redis does not list have their heartbeat read too.
        let unlisted: Vec<String> = members
            .iter()
            .filter(|m| !consumers.consumers.iter().any(|c| &c.name == *m))
            .cloned()
            .collect();
        let mut pipe = redis::pipe();
        for name in consumers.consumers.iter().map(|c| &c.name).chain(&unlisted) {
            pipe.pttl(keys.heartbeat(name));
        }
        let mut ttls: Vec<i64> = if consumers.consumers.is_empty() && unlisted.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut m)
                .await
                .map_err(|e| conn.error("PTTL", e))?
        };
        let unlisted_ttls = ttls.split_off(consumers.consumers.len().min(ttls.len()));
        let mut out_consumers = Vec::new();
        for (c, ttl) in consumers.consumers.into_iter().zip(ttls) {
            // A consumer of another library has neither a registration nor a heartbeat.
            let pythia = members.contains(&c.name) || ttl != -2;
            let (alive, heartbeat_ttl_ms) = if pythia {
                own.push(keys.heartbeat(&c.name));
                let (a, t) = Heartbeat::from_pttl(ttl);
                (Some(a), t)
            } else {
                (None, None)
            };
            out_consumers.push(GroupConsumerReport {
                name: c.name,
                pending: c.pending as u64,
                idle_ms: Some(c.idle as u64),
                pythia,
                alive,
                heartbeat_ttl_ms,
            });
        }
        let unlisted_consumers = unlisted
            .into_iter()
            .zip(unlisted_ttls)
            .map(|(name, ttl)| {
                let (alive, heartbeat_ttl_ms) = Heartbeat::from_pttl(ttl);
                GroupConsumerReport {
                    name,
                    pending: 0,
                    idle_ms: None,
                    pythia: true,
                    alive: Some(alive),
                    heartbeat_ttl_ms,
                }
            })
            .collect();
        out.push(GroupInspection {
            name: info.name,
            lag,
            lag_lower_bound,
            pending: info.pending as u64,
            last_delivered_id: info.last_delivered_id,
            oldest_age_seconds: oldest.map(|d| d.as_secs_f64()),
            consumers: out_consumers,
            unlisted_consumers,
        });
    }
    Ok(StreamInspection {
        queue: stream.to_owned(),
        broker: QueueKind::Stream,
        length,
        scheduled,
        dead_letters: dead,
        groups: out,
        memory_bytes: memory(conn, stream, &own).await,
        paused: None,
        today: None,
        shard: None,
    })
}

/// Inspects the sharded stream `queue`: each shard's stream with every group (a shard may
/// lack a group the others have: a group is created on a shard by the first consumer reading
/// it), and totals over them — length, retries, dead letters, memory, and per group (only
/// `only_group` when given) its lag and pending entries. The stored layout is compared with
/// `queue`'s.
pub async fn inspect_sharded(
    conn: &RedisConnection,
    queue: &ShardedQueue,
    only_group: Option<&str>,
) -> Result<ShardedInspection, InspectError> {
    let mut shards = Vec::with_capacity(queue.shard_count());
    for (i, name) in queue.streams().iter().enumerate() {
        let mut s = inspect(conn, name, None).await?;
        if let Some(g) = only_group {
            s.groups.retain(|info| info.name == g);
        }
        s.shard = Some(i);
        shards.push(s);
    }
    let mut groups: Vec<ShardedGroupReport> = Vec::new();
    for g in shards.iter().flat_map(|s| &s.groups) {
        let at = match groups.iter().position(|t| t.name == g.name) {
            Some(at) => at,
            None => {
                groups.push(ShardedGroupReport {
                    name: g.name.clone(),
                    lag: 0,
                    lag_lower_bound: false,
                    pending: 0,
                    shards_with_group: 0,
                });
                groups.len() - 1
            }
        };
        let t = &mut groups[at];
        t.lag += g.lag;
        t.lag_lower_bound |= g.lag_lower_bound;
        t.pending += g.pending;
        t.shards_with_group += 1;
    }
    if let Some(g) = only_group
        && groups.is_empty()
    {
        return Err(InspectError::NoSuchGroup {
            queue: queue.name().to_owned(),
            group: g.to_owned(),
            groups: Vec::new(),
            sharded: true,
        });
    }
    let key = queue.layout_key(conn.config().key_prefix());
    let stored = stored_layout(conn, queue.name()).await?;
    let sum = |f: fn(&StreamInspection) -> u64| shards.iter().map(f).sum::<u64>();
    let memory_sum = |f: fn(&MemoryUsage) -> Option<u64>| {
        shards
            .iter()
            .map(|s| f(&s.memory_bytes))
            .sum::<Option<u64>>()
    };
    Ok(ShardedInspection {
        queue: queue.name().to_owned(),
        broker: QueueKind::Stream,
        shard_count: queue.shard_count(),
        layout: ShardLayout {
            matches: stored.as_ref().map(|s| *s == queue.streams().join("\n")),
            stored_shards: stored.as_ref().map(|s| s.lines().count()),
            key,
        },
        length: sum(|s| s.length),
        scheduled: sum(|s| s.scheduled),
        dead_letters: sum(|s| s.dead_letters),
        memory_bytes: MemoryUsage {
            queue: memory_sum(|m| m.queue),
            pythia_keys: memory_sum(|m| m.pythia_keys),
        },
        groups,
        shards,
    })
}

/// How many entries of `stream` come after `after`, counted up to `limit`.
async fn xrange_count(
    conn: &RedisConnection,
    stream: &str,
    after: &str,
    limit: usize,
) -> Result<usize, InspectError> {
    let mut m = conn.manager();
    let reply: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg(after)
        .arg("+")
        .arg("COUNT")
        .arg(limit)
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("XRANGE", e))?;
    Ok(match reply {
        Value::Array(a) => a.len(),
        _ => 0,
    })
}

/// The id of the first entry of an `XRANGE` reply.
fn first_entry_id(reply: Value) -> Option<StreamEntryId> {
    let Value::Array(entries) = reply else {
        return None;
    };
    let Value::Array(entry) = entries.into_iter().next()? else {
        return None;
    };
    let id: String = redis::from_redis_value(entry.into_iter().next()?).ok()?;
    id.parse().ok()
}
