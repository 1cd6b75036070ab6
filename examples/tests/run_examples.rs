//! Every example runs to its end against a real redis-server (the test support's, on a free
//! loopback port, never 6379) and drains what it produced: the examples are run, not only
//! compiled.
//!
//! The example binaries are the ones `cargo test` builds next to this test
//! (`target/<profile>/examples/<name>`).

#[path = "../../pythia-redis/tests/support/mod.rs"]
mod support;

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
