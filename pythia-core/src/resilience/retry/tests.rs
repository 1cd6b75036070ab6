//! Tests of the in-process retry layer: attempts, backoff and what it does not retry.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::{InProcessRetry, RetryLayer};
use crate::error::{WorkerError, WorkerErrorKind};
use crate::message::Message;
use crate::resilience::TimeoutLayer;
use crate::retry_policy::RetryPolicy;
use crate::worker::{Worker, WorkerService, worker_fn};

/// What one call of the scripted handler saw.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    id: String,
    attempt: u32,
}

/// A handler that returns scripted results in order (then `Ok`), recording every call.
fn scripted(
    results: Vec<Result<(), WorkerError>>,
) -> (WorkerService<impl Worker>, Arc<Mutex<Vec<Call>>>) {
    let results = Arc::new(Mutex::new(VecDeque::from(results)));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let worker = worker_fn(move |m: Message| {
        seen.lock().unwrap().push(Call {
            at: Instant::now(),
            id: m.id().to_owned(),
            attempt: m.attempt(),
        });
        let next = results.lock().unwrap().pop_front().unwrap_or(Ok(()));
        async move { next }
    });
    (WorkerService::new(Arc::new(worker)), calls)
}

fn gaps(calls: &[Call]) -> Vec<Duration> {
    calls.windows(2).map(|w| w[1].at - w[0].at).collect()
}

fn no_jitter() -> InProcessRetry {
    InProcessRetry::default().with_jitter(0.0)
}

async fn send<S>(svc: &mut S, msg: Message) -> Result<(), WorkerError>
where
    S: Service<Message, Response = (), Error = WorkerError>,
{
    svc.ready().await?.call(msg).await
}

#[test]
fn the_schedule_is_retry_policy_math_with_in_process_numbers() {
    let r = no_jitter().with_max_retries(10);
    let got: Vec<u128> = (1..=7).map(|n| r.delay_with(n, 0.0).as_millis()).collect();
    assert_eq!(got, [50, 100, 200, 400, 800, 1000, 1000]);
    let policy = RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter(0.5);
    let jittered = InProcessRetry::default();
    for n in 1..=7 {
        for draw in [0.0, 0.3, 1.0] {
            assert_eq!(jittered.delay_with(n, draw), policy.delay_with(n, draw));
        }
    }
}

#[test]
fn jitter_stays_within_bounds() {
    let r = InProcessRetry::default().with_max_retries(5);
    for n in 1..=5 {
        let full = r.delay_with(n, 0.0);
        let least = r.delay_with(n, 1.0);
        assert_eq!(least.as_secs_f64(), full.as_secs_f64() * 0.5);
        for _ in 0..200 {
            let d = r.delay_for(n);
            assert!(
                least <= d && d <= full,
                "{d:?} outside {least:?}..={full:?}"
            );
        }
    }
}

#[test]
fn setters_clamp() {
    let r = InProcessRetry::default()
        .with_max_retries(1000)
        .with_initial_delay(Duration::from_secs(600))
        .with_factor(f64::NAN)
        .with_jitter(7.0);
    assert_eq!(r.max_retries(), InProcessRetry::MAX_RETRIES_LIMIT);
    assert_eq!(r.initial_delay(), InProcessRetry::MAX_DELAY_LIMIT);
    assert_eq!(r.max_delay(), InProcessRetry::MAX_DELAY_LIMIT);
    assert_eq!(r.factor(), InProcessRetry::DEFAULT_FACTOR);
    assert_eq!(r.jitter(), 1.0);
    let r = InProcessRetry::default()
        .with_initial_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_millis(10));
    assert_eq!(
        r.max_delay(),
        Duration::from_millis(200),
        "cap never below the start"
    );
}

