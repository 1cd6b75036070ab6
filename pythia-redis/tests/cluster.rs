//! Every broker on a real Redis Cluster (three masters, a replica each, on loopback): round
//! trips on queues whose slots are on different masters, reclaim of a dead consumer's work,
//! retries and dead letters, delayed messages and dead-letter replay, no CROSSSLOT error
//! anywhere; and a worker that keeps going while the master of its queue is killed.

use pythia_test_support as support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pythia_core::{Broker, Message, RetryPolicy, Worker, WorkerError, WorkerRuntime, worker_fn};
use pythia_redis::{
    DeadLetterQueue, DelayedProducer, Destination, GroupStart, ListBroker, ListProducer, Lock,
    PeriodicJob, PeriodicScheduler, RedisConnection, ReliableListBroker, Schedule, StreamBroker,
    StreamProducer,
};
use support::chaos::count_in_hash;
use support::cluster::RedisCluster;
use support::{burst, cmd, eventually, season};

/// Counts each processed body in the hash `processed:<queue>` (its own slot: the worker's
/// writes go to another node than the queue's, as a real handler's would).
#[derive(Clone)]
struct Record {
    conn: RedisConnection,
    key: String,
}

impl Worker for Record {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        count_in_hash(&self.conn, &self.key, msg.body_str().unwrap_or("?")).await?;
        Ok(())
    }
}

fn bodies(prefix: &str, n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message::new(format!("{prefix}{i}")))
        .collect()
}

async fn exactly_once(conn: &RedisConnection, key: &str, n: usize, prefix: &str) {
    let processed: HashMap<String, i64> = cmd(conn, &["HGETALL", key]).await;
    let missing = (0..n)
        .filter(|i| !processed.contains_key(&format!("{prefix}{i}")))
        .count();
    let dups: i64 = processed.values().map(|c| c - 1).sum();
    assert_eq!((missing, dups), (0, 0), "{key}: missing, duplicated");
}

/// Runs `broker` in burst mode on the messages "ok", "flaky" (fails its first attempt) and
/// "poison" (rejected): 2 acked, 1 retried, 1 dead-lettered.
async fn ok_flaky_poison<B: Broker>(broker: B) {
    let w = worker_fn(|m: Message| async move {
        match (m.body_str().unwrap(), m.attempt()) {
            ("flaky", 1) => Err(WorkerError::retry("try again")),
            ("poison", _) => Err(WorkerError::reject("cannot parse")),
            _ => Ok(()),
        }
    });
    let s = burst(broker, w)
        .with_retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(50)))
        .run()
        .await
        .unwrap();
    assert_eq!((s.acked, s.retried, s.dead_lettered), (2, 1, 1));
}

