//! The sharded stream queue against a real redis-server and a real 3-master Redis Cluster:
//! round trips over shards spread across masters, exactly-once processing in normal
//! operation, per-shard retries and dead letters, per-shard reclaim of a dead consumer's
//! entries, per-key order, a clean shutdown, the layout check, and a throughput figure.
//!
//! Each scenario is one function run against a standalone server (one test each) and, in
//! turn, against one local cluster (one test for them all: a cluster takes seconds to start).
//!
//! ```sh
//! cargo test -p pythia-redis --test sharded_stream -- --nocapture
//! ```

use pythia_test_support as support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pythia_core::{
    Broker, BrokerErrorKind, Delivery, Message, Outcome, RetryPolicy, Settlement, Worker,
    WorkerError, WorkerRuntime, worker_fn,
};
use pythia_redis::{
    GroupStart, QueueKeys, RedisConnection, ShardEntryId, ShardedQueue, ShardedStreamBroker,
    ShardedStreamProducer,
};
use redis::Value;
use support::cluster::RedisCluster;
use support::{RedisServer, acks, burst, cmd, season};

const GROUP: &str = "g";

fn fast(conn: &RedisConnection, queue: &ShardedQueue) -> ShardedStreamBroker {
    ShardedStreamBroker::new(conn, queue, GROUP)
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600))
        .with_poll_interval(Duration::from_millis(50))
}

/// Fails the test instead of hanging it when a run does not finish.
async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}

type Seen = Arc<Mutex<Vec<Message>>>;

/// A worker that records every message it finished, in order (recorded in the poll that
/// completes the handler: a handler cut off by shutdown records nothing).
#[derive(Clone)]
struct Recorder {
    seen: Seen,
    delay: Duration,
    /// Once this many messages are recorded, later handlers hang (until a shutdown cuts them
    /// off): `usize::MAX` never.
    hang_after: usize,
}

impl Recorder {
    /// Handlers started once `n` messages are recorded never finish by themselves.
    fn hanging_after(self, n: usize) -> Self {
        Self {
            hang_after: n,
            ..self
        }
    }
}

impl Worker for Recorder {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.seen.lock().unwrap().len() >= self.hang_after {
            std::future::pending::<()>().await;
        }
        self.seen.lock().unwrap().push(msg.clone());
        Ok(())
    }
}

fn recorder(delay: Duration) -> (Seen, Recorder) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    (
        seen.clone(),
        Recorder {
            seen,
            delay,
            hang_after: usize::MAX,
        },
    )
}

fn numbered(n: usize) -> Vec<Message> {
    (0..n).map(|i| Message::new(i.to_string())).collect()
}

