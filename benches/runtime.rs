//! Dispatch overhead of `WorkerRuntime`: a burst of 10,000 messages drained from a
//! `MemoryBroker` (wrapped so that an empty fetch yields, see [`YieldingBroker`]) by a no-op
//! worker at concurrency 1000 / batch 1000, from `run()` to its return (start-up, fetches,
//! handler calls, settles, the drain check and shutdown). Filling the broker is not timed.
//!
//! * `runtime/current_thread/*`: one thread, as `pythia run --threads 1`.
//! * `runtime/multi_thread_2/*`: two worker threads (this machine's cores), for `Spawn`'s sake.
//!
//! `inline` and `spawn` are [`Dispatch`]; `+identity_layer` adds a pass-through tower layer (the
//! cost of a boxed service stack: `poll_ready` and a boxed call per message); `+timeout_layer`
//! adds `with_resilience(ResilienceConfig::new())`, the 30 s timeout layer (a timer per
//! message on top of that).
//!
//! `cargo bench -p pythia-benches --bench runtime`

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use pythia_core::{
    Broker, BrokerError, Delivery, DeliveryGuarantee, Dispatch, MemoryBroker, Message,
    ResilienceConfig, Settlement, Source, WorkerRuntime, worker_fn,
};
use tokio::runtime::Runtime;

const MESSAGES: usize = 10_000;
const CONCURRENCY: usize = 1000;
const BATCH: usize = 1000;

#[derive(Clone, Copy)]
enum Stack {
    Bare,
    Identity,
    Timeout,
}

/// A `MemoryBroker` whose empty fetch yields to the scheduler once and returns, as a Redis
/// fetch does (an empty `RPOP` / `XREADGROUP` always waits on the socket).
///
/// The plain `MemoryBroker` either waits (50 ms by default: that wait would dominate a burst of
/// a few milliseconds) or, with a zero wait, returns at once; and then, with `Dispatch::Spawn`
/// on a current-thread runtime, the runtime never yields once the queue is empty while
/// handlers are in flight, so the spawned handlers never run: the run spins forever.
struct YieldingBroker(MemoryBroker);

impl Broker for YieldingBroker {
    type Token = u64;

    fn guarantee(&self) -> DeliveryGuarantee {
        self.0.guarantee()
    }

    fn source(&self) -> &Source {
        self.0.source()
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        let batch = self.0.fetch(max).await?;
        if batch.is_empty() {
            tokio::task::yield_now().await;
        }
        Ok(batch)
    }

    async fn settle(&self, batch: &[Settlement<u64>]) -> Result<(), BrokerError> {
        self.0.settle(batch).await
    }

    async fn release(&self, batch: Vec<Delivery<u64>>) -> Result<(), BrokerError> {
        self.0.release(batch).await
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        self.0.is_drained().await
    }
}

/// A broker holding `MESSAGES` messages.
fn filled_broker(body: &Bytes) -> YieldingBroker {
    let broker = MemoryBroker::with_fetch_wait("bench", Duration::ZERO);
    broker.push_many((0..MESSAGES).map(|_| Message::new(body.clone())));
    YieldingBroker(broker)
}

/// One burst; returns the time `run()` took.
async fn burst(body: &Bytes, dispatch: Dispatch, stack: Stack) -> Duration {
    let broker = filled_broker(body);
    let mut rt = WorkerRuntime::new(broker, worker_fn(|_msg| async { Ok(()) }))
        .with_concurrency(CONCURRENCY)
        .with_batch_size(BATCH)
        .with_dispatch(dispatch)
        .with_burst(true)
        .with_signal_handling(false)
        .with_stats_interval(None);
    rt = match stack {
        Stack::Bare => rt,
        Stack::Identity => rt.layer(tower::layer::util::Identity::new()),
        Stack::Timeout => rt.with_resilience(ResilienceConfig::new()),
    };
    let start = Instant::now();
    let summary = rt.run().await.expect("the run succeeds");
    let took = start.elapsed();
    assert_eq!(summary.acked, MESSAGES as u64);
    took
}

fn cases() -> [(&'static str, Dispatch, Stack); 6] {
    [
        ("inline", Dispatch::Inline, Stack::Bare),
        ("spawn", Dispatch::Spawn, Stack::Bare),
        ("inline+identity_layer", Dispatch::Inline, Stack::Identity),
        ("inline+timeout_layer", Dispatch::Inline, Stack::Timeout),
        ("spawn+identity_layer", Dispatch::Spawn, Stack::Identity),
        ("spawn+timeout_layer", Dispatch::Spawn, Stack::Timeout),
    ]
}

fn bench_on(c: &mut Criterion, group: &str, rt: &Runtime, cases: &[(&str, Dispatch, Stack)]) {
    let body = Bytes::from(vec![b'x'; 100]);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(MESSAGES as u64));
    // A burst takes milliseconds: the same number of bursts per sample.
    g.sampling_mode(SamplingMode::Flat);
    for &(name, dispatch, stack) in cases {
        let body = &body;
        g.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += burst(body, dispatch, stack).await;
                }
                total
            })
        });
    }
    g.finish();
}

fn current_thread(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    bench_on(c, "runtime/current_thread", &rt, &cases());
}

fn multi_thread(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a tokio runtime");
    bench_on(c, "runtime/multi_thread_2", &rt, &cases()[..2]);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = current_thread, multi_thread
}
criterion_main!(benches);
