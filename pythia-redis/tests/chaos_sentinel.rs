//! Chaos, topology: a Redis Sentinel failover on loopback (a master, a replica and three
//! sentinels, all started here) while a worker runs.
//!
//! ```sh
//! cargo test -p pythia-redis --test chaos_sentinel -- --nocapture
//! ```
//!
//! Two workers: one pointed straight at the master's address (no Sentinel in between), which
//! is told `READONLY` once the master is demoted, reports not ready and loses nothing; and one
//! connected through the sentinels (`RedisConfig::with_sentinel_master`), which follows the
//! failover to the new master and processes every message. `tests/sentinel.rs` has the hard
//! failover (the master SIGKILLed) under a stream worker.

use pythia_test_support as support;
use pythia_test_support::chaos;

use std::time::{Duration, Instant};

use chaos::{Tally, query, report, within};
use pythia_core::{Message, WorkerRuntime};
use pythia_redis::{ListProducer, RedisConfig, RedisConnection, ReliableListBroker};
use support::eventually;
use support::sentinel::SentinelSetup;

/// A failover promotes the replica with every acknowledged message, and a worker connected
/// straight to the old master's address (not through the sentinels) is refused (`READONLY`)
/// once it is demoted, reports not ready, and loses nothing: the messages are on the new
/// master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_promotes_the_replica_with_the_data() {
    let topo = SentinelSetup::start().await;
    assert_eq!(
        topo.sentinels()[0].master_port().await,
        Some(topo.master().port())
    );
    let conn = topo.master().connect().await;
    let msgs: Vec<Message> = (0..1000).map(|i| Message::new(format!("{i}"))).collect();
    ListProducer::new(&conn, "jobs")
        .push_many(&msgs)
        .await
        .unwrap();
    // Replicated before the failover (WAIT for one replica), as a durable setup would require.
    let acked: i64 = query(&conn, &["WAIT", "1", "5000"]).await;
    assert_eq!(acked, 1);

    // A worker on the master's own address (no Sentinel in between), on an empty queue.
    let tally = Tally::with_delay(Duration::from_millis(1));
    let rt = WorkerRuntime::new(
        ReliableListBroker::new(&conn, "other-queue")
            .with_maintenance_interval(Duration::from_millis(100)),
        tally.clone(),
    )
    .with_signal_handling(false)
    .with_stats_interval(None);
    let status = rt.status();
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "the worker ready", || async {
        status.is_ready(Duration::from_secs(60))
    })
    .await;

    let took = topo.failover().await;
    let new_master = topo.replica().connect().await;
    let role: Vec<redis::Value> = query(&new_master, &["ROLE"]).await;
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec()))
    );
    let len: i64 = query(&new_master, &["LLEN", "jobs"]).await;
    assert_eq!(len, 1000, "every acknowledged message is on the new master");

    // The old master is demoted to a replica: the worker's writes are refused (READONLY),
    // which it reports as not ready rather than failing silently.
    eventually(
        Duration::from_secs(30),
        "the worker on the demoted master to report not ready",
        || async { !status.is_ready(Duration::from_secs(60)) },
    )
    .await;
    assert!(!run.is_finished(), "the worker keeps retrying");
    stop.cancel();
    within(30, "the worker", run).await.unwrap().unwrap();
    report(
        "sentinel-failover",
        "harness",
        1000,
        0,
        0,
        Some(took),
        "master+replica+3 sentinels; a worker on the old master's address: not ready after demotion",
    );
}

/// A worker connected through the sentinels keeps consuming across a failover, and nothing
/// acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_follows_a_sentinel_failover() {
    let topo = SentinelSetup::start().await;
    let config = RedisConfig::from_url(&topo.sentinel_urls())
        .expect("the sentinels' URLs")
        .with_sentinel_master(topo.master_name())
        .with_block_timeout(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_secs(1));
    let conn = RedisConnection::connect(config).await.unwrap();
    let msgs: Vec<Message> = (0..20_000).map(|i| Message::new(format!("{i}"))).collect();
    ListProducer::new(&conn, "jobs")
        .push_many(&msgs)
        .await
        .unwrap();
    let _: i64 = query(&conn, &["WAIT", "1", "5000"]).await;
    let tally = Tally::with_delay(Duration::from_millis(1));
    let rt = WorkerRuntime::new(
        ReliableListBroker::new(&conn, "jobs")
            .with_maintenance_interval(Duration::from_millis(100))
            .with_heartbeat_ttl(Duration::from_millis(600)),
        tally.clone(),
    )
    .with_signal_handling(false)
    .with_stats_interval(None);
    let status = rt.status();
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    eventually(Duration::from_secs(20), "5000 processed", || async {
        tally.distinct() >= 5000
    })
    .await;
    let failed_over = Instant::now();
    topo.failover().await;
    eventually(
        Duration::from_secs(30),
        "every message processed after the failover",
        || async { tally.distinct() == msgs.len() },
    )
    .await;
    let recovery = failed_over.elapsed();
    assert!(status.is_ready(Duration::from_secs(60)));
    stop.cancel();
    within(30, "the worker", run).await.unwrap().unwrap();
    let ids: Vec<String> = msgs.iter().map(|m| m.id().to_owned()).collect();
    let (lost, duplicated) = chaos::lost_and_duplicated(&ids, &tally.counts());
    report(
        "sentinel-failover",
        "reliable",
        ids.len(),
        lost,
        duplicated,
        Some(recovery),
        "",
    );
    assert_eq!(lost, 0);
}
