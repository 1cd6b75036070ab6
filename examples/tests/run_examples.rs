//! Every example runs to its end against a real redis-server (the test support's, on a free
//! loopback port, never 6379) and drains what it produced: the examples are run, not only
//! compiled.
//!
//! The example binaries are the ones `cargo test` builds next to this test
//! (`target/<profile>/examples/<name>`).

use pythia_test_support as support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::RedisServer;

/// Runs example `name` against a fresh server; returns its standard output.
fn run(name: &str) -> String {
    let redis = RedisServer::start();
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .unwrap();
    assert!(bin.exists(), "{} not built", bin.display());
    let mut child = Command::new(&bin)
        .env("REDIS_URL", redis.url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("example {name} did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The runtime's summary line: `processed N (acked A, retried R, dead-lettered D), …`.
fn summary(stdout: &str) -> (u64, u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("processed "))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(4)
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1], nums[2], nums[3])
}

#[test]
fn the_dashboard_mounts_under_a_path_of_a_service() {
    let out = run("dashboard_mount");
    for want in [
        "GET / -> 200 my service",
        "GET /ops/queues/api/queues/example%3Amounted without the token -> 401",
        "GET /ops/queues/api/queues/example%3Amounted -> 200 broker \"list\" depth 3",
        "GET /ops/queues -> 200, links under the mount path: true",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn the_queues_example_counts_and_reports() {
    let out = run("queues");
    let (processed, acked, _, dead) = summary(&out);
    assert_eq!((processed, acked, dead), (100, 90, 10), "{out}");
    let report: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["name"] == "example:queues")
        .unwrap_or_else(|| panic!("no report of example:queues in:\n{out}"));
    assert_eq!(report["kind"], "reliable-list", "{report}");
    assert_eq!(report["today"]["processed"], 90, "{report}");
    assert_eq!(report["today"]["failed"], 10, "{report}");
    assert_eq!(report["dead_letters"], 10, "{report}");
    assert_eq!(report["paused"], true, "{report}");
}

#[test]
fn the_list_example_drains_its_orders() {
    let (processed, acked, _, dead) = summary(&run("list"));
    assert_eq!(processed, acked + dead);
    assert!(acked > 0, "{processed} processed");
}

#[test]
fn the_steering_example_drains_at_its_limit_through_a_pause_and_a_back_off() {
    let out = run("steering");
    let (processed, acked, retried, dead) = summary(&out);
    assert_eq!((processed, acked, retried, dead), (301, 300, 1, 0), "{out}");
    assert!(
        out.contains("\npaused\n") && out.contains("\nresumed\n"),
        "{out}"
    );
    // 300 at 100/s (less the first batch), 1 s paused, 0.5 s backed off.
    let took: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("took ")?.strip_suffix(" s")?.parse().ok())
        .unwrap_or_else(|| panic!("no time in:\n{out}"));
    assert!(took >= 4.0, "took {took} s:\n{out}");
}

#[test]
fn the_reliable_list_example_drains_every_job() {
    let (processed, acked, retried, dead) = summary(&run("reliable_list"));
    assert_eq!((acked, dead), (500, 0));
    assert_eq!(processed, acked + retried);
    assert!(retried > 0, "one job in ten fails once");
}

#[test]
fn the_stream_example_drains_every_job() {
    let (processed, acked, retried, dead) = summary(&run("stream"));
    assert_eq!(processed, acked + retried + dead);
    assert_eq!(acked + dead, 500);
}

#[test]
fn the_sharded_stream_example_drains_every_order() {
    let (processed, acked, retried, dead) = summary(&run("sharded_stream"));
    assert_eq!(processed, acked + retried + dead);
    assert_eq!(acked + dead, 1000);
}

#[test]
fn the_shared_breaker_example_pauses_both_replicas_and_drains() {
    let out = run("shared_breaker");
    assert!(out.contains("breaker open on both replicas"), "{out}");
    assert!(out.contains("breaker closed on both replicas"), "{out}");
    let acked: u64 = out
        .lines()
        .filter_map(|l| l.strip_prefix("replica "))
        .map(|l| summary(&l[3..]).1)
        .sum();
    assert_eq!(acked, 60, "{out}");
}