/// `XPENDING <stream> <group>` summary count.
async fn pending(conn: &RedisConnection, stream: &str) -> i64 {
    let v: Value = cmd(conn, &["XPENDING", stream, GROUP]).await;
    match v {
        Value::Array(parts) => match &parts[0] {
            Value::Int(n) => *n,
            other => panic!("unexpected XPENDING reply {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

async fn xlen(conn: &RedisConnection, key: &str) -> i64 {
    cmd(conn, &["XLEN", key]).await
}

async fn consumers(conn: &RedisConnection, stream: &str) -> Vec<String> {
    let v: redis::streams::StreamInfoConsumersReply =
        cmd(conn, &["XINFO", "CONSUMERS", stream, GROUP]).await;
    v.consumers.into_iter().map(|c| c.name).collect()
}

/// Every entry of a stream as (id, field → value).
async fn entries(conn: &RedisConnection, stream: &str) -> Vec<HashMap<String, Vec<u8>>> {
    let v: redis::streams::StreamRangeReply = cmd(conn, &["XRANGE", stream, "-", "+"]).await;
    v.ids
        .into_iter()
        .map(|e| {
            e.map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<Vec<u8>>(v).unwrap()))
                .collect()
        })
        .collect()
}

/// Nothing of the group is left in any shard but the streams, the groups and the dead
/// letters: nothing pending, no consumer, no heartbeat, schedule or consumer set.
async fn shards_are_clean(conn: &RedisConnection, queue: &ShardedQueue) {
    for stream in queue.streams() {
        assert_eq!(
            pending(conn, stream).await,
            0,
            "entries left pending in {stream}"
        );
        let left = consumers(conn, stream).await;
        assert!(left.is_empty(), "consumers left in {stream}: {left:?}");
        let keys = conn
            .scan_keys(&format!("pythia:q:{stream}:*"), 100)
            .await
            .unwrap();
        let keys: Vec<&String> = keys.iter().filter(|k| !k.ends_with(":dlq")).collect();
        assert!(keys.is_empty(), "left behind for {stream}: {keys:?}");
    }
}

/// Each id exactly once, every one of `ids`, all on their first attempt.
fn exactly_once(seen: &[Message], ids: &[String], what: &str) {
    let mut times: HashMap<&str, usize> = HashMap::new();
    for m in seen {
        *times.entry(m.id()).or_default() += 1;
        assert_eq!(
            m.attempt(),
            1,
            "{what}: {} on attempt {}",
            m.id(),
            m.attempt()
        );
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: processed more than once: {twice:?}"
    );
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !times.contains_key(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "{what}: never processed: {missing:?}");
    assert_eq!(times.len(), ids.len(), "{what}: unexpected ids");
}

// ---------------------------------------------------------------------------------------------
// Scenarios, each against the connection it is given, on queues named after `name`.

/// 2,000 messages round robin over 4 shards (500 each), consumed by two replicas: each message
/// processed exactly once, every shard used, nothing left behind.
async fn round_trip(conn: &RedisConnection, name: &str) {
    let queue = ShardedQueue::new(name, 4).unwrap();
    let producer = ShardedStreamProducer::new(conn, &queue);
    let msgs = numbered(2000);
    let tokens = producer.add_many(&msgs).await.unwrap();
    assert_eq!(tokens.len(), 2000);
    for (shard, stream) in queue.streams().iter().enumerate() {
        assert_eq!(
            xlen(conn, stream).await,
            500,
            "round robin fills {stream} evenly"
        );
        let on_shard = tokens.iter().filter(|t| t.shard() == shard).count();
        assert_eq!(on_shard, 500);
    }
    let ids: Vec<String> = msgs.iter().map(|m| m.id().to_owned()).collect();

    let (seen, w) = recorder(Duration::ZERO);
    let a = tokio::spawn(
        burst(fast(conn, &queue), w.clone())
            .with_concurrency(32)
            .run(),
    );
    let b = tokio::spawn(burst(fast(conn, &queue), w).with_concurrency(32).run());
    let a = within(60, "replica a", a).await.unwrap().unwrap();
    let b = within(60, "replica b", b).await.unwrap().unwrap();
    assert_eq!(a.acked + b.acked, 2000);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    exactly_once(&seen, &ids, "round trip");
    assert!(
        seen.iter().all(|m| m.source().name() == name),
        "messages carry the logical queue"
    );
    shards_are_clean(conn, &queue).await;
    let layout: String = cmd(conn, &["GET", &queue.layout_key("pythia")]).await;
    assert_eq!(layout, queue.streams().join("\n"));
}

/// A retry goes back to the shard that failed it, and a dead letter to that shard's own
/// dead-letter stream; the other shards see neither.
async fn retries_and_dead_letters_stay_in_their_shard(conn: &RedisConnection, name: &str) {
    let queue = ShardedQueue::new(name, 4).unwrap();
    let broker = fast(conn, &queue);
    broker.ensure_group().await.unwrap();
    let producer = ShardedStreamProducer::new(conn, &queue);
    let sent = producer
        .add_keyed("customer 7", &Message::new("flaky").with_header("k", "v"))
        .await
        .unwrap();
    let shard = queue.shard_for_key("customer 7");
    assert_eq!(sent.shard(), shard);

    let got = broker.fetch(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].token, sent);
    let d = got.into_iter().next().unwrap();
    let retry = [Settlement {
        token: d.token,
        message: d.message,
        outcome: Outcome::Retry {
            delay: Duration::ZERO,
        },
    }];
    broker.settle(&retry).await.unwrap();
    broker.settle(&retry).await.unwrap(); // idempotent
    for (i, s) in broker.shards().iter().enumerate() {
        let n: i64 = cmd(conn, &["ZCARD", &s.keys().scheduled()]).await;
        assert_eq!(n, i64::from(i == shard), "shard {i}'s schedule");
    }
    assert_eq!(broker.promote_due_retries().await.unwrap(), 1);
    let got = broker.fetch(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].token.shard(),
        shard,
        "the retry is back in its shard"
    );
    assert_eq!(got[0].message.attempt(), 2);
    assert_eq!(got[0].message.header("k"), Some("v"));
    let d = got.into_iter().next().unwrap();
    let dead = [Settlement {
        token: d.token,
        message: d.message,
        outcome: Outcome::DeadLetter {
            reason: "gave up".into(),
        },
    }];
    broker.settle(&dead).await.unwrap();
    for (i, s) in broker.shards().iter().enumerate() {
        let dlq = s.keys().dead_letters();
        assert_eq!(xlen(conn, &dlq).await, i64::from(i == shard), "{dlq}");
    }
    let dlq = entries(conn, &broker.shards()[shard].keys().dead_letters()).await;
    assert_eq!(dlq[0]["body"], b"flaky");
    assert_eq!(dlq[0]["pythia-error"], b"gave up");
    assert_eq!(dlq[0]["pythia-attempt"], b"2");
    let stats = broker.stats().await.unwrap().unwrap();
    assert_eq!(
        (stats.dead_letters, stats.in_flight, stats.depth),
        (1, 0, 0)
    );
    assert!(broker.is_drained().await.unwrap());
    broker.close().await.unwrap();
    shards_are_clean(conn, &queue).await;
}

