//! The at-least-once stream broker against a real redis-server: consumer groups, crashes, long
//! jobs, poison entries, retries that outlive the worker, foreign producers, bounded memory,
//! clean shutdown.

use pythia_test_support as support;
use pythia_test_support::counters;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use counters::{counter, metrics_recorder};

use pythia_core::{
    Broker, Message, Outcome, RetryPolicy, Settlement, Worker, WorkerError, WorkerRuntime,
    worker_fn,
};
use pythia_redis::{Encoding, GroupStart, RedisConnection, StreamBroker, StreamProducer};
use redis::Value;
use support::chaos::{
    Record, kill_recording_child, lost_and_duplicated, recorded, run_recording_child, within,
};
use support::collect::Collect;
use support::{RedisServer, acks, broker_scenarios, burst, cmd, eventually, season};

fn fast(conn: &RedisConnection, stream: &str, group: &str) -> StreamBroker {
    StreamBroker::new(conn, stream, group)
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600))
}

async fn add_numbered(conn: &RedisConnection, stream: &str, n: usize) -> Vec<String> {
    let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("{i}"))).collect();
    StreamProducer::new(conn, stream)
        .add_many(&msgs)
        .await
        .unwrap();
    msgs.iter().map(|m| m.id().to_owned()).collect()
}

/// A worker that records what it saw, in order.
fn collector() -> (Arc<Mutex<Vec<Message>>>, impl Worker) {
    let c = Collect::default();
    (Arc::clone(&c.seen), c)
}

/// `XPENDING <stream> <group>` summary count.
async fn pending(conn: &RedisConnection, stream: &str, group: &str) -> i64 {
    let v: Value = cmd(conn, &["XPENDING", stream, group]).await;
    match v {
        Value::Array(parts) => match &parts[0] {
            Value::Int(n) => *n,
            other => panic!("unexpected XPENDING reply {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

/// Names of the group's consumers.
async fn consumers(conn: &RedisConnection, stream: &str, group: &str) -> Vec<String> {
    let v: redis::streams::StreamInfoConsumersReply =
        cmd(conn, &["XINFO", "CONSUMERS", stream, group]).await;
    v.consumers.into_iter().map(|c| c.name).collect()
}

/// Every entry of a stream as (id, field → value).
async fn entries(conn: &RedisConnection, stream: &str) -> Vec<(String, HashMap<String, Vec<u8>>)> {
    let v: redis::streams::StreamRangeReply = cmd(conn, &["XRANGE", stream, "-", "+"]).await;
    v.ids
        .into_iter()
        .map(|e| {
            let fields = e
                .map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<Vec<u8>>(v).unwrap()))
                .collect();
            (e.id, fields)
        })
        .collect()
}

/// Nothing of the group is left in Redis but the stream and the group itself.
async fn group_is_clean(conn: &RedisConnection, stream: &str, group: &str) {
    assert_eq!(
        pending(conn, stream, group).await,
        0,
        "entries left pending"
    );
    let left = consumers(conn, stream, group).await;
    assert!(left.is_empty(), "consumers left in the group: {left:?}");
    let keys: Vec<String> = cmd(conn, &["KEYS", &format!("pythia:{{{stream}}}:*")]).await;
    let keys: Vec<&String> = keys.iter().filter(|k| !k.ends_with(":dlq")).collect();
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[tokio::test]
async fn one_consumer_gets_entries_in_order_with_their_fields() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let msgs: Vec<Message> = (0..300)
        .map(|i| Message::new(format!("{i}")).with_header("n", i.to_string()))
        .collect();
    let ids = StreamProducer::new(&conn, "ordered")
        .add_many(&msgs)
        .await
        .unwrap();
    assert_eq!(ids.len(), 300);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let (seen, w) = collector();
    let summary = burst(fast(&conn, "ordered", "g"), w)
        .with_concurrency(1)
        .run()
        .await
        .unwrap();
    assert_eq!(summary.acked, 300);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let bodies: Vec<String> = seen
        .iter()
        .map(|m| m.body_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    assert_eq!(bodies, expected, "one consumer sees the stream's order");
    for (got, sent) in seen.iter().zip(&msgs) {
        assert_eq!(got.id(), sent.id());
        assert_eq!(got.header("n"), sent.header("n"));
        assert_eq!(got.headers().len(), 1, "Pythia's fields are not headers");
        assert_eq!(got.attempt(), 1);
        assert_eq!(got.source().name(), "ordered");
        let age = got.age().expect("enqueue time from the entry id");
        assert!(age < Duration::from_secs(60));
    }
    group_is_clean(&conn, "ordered", "g").await;
}

/// A job queue processes what was queued before its first worker ever ran: a group the broker
/// creates starts at the beginning of the stream unless told otherwise.
#[tokio::test]
async fn a_new_group_gets_the_entries_queued_before_its_first_worker() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = add_numbered(&conn, "early", 5).await;
    let (seen, w) = collector();
    let broker = StreamBroker::new(&conn, "early", "g")
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600));
    let summary = within(30, "the burst", burst(broker, w).run())
        .await
        .unwrap();
    assert_eq!(summary.acked, 5, "entries queued before the group existed");
    let got: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.id().to_owned())
        .collect();
    assert_eq!(got, ids);

    // `NewEntries` stays available for event streams: such a group skips the backlog.
    let (seen, w) = collector();
    let events = StreamBroker::new(&conn, "early", "events")
        .with_start(GroupStart::NewEntries)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600));
    let summary = within(30, "the burst", burst(events, w).run())
        .await
        .unwrap();
    assert_eq!(summary.acked, 0);
    assert!(seen.lock().unwrap().is_empty());
}

