//! The pub/sub broker and publisher against a real redis-server: fan-out over channels and
//! patterns, resubscription after a killed connection, a restart and a stalled server,
//! bounded overflow under both policies, in-process retries, dead letters and shutdown.

use pythia_test_support as support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use pythia_core::{
    Broker, BrokerErrorKind, CancellationToken, Message, RetryPolicy, Source, Worker, WorkerError,
    WorkerRuntime, envelope,
};
use pythia_redis::{Encoding, Overflow, PubSubBroker, PubSubBuilder, Publisher, RedisConnection};
use support::collect::Collect;
use support::{RedisServer, Resume, bodies_of, burst_shared, cmd, eventually, fetch_at_least};

// ---- a counting metrics recorder, installed once for this test binary ----

#[derive(Clone, Default)]
struct TestRecorder {
    counters: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
}

fn key_text(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let text = key_text(key.name(), &labels);
        let cell = Arc::clone(self.counters.lock().unwrap().entry(text).or_default());
        Counter::from_arc(cell)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn recorder() -> &'static TestRecorder {
    static RECORDER: OnceLock<TestRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let r = TestRecorder::default();
        metrics::set_global_recorder(r.clone()).expect("no other recorder in this binary");
        r
    })
}

/// The value of counter `name` with exactly these labels (0 when never registered).
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    recorder()
        .counters
        .lock()
        .unwrap()
        .get(&key_text(name, labels))
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

// ---- helpers ----

/// The broker is ready again and counted exactly one reconnect of `queue`.
async fn assert_reconnected_once(broker: &PubSubBroker, queue: &str) {
    assert!(broker.maintain().await.is_ok());
    assert_eq!(
        counter(
            "pythia_pubsub_reconnects_total",
            &[("queue", queue), ("broker", "pubsub")]
        ),
        1
    );
}

async fn subscribe(b: PubSubBuilder) -> Arc<PubSubBroker> {
    recorder();
    Arc::new(b.subscribe().await.expect("subscribe"))
}

/// Publishes `msg`, retrying while the shared connection reconnects; returns the receivers.
async fn publish_when_reachable(p: &Publisher, msg: &Message) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match p.publish(msg).await {
            Ok(n) => return n,
            Err(e) if Instant::now() > deadline => panic!("publish kept failing: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn numsub(conn: &RedisConnection, channel: &str) -> i64 {
    let (_, n): (String, i64) = cmd(conn, &["PUBSUB", "NUMSUB", channel]).await;
    n
}

// ---- tests ----

#[tokio::test]
async fn every_subscriber_gets_every_message_with_its_channel_and_pattern() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let mut brokers = Vec::new();
    for _ in 0..3 {
        brokers.push(
            subscribe(
                PubSubBroker::builder(&conn)
                    .channel("orders")
                    .pattern("events.*"),
            )
            .await,
        );
    }
    assert_eq!(numsub(&conn, "orders").await, 3);

    let orders = Publisher::new(&conn, "orders");
    let enveloped = Message::new(vec![0u8, 159, 255]).with_header("tenant", "acme");
    assert_eq!(
        orders.publish(&enveloped).await.unwrap(),
        3,
        "three receivers"
    );
    let counts = Publisher::new(&conn, "events.eu")
        .with_encoding(Encoding::Raw)
        .publish_many(&[Message::new("eu-1"), Message::new("eu-2")])
        .await
        .unwrap();
    assert_eq!(counts, [3, 3]);
    let python = r#"{"body": "from python", "headers": {"h": "1"}, "message_id": "py-1"}"#;
    let n: i64 = cmd(&conn, &["PUBLISH", "events.us", python]).await;
    assert_eq!(n, 3);
    assert_eq!(
        Publisher::new(&conn, "elsewhere")
            .publish(&Message::new("nobody listens"))
            .await
            .unwrap(),
        0
    );

    let workers: Vec<Collect> = (0..3).map(|_| Collect::default()).collect();
    let runs = brokers
        .iter()
        .zip(&workers)
        .map(|(b, w)| tokio::spawn(burst_shared(b, w.clone()).run()));
    for run in runs.collect::<Vec<_>>() {
        assert_eq!(run.await.unwrap().unwrap().acked, 4);
    }
    for w in &workers {
        let seen = w.seen.lock().unwrap();
        assert_eq!(seen.len(), 4, "each subscriber got every message once");
        let by_body: HashMap<&[u8], &Message> =
            seen.iter().map(|m| (m.body().as_ref(), m)).collect();

        let order = by_body[&[0u8, 159, 255][..]];
        assert_eq!(order.id(), enveloped.id(), "the envelope was decoded");
        assert_eq!(order.header("tenant"), Some("acme"));
        assert_eq!(order.source().broker(), "pubsub");
        assert_eq!(order.source().name(), "orders");
        assert_eq!(order.source().pattern(), None);

        for body in [&b"eu-1"[..], b"eu-2"] {
            let m = by_body[body];
            assert_eq!(m.source().name(), "events.eu");
            assert_eq!(m.source().pattern(), Some("events.*"));
            assert_eq!(m.attempt(), 1);
        }
        let py = by_body[&b"from python"[..]];
        assert_eq!(py.id(), "py-1");
        assert_eq!(py.header("h"), Some("1"));
        assert_eq!(py.source().name(), "events.us");
        assert_eq!(py.source().pattern(), Some("events.*"));
    }
    assert_eq!(brokers[0].source().name(), "orders,events.*");
}

