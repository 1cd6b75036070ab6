//! `pythia run` over several queues (`--queue a --queue b`, `--weights a=6,b=1`) against a real
//! redis-server: strict order, the weighted split, per-queue metrics, nothing lost when the
//! worker is stopped mid-run, and the usage errors.

mod common;
use pythia_test_support as support;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{command, free_port, get, pythia, run_burst, sample, text};
use support::{RedisServer, cmd, eventually};

/// LPUSHes `n` items `"<queue> <i>"` to the list `queue` (popped from the right: in order).
async fn fill(conn: &pythia_redis::RedisConnection, queue: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut args = vec!["LPUSH".to_owned(), queue.to_owned()];
        args.extend(chunk.iter().map(|i| format!("{queue} {i}")));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let _: i64 = cmd(conn, &refs).await;
    }
}

fn queue_of(line: &str) -> &str {
    line.split(' ').next().unwrap()
}

#[tokio::test]
async fn three_queues_in_strict_priority_drain_critical_first() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    for q in ["low", "default", "critical"] {
        fill(&conn, q, 50).await;
    }
    let o = run_burst(
        &url,
        &[
            "--queue",
            "critical",
            "--queue",
            "default",
            "-q",
            "low",
            "--concurrency",
            "1",
            "--batch-size",
            "8",
            "--log",
            "warn",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let queues: Vec<&str> = out.lines().map(queue_of).collect();
    assert_eq!(queues.len(), 150, "{}", text(&o));
    assert!(queues[..50].iter().all(|q| *q == "critical"), "{queues:?}");
    assert!(
        queues[50..100].iter().all(|q| *q == "default"),
        "{queues:?}"
    );
    assert!(queues[100..].iter().all(|q| *q == "low"), "{queues:?}");
    // In order within each queue, and every queue emptied (reliable list: nothing in flight).
    assert_eq!(out.lines().next(), Some("critical 0"));
    for q in ["critical", "default", "low"] {
        assert_eq!(cmd::<i64>(&conn, &["LLEN", q]).await, 0);
    }
}

#[tokio::test]
async fn weighted_queues_split_close_to_the_weights_while_all_have_work() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    for q in ["critical", "default", "low"] {
        fill(&conn, q, 1_500).await;
    }
    let o = run_burst(
        &url,
        &[
            "--broker",
            "list",
            "--weights",
            "critical=6,default=3,low=1",
            "--concurrency",
            "1",
            "--batch-size",
            "1",
            "--log",
            "warn",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4_500);
    // The first 1,500: critical (expected 900) is not yet empty, so the split is the weights'.
    let first = &lines[..1_500];
    for (q, want) in [("critical", 0.6), ("default", 0.3), ("low", 0.1)] {
        let share = first.iter().filter(|l| queue_of(l) == q).count() as f64 / 1_500.0;
        assert!((share - want).abs() < 0.05, "{q}: {share} (want {want})");
    }
}

#[tokio::test]
async fn per_queue_metrics_and_nothing_lost_when_stopped_mid_run() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    for q in ["critical", "low"] {
        fill(&conn, q, 150).await;
    }
    let port = free_port();
    let worker = command([
        "run",
        "--redis-url",
        &url,
        "--queue",
        "critical,low",
        "--json",
    ])
    .args([
        "--exec",
        "sleep 0.01",
        "--concurrency",
        "4",
        "--prefetch",
        "4",
    ])
    .args([
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--log",
        "warn",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    eventually(
        Duration::from_secs(20),
        "critical messages counted",
        || async {
            get(port, "/metrics").is_some_and(|(_, m)| {
                sample(
                    &m,
                    "pythia_messages_total",
                    &[("queue", "critical"), ("outcome", "ok")],
                )
                .is_some_and(|n| n >= 20.0)
            })
        },
    )
    .await;
    let (_, scrape) = get(port, "/metrics").unwrap();
    // Each queue's gauges carry its own label.
    assert!(
        sample(&scrape, "pythia_queue_depth", &[("queue", "low")]).is_some(),
        "{scrape}"
    );
    assert!(
        sample(&scrape, "pythia_queue_depth", &[("queue", "critical")]).is_some(),
        "{scrape}"
    );
    // Strict: nothing from low while critical has work.
    assert_eq!(
        sample(
            &scrape,
            "pythia_messages_total",
            &[("queue", "low"), ("outcome", "ok")]
        ),
        Some(0.0),
        "{scrape}"
    );
    let _ = Command::new("kill").arg(worker.id().to_string()).status();
    let o = worker.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    let first = summary["acked"].as_u64().unwrap();
    assert!(first < 300, "stopped mid-run: {summary}");

    let o = run_burst(
        &url,
        &[
            "--queue",
            "critical,low",
            "--json",
            "--handler",
            "noop",
            "--log",
            "warn",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    let second = summary["acked"].as_u64().unwrap();
    assert_eq!(first + second, 300, "every message handled once");
    for q in ["critical", "low"] {
        assert_eq!(cmd::<i64>(&conn, &["LLEN", q]).await, 0);
    }
}

#[test]
fn bad_queue_and_weight_combinations_are_usage_errors() {
    let url = "redis://127.0.0.1:1"; // never reached: the flags are checked first
    let cases: [(&[&str], &str); 5] = [
        (
            &["--queue", "a,b", "--weights", "a=1,c=2"],
            "--weights names c",
        ),
        (
            &["--queue", "a,b", "--weights", "a=1"],
            "--queue b has no weight",
        ),
        (&["--weights", "a=0"], "at least 1"),
        (&["--queue", "a,a"], "given twice"),
        (
            &[
                "--broker",
                "pubsub",
                "--queue",
                "news",
                "--weights",
                "news=1",
            ],
            "--weights is for list and stream",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["run", "--redis-url", url, "--metrics-addr", "off"];
        args.extend_from_slice(extra);
        let o = pythia(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{extra:?}: {}", text(&o));
    }
}

#[test]
fn bench_priority_reports_strict_and_weighted_splits() {
    let o = pythia(&[
        "bench",
        "--scenarios",
        "priority",
        "--messages",
        "4000",
        "--runs",
        "1",
        "--concurrency",
        "10",
        "--batch-size",
        "10",
        "--json",
        "--log",
        "warn",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let reports: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    let modes: Vec<&str> = reports
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["single", "strict", "weighted"]);
    let share = |mode: &str, queue: &str| {
        let r = reports.iter().find(|r| r["mode"] == mode).unwrap();
        r["split"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["queue"] == queue)
            .unwrap()["share"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(share("strict", "low"), 0.0, "strict takes nothing from low");
    // About 400 fetches of 10: a share's standard deviation is under 0.025.
    for (q, want) in [("critical", 0.6), ("default", 0.3), ("low", 0.1)] {
        let got = share("weighted", q);
        assert!((got - want).abs() < 0.1, "weighted {q}: {got}");
    }
    for r in reports {
        assert!(r["rate"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn streams_and_sharded_streams_in_strict_priority() {
    let server = RedisServer::start();
    let url = server.url();
    for shards in ["1", "3"] {
        // Produced low first, so that arrival order cannot explain the result.
        for q in ["low", "high"] {
            let bodies: Vec<String> = (0..20).map(|i| format!("{q} {i}")).collect();
            let mut args = vec![
                "produce",
                "--redis-url",
                &url,
                "--broker",
                "stream",
                "--shards",
                shards,
                "--queue",
                q,
            ];
            args.extend(bodies.iter().map(String::as_str));
            let o = pythia(&args);
            assert!(o.status.success(), "{}", text(&o));
        }
        let o = run_burst(
            &url,
            &[
                "--broker",
                "stream",
                "--shards",
                shards,
                "-q",
                "high,low",
                "--concurrency",
                "1",
                "--batch-size",
                "4",
                "--log",
                "warn",
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let queues: Vec<&str> = out.lines().map(queue_of).collect();
        assert_eq!(queues.len(), 40, "shards {shards}: {}", text(&o));
        assert!(
            queues[..20].iter().all(|q| *q == "high"),
            "shards {shards}: {queues:?}"
        );
        assert!(
            queues[20..].iter().all(|q| *q == "low"),
            "shards {shards}: {queues:?}"
        );
        let _: () = redis::cmd("FLUSHALL")
            .query(
                &mut redis::Client::open(url.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap(),
            )
            .unwrap();
    }
}