/// The arguments of the `XADD`s the server ran since `SLOWLOG RESET` (every command is logged:
/// `slowlog-log-slower-than 0`).
async fn logged_xadds(conn: &RedisConnection) -> Vec<Vec<String>> {
    let log: Vec<Value> = cmd(conn, &["SLOWLOG", "GET", "100000"]).await;
    log.into_iter()
        .filter_map(|e| {
            let Value::Array(parts) = e else { return None };
            let args: Vec<String> = redis::from_redis_value(parts.get(3)?.clone()).ok()?;
            args[0].eq_ignore_ascii_case("XADD").then_some(args)
        })
        .collect()
}

/// A producer trims nothing unless asked: a `MAXLEN` drops entries no group has been delivered
/// once the backlog outgrows it, and the consumers already remove what they processed.
#[tokio::test]
async fn producers_trim_nothing_unless_asked() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: () = cmd(&conn, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]).await;
    let _: () = cmd(&conn, &["CONFIG", "SET", "slowlog-max-len", "100000"]).await;
    let _: () = cmd(&conn, &["SLOWLOG", "RESET"]).await;
    let plain = StreamProducer::new(&conn, "plain");
    plain.add(&Message::new("a")).await.unwrap();
    plain.add_fields(&[("body", "b")]).await.unwrap();
    let queue = pythia_redis::ShardedQueue::new("sharded", 2).unwrap();
    pythia_redis::ShardedStreamProducer::new(&conn, &queue)
        .add_many(&[Message::new("c"), Message::new("d")])
        .await
        .unwrap();
    let adds = logged_xadds(&conn).await;
    assert_eq!(adds.len(), 4, "{adds:?}");
    for args in &adds {
        assert_eq!(args[2], "*", "no MAXLEN by default: {args:?}");
    }

    let _: () = cmd(&conn, &["SLOWLOG", "RESET"]).await;
    StreamProducer::new(&conn, "plain")
        .with_max_len(Some(10))
        .add(&Message::new("e"))
        .await
        .unwrap();
    let adds = logged_xadds(&conn).await;
    assert_eq!(adds.len(), 1, "{adds:?}");
    assert_eq!(adds[0][2..5], ["MAXLEN", "~", "10"], "the opt-in cap");
}

/// Entries a producer's `MAXLEN` trimmed before the group was delivered them are lost: the
/// consumers count them once (whichever consumer sees it first) and warn: before the first read
/// of a worker, and whenever the group is behind the stream's first entry.
#[tokio::test]
async fn entries_trimmed_before_delivery_are_counted_once() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    metrics_recorder();
    // `repro/e9_maxlen.sh`: the group exists (at the end of an empty stream), then 5,000 jobs
    // arrive with a cap of 1,000.
    let _: () = cmd(&conn, &["XGROUP", "CREATE", "capped", "g", "$", "MKSTREAM"]).await;
    let capped = StreamProducer::new(&conn, "capped").with_max_len(Some(1000));
    let msgs: Vec<Message> = (0..5000).map(|i| Message::new(format!("{i}"))).collect();
    capped.add_many(&msgs).await.unwrap();
    let kept: u64 = cmd(&conn, &["XLEN", "capped"]).await;
    assert!(kept < 5000);
    // The worker counts them before its first read, which would hide them.
    let worker = Record::new(&conn);
    let summary = within(
        60,
        "the burst",
        burst(fast(&conn, "capped", "g"), worker).run(),
    )
    .await
    .unwrap();
    assert_eq!(summary.acked, kept);
    let labels = [("queue", "capped"), ("group", "g")];
    assert_eq!(
        counter(pythia_redis::stream::TRIMMED_UNDELIVERED_TOTAL, &labels),
        5000 - kept
    );
    let other = fast(&conn, "capped", "g");
    assert_eq!(
        other.count_trimmed_undelivered().await.unwrap(),
        0,
        "counted once"
    );
    assert_eq!(
        counter(pythia_redis::stream::TRIMMED_UNDELIVERED_TOTAL, &labels),
        5000 - kept
    );

    // The group reads (its counter is known), falls behind, and the cap trims 1,000 entries it
    // was not delivered: counted while the group is behind the stream's first entry.
    let _: () = cmd(&conn, &["DEL", "capped"]).await;
    let _: () = cmd(&conn, &["XGROUP", "CREATE", "capped", "g", "$", "MKSTREAM"]).await;
    let small = StreamProducer::new(&conn, "capped").with_max_len(Some(100));
    small.add(&Message::new("first")).await.unwrap();
    let c = fast(&conn, "capped", "g");
    assert_eq!(c.count_trimmed_undelivered().await.unwrap(), 0);
    let got = c.fetch(1).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        c.count_trimmed_undelivered().await.unwrap(),
        0,
        "nothing trimmed yet"
    );
    let more: Vec<Message> = (0..1000).map(|i| Message::new(format!("{i}"))).collect();
    small.add_many(&more).await.unwrap();
    let left: u64 = cmd(&conn, &["XLEN", "capped"]).await;
    assert_eq!(
        c.count_trimmed_undelivered().await.unwrap(),
        1000 - left,
        "the entries trimmed unread: 1,000 added after the one delivered, {left} left"
    );
    assert_eq!(
        c.count_trimmed_undelivered().await.unwrap(),
        0,
        "counted once"
    );
    let mut delivered = 0;
    loop {
        let got = c.fetch(1000).await.unwrap();
        if got.is_empty() {
            break;
        }
        delivered += got.len() as u64;
    }
    assert_eq!(delivered, left, "the rest is delivered");
    assert_eq!(
        c.count_trimmed_undelivered().await.unwrap(),
        0,
        "and not counted again"
    );
}

