//! The priority scenario: many queues in one worker (`QueueSet`), in this process. For each run,
//! over reliable lists preloaded so that no queue empties before the end (not timed), a no-op
//! worker handles `--messages` messages
//!
//! * from one queue (the plain broker): the reference rate;
//! * from `high` and `low` in strict priority: what share came from `low` (0 when strict holds:
//!   `high` never empties) and the rate against one queue;
//! * from `critical`, `default` and `low` weighted 6:3:1: each queue's share (the weights' are
//!   60, 30 and 10 %) and the rate against one queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pythia::queues::QueueSet;
use pythia::redis::{RedisConnection, ReliableListBroker};
use pythia::{Broker, CancellationToken, Message, WorkerRuntime, worker_fn};
use serde::Serialize;

use super::BenchArgs;
use super::{clean, median, preload};
use crate::error::CliError;

/// One mode's figures, medians over the runs.
#[derive(Debug, Serialize)]
pub(super) struct PriorityReport {
    scenario: &'static str,
    mode: &'static str,
    messages: u64,
    runs: u32,
    rate: f64,
    /// `rate` over the one-queue rate of the same run (median of the pairs).
    fraction_of_single: Option<f64>,
    /// The worker's CPU per message (this process, not Redis), microseconds, median.
    cpu_us_per_message: f64,
    /// Each queue's name, weight (1 in strict mode) and share of the handled messages.
    split: Vec<QueueShare>,
    all_rates: Vec<f64>,
}

/// One queue's part of a mode's messages.
#[derive(Debug, Clone, Serialize)]
struct QueueShare {
    queue: String,
    weight: u32,
    share: f64,
}

/// What one drain measured.
struct Drain {
    rate: f64,
    /// This process's CPU (the worker's, not Redis's) per message, in microseconds: steadier
    /// than the rate on a shared machine.
    cpu_us: f64,
    /// Messages handled per queue name.
    counts: Vec<(String, u64)>,
}

