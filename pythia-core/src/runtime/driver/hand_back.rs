//! Deliveries handed back while running: a handler said its downstream is rate-limiting it and
//! the broker stops fetching for that long ([`Broker::throttle`] returned `true`), so the message
//! goes back with [`Broker::release`], no attempt counted, instead of being scheduled as a retry.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::Driver;
use super::slots::Slot;
use crate::broker::{Broker, Delivery};

impl<B: Broker> Driver<B> {
    /// Queues a rate-limited handler's delivery to go back to its throttled broker.
    pub(super) fn hand_back(&mut self, slot: Slot<B::Token>, pause: Duration) {
        self.metrics.retried.increment(1);
        tracing::debug!(
            id = slot.message.id(),
            attempt = slot.message.attempt(),
            ?pause,
            "downstream rate-limited the handler; message handed back to the throttled queue"
        );
        self.to_hand_back
            .push(Delivery::new(slot.token, slot.message));
    }

    /// Finishes the release on its way and starts the next one, one at a time. A release that
    /// fails is not repeated (the deliveries went into it): as at shutdown, an at-least-once
    /// broker's recovery delivers them again; counted as unsettled. Returns whether anything
    /// moved.
    pub(super) fn poll_hand_back(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        if let Some(call) = self.hand_back_call.as_mut()
            && let Poll::Ready((n, res)) = call.as_mut().poll(cx)
        {
            self.hand_back_call = None;
            progressed = true;
            match res {
                // Retried without an attempt: a retry in the summary.
                Ok(()) => self.summary.retried += n,
                Err(e) => {
                    tracing::error!(error = %e, count = n, "handing rate-limited messages back failed; the broker's recovery will return them");
                    self.summary.unsettled += n;
                    self.metrics.unsettled.increment(n);
                }
            }
        }
        if self.hand_back_call.is_none() && !self.to_hand_back.is_empty() {
            let batch = std::mem::take(&mut self.to_hand_back);
            let n = batch.len() as u64;
            let b = Arc::clone(&self.broker);
            self.hand_back_call = Some(Box::pin(async move { (n, b.release(batch).await) }));
            progressed = true;
        }
        progressed
    }
}
