//! `pythia inspect`: the state of one queue, as a table or one JSON document — the library's
//! [`QueueInspection`] (`pythia_redis::queues::inspect`), which reads Redis:
//!
//! * list / reliable list: depth, scheduled retries, dead letters, age of the next message
//!   (from the broker's stats), each registered consumer's in-flight and staged messages
//!   with its heartbeat, and memory;
//! * stream: length, scheduled retries, dead letters, memory, and per consumer group its lag,
//!   pending entries, last-delivered id and next entry's age, with each consumer's pending
//!   count, idle time and heartbeat; `--shards N`: each shard's stream and totals;
//! * lists and streams also: the pause flag and today's processed / failed / retried counts;
//! * pub/sub: subscribers per channel, pattern subscriptions of the server and each
//!   channel's dead letters.
//!
//! This file holds the arguments (`InspectArgs`), their handling and the text rendering.

use std::time::Duration;

use clap::Args;
use pythia::redis::RedisConnection;
use pythia::redis::queues::QueueKind;
use pythia::redis::queues::inspect::{
    Heartbeat, InspectError, InspectOptions, ListInspection, MemoryUsage, PubsubInspection,
    QueueInspection, ShardedInspection, StreamInspection, detect_kind, inspect_channels,
    inspect_queue, inspect_sharded,
};
use redis::Value;

use super::{human_age, human_bytes, human_duration, table};
use crate::cli::{BrokerKind, TargetArgs, sharded_queue};
use crate::error::CliError;

#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "JSON fields (--json), lists and reliable lists: queue, broker, \
    depth, in_flight, scheduled, dead_letters, oldest_age_seconds (null when empty or unknown), \
    consumers[] {name, in_flight, staged, alive, heartbeat_ttl_ms (null when dead)}, \
    memory_bytes {queue, pythia_keys}, paused, today {processed, failed, retried}.\n\
    Streams: queue, broker, length, scheduled, dead_letters, memory_bytes {queue, pythia_keys}, \
    paused, today {processed, failed, retried}, \
    groups[] {name, lag (null when Redis cannot tell), lag_lower_bound, pending, \
    last_delivered_id, oldest_age_seconds, consumers[] {name, pending, idle_ms, pythia, alive, \
    heartbeat_ttl_ms}}.\n\
    Pub/sub: broker, channels[] {channel, subscribers, dead_letters}, pattern_subscriptions.\n\
    Sharded streams (--shards N, N > 1): queue (the logical name), broker, shard_count, layout \
    {key, stored_shards (null when not stored yet), matches (null likewise)}, totals over the \
    shards: length, scheduled, dead_letters, memory_bytes {queue, pythia_keys}, groups[] {name, \
    lag, lag_lower_bound, pending, shards_with_group} (summed over the shards that have the \
    group); and shards[]: each shard's stream report as above, with shard (its index).\n\
    Memory is MEMORY USAGE (sampled for big keys) of the queue key and of Pythia's keys for it \
    (retry schedule, dead letters, consumer set, in-flight, staging and heartbeat keys)."
)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Streams: show this consumer group only (default: every group).
    #[arg(long, env = "PYTHIA_GROUP")]
    pub(crate) group: Option<String>,

    /// A sharded stream queue of this many shards (as `run --shards`): each shard's stream
    /// report, and totals. 1 is the plain queue. Implies --broker stream.
    #[arg(long, env = "PYTHIA_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) shards: u16,

    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn inspect(args: InspectArgs) -> Result<(), CliError> {
    let t = &args.target;
    let sharded = match args.shards {
        1 => None,
        n => sharded_queue(t.broker.unwrap_or(BrokerKind::Stream), t.single()?, n)?,
    };
    let conn = t.redis.connect().await?;
    let report = match &sharded {
        Some(queue) => QueueInspection::Sharded(
            inspect_sharded(&conn, queue, args.group.as_deref())
                .await
                .map_err(cli_error)?,
        ),
        None => report(&conn, t, args.group.as_deref()).await?,
    };
    if args.json {
        // Through a `serde_json::Value`, whose keys are sorted: the document's keys keep the
        // order they always had.
        let doc = serde_json::to_value(&report).expect("an inspection serialises");
        crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON values serialise")
        )?;
    } else {
        crate::output::out!("{}", render(&report))?;
    }
    Ok(())
}