#[tokio::test]
async fn consumers_of_one_group_split_the_entries() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = add_numbered(&conn, "shared", 3000).await;

    let got: Arc<Mutex<Vec<(usize, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut runs = Vec::new();
    for c in 0..3 {
        let got = got.clone();
        let w = worker_fn(move |m: Message| {
            let got = got.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                got.lock().unwrap().push((c, m.id().to_owned()));
                Ok(())
            }
        });
        let rt = burst(fast(&conn, "shared", "workers"), w)
            .with_concurrency(16)
            .with_batch_size(32);
        runs.push(tokio::spawn(rt.run()));
    }
    for r in runs {
        r.await.unwrap().unwrap();
    }
    let got = std::mem::take(&mut *got.lock().unwrap());
    let mut per_consumer = [0usize; 3];
    let mut times: HashMap<&str, usize> = HashMap::new();
    for (c, id) in got.iter() {
        per_consumer[*c] += 1;
        *times.entry(id).or_default() += 1;
    }
    assert_eq!(times.len(), 3000, "together they got every entry");
    assert!(ids.iter().all(|id| times.get(id.as_str()) == Some(&1)));
    assert!(
        per_consumer.iter().all(|n| *n > 0),
        "each consumer got a share: {per_consumer:?}"
    );
    eprintln!("split between three consumers: {per_consumer:?}");
    group_is_clean(&conn, "shared", "workers").await;
}

/// Not a test of its own (ignored, so it never counts as a pass): the body of the worker
/// process that `a_worker_killed_mid_batch_loses_nothing` starts (`--ignored --exact`) and kills.
#[tokio::test]
#[ignore = "a worker child process, run by its parent test (--ignored --exact), not a test"]
async fn child_stream_worker_process() {
    run_recording_child(|conn| fast(conn, "crash", "g"), |b| b.consumer().to_owned()).await;
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = add_numbered(&conn, "crash", 3000).await;

    let dead = kill_recording_child("child_stream_worker_process", &server, &conn).await;
    let orphaned: Vec<Value> =
        cmd(&conn, &["XPENDING", "crash", "g", "-", "+", "1000", &dead]).await;
    let orphaned = orphaned.len();
    assert!(orphaned > 0, "the kill should leave entries pending");

    let rt = burst(fast(&conn, "crash", "g"), Record::new(&conn));
    let summary = within(20, "the recovering consumer", rt.run())
        .await
        .unwrap();
    let (lost, duplicates) = lost_and_duplicated(&ids, &recorded(&conn).await);
    assert_eq!(lost, 0, "lost {lost} entries");
    eprintln!(
        "crash test: 3000 entries, {orphaned} pending for the killed consumer, {} processed after it, {duplicates} duplicates, 0 lost",
        summary.acked
    );
    assert!(
        duplicates <= orphaned as i64,
        "only the dead consumer's pending entries may run twice"
    );
    group_is_clean(&conn, "crash", "g").await;
}

#[tokio::test]
async fn a_live_consumer_keeps_its_long_job() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    StreamProducer::new(&conn, "long")
        .add(&Message::new("long job"))
        .await
        .unwrap();
    broker_scenarios::a_live_consumer_keeps_its_long_job(|| fast(&conn, "long", "g")).await;
    group_is_clean(&conn, "long", "g").await;
}

#[tokio::test]
async fn a_rejected_entry_lands_in_the_dead_letter_stream_with_its_reason() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let producer = StreamProducer::new(&conn, "orders");
    let bad = producer
        .add_fields(&[("body", "not an order"), ("tenant", "acme")])
        .await
        .unwrap();
    let good = producer.add(&Message::new("order 7")).await.unwrap();
    let w = worker_fn(|m: Message| async move {
        if m.body().as_ref() == b"not an order" {
            return Err(WorkerError::reject("body is not an order"));
        }
        Ok(())
    });
    let s = burst(fast(&conn, "orders", "g"), w).run().await.unwrap();
    assert_eq!((s.acked, s.dead_lettered), (1, 1));

    let dlq = entries(&conn, "pythia:{orders}:dlq").await;
    assert_eq!(dlq.len(), 1);
    let f = &dlq[0].1;
    assert_eq!(f["body"], b"not an order", "the original fields are kept");
    assert_eq!(f["tenant"], b"acme");
    let error = String::from_utf8(f["pythia-error"].clone()).unwrap();
    assert_eq!(error, "rejected: body is not an order");
    assert_eq!(f["pythia-attempt"], b"1");
    assert_eq!(f["pythia-id"], bad.to_string().as_bytes());
    assert_eq!(f["pythia-entry-id"], bad.to_string().as_bytes());
    assert_eq!(f["pythia-group"], b"g");
    let failed_at: u64 = String::from_utf8(f["pythia-failed-at"].clone())
        .unwrap()
        .parse()
        .unwrap();
    let now = pythia_core::message::unix_millis(SystemTime::now());
    assert!(now - failed_at < 60_000);
    assert_ne!(bad, good);
    group_is_clean(&conn, "orders", "g").await;
}