#[tokio::test]
async fn an_idle_fetch_waits_the_block_time_then_wakes_on_publish() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let broker = subscribe(PubSubBroker::builder(&conn).channel("idle")).await;
    let started = Instant::now();
    assert!(broker.fetch(10).await.unwrap().is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
        "waited the 200 ms block time, not forever: {waited:?}"
    );
    assert!(broker.is_drained().await.unwrap());

    let publisher = Publisher::new(&conn, "idle");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        publisher.publish(&Message::new("late")).await.unwrap();
    });
    let started = Instant::now();
    let got = broker.fetch(10).await.unwrap();
    assert_eq!(bodies_of(&got), ["late"]);
    assert!(
        started.elapsed() < Duration::from_millis(190),
        "woken, not timed out"
    );
}

#[tokio::test]
async fn resubscribes_after_the_server_kills_the_connection() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let broker = subscribe(
        PubSubBroker::builder(&conn)
            .channel("kill.c")
            .pattern("kill.p.*")
            .with_name("killed"),
    )
    .await;
    assert!(broker.is_connected());
    assert_eq!(broker.reconnects(), 0);

    let killed: i64 = cmd(&conn, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert_eq!(killed, 1);
    eventually(Duration::from_secs(5), "resubscribed", || async {
        broker.reconnects() == 1 && broker.is_connected()
    })
    .await;
    assert_eq!(numsub(&conn, "kill.c").await, 1, "channel subscribed again");
    let numpat: i64 = cmd(&conn, &["PUBSUB", "NUMPAT"]).await;
    assert_eq!(numpat, 1, "pattern subscribed again");

    assert_eq!(
        Publisher::new(&conn, "kill.c")
            .publish(&Message::new("after-1"))
            .await
            .unwrap(),
        1
    );
    Publisher::new(&conn, "kill.p.x")
        .publish(&Message::new("after-2"))
        .await
        .unwrap();
    let got = fetch_at_least(&*broker, 2).await;
    assert_eq!(bodies_of(&got), ["after-1", "after-2"]);
    assert_eq!(got[1].message.source().pattern(), Some("kill.p.*"));
    assert_reconnected_once(&broker, "killed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribes_after_a_server_restart() {
    let mut server = RedisServer::start();
    let conn = server.connect().await;
    let broker = subscribe(PubSubBroker::builder(&conn).channel("restart.c")).await;
    let publisher = Publisher::new(&conn, "restart.c");
    publisher.publish(&Message::new("before")).await.unwrap();
    eventually(Duration::from_secs(5), "first message received", || async {
        broker.counters().received == 1
    })
    .await;

    server.stop();
    eventually(Duration::from_secs(5), "outage noticed", || async {
        !broker.is_connected()
    })
    .await;
    let e = broker.maintain().await.unwrap_err();
    assert_eq!(
        e.kind(),
        BrokerErrorKind::Connection,
        "readiness reports it"
    );
    // Buffered messages are still delivered during the outage.
    assert_eq!(bodies_of(&broker.fetch(10).await.unwrap()), ["before"]);
    tokio::time::sleep(Duration::from_millis(500)).await; // a few failed attempts
    assert_eq!(broker.reconnects(), 0);

    server.restart();
    eventually(Duration::from_secs(10), "resubscribed", || async {
        broker.reconnects() == 1 && broker.is_connected()
    })
    .await;
    assert_eq!(
        publish_when_reachable(&publisher, &Message::new("after")).await,
        1
    );
    let got = fetch_at_least(&*broker, 1).await;
    assert_eq!(bodies_of(&got), ["after"]);
    assert_reconnected_once(&broker, "restart.c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_is_noticed_by_ping_and_resubscribed() {
    let server = RedisServer::start();
    let config = server
        .config()
        .with_response_timeout(Duration::from_millis(300));
    let conn = RedisConnection::connect(config).await.unwrap();
    let broker = subscribe(
        PubSubBroker::builder(&conn)
            .channel("stall.c")
            .with_ping_interval(Duration::from_millis(100)),
    )
    .await;
    let info: String = cmd(&conn, &["INFO", "server"]).await;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("INFO server has process_id")
        .trim()
        .to_owned();

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        broker.is_connected() && broker.reconnects() == 0,
        "answered pings keep the connection"
    );
    // The socket stays open but the server answers nothing: only the PING can tell.
    let stopped = Resume::stop(&pid);
    eventually(Duration::from_secs(3), "stall noticed", || async {
        !broker.is_connected()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stopped);

    eventually(Duration::from_secs(10), "resubscribed", || async {
        broker.reconnects() == 1 && broker.is_connected()
    })
    .await;
    let publisher = Publisher::new(&conn, "stall.c");
    assert_eq!(
        publish_when_reachable(&publisher, &Message::new("after")).await,
        1
    );
    let got = fetch_at_least(&*broker, 1).await;
    assert_eq!(bodies_of(&got), ["after"]);
}

/// A publisher far faster than the worker: first with nobody fetching, then against a slow
/// runtime. Returns (survivors of the stalled phase, bodies the slow runtime processed).
async fn overflow_case(policy: Overflow, channel: &str) -> (Vec<String>, Vec<String>) {
    const CAP: usize = 100;
    let server = RedisServer::start();
    let conn = server.connect().await;
    let broker = subscribe(
        PubSubBroker::builder(&conn)
            .channel(channel)
            .with_capacity(CAP)
            .with_overflow(policy),
    )
    .await;
    assert_eq!((broker.capacity(), broker.overflow()), (CAP, policy));
    let publisher = Publisher::new(&conn, channel).with_encoding(Encoding::Raw);

    // Stalled: 5,000 arrive, nobody fetches.
    let first: Vec<Message> = (0..5000).map(|i| Message::new(format!("a{i}"))).collect();
    let counts = publisher.publish_many(&first).await.unwrap();
    assert!(counts.iter().all(|&n| n == 1));
    eventually(Duration::from_secs(5), "5,000 received", || async {
        broker.counters().received == 5000
    })
    .await;
    let c = broker.counters();
    assert_eq!(
        (c.buffered, c.peak_held, c.dropped),
        (CAP, CAP, 4900),
        "{c:?}"
    );
    assert_eq!(broker.dropped(), 4900);
    let labels = [
        ("queue", channel),
        ("broker", "pubsub"),
        ("policy", policy.as_str()),
    ];
    assert_eq!(counter("pythia_pubsub_dropped_total", &labels), 4900);
    let stats = broker
        .stats()
        .await
        .unwrap()
        .expect("pub/sub reports stats");
    assert_eq!(
        (stats.depth, stats.scheduled, stats.dead_letters),
        (100, 0, 0)
    );
    assert!(stats.oldest_age.is_some());
    let survivors = bodies_of(&broker.fetch(1000).await.unwrap());

    // Running: a slow worker against 20,000 published as fast as Redis takes them.
    let worker = {
        let seen = Collect::default();
        let slow = pythia_core::worker_fn({
            let seen = seen.clone();
            move |m: Message| {
                let seen = seen.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    seen.process_message(&m).await
                }
            }
        });
        (seen, slow)
    };
    let stop = CancellationToken::new();
    let runtime = WorkerRuntime::<PubSubBroker>::new(Arc::clone(&broker), worker.1)
        .with_signal_handling(false)
        .with_concurrency(1)
        .with_cancellation(stop.clone());
    let run = tokio::spawn(runtime.run());
    let second: Vec<Message> = (0..20_000).map(|i| Message::new(format!("b{i}"))).collect();
    for chunk in second.chunks(1000) {
        publisher.publish_many(chunk).await.unwrap();
        assert!(broker.buffered() <= CAP);
    }
    eventually(
        Duration::from_secs(10),
        "all received and the buffer drained",
        || async {
            let c = broker.counters();
            c.received == 25_000 && c.buffered == 0
        },
    )
    .await;
    stop.cancel();
    let summary = run.await.unwrap().unwrap();
    let c = broker.counters();
    assert_eq!(c.peak_held, CAP, "memory stayed bounded: {c:?}");
    let dropped_running = c.dropped - 4900;
    assert!(dropped_running > 0, "the worker fell behind: {c:?}");
    assert_eq!(
        summary.acked + dropped_running,
        20_000,
        "every message was processed or counted as dropped: {summary:?} {c:?}"
    );
    assert_eq!(counter("pythia_pubsub_dropped_total", &labels), c.dropped);
    (survivors, worker.0.bodies())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_latest_and_stays_bounded() {
    let (survivors, processed) = overflow_case(Overflow::DropOldest, "overflow.oldest").await;
    let want: Vec<String> = (4900..5000).map(|i| format!("a{i}")).collect();
    assert_eq!(survivors, want, "the newest 100 survive");
    assert_eq!(
        processed.last().map(String::as_str),
        Some("b19999"),
        "the last message published is never the one dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_keeps_the_earliest_and_stays_bounded() {
    let (survivors, processed) = overflow_case(Overflow::DropNewest, "overflow.newest").await;
    let want: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
    assert_eq!(survivors, want, "the oldest 100 survive");
    let first: Vec<String> = (0..100).map(|i| format!("b{i}")).collect();
    assert_eq!(
        processed[..100],
        first[..],
        "the first arrivals always find room"
    );
    assert!(!processed.contains(&"b19999".to_owned()));
}

#[tokio::test]
async fn retries_are_redelivered_in_process_with_the_attempt_raised() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let broker = subscribe(PubSubBroker::builder(&conn).channel("retry.c")).await;
    Publisher::new(&conn, "retry.c")
        .publish_many(&[Message::new("flaky"), Message::new("fine")])
        .await
        .unwrap();

    // Each delivery the worker saw, and when.
    let seen: Arc<Mutex<Vec<(Message, Instant)>>> = Arc::default();
    let w = pythia_core::worker_fn({
        let seen = seen.clone();
        move |m: Message| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((m.clone(), Instant::now()));
                if m.body().as_ref() == b"flaky" && m.attempt() == 1 {
                    return Err(WorkerError::retry("downstream busy"));
                }
                Ok(())
            }
        }
    });
    let policy = RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(300))
        .with_jitter(0.0);
    let summary = burst_shared(&broker, w)
        .with_retry_policy(policy)
        .run()
        .await
        .unwrap();
    assert_eq!((summary.acked, summary.retried), (2, 1), "{summary:?}");
    let seen = seen.lock().unwrap();
    let flaky: Vec<&(Message, Instant)> = seen
        .iter()
        .filter(|(m, _)| m.body().as_ref() == b"flaky")
        .collect();
    assert_eq!(flaky.len(), 2);
    let (first, second) = (&flaky[0].0, &flaky[1].0);
    assert_eq!(
        (first.attempt(), second.attempt()),
        (1, 2),
        "attempt raised"
    );
    assert_eq!(first.id(), second.id(), "same message id");
    assert_eq!(second.source().name(), "retry.c", "same source");
    let gap = flaky[1].1 - flaky[0].1;
    assert!(
        gap >= Duration::from_millis(290),
        "waited the delay: {gap:?}"
    );
    let c = broker.counters();
    assert_eq!(c.received, 2, "the retry came from memory, not Redis");
    assert_eq!(c.pending_retries, 0);
}

