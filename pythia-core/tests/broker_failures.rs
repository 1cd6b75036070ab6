//! The runtime when the broker fails: settles that keep failing must stop fetching and be
//! counted when given up, a configuration error (a key of the wrong type) stops the worker with
//! an error, and nothing keeps running once the `run()` future is gone.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::FaultBroker;
use pythia_core::{BrokerErrorKind, CancellationToken, RuntimeError, WorkerRuntime, worker_fn};
use tokio::time::Instant;

/// The fault broker of these tests: `n` messages, maintenance every 100 ms.
fn failing(n: usize) -> FaultBroker {
    FaultBroker::with_messages(n).with_maintenance_interval(Duration::from_millis(100))
}

fn runtime(b: &FaultBroker) -> WorkerRuntime<FaultBroker> {
    WorkerRuntime::new(b.clone(), worker_fn(|_msg| async { Ok(()) }))
        .with_signal_handling(false)
        .with_stats_interval(None)
}

#[tokio::test(start_paused = true)]
async fn failing_settles_stop_fetching_and_what_is_left_is_counted_unsettled() {
    let b = failing(10_000).failing_settles(BrokerErrorKind::Connection);
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
    let b = failing(10_000);
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
    let b = failing(5_000);
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
    let b = failing(500).failing_settles(BrokerErrorKind::Connection);
    let rt = runtime(&b)
        .with_concurrency(8)
        .with_batch_size(4)
        .with_burst(true);
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_secs(20)).await;
    b.settle_faults.lock().unwrap().always = None;
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.acked, 500, "{summary}");
    assert_eq!(summary.unsettled, 0);
    assert_eq!(b.inner.stats().acked, 500);
    assert_eq!(b.inner.stats().duplicate_settlements, 0);
}

#[tokio::test(start_paused = true)]
async fn a_configuration_error_on_settle_stops_the_worker_with_an_error() {
    let b = failing(100).failing_settles(BrokerErrorKind::Config);
    let rt = runtime(&b).with_concurrency(8).with_batch_size(4);
    let result = tokio::time::timeout(Duration::from_secs(600), rt.run())
        .await
        .expect("a settle refused for a configuration error must not be retried for ever");
    match result {
        Err(e @ RuntimeError::Broker(_)) => assert!(e.is_config(), "{e}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(
        b.settles.lock().unwrap().len(),
        1,
        "never retried, never followed by another settle"
    );
    // What it did not settle stays with the broker, to be delivered again.
    assert_eq!(b.inner.stats().acked, 0);
    assert_eq!(b.inner.len() + b.inner.in_flight(), 100);
}

#[tokio::test(start_paused = true)]
async fn a_configuration_error_in_maintenance_stops_the_worker_with_an_error() {
    let b = failing(0).failing_maintenance(BrokerErrorKind::Config);
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
    let b = failing(0);
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
    let b = failing(0);
    *b.maintain_blocks.lock().unwrap() = Duration::from_millis(300);
    runtime(&b).with_burst(true).run().await.unwrap();
    assert_eq!(*b.events.lock().unwrap(), ["heartbeat", "close"]);
}