#[tokio::test]
async fn an_entry_that_kills_its_workers_is_dead_lettered_without_running() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: String = cmd(&conn, &["XADD", "poison", "*", "body", "kills the worker"]).await;
    // Three consumers take it in turn and die without a word: each claims it from the last.
    let mut attempts = Vec::new();
    for i in 0..3 {
        let dying = fast(&conn, "poison", "g");
        if i > 0 {
            season(Duration::from_millis(600), || dying.maintain()).await; // claims on the way
            dying.reclaim_dead_consumers().await.unwrap();
        }
        let got = dying.fetch(10).await.unwrap();
        assert_eq!(got.len(), 1);
        attempts.push(got[0].message.attempt());
        let _: i64 = cmd(&conn, &["DEL", &dying.keys().heartbeat(dying.consumer())]).await;
    }
    assert_eq!(attempts, [1, 2, 3], "each death counts an attempt");

    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let w = worker_fn(move |_m: Message| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let rt = burst(fast(&conn, "poison", "g"), w)
        .with_retry_policy(RetryPolicy::default().with_max_attempts(3));
    let s = within(10, "the last consumer", rt.run()).await.unwrap();
    // Delivery 4 of an entry allowed 3 attempts: dead-lettered without running it again.
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(s.dead_lettered, 1);
    let dlq = entries(&conn, "pythia:{poison}:dlq").await;
    assert_eq!(dlq.len(), 1);
    let f = &dlq[0].1;
    assert_eq!(f["body"], b"kills the worker");
    assert_eq!(f["pythia-attempt"], b"4");
    let error = String::from_utf8(f["pythia-error"].clone()).unwrap();
    assert!(error.contains("exceeded 3 attempts"), "{error}");
    group_is_clean(&conn, "poison", "g").await;
}

#[tokio::test]
async fn a_retry_survives_a_worker_restart() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let sent = Message::new("x").with_header("k", "v");
    let entry = StreamProducer::new(&conn, "later")
        .add(&sent)
        .await
        .unwrap();
    broker_scenarios::schedule_a_retry_then_stop(fast(&conn, "later", "g"), &conn, "later").await;
    assert_eq!(
        pending(&conn, "later", "g").await,
        0,
        "the original is acked"
    );

    let (seen, ok) = collector();
    let s = burst(fast(&conn, "later", "g"), ok).run().await.unwrap();
    assert_eq!(s.acked, 1);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].attempt(), 2);
    assert_eq!(seen[0].id(), sent.id(), "the id is stable across attempts");
    assert_eq!(seen[0].header("k"), Some("v"));
    assert_eq!(seen[0].body().as_ref(), b"x");
    assert_eq!(
        seen[0].enqueued_at().map(pythia_core::message::unix_millis),
        Some(entry.ms()),
        "the enqueue time is the first entry's, not the retry's"
    );
    group_is_clean(&conn, "later", "g").await;
}

#[tokio::test]
async fn entries_from_any_producer_are_consumable() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let early: String = cmd(&conn, &["XADD", "mixed", "*", "body", "before the group"]).await;
    // A group at new entries only (XGROUP CREATE … $), created before the entries below.
    let broker = StreamBroker::new(&conn, "mixed", "g").with_start(GroupStart::NewEntries);
    broker.ensure_group().await.unwrap();

    let plain: String = cmd(
        &conn,
        &["XADD", "mixed", "*", "body", "hello", "color", "red"],
    )
    .await;
    let no_body: String = cmd(
        &conn,
        &["XADD", "mixed", "*", "user", "7", "action", "signup"],
    )
    .await;
    let python: String = cmd(
        &conn,
        &[
            "XADD",
            "mixed",
            "*",
            "body",
            r#"{"order": 7}"#,
            "header_tenant",
            "acme",
        ],
    )
    .await;
    let producer = StreamProducer::new(&conn, "mixed");
    let binary = producer
        .add_fields(&[(&b"body"[..], &[0xff_u8, 0x00, 0xfe][..])])
        .await
        .unwrap();
    let raw = producer
        .clone()
        .with_encoding(Encoding::Raw)
        .add(&Message::new("raw body").with_header("dropped", "yes"))
        .await
        .unwrap();
    let refused = producer
        .add(&Message::new("x").with_header("pythia-attempt", "9"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), pythia_core::BrokerErrorKind::Config);

    let (seen, w) = collector();
    burst(
        broker
            .with_maintenance_interval(Duration::from_millis(100))
            .with_heartbeat_ttl(Duration::from_millis(600)),
        w,
    )
    .with_concurrency(1)
    .run()
    .await
    .unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let ids: Vec<&str> = seen.iter().map(|m| m.id()).collect();
    let expected = [
        plain.clone(),
        no_body.clone(),
        python.clone(),
        binary.to_string(),
        raw.to_string(),
    ];
    assert_eq!(ids, expected, "message id = entry id without pythia-id");
    assert!(!ids.contains(&early.as_str()));

    assert_eq!(seen[0].body().as_ref(), b"hello");
    assert_eq!(seen[0].header("color"), Some("red"));
    let entry_ms: u64 = plain.split('-').next().unwrap().parse().unwrap();
    assert_eq!(
        seen[0].enqueued_at().map(pythia_core::message::unix_millis),
        Some(entry_ms),
        "enqueue time from the entry id"
    );

    let object: serde_json::Value = seen[1].json().unwrap();
    assert_eq!(object, serde_json::json!({"user": "7", "action": "signup"}));
    assert!(seen[1].headers().is_empty());

    assert_eq!(seen[2].body().as_ref(), br#"{"order": 7}"#);
    assert_eq!(seen[2].header("tenant"), Some("acme"));

    assert_eq!(seen[3].body().as_ref(), &[0xff, 0x00, 0xfe]);
    assert_eq!(seen[4].body().as_ref(), b"raw body");
    assert!(
        seen[4].headers().is_empty(),
        "raw mode writes the body alone"
    );
    assert!(seen.iter().all(|m| m.attempt() == 1));
}

