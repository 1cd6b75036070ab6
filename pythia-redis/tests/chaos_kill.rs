//! Chaos, worker side, for the at-most-once list: worker processes killed with SIGKILL at random
//! moments while they drain a queue, and stopped with SIGTERM while busy. Each scenario prints
//! one `CHAOS …` line with its figures (see RELIABILITY.md). The at-least-once brokers go
//! through the same faults, and more, in the conformance suite (`tests/conformance.rs`):
//!
//! ```sh
//! cargo test -p pythia-redis --test chaos_kill -- --nocapture
//! ```
//!
//! Workers are child processes (this test binary re-executed with only `chaos_child`
//! selected), so a kill is a real process death: no drain, no hand-back, no goodbye. Each
//! processed message is counted in the Redis hash `processed` (`HINCRBY`) by the handler, before
//! the ack: a kill after the count and before the ack shows as a duplicate, a kill before the
//! count as a redelivery, and an id never counted as a lost message.
//!
//! Set `PYTHIA_CHAOS_SEED` to replay the kill schedule of a run (each run prints its seed).

use pythia_test_support as support;
use pythia_test_support::chaos;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chaos::{
    ChildSpec, ChildWorker, count_in_hash, lost_and_duplicated, pythia_keys, query, report,
    save_summary, within,
};
use pythia_core::{Broker, Message, RetryPolicy, RunSummary, Worker, WorkerError, WorkerRuntime};
use pythia_redis::{ListBroker, ListProducer, RedisConfig, RedisConnection};
use support::{RedisServer, eventually};

const QUEUE: &str = "chaos";
/// Worker processes draining at once.
const WORKERS: usize = 3;
/// Messages in a worker's handler at once.
const CONCURRENCY: u64 = 32;
/// Counts each message in Redis: `started` (optional) when the handler begins, `processed` once
/// it is done, so a process killed mid-run leaves an exact record.
#[derive(Clone)]
struct Recorder {
    conn: RedisConnection,
    delay: Duration,
    record_start: bool,
}

impl Worker for Recorder {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        if self.record_start {
            count_in_hash(&self.conn, "started", msg.id()).await?;
        }
        tokio::time::sleep(self.delay).await;
        count_in_hash(&self.conn, "processed", msg.id()).await?;
        Ok(())
    }
}

fn configure<B: Broker>(rt: WorkerRuntime<B>, spec: &ChildSpec, burst: bool) -> WorkerRuntime<B> {
    rt.with_concurrency(spec.num("concurrency", CONCURRENCY) as usize)
        .with_batch_size(spec.num("batch", 64) as usize)
        .with_shutdown_grace(Duration::from_millis(spec.num("grace_ms", 10_000)))
        // A message orphaned by several kills in a row must still be processed, not
        // dead-lettered as a poison message: this test is about crash recovery alone.
        .with_retry_policy(RetryPolicy::default().with_max_attempts(1000))
        .with_stats_interval(None)
        .with_burst(burst)
        // The child keeps the runtime's default SIGTERM handling; the test process does not.
        .with_signal_handling(!burst)
}

/// Runs the worker `spec` describes: until SIGTERM in a child, until drained when `burst`.
async fn run_worker(conn: &RedisConnection, spec: &ChildSpec, burst: bool) -> RunSummary {
    let worker = Recorder {
        conn: conn.clone(),
        delay: Duration::from_millis(spec.num("delay_ms", 2)),
        record_start: spec.num("record_start", 0) == 1,
    };
    let me = std::process::id().to_string();
    let b = ListBroker::new(conn, QUEUE);
    let _: i64 = query(conn, &["HSET", "chaos:consumers", &me, "list"]).await;
    let result = configure(WorkerRuntime::new(b, worker), spec, burst)
        .run()
        .await;
    result.expect("the runtime ends without error")
}

