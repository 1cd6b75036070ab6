//! Stopping: the shutdown begun (no more fetches, pending deliveries set aside), the handlers
//! still running at the end of the grace abandoned and handed back, and the final release and
//! count of what was never settled.

use std::task::Context;

use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use super::{Driver, SETTLE_DEADLINE_AFTER_GRACE};
use crate::broker::{Broker, Delivery, DeliveryGuarantee};
use crate::runtime::{RunSummary, RuntimeError, RuntimeState};

impl<B: Broker> Driver<B> {
    pub(super) async fn finish(mut self) -> Result<RunSummary, RuntimeError> {
        self.to_release.append(&mut self.to_hand_back);
        self.to_release.extend(self.pending.drain(..));
        if !self.to_release.is_empty() {
            let n = self.to_release.len() as u64;
            let batch = std::mem::take(&mut self.to_release);
            match self.broker.release(batch).await {
                Ok(()) => {
                    self.summary.released += n;
                    self.metrics.released.increment(n);
                }
                Err(e) => {
                    tracing::error!(error = %e, count = n, "handing back unprocessed messages failed; the broker's recovery will return them");
                    self.summary.unsettled += n;
                }
            }
        }
        // A settle still on the wire at the deadline is dropped: it may or may not have reached
        // the broker, so its outcomes count as unsettled too (delivered again, never lost).
        let unsettled = self.unsettled() as u64;
        if unsettled > 0 {
            self.summary.unsettled += unsettled;
            self.metrics.unsettled.increment(unsettled);
            let fate = match self.broker.guarantee() {
                DeliveryGuarantee::AtLeastOnce => "the broker will deliver these messages again",
                _ => "an at-most-once broker keeps nothing of them: they are lost",
            };
            tracing::error!(
                count = unsettled,
                "outcomes never settled (settles failing at the shutdown deadline, or refused); {fate}"
            );
        }
        self.metrics.settle_backlog.set(0.0);
        self.status.set_in_flight(0);
        self.metrics.in_flight.set(0.0);
        self.summary.elapsed = self.started.elapsed();
        if let (Some(a), Some(b)) = (self.first_fetch, self.last_settle) {
            self.summary.active = b.saturating_duration_since(a);
        }
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(self.summary),
        }
    }

    pub(super) fn begin_stop(&mut self, cx: &mut Context<'_>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.status.set_state(RuntimeState::Stopping);
        let deadline = Instant::now() + self.cfg.shutdown_grace;
        let mut hard = Box::pin(tokio::time::sleep_until(
            deadline + SETTLE_DEADLINE_AFTER_GRACE,
        ));
        let _ = hard.as_mut().poll(cx);
        self.hard_deadline = Some(hard);
        let mut grace = Box::pin(tokio::time::sleep_until(deadline));
        let _ = grace.as_mut().poll(cx);
        self.grace = Some(grace);
        self.to_release.extend(self.pending.drain(..));
        self.drain_check = None;
        tracing::debug!(in_flight = self.slots.len, "stopping: no more fetches");
    }

    /// Grace period over (or a hard stop): abandon what is still running and hand it back.
    pub(super) fn abandon_in_flight(&mut self, why: &str) {
        if self.slots.len == 0 {
            return;
        }
        tracing::warn!(
            count = self.slots.len,
            "{why}: handing back unfinished messages"
        );
        self.inflight = FuturesUnordered::new();
        for slot in self.slots.drain() {
            if let Some(h) = slot.abort {
                h.abort();
            }
            self.to_release
                .push(Delivery::new(slot.token, slot.message));
        }
        self.sync_in_flight();
    }
}
