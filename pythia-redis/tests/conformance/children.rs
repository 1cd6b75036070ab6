//! Worker child processes: the test binary re-executed with only `conformance_child` selected,
//! so that a SIGKILL, SIGTERM or SIGSTOP hits a real process. A child counts each final handling
//! in Redis (`HINCRBY <queue>:processed <body>`) before the settle: a kill after the count and
//! before the settle shows as a duplicate, an id never counted as a lost message.

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::time::Duration;

use pythia_core::{Message, RetryPolicy, RunSummary, Worker, WorkerError, WorkerRuntime};
use pythia_redis::RedisConnection;

use super::harness::{Env, Plan, Reliable, Sharded, Stream, Subject, TTL, apply, config};
use crate::chaos::{ChildSpec, ChildWorker, count_in_hash, query, save_summary};

/// The recording keys of `queue`.
pub fn processed_key(queue: &str) -> String {
    format!("rec:{queue}:processed")
}
pub fn started_key(queue: &str) -> String {
    format!("rec:{queue}:started")
}
pub fn consumers_key(queue: &str) -> String {
    format!("rec:{queue}:consumers")
}
pub fn clocks_key(queue: &str) -> String {
    format!("rec:{queue}:clocks")
}
pub fn summary_key(queue: &str, pid: u32) -> String {
    format!("rec:{queue}:summary:{pid}")
}

/// Counts each message in Redis: `started` (optional) when the handler begins, `processed`
/// once its final handling is done.
#[derive(Clone)]
struct Recorder {
    conn: RedisConnection,
    queue: String,
    delay: Duration,
    record_start: bool,
    plan: Plan,
}

impl Worker for Recorder {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let body = String::from_utf8_lossy(msg.body()).into_owned();
        if self.record_start {
            count_in_hash(&self.conn, &started_key(&self.queue), &body).await?;
        }
        tokio::time::sleep(self.delay).await;
        let r = apply(self.plan, msg);
        if !matches!(&r, Err(e) if e.is_retryable()) {
            count_in_hash(&self.conn, &processed_key(&self.queue), &body).await?;
        }
        r
    }
}

fn plan_of(spec: &ChildSpec) -> Plan {
    match spec.get("plan") {
        Some("retry-even") => Plan::RetryEven,
        Some("mixed") => Plan::Mixed,
        _ => Plan::AllOk,
    }
}

async fn run_as<S: Subject>(conn: &RedisConnection, spec: &ChildSpec) -> RunSummary {
    let queue = spec.get("queue").expect("queue");
    let subject = S::on(queue);
    let ttl = Duration::from_millis(spec.num("ttl_ms", TTL.as_millis() as u64));
    let broker = subject.broker(conn, spec.get("consumer"), ttl);
    let me = std::process::id().to_string();
    let _: i64 = query(
        conn,
        &["HSET", &consumers_key(queue), &me, &S::consumer(&broker)],
    )
    .await;
    // This process's wall clock (a worker under faketime shows its offset).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let _: i64 = query(
        conn,
        &["HSET", &clocks_key(queue), &me, &now_ms.to_string()],
    )
    .await;
    let worker = Recorder {
        conn: conn.clone(),
        queue: queue.to_owned(),
        delay: Duration::from_millis(spec.num("delay_ms", 2)),
        record_start: spec.num("record_start", 0) == 1,
        plan: plan_of(spec),
    };
    let rt = WorkerRuntime::new(broker, worker)
        .with_concurrency(spec.num("concurrency", 16) as usize)
        .with_batch_size(spec.num("batch", 32) as usize)
        .with_shutdown_grace(Duration::from_millis(spec.num("grace_ms", 10_000)))
        // A message orphaned by several kills in a row must still be processed, not
        // dead-lettered as a poison message.
        .with_retry_policy(RetryPolicy::default().with_max_attempts(1000))
        .with_stats_interval(None);
    rt.run().await.expect("the runtime ends without error")
}

/// The body of a worker child (see `conformance_child` in conformance.rs).
pub async fn child_main(spec: ChildSpec) {
    // Counts what the brokers count (pythia_settle_not_owned_total), for the summary.
    crate::counters::metrics_recorder();
    let cluster = spec.num("cluster", 0) == 1;
    let conn = RedisConnection::connect(config(spec.get("url").expect("url"), cluster))
        .await
        .unwrap();
    let s = match spec.get("broker").expect("broker") {
        Reliable::NAME => run_as::<Reliable>(&conn, &spec).await,
        Stream::NAME => run_as::<Stream>(&conn, &spec).await,
        Sharded::NAME => run_as::<Sharded>(&conn, &spec).await,
        other => panic!("unknown broker {other}"),
    };
    let queue = spec.get("queue").unwrap();
    let not_owned = crate::counters::counter_sum(pythia_redis::SETTLE_NOT_OWNED_TOTAL);
    save_summary(
        &conn,
        &summary_key(queue, std::process::id()),
        &s,
        &[("not_owned", not_owned.to_string())],
    )
    .await;
}

/// Spawns a worker child for `S` on `queue` with the extra settings `spec`.
pub fn spawn<S: Subject>(env: &Env, queue: &str, spec: &ChildSpec) -> ChildWorker {
    ChildWorker::spawn("conformance_child", &full_spec::<S>(env, queue, spec))
}

/// [`spawn`] under `faketime -f <offset>` (wall clock moved, monotonic clock left alone).
pub fn spawn_skewed<S: Subject>(
    env: &Env,
    queue: &str,
    spec: &ChildSpec,
    offset: &str,
) -> ChildWorker {
    ChildWorker::spawn_wrapped(
        "conformance_child",
        &full_spec::<S>(env, queue, spec),
        &["faketime", "-f", offset],
        &[("FAKETIME_DONT_FAKE_MONOTONIC", "1")],
    )
}

fn full_spec<S: Subject>(env: &Env, queue: &str, spec: &ChildSpec) -> ChildSpec {
    let mut full = env.child_spec().set("broker", S::NAME).set("queue", queue);
    full.0.extend(spec.0.iter().cloned());
    full
}

/// The consumer name child `pid` registered, once it has.
pub async fn consumer_of(conn: &RedisConnection, queue: &str, pid: u32) -> Option<String> {
    query(conn, &["HGET", &consumers_key(queue), &pid.to_string()]).await
}

/// Body → final handlings recorded by the children.
pub async fn processed(conn: &RedisConnection, queue: &str) -> HashMap<String, i64> {
    query(conn, &["HGETALL", &processed_key(queue)]).await
}

/// Distinct bodies recorded as processed.
pub async fn processed_len(conn: &RedisConnection, queue: &str) -> i64 {
    query(conn, &["HLEN", &processed_key(queue)]).await
}

/// Distinct bodies whose handler started.
pub async fn started_len(conn: &RedisConnection, queue: &str) -> i64 {
    query(conn, &["HLEN", &started_key(queue)]).await
}
