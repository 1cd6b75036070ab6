//! Pub/sub on a real Redis Cluster (three masters, a replica each, on loopback): sharded
//! subscriptions (`SSUBSCRIBE`) on channels whose slots are on different masters, `SPUBLISH`
//! receiver counts, patterns refused, the overflow policies, dead letters, a user whose ACL
//! denies `ROLE`; a stalled master noticed by the periodic check; and a subscriber that keeps
//! receiving when the master owning its channel's slot is killed (or hands over by
//! `CLUSTER FAILOVER`), with the gap and the messages lost meanwhile printed.
//!
//! The tests run one at a time: each starts six redis-server processes, and a failover timed
//! on a machine busy with other clusters would measure the machine.

use pythia_test_support as support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pythia_core::{
    Broker, BrokerErrorKind, CancellationToken, Message, WorkerError, WorkerRuntime, worker_fn,
};
use pythia_redis::{
    Encoding, Overflow, PubSubBroker, PubSubBuilder, Publisher, RedisConfig, RedisConnection,
};
use support::cluster::RedisCluster;
use support::collect::Collect;
use support::{Resume, bodies_of, burst_shared, cmd, eventually, fetch_at_least};

static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn subscribe(b: PubSubBuilder) -> Arc<PubSubBroker> {
    let broker = b.subscribe().await.expect("subscribe");
    assert!(broker.is_sharded(), "a cluster broker uses SSUBSCRIBE");
    Arc::new(broker)
}

#[tokio::test]
async fn round_trip_on_channels_of_different_masters_with_receiver_counts() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start();
    let conn = cluster.connect().await;
    let channels = cluster.names_on_different_masters("news", 3);
    let masters: HashSet<u16> = channels
        .iter()
        .map(|c| cluster.master_port_for_key(c))
        .collect();
    assert_eq!(masters.len(), 3, "one channel per master");

    let fans = [
        subscribe(
            PubSubBroker::builder(&conn)
                .channels(&channels)
                .with_name("fan-a"),
        )
        .await,
        subscribe(
            PubSubBroker::builder(&conn)
                .channels(&channels)
                .with_name("fan-b"),
        )
        .await,
    ];
    let rejecting = subscribe(
        PubSubBroker::builder(&conn)
            .channel(&channels[0])
            .with_name("dead-ends"),
    )
    .await;

    let mut sent = HashMap::new();
    for (i, channel) in channels.iter().enumerate() {
        let publisher = Publisher::new(&conn, channel);
        assert!(publisher.is_sharded(), "a cluster publisher uses SPUBLISH");
        let msgs: Vec<Message> = (0..10)
            .map(|j| Message::new(format!("{channel}/{j}")).with_header("n", j.to_string()))
            .collect();
        let counts = publisher.publish_many(&msgs).await.unwrap();
        let want = if i == 0 { 3 } else { 2 };
        assert_eq!(
            counts,
            vec![want; 10],
            "{channel}: every subscriber counted"
        );
        for m in msgs {
            sent.insert(m.body_str().unwrap().to_owned(), m);
        }
    }
    assert_eq!(
        Publisher::new(&conn, "news-nobody")
            .publish(&Message::new("lost"))
            .await
            .unwrap(),
        0,
        "a channel nobody subscribed to"
    );

    for fan in &fans {
        eventually(Duration::from_secs(5), "30 received", || async {
            fan.counters().received == 30
        })
        .await;
        let worker = Collect::default();
        let summary = burst_shared(fan, worker.clone()).run().await.unwrap();
        assert_eq!(summary.acked, 30);
        let seen = worker.seen.lock().unwrap();
        assert_eq!(seen.len(), 30, "every message once");
        for m in seen.iter() {
            let body = m.body_str().unwrap();
            let original = &sent[body];
            assert_eq!(m.id(), original.id(), "the envelope was decoded");
            assert_eq!(m.header("n"), original.header("n"));
            let channel = body.split('/').next().unwrap();
            assert_eq!(m.source().name(), channel);
            assert_eq!(m.source().pattern(), None);
        }
    }

    // Settling on a cluster: the dead-letter push (LPUSH + LTRIM, one slot) works too.
    eventually(Duration::from_secs(5), "10 received", || async {
        rejecting.counters().received == 10
    })
    .await;
    let reject = worker_fn(|_m: Message| async { Err(WorkerError::reject("no")) });
    let summary = burst_shared(&rejecting, reject).run().await.unwrap();
    assert_eq!(summary.dead_lettered, 10);
    let stats = rejecting.stats().await.unwrap().unwrap();
    assert_eq!(stats.dead_letters, 10);

    // The runtimes closed their brokers when done, which unsubscribed them on every node.
    assert!(!fans[0].is_connected() && !rejecting.is_connected());
    let publisher = Publisher::new(&conn, &channels[0]);
    eventually(Duration::from_secs(5), "unsubscribed on close", || async {
        publisher
            .publish(&Message::new("after close"))
            .await
            .unwrap()
            == 0
    })
    .await;
}

