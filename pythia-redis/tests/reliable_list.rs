//! The at-least-once reliable list broker against a real redis-server: crashes, long jobs,
//! restarts, retries that outlive the worker, credentials that never leak.

use pythia_test_support as support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{Broker, BrokerErrorKind, Message, RetryPolicy, WorkerRuntime, worker_fn};
use pythia_redis::{ListProducer, RedisConfig, RedisConnection, ReliableListBroker};
use support::chaos::{
    Record, kill_recording_child, lost_and_duplicated, recorded, run_recording_child,
};
use support::{RedisServer, broker_scenarios, burst, cmd, eventually, season};

fn fast(conn: &RedisConnection, queue: &str) -> ReliableListBroker {
    ReliableListBroker::new(conn, queue)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600))
}

async fn push_numbered(conn: &RedisConnection, queue: &str, n: usize) -> Vec<String> {
    let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("{i}"))).collect();
    ListProducer::new(conn, queue)
        .push_many(&msgs)
        .await
        .unwrap();
    msgs.iter().map(|m| m.id().to_owned()).collect()
}

async fn no_pythia_state_left(conn: &RedisConnection, queue: &str) {
    let keys: Vec<String> = cmd(conn, &["KEYS", &format!("pythia:{{{queue}}}:*")]).await;
    assert!(keys.is_empty(), "left behind: {keys:?}");
    let len: i64 = cmd(conn, &["LLEN", queue]).await;
    assert_eq!(len, 0);
}

#[tokio::test]
async fn processes_everything_and_leaves_nothing_behind() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = push_numbered(&conn, "q", 2000).await;
    // Equal bodies are distinct deliveries, each acked once.
    ListProducer::new(&conn, "q")
        .with_encoding(pythia_redis::Encoding::Raw)
        .push_many(&vec![Message::new("same"); 50])
        .await
        .unwrap();
    let summary = burst(fast(&conn, "q"), Record::new(&conn))
        .with_concurrency(64)
        .run()
        .await
        .unwrap();
    assert_eq!(summary.acked, 2050);
    let processed = recorded(&conn).await;
    assert!(ids.iter().all(|id| processed.get(id) == Some(&1)));
    assert_eq!(processed.values().sum::<i64>(), 2050);
    no_pythia_state_left(&conn, "q").await;
}

/// Not a test of its own (ignored, so it never counts as a pass): the body of the worker
/// process that `a_worker_killed_mid_batch_loses_nothing` starts (`--ignored --exact`) and kills.
#[tokio::test]
#[ignore = "a worker child process, run by its parent test (--ignored --exact), not a test"]
async fn child_worker_process() {
    run_recording_child(|conn| fast(conn, "crash"), |b| b.consumer().to_owned()).await;
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = push_numbered(&conn, "crash", 3000).await;

    let dead = kill_recording_child("child_worker_process", &server, &conn).await;
    let orphaned: i64 = cmd(
        &conn,
        &["HLEN", &format!("pythia:{{crash}}:inflight:{dead}")],
    )
    .await;
    assert!(orphaned > 0, "the kill should leave work in flight");

    let summary = burst(fast(&conn, "crash"), Record::new(&conn))
        .run()
        .await
        .unwrap();
    let (lost, duplicates) = lost_and_duplicated(&ids, &recorded(&conn).await);
    assert_eq!(lost, 0, "lost {lost} messages");
    eprintln!(
        "crash test: 3000 messages, {orphaned} orphaned by SIGKILL, {} processed after restart, {duplicates} duplicates, 0 lost",
        summary.acked
    );
    assert!(duplicates <= orphaned, "only orphaned work may run twice");
    no_pythia_state_left(&conn, "crash").await;
}

#[tokio::test]
async fn a_live_consumer_keeps_its_long_job() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "long")
        .push(&Message::new("long job"))
        .await
        .unwrap();
    broker_scenarios::a_live_consumer_keeps_its_long_job(|| fast(&conn, "long")).await;
}

