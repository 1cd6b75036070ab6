//! The `pythia` binary end to end against a real redis-server: run the command, check its
//! output, exit code and the Redis state.

mod common;
use pythia_test_support as support;

use common::{command, produce, pythia, pythia_with_stdin, run_burst, text};
use std::process::{Command, Stdio};

use support::{RedisServer, cmd};

#[test]
fn quickstart_runs_end_to_end_on_its_own_redis() {
    let o = pythia(&["quickstart", "--messages", "3000", "--log", "warn"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("a throwaway redis-server this command started"),
        "{out}"
    );
    assert!(
        out.contains("reliable-list processed 3000 of 3000"),
        "{out}"
    );
    assert!(
        out.contains("list          processed 3000 of 3000"),
        "{out}"
    );
    assert!(out.contains("stopped the throwaway redis-server"), "{out}");
}

#[tokio::test]
async fn produce_then_run_burst_with_each_list_broker() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    for broker in ["list", "reliable-list"] {
        let q = format!("cli-{broker}");
        let o = produce(
            &url,
            &[
                "--broker", broker, "--queue", &q, "--header", "k=v", "a", "b", "c",
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("produced 3 messages"), "{}", text(&o));
        let o = run_burst(
            &url,
            &[
                "--broker",
                broker,
                "--queue",
                &q,
                "--concurrency",
                "1",
                // Fetched ahead, still handled one at a time and in order.
                "--prefetch",
                "2",
                "--log",
                "warn",
            ],
        );
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "a\nb\nc\n",
            "{broker}: {out}"
        );
        assert!(
            out.contains("processed 3 (acked 3, retried 0, dead-lettered 0)"),
            "{out}"
        );
        let left: i64 = cmd(&conn, &["LLEN", &q]).await;
        assert_eq!(left, 0);
    }
}

#[tokio::test]
async fn produce_reads_stdin_and_generates_counts() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let o = pythia_with_stdin(
        &[
            "produce",
            "--redis-url",
            &url,
            "--queue",
            "in",
            "--raw",
            "-",
        ],
        b"one\ntwo\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let items: Vec<String> = cmd(&conn, &["LRANGE", "in", "0", "-1"]).await;
    assert_eq!(items, ["two", "one"], "raw bodies, LPUSHed in order");

    let o = produce(&url, &["--queue", "gen", "--count", "2500", "--size", "64"]);
    assert!(o.status.success(), "{}", text(&o));
    let n: i64 = cmd(&conn, &["LLEN", "gen"]).await;
    assert_eq!(n, 2500);
}

#[tokio::test]
async fn exec_handlers_ack_reject_and_retry_by_exit_code() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let o = produce(&url, &["--queue", "ex", "ok", "bad", "flaky"]);
    assert!(o.status.success(), "{}", text(&o));
    // ok: exit 0; bad: exit 65 (reject); flaky: exit 1 on the first attempt only.
    let script = r#"body=$(cat); case "$body" in ok) exit 0;; bad) exit 65;; flaky) [ "$PYTHIA_ATTEMPT" -ge 2 ] && exit 0 || exit 1;; esac"#;
    let o = run_burst(
        &url,
        &[
            "--queue",
            "ex",
            "--exec",
            script,
            "--retry-delay",
            "50ms",
            "--log",
            "warn",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("processed 4 (acked 2, retried 1, dead-lettered 1)"),
        "{out}"
    );
    let dead: Vec<String> = cmd(&conn, &["LRANGE", "pythia:{ex}:dlq", "0", "-1"]).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].contains(r#""body":"bad""#) && dead[0].contains("exited 65"),
        "{dead:?}"
    );
}

