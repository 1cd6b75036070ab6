//! End-to-end throughput per mode, through a real `redis-server` that the bench starts itself
//! on a free loopback port (`pythia_test_support::RedisServer`), with the library's public API
//! only. Each iteration moves `MESSAGES` messages of `BODY_SIZE` bytes; criterion reports them
//! as `Throughput::Elements`, i.e. messages per second, with its statistics and saved baselines.
//!
//! * `throughput/consume/{list,reliable_list,stream}`: `WorkerRuntime` with a no-op worker in
//!   burst mode over messages preloaded by `ListProducer::push_many` /
//!   `StreamProducer::add_many` (envelope encoding, as a Rust producer sends them).
//! * `throughput/pubsub`: a `PubSubBroker` (buffer large enough to drop nothing) and a worker
//!   that stops the runtime at the last message, while a `Publisher` publishes them
//!   (`publish_many`, pipelined).
//!
//!   Both are timed by the run's busy time, `RunSummary::active` (first message fetched to
//!   last outcome settled), as `pythia bench` and `pythia run --burst` report it: not the
//!   preload, nor the final blocking read that finds the queue empty (the block timeout is
//!   20 ms here, so that it costs the bench little wall time; the default is 1 s).
//! * `throughput/produce/{list,stream}`: `ListProducer::push_many` / `StreamProducer::add_many`
//!   of ready-made messages. Timed: the call.
//!
//! The runtime is tokio's multi-thread one with its default threads, as `pythia run` uses; the
//! worker runs at its defaults (concurrency 64, batch 256). Redis shares the machine's cores
//! with the bench, as it does with `pythia bench`.
//!
//! ```sh
//! cargo bench -p pythia-benches --bench throughput                      # a minute or two
//! cargo bench -p pythia-benches --bench throughput -- --save-baseline before
//! cargo bench -p pythia-benches --bench throughput -- --baseline before # compare
//! cargo bench -p pythia-benches --bench throughput -- --test            # once each (CI)
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use pythia_core::{
    Broker, CancellationToken, Message, RunSummary, Worker, WorkerError, WorkerRuntime,
};
use pythia_redis::{
    GroupStart, ListBroker, ListProducer, PubSubBroker, Publisher, RedisConfig, RedisConnection,
    ReliableListBroker, StreamBroker, StreamProducer,
};
use tokio::runtime::Runtime;

use pythia_test_support::RedisServer;

/// Messages per iteration: enough that start-up and the final drain check are a small share.
const MESSAGES: usize = 20_000;
const BODY_SIZE: usize = 100;
const QUEUE: &str = "bench";

/// The worker every mode runs: handles nothing, stops the runtime at the `target`-th message
/// when given a token (pub/sub has no drained state to stop on).
#[derive(Clone)]
struct NoOp {
    seen: Arc<AtomicU64>,
    target: u64,
    stop: Option<CancellationToken>,
}

impl NoOp {
    fn new(stop: Option<CancellationToken>) -> Self {
        Self {
            seen: Arc::default(),
            target: MESSAGES as u64,
            stop,
        }
    }
}

