//! Tests of the circuit breaker: its states, probes, cool-downs and the shared-state seam.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use tokio::time::{Instant, advance};
use tower::{Layer, Service};

use super::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitOpen,
    CircuitState,
};
use crate::error::{WorkerError, WorkerErrorKind};
use crate::message::Message;
use crate::worker::{Worker, WorkerService, worker_fn};

const COOL_DOWN: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);

/// A handler whose result the body names; `calls` counts the calls that reached it.
fn handler(calls: Arc<AtomicUsize>) -> WorkerService<impl Worker> {
    WorkerService::new(Arc::new(worker_fn(move |m: Message| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            match m.body_str().unwrap() {
                "ok" => Ok(()),
                "fail" => Err(WorkerError::retry("downstream down")),
                "later" => Err(WorkerError::retry_later(Duration::from_secs(1), "429")),
                "timeout" => Err(WorkerError::timeout(Duration::from_secs(1))),
                "panic" => Err(WorkerError::panic("boom")),
                "reject" => Err(WorkerError::reject("poison")),
                "slow-ok" => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(())
                }
                "slow-fail" => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Err(WorkerError::retry("downstream down"))
                }
                "hang" => std::future::pending().await,
                other => panic!("unknown script {other}"),
            }
        }
    })))
}

/// Only the trigger a test sets is active.
fn cfg() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .with_consecutive_failures(0)
        .with_failure_rate(0.0)
        .with_cool_down(COOL_DOWN)
}

fn breaker(
    config: CircuitBreakerConfig,
) -> (
    CircuitBreaker<WorkerService<impl Worker>>,
    CircuitBreakerHandle,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = CircuitBreakerLayer::new(config);
    let handle = layer.handle();
    (layer.layer(handler(calls.clone())), handle, calls)
}

fn ready_now<S: Service<Message, Error = WorkerError>>(svc: &mut S) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(())))
}

async fn send<S: Service<Message, Response = (), Error = WorkerError>>(
    svc: &mut S,
    body: &'static str,
) -> Result<(), WorkerError> {
    assert!(ready_now(svc), "breaker refused {body:?}");
    svc.call(Message::new(body)).await
}

/// Opens a breaker whose only trigger is one failure.
async fn tripped(
    config: CircuitBreakerConfig,
) -> (
    CircuitBreaker<WorkerService<impl Worker>>,
    CircuitBreakerHandle,
) {
    let (mut svc, handle, _) = breaker(config.with_consecutive_failures(1));
    send(&mut svc, "fail").await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    (svc, handle)
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_failures() {
    let (mut svc, handle, _) = breaker(cfg().with_consecutive_failures(3));
    let mut other = svc.clone();
    for body in ["fail", "fail", "ok", "fail", "fail"] {
        let _ = send(&mut svc, body).await;
    }
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "a success resets the run"
    );
    send(&mut svc, "fail").await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    assert!(!ready_now(&mut svc));
    assert!(!ready_now(&mut other), "clones share the breaker");
    assert_eq!(handle.transitions(), 1);
}

#[tokio::test(start_paused = true)]
async fn every_retryable_kind_counts_as_a_failure() {
    let (mut svc, handle, _) = breaker(cfg().with_consecutive_failures(4));
    for body in ["fail", "later", "timeout"] {
        send(&mut svc, body).await.unwrap_err();
        assert_eq!(handle.state(), CircuitState::Closed);
    }
    send(&mut svc, "panic").await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn reject_is_not_counted() {
    let (mut svc, handle, _) = breaker(
        cfg()
            .with_consecutive_failures(2)
            .with_failure_rate(0.1)
            .with_minimum_calls(1),
    );
    for _ in 0..20 {
        let e = send(&mut svc, "reject").await.unwrap_err();
        assert_eq!(e.kind(), WorkerErrorKind::Reject);
    }
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "poison is not sickness"
    );
    let (mut svc, handle, _) = breaker(cfg().with_consecutive_failures(2));
    for body in ["fail", "reject", "reject"] {
        let _ = send(&mut svc, body).await;
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&mut svc, "fail").await.unwrap_err();
    assert_eq!(
        handle.state(),
        CircuitState::Open,
        "a reject does not reset the run either"
    );
}

#[tokio::test(start_paused = true)]
async fn the_failure_rate_waits_for_the_minimum_volume() {
    let (mut svc, handle, _) = breaker(
        cfg()
            .with_failure_rate(0.5)
            .with_window_size(10)
            .with_minimum_calls(6),
    );
    for body in ["fail", "ok", "fail", "ok", "fail"] {
        let _ = send(&mut svc, body).await;
    }
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "60 % failures, but only 5 calls"
    );
    send(&mut svc, "fail").await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open, "4 failures out of 6");
}

