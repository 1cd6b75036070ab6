//! Every script that moves a message checks key types and sizes before its first write and adds
//! before it removes (STYLE rule 13): a key of the wrong type anywhere a message goes is a
//! configuration error with the message still where it was, and a stream entry too big for a
//! script still gets retried and dead-lettered whole.

use pythia_test_support as support;

use std::time::Duration;

use pythia_core::{
    Broker, BrokerErrorKind, Message, Outcome, RetryPolicy, Settlement, WorkerError, WorkerRuntime,
    worker_fn,
};
use pythia_redis::{
    DeadLetterQueue, GroupStart, ListBroker, ListProducer, QueueKeys, RedisConnection,
    ReliableListBroker, StreamBroker, StreamProducer,
};
use support::{RedisServer, burst, cmd, eventually};

fn reliable(conn: &RedisConnection, queue: &str) -> ReliableListBroker {
    ReliableListBroker::with_consumer_name(conn, queue, "c1")
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600))
}

fn stream(conn: &RedisConnection, name: &str) -> StreamBroker {
    StreamBroker::new(conn, name, "g")
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(Duration::from_millis(100))
}

fn dead_letter<T>(token: T, message: Message) -> Vec<Settlement<T>> {
    vec![Settlement {
        token,
        message,
        outcome: Outcome::DeadLetter {
            reason: "poison".into(),
        },
    }]
}

fn retry<T>(token: T, message: Message, delay: Duration) -> Vec<Settlement<T>> {
    vec![Settlement {
        token,
        message,
        outcome: Outcome::Retry { delay },
    }]
}

fn assert_config_error(e: &pythia_core::BrokerError) {
    assert_eq!(e.kind(), BrokerErrorKind::Config, "{e}");
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
}

/// Pushes one message, `poison`, onto the list `queue`; returns the queue's keys.
async fn push_poison(conn: &RedisConnection, queue: &str) -> QueueKeys {
    ListProducer::new(conn, queue)
        .push(&Message::new("poison"))
        .await
        .unwrap();
    QueueKeys::new("pythia", queue)
}

/// How many messages the consumer `c1` holds in flight.
async fn in_flight_of_c1(conn: &RedisConnection, keys: &QueueKeys) -> i64 {
    cmd(conn, &["HLEN", &keys.in_flight("c1")]).await
}

#[tokio::test]
async fn a_due_retry_stays_scheduled_when_the_queue_key_has_another_type() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let keys = QueueKeys::new("pythia", "q2");
    let payload = r#"{"pythia":1,"id":"r1","attempt":2,"body":"retry-me"}"#;
    let _: i64 = cmd(&conn, &["ZADD", &keys.scheduled(), "0", payload]).await;
    let _: i64 = cmd(&conn, &["HSET", "q2", "a", "b"]).await;
    for broker in [
        Box::new(reliable(&conn, "q2")) as Box<dyn MaintainOnly>,
        Box::new(ListBroker::new(&conn, "q2")),
    ] {
        let e = broker.maintain_now().await.unwrap_err();
        assert_config_error(&e);
        let left: i64 = cmd(&conn, &["ZCARD", &keys.scheduled()]).await;
        assert_eq!(left, 1, "the retry is still scheduled");
    }
    // Once the key is fixed, the retry is delivered.
    let _: i64 = cmd(&conn, &["DEL", "q2"]).await;
    reliable(&conn, "q2").maintain().await.unwrap();
    let items: Vec<String> = cmd(&conn, &["LRANGE", "q2", "0", "-1"]).await;
    assert_eq!(items, [payload]);
}

/// `maintain` of any broker, object-safe for the loop above.
trait MaintainOnly {
    fn maintain_now(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), pythia_core::BrokerError>> + '_>>;
}

impl<B: Broker> MaintainOnly for B {
    fn maintain_now(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), pythia_core::BrokerError>> + '_>> {
        Box::pin(self.maintain())
    }
}