async fn no_state_left(conn: &RedisConnection, queue: &str) {
    let keys: Vec<String> = cmd(conn, &["KEYS", &format!("pythia:{{{queue}}}:*")]).await;
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_reliable_list_brokers_on_a_cluster() {
    let cluster = RedisCluster::start();
    let conn = cluster.connect().await;
    assert!(conn.is_cluster());
    let queues = cluster.names_on_different_masters("jobs", 3);

    // Round trips, one queue per master, both list brokers.
    for q in &queues {
        ListProducer::new(&conn, q)
            .push_many(&bodies("m", 500))
            .await
            .unwrap();
        let s = burst(
            ReliableListBroker::new(&conn, q),
            Record {
                conn: conn.clone(),
                key: format!("processed:{q}"),
            },
        )
        .with_concurrency(32)
        .run()
        .await
        .unwrap();
        assert_eq!(s.acked, 500);
        exactly_once(&conn, &format!("processed:{q}"), 500, "m").await;
        no_state_left(&conn, q).await;

        ListProducer::new(&conn, q)
            .push_many(&bodies("l", 300))
            .await
            .unwrap();
        let s = burst(
            ListBroker::new(&conn, q),
            Record {
                conn: conn.clone(),
                key: format!("processed-list:{q}"),
            },
        )
        .run()
        .await
        .unwrap();
        assert_eq!(s.acked, 300);
        exactly_once(&conn, &format!("processed-list:{q}"), 300, "l").await;
    }

    // Reclaim: a consumer takes a batch and dies (its heartbeat expires); another one reaps
    // the batch back onto the queue and processes it.
    let q = &queues[0];
    ListProducer::new(&conn, q)
        .push_many(&bodies("r", 20))
        .await
        .unwrap();
    let dead = ReliableListBroker::new(&conn, q).with_heartbeat_ttl(Duration::from_millis(300));
    assert_eq!(dead.fetch(20).await.unwrap().len(), 20);
    let _: i64 = cmd(&conn, &["DEL", &dead.keys().heartbeat(dead.consumer())]).await;
    let reaper = ReliableListBroker::new(&conn, q)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(300));
    season(Duration::from_millis(300), || reaper.maintain()).await; // reaps on the way
    reaper.reap_dead_consumers().await.unwrap();
    let back: i64 = cmd(&conn, &["LLEN", q]).await;
    assert_eq!(back, 20, "returned to the queue");
    let s = burst(
        reaper,
        Record {
            conn: conn.clone(),
            key: "reclaimed".into(),
        },
    )
    .run()
    .await
    .unwrap();
    assert_eq!(s.acked, 20);
    exactly_once(&conn, "reclaimed", 20, "r").await;

    // Retries and dead letters, then a replay of the dead letters.
    let q = &queues[1];
    ListProducer::new(&conn, q)
        .push_many(&["ok", "flaky", "poison"].map(Message::new))
        .await
        .unwrap();
    let broker =
        ReliableListBroker::new(&conn, q).with_maintenance_interval(Duration::from_millis(50));
    ok_flaky_poison(broker).await;
    let dlq = DeadLetterQueue::list(&conn, q);
    let letters = dlq.oldest(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message.body().as_ref(), b"poison");
    assert_eq!(dlq.replay_all().await.unwrap().replayed, 1);
    let len: i64 = cmd(&conn, &["LLEN", q]).await;
    assert_eq!(len, 1, "the dead letter is back on its queue");

    // Delayed messages are promoted onto their queue.
    let q = &queues[2];
    let delayed = DelayedProducer::list(&conn, q);
    delayed
        .schedule_in(&Message::new("later"), Duration::from_millis(200))
        .await
        .unwrap();
    let broker =
        ReliableListBroker::new(&conn, q).with_maintenance_interval(Duration::from_millis(50));
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            broker.maintain().await.unwrap();
            let got = broker.fetch(1).await.unwrap();
            if !got.is_empty() {
                break got;
            }
        }
    })
    .await
    .expect("the delayed message arrives");
    assert_eq!(got[0].message.body().as_ref(), b"later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_broker_on_a_cluster() {
    let cluster = RedisCluster::start();
    let conn = cluster.connect().await;
    let streams = cluster.names_on_different_masters("events", 3);

    for s in &streams {
        let producer = StreamProducer::new(&conn, s);
        for m in bodies("e", 400).chunks(100) {
            producer.add_many(m).await.unwrap();
        }
        // Two consumers of one group split the entries, nothing twice.
        let run = |name: &str| {
            burst(
                StreamBroker::new(&conn, s, "g").with_start(GroupStart::Beginning),
                Record {
                    conn: conn.clone(),
                    key: format!("processed:{s}:{name}"),
                },
            )
            .run()
        };
        let (a, b) = tokio::join!(run("a"), run("b"));
        assert_eq!(a.unwrap().acked + b.unwrap().acked, 400);
        let mut seen: HashMap<String, i64> =
            cmd(&conn, &["HGETALL", &format!("processed:{s}:a")]).await;
        let other: HashMap<String, i64> =
            cmd(&conn, &["HGETALL", &format!("processed:{s}:b")]).await;
        for (k, v) in other {
            *seen.entry(k).or_default() += v;
        }
        assert_eq!(seen.len(), 400);
        assert!(seen.values().all(|&c| c == 1), "no entry twice");
    }

    // Reclaim: a consumer reads and dies; another claims its entries.
    let s = &streams[0];
    StreamProducer::new(&conn, s)
        .add_many(&bodies("c", 10))
        .await
        .unwrap();
    let dead = StreamBroker::new(&conn, s, "g")
        .with_start(GroupStart::Beginning)
        .with_heartbeat_ttl(Duration::from_millis(300));
    assert_eq!(dead.fetch(10).await.unwrap().len(), 10);
    let _: i64 = cmd(&conn, &["DEL", &dead.keys().heartbeat(dead.consumer())]).await;
    let claimer = StreamBroker::new(&conn, s, "g")
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(300));
    season(Duration::from_millis(300), || claimer.maintain()).await; // claims on the way
    claimer.reclaim_dead_consumers().await.unwrap();
    let run = burst(
        claimer,
        Record {
            conn: conn.clone(),
            key: "claimed".into(),
        },
    )
    .run()
    .await
    .unwrap();
    assert_eq!(run.acked, 10);
    exactly_once(&conn, "claimed", 10, "c").await;

    // Retries and the dead-letter stream.
    let s = &streams[1];
    StreamProducer::new(&conn, s)
        .add_many(&["ok", "flaky", "poison"].map(Message::new))
        .await
        .unwrap();
    let broker = StreamBroker::new(&conn, s, "g")
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(Duration::from_millis(50));
    ok_flaky_poison(broker).await;
    let dlq = DeadLetterQueue::stream(&conn, s);
    let letters = dlq.oldest(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message.body().as_ref(), b"poison");
}

