//! Queues whose names share a hash tag (`{o}.a`, `{o}.b`) live in one Cluster slot but keep
//! every Pythia key apart: a retry of one is never promoted into the other, and their dead
//! letters never meet (whatever broker each one uses).

use pythia_test_support as support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{Broker, Message, RetryPolicy, Worker, WorkerError, WorkerRuntime, worker_fn};
use pythia_redis::{
    GroupStart, ListBroker, ListProducer, QueueKeys, RedisConnection, ReliableListBroker,
    StreamBroker, StreamProducer,
};
use support::{RedisServer, burst, cmd, eventually};

fn reliable(conn: &RedisConnection, queue: &str) -> ReliableListBroker {
    ReliableListBroker::new(conn, queue)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600))
}

/// A handler that records every body it sees and fails every first attempt with a short
/// retry delay.
fn fail_first(seen: Arc<Mutex<Vec<(String, u32)>>>) -> impl Worker {
    worker_fn(move |msg: Message| {
        let seen = seen.clone();
        let body = String::from_utf8_lossy(msg.body()).into_owned();
        let attempt = msg.attempt();
        async move {
            seen.lock().unwrap().push((body, attempt));
            if attempt == 1 {
                Err(WorkerError::retry_later(
                    Duration::from_millis(1500),
                    "first attempt fails",
                ))
            } else {
                Ok(())
            }
        }
    })
}

/// Runs `broker` until the handler has seen `n` messages, then stops it.
async fn run_until_seen<B: Broker>(broker: B, seen: Arc<Mutex<Vec<(String, u32)>>>, n: usize) {
    let rt = WorkerRuntime::new(broker, fail_first(seen.clone())).with_signal_handling(false);
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "the first attempt", || {
        let seen = seen.clone();
        async move { seen.lock().unwrap().len() >= n }
    })
    .await;
    // Let the settle of the failed attempt reach Redis before stopping.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[test]
fn every_key_of_a_tagged_queue_is_its_own_and_in_its_slot() {
    let a = QueueKeys::new("pythia", "{o}.a");
    let b = QueueKeys::new("pythia", "{o}.b");
    let whole = QueueKeys::new("pythia", "{o}");
    let untagged = QueueKeys::new("pythia", "o");
    let all = |k: &QueueKeys| {
        vec![
            k.scheduled(),
            k.scheduled_ids(),
            k.dead_letters(),
            k.consumers(),
            k.in_flight("c"),
            k.staging("c"),
            k.heartbeat("c"),
            k.group_consumers("g"),
            k.lock(),
            k.periodic_slot("j"),
            k.idempotency("k"),
            k.job_status("i"),
            k.shard_layout(),
            k.checkpoint("r"),
        ]
    };
    let keys: Vec<Vec<String>> = [&a, &b, &whole, &untagged].into_iter().map(all).collect();
    for (i, mine) in keys.iter().enumerate() {
        for theirs in keys.iter().skip(i + 1) {
            for k in mine {
                assert!(!theirs.contains(k), "{k} is shared");
            }
        }
        for k in mine {
            assert_eq!(pythia_redis::keys::hash_tag(k), "o", "{k} left the slot");
        }
    }
    // Queues without a hash tag keep the keys they always had.
    assert_eq!(untagged.scheduled(), "pythia:{o}:scheduled");
    assert_eq!(
        QueueKeys::new("pythia", "jobs").in_flight("c1"),
        "pythia:{jobs}:inflight:c1"
    );
}

#[tokio::test]
async fn a_retry_stays_with_its_own_queue() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "{o}.a")
        .push(&Message::new("for-a-only"))
        .await
        .unwrap();
    let seen_a = Arc::new(Mutex::new(Vec::new()));
    run_until_seen(reliable(&conn, "{o}.a"), seen_a.clone(), 1).await;

    // The neighbour's burst worker finds nothing of its own, and ends without taking a's retry.
    let seen_b = Arc::new(Mutex::new(Vec::new()));
    let summary = tokio::time::timeout(
        Duration::from_secs(5),
        burst(reliable(&conn, "{o}.b"), fail_first(seen_b.clone())).run(),
    )
    .await
    .expect("b's burst ends: a's retry is not b's")
    .unwrap();
    assert_eq!(summary.fetched, 0);
    assert!(seen_b.lock().unwrap().is_empty());
    let b_len: i64 = cmd(&conn, &["LLEN", "{o}.b"]).await;
    assert_eq!(b_len, 0);

    // a's own worker gets its retry back, as attempt 2.
    burst(reliable(&conn, "{o}.a"), fail_first(seen_a.clone()))
        .run()
        .await
        .unwrap();
    assert_eq!(
        *seen_a.lock().unwrap(),
        vec![("for-a-only".to_owned(), 1), ("for-a-only".to_owned(), 2)]
    );
}

#[tokio::test]
async fn a_stream_and_a_list_with_one_tag_keep_their_retries_and_dead_letters_apart() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    // The stream's message fails once (a retry in the stream's schedule) ...
    StreamProducer::new(&conn, "{o}.s")
        .add(&Message::new("stream-job"))
        .await
        .unwrap();
    let seen_s = Arc::new(Mutex::new(Vec::new()));
    run_until_seen(
        StreamBroker::new(&conn, "{o}.s", "g")
            .with_start(GroupStart::Beginning)
            .with_maintenance_interval(Duration::from_millis(100)),
        seen_s.clone(),
        1,
    )
    .await;
    // ... and the list's is rejected at once (a dead letter in the list's dead-letter list).
    ListProducer::new(&conn, "{o}.l")
        .push(&Message::new("list-job"))
        .await
        .unwrap();
    let rejected = Arc::new(Mutex::new(0));
    let r = rejected.clone();
    burst(
        ListBroker::new(&conn, "{o}.l"),
        worker_fn(move |_m: Message| {
            *r.lock().unwrap() += 1;
            async { Err(WorkerError::reject("poison")) }
        }),
    )
    .with_retry_policy(RetryPolicy::default())
    .run()
    .await
    .unwrap();
    assert_eq!(*rejected.lock().unwrap(), 1);
    let list_dlq = QueueKeys::new("pythia", "{o}.l").dead_letters();
    let dead: Vec<Vec<u8>> = cmd(&conn, &["LRANGE", &list_dlq, "0", "-1"]).await;
    assert_eq!(
        dead.len(),
        1,
        "the list's dead letter is kept, in a list of its own"
    );

    // The stream's retry comes back to the stream, never to the list.
    burst(
        StreamBroker::new(&conn, "{o}.s", "g")
            .with_start(GroupStart::Beginning)
            .with_maintenance_interval(Duration::from_millis(100)),
        fail_first(seen_s.clone()),
    )
    .run()
    .await
    .unwrap();
    eventually(Duration::from_secs(5), "the stream's retry", || {
        let seen = seen_s.clone();
        async move { seen.lock().unwrap().len() == 2 }
    })
    .await;
    assert_eq!(seen_s.lock().unwrap()[1], ("stream-job".to_owned(), 2));
    let list_len: i64 = cmd(&conn, &["LLEN", "{o}.l"]).await;
    assert_eq!(list_len, 0, "nothing of the stream reached the list");
}