#[test]
fn deserializes_milliseconds_through_the_setters() {
    let r: InProcessRetry =
        serde_json::from_str(r#"{"max_retries": 99, "initial_delay_ms": 20, "jitter": 0}"#)
            .unwrap();
    assert_eq!(
        r,
        InProcessRetry::default()
            .with_max_retries(InProcessRetry::MAX_RETRIES_LIMIT)
            .with_initial_delay(Duration::from_millis(20))
            .with_jitter(0.0)
    );
    let empty: InProcessRetry = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, InProcessRetry::default());
    assert!(serde_json::from_str::<InProcessRetry>(r#"{"retries": 1}"#).is_err());
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_with_backoff_on_the_same_message() {
    let (handler, calls) = scripted(vec![
        Err(WorkerError::retry("reset 1")),
        Err(WorkerError::retry("reset 2")),
    ]);
    let mut svc = RetryLayer::new(no_jitter()).layer(handler);
    let msg = Message::new("x").with_attempt(3);
    send(&mut svc, msg.clone()).await.unwrap();

    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(
        gaps(&calls),
        [Duration::from_millis(50), Duration::from_millis(100)]
    );
    for c in calls.iter() {
        assert_eq!(c.id, msg.id());
        assert_eq!(c.attempt, 3, "in-process tries are not deliveries");
    }
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_lands_within_bounds() {
    let cfg = InProcessRetry::default().with_max_retries(4);
    let (handler, calls) = scripted((0..10).map(|_| Err(WorkerError::retry("down"))).collect());
    let mut svc = RetryLayer::new(cfg.clone()).layer(handler);
    send(&mut svc, Message::new("x")).await.unwrap_err();

    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 5);
    for (i, gap) in gaps(&calls).into_iter().enumerate() {
        let n = i as u32 + 1;
        let (least, full) = (cfg.delay_with(n, 1.0), cfg.delay_with(n, 0.0));
        // The tokio timer has millisecond resolution: a sleep may end up to 1 ms late.
        assert!(
            least <= gap && gap <= full + Duration::from_millis(1),
            "retry {n}: {gap:?} outside {least:?}..={full:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_tries_return_the_last_error_unchanged() {
    let (handler, calls) = scripted(vec![
        Err(WorkerError::retry("first")),
        Err(WorkerError::retry("second")),
        Err(WorkerError::timeout(Duration::from_secs(1))),
        Err(WorkerError::retry("never reached")),
    ]);
    let mut svc = RetryLayer::new(no_jitter()).layer(handler);
    let err = send(&mut svc, Message::new("x")).await.unwrap_err();
    assert_eq!(calls.lock().unwrap().len(), 3, "1 call + 2 retries");
    assert_eq!(err.kind(), WorkerErrorKind::Timeout);
    assert_eq!(err.to_string(), "handler timed out after 1s");
}

#[tokio::test(start_paused = true)]
async fn reject_is_never_retried() {
    let (handler, calls) = scripted(vec![Err(WorkerError::reject("poison"))]);
    let mut svc = RetryLayer::new(no_jitter()).layer(handler);
    let start = Instant::now();
    let err = send(&mut svc, Message::new("x")).await.unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Reject);
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_call_goes_back_to_the_runtime_at_once() {
    let (handler, calls) = scripted(vec![Err(WorkerError::rate_limited(
        Duration::from_millis(10),
        "429",
    ))]);
    let mut svc = RetryLayer::new(no_jitter()).layer(handler);
    let start = Instant::now();
    let err = send(&mut svc, Message::new("x")).await.unwrap_err();
    assert_eq!(err.throttle(), Some(Duration::from_millis(10)));
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_short_retry_after_is_slept_as_asked() {
    let (handler, calls) = scripted(vec![Err(WorkerError::retry_later(
        Duration::from_millis(700),
        "429",
    ))]);
    let mut svc = RetryLayer::new(no_jitter()).layer(handler);
    send(&mut svc, Message::new("x")).await.unwrap();
    assert_eq!(gaps(&calls.lock().unwrap()), [Duration::from_millis(700)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_goes_back_to_the_broker_at_once() {
    let (handler, calls) = scripted(vec![Err(WorkerError::retry_later(
        Duration::from_secs(5),
        "429",
    ))]);
    let mut svc = RetryLayer::new(no_jitter()).layer(handler);
    let start = Instant::now();
    let err = send(&mut svc, Message::new("x")).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(
        err.kind(),
        WorkerErrorKind::RetryAfter(Duration::from_secs(5))
    );
}

#[tokio::test(start_paused = true)]
async fn zero_retries_pass_results_through() {
    let (handler, calls) = scripted(vec![Err(WorkerError::retry("down"))]);
    let mut svc = RetryLayer::new(no_jitter().with_max_retries(0)).layer(handler);
    send(&mut svc, Message::new("x")).await.unwrap_err();
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_try_gets_its_own_deadline_when_the_timeout_is_inside() {
    let tries = Arc::new(Mutex::new(0u32));
    let t = tries.clone();
    let handler = WorkerService::new(Arc::new(worker_fn(move |_m: Message| {
        let first = {
            let mut n = t.lock().unwrap();
            *n += 1;
            *n == 1
        };
        async move {
            if first {
                std::future::pending::<()>().await; // hangs: only the deadline ends it
            }
            Ok(())
        }
    })));
    let mut svc = RetryLayer::new(no_jitter())
        .layer(TimeoutLayer::new(Duration::from_secs(1)).layer(handler));
    let start = Instant::now();
    send(&mut svc, Message::new("x")).await.unwrap();
    assert_eq!(*tries.lock().unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(1050));
}
