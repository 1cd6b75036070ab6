//! Steering a live queue from the CLI against a real redis-server: `pythia pause` / `resume`
//! over three worker processes, `--rate-limit` shared by three worker processes, `pythia empty`
//! and `pythia scheduled list|cancel`.

mod common;
use pythia_test_support as support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{command, free_port, get, pythia_on, sample, text};
use pythia::Message;
use pythia::redis::{DelayedProducer, ListProducer, RedisConnection};
use serde_json::Value as Json;
use support::{RedisServer, cmd};
use tokio::time::{Instant, sleep};

/// Worker processes, killed when dropped (a failing test leaves none behind).
struct Workers(Vec<Child>);

impl Workers {
    fn start(n: usize, args: impl Fn(usize) -> Vec<String>) -> Self {
        Self(
            (0..n)
                .map(|i| {
                    command(args(i))
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }

    /// SIGTERM to each, then each one's exit status and stdout.
    fn stop(mut self) -> Vec<(bool, String, String)> {
        for c in &self.0 {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|c| {
                let o = c.wait_with_output().unwrap();
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn fill(conn: &RedisConnection, queue: &str, n: usize) {
    let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("m{i}"))).collect();
    ListProducer::new(conn, queue)
        .push_many(&msgs)
        .await
        .unwrap();
}

async fn depth(conn: &RedisConnection, queue: &str) -> i64 {
    cmd(conn, &["LLEN", queue]).await
}

/// Messages in the in-flight hashes of every consumer of `jobs`.
async fn in_flight(conn: &RedisConnection) -> i64 {
    let keys: Vec<String> = cmd(conn, &["KEYS", "pythia:{jobs}:inflight:*"]).await;
    let mut n = 0;
    for k in keys {
        n += cmd::<i64>(conn, &["HLEN", &k]).await;
    }
    n
}

/// A fresh directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p =
            std::env::temp_dir().join(format!("pythia-steering-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn processed(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Three `pythia run` processes on one queue: `pythia pause` stops all three fetching within a
/// second while they finish what they hold (and stay ready, gauge at 1); `pythia resume` starts
/// them again; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_three_worker_processes_within_a_second_and_resume_restarts_them() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    const TOTAL: usize = 600;
    fill(&conn, "jobs", TOTAL).await;
    let dir = TempDir::new();
    let exec = format!("b=$(cat); sleep 0.3; : > '{}'/\"$b\"", dir.path().display());
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let workers = Workers::start(3, |i| {
        [
            "run",
            "--redis-url",
            &url,
            "--queue",
            "jobs",
            "--exec",
            &exec,
            "--concurrency",
            "4",
            "--metrics-addr",
            &format!("127.0.0.1:{}", ports[i]),
            "--log",
            "warn",
        ]
        .map(String::from)
        .to_vec()
    });
    // All three running.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ports
        .iter()
        .all(|&p| get(p, "/readyz").is_some_and(|(code, _)| code == 200))
        || processed(dir.path()) < 12
    {
        assert!(Instant::now() < deadline, "workers never got going");
        sleep(Duration::from_millis(50)).await;
    }

    let o = pythia_on(&url, "pause", &["--queue", "jobs"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("paused queue \"jobs\""), "{}", text(&o));
    sleep(Duration::from_secs(1)).await;
    let after_1s = depth(&conn, "jobs").await;
    sleep(Duration::from_millis(1500)).await;
    let later = depth(&conn, "jobs").await;
    assert_eq!(
        after_1s, later,
        "a worker fetched more than 1 s after the pause"
    );
    assert!(
        later > 0,
        "the queue drained before the pause: test too slow to tell"
    );
    // They finished and settled what they held, and stayed ready.
    assert_eq!(in_flight(&conn).await, 0, "held messages not settled");
    let done_while_paused = processed(dir.path());
    for &p in &ports {
        let (code, _) = get(p, "/readyz").unwrap();
        assert_eq!(code, 200, "a paused worker must stay ready");
        let (_, scrape) = get(p, "/metrics").unwrap();
        assert_eq!(
            sample(&scrape, "pythia_queue_paused", &[("queue", "jobs")]),
            Some(1.0),
            "{scrape}"
        );
    }
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        processed(dir.path()),
        done_while_paused,
        "processed while paused"
    );
    assert_eq!(depth(&conn, "jobs").await, later);

    let o = pythia_on(&url, "resume", &["--queue", "jobs", "--json"]);
    let doc: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(
        doc,
        serde_json::json!({"queue": "jobs", "paused": false, "changed": true})
    );
    let resumed = Instant::now();
    while depth(&conn, "jobs").await == later {
        assert!(
            resumed.elapsed() < Duration::from_millis(1500),
            "workers did not resume"
        );
        sleep(Duration::from_millis(20)).await;
    }
    sleep(Duration::from_millis(500)).await;
    for (ok, _, err) in workers.stop() {
        assert!(ok, "{err}");
    }
    // Nothing lost: each message processed once, or back in the queue.
    let done = processed(dir.path());
    assert!(done > done_while_paused);
    assert_eq!(in_flight(&conn).await, 0);
    assert_eq!(
        done as i64 + depth(&conn, "jobs").await,
        TOTAL as i64,
        "processed + waiting"
    );
    let dlq: i64 = cmd(&conn, &["LLEN", "pythia:{jobs}:dlq"]).await;
    assert_eq!(dlq, 0);
}

/// Three `pythia run --rate-limit 200/s` processes on one queue fetch 200 messages a second
/// together, within 5 %, measured from the queue's depth over the 4 s they were all busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_share_one_rate_limit() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    const TOTAL: i64 = 3000;
    fill(&conn, "jobs", TOTAL as usize).await;
    let workers = Workers::start(3, |_| {
        [
            "run",
            "--redis-url",
            &url,
            "--queue",
            "jobs",
            "--handler",
            "noop",
            "--rate-limit",
            "200/s",
            "--metrics-addr",
            "off",
            "--log",
            "warn",
            "--json",
        ]
        .map(String::from)
        .to_vec()
    });
    // Depth samples from the first fetch on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while depth(&conn, "jobs").await == TOTAL {
        assert!(Instant::now() < deadline, "workers never started");
        sleep(Duration::from_millis(10)).await;
    }
    let first = Instant::now();
    let mut samples = Vec::new();
    while first.elapsed() < Duration::from_millis(5600) {
        let d = depth(&conn, "jobs").await;
        samples.push((first.elapsed(), d));
        sleep(Duration::from_millis(50)).await;
    }
    let results = workers.stop();
    // From 1 s after the first fetch (all three started: start-up is not in the window) to 4 s
    // later.
    let at = |t: Duration| *samples.iter().find(|(e, _)| *e >= t).unwrap();
    let (ta, da) = at(Duration::from_secs(1));
    let (tb, db) = at(Duration::from_secs(5));
    let rate = (da - db) as f64 / (tb - ta).as_secs_f64();
    eprintln!(
        "aggregate rate {rate:.1}/s ({} fetched in {:?})",
        da - db,
        tb - ta
    );
    assert!(
        db > 0,
        "the queue drained: the workers were not busy all along"
    );
    assert!(
        (rate - 200.0).abs() <= 10.0,
        "aggregate rate {rate:.1}/s against a limit of 200/s ({} fetched in {:?})",
        da - db,
        tb - ta
    );
    // All three took part.
    for (ok, out, err) in results {
        assert!(ok, "{err}");
        let summary: Json = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap();
        assert!(summary["fetched"].as_u64().unwrap() > 0, "{summary}");
    }
}

#[tokio::test]
async fn pause_and_resume_say_what_changed() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let o = pythia_on(&url, "pause", &["--queue", "jobs", "--json"]);
    let doc: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(
        doc,
        serde_json::json!({"queue": "jobs", "paused": true, "changed": true})
    );
    assert_eq!(
        cmd::<i64>(&conn, &["EXISTS", "pythia:{jobs}:paused"]).await,
        1
    );
    let o = pythia_on(&url, "pause", &["--queue", "jobs"]);
    assert!(text(&o).contains("was paused already"), "{}", text(&o));
    let o = pythia_on(&url, "resume", &["--queue", "jobs"]);
    assert!(text(&o).contains("resumed queue \"jobs\""), "{}", text(&o));
    let o = pythia_on(&url, "resume", &["--queue", "jobs"]);
    assert!(
        o.status.success() && text(&o).contains("was not paused"),
        "{}",
        text(&o)
    );
    assert_eq!(
        cmd::<i64>(&conn, &["EXISTS", "pythia:{jobs}:paused"]).await,
        0
    );
    let o = pythia_on(
        &url,
        "run",
        &["--broker", "pubsub", "--queue", "c", "--rate-limit", "5/s"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = pythia_on(&url, "run", &["--queue", "jobs", "--rate-limit", "5/d"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("expected N/s, N/m or N/h"),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn empty_asks_then_removes_and_counts() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    fill(&conn, "jobs", 5).await;
    DelayedProducer::list(&conn, "jobs")
        .schedule_in(&Message::new("later"), Duration::from_secs(600))
        .await
        .unwrap();
    // No terminal, no --yes: refused, nothing deleted.
    let o = pythia_on(&url, "empty", &["--queue", "jobs"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pass --yes"), "{}", text(&o));
    assert_eq!(depth(&conn, "jobs").await, 5);

    let o = pythia_on(&url, "empty", &["--queue", "jobs", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("removed 5 messages from queue \"jobs\""),
        "{}",
        text(&o)
    );
    assert_eq!(depth(&conn, "jobs").await, 0);
    let o = pythia_on(
        &url,
        "empty",
        &["--queue", "jobs", "--yes", "--scheduled", "--json"],
    );
    let doc: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(
        doc,
        serde_json::json!({"queue": "jobs", "removed": 0, "removed_scheduled": 1})
    );
}

#[tokio::test]
async fn scheduled_lists_pages_and_cancels() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let delayed = DelayedProducer::list(&conn, "jobs");
    for i in 0..3u64 {
        let m = Message::new(format!("body {i}")).with_id(format!("d{i}"));
        delayed
            .schedule_at(&m, SystemTime::now() + Duration::from_secs(600 + i))
            .await
            .unwrap();
    }
    let o = pythia_on(&url, "scheduled list", &["--queue", "jobs", "--limit", "2"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "KIND",
        "delayed",
        "d0",
        "d1",
        "body 1",
        "in 10m",
        "1–2 of 3",
        "--offset 2",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
    assert!(!out.contains("d2"), "{out}");
    let o = pythia_on(
        &url,
        "scheduled list",
        &["--queue", "jobs", "--offset", "2", "--json"],
    );
    let doc: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(doc["total"], 3);
    let items = doc["scheduled"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], "d2");
    assert_eq!(items[0]["kind"], "delayed");
    assert_eq!(items[0]["attempt"], 1);
    assert_eq!(items[0]["body"], "body 2");
    assert!(items[0]["due_at_ms"].as_u64().unwrap() > 0);

    let o = pythia_on(
        &url,
        "scheduled cancel",
        &["--queue", "jobs", "--id", "d1", "--id", "nope", "--json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let doc: Json =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(
        doc["cancelled"],
        serde_json::json!([{"id": "d1", "kind": "delayed"}])
    );
    assert_eq!(doc["missing"], serde_json::json!(["nope"]));
    let o = pythia_on(&url, "scheduled cancel", &["--queue", "jobs", "--id", "d0"]);
    assert!(
        o.status.success() && text(&o).contains("cancelled delayed \"d0\""),
        "{}",
        text(&o)
    );
    assert_eq!(delayed.pending().await.unwrap(), 1);
}
