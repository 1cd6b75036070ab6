//! The runtime's promises, against the in-memory broker: bounded concurrency, exactly one
//! settlement per delivery, retries and dead letters by intent, panics caught, graceful drain.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pythia_core::{
    Dispatch, MemoryBroker, Message, RetryPolicy, RuntimeError, Worker, WorkerError, WorkerRuntime,
    worker_fn,
};

fn broker_with(n: usize) -> MemoryBroker {
    let b = MemoryBroker::new("test").recording_settlements();
    b.push_many((0..n).map(|i| Message::new(format!("{i}"))));
    b
}

fn runtime<W: Worker>(b: &MemoryBroker, w: W) -> WorkerRuntime<MemoryBroker> {
    WorkerRuntime::new(b.clone(), w).with_signal_handling(false)
}

/// Tracks how many handlers run at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    done: AtomicUsize,
}

struct Sleepy {
    gauge: Arc<Gauge>,
}

impl Worker for Sleepy {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let n = self.gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.gauge.max.fetch_max(n, Ordering::SeqCst);
        let i: u64 = msg.body_str()?.parse()?;
        tokio::time::sleep(Duration::from_millis(1 + i % 7)).await;
        self.gauge.now.fetch_sub(1, Ordering::SeqCst);
        self.gauge.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn concurrency_is_bounded(dispatch: Dispatch) {
    let b = broker_with(500);
    let gauge = Arc::new(Gauge::default());
    let summary = runtime(
        &b,
        Sleepy {
            gauge: gauge.clone(),
        },
    )
    .with_concurrency(8)
    .with_batch_size(5)
    .with_dispatch(dispatch)
    .with_burst(true)
    .run()
    .await
    .unwrap();
    assert_eq!(summary.acked, 500);
    assert_eq!(gauge.done.load(Ordering::SeqCst), 500);
    assert_eq!(
        gauge.max.load(Ordering::SeqCst),
        8,
        "bound reached but never exceeded"
    );
    assert_eq!(b.stats().duplicate_settlements, 0);
    assert_eq!(b.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_inline() {
    concurrency_is_bounded(Dispatch::Inline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded_spawned() {
    concurrency_is_bounded(Dispatch::Spawn).await;
}

/// Body decides: "ok", "retry-once" (fails on attempt 1), "reject", "always-fail".
fn by_body() -> impl Worker {
    worker_fn(|msg: Message| async move {
        match (msg.body_str().unwrap(), msg.attempt()) {
            ("ok", _) => Ok(()),
            ("retry-once", 1) => Err(WorkerError::retry("first attempt fails")),
            ("retry-once", _) => Ok(()),
            ("reject", _) => Err(WorkerError::reject("poison")),
            _ => Err(WorkerError::retry("still failing")),
        }
    })
}

#[tokio::test(start_paused = true)]
async fn every_delivery_is_settled_once_with_the_right_outcome() {
    let b = MemoryBroker::new("test").recording_settlements();
    let kinds = ["ok", "retry-once", "reject", "always-fail"];
    let msgs: Vec<Message> = (0..40).map(|i| Message::new(kinds[i % 4])).collect();
    let ids: HashMap<String, String> = msgs
        .iter()
        .map(|m| (m.id().to_owned(), m.body_str().unwrap().to_owned()))
        .collect();
    b.push_many(msgs);

    let summary = runtime(&b, by_body())
        .with_retry_policy(RetryPolicy::default().with_max_attempts(3))
        .with_concurrency(4)
        .with_burst(true)
        .run()
        .await
        .unwrap();

    let mut history: HashMap<String, Vec<&str>> = HashMap::new();
    for (id, outcome) in b.ledger() {
        history.entry(id).or_default().push(outcome);
    }
    assert_eq!(history.len(), 40);
    for (id, outcomes) in &history {
        let expected: &[&str] = match ids[id].as_str() {
            "ok" => &["ack"],
            "retry-once" => &["retry", "ack"],
            "reject" => &["dead_letter"],
            _ => &["retry", "retry", "dead_letter"],
        };
        assert_eq!(outcomes, expected, "message {id} ({})", ids[id]);
    }
    assert_eq!(summary.acked, 20);
    assert_eq!(summary.retried, 30);
    assert_eq!(summary.dead_lettered, 20);
    assert_eq!(b.stats().duplicate_settlements, 0);
    let dead = b.dead_letters();
    assert_eq!(dead.len(), 20);
    assert!(
        dead.iter()
            .any(|d| d.reason.as_deref() == Some("rejected: poison"))
    );
    assert!(dead.iter().any(|d| d.reason.as_deref()
        == Some("failed after 3 attempts: still failing")
        && d.message.attempt() == 3));
}

#[tokio::test(start_paused = true)]
async fn retries_wait_for_their_delay() {
    let b = broker_with(0);
    b.push(Message::new("x"));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let w = worker_fn(move |msg: Message| {
        let seen = seen2.clone();
        async move {
            seen.lock()
                .unwrap()
                .push((msg.attempt(), tokio::time::Instant::now()));
            if msg.attempt() < 3 {
                Err(WorkerError::retry_later(Duration::from_secs(10), "later"))
            } else {
                Ok(())
            }
        }
    });
    let summary = runtime(&b, w)
        .with_retry_policy(RetryPolicy::default().with_max_attempts(5))
        .with_burst(true)
        .run()
        .await
        .unwrap();
    assert_eq!((summary.acked, summary.retried), (1, 2));
    let seen = seen.lock().unwrap();
    let attempts: Vec<u32> = seen.iter().map(|s| s.0).collect();
    assert_eq!(attempts, [1, 2, 3]);
    for w in seen.windows(2) {
        let gap = w[1].1 - w[0].1;
        assert!(gap >= Duration::from_secs(10), "retried after {gap:?}");
        assert!(gap < Duration::from_secs(11), "retried after {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_caught_and_the_worker_goes_on() {
    let b = broker_with(0);
    b.push_many(["ok", "panic", "ok", "panic", "ok"].map(Message::new));
    let w = worker_fn(|msg: Message| async move {
        if msg.body_str().unwrap() == "panic" {
            panic!("handler bug");
        }
        Ok(())
    });
    let summary = runtime(&b, w)
        .with_retry_policy(RetryPolicy::default().with_max_attempts(2))
        .with_burst(true)
        .run()
        .await
        .unwrap();
    assert_eq!(summary.acked, 3);
    assert_eq!(summary.panics, 4, "two messages, two attempts each");
    let dead = b.dead_letters();
    assert_eq!(dead.len(), 2);
    assert!(
        dead[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("handler panicked: handler bug")),
        "{:?}",
        dead[0].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_spawned_handler_is_caught_too() {
    let b = broker_with(0);
    b.push_many(["panic", "ok"].map(Message::new));
    let w = worker_fn(|msg: Message| async move {
        assert_ne!(msg.body_str().unwrap(), "panic", "handler bug");
        Ok(())
    });
    let summary = runtime(&b, w)
        .with_dispatch(Dispatch::Spawn)
        .with_retry_policy(RetryPolicy::no_retries())
        .with_burst(true)
        .run()
        .await
        .unwrap();
    assert_eq!(
        (summary.acked, summary.dead_lettered, summary.panics),
        (1, 1, 1)
    );
}

struct Slow {
    started: Arc<AtomicUsize>,
    took: Duration,
}

impl Worker for Slow {
    async fn process_message(&self, _msg: &Message) -> Result<(), WorkerError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.took).await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_in_flight_work_and_loses_nothing() {
    let b = broker_with(100);
    let started = Arc::new(AtomicUsize::new(0));
    let rt = runtime(
        &b,
        Slow {
            started: started.clone(),
            took: Duration::from_secs(2),
        },
    )
    .with_concurrency(10)
    .with_shutdown_grace(Duration::from_secs(5));
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_secs(3)).await; // second batch of 10 is mid-flight
    stop.cancel();
    let summary = run.await.unwrap().unwrap();

    assert_eq!(
        started.load(Ordering::SeqCst),
        20,
        "no fetch after the stop"
    );
    assert_eq!(
        summary.acked, 20,
        "in-flight work finished within the grace period"
    );
    assert_eq!(b.in_flight(), 0);
    assert_eq!(
        b.len() as u64 + summary.acked,
        100,
        "the rest is still queued"
    );
    assert_eq!(b.stats().acked, 20);
}

#[tokio::test(start_paused = true)]
async fn work_that_overruns_the_grace_period_is_handed_back_not_acked() {
    let b = broker_with(5);
    let started = Arc::new(AtomicUsize::new(0));
    let rt = runtime(
        &b,
        Slow {
            started: started.clone(),
            took: Duration::from_secs(60),
        },
    )
    .with_concurrency(3)
    .with_shutdown_grace(Duration::from_secs(1));
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.acked, 0);
    assert_eq!(summary.released, 3);
    assert_eq!(b.in_flight(), 0);
    assert_eq!(b.len(), 5, "everything is back in the queue");
    assert_eq!(b.stats().released, 3);
    // Released messages go back to the front, in order.
    let again = broker_first_bodies(&b, 5).await;
    assert_eq!(again, ["0", "1", "2", "3", "4"]);
}

async fn broker_first_bodies(b: &MemoryBroker, n: usize) -> Vec<String> {
    use pythia_core::Broker;
    let ds = b.fetch(n).await.unwrap();
    ds.iter()
        .map(|d| d.message.body_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn on_start_failure_consumes_nothing() {
    struct Failing;
    impl Worker for Failing {
        async fn process_message(&self, _msg: &Message) -> Result<(), WorkerError> {
            Ok(())
        }
        async fn on_start(&self) -> Result<(), WorkerError> {
            Err(WorkerError::reject("no database"))
        }
    }
    let b = broker_with(3);
    let err = runtime(&b, Failing).run().await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::Start(ref e) if e.to_string().contains("no database")),
        "{err}"
    );
    // The hook's error is the run error's source, for `anyhow`'s chains and `{:#}`.
    let source = std::error::Error::source(&err).expect("a source");
    assert!(source.to_string().contains("no database"), "{source}");
    assert_eq!(b.len(), 3);
    assert_eq!(b.stats().delivered, 0);
}

#[tokio::test(start_paused = true)]
async fn hooks_run_once_each() {
    #[derive(Default, Clone)]
    struct Hooked {
        starts: Arc<AtomicUsize>,
        stops: Arc<AtomicUsize>,
    }
    impl Worker for Hooked {
        async fn process_message(&self, _msg: &Message) -> Result<(), WorkerError> {
            Ok(())
        }
        async fn on_start(&self) -> Result<(), WorkerError> {
            self.starts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn on_stop(&self) {
            self.stops.fetch_add(1, Ordering::SeqCst);
        }
    }
    let h = Hooked::default();
    let b = broker_with(10);
    runtime(&b, h.clone()).with_burst(true).run().await.unwrap();
    assert_eq!(h.starts.load(Ordering::SeqCst), 1);
    assert_eq!(h.stops.load(Ordering::SeqCst), 1);
}

/// A layer whose readiness is switched from outside, like an open circuit breaker.
#[derive(Clone)]
struct Gate {
    open: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Gated<S> {
    inner: S,
    open: Arc<AtomicBool>,
}

impl<S> tower::Layer<S> for Gate {
    type Service = Gated<S>;
    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            open: self.open.clone(),
        }
    }
}

impl<S: tower::Service<Message, Response = (), Error = WorkerError>> tower::Service<Message>
    for Gated<S>
{
    type Response = ();
    type Error = WorkerError;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WorkerError>> {
        if self.open.load(Ordering::SeqCst) {
            self.inner.poll_ready(cx)
        } else {
            // Re-check soon: a real breaker arms a timer for its cool-down.
            let waker = cx.waker().clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                waker.wake();
            });
            Poll::Pending
        }
    }
    fn call(&mut self, m: Message) -> Self::Future {
        self.inner.call(m)
    }
}

#[tokio::test(start_paused = true)]
async fn an_unready_handler_stack_pauses_fetching() {
    let b = broker_with(50);
    let open = Arc::new(AtomicBool::new(false));
    let rt = runtime(&b, worker_fn(|_m: Message| async { Ok(()) }))
        .layer(Gate { open: open.clone() })
        .with_burst(true);
    let run = tokio::spawn(rt.run());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(b.len(), 50, "nothing fetched while the gate is shut");
    assert_eq!(b.stats().delivered, 0);
    open.store(true, Ordering::SeqCst);
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.acked, 50);
}

#[tokio::test(start_paused = true)]
async fn burst_mode_waits_for_scheduled_retries() {
    let b = broker_with(0);
    b.push(Message::new("retry-once"));
    let summary = runtime(&b, by_body())
        .with_retry_policy(
            RetryPolicy::default()
                .with_initial_delay(Duration::from_secs(30))
                .with_jitter(0.0),
        )
        .with_burst(true)
        .run()
        .await
        .unwrap();
    assert_eq!((summary.retried, summary.acked), (1, 1));
    assert!(summary.elapsed >= Duration::from_secs(30));
}

/// A broker that answers an empty fetch at once must not make the driver spin: spawned
/// handlers on a current-thread runtime need the thread too. The runtime runs on its own
/// thread, so a regression fails this test by timeout instead of hanging it.
#[test]
fn an_instant_empty_fetch_does_not_starve_spawned_handlers() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let summary = rt.block_on(async {
            let b = MemoryBroker::with_fetch_wait("instant", Duration::ZERO);
            b.push_many((0..1000).map(|i| Message::new(format!("{i}"))));
            let w = worker_fn(|_m: Message| async {
                tokio::task::yield_now().await;
                Ok(())
            });
            WorkerRuntime::new(b.clone(), w)
                .with_signal_handling(false)
                .with_dispatch(Dispatch::Spawn)
                .with_concurrency(100)
                .with_batch_size(100)
                .with_burst(true)
                .run()
                .await
                .unwrap()
        });
        let _ = tx.send(summary.acked);
    });
    let acked = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the runtime spun instead of letting handlers run");
    assert_eq!(acked, 1000);
}

#[tokio::test(start_paused = true)]
async fn a_hard_stop_hands_back_at_once_what_is_in_the_handler() {
    // A handler that can finish nothing any more (the CLI's print handler on a closed stdout):
    // it asks for a hard stop and never completes. Its message and every other unfinished one
    // go back to the broker now, not after the grace period, and none counts as a failure.
    struct GivesUp {
        after: usize,
        seen: AtomicUsize,
        stop: pythia_core::CancellationToken,
    }
    impl Worker for GivesUp {
        async fn process_message(&self, _msg: &Message) -> Result<(), WorkerError> {
            if self.seen.fetch_add(1, Ordering::SeqCst) < self.after {
                return Ok(());
            }
            self.stop.cancel();
            std::future::pending().await
        }
    }
    for dispatch in [Dispatch::Inline, Dispatch::Spawn] {
        let b = broker_with(50);
        let stop = pythia_core::CancellationToken::new();
        let rt = runtime(
            &b,
            GivesUp {
                after: 5,
                seen: AtomicUsize::new(0),
                stop: stop.clone(),
            },
        )
        .with_concurrency(4)
        .with_batch_size(10)
        .with_shutdown_grace(Duration::from_secs(3600))
        .with_hard_stop(stop)
        .with_dispatch(dispatch);
        let started = tokio::time::Instant::now();
        let summary = rt.run().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no grace period: {:?}",
            started.elapsed()
        );
        assert_eq!(summary.acked, 5, "{dispatch:?}");
        assert_eq!(
            (summary.retried, summary.dead_lettered),
            (0, 0),
            "{dispatch:?}"
        );
        assert!(summary.released >= 1, "{dispatch:?}: {summary:?}");
        assert_eq!(b.in_flight(), 0, "{dispatch:?}");
        assert_eq!(
            b.len(),
            45,
            "{dispatch:?}: everything not acked is back in the queue"
        );
        if dispatch == Dispatch::Inline {
            let again = broker_first_bodies(&b, 1).await;
            assert_eq!(
                again,
                ["5"],
                "the message the handler gave up on is first again"
            );
        }
    }
}