#[tokio::test]
async fn patterns_are_refused_on_a_cluster() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start();
    let conn = cluster.connect().await;
    for builder in [
        PubSubBroker::builder(&conn).pattern("orders.*"),
        PubSubBroker::builder(&conn)
            .channel("news")
            .pattern("orders.*"),
    ] {
        let e = builder.subscribe().await.unwrap_err();
        assert_eq!(e.kind(), BrokerErrorKind::Config, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("orders.*") && text.contains("Redis Cluster"),
            "names the pattern and why: {text}"
        );
    }
    let (_, subscribers): (String, i64) = cmd(&conn, &["PUBSUB", "SHARDNUMSUB", "news"]).await;
    assert_eq!(subscribers, 0, "nothing was subscribed");
    let Err(e) = conn.pubsub().await else {
        panic!("a cluster has no classic pub/sub connection");
    };
    assert_eq!(e.kind(), BrokerErrorKind::Config, "{e}");
}

/// `ROLE`, which the subscription's periodic check sends, is an `@admin` command: a user
/// without it (a common `+@all -@dangerous` ACL) still subscribes, receives and publishes.
#[tokio::test]
async fn a_user_without_admin_commands_subscribes_and_publishes() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start();
    for port in cluster.ports() {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut node = client.get_connection().unwrap();
        let () = redis::cmd("ACL")
            .arg(&[
                "SETUSER",
                "app",
                "on",
                ">secret",
                "~*",
                "&*",
                "+@all",
                "-@dangerous",
            ])
            .query(&mut node)
            .unwrap();
    }
    let urls = cluster
        .seed_urls()
        .replace("redis://", "redis://app:secret@");
    let cfg = RedisConfig::from_url(&urls).unwrap().with_cluster();
    let conn = RedisConnection::connect(cfg).await.unwrap();
    let refused: redis::RedisResult<redis::Value> =
        redis::cmd("ROLE").query_async(&mut conn.manager()).await;
    assert_eq!(refused.unwrap_err().code(), Some("NOPERM"), "the ACL bites");

    let broker = subscribe(
        PubSubBroker::builder(&conn)
            .channel("limited")
            .with_ping_interval(Duration::from_millis(50)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (broker.is_connected(), broker.reconnects()),
        (true, 0),
        "the periodic check passes without ROLE"
    );
    let publisher = Publisher::new(&conn, "limited");
    assert_eq!(publisher.publish(&Message::new("hi")).await.unwrap(), 1);
    let got = fetch_at_least(&*broker, 1).await;
    assert_eq!(bodies_of(&got), ["hi"]);
}

