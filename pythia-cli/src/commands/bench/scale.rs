//! The scale scenario: horizontal scaling of workers. For the stream consumer group and the
//! reliable list, and for each `--processes` count K: preloads `--messages` numbered messages
//! (not timed), starts K `bench-child --replica` processes on the same queue, lets them go at
//! once, and measures
//!
//! * the aggregate rate: messages over the time from the first replica's start to the last
//!   message any replica handled;
//! * the CPU seconds of all replicas together, and of Redis's main thread (`INFO cpu`,
//!   `used_cpu_*_main_thread`, from just before `go` to the last replica's exit): Redis runs
//!   commands on that one thread, so its CPU per message bounds one queue at
//!   1 / (Redis CPU per message) messages per second, whatever the number of workers;
//! * duplicates: every replica marks the numbers of the messages it handled in a bitmap (no
//!   Redis traffic) and reports them as ranges; handled in total minus distinct is the number
//!   of messages handled twice, which must be 0 in normal operation.

use std::process::Stdio;

use futures_util::future::try_join_all;
use pythia::redis::RedisConnection;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use super::child::RunResult;
use super::replica::NUMBER_DIGITS;
use super::{BenchArgs, Scenario};
use super::{child_command, clean, median, preload, preload_stream, processed_set};
use crate::error::CliError;

/// The brokers whose consumers share one queue.
const BROKERS: [Scenario; 2] = [Scenario::Stream, Scenario::ReliableList];

/// One (broker, process count): each figure is the median over the runs, except the
/// duplicate counts, which add up all runs.
#[derive(Debug, Serialize)]
pub(super) struct ScaleReport {
    scenario: &'static str,
    broker: &'static str,
    processes: u16,
    messages: u64,
    runs: u32,
    rate: f64,
    /// `rate` over the rate of the smallest process count.
    speedup: f64,
    seconds: f64,
    /// All worker processes together.
    cpu_seconds: f64,
    /// The largest worker process.
    peak_rss_bytes: u64,
    /// Redis's main thread.
    redis_cpu_seconds: f64,
    redis_cpu_us_per_message: f64,
    /// 1 / (Redis CPU per message): the rate at which Redis's thread would be saturated.
    redis_bound_rate: f64,
    processed_all_runs: u64,
    distinct_all_runs: u64,
    duplicates_all_runs: u64,
    all_rates: Vec<f64>,
}

/// What one drain by K replicas measured.
#[derive(Debug, Default)]
struct ScaleRun {
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_bytes: u64,
    redis_cpu_seconds: f64,
    handled: u64,
    distinct: u64,
}

pub(super) async fn run(
    url: &str,
    conn: &RedisConnection,
    args: &BenchArgs,
) -> Result<Vec<ScaleReport>, CliError> {
    if args.size < NUMBER_DIGITS {
        return Err(CliError::usage(format!(
            "the scale scenario needs --size {NUMBER_DIGITS} or more: each body starts with its number"
        )));
    }
    let mut counts = args.processes.clone();
    counts.sort_unstable();
    counts.dedup();
    // Runs outermost, so that a slow moment of the shared machine hits every K alike.
    let mut runs: Vec<Vec<Vec<ScaleRun>>> = BROKERS
        .iter()
        .map(|_| counts.iter().map(|_| Vec::new()).collect())
        .collect();
    for run in 0..args.runs {
        for (b, &broker) in BROKERS.iter().enumerate() {
            for (i, &k) in counts.iter().enumerate() {
                let queue = format!("bench-scale-{}-{k}-{run}", broker.name());
                let r = drain_with(url, conn, args, broker, k, &queue).await;
                clean(conn, &queue).await;
                runs[b][i].push(r?);
            }
        }
    }
    let mut reports = Vec::new();
    for (b, &broker) in BROKERS.iter().enumerate() {
        let mut base = None;
        for (i, &k) in counts.iter().enumerate() {
            let r = report(args, broker, k, &runs[b][i]);
            let base_rate = *base.get_or_insert(r.rate);
            reports.push(ScaleReport {
                speedup: r.rate / base_rate.max(1e-9),
                ..r
            });
        }
    }
    Ok(reports)
}

fn report(args: &BenchArgs, broker: Scenario, k: u16, runs: &[ScaleRun]) -> ScaleReport {
    let n = args.messages;
    let all_rates: Vec<f64> = runs.iter().map(|r| n as f64 / r.seconds).collect();
    let of = |f: fn(&ScaleRun) -> f64| median(runs.iter().map(f).collect());
    let redis_cpu_seconds = of(|r| r.redis_cpu_seconds);
    let per_message = redis_cpu_seconds / n as f64;
    let processed: u64 = runs.iter().map(|r| r.handled).sum();
    let distinct: u64 = runs.iter().map(|r| r.distinct).sum();
    ScaleReport {
        scenario: Scenario::Scale.name(),
        broker: broker.name(),
        processes: k,
        messages: n,
        runs: args.runs,
        rate: median(all_rates.clone()),
        speedup: 1.0,
        seconds: of(|r| r.seconds),
        cpu_seconds: of(|r| r.cpu_seconds),
        peak_rss_bytes: runs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
        redis_cpu_seconds,
        redis_cpu_us_per_message: per_message * 1e6,
        redis_bound_rate: if per_message > 0.0 {
            1.0 / per_message
        } else {
            f64::INFINITY
        },
        processed_all_runs: processed,
        distinct_all_runs: distinct,
        duplicates_all_runs: processed - distinct,
        all_rates,
    }
}