/// Under the runtime: a message that always fails is retried in its shard and ends in that
/// shard's dead-letter stream after its attempts; everything else is acked once.
async fn a_failing_message_lands_in_its_shards_dead_letters(conn: &RedisConnection, name: &str) {
    let queue = ShardedQueue::new(name, 4).unwrap();
    let producer = ShardedStreamProducer::new(conn, &queue);
    let good: Vec<Message> = numbered(100);
    producer.add_many(&good).await.unwrap();
    let poison = producer
        .add_keyed("poison", &Message::new("poison"))
        .await
        .unwrap();
    let w = worker_fn(|m: Message| async move {
        if m.body().as_ref() == b"poison" {
            return Err(WorkerError::retry("downstream refuses it"));
        }
        Ok(())
    });
    let rt = burst(fast(conn, &queue), w).with_retry_policy(
        RetryPolicy::default()
            .with_max_attempts(3)
            .with_initial_delay(Duration::from_millis(20)),
    );
    let s = within(60, "the run", rt.run()).await.unwrap();
    assert_eq!((s.acked, s.retried, s.dead_lettered), (100, 2, 1));
    for (i, stream) in queue.streams().iter().enumerate() {
        let dlq = QueueKeys::new("pythia", stream).dead_letters();
        assert_eq!(
            xlen(conn, &dlq).await,
            i64::from(i == poison.shard()),
            "{dlq}"
        );
    }
    let dlq = entries(
        conn,
        &QueueKeys::new("pythia", queue.stream(poison.shard())).dead_letters(),
    )
    .await;
    assert_eq!(dlq[0]["body"], b"poison");
    assert_eq!(dlq[0]["pythia-attempt"], b"3");
    let error = String::from_utf8(dlq[0]["pythia-error"].clone()).unwrap();
    assert!(error.contains("downstream refuses it"), "{error}");
    shards_are_clean(conn, &queue).await;
}

