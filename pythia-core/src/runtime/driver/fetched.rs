//! A fetch's answer: a batch counted and queued (or set aside when stopping), a broker
//! reachable again, and an error (fatal, or retried with backoff).

use std::task::Context;
use std::time::Duration;

use tokio::time::Instant;

use super::{Driver, FetchResult, reconnect_backoff};
use crate::broker::Broker;
use crate::error::{BrokerError, BrokerErrorKind};
use crate::runtime::RuntimeError;

impl<B: Broker> Driver<B> {
    pub(super) fn on_fetched(&mut self, res: FetchResult<B::Token>, cx: &mut Context<'_>) {
        match res {
            Ok(batch) => {
                self.status.progressed();
                if self.fetch_failing {
                    tracing::info!("broker reachable again: fetching resumed");
                    self.fetch_failing = false;
                    self.status.set_fetch_ok(true);
                    self.metrics.reconnects.increment(1);
                }
                self.fetch_backoff = reconnect_backoff();
                self.last_fetch_empty = batch.is_empty();
                if !batch.is_empty() {
                    self.first_fetch.get_or_insert_with(Instant::now);
                    self.summary.fetched += batch.len() as u64;
                    self.metrics.fetch_batch.record(batch.len() as f64);
                }
                if self.stopping {
                    self.to_release.extend(batch);
                } else {
                    self.pending.extend(batch);
                }
            }
            Err(e) => self.on_fetch_error(e, cx),
        }
    }

    pub(super) fn on_fetch_error(&mut self, e: BrokerError, cx: &mut Context<'_>) {
        self.metrics.fetch_errors.increment(1);
        if matches!(e.kind(), BrokerErrorKind::Config | BrokerErrorKind::Closed) {
            self.fail(RuntimeError::Broker(e), cx);
            return;
        }
        let delay = self.fetch_backoff.next().unwrap_or(Duration::from_secs(5));
        if !self.fetch_failing || e.kind() == BrokerErrorKind::Backend {
            tracing::error!(error = %e, retry_in = ?delay, "fetch failed; retrying with backoff");
        }
        self.fetch_failing = true;
        self.status.set_fetch_ok(false);
        self.fetch_wait = Some(Box::pin(tokio::time::sleep(delay)));
    }
}