/// The coordination features (locks, periodic jobs, the list broker's retries and dead
/// letters) keep each job's keys in its queue's slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordination_and_list_retries_on_a_cluster() {
    let cluster = RedisCluster::start();
    let conn = cluster.connect().await;
    let queues = cluster.names_on_different_masters("coord", 2);

    let lock = Lock::new(&conn, "nightly-report");
    let guard = lock
        .try_acquire(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free");
    assert!(
        lock.try_acquire(Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    assert!(guard.release().await.unwrap());

    let scheduler = PeriodicScheduler::new(&conn, "cron").with_job(PeriodicJob::new(
        "tick",
        Schedule::every(Duration::from_millis(100)),
        Destination::list(&queues[0]),
    ));
    // A new job starts now; two periods later it has fired twice or more.
    assert_eq!(scheduler.fire_due().await.unwrap().fired, 0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let fired = scheduler.fire_due().await.unwrap().fired;
    assert!(fired >= 2, "fired {fired}");
    let len: i64 = cmd(&conn, &["LLEN", &queues[0]]).await;
    assert_eq!(len as u64, fired);

    // The at-most-once list broker's own retries and dead letters.
    let q = &queues[1];
    ListProducer::new(&conn, q)
        .push_many(&["ok", "flaky", "poison"].map(Message::new))
        .await
        .unwrap();
    let broker = ListBroker::new(&conn, q).with_maintenance_interval(Duration::from_millis(50));
    ok_flaky_poison(broker).await;
    assert_eq!(DeadLetterQueue::list(&conn, q).len().await.unwrap(), 1);
}

/// A worker drains a reliable list while the master of the queue's slot is SIGKILLed and its
/// replica promoted: it keeps going on the new master and nothing acknowledged is lost.
/// (Writes made on the old master in its last moments may not have reached the replica: Redis
/// replication is asynchronous. Messages were produced well before the kill; a lost move or
/// ack only means a message is delivered again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_going_through_a_cluster_failover() {
    let mut cluster = RedisCluster::start();
    let conn = cluster.connect().await;
    let q = "failover-jobs";
    const N: usize = 3000;
    ListProducer::new(&conn, q)
        .push_many(&bodies("f", N))
        .await
        .unwrap();
    // Let the replica catch up (asynchronous replication, sub-millisecond on loopback).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let done = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let (d, sn) = (done.clone(), seen.clone());
    let w = worker_fn(move |m: Message| {
        let (d, sn) = (d.clone(), sn.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            sn.lock().unwrap().insert(m.body_str().unwrap().to_owned());
            d.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let worker_conn = cluster.connect().await;
    let broker = ReliableListBroker::new(&worker_conn, q)
        .with_maintenance_interval(Duration::from_millis(200))
        .with_heartbeat_ttl(Duration::from_secs(3));
    let worker = tokio::spawn(
        WorkerRuntime::new(broker, w)
            .with_signal_handling(false)
            .with_concurrency(16)
            .with_batch_size(16)
            .run(),
    );
    eventually(Duration::from_secs(10), "the worker to start", || async {
        done.load(Ordering::SeqCst) > 200
    })
    .await;
    let before = done.load(Ordering::SeqCst);
    let killed_at = Instant::now();
    let healed = cluster.kill_master_for_key(q);
    eventually(
        Duration::from_secs(30),
        "the worker to process again after the failover",
        || async { done.load(Ordering::SeqCst) > before + 100 },
    )
    .await;
    let resumed = killed_at.elapsed();
    eventually(
        Duration::from_secs(60),
        "every message processed",
        || async { seen.lock().unwrap().len() == N },
    )
    .await;
    let total = done.load(Ordering::SeqCst);
    eprintln!(
        "cluster failover: promotion took {healed:?}, the worker processed again {resumed:?} \
         after the kill; \
         {N} messages, 0 lost, {} processed twice",
        total as usize - N
    );
    worker.abort();
}