/// `?` on a body that is not the expected JSON (or not UTF-8) rejects the message at once: a
/// decode never succeeds on a second try, so it is not retried `max_attempts` times first.
#[tokio::test(start_paused = true)]
async fn a_body_error_with_question_mark_dead_letters_without_retrying() {
    #[derive(serde::Deserialize)]
    struct Job {
        #[allow(dead_code)]
        user: u32,
    }
    let b = MemoryBroker::new("bodies");
    b.push_many([Message::new("not json"), Message::new(vec![0xff, 0xfe])]);
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let summary = runtime(
        &b,
        worker_fn(move |msg: Message| {
            r.fetch_add(1, Ordering::SeqCst);
            async move {
                if msg.body().first() == Some(&0xff) {
                    msg.body_str()?;
                } else {
                    let _job: Job = msg.json()?;
                }
                Ok(())
            }
        }),
    )
    .with_burst(true)
    .with_retry_policy(RetryPolicy::default().with_max_attempts(5))
    .run()
    .await
    .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "each ran once");
    assert_eq!((summary.retried, summary.dead_lettered), (0, 2));
    let dead = b.dead_letters();
    assert!(
        dead.iter().any(|d| d
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("body is not the expected JSON"))),
        "{dead:?}"
    );
    assert!(dead.iter().any(|d| {
        d.reason
            .as_deref()
            .is_some_and(|r| r.contains("body is not UTF-8 text"))
    }));
}

