//! The JSON documents the dashboard serves.
//!
//! * The sampler's, typed: the overview (`GET /api/overview`, the `/` page) and a queue's
//!   history (`GET /api/queues/<queue>/history`, the rates of the queue page).
//! * Dead letters ([`dead_letters_json`]) and job records ([`job_json`], [`job_event_json`]):
//!   the documents of `pythia dlq list --json` and `pythia job --json`, which print them with
//!   these functions, so that the API and the commands agree.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use pythia_redis::queues::QueueKind;
use pythia_redis::queues::inspect::{Heartbeat, QueueInspection};
use pythia_redis::{DeadLetter, JobEvent, JobStatus};
use serde::Serialize;
use serde_json::{Value, json};

use crate::format::{hex, rfc3339};
use crate::sampler::{Sample, Tracked, counter_rate, rates};

/// Every tracked queue, and how they are sampled.
#[derive(Debug, Serialize)]
pub(super) struct Overview {
    pub(super) prefix: String,
    pub(super) sampled_at_ms: Option<u64>,
    pub(super) interval_ms: u64,
    pub(super) rate_window_seconds: u64,
    /// Why finding queues failed, last time.
    pub(super) discovery_error: Option<String>,
    /// The most queues tracked, when more were found.
    pub(super) queues_capped: Option<usize>,
    pub(super) circuit_breakers: CircuitBreakers,
    pub(super) queues: Vec<OverviewRow>,
}

/// What the dashboard says of circuit breakers (it reads none).
#[derive(Debug, Serialize)]
pub(super) struct CircuitBreakers {
    pub(super) shared_in_redis: bool,
    pub(super) note: &'static str,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        Self {
            shared_in_redis: false,
            note: "By default each worker keeps its circuit breaker in its own process; \
                   workers run with --breaker-shared keep it in Redis (pythia:{<queue>}:breaker), \
                   which this dashboard does not read yet. Each worker reports its breaker as \
                   pythia_circuit_breaker_state (0 closed, 1 half-open, 2 open) on its /metrics \
                   endpoint.",
        }
    }
}

/// One queue of the overview: its last inspection's numbers, its rates and sparklines.
#[derive(Debug, Serialize)]
pub(super) struct OverviewRow {
    pub(super) queue: String,
    /// `None` until it was inspected once.
    pub(super) broker: Option<QueueKind>,
    /// A stream's length.
    pub(super) length: Option<u64>,
    /// A stream's consumer groups.
    pub(super) groups: Option<usize>,
    pub(super) depth: Option<u64>,
    pub(super) in_flight: Option<u64>,
    pub(super) scheduled: Option<u64>,
    pub(super) dead_letters: Option<u64>,
    pub(super) oldest_age_seconds: Option<f64>,
    pub(super) consumers: usize,
    pub(super) consumers_alive: usize,
    pub(super) net_drain_per_second: Option<f64>,
    pub(super) dead_lettered_per_second: Option<f64>,
    pub(super) paused: bool,
    pub(super) processed_today: Option<u64>,
    pub(super) failed_today: Option<u64>,
    pub(super) processed_per_second: Option<f64>,
    pub(super) failed_per_second: Option<f64>,
    /// Why the last inspection failed.
    pub(super) error: Option<String>,
    pub(super) history: Series,
}

/// One queue's samples and rates.
#[derive(Debug, Serialize)]
pub(super) struct History {
    pub(super) queue: String,
    pub(super) paused: bool,
    pub(super) processed_today: Option<u64>,
    pub(super) failed_today: Option<u64>,
    pub(super) processed_per_second: Option<f64>,
    pub(super) failed_per_second: Option<f64>,
    pub(super) interval_ms: u64,
    pub(super) rate_window_seconds: u64,
    pub(super) net_drain_per_second: Option<f64>,
    pub(super) dead_lettered_per_second: Option<f64>,
    pub(super) history: Series,
}

/// Samples as columns.
#[derive(Debug, Serialize)]
pub(super) struct Series {
    pub(super) t_ms: Vec<u64>,
    pub(super) depth: Vec<u64>,
    pub(super) in_flight: Vec<u64>,
    pub(super) scheduled: Vec<u64>,
    pub(super) dead_letters: Vec<u64>,
}

/// The last `points` of `samples`, as columns.
pub(super) fn series(samples: &VecDeque<Sample>, points: usize) -> Series {
    let skip = samples.len().saturating_sub(points);
    let col = |f: fn(&Sample) -> u64| samples.iter().skip(skip).map(f).collect::<Vec<u64>>();
    Series {
        t_ms: col(|s| s.t_ms),
        depth: col(|s| s.depth),
        in_flight: col(|s| s.in_flight),
        scheduled: col(|s| s.scheduled),
        dead_letters: col(|s| s.dead_letters),
    }
}

