//! The consume loop: one poll function owns all state, so fetching, handling and settling
//! overlap without locks and without a select per message.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

mod fetched;
mod hand_back;
mod settle;
mod shutdown;
mod slots;

use self::slots::{Slot, Slots};
use super::handler::{Handler, Running};
use super::observer::ObserverFeed;
use super::{Dispatch, RunSummary, RuntimeConfig, RuntimeError, RuntimeState, RuntimeStatus};
use crate::broker::{Broker, Delivery, Outcome, Settlement};
use crate::error::{BrokerError, WorkerError};
use crate::metrics::{RuntimeMetrics, for_message};
use crate::worker::BoxFuture;

/// Extra time after the grace period for the final settles to reach the broker.
const SETTLE_DEADLINE_AFTER_GRACE: Duration = Duration::from_secs(5);

type FetchResult<T> = Result<Vec<Delivery<T>>, BrokerError>;
type SettleResult<T> = (Vec<Settlement<T>>, Result<(), BrokerError>);

pub(super) struct Driver<B: Broker> {
    broker: Arc<B>,
    handler: Handler,
    cfg: RuntimeConfig,
    spawn: bool,
    metrics: RuntimeMetrics,
    /// One set of per-message metrics for each queue of a broker of several (a
    /// [`QueueSet`](crate::queues::QueueSet)); empty for one queue, whose messages use `metrics`.
    per_queue: Vec<(crate::message::Source, RuntimeMetrics)>,
    status: RuntimeStatus,
    summary: RunSummary,
    started: Instant,
    first_fetch: Option<Instant>,
    last_settle: Option<Instant>,

    cancel: Pin<Box<WaitForCancellationFutureOwned>>,
    hard_stop: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    stopping: bool,
    grace: Option<Pin<Box<Sleep>>>,
    /// Grace plus [`SETTLE_DEADLINE_AFTER_GRACE`]: a timer, so that it wakes the driver even
    /// while every other timer (a settle's backoff) is set later.
    hard_deadline: Option<Pin<Box<Sleep>>>,
    /// A fatal error found by the maintenance task (a key of the wrong type).
    maintenance_fatal: Option<oneshot::Receiver<BrokerError>>,

    fetch: Option<BoxFuture<FetchResult<B::Token>>>,
    fetch_wait: Option<Pin<Box<Sleep>>>,
    fetch_backoff: ExponentialBackoff,
    fetch_failing: bool,
    last_fetch_empty: bool,

    pending: VecDeque<Delivery<B::Token>>,
    slots: Slots<B::Token>,
    inflight: FuturesUnordered<Running>,

    to_settle: Vec<Settlement<B::Token>>,
    /// A settled batch's emptied vector, the next `to_settle`: a fresh one would grow from
    /// nothing, reallocating and moving every settlement, for each batch.
    spare_settle: Vec<Settlement<B::Token>>,
    settle: Option<BoxFuture<SettleResult<B::Token>>>,
    /// Outcomes in the batch `settle` carries (the batch itself moved into the future).
    settle_in_flight: usize,
    settle_wait: Option<Pin<Box<Sleep>>>,
    settle_backoff: ExponentialBackoff,
    settle_failing: bool,
    /// The broker refused a settle for a reason a retry cannot fix: settle nothing more.
    settle_refused: bool,
    /// Whether the pause of fetching by failing settles was logged (once per outage).
    backlog_logged: bool,

    /// Settle observers and their task's inbox; `None` (nothing done for them) without any.
    observers: Option<ObserverFeed>,
    /// Deliveries of rate-limited handlers going back to a throttled broker (see
    /// [`Broker::throttle`]), and the release carrying the previous ones.
    to_hand_back: Vec<Delivery<B::Token>>,
    hand_back_call: Option<BoxFuture<(u64, Result<(), BrokerError>)>>,

    drain_check: Option<BoxFuture<Result<bool, BrokerError>>>,
    to_release: Vec<Delivery<B::Token>>,
    fatal: Option<RuntimeError>,
}

fn reconnect_backoff() -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

