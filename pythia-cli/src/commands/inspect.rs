//! `pythia inspect`: the state of one queue, as a table or one JSON document.
//!
//! * list / reliable list: depth, scheduled retries, dead letters, age of the next message
//!   (from [`Broker::stats`], as the gauges report them), each registered consumer's in-flight
//!   and staged messages with its heartbeat, and memory;
//! * stream: length, scheduled retries, dead letters, memory, and per consumer group its lag,
//!   pending entries, last-delivered id and next entry's age, with each consumer's pending
//!   count, idle time and heartbeat;
//! * lists and streams also: the pause flag and today's processed / failed / retried counts,
//!   read by the library (`pythia_redis::queues`) as for `pythia queues`;
//! * pub/sub: subscribers per channel (`PUBSUB NUMSUB`; `SHARDNUMSUB` summed over the nodes of a cluster), pattern subscriptions of the server
//!   (`PUBSUB NUMPAT`) and each channel's dead letters.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pythia::Broker;
use pythia::redis::queues::{DailyCounts, is_paused};
use pythia::redis::{ListBroker, QueueKeys, RedisConnection, ShardedQueue, StreamEntryId};
use redis::Value;
use serde_json::{Value as Json, json};

use super::{human_bytes, human_duration, key_type, table};
use crate::cli::{BrokerKind, InspectArgs, TargetArgs, sharded_queue};
use crate::error::CliError;

/// Most undelivered entries counted one by one when Redis does not know a group's lag.
const LAG_COUNT_LIMIT: usize = 10_000;

pub(crate) async fn inspect(args: InspectArgs) -> Result<(), CliError> {
    let t = &args.target;
    let sharded = match args.shards {
        1 => None,
        n => sharded_queue(t.broker.unwrap_or(BrokerKind::Stream), t.single()?, n)?,
    };
    let conn = t.redis.connect().await?;
    let report = match &sharded {
        Some(queue) => {
            sharded_report(&conn, &t.redis.key_prefix, queue, args.group.as_deref()).await?
        }
        None => report(&conn, t, args.group.as_deref()).await?,
    };
    if args.json {
        crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("JSON values serialise")
        )?;
    } else {
        crate::output::out!("{}", render(&report))?;
    }
    Ok(())
}

/// The `--json` document of `pythia inspect` for `t` (on `conn`; `t.redis.redis_url` is not used):
/// the broker kind from `t.broker`, else from the key ([`detect`]). `pythia dashboard` serves
/// the same document.
pub(crate) async fn report(
    conn: &RedisConnection,
    t: &TargetArgs,
    group: Option<&str>,
) -> Result<Json, CliError> {
    let kind = match t.broker {
        Some(k) => k,
        None => detect(conn, t).await?,
    };
    let mut doc = match kind {
        BrokerKind::Pubsub => return pubsub(conn, t).await,
        BrokerKind::Stream => stream(conn, &t.redis.key_prefix, t.single()?, group).await?,
        BrokerKind::List | BrokerKind::ReliableList => list(conn, t, kind).await?,
    };
    // The pause flag and today's counters, as the library reads them for `pythia queues`.
    let q = t.single()?;
    let paused = is_paused(conn, q).await.map_err(CliError::runtime)?;
    let today = DailyCounts::today(conn, q)
        .await
        .map_err(CliError::runtime)?;
    doc["paused"] = json!(paused);
    doc["today"] = serde_json::to_value(today).expect("counts serialise");
    Ok(doc)
}

