//! One measured run, in its own process: the framework or the bare client loop of the same
//! Redis commands. Prints one JSON line with what it measured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pythia::redis::queues::CountingBroker;
use pythia::redis::{
    GroupStart, ListBroker, PubSubBroker, RedisConnection, ReliableListBroker, StreamBroker,
};
use pythia::{Broker, Message, Worker, WorkerError, WorkerRuntime, worker_fn};
use serde::Serialize;

use super::proc_stats::ProcStats;
use super::replica::{ReplicaRecord, replica};
use super::{BenchChildArgs, Scenario};
use crate::error::CliError;

/// The header carrying the producer's send time, in nanoseconds since the epoch.
pub(crate) const SENT_NS_HEADER: &str = "bench-sent-ns";

/// What one run measured.
#[derive(Debug, Serialize, serde::Deserialize, Clone, Default)]
pub(crate) struct RunResult {
    pub(crate) processed: u64,
    pub(crate) seconds: f64,
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss_bytes: u64,
    /// Latency percentiles in milliseconds (latency scenario only).
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) p999_ms: Option<f64>,
    /// Pub/sub only: the most messages the broker held in process at once. A publisher that
    /// outpaces the worker leaves this backlog in the worker's memory, and it is most of the
    /// scenario's peak RSS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) peak_backlog: Option<u64>,
    /// What a replica of the scale scenario saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) replica: Option<ReplicaRecord>,
}

pub(crate) fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

pub(crate) async fn bench_child(args: BenchChildArgs) -> Result<(), CliError> {
    let conn = crate::commands::connect_url(&args.redis_url, "pythia").await?;
    let before = ProcStats::read();
    let mut result = match (args.scenario, args.bare) {
        _ if args.replica => replica(&conn, &args).await?,
        (Scenario::List, false) => {
            let b = ListBroker::new(&conn, &args.queue);
            drain_counted(&conn, b, &args).await?
        }
        (Scenario::List, true) => bare_list(&conn, &args).await?,
        (Scenario::ReliableList, false) => {
            let b = ReliableListBroker::new(&conn, &args.queue);
            drain_counted(&conn, b, &args).await?
        }
        (Scenario::ReliableList, true) => bare_reliable(&conn, &args).await?,
        (Scenario::ProduceList, bare) => super::produce::produce(&conn, &args, bare).await?,
        (Scenario::IoBound, true) => bare_io(&args).await,
        (Scenario::IoBound, false) => {
            let sleepy = worker_fn(|_m: Message| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(())
            });
            drain(ReliableListBroker::new(&conn, &args.queue), sleepy, &args).await?
        }
        (Scenario::Stream, false) => {
            let b =
                StreamBroker::new(&conn, &args.queue, "bench").with_start(GroupStart::Beginning);
            drain_counted(&conn, b, &args).await?
        }
        (Scenario::Stream, true) => bare_stream(&conn, &args).await?,
        (Scenario::ProduceStream, bare) => {
            super::produce::produce_stream(&conn, &args, bare).await?
        }
        (Scenario::Pubsub, false) => pubsub(&conn, &args).await?,
        (Scenario::Pubsub, true) => bare_pubsub(&conn, &args).await?,
        (Scenario::Latency, false) => latency(&conn, &args).await?,
        (Scenario::Latency, true) => bare_latency(&conn, &args).await?,
        (Scenario::ExecPersistent, false) => {
            super::exec_persistent::framework(&conn, &args).await?
        }
        (Scenario::ExecPersistent, true) => super::exec_persistent::bare(&args).await?,
        (Scenario::Http, false) => super::http::framework(&conn, &args).await?,
        (Scenario::Http, true) => super::http::bare(&args).await?,
        (Scenario::Scale, _) => {
            return Err(CliError::usage(
                "the scale scenario runs its children with --replica",
            ));
        }
        (Scenario::Priority, _) => {
            return Err(CliError::usage(
                "the priority scenario runs in the bench process, not in a child",
            ));
        }
    };
    let after = ProcStats::read();
    result.cpu_seconds = after.cpu_seconds - before.cpu_seconds;
    result.peak_rss_bytes = after.peak_rss_bytes;
    crate::output::outln!(
        "{}",
        serde_json::to_string(&result).map_err(CliError::runtime)?
    )?;
    Ok(())
}

