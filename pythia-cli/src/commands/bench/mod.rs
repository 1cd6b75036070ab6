//! `pythia bench`: for each scenario, preloads a queue (not timed), drains it in a child
//! process with a no-op worker, and does the same with the bare client loop of the same Redis
//! commands; prints the median rate of each, the framework's share of the bare rate, the
//! worker's CPU seconds and peak RSS. The latency scenario offers a paced load and prints
//! enqueue-to-start percentiles. The scale scenario (not in the default list) runs many worker
//! processes on one queue (see `scale.rs`); the priority scenario (neither) many queues in one
//! worker (see `priority.rs`).

mod args;
pub(crate) mod child;
mod exec_persistent;
mod http;
mod priority;
mod proc_stats;
mod processed_set;
mod produce;
mod replica;
mod scale;

use std::process::Stdio;
use std::time::{Duration, Instant};

use pythia::Message;
use pythia::redis::{Encoding, ListProducer, Publisher, RedisConnection, StreamProducer};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

pub(crate) use self::args::{BenchArgs, BenchChildArgs, Scenario};
use self::child::{RunResult, SENT_NS_HEADER, now_ns};

use crate::commands::produce::numbered_body;
use crate::error::CliError;
use crate::local_redis::LocalRedis;

const ALL: [Scenario; 10] = [
    Scenario::List,
    Scenario::ReliableList,
    Scenario::Stream,
    Scenario::Pubsub,
    Scenario::ProduceList,
    Scenario::ProduceStream,
    Scenario::IoBound,
    Scenario::Http,
    Scenario::Latency,
    Scenario::ExecPersistent,
];

/// One scenario's figures (medians over the runs).
#[derive(Debug, Serialize)]
struct ScenarioReport {
    scenario: &'static str,
    messages: u64,
    runs: u32,
    rate: f64,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_bytes: u64,
    bare_rate: Option<f64>,
    fraction_of_bare: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    bare_p99_ms: Option<f64>,
    all_rates: Vec<f64>,
    all_bare_rates: Vec<f64>,
    /// Pub/sub: the median run's most messages held in process at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_backlog: Option<u64>,
}

/// One line of the report.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Report {
    Scenario(ScenarioReport),
    Scale(scale::ScaleReport),
    Priority(priority::PriorityReport),
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) async fn bench(args: BenchArgs) -> Result<(), CliError> {
    let (url, local) = LocalRedis::unless_given(args.redis_url.as_deref())
        .await
        .map_err(CliError::usage)?;
    let result = run_all(&url, &args).await;
    if let Some(l) = local {
        l.stop().await;
    }
    result
}

async fn run_all(url: &str, args: &BenchArgs) -> Result<(), CliError> {
    let conn = crate::commands::connect_url(url, "pythia").await?;
    let scenarios = if args.scenarios.is_empty() {
        ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    if !args.json {
        crate::output::outln!(
            "pythia bench: {} messages of {} B, {} runs (median), concurrency {}, batch {}, Redis {}",
            args.messages,
            args.size,
            args.runs,
            args.concurrency,
            args.batch_size,
            conn.config().masked_url()
        )?;
    }
    let mut reports = Vec::new();
    for s in scenarios {
        if s == Scenario::Scale {
            for r in scale::run(url, &conn, args).await? {
                if !args.json {
                    scale::print_line(&r)?;
                }
                reports.push(Report::Scale(r));
            }
            continue;
        }
        if s == Scenario::Priority {
            for r in priority::run(&conn, args).await? {
                if !args.json {
                    priority::print_line(&r)?;
                }
                reports.push(Report::Priority(r));
            }
            continue;
        }
        if s == Scenario::ExecPersistent && !exec_persistent::python_available().await {
            crate::output::errln!("exec-persistent: skipped (python3 does not run here)");
            continue;
        }
        let r = run_scenario(url, &conn, args, s).await?;
        if !args.json {
            print_line(&r)?;
        }
        reports.push(Report::Scenario(r));
    }
    if args.json {
        crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&reports).map_err(CliError::runtime)?
        )?;
    }
    Ok(())
}

fn print_line(r: &ScenarioReport) -> Result<(), CliError> {
    let mb = r.peak_rss_bytes as f64 / 1_048_576.0;
    match (r.p99_ms, r.bare_rate) {
        (Some(p99), _) => crate::output::outln!(
            "{:<14} p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  (bare loop p99 {:.2} ms; {} msgs offered at {:.0} msg/s)  cpu {:.2}s  rss {mb:.1} MB",
            r.scenario,
            r.p50_ms.unwrap_or(0.0),
            p99,
            r.p999_ms.unwrap_or(0.0),
            r.bare_p99_ms.unwrap_or(f64::NAN),
            r.messages,
            r.rate,
            r.cpu_seconds
        )?,
        (None, Some(bare)) => crate::output::outln!(
            "{:<14} {:>10.0} msg/s  bare {:>10.0} msg/s  {:>5.1}% of bare  {:.3}s  cpu {:.2}s  rss {mb:.1} MB{}",
            r.scenario,
            r.rate,
            bare,
            r.fraction_of_bare.unwrap_or(0.0) * 100.0,
            r.seconds,
            r.cpu_seconds,
            r.peak_backlog
                .map(|n| format!(" (peak backlog {n} msgs)"))
                .unwrap_or_default()
        )?,
        (None, None) => crate::output::outln!(
            "{:<14} {:>10.0} msg/s  {:.3}s  cpu {:.2}s  rss {mb:.1} MB",
            r.scenario,
            r.rate,
            r.seconds,
            r.cpu_seconds
        )?,
    }
    Ok(())
}