#[tokio::test]
async fn a_staged_item_stays_staged_when_the_queue_key_has_another_type() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let keys = QueueKeys::new("pythia", "q12");
    let broker = reliable(&conn, "q12");
    broker.maintain().await.unwrap(); // registered: the next fetch runs the fetch script
    // A blocking move parked an item, then the queue key was replaced by a hash.
    let _: i64 = cmd(&conn, &["LPUSH", &keys.staging("c1"), "staged-item"]).await;
    let _: i64 = cmd(&conn, &["HSET", "q12", "a", "b"]).await;
    let e = broker.fetch(10).await.unwrap_err();
    assert_config_error(&e);
    let staged: Vec<String> = cmd(&conn, &["LRANGE", &keys.staging("c1"), "0", "-1"]).await;
    assert_eq!(staged, ["staged-item"]);
    let in_flight = in_flight_of_c1(&conn, &keys).await;
    assert_eq!(in_flight, 0);
}

#[tokio::test]
async fn a_dead_letter_stays_in_flight_when_the_dead_letter_key_has_another_type() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let keys = push_poison(&conn, "q3").await;
    let _: String = cmd(&conn, &["SET", &keys.dead_letters(), "not-a-list"]).await;
    let broker = reliable(&conn, "q3");
    let d = broker.fetch(10).await.unwrap().remove(0);
    let e = broker
        .settle(&dead_letter(d.token, d.message.clone()))
        .await
        .unwrap_err();
    assert_config_error(&e);
    let in_flight = in_flight_of_c1(&conn, &keys).await;
    assert_eq!(in_flight, 1, "still in flight, never nowhere");
    // A retry into a schedule of another type: the same.
    let _: i64 = cmd(&conn, &["HSET", &keys.scheduled(), "a", "b"]).await;
    let e = broker
        .settle(&retry(d.token, d.message.clone(), Duration::ZERO))
        .await
        .unwrap_err();
    assert_config_error(&e);
    let in_flight = in_flight_of_c1(&conn, &keys).await;
    assert_eq!(in_flight, 1);
    // A hand-back into a queue of another type: the same.
    let _: i64 = cmd(&conn, &["HSET", "q3", "a", "b"]).await;
    let e = broker.release(vec![d]).await.unwrap_err();
    assert_config_error(&e);
    let in_flight = in_flight_of_c1(&conn, &keys).await;
    assert_eq!(in_flight, 1);
}

#[tokio::test]
async fn the_whole_worker_stops_on_a_wrong_type_dead_letter_key_and_keeps_the_message() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let keys = push_poison(&conn, "q10").await;
    let _: String = cmd(&conn, &["SET", &keys.dead_letters(), "not-a-list"]).await;
    let rt = WorkerRuntime::new(
        reliable(&conn, "q10"),
        worker_fn(|_m: Message| async { Err(WorkerError::reject("poison")) }),
    )
    .with_signal_handling(false)
    .with_shutdown_grace(Duration::from_secs(1));
    let res = tokio::time::timeout(Duration::from_secs(20), rt.run())
        .await
        .expect("the worker stops on a configuration error");
    assert!(res.is_err(), "a fatal error, not a clean run: {res:?}");
    let queued: i64 = cmd(&conn, &["LLEN", "q10"]).await;
    let in_flight = in_flight_of_c1(&conn, &keys).await;
    assert_eq!(queued + in_flight, 1, "the message is still in Redis");
}