/// [`drain`] with the no-op handler, in the daily counters with `--counters`.
async fn drain_counted<B: Broker>(
    conn: &RedisConnection,
    broker: B,
    args: &BenchChildArgs,
) -> Result<RunResult, CliError> {
    if args.counters {
        drain(CountingBroker::new(broker, conn), noop(), args).await
    } else {
        drain(broker, noop(), args).await
    }
}

fn noop() -> impl Worker {
    worker_fn(|_m: Message| async { Ok(()) })
}

fn runtime<B: Broker, W: Worker>(broker: B, w: W, args: &BenchChildArgs) -> WorkerRuntime<B> {
    WorkerRuntime::new(broker, w)
        .with_concurrency(args.concurrency)
        .with_prefetch(args.prefetch)
        .with_batch_size(args.batch_size)
        .with_signal_handling(false)
        .with_stats_interval(None)
        .with_burst(true)
}

pub(super) async fn drain<B: Broker, W: Worker>(
    broker: B,
    w: W,
    args: &BenchChildArgs,
) -> Result<RunResult, CliError> {
    let s = runtime(broker, w, args)
        .run()
        .await
        .map_err(CliError::runtime)?;
    Ok(RunResult {
        processed: s.processed(),
        seconds: s.active.as_secs_f64(),
        ..RunResult::default()
    })
}

/// `RPOP q n` until empty.
async fn bare_list(conn: &RedisConnection, args: &BenchChildArgs) -> Result<RunResult, CliError> {
    let mut m = conn.manager();
    let mut n = 0u64;
    let started = Instant::now();
    loop {
        let items: Option<Vec<Vec<u8>>> = redis::cmd("RPOP")
            .arg(&args.queue)
            .arg(args.batch_size)
            .query_async(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("RPOP", e)))?;
        match items {
            Some(v) if !v.is_empty() => n += v.len() as u64,
            _ => break,
        }
    }
    Ok(RunResult {
        processed: n,
        seconds: started.elapsed().as_secs_f64(),
        ..RunResult::default()
    })
}

/// The io-bound scenario's ceiling on this machine: `concurrency` loops, each sleeping 10 ms per
/// message until all are "processed", without Redis or the runtime: what the handlers' own
/// sleeps allow (the timer wheel's millisecond ticks round each sleep up).
async fn bare_io(args: &BenchChildArgs) -> RunResult {
    let left = Arc::new(AtomicU64::new(args.messages));
    let started = Instant::now();
    let loops: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let left = Arc::clone(&left);
            tokio::spawn(async move {
                let mut done = 0u64;
                while left
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok()
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut processed = 0;
    for l in loops {
        processed += l.await.unwrap_or(0);
    }
    RunResult {
        processed,
        seconds: started.elapsed().as_secs_f64(),
        ..RunResult::default()
    }
}

/// The reliable list's own fetch command (`ReliableListCommands::fetch`, the script the broker
/// sends), then one `HDEL` per batch: the same commands as the broker, without the framework.
async fn bare_reliable(
    conn: &RedisConnection,
    args: &BenchChildArgs,
) -> Result<RunResult, CliError> {
    let keys = pythia::redis::QueueKeys::new("pythia", &args.queue);
    let commands = pythia::redis::list::ReliableListCommands::new(&keys, "bare");
    let in_flight = commands.in_flight_key().to_owned();
    let mut m = conn.manager();
    let mut n = 0u64;
    let mut next = 1u64;
    let started = Instant::now();
    loop {
        let items: Vec<Vec<u8>> = commands
            .fetch(
                args.batch_size,
                next,
                pythia::redis::ListSide::Right,
                10_000,
            )
            .query(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("fetch", e)))?;
        if items.is_empty() {
            break;
        }
        let ids: Vec<u64> = (next..next + items.len() as u64).collect();
        next += args.batch_size as u64;
        let removed: u64 = redis::cmd("HDEL")
            .arg(&in_flight)
            .arg(&ids)
            .query_async(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("HDEL", e)))?;
        n += removed;
    }
    Ok(RunResult {
        processed: n,
        seconds: started.elapsed().as_secs_f64(),
        ..RunResult::default()
    })
}