/// Not a test of its own (ignored, so it never counts as a pass): the body of the worker
/// processes the tests below start, kill and stop, which run it with `--ignored --exact`.
#[tokio::test]
#[ignore = "a worker child process, run by its parent test (--ignored --exact), not a test"]
async fn chaos_child() {
    let spec = ChildSpec::from_env().expect("run by its parent test, with PYTHIA_CHAOS_CHILD");
    let config = RedisConfig::from_url(spec.get("url").expect("url"))
        .unwrap()
        .with_block_timeout(Duration::from_millis(200));
    let conn = RedisConnection::connect(config).await.unwrap();
    let s = run_worker(&conn, &spec, false).await;
    let me = std::process::id().to_string();
    save_summary(&conn, &format!("chaos:summary:{me}"), &s, &[]).await;
}

async fn produce(conn: &RedisConnection, n: usize) -> Vec<String> {
    let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("{i}"))).collect();
    ListProducer::new(conn, QUEUE)
        .push_many(&msgs)
        .await
        .unwrap();
    msgs.iter().map(|m| m.id().to_owned()).collect()
}

async fn hlen(conn: &RedisConnection, key: &str) -> i64 {
    query(conn, &["HLEN", key]).await
}

/// Nothing of Pythia's is left for the queue, and the list is empty.
async fn assert_no_state_left(conn: &RedisConnection) {
    let keys = pythia_keys(conn, QUEUE).await;
    assert!(keys.is_empty(), "left behind: {keys:?}");
    let len: i64 = query(conn, &["LLEN", QUEUE]).await;
    assert_eq!(len, 0, "items left in the queue");
}

