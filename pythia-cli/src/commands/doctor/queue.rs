//! `pythia doctor --queue Q`'s checks of the queue itself, read from the library's
//! [`QueueReport`] (kind, depth, in flight, scheduled, oldest age, pause flag, dead letters,
//! today's counts): is it known, is it paused, does it hold dead letters; and, from its
//! [`QueueInspection`] (each consumer with its heartbeat), are its consumers alive, or do
//! consumers without a heartbeat hold in-flight messages?

use std::collections::BTreeMap;
use std::time::Duration;

use pythia::redis::RedisConnection;
use pythia::redis::queues::inspect::{
    InspectError, InspectOptions, QueueInspection, StreamInspection, inspect_queue,
};
use pythia::redis::queues::{QueueKind, QueueReport, queue_report};

use super::report::{Check, Status};
use crate::commands::human_duration;

/// The queue's report and its checks. A report that cannot be read (a user denied the reads,
/// say) is one warning, not an abort: the other checks still stand.
pub(super) async fn queue_checks(
    conn: &RedisConnection,
    queue: &str,
) -> (Option<QueueReport>, Vec<Check>) {
    let report = match queue_report(conn, queue).await {
        Ok(r) => r,
        Err(e) => {
            let detail = format!("cannot read queue {queue:?}'s report: {e}");
            return (None, vec![Check::new("queue", Status::Warn, detail)]);
        }
    };
    if is_unknown(&report) {
        let check = Check::new(
            "queue",
            Status::Warn,
            format!(
                "queue {queue:?} is unknown: not in the registry, and nothing is queued, in flight, scheduled or dead-lettered under it"
            ),
        )
        .fix("check --queue and --key-prefix (`pythia queues` lists the known queues)");
        return (Some(report), vec![check]);
    }
    let mut checks = vec![overview(&report), paused(&report), dead_letters(&report)];
    // A list registered by its producers only is a reliable list once consumers register in
    // its consumer set; a plain list's consumers never do, so it gets no consumers check.
    if report.kind != QueueKind::Pubsub {
        match liveness(conn, &report).await {
            Ok(l) if report.kind == QueueKind::List && l.alive == 0 && l.dead.is_empty() => {}
            Ok(l) => checks.push(consumers(&report, &l)),
            Err(e) => checks.push(Check::new(
                "consumers",
                Status::Warn,
                format!("cannot read the consumers' heartbeats: {e}"),
            )),
        }
    }
    (Some(report), checks)
}

/// Nothing tells the queue exists: a typo, another key prefix, or a queue not used yet.
fn is_unknown(r: &QueueReport) -> bool {
    !r.registered
        && r.depth == 0
        && r.in_flight == 0
        && r.scheduled == 0
        && r.dead_letters == 0
        && r.consumers == 0
}

/// The numbers, always a pass: what the other checks judge.
fn overview(r: &QueueReport) -> Check {
    let oldest = r
        .oldest_age_seconds
        .map(|s| format!(", the oldest waiting {}", human_duration(secs(s))))
        .unwrap_or_default();
    Check::new(
        "queue",
        Status::Pass,
        format!(
            "{} queue {:?}: {} waiting, {} in flight, {} scheduled{oldest}; today {} processed, {} failed, {} retried",
            r.kind,
            r.name,
            r.depth,
            r.in_flight,
            r.scheduled,
            r.today.processed,
            r.today.failed,
            r.today.retried
        ),
    )
}

fn paused(r: &QueueReport) -> Check {
    if r.paused {
        Check::new(
            "paused",
            Status::Warn,
            format!(
                "queue {:?} is paused: its workers fetch nothing ({} waiting)",
                r.name, r.depth
            ),
        )
        .fix(format!("pythia resume --queue {}", r.name))
    } else {
        Check::new(
            "paused",
            Status::Pass,
            format!("queue {:?} is not paused", r.name),
        )
    }
}

fn dead_letters(r: &QueueReport) -> Check {
    if r.dead_letters == 0 {
        return Check::new("dead-letters", Status::Pass, "no dead letters");
    }
    Check::new(
        "dead-letters",
        Status::Warn,
        format!(
            "{} dead letter{} ({} today)",
            r.dead_letters,
            if r.dead_letters == 1 { "" } else { "s" },
            r.today.failed
        ),
    )
    .fix(format!(
        "see why with `pythia dlq list --queue {q}`; once fixed, `pythia dlq replay --queue {q}` (or `pythia dlq purge`)",
        q = r.name
    ))
}