#[tokio::test]
async fn a_retry_survives_the_worker_that_scheduled_it() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "later")
        .push(&Message::new("x"))
        .await
        .unwrap();
    broker_scenarios::schedule_a_retry_then_stop(fast(&conn, "later"), &conn, "later").await;

    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let ok = worker_fn(move |m: Message| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(m.attempt());
            Ok(())
        }
    });
    let s = burst(fast(&conn, "later"), ok).run().await.unwrap();
    assert_eq!(s.acked, 1);
    assert_eq!(*attempts.lock().unwrap(), [2]);
}

#[tokio::test]
async fn a_message_that_kills_its_worker_ends_in_the_dead_letter_queue() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: i64 = cmd(&conn, &["LPUSH", "poison", "kills the worker"]).await;
    // Simulate three crashed consumers: each takes the item and dies without a heartbeat.
    for _ in 0..3 {
        let dying = fast(&conn, "poison");
        let got = dying.fetch(10).await.unwrap();
        assert_eq!(got.len(), 1);
        let _: i64 = cmd(&conn, &["DEL", &dying.keys().heartbeat(dying.consumer())]).await;
        let reaper = fast(&conn, "poison");
        season(Duration::from_millis(600), || reaper.maintain()).await; // reaps on the way
        let back: i64 = cmd(&conn, &["LLEN", "poison"]).await;
        assert_eq!(back, 1, "returned to the queue");
        reaper.close().await.unwrap();
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let w = worker_fn(move |_m: Message| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let s = burst(fast(&conn, "poison"), w)
        .with_retry_policy(RetryPolicy::default().with_max_attempts(3))
        .run()
        .await
        .unwrap();
    // Delivery 4 of a message allowed 3 attempts: dead-lettered without running it again.
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(s.dead_lettered, 1);
    let dlq: Vec<Vec<u8>> = cmd(&conn, &["LRANGE", "pythia:{poison}:dlq", "0", "-1"]).await;
    assert_eq!(dlq.len(), 1);
    let dead = pythia_core::envelope::decode_dead_letter(
        dlq[0].clone().into(),
        &pythia_core::Source::new("reliable-list", "poison"),
    );
    assert_eq!(dead.message.body().as_ref(), b"kills the worker");
    assert_eq!(dead.message.attempt(), 4);
    assert!(dead.reason.unwrap().contains("exceeded 3 attempts"));
}

#[tokio::test]
async fn the_worker_reconnects_after_a_redis_restart() {
    let mut server = RedisServer::start();
    let conn = server.connect().await;
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let w = worker_fn(move |_m: Message| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let rt = WorkerRuntime::new(fast(&conn, "restart"), w).with_signal_handling(false);
    let status = rt.status();
    let stop = rt.cancellation_token();
    let h = tokio::spawn(rt.run());
    push_numbered(&conn, "restart", 10).await;
    eventually(Duration::from_secs(5), "10 processed", || async {
        count.load(Ordering::SeqCst) == 10
    })
    .await;

    server.stop();
    eventually(
        Duration::from_secs(10),
        "the outage to be noticed",
        || async { !status.broker_ok() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();

    // The shared connection reconnects by itself; push once it does.
    eventually(
        Duration::from_secs(15),
        "a push after the restart",
        || async {
            ListProducer::new(&conn, "restart")
                .push(&Message::new("after"))
                .await
                .is_ok()
        },
    )
    .await;
    eventually(Duration::from_secs(15), "processing to resume", || async {
        count.load(Ordering::SeqCst) >= 11
    })
    .await;
    // Healthy again once a fetch and a maintenance run have both succeeded since the restart:
    // the fetch that resumed processing may come before the next maintenance run.
    eventually(
        Duration::from_secs(5),
        "the broker to be healthy again",
        || async { status.broker_ok() },
    )
    .await;
    stop.cancel();
    h.await.unwrap().unwrap();
}

#[tokio::test]
async fn credentials_never_appear_in_errors() {
    let server = RedisServer::start_with(&["--requirepass", "correct-horse"]);
    let url = format!("redis://:wrong-battery@127.0.0.1:{}", server.port());
    let err = RedisConnection::connect(RedisConfig::from_url(&url).unwrap())
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-battery"), "{text}");
    assert!(text.contains(":***@127.0.0.1"), "{text}");

    let good = format!("redis://:correct-horse@127.0.0.1:{}", server.port());
    let conn = RedisConnection::connect(RedisConfig::from_url(&good).unwrap())
        .await
        .unwrap();
    assert!(!format!("{conn:?} {:?}", conn.config()).contains("correct-horse"));

    let closed = format!("redis://:pw-123@127.0.0.1:{}", support_free_port());
    let err = RedisConnection::connect(
        RedisConfig::from_url(&closed)
            .unwrap()
            .with_connect_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), BrokerErrorKind::Connection);
    assert!(
        err.to_string()
            .contains("cannot connect to Redis at redis://:***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.to_string().contains("pw-123"));
}

fn support_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A failover to a replica loses the writes the old master had not replicated: an ack lost so
/// leaves a processed message in the live consumer's in-flight hash, where nothing would
/// deliver or remove it while the consumer lives (and a burst worker would wait for it
/// forever). After a connection error the broker sends its recent settlements again.
#[tokio::test]
async fn acks_lost_with_a_connection_are_sent_again() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    push_numbered(&conn, "lost-acks", 10).await;
    let broker = fast(&conn, "lost-acks");
    let got = broker.fetch(10).await.unwrap();
    assert_eq!(got.len(), 10);
    let settled: Vec<pythia_core::Settlement<u64>> = got
        .iter()
        .map(|d| pythia_core::Settlement {
            token: d.token,
            message: d.message.clone(),
            outcome: pythia_core::Outcome::Ack,
        })
        .collect();
    broker.settle(&settled).await.unwrap();
    // What the promoted replica would hold: two of the acked deliveries still in flight.
    let in_flight = broker.keys().in_flight(broker.consumer());
    for d in &got[..2] {
        let _: i64 = cmd(&conn, &["HSET", &in_flight, &d.token.to_string(), "stale"]).await;
    }
    broker.maintain().await.unwrap();
    let left: i64 = cmd(&conn, &["HLEN", &in_flight]).await;
    assert_eq!(left, 2, "without a connection error nothing is sent again");

    // The server drops every client: the broker's next command fails, the one after works.
    let _: i64 = cmd(&conn, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"]).await;
    eventually(
        Duration::from_secs(10),
        "the stale entries removed",
        || async {
            let _ = broker.maintain().await;
            let left: i64 = cmd(&conn, &["HLEN", &in_flight]).await;
            left == 0
        },
    )
    .await;
}

/// A server that lost its scripts (a restart, a failover, `SCRIPT FLUSH`) answers `NOSCRIPT`:
/// the settle script is loaded and the call sent again, and the retry and the dead letter land.
#[tokio::test]
async fn a_settle_after_script_flush_loads_the_script_again() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    push_numbered(&conn, "flushed", 3).await;
    let broker = fast(&conn, "flushed");
    let got = broker.fetch(10).await.unwrap();
    assert_eq!(got.len(), 3);
    let outcomes = [
        pythia_core::Outcome::Ack,
        pythia_core::Outcome::Retry {
            delay: Duration::from_secs(60),
        },
        pythia_core::Outcome::DeadLetter {
            reason: "bad".into(),
        },
    ];
    let settled: Vec<pythia_core::Settlement<u64>> = got
        .iter()
        .zip(outcomes)
        .map(|(d, outcome)| pythia_core::Settlement {
            token: d.token,
            message: d.message.clone(),
            outcome,
        })
        .collect();
    let _: String = cmd(&conn, &["SCRIPT", "FLUSH"]).await;
    broker.settle(&settled).await.unwrap();
    let keys = broker.keys();
    let scheduled: i64 = cmd(&conn, &["ZCARD", &keys.scheduled()]).await;
    let dead: i64 = cmd(&conn, &["LLEN", &keys.dead_letters()]).await;
    let in_flight: i64 = cmd(&conn, &["HLEN", &keys.in_flight(broker.consumer())]).await;
    assert_eq!((scheduled, dead, in_flight), (1, 1, 0));
}

/// A consumer name reused by the next process (a StatefulSet pod's name): the new process
/// returns what the crashed one left in flight before it records deliveries of its own, so
/// nothing is overwritten (delivery ids restart at 1) or stranded under a live heartbeat.
#[tokio::test]
async fn a_reused_consumer_name_returns_what_the_crashed_process_left() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "pods")
        .push_many(&[Message::new("a"), Message::new("b"), Message::new("c")])
        .await
        .unwrap();
    let named = || {
        ReliableListBroker::with_consumer_name(&conn, "pods", "pod-0")
            .with_maintenance_interval(Duration::from_millis(100))
            .with_heartbeat_ttl(Duration::from_millis(600))
    };
    let crashed = named();
    let got = crashed.fetch(2).await.unwrap();
    assert_eq!(got.len(), 2);
    drop((crashed, got)); // dies without a word; its heartbeat has not expired yet

    let next = named();
    let mut bodies = Vec::new();
    let mut settle = Vec::new();
    for _ in 0..10 {
        for d in next.fetch(10).await.unwrap() {
            bodies.push(String::from_utf8_lossy(d.message.body()).into_owned());
            settle.push(pythia_core::Settlement {
                token: d.token,
                message: d.message,
                outcome: pythia_core::Outcome::Ack,
            });
        }
        if bodies.len() >= 3 {
            break;
        }
    }
    bodies.sort();
    assert_eq!(
        bodies,
        ["a", "b", "c"],
        "every message delivered, none overwritten"
    );
    next.settle(&settle).await.unwrap();
    let left: i64 = cmd(&conn, &["HLEN", &next.keys().in_flight("pod-0")]).await;
    assert_eq!(left, 0, "nothing stranded in flight");
    next.close().await.unwrap();
}

/// A consumer taken for dead and forgotten (removed from the registry) that goes on fetching:
/// each fetch registers it again, so when it really dies its items are found and returned.
#[tokio::test]
async fn a_forgotten_consumer_that_fetches_again_is_reaped_when_it_dies() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = push_numbered(&conn, "forgotten", 3).await;
    let zombie = fast(&conn, "forgotten");
    zombie.maintain().await.unwrap(); // registered
    // Another consumer took it for dead and forgot it while it was stalled...
    let _: i64 = cmd(
        &conn,
        &["SREM", &zombie.keys().consumers(), zombie.consumer()],
    )
    .await;
    // ... it continues, fetches, and then dies for good before its next heartbeat.
    assert_eq!(zombie.fetch(10).await.unwrap().len(), 3);
    let _: i64 = cmd(&conn, &["DEL", &zombie.keys().heartbeat(zombie.consumer())]).await;
    drop(zombie);

    let reaper = fast(&conn, "forgotten");
    season(Duration::from_millis(600), || reaper.maintain()).await; // reaps on the way
    let back: i64 = cmd(&conn, &["LLEN", "forgotten"]).await;
    assert_eq!(back, ids.len() as i64, "the dead consumer's items are back");
    reaper.close().await.unwrap();
}

/// Items come in the order they were pushed, from either end, across a staged item and a batch.
#[tokio::test]
async fn items_are_delivered_in_queue_order_from_either_end() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    for (side, push) in [
        (pythia_redis::ListSide::Right, "LPUSH"),
        (pythia_redis::ListSide::Left, "RPUSH"),
    ] {
        let queue = format!("ordered-{push}");
        for i in 0..5 {
            let _: i64 = cmd(&conn, &[push, &queue, &i.to_string()]).await;
        }
        let b = fast(&conn, &queue).with_side(side);
        b.maintain().await.unwrap();
        // One item parked in the staging list by a blocking move, as when the queue was empty.
        let from = if push == "LPUSH" { "RIGHT" } else { "LEFT" };
        let _: Vec<u8> = cmd(
            &conn,
            &[
                "LMOVE",
                &queue,
                &b.keys().staging(b.consumer()),
                from,
                "LEFT",
            ],
        )
        .await;
        let got: Vec<String> = b
            .fetch(3)
            .await
            .unwrap()
            .into_iter()
            .chain(b.fetch(3).await.unwrap())
            .map(|d| String::from_utf8_lossy(d.message.body()).into_owned())
            .collect();
        assert_eq!(got, ["0", "1", "2", "3", "4"], "{push}");
    }
}
