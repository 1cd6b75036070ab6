//! The runtime when the broker fails: settles that keep failing must stop fetching and be
//! counted when given up, a configuration error (a key of the wrong type) stops the worker with
//! an error, and nothing keeps running once the `run()` future is gone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{
    Broker, BrokerError, BrokerErrorKind, CancellationToken, Delivery, DeliveryGuarantee,
    MemoryBroker, Message, RuntimeError, Settlement, Source, WorkerRuntime, worker_fn,
};
use tokio::time::Instant;

/// A memory broker whose settles and maintenance fail with a chosen kind of error.
#[derive(Clone)]
struct FailingBroker {
    inner: MemoryBroker,
    settle_error: Arc<Mutex<Option<BrokerErrorKind>>>,
    settle_hangs: Arc<AtomicBool>,
    /// Each settle takes this long (a slow Redis that still answers).
    settle_delay: Arc<Mutex<Duration>>,
    /// The largest batch a settle was given.
    largest_settle: Arc<AtomicUsize>,
    maintain_error: Arc<Mutex<Option<BrokerErrorKind>>>,
    /// Each maintenance pass blocks its thread this long (a heartbeat on its way), with no
    /// await to cancel at.
    maintain_blocks: Arc<Mutex<Duration>>,
    settles: Arc<AtomicUsize>,
    maintains: Arc<AtomicUsize>,
    /// Finished maintenance passes and the close, in order.
    events: Arc<Mutex<Vec<&'static str>>>,
}

impl FailingBroker {
    fn with_messages(n: usize) -> Self {
        let inner = MemoryBroker::new("failing");
        inner.push_many((0..n).map(|i| Message::new(format!("{i}"))));
        Self {
            inner,
            settle_error: Arc::default(),
            settle_hangs: Arc::default(),
            settle_delay: Arc::default(),
            largest_settle: Arc::default(),
            maintain_error: Arc::default(),
            maintain_blocks: Arc::default(),
            settles: Arc::default(),
            maintains: Arc::default(),
            events: Arc::default(),
        }
    }

    fn failing_settles(self, kind: BrokerErrorKind) -> Self {
        *self.settle_error.lock().unwrap() = Some(kind);
        self
    }

    fn failing_maintenance(self, kind: BrokerErrorKind) -> Self {
        *self.maintain_error.lock().unwrap() = Some(kind);
        self
    }
}

impl Broker for FailingBroker {
    type Token = u64;

    fn guarantee(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    fn source(&self) -> &Source {
        self.inner.source()
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        self.inner.fetch(max).await
    }

    async fn settle(&self, batch: &[Settlement<u64>]) -> Result<(), BrokerError> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        self.largest_settle.fetch_max(batch.len(), Ordering::SeqCst);
        let delay = *self.settle_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if self.settle_hangs.load(Ordering::SeqCst) {
            // A reply that never comes (a Redis that accepts connections and never answers).
            std::future::pending::<()>().await;
        }
        let failing = *self.settle_error.lock().unwrap();
        match failing {
            Some(kind) => Err(BrokerError::new(kind, "WRONGTYPE settle refused")),
            None => self.inner.settle(batch).await,
        }
    }

    async fn release(&self, batch: Vec<Delivery<u64>>) -> Result<(), BrokerError> {
        self.inner.release(batch).await
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        self.inner.is_drained().await
    }

    async fn maintain(&self) -> Result<(), BrokerError> {
        self.maintains.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(*self.maintain_blocks.lock().unwrap());
        let failing = *self.maintain_error.lock().unwrap();
        match failing {
            Some(kind) => Err(BrokerError::new(kind, "WRONGTYPE heartbeat refused")),
            None => {
                self.events.lock().unwrap().push("heartbeat");
                Ok(())
            }
        }
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.events.lock().unwrap().push("close");
        Ok(())
    }
}

fn runtime(b: &FailingBroker) -> WorkerRuntime<FailingBroker> {
    WorkerRuntime::new(b.clone(), worker_fn(|_msg| async { Ok(()) }))
        .with_signal_handling(false)
        .with_stats_interval(None)
}

