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
    let entries: Vec<Message> = (0..4).map(|i| Message::new(format!("e{i}"))).collect();
    StreamProducer::new(&conn, "events")
        .add_many(&entries)
        .await
        .unwrap();
    let reader = StreamBroker::new(&conn, "events", "billing")
        .with_start(pythia::redis::GroupStart::Beginning);
    let mut got = 0;
    while got < 2 {
        got += reader.fetch(2 - got).await.unwrap().len();
    }
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