/// Preloads `queue`, drains it with `k` replicas started together, and checks that every
/// message was handled.
async fn drain_with(
    url: &str,
    conn: &RedisConnection,
    args: &BenchArgs,
    broker: Scenario,
    k: u16,
    queue: &str,
) -> Result<ScaleRun, CliError> {
    let n = args.messages;
    clean(conn, queue).await;
    if broker == Scenario::Stream {
        preload_stream(conn, queue, n, args.size).await?;
    } else {
        preload(conn, queue, n, args.size).await?;
    }
    let mut replicas = Vec::new();
    for _ in 0..k {
        let mut cmd = child_command(url, args, broker, queue, n, args.concurrency)?;
        let mut child = cmd
            .arg("--replica")
            .stdin(Stdio::piped())
            .spawn()
            .map_err(CliError::runtime)?;
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        replicas.push((child, lines));
    }
    for (_, lines) in &mut replicas {
        let line = lines.next_line().await.map_err(CliError::runtime)?;
        if line.as_deref() != Some("ready") {
            return Err(CliError::runtime(format!(
                "scale: a {} replica did not start (said {line:?})",
                broker.name()
            )));
        }
    }
    let redis_before = redis_main_thread_cpu(conn).await?;
    for (child, _) in &mut replicas {
        let stdin = child.stdin.as_mut().expect("piped");
        stdin.write_all(b"go\n").await.map_err(CliError::runtime)?;
        stdin.flush().await.map_err(CliError::runtime)?;
    }
    let results = try_join_all(replicas.into_iter().map(|(c, l)| finish(c, l, broker))).await?;
    let redis_after = redis_main_thread_cpu(conn).await?;

    let records: Vec<_> = results.iter().filter_map(|r| r.replica.as_ref()).collect();
    let started = records.iter().map(|r| r.started_ns).min().unwrap_or(0);
    let last = records.iter().map(|r| r.last_done_ns).max().unwrap_or(0);
    let unnumbered: u64 = records.iter().map(|r| r.unnumbered).sum();
    let run = ScaleRun {
        seconds: last.saturating_sub(started) as f64 / 1e9,
        cpu_seconds: results.iter().map(|r| r.cpu_seconds).sum(),
        peak_rss_bytes: results.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
        redis_cpu_seconds: redis_after - redis_before,
        handled: records.iter().map(|r| r.handled).sum(),
        distinct: processed_set::distinct(records.iter().map(|r| r.seen.as_slice())),
    };
    if records.len() != usize::from(k) || run.distinct != n || unnumbered > 0 || run.seconds <= 0.0
    {
        return Err(CliError::runtime(format!(
            "scale {} with {k} processes: {} reports, {} distinct messages of {n}, {unnumbered} unnumbered",
            broker.name(),
            records.len(),
            run.distinct
        )));
    }
    Ok(run)
}

/// Reads a replica's last line (its [`RunResult`]) and waits for it to exit.
async fn finish(
    mut child: Child,
    mut lines: Lines<BufReader<ChildStdout>>,
    broker: Scenario,
) -> Result<RunResult, CliError> {
    let mut last = String::new();
    while let Some(l) = lines.next_line().await.map_err(CliError::runtime)? {
        last = l;
    }
    let status = child.wait().await.map_err(CliError::runtime)?;
    if !status.success() {
        return Err(CliError::runtime(format!(
            "a {} replica failed: {status}",
            broker.name()
        )));
    }
    serde_json::from_str(&last)
        .map_err(|e| CliError::runtime(format!("bad replica output {last:?}: {e}")))
}

/// CPU seconds (user + system) of Redis's main thread, which runs every command; the whole
/// process's figures where the server does not report the thread's (before Redis 6.2).
async fn redis_main_thread_cpu(conn: &RedisConnection) -> Result<f64, CliError> {
    let mut m = conn.manager();
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("INFO cpu", e)))?;
    let field = |name: &str| {
        info.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    match (
        field("used_cpu_user_main_thread"),
        field("used_cpu_sys_main_thread"),
    ) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => Ok(field("used_cpu_user").unwrap_or(0.0) + field("used_cpu_sys").unwrap_or(0.0)),
    }
}

pub(super) fn print_line(r: &ScaleReport) -> Result<(), CliError> {
    let mb = r.peak_rss_bytes as f64 / 1_048_576.0;
    let duplicates = if r.duplicates_all_runs == 0 {
        format!(
            "no duplicates ({} handled = {} distinct over {} runs)",
            r.processed_all_runs, r.distinct_all_runs, r.runs
        )
    } else {
        format!(
            "{} DUPLICATES ({} handled, {} distinct over {} runs; expected none)",
            r.duplicates_all_runs, r.processed_all_runs, r.distinct_all_runs, r.runs
        )
    };
    crate::output::outln!(
        "scale {:<13} {:>2} proc {:>10.0} msg/s  x{:.2}  {:.3}s  workers cpu {:.2}s  redis cpu {:.2}s = {:.2} us/msg (bound {:.0} msg/s)  rss {mb:.1} MB  {duplicates}",
        r.broker,
        r.processes,
        r.rate,
        r.speedup,
        r.seconds,
        r.cpu_seconds,
        r.redis_cpu_seconds,
        r.redis_cpu_us_per_message,
        r.redis_bound_rate
    )
}
