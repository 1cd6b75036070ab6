//! QueueSet: many queues in one runtime, strict and weighted priority, settles and releases
//! routed to the queue each message came from.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::queues::{BoxedBroker, QueueSet};
use pythia_core::{
    Broker, BrokerErrorKind, MemoryBroker, Message, WorkerError, WorkerRuntime, worker_fn,
};

fn filled(name: &str, n: usize) -> MemoryBroker {
    let b = MemoryBroker::new(name);
    b.push_many((0..n).map(|i| Message::new(format!("{name} {i}"))));
    b
}

/// Runs `set` in burst mode and returns the queue of each message in the order handled.
async fn handled_order<B: Broker>(set: QueueSet<B>) -> Vec<String>
where
    B::Token: Clone,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let summary = WorkerRuntime::new(
        set,
        worker_fn(move |msg: Message| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push(msg.source().name().to_owned());
                Ok(())
            }
        }),
    )
    .with_concurrency(1)
    .with_batch_size(4)
    .with_signal_handling(false)
    .with_stats_interval(None)
    .with_burst(true)
    .run()
    .await
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(summary.acked, seen.len() as u64);
    seen
}

#[tokio::test]
async fn strict_drains_every_higher_queue_before_a_lower_one() {
    let (critical, default, low) = (
        filled("critical", 30),
        filled("default", 30),
        filled("low", 30),
    );
    let set = QueueSet::strict([low.clone(), critical.clone(), default.clone()]).unwrap();
    // Given in the order low, critical, default: that order is the priority.
    let order = handled_order(set).await;
    assert_eq!(order.len(), 90);
    assert!(order[..30].iter().all(|q| q == "low"), "{order:?}");
    assert!(order[30..60].iter().all(|q| q == "critical"), "{order:?}");
    assert!(order[60..].iter().all(|q| q == "default"), "{order:?}");
    for b in [&critical, &default, &low] {
        assert_eq!(b.stats().acked, 30, "each queue acked its own messages");
        assert!(b.is_empty());
    }
}

#[tokio::test]
async fn weighted_fetches_split_close_to_the_weights_while_every_queue_has_work() {
    let brokers = [
        filled("critical", 20_000),
        filled("default", 20_000),
        filled("low", 20_000),
    ];
    let set = QueueSet::weighted([
        (brokers[0].clone(), 6),
        (brokers[1].clone(), 3),
        (brokers[2].clone(), 1),
    ])
    .unwrap();
    let fetches = 10_000;
    let mut per_queue = [0usize; 3];
    for _ in 0..fetches {
        let got = set.fetch(1).await.unwrap();
        assert_eq!(got.len(), 1);
        per_queue[got[0].token.queue] += 1;
    }
    let shares: Vec<f64> = per_queue
        .iter()
        .map(|&n| n as f64 / fetches as f64)
        .collect();
    // 10,000 draws: a share's standard deviation is under 0.005, so 0.02 is four of them.
    for (share, want) in shares.iter().zip([0.6, 0.3, 0.1]) {
        assert!((share - want).abs() < 0.02, "shares {shares:?}");
    }
}

