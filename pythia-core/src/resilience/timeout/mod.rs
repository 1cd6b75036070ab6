//! A per-try deadline for the handler.
//!
//! # Behaviour
//!
//! * A try that is still running after the limit is **cancelled**: its future is dropped, so
//!   whatever it was awaiting is abandoned at the next `.await` point (drop guards run, a
//!   pending database query is cancelled). Code that does not yield (a CPU loop, blocking I/O)
//!   cannot be cancelled this way; move it to `spawn_blocking` and time that out instead.
//! * The try then fails with [`WorkerError::timeout`], kind
//!   [`WorkerErrorKind::Timeout`](crate::WorkerErrorKind::Timeout): retryable, retried by an
//!   in-process [`RetryLayer`](crate::resilience::RetryLayer) if there is one inside the
//!   breaker, then by the runtime's [`RetryPolicy`](crate::RetryPolicy), and counted under
//!   `pythia_handler_failures_total{kind="timeout"}`.
//! * A try that finishes in time returns its result unchanged, errors included.
//! * The clock is tokio's, so tests can drive it with `tokio::time::pause`.

mod future;
mod layer;
#[cfg(test)]
mod tests;

use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

pub use self::future::ResponseFuture;
pub use self::layer::TimeoutLayer;
use crate::error::WorkerError;

/// A service that cancels a call of `S` once it has run for longer than a limit.
///
/// Built by [`TimeoutLayer`]; see the [module docs](self) for the behaviour.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with a deadline of `limit` per call.
    pub const fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }

    /// The deadline of each call.
    pub const fn limit(&self) -> Duration {
        self.limit
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

impl<S, Request> Service<Request> for Timeout<S>
where
    S: Service<Request, Error = WorkerError>,
{
    type Response = S::Response;
    type Error = WorkerError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WorkerError>> {
        // Readiness has no deadline: waiting for capacity is not the handler overrunning.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        ResponseFuture::new(self.inner.call(request), self.limit)
    }
}
