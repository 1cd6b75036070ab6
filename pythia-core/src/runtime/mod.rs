//! The runtime that drives a [`Worker`] from a [`Broker`].
//!
//! ```text
//! Broker::fetch (batch) ──► runtime (≤ concurrency in flight) ──► layers ──► Worker::process_message
//!        ▲                                                                        │
//!        └──────────── Broker::settle(batch of outcomes) ◄───────────────────────┘
//! ```
//!
//! # Behaviour
//!
//! * **Concurrency.** At most `concurrency` messages are in the handler at once. The runtime
//!   fetches only while it has free capacity, in batches of up to `batch_size`, and only while
//!   the handler stack is ready (an open circuit breaker makes it not ready, so fetching pauses
//!   and messages stay in the broker). With a prefetch ([`WorkerRuntime::with_prefetch`], 0 by
//!   default) it fetches that many more, which wait in memory and start the moment a handler
//!   finishes: for short I/O-bound handlers whose slots would otherwise idle through each fetch.
//! * **Settling.** Outcomes are settled in batches: while one settle is on its way to the
//!   broker, the next batch gathers. A failed settle is retried with backoff, not dropped (until
//!   the shutdown deadline, below).
//!   While settles fail, or once twice the larger of `concurrency` and `batch_size` outcomes
//!   wait for the broker, fetching pauses: the backlog held in memory stays bounded, at most that
//!   plus `concurrency` (gauge
//!   [`SETTLE_BACKLOG`](crate::metrics::SETTLE_BACKLOG)). A summary counts a message as acked,
//!   retried or dead-lettered only once the broker confirmed the settle.
//! * **Configuration errors.** A fetch, settle or maintenance error of kind
//!   [`BrokerErrorKind::Config`] (a Redis key of the wrong type), or a fetch or settle error of
//!   kind `Closed`, is fatal: it is logged once, the worker stops (hands back what it had not started, lets in-flight messages
//!   finish within the grace period, settles nothing more) and [`run`](WorkerRuntime::run)
//!   returns the error ([`RuntimeError::is_config`]).
//! * **Failures.** A handler error becomes a retry (scheduled by the broker, so it survives a
//!   crash) or a dead letter, by the [`RetryPolicy`]. A panic in the handler is caught and
//!   counted as a failure; the runtime keeps going.
//! * **Broker outages.** A failed fetch is logged once per outage and retried with exponential
//!   backoff and jitter; [`RuntimeStatus`] reports the outage for readiness probes.
//! * **Shutdown.** On SIGTERM or Ctrl-C (unless disabled), on the cancellation token, or in burst
//!   mode once the broker is drained: fetching stops, in-flight messages get `shutdown_grace`
//!   to finish and are settled, and whatever did not finish is handed back to the broker
//!   ([`Broker::release`]), not acked. Settles still failing `shutdown_grace` + 5 s after the
//!   stop are given up: logged, counted in [`RunSummary::unsettled`] and
//!   [`UNSETTLED_TOTAL`](crate::metrics::UNSETTLED_TOTAL) (an at-least-once broker delivers
//!   those messages again). Then the broker is closed and `on_stop` runs. A hard stop
//!   ([`WorkerRuntime::with_hard_stop`]) does the same without the grace period. The helper
//!   tasks (maintenance, stats, signals) are stopped and joined before the broker is closed, so
//!   no heartbeat lands after `close()`; dropping the `run()` future stops them too.

mod driver;
mod error;
mod handler;
mod observer;
mod resilience;
mod signal;
mod status;
mod summary;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::util::BoxCloneService;
use tower::{Layer, Service};

pub use self::error::RuntimeError;
use self::handler::{ErasedWorker, Handler};
use self::observer::{ErasedObserver, OBSERVER_FLUSH_DEADLINE, observer_loop};
pub use self::observer::{SettleObserver, Settled};
pub use self::signal::shutdown_signal;
pub use self::status::{RuntimeState, RuntimeStatus};
pub use self::summary::RunSummary;
use crate::broker::Broker;
use tower::ServiceExt;

use crate::error::{BrokerError, BrokerErrorKind, IntoWorkerError, WorkerError};
use crate::message::Message;
use crate::retry_policy::RetryPolicy;
use crate::worker::{HandlerService, Worker, WorkerService};

