//! A handler's `WorkerError::rate_limited`, through the runtime: handed back with no attempt
//! counted to a broker that throttles (`Broker::throttle` returns true), scheduled as an ordinary
//! retry by one that does not.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::queues::{BoxedBroker, QueueSet};
use pythia_core::{
    Broker, BrokerError, Delivery, DeliveryGuarantee, MemoryBroker, Message, RetryPolicy,
    RunSummary, Settlement, Source, Worker, WorkerError, WorkerRuntime, worker_fn,
};
use tokio::time::Instant;

/// The in-memory broker, fetching nothing while throttled.
struct Throttling {
    inner: MemoryBroker,
    until: Mutex<Option<Instant>>,
}

impl Broker for Throttling {
    type Token = u64;

    fn guarantee(&self) -> DeliveryGuarantee {
        self.inner.guarantee()
    }

    fn source(&self) -> &Source {
        self.inner.source()
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        let until = *self.until.lock().unwrap();
        if let Some(t) = until
            && t > Instant::now()
        {
            tokio::time::sleep_until(t).await;
            return Ok(Vec::new());
        }
        self.inner.fetch(max).await
    }

    /// Empty at once while throttled (a queue set passing over it), else the queue's batch.
    async fn try_fetch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        let until = *self.until.lock().unwrap();
        if until.is_some_and(|t| t > Instant::now()) {
            return Ok(Vec::new());
        }
        self.inner.try_fetch(max).await
    }

    async fn settle(&self, batch: &[Settlement<u64>]) -> Result<(), BrokerError> {
        self.inner.settle(batch).await
    }

    async fn release(&self, batch: Vec<Delivery<u64>>) -> Result<(), BrokerError> {
        self.inner.release(batch).await
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        self.inner.is_drained().await
    }

    fn throttle(&self, _token: &u64, pause: Duration) -> bool {
        *self.until.lock().unwrap() = Some(Instant::now() + pause);
        true
    }
}

type Seen = Arc<Mutex<Vec<(u32, Instant)>>>;

/// Rate-limited (5 s) on its first call, fine after.
fn limited_once(seen: &Seen) -> impl pythia_core::Worker + use<> {
    let seen = Arc::clone(seen);
    worker_fn(move |msg: Message| {
        let mut s = seen.lock().unwrap();
        s.push((msg.attempt(), Instant::now()));
        let first = s.len() == 1;
        async move {
            if first {
                Err(WorkerError::rate_limited(Duration::from_secs(5), "429"))
            } else {
                Ok(())
            }
        }
    })
}

/// Runs `worker` over `broker` in burst mode with at most `max_attempts` attempts a message.
async fn burst_with_attempts<B: Broker>(
    broker: B,
    worker: impl Worker,
    max_attempts: u32,
) -> RunSummary {
    WorkerRuntime::new(broker, worker)
        .with_signal_handling(false)
        .with_retry_policy(RetryPolicy::default().with_max_attempts(max_attempts))
        .with_burst(true)
        .run()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_throttling_broker_gets_the_message_back_without_an_attempt() {
    let inner = MemoryBroker::new("q").recording_settlements();
    inner.push(Message::new("x"));
    let broker = Throttling {
        inner: inner.clone(),
        until: Mutex::new(None),
    };
    let seen = Seen::default();
    // One attempt: a retry that counted one would dead-letter it.
    let summary = burst_with_attempts(broker, limited_once(&seen), 1).await;
    assert_eq!(
        (summary.acked, summary.retried, summary.dead_lettered),
        (1, 1, 0)
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 1]);
    assert!(seen[1].1 - seen[0].1 >= Duration::from_secs(5));
    assert!(inner.dead_letters().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_broker_that_does_not_throttle_schedules_an_ordinary_retry() {
    let b = MemoryBroker::new("q");
    b.push(Message::new("x"));
    let seen = Seen::default();
    let summary = burst_with_attempts(b.clone(), limited_once(&seen), 2).await;
    assert_eq!((summary.acked, summary.retried), (1, 1));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2]);
    assert!(seen[1].1 - seen[0].1 >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn in_a_queue_set_only_the_rate_limited_queue_backs_off() {
    // `high` holds one message, rate-limited on its first run; `low` holds ten. Strict
    // priority would serve `high` first, but while it is throttled `low` is served.
    let high = MemoryBroker::new("high").recording_settlements();
    high.push(Message::new("h"));
    let low = MemoryBroker::new("low");
    low.push_many((0..10).map(|i| Message::new(format!("l{i}"))));
    let set = QueueSet::strict([
        BoxedBroker::new(Throttling {
            inner: high.clone(),
            until: Mutex::new(None),
        }),
        BoxedBroker::new(low.clone()),
    ])
    .unwrap();
    let seen: Arc<Mutex<Vec<(String, u32, Instant)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let worker = worker_fn(move |msg: Message| {
        let mut s = log.lock().unwrap();
        let first_high = msg.source().name() == "high" && !s.iter().any(|e| e.0 == "high");
        s.push((
            msg.source().name().to_owned(),
            msg.attempt(),
            Instant::now(),
        ));
        async move {
            if first_high {
                Err(WorkerError::rate_limited(Duration::from_secs(5), "429"))
            } else {
                Ok(())
            }
        }
    });
    let started = Instant::now();
    let summary = burst_with_attempts(set, worker, 1).await;
    assert_eq!((summary.acked, summary.dead_lettered), (11, 0));
    let seen = seen.lock().unwrap();
    let highs: Vec<_> = seen.iter().filter(|e| e.0 == "high").collect();
    assert_eq!(
        highs.iter().map(|e| e.1).collect::<Vec<_>>(),
        [1, 1],
        "no attempt counted"
    );
    assert!(highs[1].2 - highs[0].2 >= Duration::from_secs(5));
    let lows: Vec<_> = seen.iter().filter(|e| e.0 == "low").collect();
    assert_eq!(lows.len(), 10);
    assert!(
        lows.iter().all(|e| e.2 - started < Duration::from_secs(1)),
        "the other queue is served while the throttled one waits"
    );
    assert!(high.dead_letters().is_empty());
}
