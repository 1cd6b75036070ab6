//! [`QueueGate`] against a real redis-server: pause and resume, the shared rate limit, and a
//! handler's "rate limited by the downstream" throttling the queue on every replica.

use pythia_test_support as support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{
    Broker, CancellationToken, Message, RetryPolicy, WorkerError, WorkerRuntime, worker_fn,
};
use pythia_redis::gate::{self, POLL_INTERVAL};
use pythia_redis::{ListProducer, QueueGate, RateLimit, ReliableListBroker};
use support::{RedisServer, acks, cmd};
use tokio::time::Instant;

async fn fill(conn: &pythia_redis::RedisConnection, queue: &str, n: usize) {
    let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("m{i}"))).collect();
    ListProducer::new(conn, queue)
        .push_many(&msgs)
        .await
        .unwrap();
}

/// Messages per second fetched from 250 ms after the first fetch (the full budget's burst, two
/// batches, is spent by then) to the last.
fn steady_rate(sorted: &[Instant]) -> f64 {
    let from = sorted[0] + Duration::from_millis(250);
    let last = *sorted.last().unwrap();
    let n = sorted.iter().filter(|&&t| t > from).count() as f64;
    n / last.duration_since(from).as_secs_f64()
}

#[tokio::test]
async fn a_paused_queue_fetches_nothing_until_resumed_and_settles_what_it_holds() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    fill(&conn, "jobs", 10).await;
    let g = QueueGate::new(&conn, ReliableListBroker::new(&conn, "jobs"));
    let held = g.fetch(2).await.unwrap();
    assert_eq!(held.len(), 2);

    assert!(gate::pause(&conn, "jobs").await.unwrap());
    assert!(!gate::pause(&conn, "jobs").await.unwrap(), "paused already");
    assert!(gate::is_paused(&conn, "jobs").await.unwrap());
    let flag: Option<String> = cmd(&conn, &["GET", "pythia:{jobs}:paused"]).await;
    assert!(flag.is_some());

    // Within one poll interval the gate sees it, and from then on fetches nothing.
    let paused_at = Instant::now();
    let mut fetched_after = 0;
    while paused_at.elapsed() < POLL_INTERVAL * 3 {
        let got = g.fetch(2).await.unwrap();
        if paused_at.elapsed() > POLL_INTERVAL + Duration::from_millis(100) {
            fetched_after += got.len();
        } else {
            g.release(got).await.unwrap();
        }
    }
    assert_eq!(fetched_after, 0, "fetched while paused");
    assert!(g.is_paused());
    // What it holds still settles.
    let settle = acks(held);
    g.settle(&settle).await.unwrap();

    assert!(gate::resume(&conn, "jobs").await.unwrap());
    assert!(
        !gate::resume(&conn, "jobs").await.unwrap(),
        "resumed already"
    );
    let resumed_at = Instant::now();
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(
            resumed_at.elapsed() < Duration::from_secs(2),
            "never resumed"
        );
        got = g.fetch(8).await.unwrap();
    }
    assert!(!g.is_paused());
    assert_eq!(got.len(), 8, "nothing lost: the 8 not acked are there");
}