/// The broker kind of a queue from its key: a stream is a stream; a list (or nothing) is a
/// reliable list when consumers are registered for it, else a list.
pub(crate) async fn detect(conn: &RedisConnection, t: &TargetArgs) -> Result<BrokerKind, CliError> {
    if t.queue.len() > 1 {
        return Err(CliError::usage(
            "several --queue given: give --broker pubsub to inspect several channels",
        ));
    }
    let q = t.single()?;
    match key_type(conn, q).await?.as_str() {
        "stream" => Ok(BrokerKind::Stream),
        "list" | "none" => {
            let keys = QueueKeys::new(&t.redis.key_prefix, q);
            let mut m = conn.manager();
            let consumers: u64 = redis::cmd("SCARD")
                .arg(keys.consumers())
                .query_async(&mut m)
                .await
                .map_err(|e| CliError::runtime(conn.error("SCARD", e)))?;
            Ok(if consumers > 0 {
                BrokerKind::ReliableList
            } else {
                BrokerKind::List
            })
        }
        other => Err(CliError::usage(format!(
            "{q:?} is a Redis {other}, not a queue (a list or a stream)"
        ))),
    }
}

/// Fails when the queue key exists with another type than the broker reads.
async fn check_type(conn: &RedisConnection, q: &str, want: &str) -> Result<(), CliError> {
    match key_type(conn, q).await?.as_str() {
        "none" => Ok(()),
        t if t == want => Ok(()),
        other => Err(CliError::usage(format!(
            "{q:?} is a Redis {other}, not a {want}{}",
            if other == "stream" {
                ": give --broker stream"
            } else if other == "list" {
                ": give --broker list or reliable-list"
            } else {
                ""
            }
        ))),
    }
}

async fn list(conn: &RedisConnection, t: &TargetArgs, kind: BrokerKind) -> Result<Json, CliError> {
    let q = t.single()?;
    check_type(conn, q, "list").await?;
    let keys = QueueKeys::new(&t.redis.key_prefix, q);
    let stats = ListBroker::new(conn, q)
        .with_side(t.list_side.into())
        .stats()
        .await
        .map_err(CliError::runtime)?
        .unwrap_or_default();
    let mut m = conn.manager();
    let mut names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.consumers())
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("SMEMBERS", e)))?;
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
            .map_err(|e| CliError::runtime(conn.error("consumers", e)))?
    };
    let mut consumers = Vec::new();
    let mut in_flight = 0i64;
    for (c, n) in names.iter().zip(counts.chunks(3)) {
        in_flight += n[0];
        let (alive, ttl) = heartbeat(n[2]);
        consumers.push(json!({
            "name": c, "in_flight": n[0], "staged": n[1], "alive": alive, "heartbeat_ttl_ms": ttl,
        }));
    }
    let mut own = vec![keys.scheduled(), keys.dead_letters(), keys.consumers()];
    for c in &names {
        own.extend([keys.in_flight(c), keys.staging(c), keys.heartbeat(c)]);
    }
    Ok(json!({
        "queue": q,
        "broker": kind.as_str(),
        "depth": stats.depth,
        "in_flight": in_flight,
        "scheduled": stats.scheduled,
        "dead_letters": stats.dead_letters,
        "oldest_age_seconds": stats.oldest_age.map(|d| d.as_secs_f64()),
        "consumers": consumers,
        "memory_bytes": memory(conn, q, &own).await,
    }))
}

