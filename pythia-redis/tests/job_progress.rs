//! Job progress, events, jobs by state and checkpoints against a real redis-server; and that a
//! runtime without job tracking sends no command for it.

use pythia_test_support as support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{Message, RetryPolicy, WorkerError, worker_fn};
use pythia_redis::{
    JobHandle, JobProgress, JobState, JobStatusStore, JobTracking, JobTrackingExt, ListProducer,
    QueueKeys, RedisConnection, ReliableListBroker,
};
use support::{RedisServer, burst, cmd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_events_make_a_bounded_timeline_and_jobs_are_listed_by_state() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let store = JobStatusStore::new(&conn, "imports");
    let ok = Message::new("ok").with_id("job-ok");
    let bad = Message::new("bad").with_id("job-bad");
    let chatty = Message::new("chatty").with_id("job-chatty");
    let msgs = [ok, bad, chatty];
    store.record_queued(&msgs).await.unwrap();
    assert_eq!(
        store
            .ids_in_state(JobState::Queued, 0, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    ListProducer::new(&conn, "imports")
        .push_many(&msgs)
        .await
        .unwrap();

    let worker = worker_fn(|msg: Message| async move {
        let job = JobHandle::of(&msg).expect("tracking attaches a handle");
        assert_eq!(
            (job.id(), job.queue(), job.attempt()),
            (msg.id(), "imports", 1)
        );
        match msg.body_str().unwrap() {
            "ok" => {
                job.progress(50).await.unwrap();
                job.event("rows", serde_json::json!({"read": 10}))
                    .await
                    .unwrap();
                job.progress_count(3, Some(4)).await.unwrap();
                job.set_result("done");
                Ok(())
            }
            "chatty" => {
                for i in 0..20 {
                    job.event("tick", i).await.unwrap();
                }
                job.event("huge", "x".repeat(10_000)).await.unwrap();
                Ok(())
            }
            _ => Err(WorkerError::reject("bad input")),
        }
    });
    burst(ReliableListBroker::new(&conn, "imports"), worker)
        .with_job_status(JobTracking::new(&conn).with_max_events(5))
        .run()
        .await
        .unwrap();

    // The outcomes are written before run() returns.
    let done = store.get("job-ok").await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(
        done.progress,
        Some(JobProgress::Count {
            done: 3,
            total: Some(4)
        })
    );
    assert_eq!(done.result.as_deref(), Some(&b"done"[..]));
    let kinds = |events: &[pythia_redis::JobEvent]| -> Vec<String> {
        events.iter().map(|e| e.kind.clone()).collect()
    };
    // Six events were written (queued … succeeded); five are kept, the oldest trimmed.
    let timeline = store.events("job-ok", 0, 100).await.unwrap();
    assert_eq!(
        kinds(&timeline),
        ["started", "progress", "rows", "progress", "succeeded"]
    );
    let e = timeline.iter().find(|e| e.kind == "rows").unwrap();
    assert_eq!(e.fields["data"]["read"], 10);
    assert_eq!(e.attempt, 1);
    let page = store.events("job-ok", 1, 2).await.unwrap();
    assert_eq!(kinds(&page), kinds(&timeline[1..3]), "limit and offset");

    let chatty = store.events("job-chatty", 0, 100).await.unwrap();
    assert_eq!(chatty.len(), 5, "bounded in count");
    let huge = chatty.iter().find(|e| e.kind == "huge").unwrap();
    assert_eq!(huge.fields["truncated"], true);
    assert!(huge.fields["data"].as_str().unwrap().len() < 4096);

    let dead = store.get("job-bad").await.unwrap().unwrap();
    assert_eq!(
        (dead.state, dead.last_error.as_deref()),
        (JobState::Dead, Some("bad input"))
    );
    let ids = |v: Vec<(String, std::time::SystemTime)>| -> Vec<String> {
        v.into_iter().map(|(id, _)| id).collect()
    };
    let mut succeeded = ids(store
        .ids_in_state(JobState::Succeeded, 0, 10)
        .await
        .unwrap());
    succeeded.sort();
    assert_eq!(succeeded, ["job-chatty", "job-ok"]);
    assert_eq!(
        ids(store.ids_in_state(JobState::Dead, 0, 10).await.unwrap()),
        ["job-bad"]
    );
    assert!(
        store
            .ids_in_state(JobState::Queued, 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "a job is in one state index at a time"
    );
    assert!(
        store
            .ids_in_state(JobState::Running, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let recent = store.recent(JobState::Succeeded, 0, 1).await.unwrap();
    assert_eq!(recent.len(), 1, "limit");
    // Every key has a TTL.
    let keys = QueueKeys::new("pythia", "imports");
    for key in [
        keys.job_status("job-ok"),
        keys.job_events("job-ok"),
        keys.jobs_in_state("succeeded"),
    ] {
        let ttl: i64 = cmd(&conn, &["PTTL", &key]).await;
        assert!(ttl > 0, "{key}: {ttl}");
    }
}

/// Calls per command name since the last `CONFIG RESETSTAT`.
async fn command_calls(conn: &RedisConnection) -> HashMap<String, u64> {
    let info: String = cmd(conn, &["INFO", "commandstats"]).await;
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

async fn drain(
    conn: &RedisConnection,
    queue: &str,
    n: usize,
    tracked: bool,
) -> HashMap<String, u64> {
    let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("m{i}"))).collect();
    ListProducer::new(conn, queue)
        .push_many(&msgs)
        .await
        .unwrap();
    let _: () = cmd(conn, &["CONFIG", "RESETSTAT"]).await;
    let rt = burst(
        ReliableListBroker::new(conn, queue),
        worker_fn(|_m| async { Ok(()) }),
    )
    .with_stats_interval(None)
    .with_batch_size(n);
    let rt = if tracked {
        rt.with_job_status(JobTracking::new(conn))
    } else {
        rt
    };
    let summary = rt.run().await.unwrap();
    assert_eq!(summary.acked, n as u64);
    command_calls(conn).await
}

#[tokio::test]
async fn without_job_tracking_no_command_is_sent_for_it() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let n = 200;
    let off = drain(&conn, "plain", n, false).await;
    let keys: Vec<String> = cmd(&conn, &["KEYS", "*job*"]).await;
    assert!(keys.is_empty(), "no job keys without tracking: {keys:?}");
    let on = drain(&conn, "tracked", n, true).await;
    let evalsha = |m: &HashMap<String, u64>| m.get("evalsha").copied().unwrap_or(0);
    // With tracking: `running` and the outcome, one script call each, per message.
    assert!(
        evalsha(&on) >= evalsha(&off) + 2 * n as u64,
        "on {on:?}\noff {off:?}"
    );
    // Without: the broker's own calls only, a handful for the whole batch.
    assert!(evalsha(&off) < 20, "{off:?}");
    for c in ["zadd", "rpush", "zrem", "pexpire"] {
        assert_eq!(off.get(c), None, "{c} without tracking: {off:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_job_resumes_from_its_checkpoint_which_goes_once_acked() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let msg = Message::new("ten steps").with_id("job-steps");
    ListProducer::new(&conn, "steps").push(&msg).await.unwrap();
    let ran: Arc<Mutex<Vec<(u32, u64)>>> = Arc::default();
    let log = Arc::clone(&ran);
    let worker = worker_fn(move |msg: Message| {
        let log = Arc::clone(&log);
        async move {
            let job = JobHandle::of(&msg).unwrap();
            let first = job
                .checkpoint::<Vec<u64>>()
                .await?
                .map_or(1, |cp| cp.sequence + 1);
            let mut done: Vec<u64> = match job.checkpoint::<Vec<u64>>().await? {
                Some(cp) => cp.data,
                None => Vec::new(),
            };
            for step in first..=10 {
                if step == 6 && msg.attempt() == 1 {
                    return Err(WorkerError::retry("lost the connection at step 6"));
                }
                log.lock().unwrap().push((msg.attempt(), step));
                done.push(step);
                assert!(
                    job.save_checkpoint(step, Some(JobProgress::Percent(step as u8 * 10)), &done)
                        .await?
                );
            }
            // A save behind the checkpoint changes nothing.
            assert!(!job.save_checkpoint(3, None, &done).await?);
            let cp = job.checkpoint::<Vec<u64>>().await?.unwrap();
            assert_eq!(
                (cp.sequence, cp.progress),
                (10, Some(JobProgress::Percent(100)))
            );
            Ok(())
        }
    });
    burst(ReliableListBroker::new(&conn, "steps"), worker)
        .with_retry_policy(
            RetryPolicy::default()
                .with_initial_delay(Duration::from_millis(50))
                .with_jitter(0.0),
        )
        .with_job_status(JobTracking::new(&conn))
        .run()
        .await
        .unwrap();
    let ran = ran.lock().unwrap().clone();
    let second: Vec<u64> = ran
        .iter()
        .filter(|(a, _)| *a == 2)
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(
        second,
        [6, 7, 8, 9, 10],
        "attempt 2 resumed at step 6: {ran:?}"
    );
    let key = QueueKeys::new("pythia", "steps").job_checkpoint("job-steps");
    let exists: u64 = cmd(&conn, &["EXISTS", &key]).await;
    assert_eq!(exists, 0, "deleted once acked");
    let store = JobStatusStore::new(&conn, "steps");
    let kinds: Vec<String> = store
        .events("job-steps", 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["started", "retried", "started", "succeeded"]);
}

#[tokio::test]
async fn a_message_dead_lettered_without_running_is_recorded_dead() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    // Delivered again after its workers crashed, more often than allowed: the runtime
    // dead-letters it without running it, and no layer sees it; the observer does.
    let crashed = Message::new("crasher")
        .with_id("job-crashed")
        .with_attempt(9);
    ListProducer::new(&conn, "crashy")
        .push(&crashed)
        .await
        .unwrap();
    let ran = Arc::new(Mutex::new(0));
    let count = Arc::clone(&ran);
    let summary = burst(
        ReliableListBroker::new(&conn, "crashy"),
        worker_fn(move |_m: Message| {
            *count.lock().unwrap() += 1;
            async { Ok(()) }
        }),
    )
    .with_retry_policy(RetryPolicy::default().with_max_attempts(3))
    .with_job_status(JobTracking::new(&conn))
    .run()
    .await
    .unwrap();
    assert_eq!((summary.dead_lettered, *ran.lock().unwrap()), (1, 0));
    let store = JobStatusStore::new(&conn, "crashy");
    let dead = store.get("job-crashed").await.unwrap().unwrap();
    assert_eq!((dead.state, dead.attempts), (JobState::Dead, 9));
    assert!(
        dead.last_error
            .as_deref()
            .unwrap()
            .starts_with("exceeded 3 attempts"),
        "{dead:?}"
    );
    assert_eq!(dead.started_at, None, "it never started");
    let events = store.events("job-crashed", 0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "dead");
    assert!(
        events[0].fields["reason"]
            .as_str()
            .unwrap()
            .contains("crashed")
    );
}