/// A consumer that took entries from every shard dies (its heartbeats expire): another one
/// claims them shard by shard and processes each once more, with the attempt raised.
async fn a_dead_consumers_entries_are_reclaimed_in_every_shard(conn: &RedisConnection, name: &str) {
    let queue = ShardedQueue::new(name, 4).unwrap();
    let producer = ShardedStreamProducer::new(conn, &queue);
    let msgs = numbered(40);
    producer.add_many(&msgs).await.unwrap();
    let ids: Vec<String> = msgs.iter().map(|m| m.id().to_owned()).collect();

    let dying = fast(conn, &queue);
    let got = dying.fetch(100).await.unwrap();
    assert_eq!(got.len(), 40, "one fetch reads every shard");
    let shards: HashSet<usize> = got.iter().map(|d| d.token.shard()).collect();
    assert_eq!(shards.len(), 4);
    for (s, stream) in dying.shards().iter().zip(queue.streams()) {
        assert_eq!(pending(conn, stream).await, 10);
        // Dies without a word: no hand-back, no close; its heartbeats just stop.
        let _: i64 = cmd(conn, &["DEL", &s.keys().heartbeat(dying.consumer())]).await;
    }
    let dead_name = dying.consumer().to_owned();
    drop((dying, got));

    let heir = fast(conn, &queue);
    season(Duration::from_millis(600), || heir.maintain()).await; // claims on the way
    heir.reclaim_dead_consumers().await.unwrap();
    let (seen, w) = recorder(Duration::ZERO);
    let s = within(30, "the heir", burst(heir, w).run()).await.unwrap();
    assert_eq!(s.acked, 40);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.iter().all(|m| m.attempt() == 2),
        "a death counts an attempt"
    );
    let unique: HashSet<&str> = seen.iter().map(|m| m.id()).collect();
    assert_eq!(unique.len(), 40);
    assert!(ids.iter().all(|id| unique.contains(id.as_str())));
    for stream in queue.streams() {
        let left = consumers(conn, stream).await;
        assert!(
            !left.contains(&dead_name),
            "{dead_name} removed from {stream}"
        );
    }
    shards_are_clean(conn, &queue).await;
}

/// Messages produced by key stay in their key's shard, in order, and one consumer with
/// concurrency 1 processes each key's messages in the order they were produced.
async fn keyed_messages_keep_their_order(conn: &RedisConnection, name: &str) {
    let queue = ShardedQueue::new(name, 4).unwrap();
    let producer = ShardedStreamProducer::new(conn, &queue);
    let keys: Vec<String> = (0..12).map(|k| format!("customer-{k}")).collect();
    let mut sent = 0;
    for round in 0..5 {
        let msgs: Vec<Message> = (0..60)
            .map(|i| {
                let key = &keys[(i * 7 + round) % keys.len()];
                Message::new(format!("{}", round * 60 + i)).with_header("key", key.as_str())
            })
            .collect();
        let tokens = producer
            .add_many_keyed(&msgs, |m| m.header("key").unwrap().to_owned())
            .await
            .unwrap();
        for (m, t) in msgs.iter().zip(&tokens) {
            assert_eq!(t.shard(), queue.shard_for_key(m.header("key").unwrap()));
        }
        sent += msgs.len();
    }
    producer
        .add_keyed(
            "customer-0",
            &Message::new("300").with_header("key", "customer-0"),
        )
        .await
        .unwrap();
    sent += 1;
    let used: HashSet<usize> = keys.iter().map(|k| queue.shard_for_key(k)).collect();
    assert!(used.len() >= 2, "12 keys use several shards");
    // In Redis: each key in exactly one stream, in order.
    let mut stream_of: HashMap<String, String> = HashMap::new();
    for stream in queue.streams() {
        let mut last: HashMap<String, u64> = HashMap::new();
        for e in entries(conn, stream).await {
            let key = String::from_utf8(e["key"].clone()).unwrap();
            let n: u64 = String::from_utf8(e["body"].clone())
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                last.get(&key).is_none_or(|l| *l < n),
                "{key} out of order in {stream}"
            );
            last.insert(key.clone(), n);
            let first = stream_of
                .entry(key.clone())
                .or_insert_with(|| stream.to_string());
            assert_eq!(first, stream, "{key} in two shards");
        }
    }

    let (seen, w) = recorder(Duration::ZERO);
    let rt = burst(fast(conn, &queue), w).with_concurrency(1);
    let s = within(60, "the run", rt.run()).await.unwrap();
    assert_eq!(s.acked as usize, sent);
    let mut last: HashMap<String, u64> = HashMap::new();
    for m in seen.lock().unwrap().iter() {
        let key = m.header("key").unwrap().to_owned();
        let n: u64 = m.body_str().unwrap().parse().unwrap();
        assert!(
            last.get(&key).is_none_or(|l| *l < n),
            "{key}: {n} after {last:?}"
        );
        last.insert(key, n);
    }
    assert_eq!(last.len(), keys.len());
    shards_are_clean(conn, &queue).await;
}