/// The Pythia consumers of a queue: alive (their heartbeat key exists) or not, and the
/// messages each holds (a reliable list's in-flight hash and staging list, a stream's pending
/// entries in each group, a sharded stream's in each shard).
#[derive(Debug, Default)]
struct Liveness {
    alive: u64,
    /// `(consumer, messages held)` of each consumer without a heartbeat.
    dead: Vec<(String, u64)>,
}

/// The liveness of the queue's consumers, from the library's inspection of it. A stream
/// without a consumer group has no consumer to inspect (nor has a sharded queue without a
/// stored layout, which has no groups either).
async fn liveness(conn: &RedisConnection, r: &QueueReport) -> Result<Liveness, InspectError> {
    let streams = matches!(r.kind, QueueKind::Stream | QueueKind::ShardedStream);
    if streams && r.groups.is_empty() {
        return Ok(Liveness::default());
    }
    let options = InspectOptions::new().with_kind(r.kind);
    Ok(Liveness::of(&inspect_queue(conn, &r.name, &options).await?))
}

impl Liveness {
    /// Every Pythia consumer of `inspection`: a list's registered ones; a stream's (every
    /// shard's) in each group, listed by Redis or registered only. A consumer of several
    /// groups or shards counts once: alive when any of its heartbeats is, holding what it
    /// holds in each where it has none.
    fn of<'a>(inspection: &'a QueueInspection) -> Self {
        let mut seen: BTreeMap<&'a str, (bool, u64)> = BTreeMap::new();
        let mut tally = |c: &'a str, alive: bool, held: u64| {
            let e = seen.entry(c).or_default();
            e.0 |= alive;
            if !alive {
                e.1 += held;
            }
        };
        let streams: Vec<&StreamInspection> = match inspection {
            QueueInspection::List(l) => {
                for c in &l.consumers {
                    tally(&c.name, c.alive, c.in_flight + c.staged);
                }
                Vec::new()
            }
            QueueInspection::Stream(s) => vec![s],
            QueueInspection::Sharded(s) => s.shards.iter().collect(),
            _ => Vec::new(),
        };
        for g in streams.into_iter().flat_map(|s| &s.groups) {
            // `alive` is `None` for a consumer of another library: not Pythia's to judge.
            for c in g.consumers.iter().chain(&g.unlisted_consumers) {
                if let Some(alive) = c.alive {
                    tally(&c.name, alive, c.pending);
                }
            }
        }
        let mut out = Self::default();
        for (c, (alive, held)) in seen {
            if alive {
                out.alive += 1;
            } else {
                out.dead.push((c.to_owned(), held));
            }
        }
        out
    }
}

fn consumers(r: &QueueReport, l: &Liveness) -> Check {
    let held: u64 = l.dead.iter().map(|(_, n)| n).sum();
    let dead_text = if l.dead.is_empty() {
        String::new()
    } else {
        format!(", {} without a heartbeat", l.dead.len())
    };
    if held > 0 {
        let holders: Vec<String> = l
            .dead
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| format!("{c} ({n})"))
            .collect();
        return Check::new(
            "consumers",
            Status::Warn,
            format!(
                "{} alive{dead_text}, holding {held} in-flight message{}: {}",
                l.alive,
                if held == 1 { "" } else { "s" },
                holders.join(", ")
            ),
        )
        .fix(format!(
            "a running worker of the queue hands them back to the queue once its own heartbeat has lasted a whole lifetime; start one if none runs (`pythia run --queue {} --broker {}`)",
            r.name,
            broker_flag(r.kind)
        ));
    }
    if l.alive == 0 && r.depth > 0 && !r.paused {
        return Check::new(
            "consumers",
            Status::Warn,
            format!(
                "no live consumer{dead_text}: {} messages wait and nothing drains them",
                r.depth
            ),
        )
        .fix(format!(
            "start a worker: `pythia run --queue {} --broker {}`",
            r.name,
            broker_flag(r.kind)
        ));
    }
    Check::new(
        "consumers",
        Status::Pass,
        format!("{} alive{dead_text}", l.alive),
    )
}

/// The `--broker` value of `pythia run` for a queue of `kind` (a list with registered
/// consumers is a reliable list).
fn broker_flag(kind: QueueKind) -> &'static str {
    match kind {
        QueueKind::Stream | QueueKind::ShardedStream => "stream",
        _ => "reliable-list",
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}
