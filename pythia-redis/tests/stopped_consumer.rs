//! A consumer stopped longer than its heartbeat lifetime (SIGSTOP, a frozen VM, a long GC-like
//! stall): another consumer reclaims its deliveries and processes them. When the stopped one
//! continues, its settlements of those deliveries change nothing in Redis (no second ack of
//! what the other consumer now owns, no second retry or dead letter) and are counted in
//! `pythia_settle_not_owned_total`.

use pythia_test_support as support;
use pythia_test_support::counters;

use std::time::Duration;

use counters::{counter, metrics_recorder};
use pythia_core::{Broker, Message, Outcome, Settlement};
use pythia_redis::{
    GroupStart, ListProducer, QueueKeys, RedisConnection, ReliableListBroker, StreamBroker,
    StreamProducer,
};
use support::{RedisServer, acks, cmd, season};

const LIFETIME: Duration = Duration::from_millis(600);
const NOT_OWNED: &str = "pythia_settle_not_owned_total";

fn reliable(conn: &RedisConnection) -> ReliableListBroker {
    ReliableListBroker::new(conn, "stalled")
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(LIFETIME)
}

fn stream(conn: &RedisConnection) -> StreamBroker {
    StreamBroker::new(conn, "stalled-s", "g")
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(LIFETIME)
}

fn outcome<T>(token: T, message: Message, outcome: Outcome) -> Vec<Settlement<T>> {
    vec![Settlement {
        token,
        message,
        outcome,
    }]
}

/// The stopped consumer took two messages; the other reclaimed and acked both; the stopped one
/// continues and acks one and dead-letters the other.
async fn stopped_then_continued<B: Broker>(
    label: &str,
    queue: &str,
    conn: &RedisConnection,
    make: impl Fn() -> B,
    heartbeat_key: impl Fn(&B) -> String,
) {
    let stopped = make();
    let mut got = stopped.fetch(10).await.unwrap();
    assert_eq!(got.len(), 2);
    // Stopped: its heartbeat expires (deleted here rather than waited for).
    let _: i64 = cmd(conn, &["DEL", &heartbeat_key(&stopped)]).await;

    let other = make();
    season(LIFETIME, || other.maintain()).await; // reclaims on the way
    let mut taken = Vec::new();
    for _ in 0..20 {
        taken.extend(other.fetch(10).await.unwrap());
        if taken.len() == 2 {
            break;
        }
    }
    assert_eq!(taken.len(), 2, "{label}: the other consumer reclaimed both");
    let acks = acks(taken);
    other.settle(&acks).await.unwrap();

    // The stopped consumer continues.
    let before = counter(NOT_OWNED, &[("queue", queue), ("broker", label)]);
    let second = got.pop().unwrap();
    let first = got.pop().unwrap();
    stopped
        .settle(&outcome(first.token, first.message, Outcome::Ack))
        .await
        .unwrap();
    stopped
        .settle(&outcome(
            second.token,
            second.message,
            Outcome::DeadLetter {
                reason: "late".into(),
            },
        ))
        .await
        .unwrap();
    let after = counter(NOT_OWNED, &[("queue", queue), ("broker", label)]);
    assert_eq!(after - before, 2, "{label}: both late settlements counted");
    let dead_letters = QueueKeys::new("pythia", queue).dead_letters();
    let exists: i64 = cmd(conn, &["EXISTS", &dead_letters]).await;
    assert_eq!(
        exists, 0,
        "{label}: no dead letter for a message another consumer acked"
    );
}

#[tokio::test]
async fn a_reliable_list_consumer_stopped_past_its_lifetime_settles_nothing_twice() {
    metrics_recorder();
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "stalled")
        .push_many(&[Message::new("a"), Message::new("b")])
        .await
        .unwrap();
    stopped_then_continued(
        "reliable-list",
        "stalled",
        &conn,
        || reliable(&conn),
        |b| b.keys().heartbeat(b.consumer()),
    )
    .await;
    let queued: i64 = cmd(&conn, &["LLEN", "stalled"]).await;
    assert_eq!(queued, 0);
}

#[tokio::test]
async fn a_stream_consumer_stopped_past_its_lifetime_settles_nothing_twice() {
    metrics_recorder();
    let server = RedisServer::start();
    let conn = server.connect().await;
    StreamProducer::new(&conn, "stalled-s")
        .add_many(&[Message::new("a"), Message::new("b")])
        .await
        .unwrap();
    stopped_then_continued(
        "stream",
        "stalled-s",
        &conn,
        || stream(&conn),
        |b| b.keys().heartbeat(b.consumer()),
    )
    .await;
    let pending: Vec<redis::Value> = cmd(&conn, &["XPENDING", "stalled-s", "g"]).await;
    assert_eq!(pending[0], redis::Value::Int(0));
}