/// A shutdown mid-run hands back what was fetched and not finished, to the shard it came
/// from, and leaves no consumer, pending entry or heartbeat in any shard; a second run
/// finishes the rest, each message exactly once and on its first attempt.
async fn a_shutdown_strands_nothing(conn: &RedisConnection, name: &str) {
    let queue = ShardedQueue::new(name, 4).unwrap();
    let producer = ShardedStreamProducer::new(conn, &queue);
    let msgs = numbered(400);
    producer.add_many(&msgs).await.unwrap();
    let ids: Vec<String> = msgs.iter().map(|m| m.id().to_owned()).collect();

    // After 40, handlers hang: the shutdown surely finds some running, to cut off.
    let (seen, slow) = recorder(Duration::from_millis(20));
    let rt = WorkerRuntime::new(fast(conn, &queue), slow.hanging_after(40))
        .with_signal_handling(false)
        .with_concurrency(8)
        .with_batch_size(64)
        .with_shutdown_grace(Duration::ZERO); // cut off what runs, hand it back
    let stop = rt.cancellation_token();
    let status = rt.status();
    let h = tokio::spawn(rt.run());
    support::eventually(Duration::from_secs(20), "40 processed", || async {
        seen.lock().unwrap().len() >= 40
    })
    .await;
    support::eventually(Duration::from_secs(20), "handlers running", || async {
        status.in_flight() > 0
    })
    .await;
    stop.cancel();
    let first = within(30, "the shutdown", h).await.unwrap().unwrap();
    assert!(
        first.released > 0,
        "prefetched and cut-off entries were handed back"
    );
    assert_eq!(first.unsettled, 0);
    shards_are_clean(conn, &queue).await;
    let mut left = 0;
    for stream in queue.streams() {
        left += xlen(conn, stream).await;
    }
    assert!(
        left >= 400 - first.acked as i64,
        "what was not done is back in the shards"
    );

    let (rest, fast_worker) = recorder(Duration::ZERO);
    let second = within(
        60,
        "the second run",
        burst(fast(conn, &queue), fast_worker).run(),
    )
    .await
    .unwrap();
    assert_eq!(first.acked + second.acked, 400);
    let mut all = std::mem::take(&mut *seen.lock().unwrap());
    all.extend(std::mem::take(&mut *rest.lock().unwrap()));
    exactly_once(&all, &ids, "shutdown and restart");
    shards_are_clean(conn, &queue).await;
}

/// An idle consumer's fetch returns within about the poll interval, and an entry on any shard
/// is found by the next fetch.
async fn idle_fetches_are_short_and_see_every_shard(conn: &RedisConnection, name: &str) {
    let queue = ShardedQueue::new(name, 4).unwrap();
    let broker = fast(conn, &queue);
    broker.ensure_group().await.unwrap();
    broker.fetch(10).await.unwrap(); // connections opened
    for shard in 0..4 {
        let t = Instant::now();
        assert!(broker.fetch(10).await.unwrap().is_empty());
        let idle = t.elapsed();
        assert!(
            idle < Duration::from_millis(600),
            "an empty fetch took {idle:?}"
        );
        let _: String = cmd(conn, &["XADD", queue.stream(shard), "*", "body", "x"]).await;
        let t = Instant::now();
        let mut got = Vec::new();
        while got.is_empty() {
            got = broker.fetch(10).await.unwrap();
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "shard {shard} never read"
            );
        }
        assert_eq!(got[0].token.shard(), shard);
        ack_all(&broker, got).await;
    }
    broker.close().await.unwrap();
    shards_are_clean(conn, &queue).await;
}

/// Acknowledges every delivery of `got`.
async fn ack_all(broker: &ShardedStreamBroker, got: Vec<Delivery<ShardEntryId>>) {
    broker.settle(&acks(got)).await.unwrap();
}

/// A consumer configured with another shard count than the stored layout fails with a
/// configuration error instead of reading streams nobody writes.
async fn a_different_shard_count_is_refused(conn: &RedisConnection, name: &str) {
    let four = ShardedQueue::new(name, 4).unwrap();
    ShardedStreamProducer::new(conn, &four)
        .add(&Message::new("x"))
        .await
        .unwrap();
    let two = ShardedQueue::new(name, 2).unwrap();
    let err = ShardedStreamBroker::new(conn, &two, GROUP)
        .fetch(10)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BrokerErrorKind::Config, "{err}");
    assert!(err.to_string().contains("4 shards"), "{err}");
    let err = ShardedStreamProducer::new(conn, &two)
        .add(&Message::new("y"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BrokerErrorKind::Config, "{err}");
}

