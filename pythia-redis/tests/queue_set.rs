//! Many queues in one worker (`pythia_core::queues::QueueSet`) against a real redis-server:
//! strict and weighted priority over lists, reliable lists and streams, and nothing lost when a
//! worker stops mid-run.

use pythia_test_support as support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pythia_core::queues::{BoxedBroker, QueueSet};
use pythia_core::{Broker, Message, WorkerError, WorkerRuntime, worker_fn};
use pythia_redis::{
    GroupStart, ListBroker, ListProducer, RedisConfig, RedisConnection, ReliableListBroker,
    ShardedQueue, ShardedStreamBroker, StreamBroker, StreamProducer,
};
use support::{RedisServer, burst, cmd};

async fn fill_list(conn: &RedisConnection, queue: &str, n: usize) {
    let msgs: Vec<Message> = (0..n)
        .map(|i| Message::new(format!("{queue} {i}")))
        .collect();
    ListProducer::new(conn, queue)
        .push_many(&msgs)
        .await
        .unwrap();
}

/// Runs `set` in burst mode, one message at a time, and returns the queue of each in the order
/// handled.
async fn handled_order<B: Broker>(set: QueueSet<B>) -> Vec<String>
where
    B::Token: Clone,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let run = burst(
        set,
        worker_fn(move |msg: Message| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push(msg.source().name().to_owned());
                Ok(())
            }
        }),
    )
    .with_concurrency(1)
    .with_batch_size(5)
    .run();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run ends")
        .unwrap();
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn strict_lists_drain_critical_then_default_then_low() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    // Written low first, so that arrival order cannot explain the result.
    for q in ["low", "default", "critical"] {
        fill_list(&conn, q, 40).await;
    }
    let set = QueueSet::strict(["critical", "default", "low"].map(|q| ListBroker::new(&conn, q)))
        .unwrap();
    let order = handled_order(set).await;
    assert_eq!(order.len(), 120);
    assert!(order[..40].iter().all(|q| q == "critical"), "{order:?}");
    assert!(order[40..80].iter().all(|q| q == "default"), "{order:?}");
    assert!(order[80..].iter().all(|q| q == "low"), "{order:?}");
    for q in ["critical", "default", "low"] {
        assert_eq!(cmd::<i64>(&conn, &["LLEN", q]).await, 0);
    }
}

#[tokio::test]
async fn weighted_reliable_lists_split_close_to_6_3_1() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let names = ["critical", "default", "low"];
    for q in names {
        fill_list(&conn, q, 2_000).await;
    }
    let set = QueueSet::weighted([
        (ReliableListBroker::new(&conn, "critical"), 6),
        (ReliableListBroker::new(&conn, "default"), 3),
        (ReliableListBroker::new(&conn, "low"), 1),
    ])
    .unwrap();
    let fetches = 1_500;
    let mut per_queue = [0usize; 3];
    for _ in 0..fetches {
        for d in set.fetch(1).await.unwrap() {
            per_queue[d.token.queue] += 1;
        }
    }
    let total: usize = per_queue.iter().sum();
    assert_eq!(total, fetches);
    // 1,500 draws: a share's standard deviation is under 0.013; 0.05 is about four.
    for (n, want) in per_queue.iter().zip([0.6, 0.3, 0.1]) {
        let share = *n as f64 / total as f64;
        assert!((share - want).abs() < 0.05, "split {per_queue:?}");
    }
}

#[tokio::test]
async fn a_stream_and_a_list_mix_through_boxed_brokers() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    fill_list(&conn, "bulk", 10).await;
    let msgs: Vec<Message> = (0..10)
        .map(|i| Message::new(format!("event {i}")))
        .collect();
    StreamProducer::new(&conn, "events")
        .add_many(&msgs)
        .await
        .unwrap();
    let set = QueueSet::strict([
        BoxedBroker::new(
            StreamBroker::new(&conn, "events", "workers").with_start(GroupStart::Beginning),
        ),
        BoxedBroker::new(ListBroker::new(&conn, "bulk")),
    ])
    .unwrap();
    let order = handled_order(set).await;
    assert_eq!(order.len(), 20);
    assert!(order[..10].iter().all(|q| q == "events"), "{order:?}");
    assert!(order[10..].iter().all(|q| q == "bulk"), "{order:?}");
    let pending: redis::Value = cmd(&conn, &["XPENDING", "events", "workers"]).await;
    let redis::Value::Array(parts) = pending else {
        panic!("XPENDING reply {pending:?}")
    };
    assert_eq!(parts[0], redis::Value::Int(0), "every event acked");
}

