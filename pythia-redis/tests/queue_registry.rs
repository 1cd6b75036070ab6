//! The operator's view against a real redis-server: the queue registry written by producers
//! and brokers, the daily counters of a `CountingBroker`, the pause flag and the typed reports.

use pythia_test_support as support;

use std::time::Duration;

use pythia_core::{Broker, Message, RetryPolicy, WorkerError, WorkerRuntime, worker_fn};
use pythia_redis::queues::{
    CountingBroker, DailyCounts, QueueKind, is_paused, pause, queue_report, queue_reports,
    registered_queues, resume,
};
use pythia_redis::{
    DelayedProducer, ListBroker, ListProducer, Publisher, QueueKeys, ReliableListBroker,
    ShardedQueue, ShardedStreamProducer, StreamBroker, StreamProducer,
};
use support::{RedisServer, acks, burst, cmd};

#[tokio::test]
async fn producers_register_their_queue_before_any_worker_ran() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    assert!(registered_queues(&conn).await.unwrap().is_empty());
    let list = ListProducer::new(&conn, "emails");
    for _ in 0..3 {
        list.push(&Message::new("x")).await.unwrap();
    }
    StreamProducer::new(&conn, "events")
        .add_many(&[Message::new("a"), Message::new("b")])
        .await
        .unwrap();
    let sharded = ShardedQueue::new("orders", 2).unwrap();
    ShardedStreamProducer::new(&conn, &sharded)
        .add(&Message::new("o"))
        .await
        .unwrap();
    Publisher::new(&conn, "news")
        .publish(&Message::new("n"))
        .await
        .unwrap();
    DelayedProducer::list(&conn, "later")
        .schedule_in(&Message::new("l"), Duration::from_secs(60))
        .await
        .unwrap();
    let got = registered_queues(&conn).await.unwrap();
    let want = [
        ("emails", QueueKind::List),
        ("events", QueueKind::Stream),
        ("later", QueueKind::List),
        ("news", QueueKind::Pubsub),
        ("orders", QueueKind::ShardedStream),
    ];
    assert_eq!(
        got.iter()
            .map(|(n, k)| (n.as_str(), *k))
            .collect::<Vec<_>>(),
        want
    );
    // Once per producer, not per message: the registry hash was written once per queue.
    let info: String = cmd(&conn, &["INFO", "commandstats"]).await;
    let calls = |name: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|s| s.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    assert_eq!(calls("hsetnx"), 5, "{info}");
}

#[tokio::test]
async fn a_broker_registers_in_its_first_maintenance_and_names_the_kind() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "jobs")
        .push(&Message::new("x"))
        .await
        .unwrap();
    assert_eq!(
        registered_queues(&conn).await.unwrap()["jobs"],
        QueueKind::List
    );
    // The producer cannot tell whether the list's consumers are reliable; the broker can.
    let b = ReliableListBroker::new(&conn, "jobs");
    let got = b.fetch(10).await.unwrap();
    assert_eq!(got.len(), 1);
    // Not on the fetch path: a fetch never waits for the registry.
    assert_eq!(
        registered_queues(&conn).await.unwrap()["jobs"],
        QueueKind::List
    );
    // The runtime runs the first maintenance at start; it writes the registry on a task of
    // its own.
    b.maintain().await.unwrap();
    support::eventually(Duration::from_secs(5), "registered as reliable", || {
        let conn = conn.clone();
        async move { registered_queues(&conn).await.unwrap()["jobs"] == QueueKind::ReliableList }
    })
    .await;
    // A producer started later does not downgrade it.
    ListProducer::new(&conn, "jobs")
        .push(&Message::new("y"))
        .await
        .unwrap();
    assert_eq!(
        registered_queues(&conn).await.unwrap()["jobs"],
        QueueKind::ReliableList
    );
    let s = StreamBroker::new(&conn, "ev", "g");
    s.maintain().await.unwrap();
    support::eventually(Duration::from_secs(5), "the stream registered", || {
        let conn = conn.clone();
        async move { registered_queues(&conn).await.unwrap().get("ev") == Some(&QueueKind::Stream) }
    })
    .await;
}