impl Worker for NoOp {
    async fn process_message(&self, _msg: &Message) -> Result<(), WorkerError> {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.target
            && let Some(stop) = &self.stop
        {
            stop.cancel();
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Consume {
    List,
    ReliableList,
    Stream,
}

#[derive(Clone, Copy)]
enum Produce {
    List,
    Stream,
}

fn messages() -> Vec<Message> {
    let body = Bytes::from(vec![b'x'; BODY_SIZE]);
    (0..MESSAGES).map(|_| Message::new(body.clone())).collect()
}

async fn flushdb(conn: &RedisConnection) {
    let mut m = conn.manager();
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut m)
        .await
        .expect("FLUSHDB");
}

fn runtime<B: Broker>(broker: B, worker: NoOp) -> WorkerRuntime<B> {
    WorkerRuntime::new(broker, worker)
        .with_signal_handling(false)
        .with_stats_interval(None)
        .with_burst(true)
}

/// Runs `rt` to its end; returns its busy time.
async fn drain<B: Broker>(rt: WorkerRuntime<B>) -> Duration {
    busy(rt.run().await.expect("the run succeeds"))
}

/// A run's busy time, once it is checked that it handled every message.
fn busy(summary: RunSummary) -> Duration {
    assert_eq!(
        summary.processed(),
        MESSAGES as u64,
        "every message handled"
    );
    summary.active
}

/// One consume iteration: preload (not timed), then drain.
async fn consume(conn: &RedisConnection, msgs: &[Message], mode: Consume) -> Duration {
    flushdb(conn).await;
    match mode {
        Consume::List | Consume::ReliableList => {
            ListProducer::new(conn, QUEUE)
                .push_many(msgs)
                .await
                .expect("preload");
        }
        Consume::Stream => {
            StreamProducer::new(conn, QUEUE)
                .add_many(msgs)
                .await
                .expect("preload");
        }
    }
    let worker = NoOp::new(None);
    match mode {
        Consume::List => drain(runtime(ListBroker::new(conn, QUEUE), worker)).await,
        Consume::ReliableList => drain(runtime(ReliableListBroker::new(conn, QUEUE), worker)).await,
        Consume::Stream => {
            let broker = StreamBroker::new(conn, QUEUE, "bench").with_start(GroupStart::Beginning);
            drain(runtime(broker, worker)).await
        }
    }
}

/// One pub/sub iteration: subscribe, then publish everything while the runtime handles it.
async fn pubsub(conn: &RedisConnection, msgs: &[Message]) -> Duration {
    let broker = PubSubBroker::builder(conn)
        .channel(QUEUE)
        .with_capacity(MESSAGES + 1)
        .subscribe()
        .await
        .expect("SUBSCRIBE");
    let stop = CancellationToken::new();
    let rt = runtime(broker, NoOp::new(Some(stop.clone())))
        .with_burst(false)
        .with_cancellation(stop);
    let publisher = Publisher::new(conn, QUEUE);
    let (summary, published) = tokio::join!(rt.run(), publisher.publish_many(msgs));
    let receivers = published.expect("PUBLISH");
    // At least: the previous iteration's subscription may not be closed on the server yet.
    assert!(receivers.iter().all(|&n| n >= 1), "the subscriber got each");
    busy(summary.expect("the run succeeds"))
}

/// One produce iteration into an empty database: the push timed, the `FLUSHDB` before it not.
async fn produce(conn: &RedisConnection, msgs: &[Message], mode: Produce) -> Duration {
    flushdb(conn).await;
    let start = Instant::now();
    match mode {
        Produce::List => {
            let n = ListProducer::new(conn, QUEUE)
                .push_many(msgs)
                .await
                .expect("LPUSH");
            assert_eq!(n, MESSAGES, "the list holds what was pushed");
        }
        Produce::Stream => {
            let ids = StreamProducer::new(conn, QUEUE)
                .add_many(msgs)
                .await
                .expect("XADD");
            assert_eq!(ids.len(), MESSAGES);
        }
    }
    start.elapsed()
}

/// Times `iters` runs of `one`, each returning its own measured time.
async fn repeat<F, Fut>(iters: u64, mut one: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        total += one().await;
    }
    total
}

fn throughput(c: &mut Criterion) {
    let server = RedisServer::start();
    let rt: Runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let config = RedisConfig::from_url(&server.url())
        .expect("a Redis URL")
        .with_block_timeout(Duration::from_millis(20));
    let conn = rt
        .block_on(RedisConnection::connect(config))
        .expect("connect to the bench's redis-server");
    let msgs = messages();
    let (conn, msgs) = (&conn, &msgs[..]);

    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Elements(MESSAGES as u64));
    // An iteration takes tens of milliseconds: the same number of iterations per sample.
    g.sampling_mode(SamplingMode::Flat);
    for (name, mode) in [
        ("consume/list", Consume::List),
        ("consume/reliable_list", Consume::ReliableList),
        ("consume/stream", Consume::Stream),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt)
                .iter_custom(|iters| repeat(iters, move || consume(conn, msgs, mode)))
        });
    }
    g.bench_function("pubsub", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| repeat(iters, move || pubsub(conn, msgs)))
    });
    for (name, mode) in [
        ("produce/list", Produce::List),
        ("produce/stream", Produce::Stream),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt)
                .iter_custom(|iters| repeat(iters, move || produce(conn, msgs, mode)))
        });
    }
    g.finish();
    drop(server);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = throughput
}
criterion_main!(benches);