#[test]
fn the_pubsub_example_processes_what_it_published() {
    let (processed, acked, _, _) = summary(&run("pubsub"));
    assert!(acked > 0 && processed >= acked, "{processed} processed");
}

#[test]
fn the_typed_job_example_keeps_outputs() {
    let out = run("typed_job");
    let (processed, acked, retried, dead) = summary(&out);
    assert_eq!((processed, acked, retried, dead), (100, 99, 0, 1));
    assert!(
        out.contains(r#"succeeded {"url":"https://cdn.example/img0-128.png"}"#),
        "{out}"
    );
}

#[test]
fn the_progress_example_shows_a_timeline() {
    let out = run("progress");
    let (processed, acked, retried, dead) = summary(&out);
    assert_eq!((processed, acked, retried, dead), (5, 5, 0, 0));
    assert!(out.contains(": succeeded 4/4"), "{out}");
    let kinds: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(kinds.first(), Some(&"queued"), "{out}");
    assert_eq!(kinds.last(), Some(&"succeeded"), "{out}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "imported").count(),
        4,
        "{out}"
    );
    assert!(out.contains("data={\"batch\":4,\"rows\":100}"), "{out}");
}

#[test]
fn the_checkpoint_example_resumes_where_it_failed() {
    let out = run("checkpoint");
    let (processed, acked, retried, dead) = summary(&out);
    assert_eq!((processed, acked, retried, dead), (2, 1, 1, 0));
    assert!(out.contains("attempt 1 starts at step 1"), "{out}");
    assert!(out.contains("attempt 2 starts at step 6"), "{out}");
    assert!(out.contains("done: 1000 rows"), "{out}");
}

/// One HTTP GET on 127.0.0.1:`port`: (status code, body), `None` when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.get(9..12)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n")?.1.to_owned()))
}

/// The service example (what deploy/Dockerfile.worker builds) does not drain and exit: it
/// becomes ready, works what arrives, counts it in /metrics, and stops on SIGTERM.
#[tokio::test]
async fn the_service_example_runs_until_sigterm_serving_its_probes() {
    let redis = RedisServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("service"))
        .unwrap();
    let mut child = Command::new(&bin)
        .env("REDIS_URL", redis.url())
        .env("PYTHIA_QUEUE", "svc")
        .env("PYTHIA_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port, "/readyz").map(|(c, _)| c) != Some(200) {
        assert!(child.try_wait().unwrap().is_none(), "the service exited");
        assert!(Instant::now() < deadline, "/readyz never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let conn = redis.connect().await;
    pythia::redis::ListProducer::new(&conn, "svc")
        .push_many(
            &(0..50)
                .map(|i| pythia::Message::new(format!("job {i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let done = |scrape: &str| {
        scrape.lines().any(|l| {
            l.starts_with("pythia_messages_total{")
                && l.contains("outcome=\"ok\"")
                && l.ends_with(" 50")
        })
    };
    loop {
        let (_, scrape) = get(port, "/metrics").unwrap_or_default();
        if done(&scrape) {
            break;
        }
        assert!(Instant::now() < deadline, "50 jobs not acked:\n{scrape}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none(), "still running");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("processed 50 (acked 50")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_priorities_example_drains_critical_first_then_by_weight() {
    let out = run("priorities");
    assert!(
        out.contains("strict, first 300 jobs: critical 67%, default 33%, low 0%"),
        "{out}"
    );
    let weighted = out
        .lines()
        .find(|l| l.starts_with("weighted, first 300 jobs: "))
        .unwrap_or_else(|| panic!("{out}"));
    let critical: u32 = weighted
        .split("critical ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{weighted}"));
    // 300 fetches of one: 60 % expected, a standard deviation under 3 points.
    assert!((45..=75).contains(&critical), "{weighted}");
    let summaries: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("processed "))
        .collect();
    assert_eq!(summaries.len(), 2, "{out}");
    for s in summaries {
        assert!(s.starts_with("processed 600 (acked 600"), "{s}");
    }
}