async fn stream(
    conn: &RedisConnection,
    key_prefix: &str,
    q: &str,
    only_group: Option<&str>,
) -> Result<Json, CliError> {
    check_type(conn, q, "stream").await?;
    let keys = QueueKeys::new(key_prefix, q);
    let mut m = conn.manager();
    let (length, scheduled, dead): (u64, u64, u64) = redis::pipe()
        .xlen(q)
        .zcard(keys.scheduled())
        .xlen(keys.dead_letters())
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("XLEN", e)))?;
    let groups: Vec<HashMap<String, Value>> = if length > 0 || key_exists(conn, q).await? {
        let reply: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(q)
            .query_async(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("XINFO GROUPS", e)))?;
        list_of_maps(reply)
    } else {
        Vec::new()
    };
    if let Some(g) = only_group
        && !groups.iter().any(|info| text(info.get("name")) == g)
    {
        let names: Vec<String> = groups.iter().map(|i| text(i.get("name"))).collect();
        return Err(CliError::usage(format!(
            "stream {q:?} has no consumer group {g:?} (groups: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    let mut own = vec![keys.scheduled(), keys.dead_letters()];
    let mut out_groups = Vec::new();
    for info in &groups {
        let name = text(info.get("name"));
        if only_group.is_some_and(|g| g != name) {
            continue;
        }
        let last = text(info.get("last-delivered-id"));
        let after = format!("({last}");
        let (lag, lower_bound) = match info.get("lag").and_then(int) {
            Some(l) => (l as u64, false),
            None => {
                let n = xrange_count(conn, q, &after, LAG_COUNT_LIMIT).await?;
                (n as u64, n >= LAG_COUNT_LIMIT)
            }
        };
        let next: Value = redis::cmd("XRANGE")
            .arg(q)
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("XRANGE", e)))?;
        let oldest = first_entry_id(next).and_then(|id| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH + Duration::from_millis(id.ms()))
                .ok()
        });
        let reply: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(q)
            .arg(&name)
            .query_async(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("XINFO CONSUMERS", e)))?;
        let members: BTreeSet<String> = redis::cmd("SMEMBERS")
            .arg(keys.group_consumers(&name))
            .query_async(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("SMEMBERS", e)))?;
        own.push(keys.group_consumers(&name));
        let consumers = list_of_maps(reply);
        let mut pipe = redis::pipe();
        for c in &consumers {
            pipe.pttl(keys.heartbeat(&text(c.get("name"))));
        }
        let ttls: Vec<i64> = if consumers.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut m)
                .await
                .map_err(|e| CliError::runtime(conn.error("PTTL", e)))?
        };
        let mut out_consumers = Vec::new();
        for (c, ttl) in consumers.iter().zip(ttls) {
            let cname = text(c.get("name"));
            let pythia = members.contains(&cname) || ttl != -2;
            let (alive, ttl_ms) = if pythia {
                let (a, t) = heartbeat(ttl);
                own.push(keys.heartbeat(&cname));
                (Some(a), t)
            } else {
                (None, None)
            };
            out_consumers.push(json!({
                "name": cname,
                "pending": c.get("pending").and_then(int).unwrap_or(0),
                "idle_ms": c.get("idle").and_then(int),
                "pythia": pythia,
                "alive": alive,
                "heartbeat_ttl_ms": ttl_ms,
            }));
        }
        out_groups.push(json!({
            "name": name,
            "lag": lag,
            "lag_lower_bound": lower_bound,
            "pending": info.get("pending").and_then(int).unwrap_or(0),
            "last_delivered_id": last,
            "oldest_age_seconds": oldest.map(|d| d.as_secs_f64()),
            "consumers": out_consumers,
        }));
    }
    Ok(json!({
        "queue": q,
        "broker": "stream",
        "length": length,
        "scheduled": scheduled,
        "dead_letters": dead,
        "groups": out_groups,
        "memory_bytes": memory(conn, q, &own).await,
    }))
}

