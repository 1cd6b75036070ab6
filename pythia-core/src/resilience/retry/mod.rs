//! Short in-process retries of transient errors.
//!
//! The runtime's [`RetryPolicy`](crate::RetryPolicy) retries through the broker: the message
//! goes back to Redis with a delay and survives a crash, at the cost of a round trip and a
//! redelivery. For blips that pass in milliseconds (a reset connection, a lock timeout), a
//! quick retry in-process is cheaper. This layer does that, a few times, then hands the last
//! error to the runtime.
//!
//! # Behaviour
//!
//! * Retried: every retryable error ([`WorkerErrorKind::Retry`](crate::WorkerErrorKind::Retry),
//!   [`Timeout`](crate::WorkerErrorKind::Timeout), [`Panic`](crate::WorkerErrorKind::Panic) as an
//!   error value), up to [`InProcessRetry::max_retries`] extra tries, with the backoff of
//!   [`InProcessRetry`].
//! * Never retried: [`WorkerError::reject`] (a poison message stays poison).
//! * [`WorkerError::retry_later`]: a delay up to [`InProcessRetry::max_delay`] is slept as
//!   asked; a longer one is returned at once, so that the broker schedules it in Redis, where it
//!   survives a crash and does not hold a concurrency slot.
//! * When the tries are used up, the **last error** is returned unchanged (kind and cause), and
//!   the runtime's `RetryPolicy` schedules a broker-level retry or dead-letters the message.
//! * Every try gets **the same [`Message`]**: [`Message::attempt`] counts broker deliveries, so
//!   in-process tries do not change it and add no header. Each retry is logged at `debug` level
//!   (target `pythia_core::resilience::retry`) with the message id, the delivery attempt, the
//!   in-process try and the delay.
//! * A try starts only once the inner service is ready again.
//! * Dropping the response future (e.g. the shutdown grace period ran out) cancels the current
//!   try or backoff sleep.

mod config;
mod future;
mod layer;
#[cfg(test)]
mod tests;

use std::task::{Context, Poll};

use tower::{Service, ServiceExt};

pub use self::config::InProcessRetry;
pub use self::future::ResponseFuture;
pub use self::layer::RetryLayer;
use crate::error::WorkerError;
use crate::message::Message;

/// A service that retries failed calls of `S` in-process.
///
/// Built by [`RetryLayer`]; see the [module docs](self) for the behaviour.
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    config: InProcessRetry,
}

impl<S> Retry<S> {
    /// Wraps `inner`, retrying by `config`.
    pub const fn new(inner: S, config: InProcessRetry) -> Self {
        Self { inner, config }
    }

    /// The retry settings.
    pub fn config(&self) -> &InProcessRetry {
        &self.config
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<Message> for Retry<S>
where
    S: Service<Message, Error = WorkerError> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = WorkerError;
    type Future = ResponseFuture<Result<S::Response, WorkerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WorkerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, msg: Message) -> Self::Future {
        // The instance that was polled ready makes the first call; the future keeps it for the
        // retries and this service keeps a fresh clone.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let first = inner.call(msg.clone());
        let config = self.config.clone();
        ResponseFuture::new(Box::pin(async move {
            let mut result = first.await;
            let mut retries = 0;
            loop {
                let e = match &result {
                    Ok(_) => return result,
                    Err(e) => e,
                };
                let Some(delay) = config.plan(retries, e, fastrand::f64()) else {
                    return result;
                };
                retries += 1;
                tracing::debug!(
                    id = msg.id(),
                    attempt = msg.attempt(),
                    retry = retries,
                    max_retries = config.max_retries(),
                    ?delay,
                    error = %e,
                    "in-process retry"
                );
                tokio::time::sleep(delay).await;
                result = match inner.ready().await {
                    Ok(svc) => svc.call(msg.clone()).await,
                    Err(e) => Err(e),
                };
            }
        }))
    }
}