/// Blocks every client of the server for `ms` (`CLIENT PAUSE … ALL`): reads sent meanwhile
/// answer only afterwards.
async fn pause_server(conn: &RedisConnection, ms: u64) {
    let _: () = cmd(conn, &["CLIENT", "PAUSE", &ms.to_string(), "ALL"]).await;
}

/// A queue of two shards holding ten numbered messages, and a consumer in its group.
async fn ten_on_two_shards(
    conn: &RedisConnection,
    name: &str,
) -> (ShardedQueue, ShardedStreamBroker, Vec<Message>) {
    let queue = ShardedQueue::new(name, 2).unwrap();
    let broker = fast(conn, &queue);
    broker.ensure_group().await.unwrap();
    let msgs = numbered(10);
    ShardedStreamProducer::new(conn, &queue)
        .add_many(&msgs)
        .await
        .unwrap();
    (queue, broker, msgs)
}

/// A read that outlasts its fetch is not cancelled: the fetch returns without it, and its
/// entries come with a later fetch.
async fn a_slow_read_is_delivered_by_a_later_fetch(conn: &RedisConnection, name: &str) {
    let (queue, broker, msgs) = ten_on_two_shards(conn, name).await;
    // Longer than a fetch waits for a read (250 ms past its block time, twice here: one
    // shard in the first round, the other in the second).
    pause_server(conn, 1500).await;
    let t = Instant::now();
    let early = broker.fetch(100).await.unwrap();
    assert!(early.is_empty(), "the server is paused");
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "the fetch did not wait for the pause"
    );
    let mut got = Vec::new();
    while got.len() < 10 {
        got.extend(broker.fetch(100).await.unwrap());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the parked reads never came back"
        );
    }
    assert_eq!(got.len(), 10);
    let ids: HashSet<&str> = got.iter().map(|d| d.message.id()).collect();
    assert!(msgs.iter().all(|m| ids.contains(m.id())));
    ack_all(&broker, got).await;
    assert!(broker.is_drained().await.unwrap());
    broker.close().await.unwrap();
    shards_are_clean(conn, &queue).await;
}

/// Closing while reads are still running waits for them and hands their entries back to
/// their shards: nothing is stranded, and the next consumer gets every entry on its first
/// attempt.
async fn close_hands_back_what_running_reads_return(conn: &RedisConnection, name: &str) {
    let (queue, broker, msgs) = ten_on_two_shards(conn, name).await;
    pause_server(conn, 1000).await;
    assert!(
        broker.fetch(100).await.unwrap().is_empty(),
        "the server is paused"
    );
    broker.close().await.unwrap();
    shards_are_clean(conn, &queue).await;
    let mut back = 0;
    for stream in queue.streams() {
        back += xlen(conn, stream).await;
    }
    assert!(back >= 10, "the entries are back in their shards");

    let (seen, w) = recorder(Duration::ZERO);
    let s = within(30, "the next consumer", burst(fast(conn, &queue), w).run())
        .await
        .unwrap();
    assert_eq!(s.acked, 10);
    let ids: Vec<String> = msgs.iter().map(|m| m.id().to_owned()).collect();
    exactly_once(&seen.lock().unwrap(), &ids, "after the hand-back");
    shards_are_clean(conn, &queue).await;
}

/// Messages queued before any consumer ever ran are processed: each shard's group starts at the
/// beginning of its stream by default.
async fn a_new_group_gets_what_was_queued_before_it(conn: &RedisConnection, name: &str) {
    let queue = ShardedQueue::new(name, 3).unwrap();
    let msgs = numbered(30);
    ShardedStreamProducer::new(conn, &queue)
        .add_many(&msgs)
        .await
        .unwrap();
    let broker = ShardedStreamBroker::new(conn, &queue, GROUP)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600))
        .with_poll_interval(Duration::from_millis(50));
    let (seen, w) = recorder(Duration::ZERO);
    let s = within(30, "the burst", burst(broker, w).run())
        .await
        .unwrap();
    assert_eq!(s.acked, 30);
    let ids: Vec<String> = msgs.iter().map(|m| m.id().to_owned()).collect();
    exactly_once(
        &seen.lock().unwrap(),
        &ids,
        "queued before the first worker",
    );
    shards_are_clean(conn, &queue).await;
}