/// How the runtime runs each message's handler.
///
/// Measured with `pythia bench` on 2 cores (list broker, no-op handler): `Inline` drains
/// ~770k msg/s where `Spawn` drains ~390k msg/s, the difference being a task and a cross-thread
/// wake-up per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Dispatch {
    /// Poll the in-flight handlers concurrently on the runtime's own task: no task per message,
    /// fastest for handlers that wait on I/O. A handler that computes for long without awaiting
    /// holds up the others (heartbeats run on their own task and are not affected on a
    /// multi-thread runtime). The default.
    #[default]
    Inline,
    /// One tokio task per message: CPU-heavy handlers run in parallel on a multi-thread
    /// runtime.
    Spawn,
}

type LayerFn = Box<dyn FnOnce(HandlerService) -> HandlerService + Send>;

/// Settings of a [`WorkerRuntime`], with named defaults.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeConfig {
    pub(crate) concurrency: usize,
    pub(crate) batch_size: usize,
    pub(crate) prefetch: usize,
    pub(crate) shutdown_grace: Duration,
    pub(crate) burst: bool,
    pub(crate) handle_signals: bool,
    pub(crate) dispatch: Dispatch,
    pub(crate) retry: RetryPolicy,
    pub(crate) stats_interval: Option<Duration>,
    pub(crate) hard_stop: Option<CancellationToken>,
    pub(crate) message_span: bool,
}

/// Fetched batches' worth of finished outcomes that may wait for the broker before fetching
/// pauses: two lets one settle be on the wire while the next batch gathers.
const SETTLE_BACKLOG_BATCHES: usize = 2;

impl RuntimeConfig {
    /// Outcomes waiting to be settled at which fetching pauses (see "Settling" in the module
    /// docs): twice the larger of `concurrency` and `batch_size`.
    pub(crate) fn settle_backlog_limit(&self) -> usize {
        SETTLE_BACKLOG_BATCHES * self.concurrency.max(self.batch_size)
    }
}

/// Drives a [`Worker`] from a [`Broker`]: see the [module docs](self) for the behaviour.
///
/// ```
/// use std::time::Duration;
/// use pythia_core::{worker_fn, MemoryBroker, Message, RetryPolicy, WorkerRuntime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let broker = MemoryBroker::new("emails");
/// broker.push_many((0..100).map(|i| Message::new(format!("mail {i}"))));
///
/// let summary = WorkerRuntime::new(broker.clone(), worker_fn(|_msg| async { Ok(()) }))
///     .with_concurrency(16)
///     .with_retry_policy(RetryPolicy::default().with_max_attempts(5))
///     .with_shutdown_grace(Duration::from_secs(10))
///     .with_burst(true) // stop once the queue is empty
///     .run()
///     .await
///     .unwrap();
/// assert_eq!(summary.acked, 100);
/// # }
/// ```
#[must_use = "a runtime does nothing until `run` is awaited"]
pub struct WorkerRuntime<B: Broker> {
    broker: Arc<B>,
    worker: Arc<dyn ErasedWorker>,
    /// The worker as the innermost service of a layer stack (used when layers are added).
    service: HandlerService,
    layers: Vec<LayerFn>,
    cfg: RuntimeConfig,
    cancel: CancellationToken,
    status: RuntimeStatus,
    observers: Vec<Arc<dyn ErasedObserver>>,
}

