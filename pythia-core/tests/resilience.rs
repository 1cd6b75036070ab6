//! The resilience layers inside the runtime, against the in-memory broker: an open breaker
//! leaves the queue alone, timeouts are counted as timeouts, and `with_resilience` stacks
//! breaker → retry → timeout in that order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use pythia_core::resilience::{
    CircuitBreakerConfig, CircuitState, InProcessRetry, ResilienceConfig,
};
use pythia_core::{
    MemoryBroker, Message, RetryPolicy, Worker, WorkerError, WorkerRuntime, worker_fn,
};

fn runtime<W: Worker>(b: &MemoryBroker, w: W) -> WorkerRuntime<MemoryBroker> {
    WorkerRuntime::new(b.clone(), w).with_signal_handling(false)
}

fn broker_with(name: &str, n: usize) -> MemoryBroker {
    let b = MemoryBroker::new(name).recording_settlements();
    b.push_many((0..n).map(|i| Message::new(format!("{i}"))));
    b
}

/// Counts handler calls per message id.
#[derive(Default, Clone)]
struct Tries(Arc<Mutex<HashMap<String, u32>>>);

impl Tries {
    fn next(&self, msg: &Message) -> u32 {
        let mut map = self.0.lock().unwrap();
        let n = map.entry(msg.id().to_owned()).or_default();
        *n += 1;
        *n
    }

    fn all(&self) -> Vec<u32> {
        self.0.lock().unwrap().values().copied().collect()
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_leaves_the_queue_untouched_until_the_cool_down() {
    let b = broker_with("breaker", 20);
    let sick = Arc::new(AtomicBool::new(true));
    let s = sick.clone();
    let worker = worker_fn(move |_m: Message| {
        let sick = s.load(Ordering::SeqCst);
        async move {
            if sick {
                Err(WorkerError::retry("database unreachable"))
            } else {
                Ok(())
            }
        }
    });
    let stack = ResilienceConfig::default()
        .with_circuit_breaker(
            CircuitBreakerConfig::default()
                .with_consecutive_failures(3)
                .with_failure_rate(0.0)
                .with_cool_down(Duration::from_secs(30))
                .with_success_threshold(2),
        )
        .build();
    let breaker = stack.circuit_breaker().unwrap();
    let rt = runtime(&b, worker)
        .with_concurrency(1)
        .with_retry_policy(
            RetryPolicy::default()
                .with_max_attempts(10)
                .with_jitter(0.0),
        )
        .with_resilience(stack)
        .with_burst(true);
    let run = tokio::spawn(rt.run());

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    let stats = b.stats();
    assert_eq!(stats.delivered, 3, "fetching stopped at the third failure");
    assert_eq!(stats.retried, 3);
    assert_eq!((b.len(), b.scheduled(), b.in_flight()), (17, 3, 0));

    tokio::time::sleep(Duration::from_secs(28)).await; // t = 29 s: still cooling down
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(b.stats().delivered, 3, "the queue is untouched while open");
    assert_eq!((b.len(), b.scheduled(), b.in_flight()), (17, 3, 0));

    sick.store(false, Ordering::SeqCst);
    // Paused time jumps to this deadline if nothing (no cool-down timer) wakes the runtime.
    let summary = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("processing resumes after the cool-down")
        .unwrap()
        .unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.transitions(), 3, "open, half-open, closed");
    assert_eq!(summary.acked, 20);
    assert_eq!(summary.retried, 3);
    assert_eq!(summary.dead_lettered, 0);
    assert!(summary.elapsed >= Duration::from_secs(30));
    assert_eq!(b.stats().duplicate_settlements, 0);
}

/// A global recorder keeping counter values, keyed `name{label=value,...}` (labels sorted).
#[derive(Default)]
struct Counters(Mutex<HashMap<String, Arc<Count>>>);

#[derive(Default)]
struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::SeqCst);
    }
    fn absolute(&self, v: u64) {
        self.0.fetch_max(v, Ordering::SeqCst);
    }
}

impl Counters {
    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.0.load(Ordering::SeqCst))
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let count = self.0.lock().unwrap().entry(name).or_default().clone();
        Counter::from_arc(count)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

