//! The at-most-once list broker against a real redis-server.

use pythia_test_support as support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{
    Broker, BrokerErrorKind, Message, RetryPolicy, Worker, WorkerError, WorkerRuntime, worker_fn,
};
use pythia_redis::{Encoding, ListBroker, ListProducer, ListSide};
use support::collect::Collect;
use support::{RedisServer, burst, cmd};

fn run<W: Worker>(broker: ListBroker, w: W) -> WorkerRuntime<ListBroker> {
    burst(broker, w)
}

#[tokio::test]
async fn raw_and_enveloped_items_round_trip_in_order() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: i64 = cmd(&conn, &["LPUSH", "jobs", "plain text"]).await;
    let enveloped = Message::new(vec![0u8, 255, 1]).with_header("tenant", "acme");
    let producer = ListProducer::new(&conn, "jobs");
    producer.push(&enveloped).await.unwrap();
    let _: i64 = cmd(
        &conn,
        &[
            "LPUSH",
            "jobs",
            r#"{"body": "from python", "headers": {"h": "1"}, "message_id": "py-1"}"#,
        ],
    )
    .await;
    ListProducer::new(&conn, "jobs")
        .with_encoding(Encoding::Raw)
        .push(&Message::new("raw via producer"))
        .await
        .unwrap();

    let w = Collect::default();
    let summary = run(ListBroker::new(&conn, "jobs"), w.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(summary.acked, 4);
    let seen = w.seen.lock().unwrap();
    let bodies: Vec<&[u8]> = seen.iter().map(|m| m.body().as_ref()).collect();
    assert_eq!(
        bodies,
        [
            &b"plain text"[..],
            &[0, 255, 1],
            b"from python",
            b"raw via producer"
        ],
        "FIFO with LPUSH producers and right pops"
    );
    assert_eq!(seen[1].id(), enveloped.id());
    assert_eq!(seen[1].header("tenant"), Some("acme"));
    assert!(seen[1].enqueued_at().is_some());
    assert_eq!(seen[2].id(), "py-1");
    assert_eq!(seen[2].header("h"), Some("1"));
    assert!(
        seen.iter()
            .all(|m| m.source().name() == "jobs" && m.attempt() == 1)
    );
}

#[tokio::test]
async fn batches_are_popped_whole_and_in_order_on_either_side() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    for side in [ListSide::Right, ListSide::Left] {
        let queue = format!("batch-{}", side.as_str());
        let msgs: Vec<Message> = (0..1000).map(|i| Message::new(format!("{i}"))).collect();
        let n = ListProducer::new(&conn, &queue)
            .with_side(side)
            .push_many(&msgs)
            .await
            .unwrap();
        assert_eq!(n, 1000);
        let broker = ListBroker::new(&conn, &queue).with_side(side);
        let batch = broker.fetch(600).await.unwrap();
        assert_eq!(batch.len(), 600, "one fetch, one round trip");
        let bodies: Vec<String> = batch
            .iter()
            .map(|d| d.message.body_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = (0..600).map(|i| i.to_string()).collect();
        assert_eq!(bodies, want, "{side:?}");
        assert_eq!(broker.fetch(600).await.unwrap().len(), 400);
    }
}

#[tokio::test]
async fn an_empty_queue_blocks_then_wakes_on_push() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let broker = ListBroker::new(&conn, "idle");
    let started = std::time::Instant::now();
    assert!(broker.fetch(10).await.unwrap().is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "waited the block time"
    );

    let conn2 = conn.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ListProducer::new(&conn2, "idle")
            .push(&Message::new("late"))
            .await
            .unwrap();
    });
    let got = broker.fetch(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.body().as_ref(), b"late");
}

#[tokio::test]
async fn retries_come_back_and_dead_letters_keep_their_reason() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "work")
        .push_many(&["ok", "flaky", "poison"].map(Message::new))
        .await
        .unwrap();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let w = worker_fn(move |m: Message| {
        let seen = seen.clone();
        async move {
            let body = m.body_str().unwrap().to_owned();
            seen.lock().unwrap().push((body.clone(), m.attempt()));
            match (body.as_str(), m.attempt()) {
                ("flaky", 1) => Err(WorkerError::retry("try again")),
                ("poison", _) => Err(WorkerError::reject("cannot parse")),
                _ => Ok(()),
            }
        }
    });
    let broker =
        ListBroker::new(&conn, "work").with_maintenance_interval(Duration::from_millis(50));
    let summary = run(broker, w)
        .with_retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(100)))
        .run()
        .await
        .unwrap();
    assert_eq!(
        (summary.acked, summary.retried, summary.dead_lettered),
        (2, 1, 1)
    );
    assert!(attempts.lock().unwrap().contains(&("flaky".into(), 2)));
    let dlq: Vec<Vec<u8>> = cmd(&conn, &["LRANGE", "pythia:{work}:dlq", "0", "-1"]).await;
    assert_eq!(dlq.len(), 1);
    let dead = pythia_core::envelope::decode_dead_letter(
        dlq[0].clone().into(),
        &pythia_core::Source::new("list", "work"),
    );
    assert_eq!(dead.message.body().as_ref(), b"poison");
    assert_eq!(dead.reason.as_deref(), Some("rejected: cannot parse"));
    assert!(dead.failed_at.is_some());
    let scheduled: i64 = cmd(&conn, &["ZCARD", "pythia:{work}:scheduled"]).await;
    assert_eq!(scheduled, 0);
}