async fn preload(conn: &RedisConnection, queue: &str, n: u64, size: usize) -> Result<(), CliError> {
    let p = ListProducer::new(conn, queue).with_encoding(Encoding::Raw);
    let mut i = 0;
    while i < n {
        let k = (n - i).min(50_000);
        let bodies: Vec<Vec<u8>> = (i..i + k).map(|j| numbered_body(j, size)).collect();
        p.push_payloads(&bodies).await.map_err(CliError::runtime)?;
        i += k;
    }
    Ok(())
}

async fn preload_stream(
    conn: &RedisConnection,
    queue: &str,
    n: u64,
    size: usize,
) -> Result<(), CliError> {
    let p = StreamProducer::new(conn, queue).with_encoding(Encoding::Raw);
    let mut i = 0;
    while i < n {
        let k = (n - i).min(50_000);
        let msgs: Vec<Message> = (i..i + k)
            .map(|j| Message::new(numbered_body(j, size)))
            .collect();
        p.add_many(&msgs).await.map_err(CliError::runtime)?;
        i += k;
    }
    Ok(())
}

/// Publishes `n` raw bodies as fast as Redis takes them.
async fn publish_all(
    conn: &RedisConnection,
    channel: &str,
    n: u64,
    size: usize,
) -> Result<(), CliError> {
    let p = Publisher::new(conn, channel).with_encoding(Encoding::Raw);
    let mut i = 0;
    while i < n {
        let k = (n - i).min(10_000);
        let bodies: Vec<Vec<u8>> = (i..i + k).map(|j| numbered_body(j, size)).collect();
        p.publish_payloads(&bodies)
            .await
            .map_err(CliError::runtime)?;
        i += k;
    }
    Ok(())
}

async fn clean(conn: &RedisConnection, queue: &str) {
    let mut m = conn.manager();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("pythia:{{{queue}}}:*"))
        .query_async(&mut m)
        .await
        .unwrap_or_default();
    keys.push(queue.to_owned());
    let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut m).await;
}

async fn run_scenario(
    url: &str,
    conn: &RedisConnection,
    args: &BenchArgs,
    s: Scenario,
) -> Result<ScenarioReport, CliError> {
    let mut framework = Vec::new();
    let mut bare = Vec::new();
    let has_bare = true;
    let messages = match s {
        Scenario::Latency => {
            (args.latency_rate * args.latency_duration.as_secs_f64()).max(1.0) as u64
        }
        _ => args.messages,
    };
    for run in 0..args.runs {
        for is_bare in [false, true] {
            if is_bare && !has_bare {
                continue;
            }
            let queue = format!(
                "bench-{}-{run}-{}",
                s.name(),
                if is_bare { "bare" } else { "pythia" }
            );
            clean(conn, &queue).await;
            if s == Scenario::Stream {
                preload_stream(conn, &queue, messages, args.size).await?;
            }
            if matches!(
                s,
                Scenario::List
                    | Scenario::ReliableList
                    | Scenario::IoBound
                    | Scenario::Http
                    | Scenario::ExecPersistent
            ) {
                preload(conn, &queue, messages, args.size).await?;
            }
            let concurrency = match s {
                Scenario::IoBound => args.io_concurrency,
                Scenario::Http => args.http_concurrency,
                _ => args.concurrency,
            };
            let r = spawn_child(url, conn, args, s, is_bare, &queue, messages, concurrency).await?;
            clean(conn, &queue).await;
            if r.processed != messages {
                return Err(CliError::runtime(format!(
                    "{} run {run}: processed {} of {messages}",
                    s.name(),
                    r.processed
                )));
            }
            if is_bare {
                bare.push(r)
            } else {
                framework.push(r)
            }
        }
    }
    let rate = |r: &RunResult| r.processed as f64 / r.seconds.max(1e-9);
    let all_rates: Vec<f64> = framework.iter().map(rate).collect();
    let med = median(all_rates.clone());
    // The run whose rate is the median supplies the other figures.
    let pick = framework
        .iter()
        .min_by(|a, b| (rate(a) - med).abs().total_cmp(&(rate(b) - med).abs()))
        .cloned()
        .unwrap_or_default();
    let bare_rate = has_bare.then(|| median(bare.iter().map(rate).collect()));
    Ok(ScenarioReport {
        scenario: s.name(),
        messages,
        runs: args.runs,
        rate: med,
        seconds: pick.seconds,
        cpu_seconds: pick.cpu_seconds,
        peak_rss_bytes: pick.peak_rss_bytes,
        // Each run's framework rate against the bare rate measured right after it: the
        // machine's speed drifts between minutes, so pairs share its state where medians taken
        // apart would not.
        fraction_of_bare: has_bare.then(|| {
            median(
                framework
                    .iter()
                    .zip(&bare)
                    .map(|(f, b)| rate(f) / rate(b).max(1e-9))
                    .collect(),
            )
        }),
        bare_rate,
        p50_ms: median_of(&framework, |r| r.p50_ms),
        p99_ms: median_of(&framework, |r| r.p99_ms),
        p999_ms: median_of(&framework, |r| r.p999_ms),
        bare_p99_ms: median_of(&bare, |r| r.p99_ms),
        all_rates,
        all_bare_rates: bare.iter().map(rate).collect(),
        peak_backlog: pick.peak_backlog,
    })
}