#[tokio::test]
async fn the_stream_stays_short_under_continuous_load() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let producer = StreamProducer::new(&conn, "busy");
    fast(&conn, "busy", "g").ensure_group().await.unwrap();
    let rt = WorkerRuntime::new(fast(&conn, "busy", "g"), Record::new(&conn))
        .with_signal_handling(false);
    let stop = rt.cancellation_token();
    let h = tokio::spawn(rt.run());
    let mut longest = 0;
    for _ in 0..25 {
        let batch: Vec<Message> = (0..200).map(|i| Message::new(format!("{i}"))).collect();
        producer.add_many(&batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let len: i64 = cmd(&conn, &["XLEN", "busy"]).await;
        longest = longest.max(len);
    }
    eventually(Duration::from_secs(10), "all 5000 processed", || async {
        let n: i64 = cmd(&conn, &["HLEN", "processed"]).await;
        n == 5000
    })
    .await;
    eventually(
        Duration::from_secs(5),
        "processed entries trimmed",
        || async {
            let len: i64 = cmd(&conn, &["XLEN", "busy"]).await;
            len < 200
        },
    )
    .await;
    stop.cancel();
    h.await.unwrap().unwrap();
    eprintln!("5000 entries produced, longest stream seen: {longest}");
    assert!(longest < 2500, "processed entries piled up: {longest}");

    // The producer's MAXLEN ~ caps a stream nobody consumes.
    let capped = StreamProducer::new(&conn, "capped").with_max_len(Some(1000));
    for _ in 0..5 {
        let batch: Vec<Message> = (0..1000).map(|i| Message::new(format!("{i}"))).collect();
        capped.add_many(&batch).await.unwrap();
    }
    let len: i64 = cmd(&conn, &["XLEN", "capped"]).await;
    assert!((1000..1200).contains(&len), "MAXLEN ~ 1000 gave {len}");

    // Deleting on ack empties the stream without any trimming.
    let ids = add_numbered(&conn, "deleted", 1000).await;
    let s = burst(
        fast(&conn, "deleted", "g")
            .with_delete_on_ack(true)
            .with_trim_processed(false),
        Record::new(&conn),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(s.acked, ids.len() as u64);
    let len: i64 = cmd(&conn, &["XLEN", "deleted"]).await;
    assert_eq!(len, 0);
}

#[tokio::test]
async fn a_clean_shutdown_hands_back_work_and_leaves_no_consumer_behind() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = add_numbered(&conn, "stop", 200).await;
    // Recorded in memory, in the same poll that completes the handler: a handler cut off by the
    // end of the grace period has recorded nothing, so "exactly once" is exact.
    let done: Arc<Mutex<Vec<(String, u32)>>> = Arc::new(Mutex::new(Vec::new()));
    let worker = |delay: Duration| {
        let done = done.clone();
        worker_fn(move |m: Message| {
            let done = done.clone();
            async move {
                tokio::time::sleep(delay).await;
                done.lock().unwrap().push((m.id().to_owned(), m.attempt()));
                Ok(())
            }
        })
    };
    let rt = WorkerRuntime::new(fast(&conn, "stop", "g"), worker(Duration::from_millis(50)))
        .with_signal_handling(false)
        .with_concurrency(4)
        .with_shutdown_grace(Duration::ZERO); // cut off what runs, hand it back
    let stop = rt.cancellation_token();
    let h = tokio::spawn(rt.run());
    eventually(Duration::from_secs(10), "10 processed", || async {
        done.lock().unwrap().len() >= 10
    })
    .await;
    stop.cancel();
    let first = h.await.unwrap().unwrap();
    assert!(first.released > 0, "entries in flight were handed back");
    assert_eq!(first.unsettled, 0);
    group_is_clean(&conn, "stop", "g").await;
    let len: i64 = cmd(&conn, &["XLEN", "stop"]).await;
    assert!(
        len >= 200 - first.acked as i64,
        "what was not done is back in the stream"
    );

    let second = burst(fast(&conn, "stop", "g"), worker(Duration::ZERO))
        .run()
        .await
        .unwrap();
    assert_eq!(first.acked + second.acked, 200);
    let done = std::mem::take(&mut *done.lock().unwrap());
    let mut times: HashMap<&str, usize> = HashMap::new();
    for (id, attempt) in done.iter() {
        *times.entry(id.as_str()).or_default() += 1;
        assert_eq!(*attempt, 1, "handing back does not count an attempt");
    }
    assert!(
        ids.iter().all(|id| times.get(id.as_str()) == Some(&1)),
        "every entry processed exactly once"
    );
    group_is_clean(&conn, "stop", "g").await;
}