#[tokio::test]
async fn dead_letters_land_in_the_dead_letter_list() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let default = subscribe(
        PubSubBroker::builder(&conn)
            .channel("dlq.c")
            .with_name("dlq-default"),
    )
    .await;
    let custom = subscribe(
        PubSubBroker::builder(&conn)
            .channel("dlq.c")
            .with_name("dlq-custom")
            .with_dead_letter_list("my-dead-letters"),
    )
    .await;
    let none = subscribe(
        PubSubBroker::builder(&conn)
            .channel("dlq.c")
            .with_name("dlq-none")
            .without_dead_letter_list(),
    )
    .await;
    assert_eq!(default.dead_letter_list(), Some("pythia:{dlq-default}:dlq"));
    assert_eq!(custom.dead_letter_list(), Some("my-dead-letters"));
    assert_eq!(none.dead_letter_list(), None);

    let poison = Message::new("poison").with_header("k", "v");
    let n = Publisher::new(&conn, "dlq.c")
        .publish(&poison)
        .await
        .unwrap();
    assert_eq!(n, 3);
    let reject =
        || pythia_core::worker_fn(|_m: Message| async { Err(WorkerError::reject("cannot parse")) });
    for b in [&default, &custom, &none] {
        let summary = burst_shared(b, reject()).run().await.unwrap();
        assert_eq!(summary.dead_lettered, 1);
    }

    for key in ["pythia:{dlq-default}:dlq", "my-dead-letters"] {
        let items: Vec<Vec<u8>> = cmd(&conn, &["LRANGE", key, "0", "-1"]).await;
        assert_eq!(items.len(), 1, "{key}");
        let dead =
            envelope::decode_dead_letter(items[0].clone().into(), &Source::new("pubsub", "dlq.c"));
        assert_eq!(dead.message.body().as_ref(), b"poison");
        assert_eq!(dead.message.id(), poison.id());
        assert_eq!(dead.message.header("k"), Some("v"));
        assert_eq!(dead.reason.as_deref(), Some("rejected: cannot parse"));
        assert!(dead.failed_at.is_some());
    }
    let exists: i64 = cmd(&conn, &["EXISTS", "pythia:{dlq-none}:dlq"]).await;
    assert_eq!(exists, 0, "no dead-letter list: logged and dropped");
    let stats = default.stats().await.unwrap().unwrap();
    assert_eq!(stats.dead_letters, 1);
}

