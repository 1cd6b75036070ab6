//! Tower's own layers and `anyhow` compose with a Pythia handler: `.layer(...)` takes tower's
//! `TimeoutLayer`, `LoadShedLayer` and `ConcurrencyLimitLayer` as they are, their `BoxError`s
//! come back as `WorkerError`s that keep their kind, and `anyhow` crosses with `?` one way and
//! `WorkerError::from_anyhow` the other.

use std::time::Duration;

use pythia_core::{
    BoxError, MemoryBroker, Message, RetryPolicy, Worker, WorkerError, WorkerErrorKind,
    WorkerRuntime,
};

fn broker_with(bodies: &[&str]) -> MemoryBroker {
    let b = MemoryBroker::new("tower");
    b.push_many(bodies.iter().map(|body| Message::new(body.to_string())));
    b
}

/// Sleeps for "slow", rejects "poison", succeeds otherwise.
struct Mixed;

impl Worker for Mixed {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        match msg.body_str()? {
            "slow" => tokio::time::sleep(Duration::from_secs(5)).await,
            "poison" => return Err(WorkerError::reject("not an order")),
            _ => {}
        }
        Ok(())
    }
}

fn one_attempt(b: &MemoryBroker) -> WorkerRuntime<MemoryBroker> {
    WorkerRuntime::new(b.clone(), Mixed)
        .with_signal_handling(false)
        .with_burst(true)
        .with_retry_policy(RetryPolicy::default().with_max_attempts(1))
}

#[tokio::test]
async fn tower_timeout_is_a_timeout_and_an_inner_reject_stays_a_reject() {
    let b = broker_with(&["ok", "slow", "poison"]);
    let summary = one_attempt(&b)
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            100,
        )))
        .run()
        .await
        .unwrap();
    assert_eq!((summary.acked, summary.dead_lettered), (1, 2));
    let mut reasons: Vec<String> = b
        .dead_letters()
        .into_iter()
        .filter_map(|d| d.reason)
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2);
    assert!(reasons[0].contains("attempt"), "{reasons:?}"); // the timeout, out of attempts
    assert!(
        reasons[1].starts_with("rejected: not an order"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn load_shed_and_concurrency_limit_compose() {
    let bodies: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let b = broker_with(&refs);
    let summary = one_attempt(&b)
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::ConcurrencyLimitLayer::new(4))
        .run()
        .await
        .unwrap();
    assert_eq!(summary.acked + summary.dead_lettered, 50);
}

#[test]
fn a_boxed_worker_error_keeps_its_kind() {
    for e in [
        WorkerError::reject("poison"),
        WorkerError::retry_later(Duration::from_secs(3), "429"),
        WorkerError::timeout(Duration::from_secs(1)),
    ] {
        let kind = e.kind();
        let text = e.to_string();
        let boxed: BoxError = e.into();
        assert_eq!(boxed.to_string(), text);
        let back = WorkerError::from_boxed(boxed);
        assert_eq!((back.kind(), back.to_string()), (kind, text));
    }
    let plain: BoxError = "connection reset".into();
    assert_eq!(
        WorkerError::from_boxed(plain).kind(),
        WorkerErrorKind::Retry
    );
}

#[cfg(feature = "anyhow")]
#[test]
fn anyhow_crosses_both_ways() {
    fn step(fail: bool) -> Result<(), WorkerError> {
        if fail {
            Err(WorkerError::reject("bad input"))
        } else {
            Ok(())
        }
    }
    fn app() -> anyhow::Result<()> {
        step(false)?;
        step(true)?; // `?` on a WorkerError in anyhow code
        Ok(())
    }
    let e = WorkerError::from_anyhow(app().unwrap_err());
    assert_eq!(
        e.kind(),
        WorkerErrorKind::Reject,
        "the kind survives the trip"
    );
    let other = WorkerError::from_anyhow(anyhow::anyhow!("disk full"));
    assert_eq!(other.kind(), WorkerErrorKind::Retry);
}