/// A master that stops answering (its socket open, nothing read) for less than the cluster's
/// node timeout, so there is no failover: only the periodic check can tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_master_is_noticed_by_the_periodic_check() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start();
    let cfg = RedisConfig::from_url(&cluster.seed_urls())
        .unwrap()
        .with_cluster()
        .with_response_timeout(Duration::from_millis(300));
    let conn = RedisConnection::connect(cfg).await.unwrap();
    let broker = subscribe(
        PubSubBroker::builder(&conn)
            .channel("stall")
            .with_ping_interval(Duration::from_millis(100)),
    )
    .await;
    let port = cluster.master_port_for_key("stall");
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(
            &mut redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("INFO server has process_id")
        .trim()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (broker.is_connected(), broker.reconnects()),
        (true, 0),
        "answered checks keep the subscription"
    );

    let stopped = Resume::stop(&pid);
    eventually(Duration::from_secs(3), "the stall noticed", || async {
        !broker.is_connected()
    })
    .await;
    drop(stopped);
    eventually(Duration::from_secs(10), "subscribed again", || async {
        broker.is_connected()
    })
    .await;
    assert_eq!(broker.reconnects(), 1);
    let publisher = Publisher::new(&conn, "stall").with_encoding(Encoding::Raw);
    let mut counted = 0;
    for _ in 0..50 {
        match publisher.publish(&Message::new("after")).await {
            Ok(n) if n > 0 => {
                counted = n;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(counted, 1, "on the master again, counted by SPUBLISH");
    let got = fetch_at_least(&*broker, 1).await;
    assert_eq!(bodies_of(&got)[0], "after");
}

/// A publisher far faster than the worker (nobody fetches): the buffer keeps `capacity`
/// messages, the right end for each policy, and counts the rest as dropped.
#[tokio::test]
async fn overflow_policies_work_the_same_on_a_cluster() {
    const CAP: usize = 100;
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start();
    let conn = cluster.connect().await;
    let mut brokers = Vec::new();
    for policy in [Overflow::DropOldest, Overflow::DropNewest] {
        brokers.push((
            policy,
            subscribe(
                PubSubBroker::builder(&conn)
                    .channel("overflow")
                    .with_name(policy.as_str())
                    .with_capacity(CAP)
                    .with_overflow(policy),
            )
            .await,
        ));
    }
    let publisher = Publisher::new(&conn, "overflow").with_encoding(Encoding::Raw);
    let msgs: Vec<Message> = (0..5000).map(|i| Message::new(format!("a{i}"))).collect();
    let counts = publisher.publish_many(&msgs).await.unwrap();
    assert!(counts.iter().all(|&n| n == 2));

    for (policy, broker) in &brokers {
        eventually(Duration::from_secs(10), "5,000 received", || async {
            broker.counters().received == 5000
        })
        .await;
        let c = broker.counters();
        assert_eq!(
            (c.buffered, c.peak_held, c.dropped),
            (CAP, CAP, 4900),
            "{policy:?}: {c:?}"
        );
        let survivors = bodies_of(&broker.fetch(1000).await.unwrap());
        let kept = match policy {
            Overflow::DropOldest => 4900..5000,
            _ => 0..100,
        };
        let want: Vec<String> = kept.map(|i| format!("a{i}")).collect();
        assert_eq!(survivors, want, "{policy:?}");
    }
}

/// One channel of a failover test: the sequence numbers published (Redis answered) and
/// received, with when.
#[derive(Default)]
struct Traffic {
    published: Vec<(u64, Instant)>,
    /// Publishes that failed or got no answer within 2 s.
    failed: u64,
    received: Vec<(u64, Instant)>,
}

impl Traffic {
    fn received_one_published_after(&self, at: Instant) -> bool {
        let after: HashSet<u64> = self
            .published
            .iter()
            .filter(|&&(_, t)| t > at)
            .map(|&(s, _)| s)
            .collect();
        self.received.iter().any(|(s, _)| after.contains(s))
    }

    /// The longest silence between two arrivals, as offsets from `from`.
    fn longest_gap(&self, from: Instant) -> (Duration, Duration) {
        self.received
            .windows(2)
            .map(|w| (w[0].1, w[1].1))
            .max_by_key(|(a, b)| *b - *a)
            .map_or((Duration::ZERO, Duration::ZERO), |(a, b)| {
                (
                    a.saturating_duration_since(from),
                    b.saturating_duration_since(from),
                )
            })
    }

    /// Published (Redis answered) but never received, with when published.
    fn lost(&self) -> Vec<(u64, Instant)> {
        let got: HashSet<u64> = self.received.iter().map(|&(s, _)| s).collect();
        self.published
            .iter()
            .filter(|(s, _)| !got.contains(s))
            .copied()
            .collect()
    }
}

/// A publisher per channel, each sending the next number every 2 ms until stopped, and a
/// worker on the broker that records what arrives.
struct Load {
    traffic: Arc<Mutex<HashMap<String, Traffic>>>,
    stop_publishing: CancellationToken,
    publishing: Vec<tokio::task::JoinHandle<()>>,
    stop_worker: CancellationToken,
    working: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(conn: &RedisConnection, broker: &Arc<PubSubBroker>, channels: &[String]) -> Self {
        let traffic: Arc<Mutex<HashMap<String, Traffic>>> = Arc::new(Mutex::new(
            channels
                .iter()
                .map(|c| (c.clone(), Traffic::default()))
                .collect(),
        ));
        let worker = worker_fn({
            let traffic = Arc::clone(&traffic);
            move |m: Message| {
                let traffic = Arc::clone(&traffic);
                async move {
                    let seq: u64 = m.body_str().unwrap().parse().unwrap();
                    let mut t = traffic.lock().unwrap();
                    let t = t.get_mut(m.source().name()).expect("a channel of the test");
                    t.received.push((seq, Instant::now()));
                    Ok(())
                }
            }
        });
        let stop_worker = CancellationToken::new();
        let runtime = WorkerRuntime::<PubSubBroker>::new(Arc::clone(broker), worker)
            .with_signal_handling(false)
            .with_concurrency(1)
            .with_cancellation(stop_worker.clone());
        let working = tokio::spawn(async move {
            runtime.run().await.unwrap();
        });
        let stop_publishing = CancellationToken::new();
        let publishing = channels
            .iter()
            .map(|channel| {
                let publisher = Publisher::new(conn, channel).with_encoding(Encoding::Raw);
                let (traffic, stop) = (Arc::clone(&traffic), stop_publishing.clone());
                tokio::spawn(async move {
                    for seq in 1u64.. {
                        let msg = Message::new(seq.to_string());
                        let res =
                            tokio::time::timeout(Duration::from_secs(2), publisher.publish(&msg))
                                .await;
                        {
                            let mut t = traffic.lock().unwrap();
                            let t = t.get_mut(publisher.channel()).unwrap();
                            match res {
                                Ok(Ok(_)) => t.published.push((seq, Instant::now())),
                                _ => t.failed += 1,
                            }
                        }
                        let pause = tokio::time::sleep(Duration::from_millis(2));
                        if stop.run_until_cancelled(pause).await.is_none() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Self {
            traffic,
            stop_publishing,
            publishing,
            stop_worker,
            working,
        }
    }

    fn received_one_published_after(&self, channel: &str, at: Instant) -> bool {
        self.traffic.lock().unwrap()[channel].received_one_published_after(at)
    }

    /// Stops publishing, lets the last messages arrive, stops the worker (which closes the
    /// broker).
    async fn finish(self) -> HashMap<String, Traffic> {
        self.stop_publishing.cancel();
        for p in self.publishing {
            p.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop_worker.cancel();
        self.working.await.unwrap();
        Arc::try_unwrap(self.traffic)
            .ok()
            .expect("the tasks are done")
            .into_inner()
            .unwrap()
    }
}

/// A subscriber on `victim` (and on `bystander`, served by another master) under steady
/// publishers while `disrupt` takes the victim's master away. Checks that the subscription
/// resumes, is live and counted by `SPUBLISH`, and that nothing published before the
/// disruption is lost or anything delivered twice; prints what each channel saw; returns how
/// many times the broker resubscribed.
async fn through_a_failover(
    what: &str,
    disrupt: impl FnOnce(&mut RedisCluster, &str) -> Duration,
) -> u64 {
    let mut cluster = RedisCluster::start();
    let conn = cluster.connect().await;
    let channels = cluster.names_on_different_masters("failover", 2);
    let (victim, bystander) = (channels[0].clone(), channels[1].clone());
    let broker = subscribe(
        PubSubBroker::builder(&conn)
            .channels(&channels)
            .with_name("survivor"),
    )
    .await;
    let load = Load::start(&conn, &broker, &channels);
    let warm = Instant::now() + Duration::from_millis(300);
    eventually(Duration::from_secs(5), "traffic flowing", || async {
        load.received_one_published_after(&victim, warm)
            && load.received_one_published_after(&bystander, warm)
    })
    .await;

    let began = Instant::now();
    // The harness blocks (block_in_place on this multi-thread runtime) while the worker and
    // the publishers keep running.
    let healed = disrupt(&mut cluster, &victim);
    let healed_at = Instant::now();
    eventually(
        Duration::from_secs(30),
        "the subscriber receives the victim's channel again",
        || async { load.received_one_published_after(&victim, healed_at) },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the broker says it is live",
        || async { broker.is_connected() },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(broker.maintain().await.is_ok(), "readiness says live");
    let reconnects = broker.reconnects();
    // Body 0: outside the numbering.
    let counted = Publisher::new(&conn, &victim)
        .with_encoding(Encoding::Raw)
        .publish(&Message::new("0"))
        .await;
    let traffic = load.finish().await;

    eprintln!(
        "{what}: the cluster healed in {healed:.1?}; the broker resubscribed {reconnects} time(s)"
    );
    for channel in [&victim, &bystander] {
        let t = &traffic[channel];
        let lost = t.lost();
        let (silent_from, silent_to) = t.longest_gap(began);
        let when = |at: Instant| at.saturating_duration_since(began);
        eprintln!(
            "  {channel} ({}): {} published (+{} failed or timed out), {} received, {} lost{}; \
             longest wait between arrivals {:.0?}, from +{:.0?} (publisher stalls included)",
            if *channel == victim {
                "victim"
            } else {
                "bystander"
            },
            t.published.len(),
            t.failed,
            t.received.len(),
            lost.len(),
            match (lost.first(), lost.last()) {
                (Some(a), Some(b)) =>
                    format!(", published from +{:.0?} to +{:.0?}", when(a.1), when(b.1)),
                _ => String::new(),
            },
            silent_to - silent_from,
            silent_from,
        );
        assert!(
            lost.iter().all(|&(_, at)| at > began),
            "{channel}: nothing published before the disruption is lost"
        );
        let numbered: Vec<u64> = t
            .received
            .iter()
            .map(|&(s, _)| s)
            .filter(|&s| s > 0)
            .collect();
        let distinct: HashSet<u64> = numbered.iter().copied().collect();
        assert_eq!(distinct.len(), numbered.len(), "{channel}: no duplicates");
    }
    assert!(
        matches!(counted, Ok(1)),
        "SPUBLISH counts the subscriber: {counted:?}"
    );
    reconnects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_after_its_channels_master_is_killed() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let reconnects = through_a_failover("master killed", |cluster, victim| {
        cluster.kill_master_for_key(victim)
    })
    .await;
    assert!(reconnects >= 1, "the loss was noticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_follows_a_graceful_failover() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let reconnects = through_a_failover("CLUSTER FAILOVER", |cluster, victim| {
        cluster.failover_for_key(victim)
    })
    .await;
    assert!(reconnects >= 1, "the server's sunsubscribe was noticed");
}
