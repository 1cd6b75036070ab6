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
