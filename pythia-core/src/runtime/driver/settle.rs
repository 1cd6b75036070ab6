//! Outcomes on their way to the broker: a finished handler's outcome recorded and queued, the
//! broker's answer to a settle batch (kept and retried in order on failure; fatal on a
//! configuration error), and the backlog gauge.

use std::task::Context;
use std::time::Duration;

use tokio::time::Instant;

use super::super::observer::Settled;
use super::slots::Slot;
use super::{Driver, RuntimeError, reconnect_backoff};
use crate::broker::{Broker, Outcome, Settlement};
use crate::error::{BrokerError, BrokerErrorKind, WorkerError, WorkerErrorKind};
use crate::metrics::for_message;

impl<B: Broker> Driver<B> {
    /// Records a finished handler's outcome and queues its settlement.
    pub(super) fn settle_one(
        &mut self,
        slot: Slot<B::Token>,
        result: Result<(), WorkerError>,
        now: Instant,
    ) {
        let metrics = for_message(&self.metrics, &self.per_queue, slot.message.source());
        metrics.observe_processing(now.saturating_duration_since(slot.started));
        if let Err(e) = &result {
            match e.kind() {
                WorkerErrorKind::Timeout => metrics.failed_timeout.increment(1),
                WorkerErrorKind::Panic => {
                    self.summary.panics += 1;
                    metrics.failed_panic.increment(1);
                }
                WorkerErrorKind::RateLimited(pause) => {
                    metrics.failed_error.increment(1);
                    if self.broker.throttle(&slot.token, pause) {
                        self.hand_back(slot, pause);
                        return;
                    }
                }
                _ => metrics.failed_error.increment(1),
            }
        }
        let outcome = self.cfg.retry.outcome(&slot.message, &result);
        match (&outcome, &result) {
            (Outcome::Ack, _) => {
                metrics.ok.increment(1);
            }
            (Outcome::Retry { delay }, Err(e)) => {
                metrics.retried.increment(1);
                tracing::debug!(queue = slot.message.source().name(), id = slot.message.id(), attempt = slot.message.attempt(), ?delay, error = %e, "message failed; retry scheduled");
            }
            (Outcome::DeadLetter { reason }, Err(e)) => {
                if e.is_retryable() {
                    metrics.dead_lettered.increment(1);
                } else {
                    metrics.rejected.increment(1);
                }
                tracing::warn!(queue = slot.message.source().name(), id = slot.message.id(), attempt = slot.message.attempt(), %reason, "message dead-lettered");
            }
            _ => {}
        }
        self.to_settle.push(Settlement {
            token: slot.token,
            message: slot.message,
            outcome,
        });
    }

    /// Updates the backlog gauge, and logs once when failing settles pause fetching (a backlog
    /// of slow but working settles is routine back-pressure: debug only).
    pub(super) fn note_backlog(&mut self) {
        let unsettled = self.unsettled();
        self.metrics.settle_backlog.set(unsettled as f64);
        if self.stopping {
            return;
        }
        if self.settle_failing && !self.backlog_logged {
            tracing::warn!(
                unsettled,
                "settles failing: fetching paused until they succeed"
            );
            self.backlog_logged = true;
        } else if !self.settle_failing && self.backlog_logged {
            tracing::info!("settles succeed again: fetching resumed");
            self.backlog_logged = false;
        } else if unsettled >= self.cfg.settle_backlog_limit() {
            tracing::debug!(
                unsettled,
                limit = self.cfg.settle_backlog_limit(),
                "settle backlog full: fetching waits for the broker"
            );
        }
    }

    pub(super) fn on_settled(
        &mut self,
        mut batch: Vec<Settlement<B::Token>>,
        res: Result<(), BrokerError>,
        cx: &mut Context<'_>,
    ) {
        self.settle_in_flight = 0;
        match res {
            Ok(()) => {
                for s in &batch {
                    match s.outcome {
                        Outcome::Ack => self.summary.acked += 1,
                        Outcome::Retry { .. } => self.summary.retried += 1,
                        Outcome::DeadLetter { .. } => self.summary.dead_lettered += 1,
                    }
                }
                self.last_settle = Some(Instant::now());
                if self.settle_failing {
                    tracing::info!("settling resumed");
                    self.settle_failing = false;
                }
                self.settle_backoff = reconnect_backoff();
                if let Some(feed) = &self.observers {
                    let settled = batch
                        .drain(..)
                        .map(|s| Settled::new(s.message, s.outcome))
                        .collect();
                    // The observers' task ends only after this sender is dropped.
                    let _ = feed.inbox.send(settled);
                }
                batch.clear();
                if batch.capacity() > self.spare_settle.capacity() {
                    self.spare_settle = batch;
                }
            }
            Err(e) if matches!(e.kind(), BrokerErrorKind::Config | BrokerErrorKind::Closed) => {
                // A key of the wrong type, a closed broker: retrying would fail the same way
                // for ever while the worker looked alive. Keep the outcomes (counted unsettled:
                // the broker delivers the messages again) and stop.
                self.metrics.settle_errors.increment(1);
                self.settle_refused = true;
                batch.append(&mut self.to_settle);
                self.to_settle = batch;
                self.fail(RuntimeError::Broker(e), cx);
            }
            Err(e) => {
                self.metrics.settle_errors.increment(1);
                let delay = self.settle_backoff.next().unwrap_or(Duration::from_secs(5));
                if !self.settle_failing {
                    tracing::error!(error = %e, count = batch.len(), retry_in = ?delay, "settle failed; keeping the outcomes and retrying");
                }
                self.settle_failing = true;
                // Keep order: the failed batch goes before anything finished since.
                batch.append(&mut self.to_settle);
                self.to_settle = batch;
                let mut wait = Box::pin(tokio::time::sleep(delay));
                let _ = wait.as_mut().poll(cx);
                self.settle_wait = Some(wait);
            }
        }
    }
}