#[tokio::test]
async fn retries_stay_with_the_group_that_failed_them() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = add_numbered(&conn, "fanout", 20).await;
    let flaky = worker_fn(|m: Message| async move {
        if m.attempt() == 1 {
            return Err(WorkerError::retry_later(Duration::from_millis(100), "once"));
        }
        Ok(())
    });
    let (seen, steady) = collector();
    let a = tokio::spawn(burst(fast(&conn, "fanout", "flaky"), flaky).run());
    let b = tokio::spawn(burst(fast(&conn, "fanout", "steady"), steady).run());
    let a = a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!((a.retried, a.acked), (20, 20));
    // The steady group may stop before the retries are promoted: read what is left.
    let (rest, steady) = collector();
    burst(fast(&conn, "fanout", "steady"), steady)
        .run()
        .await
        .unwrap();
    let mut all: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.id().to_owned())
        .collect();
    all.extend(rest.lock().unwrap().iter().map(|m| m.id().to_owned()));
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 20, "the other group never sees the retries");
    assert_eq!(unique.len(), 20);
    assert!(ids.iter().all(|id| unique.contains(id)));
}

#[tokio::test]
async fn entries_of_a_lost_read_reply_are_recovered() {
    let server = RedisServer::start();
    let conn = RedisConnection::connect(server.config().with_block_timeout(Duration::from_secs(1)))
        .await
        .unwrap();
    let broker = Arc::new(fast(&conn, "lost", "g"));
    broker.ensure_group().await.unwrap();
    let b = broker.clone();
    let read = tokio::spawn(async move { b.fetch(10).await });
    eventually(Duration::from_secs(5), "the read to block", || async {
        let clients: String = cmd(&conn, &["CLIENT", "LIST", "TYPE", "normal"]).await;
        clients.contains("cmd=xreadgroup")
    })
    .await;
    // The server delivers an entry to this consumer, but the reply never reaches it: the entry
    // is added and read under the consumer's name in one transaction (so the blocked read is
    // not woken for it), then the blocked read's connection dies.
    let (sent, _read): (String, Value) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg("lost")
        .arg("*")
        .arg("body")
        .arg("in transit")
        .cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg(broker.consumer())
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg("lost")
        .arg(">")
        .query_async(&mut conn.manager())
        .await
        .unwrap();
    let clients: String = cmd(&conn, &["CLIENT", "LIST", "TYPE", "normal"]).await;
    let blocked = clients
        .lines()
        .find(|l| l.contains("cmd=xreadgroup"))
        .and_then(|l| l.split(' ').find_map(|kv| kv.strip_prefix("id=")))
        .expect("the blocked read")
        .to_owned();
    let _: i64 = cmd(&conn, &["CLIENT", "KILL", "ID", &blocked]).await;
    assert!(read.await.unwrap().is_err(), "the read failed");

    let got = broker.fetch(10).await.unwrap();
    assert_eq!(
        got.len(),
        1,
        "the entry in this consumer's pending list comes back"
    );
    assert_eq!(got[0].token.to_string(), sent);
    assert_eq!(got[0].message.body().as_ref(), b"in transit");
    assert_eq!(got[0].message.attempt(), 1);
    let settle = acks(got);
    broker.settle(&settle).await.unwrap();
    assert_eq!(pending(&conn, "lost", "g").await, 0);
    assert!(broker.fetch(10).await.unwrap().is_empty());
    broker.close().await.unwrap();
    group_is_clean(&conn, "lost", "g").await;
}

/// The claim of a dead consumer's entries runs, but its reply never reaches the claimer (here a
/// reply timeout while the server holds writes with `CLIENT PAUSE … WRITE`, then runs the
/// script): the entries are in the live claimer's pending list, where nobody else takes them.
/// The claimer delivers them anyway, and a burst ends.
#[tokio::test]
async fn entries_of_a_lost_claim_reply_are_recovered() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = add_numbered(&conn, "claimed", 3).await;
    let dead = fast(&conn, "claimed", "g");
    assert_eq!(dead.fetch(10).await.unwrap().len(), 3);

    let impatient = server
        .config()
        .with_response_timeout(Duration::from_millis(200))
        .with_block_timeout(Duration::from_millis(100));
    let claimer_conn = RedisConnection::connect(impatient).await.unwrap();
    let claimer = fast(&claimer_conn, "claimed", "g");
    claimer.ensure_group().await.unwrap();
    // A claimer judges others only after a heartbeat lifetime of its own (the other one is
    // still alive meanwhile).
    season(Duration::from_millis(600), || async {
        dead.maintain().await?;
        claimer.maintain().await
    })
    .await;
    // Its heartbeat expires: the three entries are a dead consumer's.
    let _: i64 = cmd(&conn, &["DEL", &dead.keys().heartbeat(dead.consumer())]).await;
    // Loaded beforehand, so that the paused server runs the script as sent.
    let _: String = cmd(
        &conn,
        &[
            "SCRIPT",
            "LOAD",
            concat!(
                include_str!("../lua/lib/checks.lua"),
                include_str!("../lua/stream_claim.lua")
            ),
        ],
    )
    .await;
    let _: () = cmd(&conn, &["CLIENT", "PAUSE", "1000", "WRITE"]).await;
    assert!(
        claimer.reclaim_dead_consumers().await.is_err(),
        "the claim's reply timed out"
    );
    eventually(
        Duration::from_secs(5),
        "the claim to run after the pause",
        || async {
            let mine: Vec<Value> = cmd(
                &conn,
                &[
                    "XPENDING",
                    "claimed",
                    "g",
                    "-",
                    "+",
                    "10",
                    claimer.consumer(),
                ],
            )
            .await;
            mine.len() == 3
        },
    )
    .await;

    let got = claimer.fetch(10).await.unwrap();
    let mut got_ids: Vec<String> = got.iter().map(|d| d.message.id().to_owned()).collect();
    got_ids.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got_ids, want, "the claimed entries are delivered");
    assert!(
        got.iter().all(|d| d.message.attempt() == 2),
        "a delivery to a dead consumer counts as an attempt"
    );
    let settle = acks(got);
    claimer.settle(&settle).await.unwrap();
    assert_eq!(pending(&conn, "claimed", "g").await, 0);
    assert!(
        claimer.fetch(10).await.unwrap().is_empty(),
        "delivered once"
    );
    assert!(claimer.is_drained().await.unwrap());
    claimer.close().await.unwrap();
}