/// One queue's overview row, with the last `points` samples.
pub(super) fn row(name: &str, t: &Tracked, points: usize) -> OverviewRow {
    let r = t.report.as_ref();
    let last = t.samples.back();
    let (drain, dead) = rates(&t.samples);
    let heartbeats = r.map(QueueInspection::heartbeats).unwrap_or_default();
    let stream = match r {
        Some(QueueInspection::Stream(s)) => Some(s),
        _ => None,
    };
    OverviewRow {
        queue: name.to_owned(),
        broker: r.map(kind),
        length: stream.map(|s| s.length),
        groups: stream.map(|s| s.groups.len()),
        depth: last.map(|s| s.depth),
        in_flight: last.map(|s| s.in_flight),
        scheduled: last.map(|s| s.scheduled),
        dead_letters: last.map(|s| s.dead_letters),
        oldest_age_seconds: r.and_then(QueueInspection::oldest_age_seconds),
        consumers: heartbeats.len(),
        consumers_alive: heartbeats
            .iter()
            .filter(|h| matches!(h, Heartbeat::Alive(_)))
            .count(),
        net_drain_per_second: drain,
        dead_lettered_per_second: dead,
        paused: t.paused,
        processed_today: last.map(|s| s.processed),
        failed_today: last.map(|s| s.failed),
        processed_per_second: counter_rate(&t.samples, |s| s.processed),
        failed_per_second: counter_rate(&t.samples, |s| s.failed),
        error: t.error.clone(),
        history: series(&t.samples, points),
    }
}

/// The kind an inspection's `broker` field names.
pub(super) fn kind(r: &QueueInspection) -> QueueKind {
    match r {
        QueueInspection::List(l) => l.broker,
        QueueInspection::Pubsub(_) => QueueKind::Pubsub,
        _ => QueueKind::Stream,
    }
}

/// One dead letter as `pythia dlq list --json` prints it (the body as lossy UTF-8, cut to
/// `preview` characters).
pub fn dead_letter_json(d: &DeadLetter, preview: usize) -> Value {
    let body = String::from_utf8_lossy(d.message.body());
    json!({
        "id": d.message.id(),
        "entry_id": d.location.entry_id(),
        "original_entry_id": d.location.original_entry_id(),
        "attempts": d.message.attempt(),
        "failed_at": d.failed_at.map(rfc3339),
        "failed_at_ms": d.failed_at.map(pythia_core::message::unix_millis),
        "error": d.reason,
        "headers": d.message.headers().iter().collect::<BTreeMap<_, _>>(),
        "body": body.chars().take(preview).collect::<String>(),
        "body_bytes": d.message.body().len(),
    })
}

/// The document of `pythia dlq list --json`: `letters`, the newest of the `total` dead
/// letters of `queue` (kept in `key`; `broker`: the queue's kind, when known).
pub fn dead_letters_json(
    queue: &str,
    key: &str,
    broker: Option<&str>,
    total: u64,
    letters: &[DeadLetter],
    preview: usize,
) -> Value {
    json!({
        "queue": queue,
        "broker": broker,
        "key": key,
        "total": total,
        "dead_letters": letters.iter().map(|d| dead_letter_json(d, preview)).collect::<Vec<_>>(),
    })
}

/// A job's status record as `pythia job --json` prints it (without its `events`).
pub fn job_json(s: &JobStatus) -> Value {
    let time = |t: Option<SystemTime>| t.map_or(Value::Null, |t| json!(rfc3339(t)));
    let (result, result_hex) = match &s.result {
        None => (None, None),
        Some(r) => match std::str::from_utf8(r) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(hex(r))),
        },
    };
    json!({
        "id": s.id,
        "queue": s.queue,
        "state": s.state.as_str(),
        "attempts": s.attempts,
        "queued_at": time(s.queued_at),
        "started_at": time(s.started_at),
        "finished_at": time(s.finished_at),
        "updated_at": time(s.updated_at),
        "progress": s.progress.map(|p| p.to_string()),
        "last_error": s.last_error,
        "result": result,
        "result_hex": result_hex,
    })
}

/// One event of a job's timeline as `pythia job --json` prints it: `at`, `kind`, `attempt`
/// and the event's own fields.
pub fn job_event_json(e: &JobEvent) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("at".into(), json!(rfc3339(e.at)));
    o.insert("kind".into(), json!(e.kind));
    o.insert("attempt".into(), json!(e.attempt));
    o.extend(e.fields.clone());
    Value::Object(o)
}