impl<B: Broker> std::fmt::Debug for WorkerRuntime<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRuntime")
            .field("source", self.broker.source())
            .field("config", &self.cfg)
            .field("layers", &self.layers.len())
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl<B: Broker> WorkerRuntime<B> {
    /// Default messages in flight at once: 64.
    pub const DEFAULT_CONCURRENCY: usize = 64;
    /// Default upper bound of one fetch: 256.
    pub const DEFAULT_BATCH_SIZE: usize = 256;
    /// Default time in-flight messages get to finish on shutdown: 30 s.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    /// Default interval of queue gauge sampling ([`Broker::stats`]): 5 s.
    pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(5);

    /// A runtime for `worker` fed by `broker`, with the defaults.
    pub fn new<W: Worker>(broker: impl Into<Arc<B>>, worker: W) -> Self {
        let worker = Arc::new(worker);
        Self {
            broker: broker.into(),
            service: BoxCloneService::new(WorkerService::new(Arc::clone(&worker))),
            worker: Arc::new(worker),
            layers: Vec::new(),
            cfg: RuntimeConfig {
                concurrency: Self::DEFAULT_CONCURRENCY,
                batch_size: Self::DEFAULT_BATCH_SIZE,
                prefetch: 0,
                shutdown_grace: Self::DEFAULT_SHUTDOWN_GRACE,
                burst: false,
                handle_signals: true,
                dispatch: Dispatch::Inline,
                retry: RetryPolicy::default(),
                stats_interval: Some(Self::DEFAULT_STATS_INTERVAL),
                hard_stop: None,
                message_span: false,
            },
            cancel: CancellationToken::new(),
            status: RuntimeStatus::new(),
            observers: Vec::new(),
        }
    }

    /// Messages in the handler at once (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.cfg.concurrency = n.max(1);
        self
    }

    /// Upper bound of one fetch (at least 1; never more than the free capacity).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.cfg.batch_size = n.max(1);
        self
    }

    /// Messages fetched beyond `concurrency` (default 0): they wait in memory and start as soon
    /// as a handler finishes, so that handler slots do not idle while a fetch is on its way.
    ///
    /// Worth it for many short I/O-bound handlers (10 ms handlers at concurrency 1,000: 78 % of
    /// the timer's ceiling without, 88 % with a prefetch of 1,000, BENCHMARKS.md). The cost: up to
    /// `n` more messages held by this worker and not by an idle one, and each waits for a free
    /// slot here; they are handed back on shutdown like any message not started, and an
    /// at-least-once broker returns them if the worker dies. Keep it 0 for long jobs.
    pub fn with_prefetch(mut self, n: usize) -> Self {
        self.cfg.prefetch = n;
        self
    }

    /// How long in-flight messages get to finish on shutdown before they are handed back.
    pub fn with_shutdown_grace(mut self, d: Duration) -> Self {
        self.cfg.shutdown_grace = d;
        self
    }

    /// Burst mode: stop once the broker is drained and nothing is in flight.
    pub fn with_burst(mut self, burst: bool) -> Self {
        self.cfg.burst = burst;
        self
    }

    /// Whether SIGTERM and Ctrl-C start a graceful shutdown (default: yes).
    pub fn with_signal_handling(mut self, on: bool) -> Self {
        self.cfg.handle_signals = on;
        self
    }

    /// Runs each handler inside a `message` span (target `pythia_core::message`, level info)
    /// with the fields `queue`, `id` and `attempt`, so that the handler's own `tracing` events
    /// carry them (default: off).
    ///
    /// # Cost
    ///
    /// Off, or filtered out by the subscriber, it costs a branch per message. On, with
    /// `tracing_subscriber::fmt` recording it, it costs the subscriber's work for one span per
    /// message (its fields formatted and stored, entered on each poll): measured at a few
    /// tenths of a microsecond per message, about 30 % of the throughput of a no-op handler
    /// draining a list (BENCHMARKS.md), hence opt-in.
    pub fn with_message_span(mut self, on: bool) -> Self {
        self.cfg.message_span = on;
        self
    }

    /// How handlers are run (see [`Dispatch`]).
    pub fn with_dispatch(mut self, d: Dispatch) -> Self {
        self.cfg.dispatch = d;
        self
    }

    /// How often the queue gauges (depth, in flight, scheduled, dead letters, oldest age,
    /// consumers) are sampled from the broker; `None` turns sampling off. At least 100 ms.
    pub fn with_stats_interval(mut self, every: Option<Duration>) -> Self {
        self.cfg.stats_interval = every.map(|d| d.max(Duration::from_millis(100)));
        self
    }

    /// Redelivery policy for failed messages.
    pub fn with_retry_policy(mut self, p: RetryPolicy) -> Self {
        self.cfg.retry = p;
        self
    }

    /// Stops the runtime gracefully when `token` is cancelled (in addition to signals).
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Stops the runtime at once when `token` is cancelled: no more fetches and no grace
    /// period. Messages still in the handler are dropped unfinished and handed back to the
    /// broker ([`Broker::release`], as when the grace period runs out), finished ones are
    /// settled, fetched ones not yet started are handed back.
    ///
    /// For a handler that finds it can finish nothing any more, and that no failure of the
    /// message caused: it cancels this token and never completes, so the message is neither
    /// retried nor dead-lettered. The `pythia` CLI's print handler does this when its stdout
    /// is closed (`pythia run | head`).
    pub fn with_hard_stop(mut self, token: CancellationToken) -> Self {
        self.cfg.hard_stop = Some(token);
        self
    }

    /// A token that stops this runtime gracefully when cancelled.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// A live view of the runtime's health.
    pub fn status(&self) -> RuntimeStatus {
        self.status.clone()
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<B> {
        &self.broker
    }

    /// Tells `observer` of every message's final outcome once the broker confirmed it (see
    /// [`SettleObserver`] for when it is called); observers added together are called in the
    /// order they were added. Without any, the runtime does nothing for them.
    pub fn with_settle_observer(mut self, observer: impl SettleObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Adds a tower layer around the handler.
    ///
    /// # Order
    ///
    /// As with tower's `ServiceBuilder`, the first layer added is the outermost: it sees each
    /// message first and each result last. Pythia's recommended order is
    /// circuit breaker → retry (in-process) → timeout → worker, so each attempt gets its own
    /// deadline and the breaker counts whole messages.
    ///
    /// # Tower's own layers
    ///
    /// A layer's service may fail with a [`WorkerError`] or with tower's `BoxError`: tower's
    /// `TimeoutLayer`, `LoadShedLayer` and `ConcurrencyLimitLayer` compose as they are. Their
    /// errors come back through [`WorkerError::from_boxed`]: an inner `WorkerError` keeps its
    /// kind (a reject stays a reject), tower's timeout is a timeout, anything else a retry.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<HandlerService> + Send + 'static,
        L::Service: Service<Message, Response = ()> + Clone + Send + 'static,
        <L::Service as Service<Message>>::Error: IntoWorkerError,
        <L::Service as Service<Message>>::Future: Send + 'static,
    {
        self.layers.push(Box::new(move |inner| {
            BoxCloneService::new(
                layer
                    .layer(inner)
                    .map_err(IntoWorkerError::into_worker_error as fn(_) -> WorkerError),
            )
        }));
        self
    }

    /// The unit tests' run: in burst mode (until the broker is drained), without listening for
    /// signals, panicking on a runtime error.
    #[cfg(test)]
    pub(crate) async fn run_burst(self) -> RunSummary {
        self.with_signal_handling(false)
            .with_burst(true)
            .run()
            .await
            .expect("the runtime ran")
    }

    /// Runs until shutdown (signal, token, or drained in burst mode) and returns what it did.
    pub async fn run(self) -> Result<RunSummary, RuntimeError> {
        let Self {
            broker,
            worker: hooks,
            service,
            layers,
            cfg,
            cancel,
            status,
            observers,
        } = self;
        let handler = if layers.is_empty() {
            Handler::Direct(Arc::clone(&hooks))
        } else {
            let mut service = service;
            for layer in layers.into_iter().rev() {
                service = layer(service);
            }
            Handler::Stack(service)
        };
        status.set_state(RuntimeState::Starting);
        if let Err(e) = AssertUnwindSafe(hooks.on_start())
            .catch_unwind()
            .await
            .unwrap_or_else(|p| Err(WorkerError::panic(driver::panic_text(&*p))))
        {
            status.set_state(RuntimeState::Stopped);
            return Err(RuntimeError::Start(e));
        }

        let aux = CancellationToken::new();
        // Stops the helper tasks even when the caller drops this future before it ends: a
        // maintenance task left behind would heartbeat for ever for a consumer that is gone,
        // so its in-flight messages would never be reaped.
        let _stop_helpers = aux.clone().drop_guard();
        // The helper tasks are joined before the broker is closed: a maintenance pass still
        // running on another thread could otherwise heartbeat after `close()` deleted the
        // heartbeat, and register again a consumer that has just left.
        let helpers = TaskTracker::new();
        if cfg.handle_signals {
            let (cancel, aux) = (cancel.clone(), aux.clone());
            helpers.spawn(async move {
                tokio::select! {
                    () = shutdown_signal() => {
                        tracing::info!("shutdown signal received: draining");
                        cancel.cancel();
                    }
                    () = aux.cancelled() => {}
                }
            });
        }
        let mut maintenance_fatal = None;
        if let Some(every) = broker.maintenance_interval() {
            let (fatal, fatal_rx) = oneshot::channel();
            maintenance_fatal = Some(fatal_rx);
            helpers.spawn(maintenance_loop(
                Arc::clone(&broker),
                every,
                status.clone(),
                aux.clone(),
                fatal,
            ));
        }
        if let Some(every) = cfg.stats_interval {
            helpers.spawn(stats_loop(Arc::clone(&broker), every, aux.clone()));
        }

        tracing::info!(
            source = ?broker.source(),
            guarantee = broker.guarantee().as_str(),
            concurrency = cfg.concurrency,
            "worker started"
        );
        let observers: observer::Observers = observers.into();
        let (feed, observing) = if observers.is_empty() {
            (None, None)
        } else {
            let (inbox, rx) = tokio::sync::mpsc::unbounded_channel();
            let task = tokio::spawn(observer_loop(Arc::clone(&observers), rx));
            (
                Some(observer::ObserverFeed { observers, inbox }),
                Some(task),
            )
        };
        let result = driver::Driver::new(
            Arc::clone(&broker),
            handler,
            cfg,
            cancel,
            status.clone(),
            maintenance_fatal,
            feed,
        )
        .run()
        .await;
        // The driver is gone, and with it the observers' sender: their task ends once it has
        // passed on the last outcomes.
        if let Some(task) = observing {
            let abort = task.abort_handle();
            if tokio::time::timeout(OBSERVER_FLUSH_DEADLINE, task)
                .await
                .is_err()
            {
                abort.abort();
                tracing::warn!(
                    "settle observers did not finish within {OBSERVER_FLUSH_DEADLINE:?}; stopped"
                );
            }
        }
        aux.cancel();
        helpers.close();
        helpers.wait().await;
        if let Err(e) = broker.close().await {
            tracing::warn!(error = %e, "closing the broker failed");
        }
        let _ = AssertUnwindSafe(hooks.on_stop()).catch_unwind().await;
        status.set_state(RuntimeState::Stopped);
        if let Ok(summary) = &result {
            tracing::info!(%summary, "worker stopped");
        }
        result
    }
}

async fn maintenance_loop<B: Broker>(
    broker: Arc<B>,
    every: Duration,
    status: RuntimeStatus,
    stop: CancellationToken,
    fatal: oneshot::Sender<BrokerError>,
) {
    let mut failing = false;
    loop {
        let result = stop.run_until_cancelled(broker.maintain()).await;
        if let Some(r) = &result {
            status.set_maintain_ok(r.is_ok());
        }
        match result {
            None => return,
            Some(Ok(())) if failing => {
                tracing::info!("broker maintenance recovered");
                failing = false;
            }
            Some(Ok(())) => {}
            Some(Err(e)) if e.kind() == BrokerErrorKind::Config => {
                // A key of the wrong type: every heartbeat would fail the same way. The driver
                // logs it and stops the worker.
                let _ = fatal.send(e);
                return;
            }
            Some(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "broker maintenance failed; will keep trying");
                }
                failing = true;
            }
        }
        if stop
            .run_until_cancelled(tokio::time::sleep(every))
            .await
            .is_none()
        {
            return;
        }
    }
}

/// Samples [`Broker::stats`] into the queue gauges until stopped.
///
/// One set of gauges per queue of [`Broker::queues`], each labelled with its own queue.
async fn stats_loop<B: Broker>(broker: Arc<B>, every: Duration, stop: CancellationToken) {
    let gauges: Vec<_> = broker
        .queues()
        .iter()
        .map(crate::metrics::QueueGauges::new)
        .collect();
    loop {
        match stop.run_until_cancelled(broker.stats_per_queue()).await {
            None => return,
            Some(Ok(all)) if all.iter().all(Option::is_none) => return, // nothing to report
            Some(Ok(all)) => {
                for (g, s) in gauges.iter().zip(&all) {
                    if let Some(s) = s {
                        g.set(s);
                    }
                }
            }
            Some(Err(e)) => tracing::debug!(error = %e, "sampling queue stats failed"),
        }
        if stop
            .run_until_cancelled(tokio::time::sleep(every))
            .await
            .is_none()
        {
            return;
        }
    }
}