#[tokio::test]
async fn a_deleted_stream_is_consumed_again_from_its_start() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let (seen, w) = collector();
    // Default start (new entries): after the stream is deleted, the group is created again at
    // the start of the new stream, so nothing added in between is skipped.
    let broker = StreamBroker::new(&conn, "gone", "g")
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600));
    broker.ensure_group().await.unwrap();
    let rt = WorkerRuntime::new(broker, w).with_signal_handling(false);
    let stop = rt.cancellation_token();
    let h = tokio::spawn(rt.run());
    add_numbered(&conn, "gone", 10).await;
    eventually(Duration::from_secs(5), "the first 10", || async {
        seen.lock().unwrap().len() == 10
    })
    .await;
    let _: i64 = cmd(&conn, &["DEL", "gone"]).await;
    let later = add_numbered(&conn, "gone", 10).await;
    eventually(
        Duration::from_secs(10),
        "the 10 added after the DEL",
        || async { seen.lock().unwrap().len() == 20 },
    )
    .await;
    stop.cancel();
    h.await.unwrap().unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let ids: Vec<&str> = seen[10..].iter().map(|m| m.id()).collect();
    assert_eq!(ids, later.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_restarted_consumer_with_the_same_name_takes_back_its_entries() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    add_numbered(&conn, "named", 5).await;
    let named = |conn: &RedisConnection| {
        StreamBroker::with_consumer_name(conn, "named", "g", "pod-0")
            .with_start(GroupStart::Beginning)
            .with_maintenance_interval(Duration::from_millis(100))
            .with_heartbeat_ttl(Duration::from_millis(600))
    };
    // The first process takes three and dies at once; its heartbeat is still alive when the
    // next process under the same name starts, so nobody else would reclaim them.
    let first = named(&conn);
    let taken = first.fetch(3).await.unwrap();
    assert_eq!(taken.len(), 3);
    drop(first);

    let (seen, w) = collector();
    let s = within(10, "the restarted consumer", burst(named(&conn), w).run())
        .await
        .unwrap();
    assert_eq!(s.acked, 5);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let attempts: Vec<u32> = seen.iter().map(|m| m.attempt()).collect();
    assert_eq!(
        attempts,
        [2, 2, 2, 1, 1],
        "its own leftovers first, as a new attempt"
    );
    let first_ids: Vec<&str> = taken.iter().map(|d| d.message.id()).collect();
    let again: Vec<&str> = seen[..3].iter().map(|m| m.id()).collect();
    assert_eq!(again, first_ids);
    group_is_clean(&conn, "named", "g").await;
}

/// More leftovers than one claim batch (200) under a reused name: each is taken back once, none
/// is left behind.
#[tokio::test]
async fn a_restarted_consumer_takes_back_many_leftovers_once_each() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let ids = add_numbered(&conn, "named-many", 450).await;
    let named = |conn: &RedisConnection| {
        StreamBroker::with_consumer_name(conn, "named-many", "g", "pod-0")
            .with_maintenance_interval(Duration::from_millis(100))
            .with_heartbeat_ttl(Duration::from_millis(600))
    };
    let first = named(&conn);
    assert_eq!(first.fetch(450).await.unwrap().len(), 450);
    drop(first);

    let (seen, w) = collector();
    let s = within(30, "the restarted consumer", burst(named(&conn), w).run())
        .await
        .unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut got: Vec<&str> = seen.iter().map(|m| m.id()).collect();
    got.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(got.len(), want.len(), "each leftover delivered once");
    assert_eq!(got, want);
    assert_eq!(s.acked, 450);
    assert!(seen.iter().all(|m| m.attempt() == 2));
    group_is_clean(&conn, "named-many", "g").await;
}