/// `XREADGROUP … COUNT n STREAMS s >` then one `XACK` per batch, reading the reply as a raw
/// `Value`, until the group has read everything.
async fn bare_stream(conn: &RedisConnection, args: &BenchChildArgs) -> Result<RunResult, CliError> {
    use redis::Value;
    let mut m = conn.manager();
    let err = |op: &'static str| move |e| CliError::runtime(conn.error(op, e));
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&args.queue)
        .arg("bare")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut m)
        .await;
    let mut n = 0u64;
    let started = Instant::now();
    loop {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("bare")
            .arg("c1")
            .arg("COUNT")
            .arg(args.batch_size)
            .arg("STREAMS")
            .arg(&args.queue)
            .arg(">")
            .query_async(&mut m)
            .await
            .map_err(err("XREADGROUP"))?;
        let mut ids: Vec<Vec<u8>> = Vec::new();
        let streams = match reply {
            Value::Array(s) => s,
            Value::Map(kv) => kv.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => Vec::new(),
        };
        for s in streams {
            let entries = match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                other => Some(other),
            };
            if let Some(Value::Array(entries)) = entries {
                for e in entries {
                    if let Value::Array(mut idf) = e
                        && !idf.is_empty()
                        && let Value::BulkString(id) = idf.swap_remove(0)
                    {
                        ids.push(id);
                    }
                }
            }
        }
        if ids.is_empty() {
            break;
        }
        let acked: u64 = redis::cmd("XACK")
            .arg(&args.queue)
            .arg("bare")
            .arg(&ids)
            .query_async(&mut m)
            .await
            .map_err(err("XACK"))?;
        n += acked;
    }
    Ok(RunResult {
        processed: n,
        seconds: started.elapsed().as_secs_f64(),
        ..RunResult::default()
    })
}

/// Counts messages and stops the runtime at the target.
#[derive(Clone)]
struct CountTo {
    seen: Arc<std::sync::atomic::AtomicU64>,
    target: u64,
    stop: pythia::CancellationToken,
}

impl Worker for CountTo {
    async fn process_message(&self, _msg: &Message) -> Result<(), WorkerError> {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n >= self.target {
            self.stop.cancel();
        }
        Ok(())
    }
}

/// The pub/sub broker with a buffer large enough to drop nothing; the orchestrator publishes
/// once this prints `ready`.
async fn pubsub(conn: &RedisConnection, args: &BenchChildArgs) -> Result<RunResult, CliError> {
    let broker = PubSubBroker::builder(conn)
        .channel(args.queue.as_str())
        .with_capacity(args.messages as usize + 1)
        .subscribe()
        .await
        .map_err(CliError::runtime)?;
    let stop = pythia::CancellationToken::new();
    let w = CountTo {
        seen: Arc::default(),
        target: args.messages,
        stop: stop.clone(),
    };
    crate::output::outln!("ready")?;
    let rt = runtime(broker, w, args)
        .with_burst(false)
        .with_cancellation(stop);
    let broker = Arc::clone(rt.broker());
    let s = rt.run().await.map_err(CliError::runtime)?;
    Ok(RunResult {
        processed: s.processed(),
        seconds: s.active.as_secs_f64(),
        peak_backlog: Some(broker.counters().peak_held as u64),
        ..RunResult::default()
    })
}

/// A plain subscription counting messages: first to last.
async fn bare_pubsub(conn: &RedisConnection, args: &BenchChildArgs) -> Result<RunResult, CliError> {
    use futures_util::StreamExt;
    let mut ps = conn.pubsub().await.map_err(CliError::runtime)?;
    ps.subscribe(&args.queue)
        .await
        .map_err(|e| CliError::runtime(conn.error("SUBSCRIBE", e)))?;
    crate::output::outln!("ready")?;
    let mut stream = ps.on_message();
    let mut n = 0u64;
    let mut started = None;
    while n < args.messages {
        match stream.next().await {
            Some(msg) => {
                started.get_or_insert_with(Instant::now);
                std::hint::black_box(msg.get_payload_bytes());
                n += 1;
            }
            None => break,
        }
    }
    Ok(RunResult {
        processed: n,
        seconds: started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        ..RunResult::default()
    })
}

