//! Start-up against a Redis that is not there (yet): `pythia run` waits for it with backoff,
//! logging once per window instead of once per attempt; one-shot commands give up after
//! `--connect-timeout` (10 s by default) with exit 69, distinct from a configuration error (2).

mod common;
use pythia_test_support as support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{command, free_port, produce, pythia, pythia_on, text};
use support::{RedisServer, cmd};

/// `pythia run` started 2 s before its Redis waits for it, then drains what is produced.
#[tokio::test]
async fn run_waits_for_a_redis_that_starts_later_then_drains_the_queue() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut worker = command([
        "run",
        "--redis-url",
        &url,
        "--queue",
        "late",
        "--metrics-addr",
        "off",
    ])
    .env_remove("PYTHIA_CONNECT_TIMEOUT")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        worker.try_wait().unwrap().is_none(),
        "pythia run exited while Redis was down"
    );
    let server = RedisServer::start_on(port, &[]);
    let o = produce(&url, &["--queue", "late", "--count", "20"]);
    assert!(o.status.success(), "{}", text(&o));

    let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines();
    for i in 0..20 {
        let line = lines.next().expect("a printed message").unwrap();
        assert!(!line.is_empty(), "message {i}");
    }
    let conn = server.connect().await;
    let left: i64 = cmd(&conn, &["LLEN", "late"]).await;
    assert_eq!(left, 0, "the queue is drained");

    let ok = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Several attempts in 2 s (backoff from 250 ms), one line: the window is 30 s.
    assert_eq!(
        stderr.matches("Redis is not reachable yet").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("still waiting for Redis").count(),
        0,
        "{stderr}"
    );
    assert!(stderr.contains("Redis is reachable: connected"), "{stderr}");
    assert!(stderr.contains("attempts"), "{stderr}");
}

/// A one-shot command waits 10 s by default, then exits 69; `--connect-timeout` shortens it,
/// for `run` too.
#[test]
fn one_shot_commands_exit_69_once_their_connect_timeout_has_passed() {
    let url = format!("redis://:pw@127.0.0.1:{}", free_port());

    let started = Instant::now();
    let o = pythia_on(&url, "inspect", &["--queue", "q"]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(
        (Duration::from_millis(9500)..Duration::from_secs(15)).contains(&took),
        "the default wait is 10 s: took {took:?}\n{}",
        text(&o)
    );
    let out = text(&o);
    assert!(
        out.contains("cannot connect to Redis at redis://:***@127.0.0.1"),
        "{out}"
    );
    assert!(out.contains("--connect-timeout"), "{out}");
    assert!(!out.contains("pw@"), "{out}");

    for args in [
        &["produce", "--queue", "q", "x"][..],
        &["run", "--queue", "q", "--metrics-addr", "off"][..],
    ] {
        let started = Instant::now();
        let mut all = args.to_vec();
        all.extend(["--redis-url", &url, "--connect-timeout", "1500ms"]);
        let o = pythia(&all);
        let took = started.elapsed();
        assert_eq!(o.status.code(), Some(69), "{args:?}: {}", text(&o));
        assert!(
            (Duration::from_millis(1400)..Duration::from_secs(5)).contains(&took),
            "{args:?} took {took:?}"
        );
    }

    // A typo is not an outage: exit 2 at once.
    let o = produce("http://x", &["--queue", "q", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = pythia(&["produce", "--connect-timeout", "soon", "--queue", "q", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// A server that refuses the password answers the same on every retry: exit 2 at once, no
/// waiting (a configuration error, not an outage). So does one that wants a password.
#[test]
fn refused_credentials_exit_2_without_waiting() {
    let server = RedisServer::start_with(&["--requirepass", "right"]);
    for url in [
        format!("redis://:wrong@127.0.0.1:{}", server.port()),
        format!("redis://127.0.0.1:{}", server.port()),
    ] {
        let started = Instant::now();
        let o = pythia_on(&url, "run", &["--queue", "q", "--metrics-addr", "off"]);
        assert_eq!(o.status.code(), Some(2), "{url}: {}", text(&o));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{url}: {}",
            text(&o)
        );
        assert!(!text(&o).contains("not reachable yet"), "{}", text(&o));
    }
}

/// `pythia run` with its output, without the variables that would change its defaults.
fn run_worker(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = command(["run"]);
    c.args(args)
        .env_remove("REDIS_URL")
        .env_remove("PYTHIA_QUEUE")
        .env_remove("PYTHIA_METRICS_ADDR")
        .env_remove("PYTHIA_CONFIG")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The default metrics address taken (a second worker on the host): a warning, and the worker
/// works without an endpoint. An address given by flag or environment must be free: exit 2.
#[tokio::test]
async fn a_taken_default_metrics_port_warns_but_a_chosen_one_fails() {
    let server = RedisServer::start();
    let url = server.url();
    // Hold the default port; if another process holds it already, the condition is the same.
    let _default = std::net::TcpListener::bind("0.0.0.0:9090");
    let o = produce(&url, &["--queue", "m", "--count", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run_worker(
        &[
            "--redis-url",
            &url,
            "--queue",
            "m",
            "--burst",
            "--handler",
            "noop",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("default metrics port is taken"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("processed 5"), "{}", text(&o));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let by_flag = run_worker(
        &[
            "--redis-url",
            &url,
            "--queue",
            "m",
            "--burst",
            "--metrics-addr",
            &addr,
        ],
        &[],
    );
    let by_env = run_worker(
        &["--redis-url", &url, "--queue", "m", "--burst"],
        &[("PYTHIA_METRICS_ADDR", &addr)],
    );
    for o in [by_flag, by_env] {
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("cannot listen on {addr}")),
            "{}",
            text(&o)
        );
    }
}