#[tokio::test]
async fn counting_broker_keeps_daily_processed_failed_and_retried() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let p = ListProducer::new(&conn, "work");
    let mut msgs: Vec<Message> = (0..7).map(|_| Message::new("ok")).collect();
    msgs.extend((0..3).map(|_| Message::new("bad")));
    msgs.extend((0..2).map(|_| Message::new("flaky")));
    p.push_many(&msgs).await.unwrap();

    let broker = CountingBroker::new(ReliableListBroker::new(&conn, "work"), &conn);
    let worker = worker_fn(|msg: Message| {
        let body = msg.body().to_vec();
        let attempt = msg.attempt();
        async move {
            match (&body[..], attempt) {
                (b"bad", _) => Err(WorkerError::reject("no good")),
                (b"flaky", 1) => Err(WorkerError::retry("once more")),
                _ => Ok(()),
            }
        }
    });
    let summary = burst(broker, worker)
        .with_retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(20)))
        .run()
        .await
        .unwrap();
    assert_eq!(summary.acked, 9);
    // Flushed on close: no need to wait for the periodic flush.
    let today = DailyCounts::today(&conn, "work").await.unwrap();
    assert_eq!(
        (today.processed, today.failed, today.retried),
        (9, 3, 2),
        "{today:?}"
    );
    // Daily keys expire.
    let day = pythia_redis::queues::counters::utc_day(std::time::SystemTime::now());
    let key = QueueKeys::new("pythia", "work").stat("processed", &day);
    let ttl: i64 = cmd(&conn, &["TTL", &key]).await;
    assert!(ttl > 80 * 24 * 3600, "ttl {ttl}");
}

#[tokio::test]
async fn counts_reach_redis_while_the_worker_runs() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let broker = CountingBroker::new(
        ListBroker::new(&conn, "live").with_maintenance_interval(Duration::from_millis(100)),
        &conn,
    );
    ListProducer::new(&conn, "live")
        .push_many(&(0..5).map(|_| Message::new("x")).collect::<Vec<_>>())
        .await
        .unwrap();
    let rt = WorkerRuntime::new(broker, worker_fn(|_: Message| async { Ok(()) }))
        .with_signal_handling(false);
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    support::eventually(Duration::from_secs(10), "counts flushed", || {
        let conn = conn.clone();
        async move { DailyCounts::today(&conn, "live").await.unwrap().processed == 5 }
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn pause_flag_and_reports() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    // A stream with entries and a group, produced before any worker ran.
    let entries: Vec<Message> = (0..30).map(|i| Message::new(format!("{i}"))).collect();
    StreamProducer::new(&conn, "events")
        .add_many(&entries)
        .await
        .unwrap();
    let _: () = cmd(&conn, &["XGROUP", "CREATE", "events", "billing", "0"]).await;
    ListProducer::new(&conn, "emails")
        .push_many(&[Message::new("a"), Message::new("b")])
        .await
        .unwrap();
    // A queue only known by name (not registered): its kind is read from the key.
    let _: i64 = cmd(&conn, &["RPUSH", "legacy", "x"]).await;

    assert!(!is_paused(&conn, "emails").await.unwrap());
    pause(&conn, "emails").await.unwrap();
    assert!(is_paused(&conn, "emails").await.unwrap());
    let flag: i64 = cmd(&conn, &["EXISTS", "pythia:{emails}:paused"]).await;
    assert_eq!(flag, 1);

    let all = queue_reports(&conn, &["legacy".to_owned()]).await.unwrap();
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["emails", "events", "legacy"]);
    let emails = &all[0];
    assert_eq!(emails.kind, QueueKind::List);
    assert!(emails.registered && emails.paused);
    assert_eq!(emails.depth, 2);
    assert!(emails.oldest_age_seconds.is_some());
    let events = &all[1];
    assert_eq!(events.kind, QueueKind::Stream);
    assert_eq!((events.depth, events.groups.len()), (30, 1));
    assert_eq!(events.groups[0].name, "billing");
    assert!(!events.paused);
    let legacy = &all[2];
    assert_eq!(
        (legacy.kind, legacy.registered, legacy.depth),
        (QueueKind::List, false, 1)
    );

    let json = serde_json::to_value(&all[0]).unwrap();
    for field in [
        "name",
        "kind",
        "depth",
        "in_flight",
        "scheduled",
        "dead_letters",
        "consumers",
        "oldest_age_seconds",
        "paused",
        "today",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    assert_eq!(json["kind"], "list");

    assert!(resume(&conn, "emails").await.unwrap());
    assert!(!queue_report(&conn, "emails").await.unwrap().paused);
    assert!(!resume(&conn, "emails").await.unwrap());
}

#[tokio::test]
async fn counting_switched_off_writes_nothing() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "quiet")
        .push_many(&[Message::new("a"), Message::new("b")])
        .await
        .unwrap();
    let broker = CountingBroker::new(ListBroker::new(&conn, "quiet"), &conn).with_counting(false);
    let summary = burst(broker, worker_fn(|_: Message| async { Ok(()) }))
        .run()
        .await
        .unwrap();
    assert_eq!(summary.acked, 2);
    let keys: Vec<String> = cmd(&conn, &["KEYS", "pythia:{quiet}:stat:*"]).await;
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
async fn a_reliable_list_without_consumers_has_stats() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    ListProducer::new(&conn, "idle")
        .push(&Message::new("x"))
        .await
        .unwrap();
    // No consumer ever registered: the in-flight count is 0, not an error.
    let stats = ReliableListBroker::new(&conn, "idle")
        .stats()
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.consumers), (1, 0, 0));
}