fn seed() -> u64 {
    std::env::var("PYTHIA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// Scenario 1: `WORKERS` worker processes drain `n` messages; `kills` times, at a random moment
/// (spread over the drain by progress, jittered), a random one is SIGKILLed and a new one
/// started in its place. An at-most-once list loses at most what the killed workers held and
/// never delivers twice; once the survivors stop cleanly nothing is left.
async fn sigkill_while_draining(n: usize, kills: usize) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = produce(&conn, n).await;
    let spec = ChildSpec::new().set("url", server.url()).set("delay_ms", 2);
    let mut children: Vec<ChildWorker> = (0..WORKERS)
        .map(|_| ChildWorker::spawn("chaos_child", &spec))
        .collect();

    let started = Instant::now();
    for k in 1..=kills {
        // Kill points spread over the drain, each moved by up to a quarter of a step.
        let step = n / (kills + 1);
        let jitter = rng.usize(0..=step / 2) as i64 - (step / 4) as i64;
        let at = ((step * k) as i64 + jitter).clamp(1, n as i64 - 1);
        eventually(
            Duration::from_secs(120),
            &format!("{at} processed before kill {k}"),
            || async { hlen(&conn, "processed").await >= at },
        )
        .await;
        // A victim that has registered (it started consuming).
        let i = loop {
            let i = rng.usize(..children.len());
            let pid = children[i].pid.to_string();
            let name: Option<String> = query(&conn, &["HGET", "chaos:consumers", &pid]).await;
            if name.is_some() {
                break i;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        children.swap_remove(i).kill().await;
        children.push(ChildWorker::spawn("chaos_child", &spec));
    }

    // The rest of the drain, with the last replacements.
    eventually(Duration::from_secs(120), "the list to be empty", || async {
        let len: i64 = query(&conn, &["LLEN", QUEUE]).await;
        len == 0
    })
    .await;
    let drained_in = started.elapsed();

    // The survivors stop cleanly, as on a deploy.
    for c in &children {
        c.terminate();
    }
    for c in &mut children {
        let status = c.wait(30).await;
        assert!(
            status.success(),
            "a survivor exited with {status}: {}",
            c.log_text()
        );
    }

    // The empty list seen above can hide a pop whose reply was still on its way to a survivor;
    // stopping, that survivor put the batch back at the front. Not lost: drain it here.
    let left: i64 = query(&conn, &["LLEN", QUEUE]).await;
    if left > 0 {
        let s = within(
            30,
            "the released messages to drain",
            run_worker(&conn, &spec, true),
        )
        .await;
        println!(
            "released at shutdown and drained again: {left} (fetched {})",
            s.fetched
        );
    }

    let processed: HashMap<String, i64> = query(&conn, &["HGETALL", "processed"]).await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &processed);
    report(
        "sigkill",
        "list",
        n,
        lost,
        duplicated,
        None,
        &format!(
            "kills={kills} workers={WORKERS} drained_in={:.1}s seed={seed}",
            drained_in.as_secs_f64()
        ),
    );
    // At-most-once: a killed worker loses what it had fetched and not finished, which the
    // runtime bounds by its concurrency; nothing is ever delivered twice.
    let bound = kills * CONCURRENCY as usize;
    assert!(
        lost <= bound,
        "list lost {lost}, more than {kills} kills x {CONCURRENCY} in flight"
    );
    assert_eq!(duplicated, 0, "an at-most-once list never redelivers");
    assert_no_state_left(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_list_workers_loses_at_most_what_they_held() {
    sigkill_while_draining(20_000, 4).await;
}

/// Scenario 2: a busy worker process gets SIGTERM. Every message whose handler had started
/// finishes within the grace period, the process exits 0, and what it had not started (put back
/// at the front of the list) is processed later exactly once.
#[tokio::test]
async fn sigterm_list_worker_while_busy() {
    let n = 3000;
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = produce(&conn, n).await;
    let spec = ChildSpec::new()
        .set("url", server.url())
        .set("delay_ms", 200)
        .set("concurrency", 32)
        .set("batch", 32)
        .set("grace_ms", 10_000)
        .set("record_start", 1);
    let mut child = ChildWorker::spawn("chaos_child", &spec);
    eventually(Duration::from_secs(30), "the child to be busy", || async {
        hlen(&conn, "processed").await >= 64 && hlen(&conn, "started").await >= 96
    })
    .await;
    let in_flight_at_term = hlen(&conn, "started").await - hlen(&conn, "processed").await;
    let pid = child.pid.to_string();
    let t = Instant::now();
    child.terminate();
    let status = child.wait(20).await;
    let exit_took = t.elapsed();
    assert!(status.success(), "exit {status}: {}", child.log_text());
    assert!(
        exit_took < Duration::from_secs(10),
        "took {exit_took:?}, longer than the grace period"
    );

    let started: HashMap<String, i64> = query(&conn, &["HGETALL", "started"]).await;
    let processed: HashMap<String, i64> = query(&conn, &["HGETALL", "processed"]).await;
    let cut_off: Vec<&String> = started
        .keys()
        .filter(|id| !processed.contains_key(*id))
        .collect();
    assert!(
        cut_off.is_empty(),
        "{} handlers were cut off by a graceful stop",
        cut_off.len()
    );
    let summary: HashMap<String, u64> =
        query(&conn, &["HGETALL", &format!("chaos:summary:{pid}")]).await;
    assert_eq!(summary.get("unsettled"), Some(&0), "{summary:?}");

    // The rest, by a worker in this process.
    let rest = ChildSpec::new().set("delay_ms", 0);
    let second = within(60, "draining the rest", run_worker(&conn, &rest, true)).await;
    let processed: HashMap<String, i64> = query(&conn, &["HGETALL", "processed"]).await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &processed);
    report(
        "sigterm",
        "list",
        n,
        lost,
        duplicated,
        Some(exit_took),
        &format!(
            "in_flight_at_term={in_flight_at_term} released={} acked_before_exit={} acked_after={} exit=0",
            summary.get("released").copied().unwrap_or(0),
            summary.get("acked").copied().unwrap_or(0),
            second.acked
        ),
    );
    assert_eq!(lost, 0, "lost on a graceful stop");
    assert_eq!(duplicated, 0, "a graceful stop never redelivers");
    assert_no_state_left(&conn).await;
}
