//! The brokers through Redis Sentinel (a master, a replica, three sentinels on loopback): every
//! broker finds the master by name, and a stream worker follows a hard failover (the master
//! SIGKILLed, the replica promoted by the sentinels' vote) without losing an entry.

use pythia_test_support as support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pythia_core::{Broker, BrokerErrorKind, Message, WorkerRuntime, worker_fn};
use pythia_redis::{
    GroupStart, ListBroker, ListProducer, PubSubBroker, Publisher, RedisConfig, RedisConnection,
    ReliableListBroker, StreamBroker, StreamProducer,
};
use support::sentinel::SentinelSetup;
use support::{burst, eventually};

fn config(topo: &SentinelSetup) -> RedisConfig {
    RedisConfig::from_url(&topo.sentinel_urls())
        .unwrap()
        .with_sentinel_master(topo.master_name())
        .with_block_timeout(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_secs(1))
}

fn bodies(n: usize) -> Vec<Message> {
    (0..n).map(|i| Message::new(format!("{i}"))).collect()
}

/// Collects the bodies a worker processed.
fn collector() -> (Arc<Mutex<Vec<String>>>, impl pythia_core::Worker) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let w = worker_fn(move |m: Message| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(m.body_str().unwrap().to_owned());
            Ok(())
        }
    });
    (seen, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broker_finds_the_master_through_the_sentinels() {
    let topo = SentinelSetup::start().await;
    let conn = RedisConnection::connect(config(&topo)).await.unwrap();
    assert!(!conn.is_cluster());

    for (name, reliable) in [("plain", false), ("reliable", true)] {
        ListProducer::new(&conn, name)
            .push_many(&bodies(200))
            .await
            .unwrap();
        let (seen, w) = collector();
        let acked = if reliable {
            burst(ReliableListBroker::new(&conn, name), w)
                .run()
                .await
                .unwrap()
                .acked
        } else {
            burst(ListBroker::new(&conn, name), w)
                .run()
                .await
                .unwrap()
                .acked
        };
        assert_eq!(acked, 200, "{name}");
        assert_eq!(seen.lock().unwrap().len(), 200);
    }
    // The data is on the master the sentinels name, not just anywhere.
    let master = topo.master().connect().await;
    let _: () = support::cmd(&master, &["SET", "written-on", "master"]).await;
    let via_sentinel: String = support::cmd(&conn, &["GET", "written-on"]).await;
    assert_eq!(via_sentinel, "master");

    StreamProducer::new(&conn, "events")
        .add_many(&bodies(100))
        .await
        .unwrap();
    let (seen, w) = collector();
    let s = burst(
        StreamBroker::new(&conn, "events", "g").with_start(GroupStart::Beginning),
        w,
    )
    .run()
    .await
    .unwrap();
    assert_eq!(s.acked, 100);
    assert_eq!(seen.lock().unwrap().len(), 100);

    let sub = PubSubBroker::builder(&conn)
        .channel("news")
        .subscribe()
        .await
        .unwrap();
    let publisher = Publisher::new(&conn, "news");
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            publisher.publish(&Message::new("hello")).await.unwrap();
            let got = sub.fetch(10).await.unwrap();
            if !got.is_empty() {
                break got;
            }
        }
    })
    .await
    .expect("a published message arrives");
    assert_eq!(got[0].message.body().as_ref(), b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_name_or_no_sentinel_is_a_clear_error() {
    let topo = SentinelSetup::start().await;
    let wrong = config(&topo).with_sentinel_master("no-such-master");
    let e = RedisConnection::connect(wrong).await.unwrap_err();
    assert_eq!(e.kind(), BrokerErrorKind::Connection);
    assert!(e.to_string().contains("no-such-master"), "{e}");

    let nobody = RedisConfig::from_url("redis://127.0.0.1:1,redis://127.0.0.1:2")
        .unwrap()
        .with_sentinel_master("m")
        .with_connect_timeout(Duration::from_millis(300));
    let e = RedisConnection::connect(nobody).await.unwrap_err();
    assert_eq!(e.kind(), BrokerErrorKind::Connection, "{e}");
}

/// A hard failover: the master is SIGKILLed; the sentinels find it down, vote, and promote
/// the replica. The stream worker keeps its place in the group and processes every entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_worker_follows_a_master_killed_under_sentinel() {
    let mut topo = SentinelSetup::start().await;
    let conn = RedisConnection::connect(config(&topo)).await.unwrap();
    const N: usize = 5000;
    let producer = StreamProducer::new(&conn, "orders");
    for chunk in bodies(N).chunks(1000) {
        producer.add_many(chunk).await.unwrap();
    }
    let _: i64 = support::cmd(&conn, &["WAIT", "1", "5000"]).await;

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s, t) = (seen.clone(), total.clone());
    let w = worker_fn(move |m: Message| {
        let (s, t) = (s.clone(), t.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            s.lock().unwrap().insert(m.body_str().unwrap().to_owned());
            t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    });
    let rt = WorkerRuntime::new(
        StreamBroker::new(&conn, "orders", "g")
            .with_start(GroupStart::Beginning)
            .with_maintenance_interval(Duration::from_millis(200)),
        w,
    )
    .with_signal_handling(false)
    .with_concurrency(8)
    .with_batch_size(8);
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(20), "1000 processed", || async {
        seen.lock().unwrap().len() >= 1000
    })
    .await;
    let killed = Instant::now();
    let promoted = topo.kill_master().await;
    eventually(
        Duration::from_secs(60),
        "every entry processed after the failover",
        || async { seen.lock().unwrap().len() == N },
    )
    .await;
    let recovered = killed.elapsed();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
    let total = total.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "sentinel SIGKILL failover: promotion {promoted:?}, all {N} entries processed \
         {recovered:?} after the kill, 0 lost, {} processed twice",
        total - N
    );
}
