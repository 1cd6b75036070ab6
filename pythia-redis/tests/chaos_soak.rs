//! Chaos, time: a soak run producing and consuming continuously (with a share of retries) on
//! the reliable list and the stream at once, each worker a child process. The worker's RSS
//! (sampled from its own `/proc/self/status`) and Redis's `used_memory` must stay flat: the
//! growth from the end of the warm-up to the end of the run stays under a stated bound. Prints
//! start/end/max of both.
//!
//! ```sh
//! cargo test -p pythia-redis --test chaos_soak -- --nocapture            # 60 s, in CI
//! PYTHIA_SOAK_SECS=600 cargo test -p pythia-redis --test chaos_soak -- --nocapture
//! cargo test -p pythia-redis --test chaos_soak -- --ignored --nocapture  # the full 5 minutes
//! ```

use pythia_test_support as support;
use pythia_test_support::chaos;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chaos::{ChildSpec, ChildWorker, info_field, query, report, rss_kib, within};
use pythia_core::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};
use pythia_redis::{
    GroupStart, ListProducer, RedisConfig, RedisConnection, ReliableListBroker, StreamBroker,
    StreamProducer,
};
use support::{RedisServer, eventually};

const QUEUE: &str = "soak";
/// Messages produced per second on each broker.
const RATE: u64 = 2000;
/// Worker RSS may grow at most this much after the warm-up (a leak of 100 bytes per message
/// would be about 12 MiB over a 60 s run at this rate).
const RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;
/// Redis `used_memory` may grow at most this much after the warm-up.
const REDIS_GROWTH_BOUND: u64 = 4 * 1024 * 1024;

/// Counts processed messages in the Redis counter `processed` (constant memory, unlike a hash
/// of ids), failing the first attempt of every 100th message so retries churn through the
/// schedule as well.
struct Soak {
    conn: RedisConnection,
    seen: AtomicU64,
}

impl Worker for Soak {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if msg.attempt() == 1 && n.is_multiple_of(100) {
            return Err(WorkerError::retry_later(
                Duration::from_millis(50),
                "soak: a transient failure",
            ));
        }
        let mut m = self.conn.manager();
        redis::cmd("INCR")
            .arg("processed")
            .query_async::<i64>(&mut m)
            .await?;
        Ok(())
    }
}