fn median_of(runs: &[RunResult], f: impl Fn(&RunResult) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = runs.iter().filter_map(f).collect();
    (!v.is_empty()).then(|| median(v))
}

#[allow(clippy::too_many_arguments)]
async fn spawn_child(
    url: &str,
    conn: &RedisConnection,
    args: &BenchArgs,
    s: Scenario,
    bare: bool,
    queue: &str,
    messages: u64,
    concurrency: usize,
) -> Result<RunResult, CliError> {
    let mut cmd = child_command(url, args, s, queue, messages, concurrency)?;
    if bare {
        cmd.arg("--bare");
    }
    let mut child = cmd.spawn().map_err(CliError::runtime)?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut last = String::new();
    if matches!(s, Scenario::Latency | Scenario::Pubsub) {
        // Wait for the consumer, then offer the load.
        while let Some(l) = lines.next_line().await.map_err(CliError::runtime)? {
            if l == "ready" {
                break;
            }
        }
        if s == Scenario::Latency {
            paced_produce(conn, queue, messages, args).await?;
        } else {
            publish_all(conn, queue, messages, args.size).await?;
        }
    }
    while let Some(l) = lines.next_line().await.map_err(CliError::runtime)? {
        last = l;
    }
    let status = child.wait().await.map_err(CliError::runtime)?;
    if !status.success() {
        return Err(CliError::runtime(format!(
            "bench child for {} failed: {status}",
            s.name()
        )));
    }
    serde_json::from_str(&last)
        .map_err(|e| CliError::runtime(format!("bad child output {last:?}: {e}")))
}

/// `pythia bench-child` for one run, its stdout piped, killed if dropped.
fn child_command(
    url: &str,
    args: &BenchArgs,
    s: Scenario,
    queue: &str,
    messages: u64,
    concurrency: usize,
) -> Result<tokio::process::Command, CliError> {
    let exe = std::env::current_exe().map_err(CliError::runtime)?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "--log",
        "warn",
        "bench-child",
        "--redis-url",
        url,
        "--queue",
        queue,
    ])
    .args(["--scenario", s.name(), "--messages", &messages.to_string()])
    .args([
        "--size",
        &args.size.to_string(),
        "--concurrency",
        &concurrency.to_string(),
    ])
    .args(["--batch-size", &args.batch_size.to_string()])
    .args(["--prefetch", &args.prefetch.to_string()])
    .stdout(Stdio::piped())
    .kill_on_drop(true);
    if args.counters {
        cmd.arg("--counters");
    }
    if let Some(n) = args.worker_threads {
        cmd.args(["--threads", &n.to_string()]);
    }
    if s == Scenario::ExecPersistent {
        cmd.args(["--exec-in-flight", &args.exec_in_flight.to_string()]);
        if let Some(n) = args.exec_children {
            cmd.args(["--exec-children", &n.to_string()]);
        }
    }
    Ok(cmd)
}

/// Offers `n` envelope messages at `args.latency_rate` per second, in ticks of 1 ms.
async fn paced_produce(
    conn: &RedisConnection,
    queue: &str,
    n: u64,
    args: &BenchArgs,
) -> Result<(), CliError> {
    tokio::time::sleep(Duration::from_millis(300)).await; // the consumer's first blocking read
    let p = ListProducer::new(conn, queue);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while sent < n {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * args.latency_rate) as u64).min(n);
        if due <= sent {
            continue;
        }
        let stamp = now_ns().to_string();
        let batch: Vec<Message> = (sent..due)
            .map(|i| {
                Message::new(numbered_body(i, args.size)).with_header(SENT_NS_HEADER, stamp.clone())
            })
            .collect();
        p.push_many(&batch).await.map_err(CliError::runtime)?;
        sent = due;
    }
    Ok(())
}