pub(crate) fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Polls a pinned optional timer; clears it and returns true once it has fired.
fn timer_done(t: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> bool {
    match t {
        None => true,
        Some(s) => {
            if s.as_mut().poll(cx).is_ready() {
                *t = None;
                true
            } else {
                false
            }
        }
    }
}

impl<B: Broker> Driver<B> {
    pub(super) fn new(
        broker: Arc<B>,
        handler: Handler,
        cfg: RuntimeConfig,
        cancel: CancellationToken,
        status: RuntimeStatus,
        maintenance_fatal: Option<oneshot::Receiver<BrokerError>>,
        observers: Option<ObserverFeed>,
    ) -> Self {
        let spawn = cfg.dispatch == Dispatch::Spawn;
        let hard_stop = cfg.hard_stop.clone().map(|t| Box::pin(t.cancelled_owned()));
        let metrics = RuntimeMetrics::new(broker.source());
        let per_queue = match broker.queues() {
            [_] => Vec::new(),
            queues => queues
                .iter()
                .map(|q| (q.clone(), RuntimeMetrics::new(q)))
                .collect(),
        };
        Self {
            broker,
            handler,
            cfg,
            spawn,
            metrics,
            per_queue,
            status,
            summary: RunSummary::default(),
            started: Instant::now(),
            first_fetch: None,
            last_settle: None,
            cancel: Box::pin(cancel.cancelled_owned()),
            hard_stop,
            stopping: false,
            grace: None,
            hard_deadline: None,
            maintenance_fatal,
            fetch: None,
            fetch_wait: None,
            fetch_backoff: reconnect_backoff(),
            fetch_failing: false,
            last_fetch_empty: false,
            pending: VecDeque::new(),
            slots: Slots::new(),
            inflight: FuturesUnordered::new(),
            to_settle: Vec::new(),
            spare_settle: Vec::new(),
            settle: None,
            settle_in_flight: 0,
            settle_wait: None,
            settle_backoff: reconnect_backoff(),
            settle_failing: false,
            settle_refused: false,
            backlog_logged: false,
            observers,
            to_hand_back: Vec::new(),
            hand_back_call: None,
            drain_check: None,
            to_release: Vec::new(),
            fatal: None,
        }
    }

    pub(super) async fn run(mut self) -> Result<RunSummary, RuntimeError> {
        self.status.set_state(RuntimeState::Running);
        self.status.progressed();
        std::future::poll_fn(|cx| self.poll(cx)).await;
        self.finish().await
    }

    fn sync_in_flight(&self) {
        self.status.set_in_flight(self.slots.len);
        self.metrics.in_flight.set(self.slots.len as f64);
    }

    fn start(
        &mut self,
        delivery: Delivery<B::Token>,
        now: Instant,
        wall: SystemTime,
        cx: &mut Context<'_>,
    ) {
        let Delivery { token, mut message } = delivery;
        let max = self.cfg.retry.max_attempts();
        if message.attempt() > max {
            // Delivered again after its worker died mid-message, more often than allowed: a
            // message that crashes its worker must not crash the next one too.
            for_message(&self.metrics, &self.per_queue, message.source())
                .dead_lettered
                .increment(1);
            tracing::warn!(
                queue = message.source().name(),
                id = message.id(),
                attempt = message.attempt(),
                "message dead-lettered without running: out of attempts"
            );
            self.to_settle.push(Settlement {
                token,
                outcome: Outcome::DeadLetter {
                    reason: format!(
                        "exceeded {max} attempts (delivery {}; its workers likely crashed)",
                        message.attempt()
                    ),
                },
                message,
            });
            return;
        }
        if let Some(at) = message.enqueued_at() {
            // An enqueue time ahead of this clock (a producer's clock runs ahead, or this one
            // was stepped back) counts as no wait, so that every started message is counted.
            let age = wall.duration_since(at).unwrap_or_default();
            for_message(&self.metrics, &self.per_queue, message.source())
                .end_to_end
                .record(age.as_secs_f64());
        }
        // With `with_message_span`, the handler runs inside this span, so that its own tracing
        // events carry the queue, the message id and the attempt. A disabled span is free to
        // enter; an enabled one costs the subscriber's work, hence opt-in.
        let span = if self.cfg.message_span {
            tracing::info_span!(
                target: "pythia_core::message",
                "message",
                queue = message.source().name(),
                id = message.id(),
                attempt = message.attempt()
            )
        } else {
            tracing::Span::none()
        };
        if let Some(feed) = &self.observers {
            for o in feed.observers.iter() {
                o.on_start(&mut message);
            }
        }
        let call = {
            let _in = span.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| self.handler.call(message.clone())))
        };
        let fut: BoxFuture<Result<(), WorkerError>> = match call {
            Ok(fut) => fut,
            Err(p) => {
                let e = WorkerError::panic(panic_text(&*p));
                Box::pin(async move { Err(e) })
            }
        };
        let mut slot = Slot {
            token,
            message,
            started: now,
            abort: None,
        };
        if self.spawn {
            let handle = tokio::spawn(tracing::Instrument::instrument(fut, span));
            slot.abort = Some(handle.abort_handle());
            let slot = self.slots.insert(slot);
            self.inflight.push(Running::Spawned { slot, handle });
            return;
        }
        // A handler that finishes on its first poll (most fast handlers) never needs a slot or
        // a place in the in-flight set: poll it once here.
        let mut fut = fut;
        let first_poll = {
            let _in = span.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)))
        };
        match first_poll {
            Ok(Poll::Ready(result)) => self.settle_one(slot, result, now),
            Ok(Poll::Pending) => {
                let slot = self.slots.insert(slot);
                self.inflight.push(Running::Inline { slot, fut, span });
            }
            Err(p) => self.settle_one(slot, Err(WorkerError::panic(panic_text(&*p))), now),
        }
    }

    fn complete(&mut self, idx: usize, result: Result<(), WorkerError>, now: Instant) {
        if let Some(slot) = self.slots.remove(idx) {
            self.settle_one(slot, result, now);
        }
    }

    fn free_capacity(&self) -> usize {
        (self.cfg.concurrency + self.cfg.prefetch)
            .saturating_sub(self.slots.len + self.pending.len())
    }

    /// Outcomes finished and not yet confirmed by the broker: the batch on its way and those
    /// waiting for it.
    fn unsettled(&self) -> usize {
        self.to_settle.len() + self.settle_in_flight
    }

    /// Whether outcomes wait for the broker beyond what fetching may add to: settles that fail
    /// (backing off), or a backlog of [`settle_backlog_limit`](RuntimeConfig::settle_backlog_limit).
    /// Fetching more would only grow the pile held in memory.
    fn settle_backlogged(&self) -> bool {
        self.settle_failing || self.unsettled() >= self.cfg.settle_backlog_limit()
    }

    fn want_fetch(&self) -> bool {
        if self.stopping
            || self.fetch.is_some()
            || self.drain_check.is_some()
            || self.fatal.is_some()
            || self.settle_backlogged()
        {
            return false;
        }
        let free = self.free_capacity();
        // Wait for a useful batch rather than fetching one message at a time when busy.
        let low_water = (self.cfg.batch_size.min(self.cfg.concurrency) / 4).max(1);
        free > 0 && (free >= low_water || self.slots.len == 0)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // A broker may answer an empty fetch at once; fetching again in the same pass would
        // loop without ever yielding, starving spawned handlers on a current-thread runtime.
        let mut fetched_empty = false;
        loop {
            let mut progressed = false;

            if !self.stopping && self.cancel.as_mut().poll(cx).is_ready() {
                self.begin_stop(cx);
                progressed = true;
            }

            if let Some(rx) = self.maintenance_fatal.as_mut()
                && let Poll::Ready(res) = Pin::new(rx).poll(cx)
            {
                self.maintenance_fatal = None;
                if let Ok(e) = res {
                    self.fail(RuntimeError::Broker(e), cx);
                    progressed = true;
                }
            }

            // Finished handlers.
            // One clock read per pass, shared by every message started or finished in it.
            let now = Instant::now();
            let mut finished = false;
            while let Poll::Ready(Some((idx, result))) = self.inflight.poll_next_unpin(cx) {
                self.complete(idx, result, now);
                finished = true;
            }
            if finished {
                self.status.progressed();
                progressed = true;
            }
            // A hard stop: what has not finished by now (finished ones were just settled) goes
            // back, with no grace period.
            if let Some(hard) = self.hard_stop.as_mut()
                && hard.as_mut().poll(cx).is_ready()
            {
                self.hard_stop = None;
                // In-flight first: they were fetched before the pending ones.
                self.abandon_in_flight("hard stop");
                self.begin_stop(cx);
                progressed = true;
            }

            // A fetch that came back.
            if let Some(fetch) = self.fetch.as_mut()
                && let Poll::Ready(res) = fetch.as_mut().poll(cx)
            {
                self.fetch = None;
                progressed = true;
                fetched_empty |= res.as_ref().is_ok_and(Vec::is_empty);
                self.on_fetched(res, cx);
            }

            // Start fetched messages while the handler stack is ready.
            let wall = SystemTime::now();
            while !self.stopping
                && !self.pending.is_empty()
                && self.slots.len < self.cfg.concurrency
                && !self
                    .cfg
                    .hard_stop
                    .as_ref()
                    .is_some_and(|t| t.is_cancelled())
            {
                match self.handler.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let d = self.pending.pop_front().expect("checked non-empty");
                        self.start(d, now, wall, cx);
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => {
                        self.fail(RuntimeError::Service(e), cx);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if progressed {
                self.sync_in_flight();
            }

            // Fetch more when there is room, the last error's backoff is over and the stack is ready.
            if fetched_empty && self.want_fetch() {
                // Come back after other tasks ran.
                cx.waker().wake_by_ref();
            } else if self.want_fetch() && timer_done(&mut self.fetch_wait, cx) {
                match self.handler.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if self.cfg.burst && self.last_fetch_empty && self.is_idle() {
                            let b = Arc::clone(&self.broker);
                            self.drain_check = Some(Box::pin(async move { b.is_drained().await }));
                        } else {
                            let max = self.free_capacity().min(self.cfg.batch_size);
                            let b = Arc::clone(&self.broker);
                            self.fetch = Some(Box::pin(async move { b.fetch(max).await }));
                        }
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => self.fail(RuntimeError::Service(e), cx),
                    Poll::Pending => {}
                }
            }

            // Burst mode: is everything done?
            if let Some(check) = self.drain_check.as_mut()
                && let Poll::Ready(res) = check.as_mut().poll(cx)
            {
                self.drain_check = None;
                progressed = true;
                match res {
                    Ok(true) if self.is_idle() => {
                        tracing::info!("burst mode: queue drained");
                        self.begin_stop(cx);
                    }
                    Ok(_) => self.last_fetch_empty = false,
                    Err(e) => self.on_fetch_error(e, cx),
                }
            }

            // Settle what finished, one batch on the wire at a time.
            if let Some(settle) = self.settle.as_mut()
                && let Poll::Ready((batch, res)) = settle.as_mut().poll(cx)
            {
                self.settle = None;
                progressed = true;
                self.on_settled(batch, res, cx);
            }
            if self.settle.is_none()
                && !self.settle_refused
                && !self.to_settle.is_empty()
                && timer_done(&mut self.settle_wait, cx)
            {
                let spare = std::mem::take(&mut self.spare_settle);
                let batch = std::mem::replace(&mut self.to_settle, spare);
                self.settle_in_flight = batch.len();
                let b = Arc::clone(&self.broker);
                self.settle = Some(Box::pin(async move {
                    let r = b.settle(&batch).await;
                    (batch, r)
                }));
                progressed = true;
            }
            progressed |= self.poll_hand_back(cx);

            if self.stopping {
                if self.slots.len > 0 && timer_done(&mut self.grace, cx) {
                    self.abandon_in_flight("shutdown grace period over");
                    progressed = true;
                }
                let settled =
                    self.settle.is_none() && (self.to_settle.is_empty() || self.settle_refused);
                let past_deadline = self
                    .hard_deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if self.fetch.is_none()
                    && self.slots.len == 0
                    && self.hand_back_call.is_none()
                    && (settled || past_deadline)
                {
                    return Poll::Ready(());
                }
            }

            if !progressed {
                self.note_backlog();
                return Poll::Pending;
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.slots.len == 0
            && self.pending.is_empty()
            && self.to_settle.is_empty()
            && self.settle.is_none()
            && self.fetch.is_none()
            && self.to_hand_back.is_empty()
            && self.hand_back_call.is_none()
    }

    fn fail(&mut self, e: RuntimeError, cx: &mut Context<'_>) {
        tracing::error!(error = %e, "stopping the worker");
        if self.fatal.is_none() {
            self.fatal = Some(e);
        }
        self.begin_stop(cx);
    }
}