#[tokio::test]
async fn stats_report_depth_in_flight_retries_and_dead_letters() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    add_numbered(&conn, "gauged", 10).await;
    let broker = fast(&conn, "gauged", "g");
    broker.ensure_group().await.unwrap();
    let s = broker.stats().await.unwrap().unwrap();
    assert_eq!((s.depth, s.in_flight, s.consumers), (10, 0, 0));
    assert!(s.oldest_age.is_some_and(|a| a < Duration::from_secs(60)));

    let got = broker.fetch(4).await.unwrap();
    assert_eq!(got.len(), 4);
    let s = broker.stats().await.unwrap().unwrap();
    assert_eq!((s.depth, s.in_flight, s.consumers), (6, 4, 1));

    let outcomes = [
        Outcome::Ack,
        Outcome::Ack,
        Outcome::Retry {
            delay: Duration::from_secs(60),
        },
        Outcome::DeadLetter {
            reason: "bad".into(),
        },
    ];
    let batch: Vec<Settlement<_>> = got
        .into_iter()
        .zip(outcomes)
        .map(|(d, outcome)| Settlement {
            token: d.token,
            message: d.message,
            outcome,
        })
        .collect();
    broker.settle(&batch).await.unwrap();
    broker.settle(&batch).await.unwrap(); // idempotent: nothing doubles
    let s = broker.stats().await.unwrap().unwrap();
    assert_eq!((s.depth, s.in_flight), (6, 0));
    assert_eq!((s.scheduled, s.dead_letters), (1, 1));
    // A deletion makes Redis 7 lose track of the group's lag: the entries are counted instead.
    let next: Value = cmd(&conn, &["XRANGE", "gauged", "-", "+", "COUNT", "5"]).await;
    let Value::Array(next) = next else {
        panic!("unexpected XRANGE reply")
    };
    let Value::Array(last) = &next[4] else {
        panic!("unexpected entry")
    };
    let id: String = redis::from_redis_value(last[0].clone()).unwrap();
    let _: i64 = cmd(&conn, &["XDEL", "gauged", &id]).await;
    let s = broker.stats().await.unwrap().unwrap();
    assert_eq!(s.depth, 5);
    broker.close().await.unwrap();
}

/// A failover to a replica loses the writes the old master had not replicated: an XACK lost so
/// leaves a processed entry pending for its live consumer, where nothing claims it (and a
/// burst worker would wait for it forever). After a connection error the broker sends its
/// recent settlements again.
#[tokio::test]
async fn acks_lost_with_a_connection_are_sent_again() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    add_numbered(&conn, "lost-acks", 10).await;
    let broker = fast(&conn, "lost-acks", "g");
    let got = broker.fetch(10).await.unwrap();
    assert_eq!(got.len(), 10);
    let settled: Vec<Settlement<pythia_redis::StreamEntryId>> = got
        .iter()
        .map(|d| Settlement {
            token: d.token,
            message: d.message.clone(),
            outcome: Outcome::Ack,
        })
        .collect();
    broker.settle(&settled).await.unwrap();
    assert_eq!(pending(&conn, "lost-acks", "g").await, 0);
    // What the promoted replica would hold: two acked entries still pending for the consumer.
    let _: () = cmd(&conn, &["XGROUP", "SETID", "lost-acks", "g", "0"]).await;
    let _: Value = cmd(
        &conn,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            broker.consumer(),
            "COUNT",
            "2",
            "STREAMS",
            "lost-acks",
            ">",
        ],
    )
    .await;
    broker.maintain().await.unwrap();
    assert_eq!(
        pending(&conn, "lost-acks", "g").await,
        2,
        "without a connection error nothing is sent again"
    );

    let _: i64 = cmd(&conn, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"]).await;
    eventually(
        Duration::from_secs(10),
        "the stale entries acked",
        || async {
            let _ = broker.maintain().await;
            pending(&conn, "lost-acks", "g").await == 0
        },
    )
    .await;
}

/// Many pipelines with some in flight while the next is built: every id comes back, in the
/// order of the messages, and the entries are in that order too.
#[tokio::test]
async fn pipelines_in_flight_return_every_id_in_order() {
    use pythia_redis::stream::producer::{PIPELINES_IN_FLIGHT, XADD_PIPELINE_CHUNK};
    let server = RedisServer::start();
    let conn = server.connect().await;
    let n = XADD_PIPELINE_CHUNK * (PIPELINES_IN_FLIGHT + 2) + 3;
    let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("{i}"))).collect();
    let producer = StreamProducer::new(&conn, "many");
    assert!(producer.add_many(&[]).await.unwrap().is_empty());
    let ids = producer.add_many(&msgs).await.unwrap();
    assert_eq!(ids.len(), n);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in sending order");
    let entries: redis::Value = cmd(&conn, &["XRANGE", "many", "-", "+"]).await;
    let redis::Value::Array(entries) = entries else {
        panic!("XRANGE: {entries:?}")
    };
    assert_eq!(entries.len(), n);
    for (i, (entry, id)) in entries.iter().zip(&ids).enumerate() {
        let redis::Value::Array(parts) = entry else {
            panic!("entry: {entry:?}")
        };
        let Some(redis::Value::BulkString(got_id)) = parts.first() else {
            panic!("entry id: {entry:?}")
        };
        assert_eq!(String::from_utf8_lossy(got_id), id.to_string());
        let Some(redis::Value::Array(fields)) = parts.get(1) else {
            panic!("fields: {entry:?}")
        };
        assert_eq!(
            fields.get(1),
            Some(&redis::Value::BulkString(i.to_string().into_bytes()))
        );
    }
    let _: i64 = cmd(&conn, &["HSET", "hashed", "f", "v"]).await;
    let e = StreamProducer::new(&conn, "hashed")
        .add_many(&msgs)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
}
