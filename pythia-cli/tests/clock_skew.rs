//! Workers and producers whose clocks are off by an hour (run under `faketime`, which `.ci/run`
//! installs): retry and delay due times are counted on the Redis server's clock, so a skewed
//! worker neither delays a retry by an hour nor promotes another's retry early; and a message
//! from a producer whose clock runs ahead still counts in the end-to-end latency.

mod common;
use pythia_test_support as support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{command, free_port, get, sample};
use pythia_redis::QueueKeys;
use support::{RedisServer, cmd, eventually};

/// `pythia <args>` with its wall clock moved by `offset` (e.g. "+1h"); the monotonic clock,
/// which its timers use, is left alone.
fn skewed(offset: &str, args: &[&str]) -> Command {
    let mut c = Command::new("faketime");
    c.arg("-f")
        .arg(offset)
        .arg(env!("CARGO_BIN_EXE_pythia"))
        .args(args)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

async fn server_ms(conn: &pythia_redis::RedisConnection) -> i64 {
    let t: Vec<String> = cmd(conn, &["TIME"]).await;
    t[0].parse::<i64>().unwrap() * 1000 + t[1].parse::<i64>().unwrap() / 1000
}

async fn due_in_ms(conn: &pythia_redis::RedisConnection, keys: &QueueKeys) -> i64 {
    let scores: Vec<String> =
        cmd(conn, &["ZRANGE", &keys.scheduled(), "0", "0", "WITHSCORES"]).await;
    assert_eq!(scores.len(), 2, "one scheduled member: {scores:?}");
    scores[1].parse::<i64>().unwrap() - server_ms(conn).await
}

#[tokio::test]
async fn a_worker_an_hour_ahead_schedules_its_retry_on_the_server_clock() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let url = server.url();
    let keys = QueueKeys::new("pythia", "skew");
    let _: i64 = cmd(&conn, &["LPUSH", "skew", "fails-once"]).await;
    let worker = skewed(
        "+1h",
        &[
            "run",
            "--redis-url",
            &url,
            "--queue",
            "skew",
            "--exec",
            "cat >/dev/null; exit 1",
            "--retry-delay",
            "30s",
            "--metrics-addr",
            "off",
        ],
    )
    .spawn()
    .expect("faketime runs (apt-get install faketime)");
    eventually(Duration::from_secs(20), "the retry scheduled", || async {
        let n: i64 = cmd(&conn, &["ZCARD", &keys.scheduled()]).await;
        n == 1
    })
    .await;
    let due_in = due_in_ms(&conn, &keys).await;
    stop(worker);
    assert!(
        (25_000..=31_000).contains(&due_in),
        "the retry is due in {due_in} ms on the server's clock, not 30 s"
    );
}

#[tokio::test]
async fn a_worker_an_hour_ahead_does_not_promote_a_retry_early() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let url = server.url();
    let keys = QueueKeys::new("pythia", "early");
    let due = (server_ms(&conn).await + 60_000).to_string();
    let _: i64 = cmd(&conn, &["ZADD", &keys.scheduled(), &due, "due-in-a-minute"]).await;
    let worker = skewed(
        "+1h",
        &[
            "run",
            "--redis-url",
            &url,
            "--queue",
            "early",
            "--broker",
            "reliable-list",
            "--handler",
            "noop",
            "--metrics-addr",
            "off",
        ],
    )
    .spawn()
    .expect("faketime runs (apt-get install faketime)");
    // Several maintenance rounds (every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let scheduled: i64 = cmd(&conn, &["ZCARD", &keys.scheduled()]).await;
    let queued: i64 = cmd(&conn, &["LLEN", "early"]).await;
    stop(worker);
    assert_eq!((scheduled, queued), (1, 0), "promoted an hour early");
}

#[tokio::test]
async fn a_producer_an_hour_behind_delays_on_the_server_clock() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let url = server.url();
    let keys = QueueKeys::new("pythia", "later");
    let status = skewed(
        "-1h",
        &[
            "produce",
            "--redis-url",
            &url,
            "--queue",
            "later",
            "--delay",
            "30s",
            "in-30-s",
        ],
    )
    .status()
    .expect("faketime runs (apt-get install faketime)");
    assert!(status.success());
    let due_in = due_in_ms(&conn, &keys).await;
    assert!(
        (25_000..=31_000).contains(&due_in),
        "due in {due_in} ms on the server's clock, not 30 s"
    );
}

#[tokio::test]
async fn messages_from_a_producer_an_hour_ahead_count_as_no_wait() {
    let server = RedisServer::start();
    let url = server.url();
    let status = skewed(
        "+1h",
        &[
            "produce",
            "--redis-url",
            &url,
            "--queue",
            "ahead",
            "a",
            "b",
            "c",
        ],
    )
    .status()
    .expect("faketime runs (apt-get install faketime)");
    assert!(status.success());
    let port = free_port();
    let mut worker = command([
        "run",
        "--redis-url",
        &url,
        "--queue",
        "ahead",
        "--handler",
        "noop",
    ])
    .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let labels = [("queue", "ahead")];
    let mut latency = [None, None];
    eventually(Duration::from_secs(20), "3 messages processed", || {
        let scrape = get(port, "/metrics").map(|r| r.1).unwrap_or_default();
        let done = sample(&scrape, "pythia_processing_seconds_count", &labels);
        latency = [
            "pythia_end_to_end_latency_seconds_count",
            "pythia_end_to_end_latency_seconds_sum",
        ]
        .map(|name| sample(&scrape, name, &labels));
        async move { done == Some(3.0) }
    })
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(
        latency,
        [Some(3.0), Some(0.0)],
        "counted, at no wait, though enqueued an hour in the future"
    );
}