/// A sharded stream queue: the stream report of each shard's stream, and totals over them
/// (length, scheduled, dead letters, memory, and per consumer group its lag and pending).
async fn sharded_report(
    conn: &RedisConnection,
    key_prefix: &str,
    queue: &ShardedQueue,
    only_group: Option<&str>,
) -> Result<Json, CliError> {
    let mut shards = Vec::with_capacity(queue.shard_count());
    for (i, name) in queue.streams().iter().enumerate() {
        // Every group of every shard: a shard may lack a group the others have (a consumer
        // group is created on a shard by the first consumer reading it).
        let mut r = stream(conn, key_prefix, name, None).await?;
        if let (Some(g), Some(groups)) = (only_group, r["groups"].as_array_mut()) {
            groups.retain(|info| info["name"] == g);
        }
        r["shard"] = json!(i);
        shards.push(r);
    }
    let sum = |field: &str| -> u64 { shards.iter().filter_map(|r| r[field].as_u64()).sum() };
    let (length, scheduled, dead) = (sum("length"), sum("scheduled"), sum("dead_letters"));
    let memory = |part: &str| -> Json {
        let sizes: Option<Vec<u64>> = shards
            .iter()
            .map(|r| r["memory_bytes"][part].as_u64())
            .collect();
        sizes.map_or(Json::Null, |s| json!(s.iter().sum::<u64>()))
    };
    let memory_bytes = json!({ "queue": memory("queue"), "pythia_keys": memory("pythia_keys") });
    // Per group: lag and pending summed over the shards that have it.
    let mut groups: Vec<(String, u64, bool, u64, usize)> = Vec::new();
    for g in shards
        .iter()
        .filter_map(|r| r["groups"].as_array())
        .flatten()
    {
        let name = g["name"].as_str().unwrap_or_default();
        let at = match groups.iter().position(|t| t.0 == name) {
            Some(at) => at,
            None => {
                groups.push((name.to_owned(), 0, false, 0, 0));
                groups.len() - 1
            }
        };
        let t = &mut groups[at];
        t.1 += g["lag"].as_u64().unwrap_or(0);
        t.2 |= g["lag_lower_bound"].as_bool() == Some(true);
        t.3 += g["pending"].as_u64().unwrap_or(0);
        t.4 += 1;
    }
    if let Some(g) = only_group
        && groups.is_empty()
    {
        return Err(CliError::usage(format!(
            "no shard of the sharded queue {:?} has a consumer group {g:?}",
            queue.name()
        )));
    }
    let layout_key = queue.layout_key(key_prefix);
    let mut m = conn.manager();
    let stored: Option<String> = redis::cmd("GET")
        .arg(&layout_key)
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("GET (shard layout)", e)))?;
    let matches = stored.as_ref().map(|s| *s == queue.streams().join("\n"));
    Ok(json!({
        "queue": queue.name(),
        "broker": "stream",
        "shard_count": queue.shard_count(),
        "layout": {
            "key": layout_key,
            "stored_shards": stored.as_ref().map(|s| s.lines().count()),
            "matches": matches,
        },
        "length": length,
        "scheduled": scheduled,
        "dead_letters": dead,
        "memory_bytes": memory_bytes,
        "groups": groups
            .into_iter()
            .map(|(name, lag, lower_bound, pending, with)| json!({
                "name": name,
                "lag": lag,
                "lag_lower_bound": lower_bound,
                "pending": pending,
                "shards_with_group": with,
            }))
            .collect::<Vec<_>>(),
        "shards": shards,
    }))
}

async fn pubsub(conn: &RedisConnection, t: &TargetArgs) -> Result<Json, CliError> {
    let channels: Vec<&String> = t.queue.iter().filter(|c| !c.trim().is_empty()).collect();
    if channels.is_empty() {
        return Err(CliError::usage("--queue (a channel) must not be empty"));
    }
    let mut m = conn.manager();
    let mut numsub = redis::cmd("PUBSUB");
    // On a cluster, channels are sharded (SSUBSCRIBE): SHARDNUMSUB, asked of every node and
    // summed; there are no pattern subscriptions; each dead-letter list is in its own slot.
    numsub.arg(if conn.is_cluster() {
        "SHARDNUMSUB"
    } else {
        "NUMSUB"
    });
    for c in &channels {
        numsub.arg(c.as_str());
    }
    let mut reply: Vec<Value> = if conn.is_cluster() {
        let counts: Value = numsub
            .query_async(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("PUBSUB SHARDNUMSUB", e)))?;
        let mut reply = vec![counts, Value::Int(0)];
        for c in &channels {
            let dlq = QueueKeys::new(&t.redis.key_prefix, c).dead_letters();
            let len: Value = redis::cmd("LLEN")
                .arg(&dlq)
                .query_async(&mut m)
                .await
                .map_err(|e| CliError::runtime(conn.error("LLEN", e)))?;
            reply.push(len);
        }
        reply
    } else {
        let mut pipe = redis::pipe();
        pipe.add_command(numsub).cmd("PUBSUB").arg("NUMPAT");
        for c in &channels {
            pipe.llen(QueueKeys::new(&t.redis.key_prefix, c).dead_letters());
        }
        pipe.query_async(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("PUBSUB", e)))?
    };
    let dead: Vec<i64> = reply
        .split_off(2)
        .into_iter()
        .filter_map(int_owned)
        .collect();
    let numpat = reply.pop().and_then(int_owned).unwrap_or(0);
    let counts: HashMap<String, i64> = match reply.pop() {
        Some(Value::Array(flat)) => flat
            .chunks(2)
            .filter_map(|p| Some((text(p.first()), int(p.get(1)?)?)))
            .collect(),
        Some(Value::Map(map)) => map
            .iter()
            .filter_map(|(k, v)| Some((text(Some(k)), int(v)?)))
            .collect(),
        _ => HashMap::new(),
    };
    let out: Vec<Json> = channels
        .iter()
        .zip(dead)
        .map(|(c, d)| {
            json!({
                "channel": c,
                "subscribers": counts.get(c.as_str()).copied().unwrap_or(0),
                "dead_letters": d,
            })
        })
        .collect();
    Ok(json!({
        "broker": "pubsub",
        "channels": out,
        "pattern_subscriptions": numpat,
    }))
}