/// Not a test of its own (ignored, so it never counts as a pass): the worker process the soak
/// runs with `--ignored --exact`. Samples its own RSS into the Redis list `rss` every 500 ms.
#[tokio::test]
#[ignore = "a worker child process, run by its parent test (--ignored --exact), not a test"]
async fn soak_child() {
    let spec = ChildSpec::from_env().expect("run by its parent test, with PYTHIA_CHAOS_CHILD");
    let config = RedisConfig::from_url(spec.get("url").expect("url"))
        .unwrap()
        .with_block_timeout(Duration::from_millis(200));
    let conn = RedisConnection::connect(config).await.unwrap();
    let sampler = conn.clone();
    tokio::spawn(async move {
        loop {
            let _: i64 = query(&sampler, &["RPUSH", "rss", &rss_kib().to_string()]).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let worker = Soak {
        conn: conn.clone(),
        seen: AtomicU64::new(0),
    };
    let maint = Duration::from_millis(100);
    let policy = RetryPolicy::default().with_max_attempts(10);
    let summary = match spec.get("broker").expect("broker") {
        "reliable" => {
            WorkerRuntime::new(
                ReliableListBroker::new(&conn, QUEUE).with_maintenance_interval(maint),
                worker,
            )
            .with_retry_policy(policy)
            .run()
            .await
        }
        _ => {
            WorkerRuntime::new(
                StreamBroker::new(&conn, QUEUE, "g")
                    .with_start(GroupStart::Beginning)
                    .with_maintenance_interval(maint),
                worker,
            )
            .with_retry_policy(policy)
            .run()
            .await
        }
    }
    .unwrap();
    assert_eq!(summary.unsettled, 0);
}

/// Start, end and peak of a series of samples after the warm-up.
fn span(samples: &[u64]) -> (u64, u64, u64) {
    let start = samples.first().copied().unwrap_or(0);
    let end = samples.last().copied().unwrap_or(0);
    let max = samples.iter().copied().max().unwrap_or(0);
    (start, end, max)
}

async fn soak_one(broker: &'static str, secs: u64) {
    let server = RedisServer::start();
    let conn = server.connect().await;
    if broker == "stream" {
        StreamBroker::new(&conn, QUEUE, "g")
            .with_start(GroupStart::Beginning)
            .ensure_group()
            .await
            .unwrap();
    }
    let spec = ChildSpec::new()
        .set("url", server.url())
        .set("broker", broker);
    let mut child = ChildWorker::spawn("soak_child", &spec);
    let warmup = Duration::from_secs((secs / 6).max(5));
    let run_for = Duration::from_secs(secs);
    let started = Instant::now();
    let mut produced = 0u64;
    let mut used_memory = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    let mut next_sample = started + warmup;
    let per_tick = (RATE / 20) as usize;
    while started.elapsed() < run_for {
        ticker.tick().await;
        let batch: Vec<Message> = (0..per_tick)
            .map(|i| {
                Message::new(format!(
                    "soak message {} of the run, 100 bytes or so ........",
                    produced + i as u64
                ))
            })
            .collect();
        if broker == "stream" {
            StreamProducer::new(&conn, QUEUE)
                .add_many(&batch)
                .await
                .unwrap();
        } else {
            ListProducer::new(&conn, QUEUE)
                .push_many(&batch)
                .await
                .unwrap();
        }
        produced += per_tick as u64;
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            let info: String = query(&conn, &["INFO", "memory"]).await;
            used_memory.push(info_field(&info, "used_memory").expect("used_memory"));
        }
    }
    let rss_all: Vec<u64> = query(&conn, &["LRANGE", "rss", "0", "-1"]).await;
    eventually(
        Duration::from_secs(30),
        "the worker to catch up",
        || async {
            let n: u64 = query(&conn, &["GET", "processed"]).await;
            n >= produced
        },
    )
    .await;
    child.terminate();
    let status = child.wait(30).await;
    assert!(status.success(), "exit {status}: {}", child.log_text());
    let processed: u64 = query(&conn, &["GET", "processed"]).await;

    // RSS samples every 500 ms from the child's start; skip the warm-up.
    let skip = (warmup.as_millis() / 500) as usize;
    let rss = &rss_all[skip.min(rss_all.len().saturating_sub(1))..];
    let (rss_start, rss_end, rss_max) = span(rss);
    let (mem_start, mem_end, mem_max) = span(&used_memory);
    report(
        "soak",
        broker,
        produced as usize,
        produced.saturating_sub(processed) as usize,
        processed as i64 - produced as i64,
        None,
        &format!(
            "secs={secs} rate={RATE}/s worker_rss_kib start={rss_start} end={rss_end} max={rss_max} redis_used_memory start={mem_start} end={mem_end} max={mem_max}"
        ),
    );
    assert_eq!(processed, produced, "{broker}: processed once each");
    assert!(
        rss_end <= rss_start + RSS_GROWTH_BOUND_KIB,
        "{broker}: worker RSS grew from {rss_start} to {rss_end} KiB"
    );
    assert!(
        mem_end <= mem_start + REDIS_GROWTH_BOUND,
        "{broker}: Redis used_memory grew from {mem_start} to {mem_end}"
    );
}

fn soak_secs(default: u64) -> u64 {
    std::env::var("PYTHIA_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn soak_both(secs: u64) {
    let limit = secs + 90;
    within(limit, "the soak", async {
        tokio::join!(soak_one("reliable", secs), soak_one("stream", secs));
    })
    .await;
}

/// About a minute, both brokers at once: part of the CI suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_keeps_memory_flat() {
    soak_both(soak_secs(60)).await;
}

/// The full soak: 5 minutes (or `PYTHIA_SOAK_SECS`). Run with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "five minutes long; run with --ignored (PYTHIA_SOAK_SECS sets the length)"]
async fn soak_full_keeps_memory_flat() {
    soak_both(soak_secs(300)).await;
}
