//! Reading, replaying and purging dead letters against a real redis-server: list, stream and
//! pub/sub queues; replays atomic per item and never doubled.

use pythia_test_support as support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pythia_core::{Message, Source, WorkerError, envelope, worker_fn};
use pythia_redis::{
    DeadLetterQueue, GroupStart, ListBroker, ListSide, StreamBroker, StreamProducer,
};
use redis::Value;
use support::{RedisServer, burst, cmd};

/// Pushes dead letters as the list brokers write them, oldest first.
async fn dead_letter(conn: &pythia_redis::RedisConnection, queue: &str, bodies: &[&str]) {
    for (i, body) in bodies.iter().enumerate() {
        let msg = Message::new(body.to_string())
            .with_id(format!("id-{body}"))
            .with_header("tenant", "acme")
            .with_attempt(3);
        let raw = envelope::encode_dead_letter(&msg, &format!("boom {i}"), SystemTime::now());
        let mut m = conn.manager();
        redis::cmd("LPUSH")
            .arg(format!("pythia:{{{queue}}}:dlq"))
            .arg(raw)
            .query_async::<()>(&mut m)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn list_dead_letters_are_read_replayed_by_id_and_all_and_purged() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    dead_letter(&conn, "jobs", &["a", "b", "c"]).await;
    let dlq = DeadLetterQueue::list(&conn, "jobs");
    assert_eq!(dlq.key(), "pythia:{jobs}:dlq");
    assert_eq!(dlq.len().await.unwrap(), 3);

    let newest = dlq.newest(2).await.unwrap();
    let ids: Vec<&str> = newest.iter().map(|d| d.message.id()).collect();
    assert_eq!(ids, ["id-c", "id-b"]);
    assert_eq!(newest[0].reason.as_deref(), Some("boom 2"));
    assert_eq!(newest[0].message.attempt(), 3);
    assert!(newest[0].failed_at.is_some());
    let oldest = dlq.oldest(10).await.unwrap();
    assert_eq!(oldest[0].message.id(), "id-a");

    // One by id: back on the queue with attempt 1, headers kept; out of the DLQ.
    let b = dlq.find(|d| d.message.id() == "id-b").await.unwrap();
    assert_eq!(b.len(), 1);
    let r = dlq.replay(&b).await.unwrap();
    assert_eq!((r.replayed, r.missing, r.unheard), (1, 0, 0));
    let again = dlq.replay(&b).await.unwrap();
    assert_eq!((again.replayed, again.missing), (0, 1), "never doubled");
    let items: Vec<Vec<u8>> = cmd(&conn, &["LRANGE", "jobs", "0", "-1"]).await;
    assert_eq!(items.len(), 1);
    let msg = envelope::decode(items[0].clone().into(), &Source::new("list", "jobs"));
    assert_eq!(
        (msg.id(), msg.attempt(), msg.body().as_ref()),
        ("id-b", 1, &b"b"[..])
    );
    assert_eq!(msg.header("tenant"), Some("acme"));
    assert!(msg.age().unwrap() < Duration::from_secs(5), "enqueued now");

    // All the rest, oldest first, behind the queue's backlog.
    let r = dlq.replay_all().await.unwrap();
    assert_eq!(r.replayed, 2);
    assert!(dlq.is_empty().await.unwrap());
    let broker = ListBroker::new(&conn, "jobs");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    burst(
        broker,
        worker_fn(move |m: Message| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push((m.id().to_owned(), m.attempt()));
                Ok(())
            }
        }),
    )
    .with_concurrency(1)
    .run()
    .await
    .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [("id-b".into(), 1), ("id-a".into(), 1), ("id-c".into(), 1)]
    );

    // Left-popping consumers: replays are RPUSHed.
    dead_letter(&conn, "left", &["x"]).await;
    let r = DeadLetterQueue::list(&conn, "left")
        .with_side(ListSide::Left)
        .replay_all()
        .await
        .unwrap();
    assert_eq!(r.replayed, 1);
    let _: i64 = cmd(&conn, &["LPUSH", "left", "first"]).await;
    let head: Vec<u8> = cmd(&conn, &["LINDEX", "left", "-1"]).await;
    assert!(String::from_utf8_lossy(&head).contains("id-x"));

    dead_letter(&conn, "jobs", &["p", "q"]).await;
    let q = dlq.find(|d| d.message.id() == "id-q").await.unwrap();
    assert_eq!(dlq.delete(&q).await.unwrap(), 1);
    assert_eq!(dlq.len().await.unwrap(), 1);
    assert_eq!(dlq.purge().await.unwrap(), 1);
    assert_eq!(dlq.len().await.unwrap(), 0);
}

#[tokio::test]
async fn stream_dead_letters_are_replayed_with_their_original_fields() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let producer = StreamProducer::new(&conn, "events");
    producer
        .add_many(&[
            Message::new("one").with_header("tenant", "acme"),
            Message::new("two"),
        ])
        .await
        .unwrap();
    let broker = || {
        StreamBroker::new(&conn, "events", "billing")
            .with_start(GroupStart::Beginning)
            .with_maintenance_interval(Duration::from_millis(100))
    };
    let summary = burst(
        broker(),
        worker_fn(|_m: Message| async { Err(WorkerError::reject("bad input")) }),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(summary.dead_lettered, 2);

    let dlq = DeadLetterQueue::stream(&conn, "events");
    assert_eq!(dlq.key(), "pythia:{events}:dlq");
    let letters = dlq.oldest(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].message.body().as_ref(), b"one");
    assert_eq!(letters[0].message.header("tenant"), Some("acme"));
    assert!(letters[0].reason.as_deref().unwrap().contains("bad input"));
    assert!(letters[0].failed_at.is_some());
    assert!(letters[0].location.entry_id().is_some());
    assert!(letters[0].location.original_entry_id().is_some());

    let r = dlq.replay_all().await.unwrap();
    assert_eq!((r.replayed, r.missing), (2, 0));
    assert!(dlq.is_empty().await.unwrap());
    let last: Vec<Value> = cmd(&conn, &["XREVRANGE", "events", "+", "-", "COUNT", "1"]).await;
    let text = format!("{last:?}");
    assert!(text.contains("pythia-group") && !text.contains("pythia-error"));

    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let summary = burst(
        broker(),
        worker_fn(move |m: Message| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push((
                    String::from_utf8_lossy(m.body()).into_owned(),
                    m.attempt(),
                    m.header("tenant").map(str::to_owned),
                ));
                Ok(())
            }
        }),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(summary.acked, 2);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("one".into(), 1, Some("acme".into())),
            ("two".into(), 1, None)
        ]
    );
}

#[tokio::test]
async fn pubsub_replays_stay_dead_when_nobody_listens() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    dead_letter(&conn, "alerts", &["a", "b"]).await;
    let dlq = DeadLetterQueue::channel(&conn, "alerts");
    let r = dlq.replay_all().await.unwrap();
    assert_eq!((r.replayed, r.unheard), (0, 2));
    assert_eq!(dlq.len().await.unwrap(), 2, "nothing lost");
    let oldest = dlq.oldest(1).await.unwrap();
    assert_eq!(oldest[0].message.id(), "id-a", "order kept");
}