#[tokio::test]
async fn a_stream_dead_letter_stays_pending_when_the_dead_letter_key_has_another_type() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let keys = QueueKeys::new("pythia", "s3");
    StreamProducer::new(&conn, "s3")
        .add(&Message::new("poison"))
        .await
        .unwrap();
    let _: i64 = cmd(&conn, &["LPUSH", &keys.dead_letters(), "a list"]).await;
    let broker = stream(&conn, "s3");
    let d = broker.fetch(10).await.unwrap().remove(0);
    let e = broker
        .settle(&dead_letter(d.token, d.message.clone()))
        .await
        .unwrap_err();
    assert_config_error(&e);
    let pending: Vec<redis::Value> = cmd(&conn, &["XPENDING", "s3", "g"]).await;
    assert_eq!(pending[0], redis::Value::Int(1), "still pending");
    // A due retry whose stream has become another type stays scheduled.
    let _: i64 = cmd(&conn, &["DEL", &keys.dead_letters()]).await;
    broker
        .settle(&retry(d.token, d.message, Duration::ZERO))
        .await
        .unwrap();
    let _: i64 = cmd(&conn, &["DEL", "s3"]).await;
    let _: i64 = cmd(&conn, &["LPUSH", "s3", "x"]).await;
    let e = broker.promote_due_retries().await.unwrap_err();
    assert_config_error(&e);
    let scheduled: i64 = cmd(&conn, &["ZCARD", &keys.scheduled()]).await;
    assert_eq!(scheduled, 1);
}

#[tokio::test]
async fn a_dead_letter_replay_into_a_wrong_type_queue_keeps_the_dead_letter() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let keys = QueueKeys::new("pythia", "q6");
    let rt = burst(
        ListBroker::new(&conn, "q6"),
        worker_fn(|_m: Message| async { Err(WorkerError::reject("poison")) }),
    );
    ListProducer::new(&conn, "q6")
        .push(&Message::new("poison"))
        .await
        .unwrap();
    rt.run().await.unwrap();
    let _: i64 = cmd(&conn, &["HSET", "q6", "a", "b"]).await;
    let dlq = DeadLetterQueue::list(&conn, "q6");
    let e = dlq.replay_all().await.unwrap_err();
    assert_config_error(&e);
    let dead: i64 = cmd(&conn, &["LLEN", &keys.dead_letters()]).await;
    assert_eq!(dead, 1);
}

/// An entry with 4,100 fields: more than Lua can pass to one command from a script.
async fn add_wide_entry(conn: &RedisConnection, name: &str, body: &str) {
    let mut args: Vec<String> = vec!["XADD".into(), name.into(), "*".into()];
    args.extend(["body".into(), body.into()]);
    for i in 0..4100 {
        args.extend([format!("f{i}"), format!("v{i}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _: String = cmd(conn, &args).await;
}

#[tokio::test]
async fn a_stream_entry_too_wide_for_a_script_is_retried_and_dead_lettered_whole() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    add_wide_entry(&conn, "s8", "poison").await;
    let keys = QueueKeys::new("pythia", "s8");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let rt = burst(
        stream(&conn, "s8"),
        worker_fn(move |m: Message| {
            s.lock().unwrap().push((m.attempt(), m.headers().len()));
            async { Err(WorkerError::retry("fails")) }
        }),
    )
    .with_retry_policy(
        RetryPolicy::default()
            .with_max_attempts(2)
            .with_initial_delay(Duration::from_millis(50)),
    );
    tokio::time::timeout(Duration::from_secs(30), rt.run())
        .await
        .expect("the burst ends")
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [(1, 4100), (2, 4100)],
        "retried with every field"
    );
    eventually(Duration::from_secs(5), "the dead letter", || async {
        let n: i64 = cmd(&conn, &["XLEN", &keys.dead_letters()]).await;
        n == 1
    })
    .await;
    let entries: Vec<(String, Vec<(String, String)>)> =
        cmd(&conn, &["XRANGE", &keys.dead_letters(), "-", "+"]).await;
    let fields = &entries[0].1;
    assert!(fields.iter().any(|(k, v)| k == "f4099" && v == "v4099"));
    assert!(fields.iter().any(|(k, v)| k == "body" && v == "poison"));
    let pending: Vec<redis::Value> = cmd(&conn, &["XPENDING", "s8", "g"]).await;
    assert_eq!(pending[0], redis::Value::Int(0), "nothing left pending");
}