static COUNTERS: LazyLock<&'static Counters> = LazyLock::new(|| {
    let counters: &'static Counters = Box::leak(Box::default());
    metrics::set_global_recorder(counters).expect("only this test installs a recorder");
    counters
});

/// Sets its flag when dropped: proves the handler future was cancelled.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_handler_is_cancelled_and_counted_as_a_timeout() {
    let counters = *COUNTERS;
    let b = broker_with("timeouts", 1);
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let worker = worker_fn(move |_m: Message| {
        let guard = DropFlag(d.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let summary = runtime(&b, worker)
        .with_retry_policy(RetryPolicy::no_retries())
        .with_resilience(ResilienceConfig::default()) // 30 s per try
        .with_burst(true)
        .run()
        .await
        .unwrap();

    assert!(
        dropped.load(Ordering::SeqCst),
        "the handler future was dropped"
    );
    assert_eq!(summary.dead_lettered, 1);
    assert!(summary.elapsed >= Duration::from_secs(30));
    assert_eq!(
        b.dead_letters()[0].reason.as_deref(),
        Some("failed after 1 attempts: handler timed out after 30s")
    );
    let failures = |kind: &str| {
        counters.get(&format!(
            "pythia_handler_failures_total{{broker=memory,kind={kind},queue=timeouts}}"
        ))
    };
    assert_eq!(failures("timeout"), 1);
    assert_eq!(failures("error"), 0);
}

#[tokio::test(start_paused = true)]
async fn in_process_retries_absorb_blips_without_redelivery() {
    let b = broker_with("blips", 10);
    let tries = Tries::default();
    let t = tries.clone();
    let worker = worker_fn(move |m: Message| {
        let n = t.next(&m);
        async move {
            assert_eq!(m.attempt(), 1, "in-process tries are not deliveries");
            if n == 1 {
                Err(WorkerError::retry("connection reset"))
            } else {
                Ok(())
            }
        }
    });
    let summary = runtime(&b, worker)
        .with_resilience(
            ResilienceConfig::default().with_in_process_retry(InProcessRetry::default()),
        )
        .with_burst(true)
        .run()
        .await
        .unwrap();
    assert_eq!((summary.acked, summary.retried), (10, 0));
    assert_eq!(
        b.stats().delivered,
        10,
        "no message went back to the broker"
    );
    assert_eq!(tries.all(), vec![2; 10]);
}

#[tokio::test(start_paused = true)]
async fn with_resilience_stacks_breaker_then_retry_then_timeout() {
    // Each message: try 1 hangs, try 2 fails, try 3 succeeds. That only ends in an ack with no
    // broker retry and a closed breaker if the timeout is per try (inside the retry) and the
    // breaker judges whole messages (outside the retry): two failed tries in a row would open
    // a breaker placed inside.
    let b = broker_with("order", 3);
    let tries = Tries::default();
    let t = tries.clone();
    let worker = worker_fn(move |m: Message| {
        let n = t.next(&m);
        async move {
            match n {
                1 => std::future::pending().await,
                2 => Err(WorkerError::retry("still warming up")),
                _ => Ok(()),
            }
        }
    });
    let stack = ResilienceConfig::default()
        .with_timeout(Duration::from_secs(1))
        .with_in_process_retry(InProcessRetry::default().with_jitter(0.0))
        .with_circuit_breaker(
            CircuitBreakerConfig::default()
                .with_consecutive_failures(2)
                .with_failure_rate(0.0),
        )
        .build();
    let breaker = stack.circuit_breaker().unwrap();
    let summary = runtime(&b, worker)
        .with_concurrency(1)
        .with_resilience(stack)
        .with_burst(true)
        .run()
        .await
        .unwrap();
    assert_eq!((summary.acked, summary.retried), (3, 0));
    assert_eq!(tries.all(), vec![3; 3]);
    assert_eq!(breaker.transitions(), 0);
    // Per message: 1 s deadline + 50 ms + 100 ms of backoff.
    assert!(summary.elapsed >= Duration::from_millis(3 * 1150));
}