#[tokio::test]
async fn a_user_who_may_not_write_the_registry_still_produces_without_asking_again() {
    let server = RedisServer::start();
    let admin = server.connect().await;
    // The queue and its own keys, but not `pythia:queues`.
    let _: () = cmd(
        &admin,
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">pw",
            "~jobs",
            "~pythia:{jobs}:*",
            "+@all",
        ],
    )
    .await;
    let url = server.url().replace("redis://", "redis://app:pw@");
    let conn =
        pythia_redis::RedisConnection::connect(pythia_redis::RedisConfig::from_url(&url).unwrap())
            .await
            .unwrap();
    let p = ListProducer::new(&conn, "jobs");
    for _ in 0..3 {
        p.push(&Message::new("x")).await.unwrap();
    }
    let len: i64 = cmd(&admin, &["LLEN", "jobs"]).await;
    assert_eq!(len, 3);
    assert!(registered_queues(&admin).await.unwrap().is_empty());
    // Refused once, not asked again on every push.
    let info: String = cmd(&admin, &["INFO", "commandstats"]).await;
    let line = info
        .lines()
        .find(|l| l.starts_with("cmdstat_hsetnx:"))
        .unwrap_or_else(|| panic!("{info}"));
    assert!(
        line.contains("calls=0") && line.contains("rejected_calls=1"),
        "{line}"
    );
}

#[tokio::test]
async fn counts_a_failed_flush_could_not_send_are_kept_for_the_next() {
    let mut server = RedisServer::start();
    let conn = server.connect().await;
    let memory = pythia_core::MemoryBroker::new("mem");
    memory.push_many((0..4).map(|i| Message::new(format!("{i}"))));
    let broker = CountingBroker::new(memory, &conn);
    let got = broker.fetch(10).await.unwrap();
    assert_eq!(got.len(), 4);
    let batch = acks(got);
    broker.settle(&batch).await.unwrap();
    assert_eq!(broker.unflushed().processed, 4);

    server.stop();
    assert!(broker.flush().await.is_err(), "Redis is down");
    assert_eq!(broker.unflushed().processed, 4, "kept for the next flush");

    server.restart();
    support::eventually(
        Duration::from_secs(15),
        "a flush after the restart",
        || async { broker.flush().await.is_ok() },
    )
    .await;
    assert_eq!(broker.unflushed().processed, 0);
    assert_eq!(DailyCounts::today(&conn, "mem").await.unwrap().processed, 4);
}

/// On a Cluster the registry is one hash (`<prefix>:queues`, on the master of its slot) that
/// every producer and broker writes, whichever master its queue lives on: queues on three
/// masters are all listed, and reported with their depth, before any worker ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_queues_on_every_master_are_registered_and_reported() {
    let cluster = support::cluster::RedisCluster::start();
    let conn = cluster.connect().await;
    let names = cluster.names_on_different_masters("jobs", 3);
    let masters: std::collections::HashSet<u16> = names
        .iter()
        .map(|n| cluster.master_port_for_key(&QueueKeys::new("pythia", n).scheduled()))
        .collect();
    assert_eq!(masters.len(), 3, "the queues' keys live on three masters");
    for (i, name) in names.iter().enumerate() {
        let msgs: Vec<Message> = (0..=i).map(|j| Message::new(format!("{j}"))).collect();
        if i == 1 {
            StreamProducer::new(&conn, name)
                .add_many(&msgs)
                .await
                .unwrap();
        } else {
            ListProducer::new(&conn, name)
                .push_many(&msgs)
                .await
                .unwrap();
        }
    }
    let got = registered_queues(&conn).await.unwrap();
    let want: Vec<(&str, QueueKind)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let kind = if i == 1 {
                QueueKind::Stream
            } else {
                QueueKind::List
            };
            (n.as_str(), kind)
        })
        .collect();
    assert_eq!(
        got.iter()
            .map(|(n, k)| (n.as_str(), *k))
            .collect::<Vec<_>>(),
        want
    );
    let reports = queue_reports(&conn, &[]).await.unwrap();
    for (i, name) in names.iter().enumerate() {
        let r = reports
            .iter()
            .find(|r| &r.name == name)
            .unwrap_or_else(|| panic!("{name} not reported"));
        if i != 1 {
            assert_eq!(r.depth, i as u64 + 1, "{name}");
        }
    }
}
