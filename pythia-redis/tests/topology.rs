//! The topology harnesses themselves (`support::cluster`, `support::sentinel`), checked with
//! the raw `redis` crate's cluster and sentinel clients: a cluster serves keys in every slot
//! range, a replica promoted after its master is killed or failed over has the data, and the
//! sentinels resolve the new master. Timings are printed as `TOPOLOGY …` lines.
//!
//! ```sh
//! cargo test -p pythia-redis --test topology -- --nocapture
//! ```

use pythia_test_support as support;

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::cluster::ClusterClient;
use redis::sentinel::{SentinelClient, SentinelServerType};
use support::cluster::RedisCluster;
use support::sentinel::SentinelSetup;

fn timing(what: &str, took: Duration) {
    eprintln!("TOPOLOGY {what} {:.2}s", took.as_secs_f64());
}

/// A cluster client that knows the cluster through `seeds` (comma-separated URLs).
async fn cluster_connection(seeds: &str) -> redis::cluster_async::ClusterConnection {
    ClusterClient::builder(seeds.split(','))
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(5))
        .build()
        .expect("a cluster client")
        .get_async_connection()
        .await
        .expect("a cluster connection")
}

/// Writes `key` through the cluster and waits for one replica to acknowledge it.
async fn write_replicated(conn: &mut redis::cluster_async::ClusterConnection, key: &str) {
    let () = conn.set(key, format!("value of {key}")).await.unwrap();
    // The cluster client sends WAIT to every master and keeps the smallest count; the
    // connection to this key's master is the one that wrote it.
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(1000)
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(acked, 1, "{key} reached a replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_keys_in_every_slot_range() {
    let t = Instant::now();
    let cluster = RedisCluster::start();
    timing("cluster-start", t.elapsed());
    assert_eq!(cluster.ports().len(), 6);
    assert_eq!(cluster.master_ports().len(), 3);
    assert_eq!(cluster.seed_urls().split(',').count(), 3);

    let mut conn = cluster_connection(&cluster.seed_urls()).await;
    let keys: Vec<String> = (0..1000).map(|i| format!("key:{i}")).collect();
    for k in &keys {
        let () = conn.set(k, format!("value of {k}")).await.unwrap();
    }
    for k in &keys {
        let v: String = conn.get(k).await.unwrap();
        assert_eq!(v, format!("value of {k}"));
    }
    // The keys really are spread over the three masters, which agree with the harness on
    // who owns what.
    let mut total = 0;
    for port in cluster.master_ports() {
        let c = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut c = c.get_multiplexed_async_connection().await.unwrap();
        let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
        assert!(n > 0, "master {port} holds some of the keys");
        total += n;
    }
    assert_eq!(total, 1000);
    for k in keys.iter().step_by(97) {
        let port = cluster.master_port_for_key(k);
        let c = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut c = c.get_multiplexed_async_connection().await.unwrap();
        let exists: bool = c.exists(k).await.unwrap();
        assert!(exists, "{k} is on {port}, the master the harness names");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cluster_master_is_replaced_by_its_replica_with_the_data() {
    let t = Instant::now();
    let mut cluster = RedisCluster::start();
    timing("cluster-start", t.elapsed());
    let key = "failover-key";
    let mut conn = cluster_connection(&cluster.seed_urls()).await;
    write_replicated(&mut conn, key).await;
    drop(conn);

    let old = cluster.master_port_for_key(key);
    let took = cluster.kill_master_for_key(key);
    timing("cluster-kill-master-to-promotion", took);
    let new = cluster.master_port_for_key(key);
    assert_ne!(new, old, "the slot moved to the replica");
    assert!(!cluster.master_ports().contains(&old));
    assert_eq!(cluster.master_ports().len(), 3);

    let mut conn = cluster_connection(&cluster.seed_urls()).await;
    let v: String = conn.get(key).await.unwrap();
    assert_eq!(v, format!("value of {key}"));
    // And the promoted master takes writes.
    let () = conn.set(key, "after").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_swaps_master_and_replica_with_the_data() {
    let t = Instant::now();
    let cluster = RedisCluster::start();
    timing("cluster-start", t.elapsed());
    let key = "graceful-key";
    let mut conn = cluster_connection(&cluster.seed_urls()).await;
    write_replicated(&mut conn, key).await;

    let old = cluster.master_port_for_key(key);
    let took = cluster.failover_for_key(key);
    timing("cluster-graceful-failover", took);
    let new = cluster.master_port_for_key(key);
    assert_ne!(new, old, "the slot moved to the replica");
    assert_eq!(cluster.master_ports().len(), 3);

    // The client that wrote before follows the MOVED redirection; a fresh one finds it too.
    let v: String = conn.get(key).await.unwrap();
    assert_eq!(v, format!("value of {key}"));
    let mut fresh = cluster_connection(&cluster.seed_urls()).await;
    let v: String = fresh.get(key).await.unwrap();
    assert_eq!(v, format!("value of {key}"));
    // The former master replicates the new one: the new master's writes reach it.
    write_replicated(&mut fresh, key).await;
}

/// The port of the master the sentinels name, through the redis crate's `SentinelClient`.
async fn resolved_master(
    sentinel: &mut SentinelClient,
) -> (u16, redis::aio::MultiplexedConnection) {
    let client = sentinel
        .async_get_client()
        .await
        .expect("a master from the sentinels");
    let port = match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(_, port) => *port,
        other => panic!("unexpected address {other:?}"),
    };
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    (port, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinels_resolve_the_promoted_replica_after_the_master_is_killed() {
    let t = Instant::now();
    let mut setup = SentinelSetup::start().await;
    timing("sentinel-start", t.elapsed());
    let urls: Vec<String> = setup
        .sentinel_urls()
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_eq!(urls.len(), 3);
    let mut sentinel = SentinelClient::build(
        urls,
        String::from(setup.master_name()),
        None,
        SentinelServerType::Master,
    )
    .unwrap();

    let (port, mut conn) = resolved_master(&mut sentinel).await;
    assert_eq!(port, setup.master().port());
    let () = conn.set("k", "v").await.unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(1000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, 1);

    let took = setup.kill_master().await;
    timing("sentinel-kill-master-to-promotion", took);
    let (port, mut conn) = resolved_master(&mut sentinel).await;
    assert_eq!(port, setup.replica().port());
    let v: String = conn.get("k").await.unwrap();
    assert_eq!(v, "v");
    let () = conn.set("k", "after").await.unwrap();
}
