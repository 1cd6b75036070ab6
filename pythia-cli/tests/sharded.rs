//! `--shards N`: `pythia produce` spreads a queue over N streams, `pythia run` consumes them
//! all, `pythia inspect` reports each shard and the totals; the flag's usage errors.

mod common;
use pythia_test_support as support;

use common::{command, pythia, pythia_on, run_burst, text};
use std::process::Output;

use pythia::redis::ShardedQueue;
use serde_json::Value as Json;
use support::{RedisServer, cmd};

fn json(o: &Output) -> Json {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// `pythia produce --broker stream --queue <queue> --shards <shards>`, then `rest`.
fn produce_sharded(url: &str, queue: &str, shards: &str, rest: &[&str]) -> Output {
    let mut args = vec![
        "produce",
        "--redis-url",
        url,
        "--broker",
        "stream",
        "--queue",
        queue,
        "--shards",
        shards,
    ];
    args.extend_from_slice(rest);
    pythia(&args)
}

fn inspect(url: &str) -> Json {
    json(&pythia_on(
        url,
        "inspect",
        &["--queue", "orders", "--shards", "4", "--json"],
    ))
}

#[tokio::test]
async fn produce_run_and_inspect_a_sharded_queue() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let queue = ShardedQueue::new("orders", 4).unwrap();

    let out = produce_sharded(&url, "orders", "4", &["--count", "200", "--size", "20"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sharded stream (4 shards)"),
        "{}",
        text(&out)
    );
    // Round robin: 50 in each shard's stream, nothing in a plain `orders` stream.
    for stream in queue.streams() {
        let len: u64 = cmd(&conn, &["XLEN", stream]).await;
        assert_eq!(len, 50, "{stream}");
    }
    let plain: u64 = cmd(&conn, &["EXISTS", "orders"]).await;
    assert_eq!(plain, 0);
    let layout: String = cmd(&conn, &["GET", "pythia:{orders}:shards"]).await;
    assert_eq!(layout, queue.streams().join("\n"));

    let doc = inspect(&url);
    assert_eq!(doc["shard_count"], 4, "{doc}");
    assert_eq!(doc["length"], 200);
    assert_eq!(doc["dead_letters"], 0);
    assert_eq!(doc["layout"]["matches"], true);
    assert_eq!(doc["groups"].as_array().unwrap().len(), 0, "no group yet");
    let shards = doc["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 4);
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s["shard"], i);
        assert_eq!(s["queue"], queue.stream(i));
        assert_eq!(s["length"], 50);
    }

    let out = run_burst(
        &url,
        &[
            "--broker",
            "stream",
            "--queue",
            "orders",
            "--shards",
            "4",
            "--group-start",
            "beginning",
            "--handler",
            "noop",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("200"), "{}", text(&out));

    let doc = inspect(&url);
    assert_eq!(
        doc["length"], 200,
        "acked entries stay in the streams: {doc}"
    );
    let groups = doc["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{doc}");
    assert_eq!(groups[0]["name"], "pythia");
    assert_eq!(groups[0]["lag"], 0, "{doc}");
    assert_eq!(groups[0]["pending"], 0);
    assert_eq!(groups[0]["shards_with_group"], 4);
    for s in doc["shards"].as_array().unwrap() {
        assert_eq!(s["groups"][0]["lag"], 0, "{s}");
        assert_eq!(s["groups"][0]["pending"], 0, "{s}");
    }
    // The per-shard numbers add up to the totals.
    let sum = |f: &str| -> u64 {
        doc["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[f].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("length"), 200);
    assert_eq!(sum("dead_letters"), doc["dead_letters"].as_u64().unwrap());

    // A dead letter in one shard shows in its report and in the total; --group filters.
    let _: String = cmd(
        &conn,
        &[
            "XADD",
            &format!("pythia:q:{}:dlq", queue.stream(2)),
            "*",
            "x",
            "y",
        ],
    )
    .await;
    let doc = json(&pythia_on(
        &url,
        "inspect",
        &[
            "--queue", "orders", "--shards", "4", "--group", "pythia", "--json",
        ],
    ));
    assert_eq!(doc["dead_letters"], 1, "{doc}");
    assert_eq!(doc["shards"][2]["dead_letters"], 1);

    // The text report names the shards and the totals.
    let out = pythia_on(&url, "inspect", &["--queue", "orders", "--shards", "4"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("sharded stream \"orders\" (4 shards)"),
        "{report}"
    );
    assert!(report.contains("shard 3: stream"), "{report}");

    // Another shard count than the stored layout: inspect says so, a producer refuses.
    let doc = json(&pythia_on(
        &url,
        "inspect",
        &["--queue", "orders", "--shards", "2", "--json"],
    ));
    assert_eq!(doc["layout"]["matches"], false, "{doc}");
    assert_eq!(doc["layout"]["stored_shards"], 4);
    let out = produce_sharded(&url, "orders", "2", &["x"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("4 shards"),
        "{}",
        text(&out)
    );
}

#[test]
fn shards_usage_errors() {
    let usage = |args: &[&str], says: &str| {
        let out = pythia(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {}", text(&out));
    };
    // No server is needed: every check comes before connecting.
    let url = "redis://127.0.0.1:1";
    let base = ["--redis-url", url, "--queue", "orders"];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    for broker in ["list", "reliable-list", "pubsub"] {
        let mut args = vec!["produce"];
        args.extend(with(&["--broker", broker, "--shards", "4", "x"]));
        usage(&args, "--shards 4 is for --broker stream");
        let mut args = vec!["run", "--metrics-addr", "off"];
        args.extend(with(&["--broker", broker, "--shards", "4"]));
        usage(&args, "--shards 4 is for --broker stream");
    }
    let mut args = vec!["inspect"];
    args.extend(with(&["--broker", "list", "--shards", "4"]));
    usage(&args, "--shards 4 is for --broker stream");

    let mut args = vec!["produce"];
    args.extend(with(&[
        "--broker", "stream", "--shards", "4", "--delay", "5s", "x",
    ]));
    usage(&args, "--delay and --at are not supported with --shards");
    let mut args = vec!["produce"];
    args.extend(with(&[
        "--broker",
        "stream",
        "--shards",
        "4",
        "--at",
        "2030-01-01T00:00:00Z",
        "x",
    ]));
    usage(&args, "--delay and --at are not supported with --shards");

    // Out of range: clap's own usage error.
    for bad in ["0", "1025", "many"] {
        let mut args = vec!["produce"];
        args.extend(with(&["--broker", "stream", "--shards", bad, "x"]));
        usage(&args, "--shards");
    }
    // A queue name the shards cannot carry.
    let out = produce_sharded(url, "{orders}", "4", &["x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("braces"),
        "{}",
        text(&out)
    );
    // The environment variable, and 1 = the plain stream with any broker.
    let out = command(["produce", "--redis-url", url, "--broker", "list"])
        .args(["--queue", "orders", "x"])
        .env("PYTHIA_SHARDS", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--shards 3 is for --broker stream"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn config_file_sets_the_shard_count() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let queue = ShardedQueue::new("cfg", 4).unwrap();
    let out = produce_sharded(&url, "cfg", "4", &["--count", "40"]);
    assert!(out.status.success(), "{}", text(&out));

    let dir = std::env::temp_dir().join(format!("pythia-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("worker.toml");
    std::fs::write(
        &file,
        format!(
            "redis_url = \"{url}\"\nbroker = \"stream\"\nqueue = \"cfg\"\nshards = 4\n\
             group_start = \"beginning\"\nhandler = \"noop\"\nburst = true\n"
        ),
    )
    .unwrap();
    let out = pythia(&[
        "run",
        "--config",
        file.to_str().unwrap(),
        "--metrics-addr",
        "off",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for stream in queue.streams() {
        let groups: Vec<redis::Value> = cmd(&conn, &["XINFO", "GROUPS", stream]).await;
        assert_eq!(groups.len(), 1, "{stream}: the worker read every shard");
    }
    let doc = json(&pythia_on(
        &url,
        "inspect",
        &["--queue", "cfg", "--shards", "4", "--json"],
    ));
    assert_eq!(doc["groups"][0]["lag"], 0, "{doc}");
    assert_eq!(doc["groups"][0]["pending"], 0, "{doc}");

    // A bad value in the file is reported like a bad flag.
    std::fs::write(&file, "queue = \"cfg\"\nbroker = \"stream\"\nshards = 0\n").unwrap();
    let out = pythia(&[
        "run",
        "--config",
        file.to_str().unwrap(),
        "--metrics-addr",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shards"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