/// Three gates (three replicas' worth) on one queue at 100/s for ~2.5 s: together they fetch
/// within 5 % of the limit over the window they were fetching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_rate_limit() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    fill(&conn, "jobs", 2000).await;
    let limit = RateLimit::per_second(100);
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let stop = Instant::now() + Duration::from_millis(2500);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let conn = server.connect().await;
        let stamps = Arc::clone(&stamps);
        tasks.push(tokio::spawn(async move {
            let g = QueueGate::new(&conn, ReliableListBroker::new(&conn, "jobs"))
                .with_rate_limit(limit);
            while Instant::now() < stop {
                let got = g.fetch(50).await.unwrap();
                let now = Instant::now();
                stamps.lock().unwrap().extend(got.iter().map(|_| now));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut stamps = stamps.lock().unwrap().clone();
    stamps.sort();
    let rate = steady_rate(&stamps);
    assert!(
        (rate - 100.0).abs() <= 5.0,
        "aggregate rate {rate:.1}/s against a limit of 100/s ({} fetched)",
        stamps.len()
    );
}

/// A handler that gets "429" throttles the queue: this replica and another stop fetching for
/// the time asked, and the message is retried after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_handler_throttles_the_queue_on_every_replica() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    fill(&conn, "jobs", 1).await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let limited = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = worker_fn(move |m: Message| {
        seen.lock().unwrap().push((Instant::now(), m.attempt()));
        let first = !limited.swap(true, Ordering::Relaxed);
        async move {
            if first {
                Err(WorkerError::rate_limited(
                    Duration::from_millis(1500),
                    "429",
                ))
            } else {
                Ok(())
            }
        }
    });
    let stop = CancellationToken::new();
    let broker = QueueGate::new(&conn, ReliableListBroker::new(&conn, "jobs"));
    let run = tokio::spawn(
        WorkerRuntime::new(broker, worker)
            // One attempt only: a rate-limited message must not use it up.
            .with_retry_policy(RetryPolicy::default().with_max_attempts(1))
            .with_signal_handling(false)
            .with_cancellation(stop.clone())
            .run(),
    );
    // The throttle reaches Redis...
    let mut ttl = 0i64;
    let deadline = Instant::now() + Duration::from_secs(3);
    while ttl <= 0 {
        assert!(Instant::now() < deadline, "no throttle in Redis");
        ttl = cmd(&conn, &["PTTL", "pythia:{jobs}:throttled"]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and another replica fetches nothing while it lasts, though messages wait.
    fill(&conn, "jobs", 5).await;
    let other = QueueGate::new(&conn, ReliableListBroker::new(&conn, "jobs"));
    let fetched = AtomicU32::new(0);
    while cmd::<i64>(&conn, &["PTTL", "pythia:{jobs}:throttled"]).await > 200 {
        fetched.fetch_add(
            other.fetch(5).await.unwrap().len() as u32,
            Ordering::Relaxed,
        );
    }
    assert_eq!(
        fetched.load(Ordering::Relaxed),
        0,
        "the other replica fetched while throttled"
    );
    other.close().await.unwrap();

    // The message comes back after the pause, handed back without an attempt counted.
    let deadline = Instant::now() + Duration::from_secs(5);
    while calls.lock().unwrap().len() < 7 {
        assert!(
            Instant::now() < deadline,
            "not all processed: {:?}",
            calls.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(
        (summary.acked, summary.retried, summary.dead_lettered),
        (6, 1, 0)
    );
    let dead: i64 = cmd(&conn, &["LLEN", "pythia:{jobs}:dlq"]).await;
    assert_eq!(dead, 0);
    let calls = calls.lock().unwrap();
    assert!(calls.iter().all(|(_, a)| *a == 1), "{calls:?}");
    let (t0, _) = calls[0];
    let retry = &calls[1];
    assert!(
        retry.0.duration_since(t0) >= Duration::from_millis(1500),
        "retried after {:?}",
        retry.0.duration_since(t0)
    );
    // Nothing else ran during the throttle.
    assert!(
        calls[1..]
            .iter()
            .all(|(t, _)| t.duration_since(t0) >= Duration::from_millis(1400)),
        "{calls:?}"
    );
}

/// The gate's cost when nothing is paused or limited: one script call per poll interval, not
/// one per fetch. Over ~2 s of back-to-back fetches of one message each, a list broker (whose
/// fetch is a plain `RPOP`) behind the gate runs at most 2 s / 500 ms + 1 scripts.
#[tokio::test]
async fn an_idle_gate_asks_redis_once_per_poll_interval_not_per_fetch() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    fill(&conn, "jobs", 100_000).await;
    let g = QueueGate::new(&conn, pythia_redis::ListBroker::new(&conn, "jobs"));
    let _: () = cmd(&conn, &["CONFIG", "RESETSTAT"]).await;
    let start = Instant::now();
    let mut fetches = 0;
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(g.fetch(1).await.unwrap().len(), 1);
        fetches += 1;
    }
    let stats: String = cmd(&conn, &["INFO", "commandstats"]).await;
    let calls = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    let scripts = calls("evalsha") + calls("eval");
    assert!(fetches > 50, "{fetches} fetches");
    assert!(
        (1..=5).contains(&scripts),
        "{scripts} script calls for {fetches} fetches:\n{stats}"
    );
}

/// At a high limit the replicas take tokens in batches: three gates over list brokers (whose
/// fetch runs no script) at 2,000/s for 2 s call the rate-limit script a few hundred times at
/// most, not once per message, and still hold the rate within 5 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_take_tokens_in_batches_at_a_high_limit() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    fill(&conn, "jobs", 20_000).await;
    let limit = RateLimit::per_second(2000);
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let _: () = cmd(&conn, &["CONFIG", "RESETSTAT"]).await;
    let stop = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let conn = server.connect().await;
        let stamps = Arc::clone(&stamps);
        tasks.push(tokio::spawn(async move {
            let g = QueueGate::new(&conn, pythia_redis::ListBroker::new(&conn, "jobs"))
                .with_rate_limit(limit);
            while Instant::now() < stop {
                let got = g.fetch(256).await.unwrap();
                let now = Instant::now();
                stamps.lock().unwrap().extend(got.iter().map(|_| now));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats: String = cmd(&conn, &["INFO", "commandstats"]).await;
    let scripts: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0);
    let mut stamps = stamps.lock().unwrap().clone();
    stamps.sort();
    let rate = steady_rate(&stamps);
    eprintln!(
        "{rate:.1}/s, {scripts} script calls for {} messages",
        stamps.len()
    );
    assert!(
        (rate - 2000.0).abs() <= 100.0,
        "aggregate rate {rate:.1}/s against a limit of 2000/s"
    );
    assert!(
        scripts <= 400,
        "{scripts} script calls for {} messages",
        stamps.len()
    );
}

#[tokio::test]
async fn in_a_queue_set_a_paused_gate_is_passed_over_at_once() {
    use pythia_core::queues::QueueSet;
    use pythia_redis::{RedisConfig, RedisConnection};
    let server = RedisServer::start();
    // A long block timeout: a gate that waited on its paused (or empty) queue would show.
    let config = RedisConfig::from_url(&server.url())
        .unwrap()
        .with_block_timeout(Duration::from_secs(3));
    let conn = RedisConnection::connect(config).await.unwrap();
    fill(&conn, "high", 5).await;
    fill(&conn, "low", 5).await;
    gate::pause(&conn, "high").await.unwrap();
    let set = QueueSet::strict([
        QueueGate::new(&conn, ReliableListBroker::new(&conn, "high")),
        QueueGate::new(&conn, ReliableListBroker::new(&conn, "low")),
    ])
    .unwrap();
    let started = Instant::now();
    let batch = set.fetch(10).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "passed over the paused queue at once: {:?}",
        started.elapsed()
    );
    assert_eq!(batch.len(), 5);
    assert!(batch.iter().all(|d| d.message.source().name() == "low"));
    // A paused queue alone answers its try_fetch empty, at once.
    let high = QueueGate::new(&conn, ReliableListBroker::new(&conn, "high"));
    let started = Instant::now();
    assert!(high.try_fetch(10).await.unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(cmd::<i64>(&conn, &["LLEN", "high"]).await, 5);
}