/// The inspection of `t` (on `conn`; `t.redis.redis_url` is not used): the broker kind from
/// `t.broker`, else from the key. `pythia dashboard` shows the same.
pub(crate) async fn report(
    conn: &RedisConnection,
    t: &TargetArgs,
    group: Option<&str>,
) -> Result<QueueInspection, CliError> {
    let kind = match t.broker {
        Some(BrokerKind::Pubsub) => {
            let channels: Vec<String> = t
                .queue
                .iter()
                .filter(|c| !c.trim().is_empty())
                .cloned()
                .collect();
            if channels.is_empty() {
                return Err(CliError::usage("--queue (a channel) must not be empty"));
            }
            return inspect_channels(conn, &channels)
                .await
                .map(QueueInspection::Pubsub)
                .map_err(cli_error);
        }
        Some(BrokerKind::Stream) => QueueKind::Stream,
        Some(BrokerKind::List) => QueueKind::List,
        Some(BrokerKind::ReliableList) => QueueKind::ReliableList,
        None => {
            if t.queue.len() > 1 {
                return Err(CliError::usage(
                    "several --queue given: give --broker pubsub to inspect several channels",
                ));
            }
            detect_kind(conn, t.single()?).await.map_err(cli_error)?
        }
    };
    let mut options = InspectOptions::new()
        .with_kind(kind)
        .with_side(t.list_side.into());
    if let Some(g) = group {
        options = options.with_group(g);
    }
    inspect_queue(conn, t.single()?, &options)
        .await
        .map_err(cli_error)
}

/// A wrong key type or a missing group is a usage error (exit 2), with a hint at `--broker`
/// where the key is another kind of queue; Redis failing a runtime one.
fn cli_error(e: InspectError) -> CliError {
    let hint = match &e {
        InspectError::WrongType { found, .. } if found == "stream" => ": give --broker stream",
        InspectError::WrongType { found, .. } if found == "list" => {
            ": give --broker list or reliable-list"
        }
        _ => "",
    };
    if e.is_usage() {
        CliError::usage(format!("{e}{hint}"))
    } else {
        CliError::runtime(e)
    }
}

/// The text of a Redis reply (`doctor` reads server replies with it).
pub(crate) fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::VerbatimString { text, .. }) => text.clone(),
        Some(Value::Int(i)) => i.to_string(),
        _ => String::new(),
    }
}

/// `s` as a JSON string: quoted, with JSON's escapes.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// An optional number, `-` when unknown.
fn num<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// An age in seconds as `850ms`, `4m05s`…, `-` when unknown.
fn age(seconds: Option<f64>) -> String {
    human_age(seconds).unwrap_or_else(|| "-".to_owned())
}

fn heartbeat_text(h: Heartbeat) -> String {
    match h {
        Heartbeat::Alive(Some(left)) => format!("alive ({} left)", human_duration(left)),
        Heartbeat::Alive(None) => "alive (no expiry)".to_owned(),
        Heartbeat::Dead => "dead (heartbeat expired)".to_owned(),
        _ => "none (not a Pythia consumer)".to_owned(),
    }
}

fn memory_text(m: &MemoryUsage) -> String {
    match (m.queue, m.pythia_keys) {
        (Some(q), Some(p)) => format!(
            "{} (queue {}, Pythia's keys {})",
            human_bytes(m.total().unwrap_or(q + p)),
            human_bytes(q),
            human_bytes(p)
        ),
        _ => "unknown (MEMORY USAGE refused)".to_owned(),
    }
}

/// `  name               value` of a report's facts.
fn line(out: &mut String, k: &str, v: String) {
    out.push_str(&format!("  {k:<18} {v}\n"));
}

/// `yes` / `no` of the pause flag, and today's counters: `12 processed, 1 failed, 3 retried`.
fn pause_and_today(out: &mut String, paused: bool, today: &pythia::redis::queues::DailyCounts) {
    line(out, "paused", if paused { "yes" } else { "no" }.to_owned());
    line(
        out,
        "today",
        format!(
            "{} processed, {} failed, {} retried",
            today.processed, today.failed, today.retried
        ),
    );
}

/// The inspection as text.
fn render(r: &QueueInspection) -> String {
    match r {
        QueueInspection::List(l) => render_list(l),
        QueueInspection::Stream(s) => render_stream(s),
        QueueInspection::Sharded(s) => render_sharded(s),
        QueueInspection::Pubsub(p) => render_pubsub(p),
        _ => String::new(),
    }
}