/// Handles `n` messages of `broker` with a no-op worker, then stops; counts them per queue.
async fn drain<B: Broker>(broker: B, n: u64, args: &BenchArgs) -> Result<Drain, CliError> {
    let names: Vec<String> = broker
        .queues()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    let counts: Arc<Vec<AtomicU64>> = Arc::new(names.iter().map(|_| AtomicU64::new(0)).collect());
    let handled = Arc::new(AtomicU64::new(0));
    let done_at = Arc::new(Mutex::new(None::<Instant>));
    let stop = CancellationToken::new();
    let worker = {
        let (names, counts, handled, done_at, stop) = (
            names.clone(),
            Arc::clone(&counts),
            Arc::clone(&handled),
            Arc::clone(&done_at),
            stop.clone(),
        );
        worker_fn(move |msg: Message| {
            let q = names.iter().position(|q| q == msg.source().name());
            if let Some(q) = q {
                counts[q].fetch_add(1, Ordering::Relaxed);
            }
            if handled.fetch_add(1, Ordering::Relaxed) + 1 == n {
                *done_at.lock().expect("done time") = Some(Instant::now());
                stop.cancel();
            }
            async { Ok(()) }
        })
    };
    let cpu_before = super::proc_stats::ProcStats::read().cpu_seconds;
    let started = Instant::now();
    WorkerRuntime::new(broker, worker)
        .with_concurrency(args.concurrency)
        .with_batch_size(args.batch_size)
        .with_prefetch(args.prefetch)
        .with_signal_handling(false)
        .with_stats_interval(None)
        .with_cancellation(stop)
        .run()
        .await
        .map_err(CliError::runtime)?;
    let done = done_at
        .lock()
        .expect("done time")
        .unwrap_or_else(Instant::now);
    let secs = done.duration_since(started).as_secs_f64().max(1e-9);
    let cpu = super::proc_stats::ProcStats::read().cpu_seconds - cpu_before;
    Ok(Drain {
        rate: n as f64 / secs,
        cpu_us: cpu * 1e6 / n as f64,
        counts: names
            .into_iter()
            .zip(counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect(),
    })
}

/// The three modes, `--runs` times each, one queue first in each run.
pub(super) async fn run(
    conn: &RedisConnection,
    args: &BenchArgs,
) -> Result<Vec<PriorityReport>, CliError> {
    let n = args.messages;
    let mut single = Vec::new();
    let mut strict = Vec::new();
    let mut weighted = Vec::new();
    let strict_queues = [("high", 1u32), ("low", 1)];
    let weighted_queues = [("critical", 6u32), ("default", 3), ("low", 1)];
    for run in 0..args.runs {
        let key = |q: &str| format!("bench-priority-{run}-{q}");

        let one = key("single");
        clean(conn, &one).await;
        preload(conn, &one, n, args.size).await?;
        single.push(drain(ReliableListBroker::new(conn, &one), n, args).await?);
        clean(conn, &one).await;

        // Each queue holds all `n`: none empties before the end.
        for (q, _) in strict_queues {
            clean(conn, &key(q)).await;
            preload(conn, &key(q), n, args.size).await?;
        }
        let set =
            QueueSet::strict(strict_queues.map(|(q, _)| ReliableListBroker::new(conn, &key(q))))
                .map_err(CliError::runtime)?;
        strict.push(drain(set, n, args).await?);
        for (q, _) in strict_queues {
            clean(conn, &key(q)).await;
        }

        for (q, _) in weighted_queues {
            clean(conn, &key(q)).await;
            preload(conn, &key(q), n, args.size).await?;
        }
        let set = QueueSet::weighted(
            weighted_queues.map(|(q, w)| (ReliableListBroker::new(conn, &key(q)), w)),
        )
        .map_err(CliError::runtime)?;
        weighted.push(drain(set, n, args).await?);
        for (q, _) in weighted_queues {
            clean(conn, &key(q)).await;
        }
    }
    let report = |mode: &'static str, drains: &[Drain], weights: &[(&str, u32)]| {
        let all_rates: Vec<f64> = drains.iter().map(|d| d.rate).collect();
        let total: u64 = drains
            .iter()
            .flat_map(|d| d.counts.iter().map(|(_, c)| c))
            .sum();
        let split = weights
            .iter()
            .enumerate()
            .map(|(i, (q, w))| QueueShare {
                queue: (*q).to_owned(),
                weight: *w,
                share: drains.iter().map(|d| d.counts[i].1).sum::<u64>() as f64
                    / total.max(1) as f64,
            })
            .collect();
        PriorityReport {
            scenario: "priority",
            mode,
            messages: n,
            runs: args.runs,
            rate: median(all_rates.clone()),
            fraction_of_single: (mode != "single").then(|| {
                median(
                    drains
                        .iter()
                        .zip(&single)
                        .map(|(d, s)| d.rate / s.rate.max(1e-9))
                        .collect(),
                )
            }),
            cpu_us_per_message: median(drains.iter().map(|d| d.cpu_us).collect()),
            split,
            all_rates,
        }
    };
    Ok(vec![
        report("single", &single, &[("single", 1)]),
        report("strict", &strict, &strict_queues),
        report("weighted", &weighted, &weighted_queues),
    ])
}

/// One line per mode.
pub(super) fn print_line(r: &PriorityReport) -> Result<(), CliError> {
    let split: Vec<String> = r
        .split
        .iter()
        .map(|s| format!("{} {:.1}%", s.queue, s.share * 100.0))
        .collect();
    let weights: Vec<String> = r.split.iter().map(|s| s.weight.to_string()).collect();
    crate::output::outln!(
        "priority {:<9} {:>10.0} msg/s  cpu {:.2} us/msg  {}  split {}{}",
        r.mode,
        r.rate,
        r.cpu_us_per_message,
        r.fraction_of_single
            .map(|f| format!("{:>5.1}% of one queue", f * 100.0))
            .unwrap_or_else(|| "   (one queue)    ".to_owned()),
        split.join(", "),
        if r.mode == "weighted" {
            format!(" (weights {})", weights.join(":"))
        } else {
            String::new()
        }
    )
}