#[tokio::test(start_paused = true)]
async fn the_failure_rate_is_over_a_sliding_window() {
    let (mut svc, handle, _) = breaker(
        cfg()
            .with_failure_rate(0.75)
            .with_window_size(4)
            .with_minimum_calls(4),
    );
    // Windows: FFSS .5, FSSS .25, SSSF .25, SSFF .5; 4 failures in 7 calls overall.
    for body in ["fail", "fail", "ok", "ok", "ok", "fail", "fail"] {
        let _ = send(&mut svc, body).await;
        assert_eq!(handle.state(), CircuitState::Closed);
    }
    // SFFF: .75 over the window, though only 5/8 overall.
    send(&mut svc, "fail").await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn stays_open_for_the_cool_down_then_half_opens() {
    let (mut svc, handle) = tripped(cfg()).await;
    advance(COOL_DOWN - MS).await;
    assert!(!ready_now(&mut svc));
    assert_eq!(handle.state(), CircuitState::Open);
    advance(MS).await;
    assert!(ready_now(&mut svc));
    assert_eq!(handle.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_wakes_the_task_when_the_cool_down_ends() {
    let (mut svc, handle) = tripped(cfg()).await;
    let start = Instant::now();
    // If no timer were armed, paused time would jump to this timeout instead.
    tokio::time::timeout(3 * COOL_DOWN, poll_fn(|cx| svc.poll_ready(cx)))
        .await
        .expect("woken by the cool-down timer")
        .unwrap();
    assert_eq!(start.elapsed(), COOL_DOWN);
    assert_eq!(handle.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_max_probes() {
    let (svc, handle) = tripped(cfg().with_half_open_max_probes(2).with_success_threshold(5)).await;
    advance(COOL_DOWN).await;
    let (mut a, mut b, mut c, mut d) = (svc.clone(), svc.clone(), svc.clone(), svc.clone());
    assert!(ready_now(&mut a));
    assert!(ready_now(&mut b));
    assert!(
        !ready_now(&mut c),
        "the third concurrent probe is not admitted"
    );
    assert!(ready_now(&mut a), "polling again keeps a's slot");
    assert!(!ready_now(&mut c));

    let probe_a = a.call(Message::new("slow-ok"));
    let probe_b = b.call(Message::new("hang"));
    assert!(!ready_now(&mut c), "two probes in flight");

    // c waits with its real waker and is woken when a's probe finishes.
    let (a_result, c_ready) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(probe_a, poll_fn(|cx| c.poll_ready(cx)))
    })
    .await
    .expect("c is woken when a probe slot frees up");
    a_result.unwrap();
    c_ready.unwrap();
    assert_eq!(handle.state(), CircuitState::HalfOpen);

    // b (in flight) and c (reserved) hold both slots; dropping b's probe frees one.
    assert!(!ready_now(&mut d));
    drop(probe_b);
    assert!(ready_now(&mut d));
    assert_eq!(handle.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn closes_after_the_success_threshold() {
    let (mut svc, handle) = tripped(cfg().with_success_threshold(2)).await;
    advance(COOL_DOWN).await;
    send(&mut svc, "ok").await.unwrap();
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    send(&mut svc, "ok").await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.transitions(), 3);
}

#[tokio::test(start_paused = true)]
async fn counts_start_afresh_after_closing() {
    let (mut svc, handle, _) =
        breaker(cfg().with_consecutive_failures(2).with_success_threshold(1));
    send(&mut svc, "fail").await.unwrap_err();
    send(&mut svc, "fail").await.unwrap_err();
    advance(COOL_DOWN).await;
    send(&mut svc, "ok").await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&mut svc, "fail").await.unwrap_err();
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "failures from before the opening do not carry over"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_a_full_cool_down() {
    let (mut svc, handle) = tripped(cfg().with_success_threshold(3)).await;
    advance(COOL_DOWN).await;
    send(&mut svc, "ok").await.unwrap();
    send(&mut svc, "timeout").await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    advance(COOL_DOWN - MS).await;
    assert!(!ready_now(&mut svc));
    advance(MS).await;
    assert!(ready_now(&mut svc));
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(handle.transitions(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_probe_decides_nothing_and_frees_its_slot() {
    let (mut svc, handle) = tripped(cfg().with_success_threshold(1)).await;
    advance(COOL_DOWN).await;
    send(&mut svc, "reject").await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    send(&mut svc, "ok").await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn results_of_calls_admitted_before_a_transition_are_ignored() {
    let (mut svc, handle, _) = breaker(
        cfg()
            .with_consecutive_failures(1)
            .with_success_threshold(1)
            .with_cool_down(Duration::from_millis(100)),
    );
    let mut early = svc.clone();
    assert!(ready_now(&mut early));
    let stale = early.call(Message::new("slow-fail")); // admitted while closed

    send(&mut svc, "fail").await.unwrap_err(); // opens
    advance(Duration::from_millis(100)).await;
    send(&mut svc, "ok").await.unwrap(); // probe closes it
    assert_eq!(handle.state(), CircuitState::Closed);

    stale.await.unwrap_err();
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "the stale failure must not reopen it"
    );
    assert_eq!(handle.transitions(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_call_without_readiness_is_refused_while_open() {
    let (mut svc, handle, calls) = breaker(cfg().with_consecutive_failures(1));
    send(&mut svc, "fail").await.unwrap_err();
    let before = calls.load(Ordering::SeqCst);
    advance(Duration::from_secs(4)).await;
    let err = svc.call(Message::new("ok")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        WorkerErrorKind::RetryAfter(COOL_DOWN - Duration::from_secs(4))
    );
    let cause = err.source_error().downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(cause.breaker(), CircuitBreakerConfig::DEFAULT_NAME);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "the handler was not called"
    );
    assert_eq!(handle.transitions(), 1, "a refused call does not count");
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_each_state() {
    let (mut svc, handle, _) =
        breaker(cfg().with_consecutive_failures(1).with_success_threshold(1));
    let mut states = handle.subscribe();
    assert_eq!(*states.borrow_and_update(), CircuitState::Closed);
    send(&mut svc, "fail").await.unwrap_err();
    assert!(states.has_changed().unwrap());
    assert_eq!(*states.borrow_and_update(), CircuitState::Open);
    advance(COOL_DOWN).await;
    assert!(ready_now(&mut svc));
    assert_eq!(*states.borrow_and_update(), CircuitState::HalfOpen);
    send(&mut svc, "ok").await.unwrap();
    assert_eq!(*states.borrow_and_update(), CircuitState::Closed);
}

/// A recorder that keeps gauge and counter values, keyed `name{label=value,...}`.
#[derive(Default)]
struct TestRecorder {
    values: Mutex<HashMap<String, Arc<TestValue>>>,
}

#[derive(Default)]
struct TestValue(AtomicU64);

impl GaugeFn for TestValue {
    fn increment(&self, v: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) + v);
    }
    fn decrement(&self, v: f64) {
        GaugeFn::increment(self, -v);
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::SeqCst);
    }
}

impl CounterFn for TestValue {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::SeqCst);
    }
    fn absolute(&self, v: u64) {
        self.0.fetch_max(v, Ordering::SeqCst);
    }
}

impl TestRecorder {
    fn value(&self, key: &Key) -> Arc<TestValue> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.values.lock().unwrap().entry(name).or_default().clone()
    }

    fn gauge(&self, name: &str) -> f64 {
        f64::from_bits(self.values.lock().unwrap()[name].0.load(Ordering::SeqCst))
    }

    fn counter(&self, name: &str) -> u64 {
        self.values.lock().unwrap()[name].0.load(Ordering::SeqCst)
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test(start_paused = true)]
async fn the_state_is_exported_as_metrics() {
    const STATE: &str = "pythia_circuit_breaker_state{breaker=api}";
    let to = |s: &str| format!("pythia_circuit_breaker_transitions_total{{breaker=api,to={s}}}");
    let rec = TestRecorder::default();
    let (mut svc, _handle, _) = metrics::with_local_recorder(&rec, || {
        breaker(
            cfg()
                .with_name("api")
                .with_consecutive_failures(1)
                .with_success_threshold(1),
        )
    });
    assert_eq!(rec.gauge(STATE), 0.0);
    send(&mut svc, "fail").await.unwrap_err();
    assert_eq!(rec.gauge(STATE), 2.0);
    advance(COOL_DOWN).await;
    assert!(ready_now(&mut svc));
    assert_eq!(rec.gauge(STATE), 1.0);
    send(&mut svc, "ok").await.unwrap();
    assert_eq!(rec.gauge(STATE), 0.0);
    for state in ["open", "half_open", "closed"] {
        assert_eq!(rec.counter(&to(state)), 1, "{state}");
    }
}

#[test]
fn config_setters_validate() {
    let c = CircuitBreakerConfig::default()
        .with_name("")
        .with_failure_rate(f64::NAN)
        .with_window_size(1_000_000)
        .with_minimum_calls(0)
        .with_cool_down(Duration::ZERO)
        .with_half_open_max_probes(0)
        .with_success_threshold(0);
    assert_eq!(c.name(), CircuitBreakerConfig::DEFAULT_NAME);
    assert_eq!(c.failure_rate(), 0.0);
    assert_eq!(c.window_size(), CircuitBreakerConfig::MAX_WINDOW_SIZE);
    assert_eq!(c.minimum_calls(), 1);
    assert_eq!(c.cool_down(), CircuitBreakerConfig::MIN_COOL_DOWN);
    assert_eq!(c.half_open_max_probes(), 1);
    assert_eq!(c.success_threshold(), 1);
    assert_eq!(
        CircuitBreakerConfig::default()
            .with_failure_rate(3.0)
            .failure_rate(),
        1.0
    );
    let c = CircuitBreakerConfig::default()
        .with_window_size(5)
        .with_minimum_calls(50);
    assert_eq!(c.effective_minimum_calls(), 5);
}

#[test]
fn config_deserializes_through_the_setters() {
    let c: CircuitBreakerConfig = serde_json::from_str(
        r#"{"name": "api", "consecutive_failures": 0, "cool_down_ms": 1500, "half_open_max_probes": 0}"#,
    )
    .unwrap();
    assert_eq!(
        c,
        CircuitBreakerConfig::default()
            .with_name("api")
            .with_consecutive_failures(0)
            .with_cool_down(Duration::from_millis(1500))
    );
    assert_eq!(
        serde_json::from_str::<CircuitBreakerConfig>("{}").unwrap(),
        CircuitBreakerConfig::default()
    );
    assert!(serde_json::from_str::<CircuitBreakerConfig>(r#"{"cooldown": 1}"#).is_err());
}

/// A store whose answer the test sets, recording what each sync reported.
#[derive(Debug, Default)]
struct FakeStore {
    answer: Mutex<Option<super::SharedCircuitState>>,
    reports: Mutex<Vec<super::CircuitReport>>,
}

impl super::CircuitStateStore for Arc<FakeStore> {
    fn sync<'a>(
        &'a self,
        _: &'a CircuitBreakerConfig,
        report: &'a super::CircuitReport,
    ) -> super::StoreFuture<'a> {
        self.reports.lock().unwrap().push(report.clone());
        let answer = *self.answer.lock().unwrap();
        Box::pin(async move {
            answer.ok_or_else(|| crate::error::BrokerError::connection("store unreachable"))
        })
    }
}

fn shared(store: &Arc<FakeStore>) -> CircuitBreakerConfig {
    cfg()
        .with_consecutive_failures(2)
        .with_sync_interval(Duration::from_millis(100))
        .with_shared_state(Arc::clone(store))
}

#[tokio::test(start_paused = true)]
async fn a_shared_breaker_follows_the_store_and_reports_what_it_saw() {
    let store = Arc::new(FakeStore::default());
    *store.answer.lock().unwrap() = Some(super::SharedCircuitState::Closed);
    let (mut svc, handle, calls) = breaker(shared(&store));
    send(&mut svc, "ok").await.unwrap();
    send(&mut svc, "fail").await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let first = store.reports.lock().unwrap().last().cloned().unwrap();
    assert_eq!((first.successes, first.failures), (1, 1));
    assert_eq!(first.consecutive_failures, 1);

    // Another replica opened it: this one stops calling, with the store's deadline.
    *store.answer.lock().unwrap() = Some(super::SharedCircuitState::Open {
        remaining: Duration::from_secs(5),
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(handle.state(), CircuitState::Open);
    assert!(!ready_now(&mut svc));
    let before = calls.load(Ordering::SeqCst);

    // Another replica's probes closed it: this one calls again.
    *store.answer.lock().unwrap() = Some(super::SharedCircuitState::Closed);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&mut svc, "ok").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(start_paused = true)]
async fn a_shared_breaker_reports_its_own_opening_and_decides_alone_without_a_store() {
    let store = Arc::new(FakeStore::default()); // every sync fails
    let (mut svc, handle, _) = breaker(shared(&store));
    send(&mut svc, "fail").await.unwrap_err();
    send(&mut svc, "fail").await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open, "opened alone");
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The opening is re-sent with each failed sync until one goes through.
    let reports = store.reports.lock().unwrap().clone();
    assert!(reports.len() >= 2, "{reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r.event == Some(super::CircuitEvent::Opened)),
        "{reports:?}"
    );
    assert_eq!(handle.state(), CircuitState::Open);
}
