//! The idempotency layer against a real redis-server: duplicates of completed messages are
//! acked without running the worker and counted; failures are not recorded; records expire.

use pythia_test_support as support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{Message, RetryPolicy, WorkerError, worker_fn};
use pythia_redis::{
    IdempotencyKey, IdempotencyLayer, ListProducer, QueueKeys, RedisConnection, ReliableListBroker,
};
use support::{RedisServer, burst, cmd};

type Calls = Arc<Mutex<HashMap<String, u32>>>;

/// Runs a reliable-list worker over `queue` until drained; the worker counts calls per body
/// and fails a body's first attempt when it starts with "flaky".
async fn drain(conn: &RedisConnection, queue: &str, layer: &IdempotencyLayer, calls: &Calls) {
    let calls = Arc::clone(calls);
    let worker = worker_fn(move |msg: Message| {
        let body = msg.body_str().unwrap().to_owned();
        *calls.lock().unwrap().entry(body.clone()).or_default() += 1;
        async move {
            if body.starts_with("flaky") && msg.attempt() == 1 {
                Err(WorkerError::retry("first attempt fails"))
            } else {
                Ok(())
            }
        }
    });
    let broker =
        ReliableListBroker::new(conn, queue).with_maintenance_interval(Duration::from_millis(50));
    tokio::time::timeout(
        Duration::from_secs(10),
        burst(broker, worker)
            .layer(layer.clone())
            .with_concurrency(1)
            .with_retry_policy(
                RetryPolicy::default()
                    .with_initial_delay(Duration::from_millis(10))
                    .with_jitter(0.0),
            )
            .run(),
    )
    .await
    .unwrap()
    .unwrap();
}

fn keyed(body: &str, key: &str) -> Message {
    Message::new(body.to_owned()).with_header("idempotency-key", key)
}

#[tokio::test]
async fn a_duplicate_of_a_completed_message_is_acked_without_running() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let layer = IdempotencyLayer::new(&conn);
    let calls: Calls = Arc::default();
    let producer = ListProducer::new(&conn, "payments");
    producer
        .push_many(&[
            keyed("charge order-1", "order-1"),
            keyed("charge order-1", "order-1"), // a producer's retry: same key
            Message::new("no key"),
            Message::new("no key"), // no key: both run
            keyed("flaky order-2", "order-2"),
        ])
        .await
        .unwrap();
    drain(&conn, "payments", &layer, &calls).await;
    {
        let calls = calls.lock().unwrap();
        assert_eq!(calls["charge order-1"], 1);
        assert_eq!(calls["no key"], 2);
        assert_eq!(
            calls["flaky order-2"], 2,
            "a failed attempt is not recorded: the retry runs"
        );
    }
    assert_eq!(layer.skipped(), 1);

    // A later redelivery of either completed message is skipped too, and counted.
    producer
        .push_many(&[
            keyed("charge order-1", "order-1"),
            keyed("flaky order-2", "order-2"),
        ])
        .await
        .unwrap();
    drain(&conn, "payments", &layer, &calls).await;
    assert_eq!(calls.lock().unwrap()["charge order-1"], 1);
    assert_eq!(calls.lock().unwrap()["flaky order-2"], 2);
    assert_eq!(layer.skipped(), 3);

    let keys = QueueKeys::new("pythia", "payments");
    let record: String = cmd(&conn, &["GET", &keys.idempotency("order-1")]).await;
    assert!(!record.is_empty());
    let ttl: i64 = cmd(&conn, &["PTTL", &keys.idempotency("order-1")]).await;
    assert!(
        ttl > 0 && ttl <= 24 * 3600 * 1000,
        "bounded by a TTL: {ttl}"
    );
}

#[tokio::test]
async fn records_expire_and_body_hashes_can_be_the_key() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let layer = IdempotencyLayer::new(&conn)
        .with_key(IdempotencyKey::BodyHash)
        .with_ttl(Duration::from_millis(300));
    let calls: Calls = Arc::default();
    // Raw items from another producer: equal bodies are the same job.
    let _: u64 = cmd(
        &conn,
        &["LPUSH", "q", "resize 1.png", "resize 1.png", "resize 2.png"],
    )
    .await;
    drain(&conn, "q", &layer, &calls).await;
    assert_eq!(calls.lock().unwrap()["resize 1.png"], 1);
    assert_eq!(calls.lock().unwrap()["resize 2.png"], 1);
    assert_eq!(layer.skipped(), 1);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let _: u64 = cmd(&conn, &["LPUSH", "q", "resize 1.png"]).await;
    drain(&conn, "q", &layer, &calls).await;
    assert_eq!(
        calls.lock().unwrap()["resize 1.png"],
        2,
        "the record expired: it runs again"
    );

    assert!(
        layer
            .store()
            .forget(
                "q",
                &IdempotencyKey::BodyHash
                    .of(&Message::new("resize 1.png"))
                    .unwrap()
            )
            .await
            .unwrap()
    );
}