#[tokio::test]
async fn dead_letters_are_capped() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "capped")
        .push_many(
            &(0..20)
                .map(|i| Message::new(format!("{i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let w = worker_fn(|_m: Message| async { Err(WorkerError::reject("no")) });
    run(ListBroker::new(&conn, "capped").with_dead_letter_cap(5), w)
        .run()
        .await
        .unwrap();
    let len: i64 = cmd(&conn, &["LLEN", "pythia:{capped}:dlq"]).await;
    assert_eq!(len, 5);
}

#[tokio::test]
async fn a_key_of_the_wrong_type_is_a_clear_configuration_error() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: i64 = cmd(&conn, &["HSET", "not-a-list", "f", "v"]).await;
    let e = ListBroker::new(&conn, "not-a-list")
        .fetch(10)
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        BrokerErrorKind::Config,
        "fatal: no retry fixes it"
    );
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
}

#[tokio::test]
async fn shutdown_puts_unstarted_and_unfinished_items_back_in_front() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "slow")
        .push_many(
            &(0..10)
                .map(|i| Message::new(format!("{i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let w = worker_fn(|_m: Message| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    });
    let rt = WorkerRuntime::new(ListBroker::new(&conn, "slow"), w)
        .with_signal_handling(false)
        .with_concurrency(3)
        .with_shutdown_grace(Duration::from_millis(200));
    let stop = rt.cancellation_token();
    let handle = tokio::spawn(rt.run());
    support::eventually(Duration::from_secs(5), "3 items taken", || async {
        let n: i64 = cmd(&conn, &["LLEN", "slow"]).await;
        n == 7
    })
    .await;
    stop.cancel();
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(summary.released, 3);
    let items: Vec<String> = cmd(&conn, &["LRANGE", "slow", "0", "-1"]).await;
    assert_eq!(items.len(), 10, "nothing lost on a graceful stop");
    // Right end pops next: 0, 1, 2 are there again, in order.
    let next = ListBroker::new(&conn, "slow").fetch(3).await.unwrap();
    let bodies: Vec<&str> = next.iter().map(|d| d.message.body_str().unwrap()).collect();
    assert_eq!(bodies, ["0", "1", "2"]);
}

/// Many chunks with pushes in flight while the next is encoded: the list holds every message
/// once, in the order given, on either side; nothing to push is no round trip.
#[tokio::test]
async fn pushes_in_flight_keep_the_order_of_many_chunks() {
    use pythia_redis::list::producer::{PUSH_CHUNK, PUSHES_IN_FLIGHT};
    let server = RedisServer::start();
    let conn = server.connect().await;
    // More chunks than the window, the last one short.
    let n = PUSH_CHUNK * (PUSHES_IN_FLIGHT + 3) + 7;
    let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("{i}"))).collect();
    for side in [ListSide::Right, ListSide::Left] {
        let queue = format!("many-{}", side.as_str());
        let producer = ListProducer::new(&conn, &queue).with_side(side);
        assert_eq!(producer.push_many(&[]).await.unwrap(), 0);
        assert_eq!(producer.push_many(&msgs).await.unwrap(), n);
        let broker = ListBroker::new(&conn, &queue).with_side(side);
        let mut bodies = Vec::new();
        loop {
            let batch = broker.fetch(1000).await.unwrap();
            if batch.is_empty() {
                break;
            }
            bodies.extend(
                batch
                    .iter()
                    .map(|d| d.message.body_str().unwrap().to_owned()),
            );
        }
        let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        assert_eq!(bodies, want, "{side:?}");
    }
}

/// A key of the wrong type fails the push with Redis's own error, named by the command.
#[tokio::test]
async fn pushing_onto_a_key_of_the_wrong_type_fails_clearly() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: i64 = cmd(&conn, &["HSET", "hashed", "f", "v"]).await;
    let msgs: Vec<Message> = (0..2500).map(|i| Message::new(format!("{i}"))).collect();
    let e = ListProducer::new(&conn, "hashed")
        .push_many(&msgs)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    assert!(e.to_string().contains("LPUSH"), "{e}");
}