#[tokio::test]
async fn weighted_serves_the_non_empty_queues_when_the_heaviest_is_empty() {
    let set =
        QueueSet::weighted([(MemoryBroker::new("critical"), 100), (filled("low", 5), 1)]).unwrap();
    let mut from_low = 0;
    for _ in 0..5 {
        let got = set.try_fetch(1).await.unwrap();
        assert_eq!(
            got.len(),
            1,
            "an empty heavy queue must not starve the light one"
        );
        assert_eq!(got[0].token.queue, 1);
        from_low += 1;
    }
    assert_eq!(from_low, 5);
    assert!(set.try_fetch(1).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_empty_high_queue_does_not_hold_up_a_lower_one() {
    // The high queue's own fetch would wait 10 s for a message; the set must not.
    let high = MemoryBroker::with_fetch_wait("high", Duration::from_secs(10));
    let low = filled("low", 1);
    let set = QueueSet::strict([high, low]).unwrap();
    let started = std::time::Instant::now();
    let got = set.fetch(8).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.source().name(), "low");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn strict_fills_a_batch_from_lower_queues_once_the_higher_are_empty() {
    let set = QueueSet::strict([filled("a", 2), filled("b", 2), filled("c", 2)]).unwrap();
    let got = set.fetch(5).await.unwrap();
    let queues: Vec<usize> = got.iter().map(|d| d.token.queue).collect();
    assert_eq!(queues, [0, 0, 1, 1, 2]);
}

#[tokio::test]
async fn outcomes_settle_in_the_queue_each_message_came_from() {
    let (orders, emails) = (filled("orders", 20), filled("emails", 20));
    let set = QueueSet::weighted([(orders.clone(), 1), (emails.clone(), 1)]).unwrap();
    let summary = WorkerRuntime::new(
        set,
        worker_fn(|msg: Message| async move {
            if msg.source().name() == "emails" {
                Err(WorkerError::reject("no mail today"))
            } else {
                Ok(())
            }
        }),
    )
    .with_concurrency(8)
    .with_signal_handling(false)
    .with_stats_interval(None)
    .with_burst(true)
    .run()
    .await
    .unwrap();
    assert_eq!((summary.acked, summary.dead_lettered), (20, 20));
    assert_eq!(orders.stats().acked, 20);
    assert!(orders.dead_letters().is_empty());
    assert_eq!(emails.stats().acked, 0);
    assert_eq!(emails.dead_letters().len(), 20);
    assert!(
        emails
            .dead_letters()
            .iter()
            .all(|d| d.message.body_str().unwrap().starts_with("emails"))
    );
}

#[tokio::test]
async fn retries_go_back_to_their_own_queue() {
    let (a, b) = (filled("a", 3), filled("b", 3));
    let set = QueueSet::strict([a.clone(), b.clone()]).unwrap();
    let summary = WorkerRuntime::new(
        set,
        worker_fn(|msg: Message| async move {
            if msg.attempt() == 1 {
                Err(WorkerError::retry_later(Duration::ZERO, "once more"))
            } else {
                Ok(())
            }
        }),
    )
    .with_signal_handling(false)
    .with_stats_interval(None)
    .with_burst(true)
    .run()
    .await
    .unwrap();
    assert_eq!((summary.acked, summary.retried), (6, 6));
    for q in [&a, &b] {
        assert_eq!((q.stats().retried, q.stats().acked), (3, 3));
    }
}

#[tokio::test]
async fn shutdown_hands_each_unfinished_message_back_to_its_own_queue() {
    let (a, b, c) = (filled("a", 10), filled("b", 10), filled("c", 10));
    let set = QueueSet::weighted([(a.clone(), 1), (b.clone(), 1), (c.clone(), 1)]).unwrap();
    let started = Arc::new(tokio::sync::Semaphore::new(0));
    let signal = Arc::clone(&started);
    let runtime = WorkerRuntime::new(
        set,
        worker_fn(move |_msg: Message| {
            signal.add_permits(1);
            // Never finishes: handed back when the grace period is over.
            std::future::pending::<Result<(), WorkerError>>()
        }),
    )
    .with_concurrency(12)
    .with_prefetch(6)
    .with_shutdown_grace(Duration::from_millis(50))
    .with_signal_handling(false)
    .with_stats_interval(None);
    let stop = runtime.cancellation_token();
    let run = tokio::spawn(runtime.run());
    let _ = started.acquire_many(12).await.unwrap();
    stop.cancel();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.released, summary.fetched);
    assert!(summary.fetched >= 12);
    for q in [&a, &b, &c] {
        assert_eq!(q.len(), 10, "every message back in its own queue");
        assert_eq!(q.in_flight(), 0);
        assert_eq!(q.stats().released, q.stats().delivered);
    }
}

#[tokio::test]
async fn drained_only_when_every_queue_is() {
    let (a, b) = (MemoryBroker::new("a"), filled("b", 1));
    let set = QueueSet::strict([a, b.clone()]).unwrap();
    assert!(!set.is_drained().await.unwrap());
    let got = set.fetch(1).await.unwrap();
    assert!(!set.is_drained().await.unwrap(), "one in flight in b");
    set.release(got).await.unwrap();
    assert_eq!(b.len(), 1);
    let got = set.fetch(1).await.unwrap();
    set.settle(&[pythia_core::Settlement {
        token: got[0].token,
        message: got[0].message.clone(),
        outcome: pythia_core::Outcome::Ack,
    }])
    .await
    .unwrap();
    assert!(set.is_drained().await.unwrap());
}

#[tokio::test]
async fn stats_per_queue_in_order_and_summed() {
    let set = QueueSet::strict([filled("a", 3), filled("b", 5)]).unwrap();
    let names: Vec<&str> = set.queues().iter().map(|s| s.name()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(set.source().name(), "a,b");
    let per: Vec<u64> = set
        .stats_per_queue()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.unwrap().depth)
        .collect();
    assert_eq!(per, [3, 5]);
    assert_eq!(set.stats().await.unwrap().unwrap().depth, 8);
}

#[tokio::test]
async fn mixed_broker_types_through_boxed_brokers() {
    let (a, b) = (filled("a", 4), filled("b", 4));
    let set = QueueSet::strict([BoxedBroker::new(a.clone()), BoxedBroker::new(b.clone())]).unwrap();
    let order = handled_order(set).await;
    assert_eq!(order, ["a", "a", "a", "a", "b", "b", "b", "b"]);
    assert_eq!((a.stats().acked, b.stats().acked), (4, 4));
}

#[test]
fn bad_sets_are_refused_with_a_config_error() {
    let none: [MemoryBroker; 0] = [];
    let e = QueueSet::strict(none).unwrap_err();
    assert_eq!(e.kind(), BrokerErrorKind::Config);
    let e = QueueSet::strict([MemoryBroker::new("a"), MemoryBroker::new("a")]).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e =
        QueueSet::weighted([(MemoryBroker::new("a"), 1), (MemoryBroker::new("b"), 0)]).unwrap_err();
    assert!(e.to_string().contains("weight 0"), "{e}");
}

/// A MemoryBroker that asks for maintenance every `every` and counts it.
struct Maintained {
    inner: MemoryBroker,
    every: Duration,
    count: Arc<std::sync::atomic::AtomicU32>,
}

impl Broker for Maintained {
    type Token = u64;
    fn guarantee(&self) -> pythia_core::DeliveryGuarantee {
        self.inner.guarantee()
    }
    fn source(&self) -> &pythia_core::Source {
        self.inner.source()
    }
    async fn fetch(
        &self,
        max: usize,
    ) -> Result<Vec<pythia_core::Delivery<u64>>, pythia_core::BrokerError> {
        self.inner.fetch(max).await
    }
    async fn settle(
        &self,
        batch: &[pythia_core::Settlement<u64>],
    ) -> Result<(), pythia_core::BrokerError> {
        self.inner.settle(batch).await
    }
    async fn release(
        &self,
        batch: Vec<pythia_core::Delivery<u64>>,
    ) -> Result<(), pythia_core::BrokerError> {
        self.inner.release(batch).await
    }
    async fn is_drained(&self) -> Result<bool, pythia_core::BrokerError> {
        self.inner.is_drained().await
    }
    async fn maintain(&self) -> Result<(), pythia_core::BrokerError> {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn maintenance_interval(&self) -> Option<Duration> {
        Some(self.every)
    }
}

#[tokio::test(start_paused = true)]
async fn each_queue_is_maintained_on_its_own_interval() {
    let fast = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let slow = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let set = QueueSet::strict([
        Maintained {
            inner: MemoryBroker::new("fast"),
            every: Duration::from_millis(100),
            count: Arc::clone(&fast),
        },
        Maintained {
            inner: MemoryBroker::new("slow"),
            every: Duration::from_secs(1),
            count: Arc::clone(&slow),
        },
    ])
    .unwrap();
    assert_eq!(set.maintenance_interval(), Some(Duration::from_millis(100)));
    // The runtime's maintenance loop: maintain, sleep the set's interval, for 2 s.
    for _ in 0..20 {
        set.maintain().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let load = |c: &std::sync::atomic::AtomicU32| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&fast), 20);
    assert_eq!(load(&slow), 2, "at 0 s and 1 s");
}
