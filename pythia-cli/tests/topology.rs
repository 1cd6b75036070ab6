//! The CLI on a Redis Cluster and through Redis Sentinel: `--cluster` / `--sentinel-master`
//! and their environment variables on produce, run, inspect and doctor; a list of URLs without
//! either is a usage error.

mod common;
use pythia_test_support as support;

use common::{command, pythia, pythia_on, text};
use std::process::Output;

use serde_json::Value as Json;
use support::cluster::RedisCluster;
use support::sentinel::SentinelSetup;

fn json(o: &Output) -> Json {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// `pythia produce` 50 messages, `pythia run --burst`, and `pythia inspect`, with `topo` (the
/// flags naming the topology).
fn produce_run_inspect(urls: &str, topo: &[&str], broker: &str, queue: &str) {
    let with = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--redis-url", urls]);
        all.extend(topo);
        pythia(&all)
    };
    let o = with(&[
        "produce", "--broker", broker, "--queue", queue, "--count", "50",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stream = broker == "stream";
    let doc = json(&with(&["inspect", "--queue", queue, "--json"]));
    assert_eq!(doc[if stream { "length" } else { "depth" }], 50, "{doc}");
    let o = with(&[
        "run",
        "--broker",
        broker,
        "--queue",
        queue,
        "--group-start",
        "beginning",
        "--burst",
        "--handler",
        "noop",
        "--metrics-addr",
        "off",
        "--log",
        "warn",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("processed 50 (acked 50"), "{broker}: {out}");
    let doc = json(&with(&["inspect", "--queue", queue, "--json"]));
    if stream {
        assert_eq!(doc["groups"][0]["lag"], 0, "{doc}");
        assert_eq!(doc["groups"][0]["pending"], 0, "{doc}");
    } else {
        assert_eq!(doc["depth"], 0, "{doc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_on_a_cluster() {
    let cluster = RedisCluster::start();
    let seeds = cluster.seed_urls();
    for (broker, queue) in [("reliable-list", "cli-jobs"), ("stream", "cli-events")] {
        produce_run_inspect(&seeds, &["--cluster"], broker, queue);
    }

    // A sharded stream queue over the masters.
    let sharded = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--cluster",
            "--redis-url",
            &seeds,
            "--shards",
            "4",
            "--queue",
            "orders",
        ]);
        pythia(&all)
    };
    let o = sharded(&["produce", "--broker", "stream", "--count", "100"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = sharded(&[
        "run",
        "--broker",
        "stream",
        "--group-start",
        "beginning",
        "--burst",
        "--handler",
        "noop",
        "--metrics-addr",
        "off",
        "--log",
        "warn",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("processed 100 (acked 100"),
        "{}",
        text(&o)
    );
    let doc = json(&sharded(&["inspect", "--json"]));
    assert_eq!(doc["length"], 100, "{doc}");
    assert_eq!(doc["groups"][0]["pending"], 0, "{doc}");
    assert_eq!(doc["groups"][0]["lag"], 0, "{doc}");

    // The config file's `cluster = true` does what the flag does.
    let o = pythia(&[
        "produce",
        "--cluster",
        "--redis-url",
        &seeds,
        "--queue",
        "cli-file",
        "--count",
        "20",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = std::env::temp_dir().join(format!("pythia-topology-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("worker.toml");
    std::fs::write(
        &file,
        format!(
            "redis_url = \"{seeds}\"\ncluster = true\nqueue = \"cli-file\"\nburst = true\n\
             handler = \"noop\"\nmetrics_addr = \"off\"\n"
        ),
    )
    .unwrap();
    let o = pythia(&["run", "--config", file.to_str().unwrap(), "--log", "warn"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("processed 20 (acked 20"), "{}", text(&o));

    // The environment variable does what the flag does.
    let o = command(["doctor", "--json", "--redis-url", &seeds])
        .env("PYTHIA_CLUSTER", "true")
        .output()
        .unwrap();
    let doc: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let checks = doc["checks"].as_array().unwrap();
    let cluster_check = checks.iter().find(|c| c["check"] == "cluster").unwrap();
    assert_eq!(cluster_check["status"], "pass", "{cluster_check}");
    // The server checks run on each of the three masters, naming it.
    let versions: Vec<&Json> = checks.iter().filter(|c| c["check"] == "version").collect();
    assert_eq!(versions.len(), 3, "{doc}");
    for port in cluster.master_ports() {
        assert!(
            versions
                .iter()
                .any(|c| c["detail"].as_str().unwrap().contains(&port.to_string())),
            "master {port} checked: {doc}"
        );
    }

    // Pub/sub channels are sharded on a cluster: inspect counts SSUBSCRIBErs on every node.
    let cfg = pythia::redis::RedisConfig::from_url(&seeds)
        .unwrap()
        .with_cluster();
    let conn = pythia::redis::RedisConnection::connect(cfg).await.unwrap();
    let sub = pythia::redis::PubSubBroker::builder(&conn)
        .channel("news")
        .subscribe()
        .await
        .unwrap();
    let doc = json(&pythia(&[
        "inspect",
        "--cluster",
        "--redis-url",
        &seeds,
        "--broker",
        "pubsub",
        "--queue",
        "news,alerts",
        "--json",
    ]));
    let channels = doc["channels"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"));
    let subscribers: Vec<_> = channels.iter().map(|c| c["subscribers"].clone()).collect();
    assert_eq!(subscribers, [1, 0], "{doc}");
    drop(sub);

    // Seed URLs without --cluster: a usage error that says what to add.
    let o = pythia_on(&seeds, "inspect", &["--queue", "cli-jobs"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--cluster"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_through_sentinel() {
    let topo = SentinelSetup::start().await;
    let sentinels = topo.sentinel_urls();
    produce_run_inspect(
        &sentinels,
        &["--sentinel-master", topo.master_name()],
        "reliable-list",
        "s-jobs",
    );

    let o = command(["doctor", "--json", "--redis-url", &sentinels])
        .env("PYTHIA_SENTINEL_MASTER", topo.master_name())
        .output()
        .unwrap();
    let doc: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "sentinel")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "pass", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains(&topo.master().port().to_string()),
        "names the master: {check}"
    );

    let o = pythia_on(
        &sentinels,
        "inspect",
        &[
            "--sentinel-master",
            "nobody",
            "--queue",
            "s-jobs",
            "--connect-timeout",
            "1s",
        ],
    );
    // Sentinels that do not know the master yet may learn it (they are being configured): the
    // library calls it a connection error, so the command waits its --connect-timeout, then
    // exits 69 naming the master.
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(text(&o).contains("nobody"), "{}", text(&o));
}
