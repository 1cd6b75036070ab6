//! Job status records against a real redis-server: queued → running → failed → running →
//! succeeded (with a result), dead, and expiry by TTL.

use pythia_test_support as support;

use std::time::Duration;

use pythia_core::{Message, RetryPolicy, WorkerError, worker_fn};
use pythia_redis::{
    JobState, JobStatusStore, JobTracking, JobTrackingExt, ListProducer, QueueKeys,
    ReliableListBroker, record_job_result,
};
use support::{RedisServer, burst, cmd, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_a_job_through_retries_to_its_end() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let store = JobStatusStore::new(&conn, "reports");
    let flaky = Message::new("flaky").with_id("job-flaky");
    let poison = Message::new("poison").with_id("job-poison");
    let tired = Message::new("tired").with_id("job-tired");
    let msgs = [flaky.clone(), poison.clone(), tired.clone()];
    assert_eq!(store.record_queued(&msgs).await.unwrap(), 3);
    let queued = store.get("job-flaky").await.unwrap().unwrap();
    assert_eq!(queued.state, JobState::Queued);
    assert_eq!((queued.attempts, queued.queue.as_str()), (0, "reports"));
    assert!(queued.queued_at.is_some() && queued.started_at.is_none());
    ListProducer::new(&conn, "reports")
        .push_many(&msgs)
        .await
        .unwrap();

    let policy = RetryPolicy::default()
        .with_max_attempts(2)
        .with_initial_delay(Duration::from_millis(300))
        .with_jitter(0.0);
    let seen_running = store.clone();
    let worker = worker_fn(move |msg: Message| {
        let store = seen_running.clone();
        async move {
            // While the handler runs, its record says so.
            let me = store.get(msg.id()).await.unwrap().unwrap();
            assert_eq!(me.state, JobState::Running);
            assert_eq!(me.attempts, msg.attempt());
            match (msg.body_str().unwrap(), msg.attempt()) {
                ("flaky", 1) => Err(WorkerError::retry("database busy")),
                ("flaky", _) => {
                    assert!(record_job_result(&msg, r#"{"pages":7}"#));
                    Ok(())
                }
                ("poison", _) => Err(WorkerError::reject("not a report")),
                _ => Err(WorkerError::retry("still tired")),
            }
        }
    });
    let broker = ReliableListBroker::new(&conn, "reports")
        .with_maintenance_interval(Duration::from_millis(50));
    let run = tokio::spawn(
        burst(broker, worker)
            .with_retry_policy(policy)
            .with_job_status(JobTracking::new(&conn))
            .run(),
    );
    // Between its attempts, the flaky job is "failed" (a retry is scheduled).
    eventually(Duration::from_secs(5), "job-flaky failed once", || {
        let store = store.clone();
        async move {
            store
                .get("job-flaky")
                .await
                .unwrap()
                .is_some_and(|s| s.state == JobState::Failed)
        }
    })
    .await;
    let failed = store.get("job-flaky").await.unwrap().unwrap();
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("database busy"));
    let summary = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((summary.acked, summary.dead_lettered), (1, 2));

    let done = store
        .wait_finished("job-flaky", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.attempts, 2);
    assert_eq!(done.last_error, None, "a success clears the last error");
    #[derive(serde::Deserialize)]
    struct Pages {
        pages: u32,
    }
    assert_eq!(done.result_json::<Pages>().unwrap().unwrap().pages, 7);
    assert!(done.queued_at.unwrap() <= done.started_at.unwrap());
    assert!(done.started_at.unwrap() <= done.finished_at.unwrap());

    let dead = store.get("job-poison").await.unwrap().unwrap();
    assert_eq!((dead.state, dead.attempts), (JobState::Dead, 1));
    assert_eq!(dead.last_error.as_deref(), Some("not a report"));
    let dead = store.get("job-tired").await.unwrap().unwrap();
    assert_eq!(
        (dead.state, dead.attempts),
        (JobState::Dead, 2),
        "out of attempts"
    );

    // A late "queued" never overwrites what a worker wrote.
    assert_eq!(store.record_queued(&[flaky]).await.unwrap(), 0);
    assert_eq!(
        store.get("job-flaky").await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    assert_eq!(store.get("never-sent").await.unwrap(), None);
}

#[tokio::test]
async fn records_expire_after_their_ttl() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let store = JobStatusStore::new(&conn, "q").with_ttl(Duration::from_secs(1));
    let msg = Message::new("x");
    ListProducer::new(&conn, "q").push(&msg).await.unwrap();
    burst(
        ReliableListBroker::new(&conn, "q"),
        worker_fn(|_m| async { Ok(()) }),
    )
    .with_job_status(JobTracking::new(&conn).with_ttl(Duration::from_secs(1)))
    .run()
    .await
    .unwrap();
    let key = QueueKeys::new("pythia", "q").job_status(msg.id());
    let ttl: i64 = cmd(&conn, &["PTTL", &key]).await;
    assert!(ttl > 0 && ttl <= 1000, "{ttl}");
    assert_eq!(
        store.get(msg.id()).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.get(msg.id()).await.unwrap(), None);
}
