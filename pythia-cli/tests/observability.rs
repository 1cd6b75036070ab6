//! `/metrics`, `/healthz` and `/readyz` of a running `pythia run`, scraped over HTTP, against a
//! real redis-server; and the README's metric list against what is actually exported.

mod common;
use pythia_test_support as support;

use common::{command, free_port, get, sample};
use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::{RedisServer, eventually};

fn families(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| l.starts_with("# TYPE pythia_"))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect()
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(url: &str, queue: &str, port: u16, extra: &[&str]) -> Worker {
    Worker(
        command(["run", "--redis-url", url, "--queue", queue, "--log", "warn"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn produce(url: &str, queue: &str, bodies: &[&str]) {
    let o = command(["produce", "--redis-url", url, "--queue", queue])
        .args(bodies)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

#[tokio::test]
async fn metrics_count_what_was_processed_and_match_the_readme() {
    let server = RedisServer::start();
    let url = server.url();
    let port = free_port();
    let bodies: Vec<String> = (0..40)
        .map(|i| match i % 10 {
            0 => "bad".to_owned(),
            _ => format!("ok-{i}"),
        })
        .collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    produce(&url, "metered", &refs);
    let script = r#"[ "$(cat)" = bad ] && exit 65 || exit 0"#;
    let _w = worker(
        &url,
        "metered",
        port,
        &[
            "--exec",
            script,
            "--breaker-failures",
            "50",
            "--concurrency",
            "8",
        ],
    );
    let labels = [("queue", "metered"), ("broker", "reliable-list")];
    let mut scrape = String::new();
    eventually(Duration::from_secs(20), "40 messages counted", || {
        let got = get(port, "/metrics");
        if let Some((200, body)) = &got {
            scrape = body.clone();
        }
        let ok = sample(
            &scrape,
            "pythia_messages_total",
            &[labels[0], ("outcome", "ok")],
        );
        let rejected = sample(
            &scrape,
            "pythia_messages_total",
            &[labels[0], ("outcome", "rejected")],
        );
        async move { ok == Some(36.0) && rejected == Some(4.0) }
    })
    .await;
    assert_eq!(
        sample(&scrape, "pythia_processing_seconds_count", &labels),
        Some(40.0)
    );
    assert_eq!(
        sample(&scrape, "pythia_in_flight_messages", &labels),
        Some(0.0)
    );
    assert!(sample(&scrape, "pythia_end_to_end_latency_seconds_count", &labels).unwrap() >= 40.0);
    assert_eq!(
        sample(
            &scrape,
            "pythia_circuit_breaker_state",
            &[("breaker", "metered")]
        ),
        Some(0.0),
        "4 poison messages are not downstream failures"
    );
    // Queue gauges are sampled every 5 s.
    eventually(Duration::from_secs(10), "the dead-letter gauge", || {
        if let Some((200, body)) = get(port, "/metrics") {
            scrape = body;
        }
        let dead = sample(&scrape, "pythia_dead_letters", &labels);
        async move { dead == Some(4.0) }
    })
    .await;
    assert_eq!(sample(&scrape, "pythia_queue_depth", &labels), Some(0.0));
    assert_eq!(sample(&scrape, "pythia_consumers", &labels), Some(1.0));

    // Broker-specific metrics come from a pub/sub worker's scrape and a stream worker's (its
    // group's trimmed-entry counter).
    let pubsub_scrape =
        other_worker_scrape(&url, "alerts", "pubsub", "pythia_pubsub_dropped_total").await;
    let stream_scrape = other_worker_scrape(
        &url,
        "events",
        "stream",
        "pythia_stream_trimmed_undelivered_total",
    )
    .await;
    let mut exported = families(&scrape);
    exported.extend(families(&pubsub_scrape));
    exported.extend(families(&stream_scrape));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let documented: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `pythia_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("pythia_{n}"))
        .collect();
    assert_eq!(
        documented, exported,
        "the README's metric table must list exactly what a worker exports"
    );

    assert_eq!(get(port, "/healthz"), Some((200, "ok\n".into())));
    assert_eq!(get(port, "/nope").map(|r| r.0), Some(404));
}

#[tokio::test]
async fn readyz_fails_while_redis_is_down_and_recovers() {
    let mut server = RedisServer::start();
    let url = server.url();
    let port = free_port();
    let _w = worker(&url, "probe", port, &["--handler", "noop"]);
    eventually(Duration::from_secs(10), "ready", || async move {
        get(port, "/readyz").map(|r| r.0) == Some(200)
    })
    .await;

    server.stop();
    eventually(
        Duration::from_secs(15),
        "not ready during the outage",
        || async move {
            get(port, "/readyz")
                .is_some_and(|(code, body)| code == 503 && body.contains("broker unreachable"))
        },
    )
    .await;
    assert_eq!(
        get(port, "/healthz").map(|r| r.0),
        Some(200),
        "alive all along"
    );

    server.restart();
    eventually(Duration::from_secs(20), "ready again", || async move {
        get(port, "/readyz").map(|r| r.0) == Some(200)
    })
    .await;
    produce(&url, "probe", &["after the outage"]);
    eventually(
        Duration::from_secs(10),
        "processing resumed",
        || async move {
            get(port, "/metrics").is_some_and(|(_, b)| {
                sample(
                    &b,
                    "pythia_messages_total",
                    &[("queue", "probe"), ("outcome", "ok")],
                ) == Some(1.0)
            })
        },
    )
    .await;
    let scrape = get(port, "/metrics").unwrap().1;
    assert!(
        sample(
            &scrape,
            "pythia_broker_reconnects_total",
            &[("queue", "probe")]
        )
        .unwrap()
            >= 1.0
    );
}

/// The `/metrics` page of a `--broker <broker>` worker on `queue`, once it shows `family`.
async fn other_worker_scrape(url: &str, queue: &str, broker: &str, family: &str) -> String {
    let port = free_port();
    let _w = worker(url, queue, port, &["--broker", broker, "--handler", "noop"]);
    let mut scrape = String::new();
    eventually(Duration::from_secs(10), "the worker's metrics", || {
        if let Some((200, body)) = get(port, "/metrics") {
            scrape = body;
        }
        let has = scrape.contains(family);
        async move { has }
    })
    .await;
    scrape
}
