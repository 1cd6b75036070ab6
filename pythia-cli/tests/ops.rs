//! `pythia inspect`, `pythia dlq` and `pythia doctor` end to end against a real redis-server:
//! the numbers they print (as text and as JSON) against the state made in Redis.

mod common;
use pythia_test_support as support;

use common::{produce, pythia, pythia_on, run_burst, text};
use std::process::Output;

use pythia::Broker;
use pythia::redis::{ListProducer, ReliableListBroker, StreamBroker, StreamProducer};
use pythia::{Message, envelope};
use serde_json::Value as Json;
use support::{RedisServer, cmd};

fn json(o: &Output) -> Json {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// The stream `events` with `entries` entries, `pending` of them delivered to group `billing`'s
/// consumer (returned) and not acknowledged.
async fn stream_with_pending(
    conn: &pythia::redis::RedisConnection,
    entries: usize,
    pending: usize,
) -> StreamBroker {
    let msgs: Vec<Message> = (0..entries)
        .map(|i| Message::new(format!("e{i}")))
        .collect();
    StreamProducer::new(conn, "events")
        .add_many(&msgs)
        .await
        .unwrap();
    let reader = StreamBroker::new(conn, "events", "billing")
        .with_start(pythia::redis::GroupStart::Beginning);
    let mut got = 0;
    while got < pending {
        got += reader.fetch(pending - got).await.unwrap().len();
    }
    reader
}

#[tokio::test]
async fn inspect_reports_each_broker_kind() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;

    // A reliable list: 5 produced, 2 in flight with a live consumer, a dead consumer holding
    // one, a scheduled retry and a dead letter.
    let msgs: Vec<Message> = (0..5).map(|i| Message::new(format!("m{i}"))).collect();
    ListProducer::new(&conn, "jobs")
        .push_many(&msgs)
        .await
        .unwrap();
    let live = ReliableListBroker::new(&conn, "jobs");
    let fetched = live.fetch(2).await.unwrap();
    assert_eq!(fetched.len(), 2);
    let _: i64 = cmd(&conn, &["SADD", "pythia:{jobs}:consumers", "ghost"]).await;
    let _: i64 = cmd(&conn, &["HSET", "pythia:{jobs}:inflight:ghost", "1", "x"]).await;
    let _: i64 = cmd(&conn, &["ZADD", "pythia:{jobs}:scheduled", "1", "retry"]).await;
    let _: i64 = cmd(&conn, &["LPUSH", "pythia:{jobs}:dlq", "dead"]).await;

    let doc = json(&pythia_on(&url, "inspect", &["--queue", "jobs", "--json"]));
    assert_eq!(doc["broker"], "reliable-list", "{doc}");
    assert_eq!(doc["depth"], 3);
    assert_eq!(doc["in_flight"], 3);
    assert_eq!(doc["scheduled"], 1);
    assert_eq!(doc["dead_letters"], 1);
    assert!(doc["oldest_age_seconds"].as_f64().unwrap() < 60.0);
    assert!(doc["memory_bytes"]["queue"].as_u64().unwrap() > 0);
    assert!(doc["memory_bytes"]["pythia_keys"].as_u64().unwrap() > 0);
    let consumers = doc["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), 2);
    let me = consumers
        .iter()
        .find(|c| c["name"] == live.consumer())
        .unwrap();
    assert_eq!(
        (me["in_flight"].as_i64(), me["alive"].as_bool()),
        (Some(2), Some(true))
    );
    assert!(me["heartbeat_ttl_ms"].as_i64().unwrap() > 0);
    let ghost = consumers.iter().find(|c| c["name"] == "ghost").unwrap();
    assert_eq!(
        (ghost["in_flight"].as_i64(), ghost["alive"].as_bool()),
        (Some(1), Some(false))
    );

    let o = pythia_on(&url, "inspect", &["--queue", "jobs"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "reliable-list queue \"jobs\"",
        "depth              3",
        "in flight          3",
        "scheduled retries  1",
        "dead letters       1",
        "dead (heartbeat expired)",
        "alive (",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }

    // A stream: 4 entries, 2 delivered to group `billing` and pending.
    let reader = stream_with_pending(&conn, 4, 2).await;
    let doc = json(&pythia_on(
        &url,
        "inspect",
        &["--queue", "events", "--json"],
    ));
    assert_eq!(doc["broker"], "stream", "{doc}");
    assert_eq!(doc["length"], 4);
    assert_eq!(doc["dead_letters"], 0);
    let g = &doc["groups"][0];
    assert_eq!(g["name"], "billing");
    assert_eq!(
        (g["lag"].as_u64(), g["pending"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(g["oldest_age_seconds"].as_f64().is_some());
    let c = &g["consumers"][0];
    assert_eq!(c["name"], reader.consumer());
    assert_eq!(
        (c["pending"].as_u64(), c["alive"].as_bool()),
        (Some(2), Some(true))
    );
    let o = pythia_on(
        &url,
        "inspect",
        &["--queue", "events", "--group", "billing"],
    );
    let out = text(&o);
    assert!(
        out.contains("group \"billing\"") && out.contains("lag (undelivered)  2"),
        "{out}"
    );
    let o = pythia_on(&url, "inspect", &["--queue", "events", "--group", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no consumer group \"nope\""),
        "{}",
        text(&o)
    );
    let o = pythia_on(&url, "inspect", &["--queue", "events", "--broker", "list"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is a Redis stream"), "{}", text(&o));

    // Pub/sub: one subscriber on `alerts`, none on `quiet`.
    let mut sub = conn.pubsub().await.unwrap();
    sub.subscribe("alerts").await.unwrap();
    let doc = json(&pythia_on(
        &url,
        "inspect",
        &["--broker", "pubsub", "--queue", "alerts,quiet", "--json"],
    ));
    assert_eq!(doc["channels"][0]["channel"], "alerts", "{doc}");
    assert_eq!(doc["channels"][0]["subscribers"], 1);
    assert_eq!(doc["channels"][1]["subscribers"], 0);
    assert_eq!(doc["pattern_subscriptions"], 0);
    drop(sub);
    drop(fetched);
}

/// Runs a burst worker over `queue` that rejects bodies starting with `bad`.
fn reject_bad(url: &str, broker: &str, queue: &str) {
    let o = run_burst(
        url,
        &[
            "--broker",
            broker,
            "--queue",
            queue,
            "--group-start",
            "beginning",
            "--exec",
            r#"case "$(cat)" in bad*) exit 65;; esac"#,
            "--concurrency",
            "1",
            "--log",
            "error",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[tokio::test]
async fn dlq_lists_replays_and_purges_a_list_queue() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let o = produce(&url, &["--queue", "q", "ok", "bad-1", "bad-2", "bad\n3"]);
    assert!(o.status.success(), "{}", text(&o));
    reject_bad(&url, "reliable-list", "q");

    let o = pythia_on(&url, "dlq list", &["--queue", "q"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("3 dead letters of queue \"q\""), "{out}");
    assert!(out.contains("\"bad\\n3\""), "escaped body: {out}");
    assert!(out.contains("rejected: "), "{out}");
    let doc = json(&pythia_on(
        &url,
        "dlq list",
        &["--queue", "q", "--json", "--limit", "2"],
    ));
    assert_eq!(doc["total"], 3);
    let shown = doc["dead_letters"].as_array().unwrap();
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0]["body"], "bad\n3", "newest first");
    assert_eq!(shown[0]["attempts"], 1);
    assert!(shown[0]["error"].as_str().unwrap().contains("exited 65"));
    assert!(shown[0]["failed_at"].as_str().unwrap().ends_with('Z'));
    let id = shown[1]["id"].as_str().unwrap().to_owned(); // bad-2

    // One by id: back on the queue with attempt 1.
    let o = pythia_on(&url, "dlq replay", &["--queue", "q", "--id", &id]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("replayed 1 dead letter onto list \"q\""),
        "{}",
        text(&o)
    );
    let items: Vec<Vec<u8>> = cmd(&conn, &["LRANGE", "q", "0", "-1"]).await;
    assert_eq!(items.len(), 1);
    let msg = envelope::decode(items[0].clone().into(), &pythia::Source::new("list", "q"));
    assert_eq!(
        (msg.id(), msg.attempt(), msg.body().as_ref()),
        (id.as_str(), 1, &b"bad-2"[..])
    );
    let o = pythia_on(&url, "dlq replay", &["--queue", "q", "--id", &id]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("no dead letter with id {id}")),
        "{}",
        text(&o)
    );

    // All the rest.
    let o = pythia_on(&url, "dlq replay", &["--queue", "q"]);
    assert!(text(&o).contains("replayed 2 dead letters"), "{}", text(&o));
    let left: i64 = cmd(&conn, &["LLEN", "q"]).await;
    let dead: i64 = cmd(&conn, &["LLEN", "pythia:{q}:dlq"]).await;
    assert_eq!((left, dead), (3, 0));

    // Purge: refused without a terminal and without --yes; done with --yes.
    reject_bad(&url, "reliable-list", "q");
    let o = pythia_on(&url, "dlq purge", &["--queue", "q"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pass --yes"), "{}", text(&o));
    let dead: i64 = cmd(&conn, &["LLEN", "pythia:{q}:dlq"]).await;
    assert_eq!(dead, 3, "nothing deleted");
    let o = pythia_on(&url, "dlq purge", &["--queue", "q", "--yes"]);
    assert!(text(&o).contains("deleted 3 dead letters"), "{}", text(&o));
    let dead: i64 = cmd(&conn, &["LLEN", "pythia:{q}:dlq"]).await;
    assert_eq!(dead, 0);
}

#[tokio::test]
async fn dlq_lists_replays_and_purges_a_stream() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let o = produce(
        &url,
        &[
            "--broker",
            "stream",
            "--queue",
            "ev",
            "--header",
            "tenant=acme",
            "bad-x",
            "bad-y",
            "bad-z",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    reject_bad(&url, "stream", "ev");

    let doc = json(&pythia_on(&url, "dlq list", &["--queue", "ev", "--json"]));
    assert_eq!(doc["broker"], "stream", "detected from the key type: {doc}");
    assert_eq!(doc["total"], 3);
    let first = &doc["dead_letters"][0];
    assert_eq!(first["body"], "bad-z");
    assert_eq!(first["headers"]["tenant"], "acme");
    let entry = first["entry_id"].as_str().unwrap().to_owned();

    let o = pythia_on(&url, "dlq replay", &["--queue", "ev", "--id", &entry]);
    assert!(
        text(&o).contains("replayed 1 dead letter onto stream \"ev\""),
        "{}",
        text(&o)
    );
    let dead: i64 = cmd(&conn, &["XLEN", "pythia:{ev}:dlq"]).await;
    assert_eq!(dead, 2);
    let o = pythia_on(&url, "dlq replay", &["--queue", "ev"]);
    assert!(text(&o).contains("replayed 2 dead letters"), "{}", text(&o));

    // Replayed entries are delivered again to the group, attempt 1, headers kept.
    let o = run_burst(
        &url,
        &[
            "--broker",
            "stream",
            "--queue",
            "ev",
            "--exec",
            r#"[ "$PYTHIA_ATTEMPT" = 1 ] && [ "$PYTHIA_HEADER_TENANT" = acme ] || exit 65"#,
            "--log",
            "error",
        ],
    );
    assert!(text(&o).contains("processed 3 (acked 3"), "{}", text(&o));

    reject_bad(&url, "stream", "ev");
    let dead: i64 = cmd(&conn, &["XLEN", "pythia:{ev}:dlq"]).await;
    assert_eq!(dead, 0, "nothing new failed");
    let _: String = cmd(&conn, &["XADD", "pythia:{ev}:dlq", "*", "body", "junk"]).await;
    let o = pythia_on(&url, "dlq purge", &["--queue", "ev"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = pythia_on(&url, "dlq purge", &["--queue", "ev", "-y"]);
    assert!(
        text(&o).contains("deleted 1 dead letter of stream"),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn doctor_passes_warns_and_fails() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    // The test server runs without persistence: a warning, not a failure.
    let o = pythia_on(&url, "doctor", &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("WARN  persistence"), "{out}");
    assert!(out.contains("PASS  eviction"), "{out}");
    assert!(out.contains("PASS  acl"), "{out}");
    assert!(out.contains("PASS  latency"), "{out}");
    let doc = json(&pythia_on(&url, "doctor", &["--json"]));
    assert_eq!(doc["failures"], 0);
    let check = |doc: &Json, name: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(check(&doc, "persistence")["status"], "warn");
    assert!(
        check(&doc, "persistence")["fix"]
            .as_str()
            .unwrap()
            .contains("appendonly yes")
    );

    let _: String = cmd(&conn, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]).await;
    let o = pythia_on(&url, "doctor", &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL  eviction"), "{out}");
    assert!(
        out.contains("CONFIG SET maxmemory-policy noeviction"),
        "{out}"
    );
    assert!(out.contains("maxmemory-policy noeviction"), "{out}");

    // A user that may not claim stream entries.
    let _: String = cmd(
        &conn,
        &[
            "ACL", "SETUSER", "worker", "on", ">pw", "~*", "&*", "+@all", "-xclaim",
        ],
    )
    .await;
    let limited = url.replace("redis://", "redis://worker:pw@");
    let o = pythia_on(&limited, "doctor", &["--queue", "jobs", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let doc: Json = serde_json::from_slice(&o.stdout).unwrap();
    let acl = check(&doc, "acl");
    assert_eq!(acl["status"], "fail", "{doc}");
    assert!(acl["detail"].as_str().unwrap().contains("XCLAIM"), "{acl}");
    assert!(!text(&o).contains(":pw@"), "password masked: {}", text(&o));
}

/// `doctor --queue`: the queue's own checks, from the library's report, the same in the text and
/// in `--json` (which also carries the report).
#[tokio::test]
async fn doctor_checks_the_named_queue() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let check = |doc: &Json, name: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} check in {doc}"))
    };
    let doctor = |queue: &str| {
        let o = pythia(&["doctor", "--redis-url", &url, "--queue", queue, "--json"]);
        let doc = json(&o);
        // The text prints the same checks, in the same order.
        let t = pythia(&["doctor", "--redis-url", &url, "--queue", queue]);
        let out = String::from_utf8_lossy(&t.stdout).into_owned();
        assert_eq!(t.status.code(), o.status.code(), "{out}");
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| ["PASS ", "WARN ", "FAIL "].iter().any(|p| l.starts_with(p)))
            .collect();
        let checks = doc["checks"].as_array().unwrap();
        assert_eq!(lines.len(), checks.len(), "{out}\n{doc}");
        for (line, c) in lines.iter().zip(checks) {
            let status = c["status"].as_str().unwrap().to_ascii_uppercase();
            let name = c["check"].as_str().unwrap();
            assert_eq!(&line[6..6 + 12], format!("{name:<12}"), "{line} / {c}");
            // Timings differ from one run to the next: the latency's and the oldest age.
            if !matches!(name, "latency" | "queue") {
                assert!(line.starts_with(&format!("{status:<5} ")), "{line} / {c}");
                assert!(
                    line.ends_with(c["detail"].as_str().unwrap()),
                    "{line} / {c}"
                );
            }
        }
        doc
    };

    // Without --queue: no queue checks and no report.
    let doc = json(&pythia(&["doctor", "--redis-url", &url, "--json"]));
    assert!(doc.get("queue").is_none(), "{doc}");
    assert!(
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["check"] != "queue")
    );

    // A reliable list: 4 produced, 1 in flight with a live consumer, a consumer without a
    // heartbeat holding 2, a dead letter, and paused.
    let msgs: Vec<Message> = (0..4).map(|i| Message::new(format!("m{i}"))).collect();
    ListProducer::new(&conn, "jobs")
        .push_many(&msgs)
        .await
        .unwrap();
    let live = ReliableListBroker::new(&conn, "jobs");
    assert_eq!(live.fetch(1).await.unwrap().len(), 1);
    // As the worker's first maintenance does (a producer registers a list as a plain list).
    let _: i64 = cmd(&conn, &["HSET", "pythia:queues", "jobs", "reliable-list"]).await;
    let _: i64 = cmd(&conn, &["SADD", "pythia:{jobs}:consumers", "ghost"]).await;
    let _: i64 = cmd(
        &conn,
        &["HSET", "pythia:{jobs}:inflight:ghost", "1", "x", "2", "y"],
    )
    .await;
    let _: i64 = cmd(&conn, &["LPUSH", "pythia:{jobs}:dlq", "dead"]).await;
    pythia::redis::queues::pause(&conn, "jobs").await.unwrap();

    let doc = doctor("jobs");
    assert_eq!(doc["failures"], 0, "{doc}");
    assert_eq!(doc["queue"]["kind"], "reliable-list", "{doc}");
    assert_eq!(doc["queue"]["depth"], 3);
    assert_eq!(doc["queue"]["dead_letters"], 1);
    assert_eq!(doc["queue"]["paused"], true);
    let q = check(&doc, "queue");
    assert_eq!(q["status"], "pass");
    assert!(q["detail"].as_str().unwrap().contains("3 waiting"), "{q}");
    let paused = check(&doc, "paused");
    assert_eq!(paused["status"], "warn");
    assert_eq!(paused["fix"], "pythia resume --queue jobs");
    let dead = check(&doc, "dead-letters");
    assert_eq!(dead["status"], "warn");
    assert!(
        dead["fix"]
            .as_str()
            .unwrap()
            .contains("pythia dlq list --queue jobs"),
        "{dead}"
    );
    let consumers = check(&doc, "consumers");
    assert_eq!(consumers["status"], "warn", "{consumers}");
    let detail = consumers["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("1 alive, 1 without a heartbeat"),
        "{detail}"
    );
    assert!(
        detail.contains("holding 2 in-flight messages: ghost (2)"),
        "{detail}"
    );

    // Once resumed, the ghost's messages handed back and the dead letter gone, all pass.
    pythia::redis::queues::resume(&conn, "jobs").await.unwrap();
    let _: i64 = cmd(
        &conn,
        &["DEL", "pythia:{jobs}:inflight:ghost", "pythia:{jobs}:dlq"],
    )
    .await;
    let doc = doctor("jobs");
    for name in ["queue", "paused", "dead-letters", "consumers"] {
        assert_eq!(check(&doc, name)["status"], "pass", "{name}: {doc}");
    }
    assert!(
        check(&doc, "consumers")["detail"]
            .as_str()
            .unwrap()
            .contains("1 alive")
    );

    // A stream whose only consumer lost its heartbeat while 2 entries are pending.
    let reader = stream_with_pending(&conn, 3, 2).await;
    let heartbeat = format!("pythia:{{events}}:heartbeat:{}", reader.consumer());
    let _: i64 = cmd(&conn, &["DEL", &heartbeat]).await;
    let doc = doctor("events");
    assert_eq!(doc["queue"]["kind"], "stream", "{doc}");
    let consumers = check(&doc, "consumers");
    assert_eq!(consumers["status"], "warn", "{consumers}");
    let detail = consumers["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("0 alive, 1 without a heartbeat"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!(
            "holding 2 in-flight messages: {} (2)",
            reader.consumer()
        )),
        "{detail}"
    );
    assert!(
        consumers["fix"]
            .as_str()
            .unwrap()
            .contains("--broker stream")
    );
    // A consumer registered and heartbeating that has not read yet (Redis does not list it
    // in the group) is alive all the same.
    let _: i64 = cmd(
        &conn,
        &["SADD", "pythia:{events}:consumers:billing", "early"],
    )
    .await;
    let _: String = cmd(
        &conn,
        &["SET", "pythia:{events}:heartbeat:early", "1", "PX", "60000"],
    )
    .await;
    let consumers = check(&doctor("events"), "consumers");
    let detail = consumers["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("1 alive, 1 without a heartbeat, holding 2"),
        "{detail}"
    );

    // A sharded stream of 2 shards whose only consumer lost its heartbeat on each shard while
    // it holds all 4 entries: one consumer, counted once.
    let sharded = pythia::redis::ShardedQueue::new("orders", 2).unwrap();
    let orders: Vec<Message> = (0..4).map(|i| Message::new(format!("o{i}"))).collect();
    pythia::redis::ShardedStreamProducer::new(&conn, &sharded)
        .add_many(&orders)
        .await
        .unwrap();
    let shipper = pythia::redis::ShardedStreamBroker::new(&conn, &sharded, "ship")
        .with_start(pythia::redis::GroupStart::Beginning);
    let mut got = 0;
    while got < 4 {
        got += shipper.fetch(4 - got).await.unwrap().len();
    }
    for stream in sharded.streams() {
        let key = pythia::redis::QueueKeys::new("pythia", stream).heartbeat(shipper.consumer());
        let gone: i64 = cmd(&conn, &["DEL", &key]).await;
        assert_eq!(gone, 1, "{key}");
    }
    let doc = doctor("orders");
    assert_eq!(doc["queue"]["kind"], "sharded-stream", "{doc}");
    let consumers = check(&doc, "consumers");
    assert_eq!(consumers["status"], "warn", "{consumers}");
    let detail = consumers["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("0 alive, 1 without a heartbeat"),
        "{detail}"
    );
    assert!(detail.contains("holding 4 in-flight messages"), "{detail}");

    // A queue nobody knows: one warning, and no other queue check.
    let doc = doctor("nope");
    let q = check(&doc, "queue");
    assert_eq!(q["status"], "warn");
    assert!(q["detail"].as_str().unwrap().contains("unknown"), "{q}");
    assert!(
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["check"] != "paused")
    );
}

#[test]
fn help_documents_the_operations_commands() {
    let help = |args: &[&str]| {
        let o = pythia(args);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for sub in [
        &["inspect", "--help"][..],
        &["dlq", "list", "--help"],
        &["dlq", "replay", "--help"],
        &["dlq", "purge", "--help"],
        &["doctor", "--help"],
    ] {
        let h = help(sub);
        assert!(h.contains("--redis-url"), "{sub:?}: {h}");
    }
    assert!(help(&["inspect", "--help"]).contains("JSON fields"));
    assert!(help(&["dlq", "purge", "--help"]).contains("--yes"));
    assert!(help(&["doctor", "--help"]).contains("Exit 0 when"));
    let run = help(&["run", "--help"]);
    for flag in ["--config", "--http", "--http-timeout", "PYTHIA_CONFIG"] {
        assert!(run.contains(flag), "{flag}: {run}");
    }
    let top = help(&["--help"]);
    for want in ["inspect", "dlq", "doctor", "Exit codes", "FAILed"] {
        assert!(top.contains(want), "{want}: {top}");
    }
}
