//! The driver's error paths, deterministic in paused time, on the fault broker of
//! `tests/common` (a memory broker that fails exactly where a test scripts it and records when
//! and with what it was called). Fetch backoff and its reset, a fatal fetch error, the order in
//! which failed settles are retried, and a release that fails at shutdown.

mod common;

use std::time::Duration;

use common::FaultBroker;
use pythia_core::{BrokerErrorKind, CancellationToken, RuntimeError, WorkerRuntime, worker_fn};
use tokio::time::Instant;

fn runtime(b: &FaultBroker) -> WorkerRuntime<FaultBroker> {
    WorkerRuntime::new(b.clone(), worker_fn(|_msg| async { Ok(()) }))
        .with_signal_handling(false)
        .with_stats_interval(None)
}

#[tokio::test(start_paused = true)]
async fn failing_fetches_back_off_exponentially_then_resume_and_reset_the_backoff() {
    let b = FaultBroker::with_messages(100);
    let down = Some(BrokerErrorKind::Connection);
    // Six failures, a success, then two more failures: the backoff after the success starts
    // from the beginning again.
    FaultBroker::script(&b.fetch_faults, [down; 6]);
    FaultBroker::script(&b.fetch_faults, [None]);
    FaultBroker::script(&b.fetch_faults, [down; 2]);
    let summary = runtime(&b).with_burst(true).run().await.unwrap();
    assert_eq!(summary.acked, 100, "nothing is lost to failing fetches");

    let fetches = b.fetches.lock().unwrap().clone();
    let gaps: Vec<Duration> = fetches.windows(2).map(|w| w[1].0 - w[0].0).collect();
    // The waits after failures 1..=6: at least 50 ms, growing, at most 5 s each.
    let after_failures = &gaps[..6];
    assert!(
        after_failures[0] >= Duration::from_millis(50),
        "{after_failures:?}"
    );
    assert!(
        after_failures.iter().all(|g| *g <= Duration::from_secs(5)),
        "{after_failures:?}"
    );
    assert!(
        after_failures[5] > after_failures[0] * 4,
        "the waits grow (exponential with jitter): {after_failures:?}"
    );
    // Fetch 7 succeeded: fetch 8 follows at once, and the wait after its failure is back near
    // the first one, not where the backoff had reached.
    assert!(!fetches[6].1 && fetches[7].1 && fetches[8].1);
    assert_eq!(gaps[6], Duration::ZERO, "no wait after a successful fetch");
    assert!(
        gaps[7] < after_failures[5],
        "the backoff restarts after a success: {gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_configuration_error_on_fetch_stops_the_worker_at_once() {
    let b = FaultBroker::with_messages(10);
    FaultBroker::script(&b.fetch_faults, [Some(BrokerErrorKind::Config)]);
    let started = Instant::now();
    let err = runtime(&b).run().await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Broker(e) if e.kind() == BrokerErrorKind::Config),
        "{err:?}"
    );
    assert!(err.is_config());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(b.fetches.lock().unwrap().len(), 1, "never fetched again");
    assert_eq!(b.inner.len(), 10, "nothing was taken from the queue");
}

#[tokio::test(start_paused = true)]
async fn a_failed_settle_batch_is_retried_first_and_whole_then_later_outcomes_follow() {
    let b = FaultBroker::with_messages(200);
    let down = Some(BrokerErrorKind::Connection);
    FaultBroker::script(&b.settle_faults, [down; 3]);
    let summary = runtime(&b)
        .with_concurrency(8)
        .with_batch_size(4)
        .with_burst(true)
        .run()
        .await
        .unwrap();
    assert_eq!(summary.acked, 200);
    assert_eq!(summary.unsettled, 0);

    let settles = b.settles.lock().unwrap().clone();
    let failed: Vec<&Vec<String>> = settles
        .iter()
        .filter(|(_, f)| *f)
        .map(|(ids, _)| ids)
        .collect();
    assert_eq!(failed.len(), 3);
    // Each retry starts with the whole batch that failed before it, in its order.
    for pair in settles.windows(2) {
        if pair[0].1 {
            let (before, after) = (&pair[0].0, &pair[1].0);
            assert!(
                after.starts_with(before),
                "a retry begins with the failed batch: {before:?} then {after:?}"
            );
        }
    }
    // Every message settled exactly once by a successful call.
    let mut ok: Vec<&String> = settles
        .iter()
        .filter(|(_, f)| !*f)
        .flat_map(|(ids, _)| ids)
        .collect();
    let n = ok.len();
    ok.sort();
    ok.dedup();
    assert_eq!((n, ok.len()), (200, 200));
}

#[tokio::test(start_paused = true)]
async fn a_release_that_fails_at_shutdown_counts_what_it_held_as_unsettled() {
    let b = FaultBroker::with_messages(1000);
    FaultBroker::script(&b.release_faults, [Some(BrokerErrorKind::Connection)]);
    let stop = CancellationToken::new();
    // Handlers that never finish: at the end of the grace every one of them is handed back.
    let rt = WorkerRuntime::new(
        b.clone(),
        worker_fn(|_msg| async {
            std::future::pending::<()>().await;
            Ok(())
        }),
    )
    .with_signal_handling(false)
    .with_stats_interval(None)
    .with_concurrency(16)
    .with_shutdown_grace(Duration::from_secs(2))
    .with_cancellation(stop.clone());
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let summary = run
        .await
        .unwrap()
        .expect("a failed release does not fail the run");
    let released: usize = b.releases.lock().unwrap().iter().sum();
    assert!(released >= 16, "the handlers' messages were offered back");
    assert_eq!(summary.released, 0, "the one release failed");
    assert_eq!(
        summary.unsettled, released as u64,
        "what the failed release held is counted unsettled (the broker's recovery returns it)"
    );
    assert_eq!(
        b.inner.in_flight(),
        released,
        "still in flight in the broker: its own recovery (a dead-consumer scan) hands it out"
    );
}