#[tokio::test(start_paused = true)]
async fn failing_settles_stop_fetching_and_what_is_left_is_counted_unsettled() {
    let b = FailingBroker::with_messages(10_000).failing_settles(BrokerErrorKind::Connection);
    let stop = CancellationToken::new();
    let rt = runtime(&b)
        .with_concurrency(8)
        .with_batch_size(4)
        .with_shutdown_grace(Duration::from_secs(1))
        .with_cancellation(stop.clone());
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let stopped_at = Instant::now();
    stop.cancel();
    let summary = run.await.unwrap().unwrap();
    let took = stopped_at.elapsed();

    // Bounded: a few batches' worth, not the whole queue.
    assert!(
        summary.fetched <= 64,
        "fetching went on while settles failed: {summary}"
    );
    assert!(summary.fetched > 0);
    // Nothing settled, so nothing counts as acked: every fetched message is unsettled or
    // handed back, and the broker still holds each one in flight (it will deliver it again).
    assert_eq!(summary.acked, 0, "{summary}");
    assert_eq!(
        summary.unsettled + summary.released,
        summary.fetched,
        "{summary}"
    );
    assert!(summary.unsettled > 0, "{summary}");
    assert_eq!(b.inner.in_flight() as u64, summary.unsettled);
    // The hard deadline (grace + 5 s) wakes the driver: the settle backoff does not add to it.
    assert!(
        took <= Duration::from_secs(6) + Duration::from_millis(50),
        "shutdown took {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_settle_still_on_the_wire_at_the_deadline_is_counted_unsettled() {
    let b = FailingBroker::with_messages(10_000);
    b.settle_hangs.store(true, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let rt = runtime(&b)
        .with_concurrency(8)
        .with_batch_size(4)
        .with_shutdown_grace(Duration::from_secs(1))
        .with_cancellation(stop.clone());
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let stopped_at = Instant::now();
    stop.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the hard deadline must end a shutdown waiting on a settle that never returns")
        .unwrap()
        .unwrap();
    assert!(stopped_at.elapsed() <= Duration::from_secs(6) + Duration::from_millis(50));
    assert!(summary.fetched <= 64, "{summary}");
    assert!(summary.unsettled > 0, "{summary}");
    assert_eq!(
        summary.unsettled + summary.released,
        summary.fetched,
        "{summary}"
    );
    assert_eq!(b.inner.in_flight() as u64, summary.unsettled);
}

#[tokio::test(start_paused = true)]
async fn slow_settles_hold_back_fetching_within_the_backlog_bound() {
    let b = FailingBroker::with_messages(5_000);
    *b.settle_delay.lock().unwrap() = Duration::from_secs(1);
    let summary = runtime(&b)
        .with_concurrency(8)
        .with_batch_size(4)
        .with_burst(true)
        .run()
        .await
        .unwrap();
    assert_eq!(summary.acked, 5_000);
    // 2 x max(concurrency, batch size) waiting, plus at most `concurrency` finishing meanwhile.
    let largest = b.largest_settle.load(Ordering::SeqCst);
    assert!(largest <= 2 * 8 + 8, "a settle of {largest} outcomes");
}

#[tokio::test(start_paused = true)]
async fn settles_that_recover_resume_fetching_and_lose_nothing() {
    let b = FailingBroker::with_messages(500).failing_settles(BrokerErrorKind::Connection);
    let rt = runtime(&b)
        .with_concurrency(8)
        .with_batch_size(4)
        .with_burst(true);
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_secs(20)).await;
    *b.settle_error.lock().unwrap() = None;
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.acked, 500, "{summary}");
    assert_eq!(summary.unsettled, 0);
    assert_eq!(b.inner.stats().acked, 500);
    assert_eq!(b.inner.stats().duplicate_settlements, 0);
}

#[tokio::test(start_paused = true)]
async fn a_configuration_error_on_settle_stops_the_worker_with_an_error() {
    let b = FailingBroker::with_messages(100).failing_settles(BrokerErrorKind::Config);
    let rt = runtime(&b).with_concurrency(8).with_batch_size(4);
    let result = tokio::time::timeout(Duration::from_secs(600), rt.run())
        .await
        .expect("a settle refused for a configuration error must not be retried for ever");
    match result {
        Err(e @ RuntimeError::Broker(_)) => assert!(e.is_config(), "{e}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(
        b.settles.load(Ordering::SeqCst),
        1,
        "never retried, never followed by another settle"
    );
    // What it did not settle stays with the broker, to be delivered again.
    assert_eq!(b.inner.stats().acked, 0);
    assert_eq!(b.inner.len() + b.inner.in_flight(), 100);
}

#[tokio::test(start_paused = true)]
async fn a_configuration_error_in_maintenance_stops_the_worker_with_an_error() {
    let b = FailingBroker::with_messages(0).failing_maintenance(BrokerErrorKind::Config);
    let result = tokio::time::timeout(Duration::from_secs(600), runtime(&b).run())
        .await
        .expect("a configuration error in maintenance must stop the worker");
    match result {
        Err(e) => assert!(e.is_config(), "{e}"),
        Ok(s) => panic!("expected a configuration error, got {s}"),
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_stops_the_maintenance_task() {
    let b = FailingBroker::with_messages(0);
    let run = runtime(&b).run();
    let _ = tokio::time::timeout(Duration::from_secs(1), run).await;
    let seen = b.maintains.load(Ordering::SeqCst);
    assert!(seen > 0, "maintenance ran while the worker did");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        b.maintains.load(Ordering::SeqCst),
        seen,
        "no heartbeat once the run() future is gone"
    );
}

/// The maintenance task is joined before the broker is closed: a heartbeat still on its way
/// when the worker stops never lands after `close()` (which would register again a consumer
/// that has just left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_heartbeat_lands_before_the_broker_is_closed() {
    let b = FailingBroker::with_messages(0);
    *b.maintain_blocks.lock().unwrap() = Duration::from_millis(300);
    runtime(&b).with_burst(true).run().await.unwrap();
    assert_eq!(*b.events.lock().unwrap(), ["heartbeat", "close"]);
}
