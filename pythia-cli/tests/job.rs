//! `pythia produce --print-ids --track` and `pythia job <id>` end to end against a real
//! redis-server.

mod common;
use pythia_test_support as support;

use common::{produce, pythia_on, text};
use std::process::Output;
use std::time::Duration;

use pythia::redis::{
    JobStatusStore, JobTracking, JobTrackingExt, ReliableListBroker, record_job_result,
};
use pythia::{Message, RetryPolicy, WorkerError, worker_fn};
use serde_json::Value as Json;
use support::{RedisServer, burst};

/// `pythia produce --print-ids --track` of `ok` and `boom` to `queue`, asserted to succeed;
/// returns its output and the ids it printed, one a line.
fn produce_tracked(url: &str, queue: &str) -> (Output, Vec<String>) {
    let o = produce(
        url,
        &["--queue", queue, "--print-ids", "--track", "ok", "boom"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let ids: Vec<String> = String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (o, ids)
}

#[tokio::test]
async fn produce_prints_ids_and_job_shows_their_status() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;

    let (o, ids) = produce_tracked(&url, "reports");
    assert_eq!(ids.len(), 2, "stdout holds the ids alone: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("produced 2 messages"));

    let o = pythia_on(&url, "job", &["--queue", "reports", &ids[0]]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("state       queued"), "{out}");
    assert!(out.contains("attempts    0"), "{out}");

    // A worker with the job-status layer: "ok" succeeds with a result, "boom" is rejected.
    let policy = RetryPolicy::default();
    let worker = worker_fn(|m: Message| async move {
        if m.body().as_ref() == b"ok" {
            record_job_result(&m, r#"{"pages":3}"#);
            Ok(())
        } else {
            Err(WorkerError::reject("cannot render \"boom\""))
        }
    });
    burst(ReliableListBroker::new(&conn, "reports"), worker)
        .with_retry_policy(policy)
        .with_job_status(JobTracking::new(&conn))
        .run()
        .await
        .unwrap();
    let store = JobStatusStore::new(&conn, "reports");
    store
        .wait_finished(&ids[1], Duration::from_secs(5))
        .await
        .unwrap();

    let o = pythia_on(&url, "job", &["--queue", "reports", "--json", &ids[0]]);
    assert!(o.status.success(), "{}", text(&o));
    let j: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["id"], ids[0].as_str());
    assert_eq!(j["queue"], "reports");
    assert_eq!(j["state"], "succeeded");
    assert_eq!(j["attempts"], 1);
    assert_eq!(j["result"], r#"{"pages":3}"#);
    assert_eq!(j["last_error"], Json::Null);
    assert!(j["queued_at"].as_str().unwrap().ends_with('Z'));
    assert!(j["finished_at"].is_string());

    let o = pythia_on(&url, "job", &["--queue", "reports", &ids[1]]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("state       dead"), "{}", text(&o));
    assert!(out.contains(r#"last error  cannot render "boom""#), "{out}");

    let o = pythia_on(&url, "job", &["--queue", "reports", "nope"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no status record"));

    let o = produce(&url, &["--queue", "q", "--raw", "--print-ids", "x"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "raw messages carry no id: {}",
        text(&o)
    );
}

#[tokio::test]
async fn job_shows_the_timeline_and_jobs_lists_them_by_state() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let (_, ids) = produce_tracked(&url, "imports");
    let o = pythia_on(&url, "jobs", &["--queue", "imports", "--state", "queued"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&ids[0]) && out.contains(&ids[1]), "{out}");

    let worker = worker_fn(|m: Message| async move {
        let job = pythia::redis::JobHandle::of(&m).expect("tracked");
        if m.body().as_ref() == b"ok" {
            job.progress(40).await.unwrap();
            job.event("rows", serde_json::json!({"read": 7}))
                .await
                .unwrap();
            job.progress(100).await.unwrap();
            Ok(())
        } else {
            Err(WorkerError::reject("bad row"))
        }
    });
    burst(ReliableListBroker::new(&conn, "imports"), worker)
        .with_job_status(JobTracking::new(&conn))
        .run()
        .await
        .unwrap();

    let o = pythia_on(&url, "job", &["--queue", "imports", &ids[0]]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("progress    100%"), "{out}");
    let kinds: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "timeline")
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        kinds,
        [
            "queued",
            "started",
            "progress",
            "rows",
            "progress",
            "succeeded"
        ],
        "{out}"
    );
    assert!(out.contains(r#"{"data":{"read":7}}"#), "{out}");

    let o = pythia_on(
        &url,
        "job",
        &[
            "--queue",
            "imports",
            "--json",
            "--events",
            "2",
            "--events-offset",
            "1",
            &ids[0],
        ],
    );
    let j: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["progress"], "100%");
    let events = j["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "limit and offset: {j}");
    assert_eq!(events[0]["kind"], "started");
    assert_eq!(events[1]["progress"], "40%");
    assert!(events[0]["at"].as_str().unwrap().ends_with('Z'));

    let o = pythia_on(
        &url,
        "jobs",
        &["--queue", "imports", "--state", "dead", "--json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let dead: Json = serde_json::from_slice(&o.stdout).unwrap();
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["id"], ids[1].as_str());
    assert_eq!(dead[0]["last_error"], "bad row");
    let o = pythia_on(&url, "jobs", &["--queue", "imports", "--state", "queued"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no queued jobs"),
        "{}",
        text(&o)
    );
    let o = pythia_on(&url, "jobs", &["--queue", "imports", "--state", "lost"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