// ---------------------------------------------------------------------------------------------
// On a standalone server: one test per scenario.

macro_rules! standalone {
    ($($scenario:ident),* $(,)?) => {
        mod standalone {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let server = super::RedisServer::start();
                    let conn = server.connect().await;
                    super::$scenario(&conn, "jobs").await;
                }
            )*
        }
    };
}

standalone!(
    round_trip,
    retries_and_dead_letters_stay_in_their_shard,
    a_failing_message_lands_in_its_shards_dead_letters,
    a_dead_consumers_entries_are_reclaimed_in_every_shard,
    keyed_messages_keep_their_order,
    a_shutdown_strands_nothing,
    idle_fetches_are_short_and_see_every_shard,
    a_different_shard_count_is_refused,
    a_slow_read_is_delivered_by_a_later_fetch,
    close_hands_back_what_running_reads_return,
    a_new_group_gets_what_was_queued_before_it,
);

// ---------------------------------------------------------------------------------------------
// On a local 3-master cluster: every scenario in turn on one cluster.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_every_scenario_holds() {
    let t = Instant::now();
    let cluster = RedisCluster::start();
    eprintln!(
        "SHARDED cluster started in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let config = pythia_redis::RedisConfig::from_url(&cluster.seed_urls())
        .unwrap()
        .with_cluster()
        .with_block_timeout(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_secs(1));
    let conn = RedisConnection::connect(config).await.unwrap();
    assert!(conn.is_cluster());

    // The shards of a 4-shard queue land on several masters, as CLUSTER KEYSLOT says.
    let queue = ShardedQueue::new("orders", 4).unwrap();
    let mut masters = HashSet::new();
    for stream in queue.streams() {
        let slot: i64 = cmd(&conn, &["CLUSTER", "KEYSLOT", stream]).await;
        let its_keys: i64 = cmd(
            &conn,
            &[
                "CLUSTER",
                "KEYSLOT",
                &QueueKeys::new("pythia", stream).dead_letters(),
            ],
        )
        .await;
        assert_eq!(slot, its_keys, "{stream}'s own keys share its slot");
        masters.insert(cluster.master_port_for_key(stream));
        eprintln!(
            "SHARDED {stream} slot {slot} on {}",
            cluster.master_port_for_key(stream)
        );
    }
    assert!(
        masters.len() >= 2,
        "4 shards on {} master(s)",
        masters.len()
    );
    assert_eq!(
        masters.len(),
        3,
        "evenly spread names reach all three masters"
    );

    macro_rules! scenarios {
        ($($scenario:ident),* $(,)?) => {
            $(
                let t = Instant::now();
                $scenario(&conn, concat!("c-", stringify!($scenario))).await;
                let took = t.elapsed().as_secs_f64();
                eprintln!("SHARDED cluster {} ok in {took:.1}s", stringify!($scenario));
            )*
        };
    }
    scenarios!(
        round_trip,
        retries_and_dead_letters_stay_in_their_shard,
        a_failing_message_lands_in_its_shards_dead_letters,
        a_dead_consumers_entries_are_reclaimed_in_every_shard,
        keyed_messages_keep_their_order,
        a_shutdown_strands_nothing,
        idle_fetches_are_short_and_see_every_shard,
        a_different_shard_count_is_refused,
    );
}