#[tokio::test]
async fn close_unsubscribes_and_counts_what_it_drops() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let broker = subscribe(PubSubBroker::builder(&conn).channel("close.c")).await;
    let publisher = Publisher::new(&conn, "close.c");
    let msgs: Vec<Message> = (0..10).map(|i| Message::new(i.to_string())).collect();
    publisher.publish_many(&msgs).await.unwrap();
    eventually(Duration::from_secs(5), "10 received", || async {
        broker.counters().received == 10
    })
    .await;
    let taken = broker.fetch(3).await.unwrap();
    broker.release(taken).await.unwrap();
    broker.close().await.unwrap();

    let c = broker.counters();
    assert_eq!(
        (c.dropped_at_shutdown, c.buffered, c.connected),
        (10, 0, false),
        "{c:?}"
    );
    assert_eq!(
        counter(
            "pythia_pubsub_dropped_total",
            &[
                ("queue", "close.c"),
                ("broker", "pubsub"),
                ("policy", "shutdown")
            ]
        ),
        10
    );
    assert_eq!(
        broker.fetch(10).await.unwrap_err().kind(),
        BrokerErrorKind::Closed
    );
    eventually(Duration::from_secs(5), "unsubscribed", || async {
        numsub(&conn, "close.c").await == 0
    })
    .await;
    assert_eq!(publisher.publish(&Message::new("gone")).await.unwrap(), 0);
}

#[tokio::test]
async fn a_subscription_needs_a_named_channel_or_pattern() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    for b in [
        PubSubBroker::builder(&conn),
        PubSubBroker::builder(&conn).channel(""),
        PubSubBroker::builder(&conn).channel("ok").pattern(""),
    ] {
        let e = b.subscribe().await.unwrap_err();
        assert_eq!(e.kind(), BrokerErrorKind::Config, "{e}");
    }
    assert_eq!(numsub(&conn, "ok").await, 0, "nothing was subscribed");
}