/// (alive, TTL left in ms) from a `PTTL` reply: -2 is no key (dead), -1 a key without TTL.
fn heartbeat(pttl: i64) -> (bool, Option<i64>) {
    match pttl {
        -2 => (false, None),
        -1 => (true, None),
        ms => (true, Some(ms)),
    }
}

async fn key_exists(conn: &RedisConnection, key: &str) -> Result<bool, CliError> {
    let mut m = conn.manager();
    redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("EXISTS", e)))
}

async fn xrange_count(
    conn: &RedisConnection,
    q: &str,
    after: &str,
    limit: usize,
) -> Result<usize, CliError> {
    let mut m = conn.manager();
    let reply: Value = redis::cmd("XRANGE")
        .arg(q)
        .arg(after)
        .arg("+")
        .arg("COUNT")
        .arg(limit)
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("XRANGE", e)))?;
    Ok(match reply {
        Value::Array(a) => a.len(),
        _ => 0,
    })
}

/// `MEMORY USAGE` of the queue key and the sum over Pythia's keys (missing keys count 0);
/// `null`s when the server refuses `MEMORY USAGE`.
async fn memory(conn: &RedisConnection, queue: &str, own: &[String]) -> Json {
    let mut pipe = redis::pipe();
    for k in std::iter::once(queue).chain(own.iter().map(String::as_str)) {
        pipe.cmd("MEMORY").arg("USAGE").arg(k);
    }
    let mut m = conn.manager();
    match pipe.query_async::<Vec<Option<u64>>>(&mut m).await {
        Ok(sizes) => json!({
            "queue": sizes[0].unwrap_or(0),
            "pythia_keys": sizes[1..].iter().flatten().sum::<u64>(),
        }),
        Err(e) => {
            tracing::warn!("MEMORY USAGE failed: {e}");
            json!({ "queue": null, "pythia_keys": null })
        }
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        Value::SimpleString(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn int_owned(v: Value) -> Option<i64> {
    int(&v)
}

pub(crate) fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::VerbatimString { text, .. }) => text.clone(),
        Some(Value::Int(i)) => i.to_string(),
        _ => String::new(),
    }
}

/// `XINFO …` replies: a list of flat `[name, value, …]` arrays (RESP2) or maps (RESP3).
fn list_of_maps(reply: Value) -> Vec<HashMap<String, Value>> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Array(flat) => {
                let mut map = HashMap::new();
                let mut it = flat.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    map.insert(text(Some(&k)), v);
                }
                map
            }
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(k, v)| (text(Some(&k)), v))
                .collect(),
            _ => HashMap::new(),
        })
        .collect()
}

fn first_entry_id(reply: Value) -> Option<StreamEntryId> {
    let Value::Array(entries) = reply else {
        return None;
    };
    let Value::Array(entry) = entries.into_iter().next()? else {
        return None;
    };
    text(entry.first()).parse().ok()
}