#[test]
fn bad_input_is_named_with_exit_code_2() {
    let o = pythia(&["run", "--queue", "q", "--broker", "carrier-pigeon"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("carrier-pigeon"));

    let o = pythia(&[
        "run",
        "--queue",
        "q",
        "--redis-url",
        "http://u:hunter2@host",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("invalid Redis URL"), "{}", text(&o));
    assert!(!text(&o).contains("hunter2"), "{}", text(&o));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:pw@127.0.0.1:{port}");
    let o = produce(&url, &["--queue", "q", "--connect-timeout", "1s", "x"]);
    assert_eq!(
        o.status.code(),
        Some(69),
        "unreachable, not a typo: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("cannot connect to Redis at redis://:***@127.0.0.1"),
        "{}",
        text(&o)
    );

    let o = pythia(&["produce", "--queue", "q"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nothing to produce"), "{}", text(&o));

    let o = pythia(&["run", "--queue", "q", "--shutdown-grace", "soon"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn help_documents_every_command() {
    for sub in ["run", "produce", "quickstart"] {
        let o = pythia(&[sub, "--help"]);
        assert!(o.status.success());
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(help.contains("--redis-url"), "{sub}: {help}");
    }
    let o = pythia(&["--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Exit codes"));
}

/// With no `--group-start`, the group starts at the beginning: the jobs queued before the first
/// worker ran are processed.
#[tokio::test]
async fn stream_produce_then_run_burst_in_a_consumer_group() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    // Every command goes to the slow log, to see the XADDs' arguments.
    let _: () = cmd(&conn, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]).await;
    let o = produce(
        &url,
        &["--broker", "stream", "--queue", "events", "x", "y", "z"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let log: Vec<redis::Value> = cmd(&conn, &["SLOWLOG", "GET", "1000"]).await;
    let adds: Vec<Vec<String>> = log
        .into_iter()
        .filter_map(|e| match e {
            redis::Value::Array(parts) => redis::from_redis_value(parts[3].clone()).ok(),
            _ => None,
        })
        .filter(|args: &Vec<String>| args[0].eq_ignore_ascii_case("XADD"))
        .collect();
    assert_eq!(adds.len(), 3, "{adds:?}");
    assert!(
        adds.iter().all(|a| a[2] == "*"),
        "no MAXLEN without --max-len: {adds:?}"
    );
    let o = run_burst(
        &url,
        &[
            "--broker",
            "stream",
            "--queue",
            "events",
            "--group",
            "g1",
            "--concurrency",
            "1",
            "--log",
            "warn",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "x\ny\nz\n", "{out}");
    assert!(out.contains("processed 3 (acked 3"), "{out}");
    let pending: Vec<redis::Value> = cmd(&conn, &["XPENDING", "events", "g1"]).await;
    assert_eq!(
        pending.first(),
        Some(&redis::Value::Int(0)),
        "nothing left pending"
    );

    // `--group-start new` is for event streams: the entries queued before are skipped.
    let o = run_burst(
        &url,
        &[
            "--broker",
            "stream",
            "--queue",
            "events",
            "--group",
            "g2",
            "--group-start",
            "new",
            "--log",
            "warn",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "", "{out}");
}

#[tokio::test]
async fn pubsub_workers_receive_channels_and_patterns() {
    let server = RedisServer::start();
    let url = server.url();
    let mut worker = command([
        "run",
        "--redis-url",
        &url,
        "--broker",
        "pubsub",
        "--queue",
        "alerts",
    ])
    .args([
        "--pattern",
        "news.*",
        "--metrics-addr",
        "off",
        "--log",
        "warn",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Publish until the subscriber is there (a publish reports its receivers).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let o = produce(&url, &["--broker", "pubsub", "--queue", "alerts", "first"]);
        assert!(o.status.success(), "{}", text(&o));
        if text(&o).contains(", 1 deliveries") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "subscriber never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = produce(
        &url,
        &["--broker", "pubsub", "--queue", "news.eu", "second"],
    );
    assert!(text(&o).contains(", 1 deliveries"), "{}", text(&o));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SIGTERM: a graceful stop that prints the summary.
    let _ = Command::new("kill").arg(worker.id().to_string()).status();
    let status = worker.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(worker.stdout.as_mut().unwrap(), &mut out).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(worker.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?} {err}");
    assert!(out.ends_with("first\nsecond\n"), "{out}");
}

#[test]
fn bench_smoke_runs_every_scenario_and_prints_json() {
    let o = pythia(&[
        "bench",
        "--messages",
        "2000",
        "--runs",
        "1",
        "--latency-rate",
        "2000",
        "--latency-duration",
        "500ms",
        "--io-concurrency",
        "200",
        "--json",
        "--log",
        "warn",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let reports: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "list",
            "reliable-list",
            "stream",
            "pubsub",
            "produce-list",
            "produce-stream",
            "io-bound",
            "http",
            "latency",
            "exec-persistent"
        ]
    );
    for r in reports {
        assert!(r["rate"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_rss_bytes"].as_u64().unwrap() > 0, "{r}");
    }
    let http = reports.iter().find(|r| r["scenario"] == "http").unwrap();
    assert!(http["bare_rate"].as_f64().unwrap() > 0.0, "{http}");
    let latency = reports.iter().find(|r| r["scenario"] == "latency").unwrap();
    assert!(latency["p99_ms"].as_f64().unwrap() > 0.0, "{latency}");
}

#[test]
fn bench_smoke_scale_shares_one_queue_without_duplicates() {
    let o = pythia(&[
        "bench",
        "--scenarios",
        "scale",
        "--processes",
        "2,1",
        "--messages",
        "3000",
        "--batch-size",
        "100",
        "--runs",
        "1",
        "--json",
        "--log",
        "warn",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let reports: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows: Vec<(&str, u64)> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["scenario"], "scale", "{r}");
            assert!(r["rate"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["redis_cpu_seconds"].as_f64().unwrap() >= 0.0, "{r}");
            assert_eq!(r["processed_all_runs"], 3000, "{r}");
            assert_eq!(r["distinct_all_runs"], 3000, "{r}");
            assert_eq!(r["duplicates_all_runs"], 0, "{r}");
            (
                r["broker"].as_str().unwrap(),
                r["processes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("stream", 1),
            ("stream", 2),
            ("reliable-list", 1),
            ("reliable-list", 2)
        ]
    );
}

#[tokio::test]
async fn produce_delay_and_at_schedule_in_redis() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let o = produce(&url, &["--queue", "later", "--delay", "1s", "soon"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = produce(
        &url,
        &[
            "--queue",
            "later",
            "--at",
            "2000-01-01T00:00:00Z",
            "overdue",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let queued: i64 = cmd(&conn, &["LLEN", "later"]).await;
    let scheduled: i64 = cmd(&conn, &["ZCARD", "pythia:{later}:scheduled"]).await;
    assert_eq!((queued, scheduled), (0, 2), "both wait in the schedule");
    let started = std::time::Instant::now();
    let o = run_burst(
        &url,
        &["--queue", "later", "--concurrency", "1", "--log", "warn"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "overdue\nsoon\n",
        "{}",
        text(&o)
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "the delay was honoured"
    );

    let o = produce(
        &url,
        &["--broker", "pubsub", "--queue", "c", "--delay", "1s", "x"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = produce(&url, &["--queue", "q", "--at", "tomorrow", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// `--threads 1` runs the worker on one thread; `--threads 4` on four runtime workers.
#[tokio::test]
async fn threads_sets_the_runtime_threads() {
    let server = RedisServer::start();
    let url = server.url();
    let mut counts = Vec::new();
    for threads in ["1", "4"] {
        let mut child = command([
            "--threads",
            threads,
            "run",
            "--redis-url",
            &url,
            "--queue",
            "idle",
            "--handler",
            "noop",
            "--metrics-addr",
            "off",
            "--log",
            "warn",
        ])
        .spawn()
        .unwrap();
        let status = format!("/proc/{}/status", child.id());
        let mut n = 0;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            n = std::fs::read_to_string(&status)
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(0);
            // Running once it made its consumer (its blocking read is under way).
            let consumers: i64 = cmd(
                &server.connect().await,
                &["SCARD", "pythia:{idle}:consumers"],
            )
            .await;
            if consumers > 0 {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let _: i64 = cmd(&server.connect().await, &["DEL", "pythia:{idle}:consumers"]).await;
        counts.push(n);
    }
    eprintln!("threads of the worker process with --threads 1 and 4: {counts:?}");
    assert!(
        counts[0] >= 1 && counts[0] < counts[1],
        "threads: {counts:?}"
    );
    assert!(
        counts[1] >= 5,
        "four workers and the main thread: {counts:?}"
    );
}