/// A prefetch fetches beyond `concurrency`: the extra messages wait, handlers stay bounded.
#[tokio::test]
async fn a_prefetch_holds_more_messages_but_runs_no_more_at_once() {
    async fn run(prefetch: usize) -> (usize, u64) {
        let b = broker_with(60);
        let gauge = Arc::new(Gauge::default());
        let started = Arc::new(AtomicUsize::new(0));
        // Fetched and not started yet, counting the message starting now.
        let waiting = Arc::new(AtomicUsize::new(0));
        let (g, st, w, probe) = (
            Arc::clone(&gauge),
            Arc::clone(&started),
            Arc::clone(&waiting),
            b.clone(),
        );
        let worker = worker_fn(move |_m: Message| {
            let (g, st, w, probe) = (
                Arc::clone(&g),
                Arc::clone(&st),
                Arc::clone(&w),
                probe.clone(),
            );
            async move {
                let before = st.fetch_add(1, Ordering::SeqCst);
                let fetched = probe.stats().delivered as usize;
                w.fetch_max(fetched - before, Ordering::SeqCst);
                let n = g.now.fetch_add(1, Ordering::SeqCst) + 1;
                g.max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                g.now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        });
        let summary = runtime(&b, worker)
            .with_concurrency(4)
            .with_batch_size(8)
            .with_prefetch(prefetch)
            .with_burst(true)
            .run()
            .await
            .unwrap();
        assert_eq!(summary.acked, 60);
        assert_eq!(
            gauge.max.load(Ordering::SeqCst),
            4,
            "at most 4 handlers at once"
        );
        (waiting.load(Ordering::SeqCst), summary.acked)
    }
    let (without, _) = run(0).await;
    let (with, _) = run(4).await;
    assert!(without <= 4, "without a prefetch: {without} fetched ahead");
    assert!(
        with > 4 && with <= 8,
        "with a prefetch of 4: {with} fetched ahead"
    );
}