// ---------------------------------------------------------------------------------------------
// Throughput, 1 shard against 4, on one standalone server (a figure, not a bound). Consuming
// is timed from the first fetch to the last settle (`RunSummary::active`): the burst mode's
// last idle read and drain check are not part of it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_of_one_and_four_shards() {
    const N: usize = 100_000;
    let server = RedisServer::start();
    let conn = server.connect().await;
    let msgs = numbered(N);
    let mut figures = Vec::new();
    for shards in [1, 4] {
        let queue = ShardedQueue::new(&format!("bench{shards}"), shards).unwrap();
        let t = Instant::now();
        ShardedStreamProducer::new(&conn, &queue)
            .add_many(&msgs)
            .await
            .unwrap();
        let produce = N as f64 / t.elapsed().as_secs_f64();
        let noop = worker_fn(|_m: Message| async { Ok(()) });
        let rt = burst(fast(&conn, &queue), noop)
            .with_concurrency(1000)
            .with_batch_size(1000);
        let s = within(120, "the run", rt.run()).await.unwrap();
        let consume = s.active_rate();
        assert_eq!(s.acked as usize, N);
        eprintln!(
            "SHARDED throughput {shards} shard(s): produce {produce:.0}/s, consume {consume:.0}/s"
        );
        figures.push(consume);
    }
    // The plain stream broker, for reference (last: the first run warms the server up).
    pythia_redis::StreamProducer::new(&conn, "plain")
        .add_many(&msgs)
        .await
        .unwrap();
    let plain =
        pythia_redis::StreamBroker::new(&conn, "plain", GROUP).with_start(GroupStart::Beginning);
    let rt = burst(plain, worker_fn(|_m: Message| async { Ok(()) }))
        .with_concurrency(1000)
        .with_batch_size(1000);
    let s = within(120, "the plain run", rt.run()).await.unwrap();
    assert_eq!(s.acked as usize, N);
    eprintln!(
        "SHARDED throughput plain stream: consume {:.0}/s",
        s.active_rate()
    );
    assert!(figures.iter().all(|f| *f > 0.0));
}

// ---------------------------------------------------------------------------------------------
// A shard's master dies mid-run: the other shards keep being consumed through the failover,
// and every message is processed (at least once: acks the dead master had not replicated
// may be lost, which redelivers).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_shard_master_failover_does_not_stop_the_others() {
    const N: usize = 3000;
    let mut cluster = RedisCluster::start();
    let config = pythia_redis::RedisConfig::from_url(&cluster.seed_urls())
        .unwrap()
        .with_cluster()
        .with_block_timeout(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_secs(1));
    let conn = RedisConnection::connect(config).await.unwrap();
    let queue = ShardedQueue::new("failover", 4).unwrap();
    let broker = fast(&conn, &queue);
    broker.ensure_group().await.unwrap();
    let msgs = numbered(N);
    let tokens = ShardedStreamProducer::new(&conn, &queue)
        .add_many(&msgs)
        .await
        .unwrap();
    // Every master has its shards' entries on its replica before anything is killed.
    let _: Value = cmd(&conn, &["WAIT", "1", "2000"]).await;
    let shard_of: HashMap<String, usize> = msgs
        .iter()
        .zip(&tokens)
        .map(|(m, t)| (m.id().to_owned(), t.shard()))
        .collect();
    let victim = queue.stream(0).to_owned();
    let victim_port = cluster.master_port_for_key(&victim);
    let spared: Vec<usize> = (0..4)
        .filter(|s| cluster.master_port_for_key(queue.stream(*s)) != victim_port)
        .collect();
    assert!(!spared.is_empty());

    let (seen, w) = recorder(Duration::from_millis(5));
    let rt = WorkerRuntime::new(broker, w)
        .with_signal_handling(false)
        .with_concurrency(8);
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    support::eventually(Duration::from_secs(20), "300 processed", || async {
        seen.lock().unwrap().len() >= 300
    })
    .await;
    let spared_done = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|m| spared.contains(&shard_of[m.id()]))
            .count()
    };
    let before = spared_done(&seen);
    let took = cluster.kill_master_for_key(&victim);
    let during = spared_done(&seen) - before;
    eprintln!(
        "SHARDED failover of {victim}'s master took {:.1}s; meanwhile {during} messages of the \
         other masters' shards were processed",
        took.as_secs_f64()
    );
    assert!(
        during > 0,
        "the other shards kept going during the failover"
    );

    let all: HashSet<String> = msgs.iter().map(|m| m.id().to_owned()).collect();
    support::eventually(
        Duration::from_secs(60),
        "every message processed",
        || async {
            let seen = seen.lock().unwrap();
            let done: HashSet<&str> = seen.iter().map(|m| m.id()).collect();
            all.iter().all(|id| done.contains(id.as_str()))
        },
    )
    .await;
    stop.cancel();
    let s = within(30, "the shutdown", run).await.unwrap().unwrap();
    let twice = seen.lock().unwrap().len() - N;
    eprintln!("SHARDED after the failover: {s}; {twice} processed twice");
}