fn num(v: &Json) -> String {
    match v {
        Json::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn age(v: &Json) -> String {
    v.as_f64()
        .map(|s| human_duration(Duration::from_secs_f64(s)))
        .unwrap_or_else(|| "-".to_owned())
}

fn heartbeat_text(c: &Json) -> String {
    match (c["alive"].as_bool(), c["heartbeat_ttl_ms"].as_i64()) {
        (Some(true), Some(ms)) => format!(
            "alive ({} left)",
            human_duration(Duration::from_millis(ms as u64))
        ),
        (Some(true), None) => "alive (no expiry)".to_owned(),
        (Some(false), _) => "dead (heartbeat expired)".to_owned(),
        (None, _) => "none (not a Pythia consumer)".to_owned(),
    }
}

fn memory_text(m: &Json) -> String {
    match (m["queue"].as_u64(), m["pythia_keys"].as_u64()) {
        (Some(q), Some(p)) => format!(
            "{} (queue {}, Pythia's keys {})",
            human_bytes(q + p),
            human_bytes(q),
            human_bytes(p)
        ),
        _ => "unknown (MEMORY USAGE refused)".to_owned(),
    }
}

/// `yes` / `no` of the pause flag.
fn paused_text(v: &Json) -> String {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
    .to_owned()
}

/// Today's counters: `12 processed, 1 failed, 3 retried`.
fn today_text(v: &Json) -> String {
    format!(
        "{} processed, {} failed, {} retried",
        num(&v["processed"]),
        num(&v["failed"]),
        num(&v["retried"])
    )
}

/// The report as text.
fn render(r: &Json) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("  {k:<18} {v}\n"));
    match r["broker"].as_str() {
        Some("pubsub") => {
            out.push_str("pub/sub channels\n");
            let rows: Vec<Vec<String>> = r["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    vec![
                        c["channel"].as_str().unwrap_or_default().to_owned(),
                        num(&c["subscribers"]),
                        num(&c["dead_letters"]),
                    ]
                })
                .collect();
            out.push_str(&table(&["CHANNEL", "SUBSCRIBERS", "DEAD LETTERS"], &rows));
            out.push_str(&format!(
                "pattern subscriptions on the server (all patterns): {}\n",
                num(&r["pattern_subscriptions"])
            ));
        }
        Some("stream") if r["shards"].is_array() => {
            let count = num(&r["shard_count"]);
            out.push_str(&format!("sharded stream {} ({count} shards)\n", r["queue"]));
            line(&mut out, "length", num(&r["length"]));
            line(&mut out, "scheduled retries", num(&r["scheduled"]));
            line(&mut out, "dead letters", num(&r["dead_letters"]));
            line(&mut out, "memory", memory_text(&r["memory_bytes"]));
            let layout = &r["layout"];
            let stored = match layout["matches"].as_bool() {
                None => "not stored yet (no producer or consumer has run)".to_owned(),
                Some(true) => format!("{} (matches)", layout["key"]),
                Some(false) => format!(
                    "{} holds {} shards, not {count}: producers and consumers disagree with \
                     this --shards",
                    layout["key"],
                    num(&layout["stored_shards"])
                ),
            };
            line(&mut out, "layout", stored);
            let rows: Vec<Vec<String>> = r["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| {
                    let lag = if g["lag_lower_bound"].as_bool() == Some(true) {
                        format!("{}+", num(&g["lag"]))
                    } else {
                        num(&g["lag"])
                    };
                    vec![
                        g["name"].as_str().unwrap_or_default().to_owned(),
                        lag,
                        num(&g["pending"]),
                        format!("{}/{count}", num(&g["shards_with_group"])),
                    ]
                })
                .collect();
            if rows.is_empty() {
                out.push_str("no consumer group yet\n");
            } else {
                out.push_str(&table(&["GROUP", "LAG", "PENDING", "SHARDS"], &rows));
            }
            for shard in r["shards"].as_array().into_iter().flatten() {
                out.push_str(&format!("\nshard {}: ", num(&shard["shard"])));
                out.push_str(&render(shard));
            }
        }
        Some("stream") => {
            out.push_str(&format!("stream {}\n", r["queue"]));
            line(&mut out, "length", num(&r["length"]));
            if !r["paused"].is_null() {
                line(&mut out, "paused", paused_text(&r["paused"]));
                line(&mut out, "today", today_text(&r["today"]));
            }
            line(&mut out, "scheduled retries", num(&r["scheduled"]));
            line(&mut out, "dead letters", num(&r["dead_letters"]));
            line(&mut out, "memory", memory_text(&r["memory_bytes"]));
            let groups = r["groups"].as_array().cloned().unwrap_or_default();
            if groups.is_empty() {
                out.push_str("no consumer group yet\n");
            }
            for g in groups {
                let lag = if g["lag_lower_bound"].as_bool() == Some(true) {
                    format!("{}+", num(&g["lag"]))
                } else {
                    num(&g["lag"])
                };
                out.push_str(&format!("group {}\n", g["name"]));
                line(&mut out, "lag (undelivered)", lag);
                line(&mut out, "pending", num(&g["pending"]));
                line(
                    &mut out,
                    "last delivered",
                    g["last_delivered_id"].as_str().unwrap_or("-").to_owned(),
                );
                line(
                    &mut out,
                    "oldest undelivered",
                    age(&g["oldest_age_seconds"]),
                );
                let rows: Vec<Vec<String>> = g["consumers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        vec![
                            format!("  {}", c["name"].as_str().unwrap_or_default()),
                            num(&c["pending"]),
                            c["idle_ms"]
                                .as_u64()
                                .map(|ms| human_duration(Duration::from_millis(ms)))
                                .unwrap_or_else(|| "-".to_owned()),
                            heartbeat_text(c),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    out.push_str("  no consumers\n");
                } else {
                    out.push_str(&table(
                        &["  CONSUMER", "PENDING", "IDLE", "HEARTBEAT"],
                        &rows,
                    ));
                }
            }
        }
        _ => {
            out.push_str(&format!(
                "{} queue {}\n",
                r["broker"].as_str().unwrap_or("list"),
                r["queue"]
            ));
            line(&mut out, "depth", num(&r["depth"]));
            line(&mut out, "paused", paused_text(&r["paused"]));
            line(&mut out, "today", today_text(&r["today"]));
            line(&mut out, "in flight", num(&r["in_flight"]));
            line(&mut out, "scheduled retries", num(&r["scheduled"]));
            line(&mut out, "dead letters", num(&r["dead_letters"]));
            line(&mut out, "oldest message", age(&r["oldest_age_seconds"]));
            line(&mut out, "memory", memory_text(&r["memory_bytes"]));
            let rows: Vec<Vec<String>> = r["consumers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    vec![
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        num(&c["in_flight"]),
                        num(&c["staged"]),
                        heartbeat_text(c),
                    ]
                })
                .collect();
            if rows.is_empty() {
                out.push_str(if r["broker"] == "list" {
                    "no consumers registered (the list broker keeps no in-flight state)\n"
                } else {
                    "no consumers registered\n"
                });
            } else {
                out.push_str(&table(
                    &["CONSUMER", "IN FLIGHT", "STAGED", "HEARTBEAT"],
                    &rows,
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_read_from_pttl() {
        assert_eq!(heartbeat(-2), (false, None));
        assert_eq!(heartbeat(-1), (true, None));
        assert_eq!(heartbeat(8000), (true, Some(8000)));
    }

    #[test]
    fn xinfo_replies_parse_in_both_shapes() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![Value::Array(vec![
            b("name"),
            b("g"),
            b("pending"),
            Value::Int(3),
        ])]);
        let maps = list_of_maps(resp2);
        assert_eq!(text(maps[0].get("name")), "g");
        assert_eq!(maps[0].get("pending").and_then(int), Some(3));
        let resp3 = Value::Array(vec![Value::Map(vec![(b("lag"), Value::Nil)])]);
        assert_eq!(list_of_maps(resp3)[0].get("lag").and_then(int), None);
    }
}