#[tokio::test]
async fn try_fetch_of_every_broker_kind_returns_at_once_when_empty() {
    let server = RedisServer::start();
    let config: RedisConfig = server.config().with_block_timeout(Duration::from_secs(3));
    let conn = RedisConnection::connect(config).await.unwrap();
    let sharded = ShardedQueue::new("sharded", 2).unwrap();
    let brokers = [
        BoxedBroker::new(ListBroker::new(&conn, "list")),
        BoxedBroker::new(ReliableListBroker::new(&conn, "reliable")),
        BoxedBroker::new(StreamBroker::new(&conn, "stream", "g")),
        BoxedBroker::new(ShardedStreamBroker::new(&conn, &sharded, "g")),
    ];
    for b in &brokers {
        // First call may create groups or register the consumer; time the second.
        b.try_fetch(10).await.unwrap();
        let started = Instant::now();
        assert!(b.try_fetch(10).await.unwrap().is_empty());
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1_000),
            "{:?} waited {took:?} (block timeout 3 s)",
            b.source()
        );
    }
    // And a set of them all, empty, waits its idle poll only.
    let set = QueueSet::strict(brokers)
        .unwrap()
        .with_idle_poll(Duration::from_millis(50));
    let started = Instant::now();
    assert!(set.fetch(10).await.unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_millis(1_000));
    ListProducer::new(&conn, "reliable")
        .push(&Message::new("late"))
        .await
        .unwrap();
    let got = set.fetch(10).await.unwrap();
    assert_eq!(
        got.len(),
        1,
        "the fourth queue's message, past three empty ones"
    );
    assert_eq!(got[0].message.source().name(), "reliable");
}

#[tokio::test]
async fn nothing_is_lost_when_a_worker_stops_mid_run() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let names = ["critical", "default", "low"];
    for q in names {
        fill_list(&conn, q, 100).await;
    }
    let set = || {
        QueueSet::weighted([
            (ReliableListBroker::new(&conn, "critical"), 6),
            (ReliableListBroker::new(&conn, "default"), 3),
            (ReliableListBroker::new(&conn, "low"), 1),
        ])
        .unwrap()
    };
    let done = Arc::new(Mutex::new(Vec::<String>::new()));
    let worker = |done: Arc<Mutex<Vec<String>>>| {
        worker_fn(move |msg: Message| {
            let done = Arc::clone(&done);
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                done.lock()
                    .unwrap()
                    .push(msg.body_str().unwrap().to_owned());
                Ok::<(), WorkerError>(())
            }
        })
    };

    // First worker: stopped with messages in its hands and in its prefetch.
    let first = WorkerRuntime::new(set(), worker(Arc::clone(&done)))
        .with_concurrency(8)
        .with_prefetch(8)
        .with_shutdown_grace(Duration::from_millis(1))
        .with_signal_handling(false);
    let stop = first.cancellation_token();
    let run = tokio::spawn(first.run());
    while done.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    let summary = run.await.unwrap().unwrap();
    assert!(summary.released > 0, "{summary:?}");

    // Second worker: drains the rest.
    let second = burst(set(), worker(Arc::clone(&done)))
        .with_concurrency(8)
        .run();
    tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second run ends")
        .unwrap();

    let handled: HashSet<String> = done.lock().unwrap().iter().cloned().collect();
    for q in names {
        for i in 0..100 {
            assert!(handled.contains(&format!("{q} {i}")), "{q} {i} lost");
        }
        assert_eq!(cmd::<i64>(&conn, &["LLEN", q]).await, 0);
    }
}