/// Records enqueue-to-start latency from the producer's send-time header.
#[derive(Clone)]
struct LatencyRecorder {
    samples: Arc<Mutex<Vec<u64>>>,
    target: u64,
    stop: pythia::CancellationToken,
}

impl Worker for LatencyRecorder {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let now = now_ns();
        let sent: u128 = msg
            .header(SENT_NS_HEADER)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| WorkerError::reject("no send time"))?;
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push(now.saturating_sub(sent) as u64);
        if s.len() as u64 >= self.target {
            self.stop.cancel();
        }
        Ok(())
    }
}

/// `RPOP q n`, or `BRPOP` on a dedicated connection when empty, decoding each item's send
/// time: the latency floor of the machine, without the framework.
async fn bare_latency(
    conn: &RedisConnection,
    args: &BenchChildArgs,
) -> Result<RunResult, CliError> {
    let mut m = conn.manager();
    let mut blocking = conn.blocking().await.map_err(CliError::runtime)?;
    let source = pythia::Source::new("list", args.queue.as_str());
    let mut v = Vec::with_capacity(args.messages as usize);
    crate::output::outln!("ready")?;
    let started = Instant::now();
    while (v.len() as u64) < args.messages {
        let items: Option<Vec<Vec<u8>>> = redis::cmd("RPOP")
            .arg(&args.queue)
            .arg(args.batch_size)
            .query_async(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("RPOP", e)))?;
        let items = match items {
            Some(items) if !items.is_empty() => items,
            _ => {
                let one: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
                    .arg(&args.queue)
                    .arg(1)
                    .query_async(&mut blocking)
                    .await
                    .map_err(|e| CliError::runtime(conn.error("BRPOP", e)))?;
                one.into_iter().map(|(_, item)| item).collect()
            }
        };
        let now = now_ns();
        for raw in items {
            let msg = pythia::envelope::decode(raw.into(), &source);
            if let Some(sent) = msg
                .header(SENT_NS_HEADER)
                .and_then(|h| h.parse::<u128>().ok())
            {
                v.push(now.saturating_sub(sent) as u64);
            }
        }
    }
    v.sort_unstable();
    Ok(RunResult {
        processed: v.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
        p50_ms: percentile(&v, 0.5),
        p99_ms: percentile(&v, 0.99),
        p999_ms: percentile(&v, 0.999),
        ..RunResult::default()
    })
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[idx] as f64 / 1e6)
}

/// Consumes until `messages` were seen (the orchestrator produces them, paced).
async fn latency(conn: &RedisConnection, args: &BenchChildArgs) -> Result<RunResult, CliError> {
    let stop = pythia::CancellationToken::new();
    let rec = LatencyRecorder {
        samples: Arc::new(Mutex::new(Vec::with_capacity(args.messages as usize))),
        target: args.messages,
        stop: stop.clone(),
    };
    let samples = rec.samples.clone();
    crate::output::outln!("ready")?;
    let s = runtime(ReliableListBroker::new(conn, &args.queue), rec, args)
        .with_burst(false)
        .with_cancellation(stop)
        .run()
        .await
        .map_err(CliError::runtime)?;
    let mut v = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    v.sort_unstable();
    Ok(RunResult {
        processed: s.processed(),
        seconds: s.active.as_secs_f64(),
        p50_ms: percentile(&v, 0.5),
        p99_ms: percentile(&v, 0.99),
        p999_ms: percentile(&v, 0.999),
        ..RunResult::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_rank() {
        let v: Vec<u64> = (1..=1000).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile(&v, 0.5), Some(501.0));
        assert_eq!(percentile(&v, 0.99), Some(990.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