fn render_pubsub(p: &PubsubInspection) -> String {
    let mut out = String::from("pub/sub channels\n");
    let rows: Vec<Vec<String>> = p
        .channels
        .iter()
        .map(|c| {
            vec![
                c.channel.clone(),
                c.subscribers.to_string(),
                c.dead_letters.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&["CHANNEL", "SUBSCRIBERS", "DEAD LETTERS"], &rows));
    out.push_str(&format!(
        "pattern subscriptions on the server (all patterns): {}\n",
        p.pattern_subscriptions
    ));
    out
}

/// A lag, `+` after it when it is a lower bound.
fn lag_text(lag: u64, lower_bound: bool) -> String {
    if lower_bound {
        format!("{lag}+")
    } else {
        lag.to_string()
    }
}

fn render_sharded(r: &ShardedInspection) -> String {
    let count = r.shard_count;
    let mut out = format!("sharded stream {} ({count} shards)\n", quoted(&r.queue));
    line(&mut out, "length", r.length.to_string());
    line(&mut out, "scheduled retries", r.scheduled.to_string());
    line(&mut out, "dead letters", r.dead_letters.to_string());
    line(&mut out, "memory", memory_text(&r.memory_bytes));
    let layout = &r.layout;
    let stored = match layout.matches {
        None => "not stored yet (no producer or consumer has run)".to_owned(),
        Some(true) => format!("{} (matches)", quoted(&layout.key)),
        Some(false) => format!(
            "{} holds {} shards, not {count}: producers and consumers disagree with \
             this --shards",
            quoted(&layout.key),
            num(layout.stored_shards)
        ),
    };
    line(&mut out, "layout", stored);
    let rows: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                lag_text(g.lag, g.lag_lower_bound),
                g.pending.to_string(),
                format!("{}/{count}", g.shards_with_group),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("no consumer group yet\n");
    } else {
        out.push_str(&table(&["GROUP", "LAG", "PENDING", "SHARDS"], &rows));
    }
    for shard in &r.shards {
        out.push_str(&format!("\nshard {}: ", num(shard.shard)));
        out.push_str(&render_stream(shard));
    }
    out
}

fn render_stream(r: &StreamInspection) -> String {
    let mut out = format!("stream {}\n", quoted(&r.queue));
    line(&mut out, "length", r.length.to_string());
    if let (Some(paused), Some(today)) = (r.paused, &r.today) {
        pause_and_today(&mut out, paused, today);
    }
    line(&mut out, "scheduled retries", r.scheduled.to_string());
    line(&mut out, "dead letters", r.dead_letters.to_string());
    line(&mut out, "memory", memory_text(&r.memory_bytes));
    if r.groups.is_empty() {
        out.push_str("no consumer group yet\n");
    }
    for g in &r.groups {
        out.push_str(&format!("group {}\n", quoted(&g.name)));
        line(
            &mut out,
            "lag (undelivered)",
            lag_text(g.lag, g.lag_lower_bound),
        );
        line(&mut out, "pending", g.pending.to_string());
        line(&mut out, "last delivered", g.last_delivered_id.clone());
        line(&mut out, "oldest undelivered", age(g.oldest_age_seconds));
        let rows: Vec<Vec<String>> = g
            .consumers
            .iter()
            .map(|c| {
                vec![
                    format!("  {}", c.name),
                    c.pending.to_string(),
                    c.idle_ms
                        .map(|ms| human_duration(Duration::from_millis(ms)))
                        .unwrap_or_else(|| "-".to_owned()),
                    heartbeat_text(c.heartbeat()),
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
    out
}

fn render_list(r: &ListInspection) -> String {
    let mut out = format!("{} queue {}\n", r.broker, quoted(&r.queue));
    line(&mut out, "depth", r.depth.to_string());
    pause_and_today(&mut out, r.paused, &r.today);
    line(&mut out, "in flight", r.in_flight.to_string());
    line(&mut out, "scheduled retries", r.scheduled.to_string());
    line(&mut out, "dead letters", r.dead_letters.to_string());
    line(&mut out, "oldest message", age(r.oldest_age_seconds));
    line(&mut out, "memory", memory_text(&r.memory_bytes));
    let rows: Vec<Vec<String>> = r
        .consumers
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.in_flight.to_string(),
                c.staged.to_string(),
                heartbeat_text(c.heartbeat()),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str(if r.broker == QueueKind::List {
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
    out
}
