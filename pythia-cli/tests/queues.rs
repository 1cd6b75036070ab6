//! `pythia queues` end to end against a real redis-server: a queue is listed from its first
//! message (the registry `pythia produce` writes), and the daily counters a `pythia run`
//! worker keeps show up in it.

mod common;
use pythia_test_support as support;

use common::{produce, pythia_on, run_burst, text};
use serde_json::Value as Json;
use std::process::Output;
use support::{RedisServer, cmd};

fn json(o: &Output) -> Json {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn queue<'a>(doc: &'a Json, name: &str) -> &'a Json {
    doc["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {doc}"))
}

#[tokio::test]
async fn produced_queues_are_listed_before_any_worker_ran() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let o = pythia_on(&url, "queues", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no queue"),
        "{}",
        text(&o)
    );

    for (broker, q, n) in [("stream", "events", "3000"), ("list", "emails", "5")] {
        let o = produce(&url, &["--broker", broker, "--queue", q, "--count", n]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let _: () = cmd(&conn, &["XGROUP", "CREATE", "events", "billing", "0"]).await;
    let _: () = cmd(&conn, &["SET", "pythia:{emails}:paused", "1"]).await;

    let doc = json(&pythia_on(&url, "queues", &["--json"]));
    assert_eq!(doc["prefix"], "pythia");
    let events = queue(&doc, "events");
    assert_eq!(events["kind"], "stream", "{doc}");
    assert_eq!(events["depth"], 3000);
    assert_eq!(events["in_flight"], 0);
    assert_eq!(events["groups"][0]["name"], "billing");
    assert_eq!(events["paused"], false);
    assert!(events["oldest_age_seconds"].as_f64().unwrap() < 60.0);
    let emails = queue(&doc, "emails");
    assert_eq!(emails["kind"], "list");
    assert_eq!(emails["depth"], 5);
    assert_eq!(emails["paused"], true);
    for field in [
        "registered",
        "scheduled",
        "dead_letters",
        "consumers",
        "day",
        "today",
    ] {
        assert!(emails.get(field).is_some(), "{field} missing: {doc}");
    }

    let o = pythia_on(&url, "queues", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("QUEUE") && header.contains("PAUSED"),
        "{out}"
    );
    let line = out.lines().find(|l| l.starts_with("events")).unwrap();
    assert!(line.contains("stream") && line.contains("3000"), "{out}");
    let line = out.lines().find(|l| l.starts_with("emails")).unwrap();
    assert!(line.contains(" yes "), "{out}");
}

#[tokio::test]
async fn a_burst_run_adds_its_processed_and_failed_counts() {
    let server = RedisServer::start();
    let url = server.url();
    let o = produce(&url, &["--queue", "jobs", "--count", "20", "--size", "12"]);
    assert!(o.status.success(), "{}", text(&o));
    // Bodies ending in 0 or 5 are rejected (dead-lettered at once): 4 of the 20.
    let o = run_burst(
        &url,
        &[
            "--broker",
            "reliable-list",
            "--queue",
            "jobs",
            "--exec",
            "case \"$(cat)\" in *0|*5) exit 65;; esac",
            "--log",
            "warn",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc = json(&pythia_on(&url, "queues", &["--json"]));
    let jobs = queue(&doc, "jobs");
    assert_eq!(jobs["kind"], "reliable-list", "{doc}");
    assert_eq!(jobs["today"]["processed"], 16, "{doc}");
    assert_eq!(jobs["today"]["failed"], 4, "{doc}");
    assert_eq!(jobs["dead_letters"], 4);

    // `inspect` shows the same counters and the pause flag.
    let o = pythia_on(&url, "inspect", &["--queue", "jobs", "--json"]);
    let doc = json(&o);
    assert_eq!(doc["today"]["processed"], 16, "{doc}");
    assert_eq!(doc["today"]["failed"], 4, "{doc}");
    assert_eq!(doc["paused"], false, "{doc}");
    let o = pythia_on(&url, "inspect", &["--queue", "jobs"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("16 processed, 4 failed"), "{out}");

    // --no-counters: nothing more is counted.
    let o = produce(&url, &["--queue", "jobs", "--count", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run_burst(
        &url,
        &[
            "--broker",
            "reliable-list",
            "--queue",
            "jobs",
            "--handler",
            "noop",
            "--no-counters",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc = json(&pythia_on(&url, "queues", &["--json"]));
    assert_eq!(queue(&doc, "jobs")["today"]["processed"], 16, "{doc}");
    assert_eq!(queue(&doc, "jobs")["depth"], 0, "{doc}");
}

#[tokio::test]
async fn scan_finds_queues_that_are_not_registered() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    // Dead letters of a queue no producer or worker of this version touched.
    let _: i64 = cmd(&conn, &["LPUSH", "pythia:{old}:dlq", "x"]).await;
    let doc = json(&pythia_on(&url, "queues", &["--json"]));
    assert_eq!(doc["queues"], Json::Array(vec![]), "{doc}");
    let doc = json(&pythia_on(&url, "queues", &["--json", "--scan"]));
    let old = queue(&doc, "old");
    assert_eq!(old["registered"], false);
    assert_eq!(old["dead_letters"], 1);
}
