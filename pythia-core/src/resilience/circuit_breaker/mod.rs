//! A circuit breaker that pauses consumption while the downstream looks sick.
//!
//! ```text
//!            failure threshold                 cool-down over
//!  Closed ───────────────────────► Open ────────────────────────► HalfOpen
//!    ▲                              ▲                                │
//!    │                              └──────── a probe fails ─────────┤
//!    └──────────────── success_threshold probe successes ────────────┘
//! ```
//!
//! # Behaviour
//!
//! * **Closed**: every call goes through. The breaker opens when either trigger of
//!   [`CircuitBreakerConfig`] fires: `consecutive_failures` in a row, or a failure rate of at
//!   least `failure_rate` over the last `window_size` counted calls once `minimum_calls` have
//!   been seen.
//! * **Open**: [`poll_ready`](tower::Service::poll_ready) returns `Pending` and arms a tokio
//!   timer that wakes the task when the cool-down ends. The runtime awaits readiness before it
//!   fetches, so **fetching pauses and messages stay in the broker** (in Redis) rather than
//!   being taken out only to fail. Messages already fetched wait in the runtime.
//! * **Half-open**: at most `half_open_max_probes` calls are in flight at once. The slot is
//!   reserved by `poll_ready` and used by the next `call`; further callers get `Pending` and are
//!   woken when a slot frees up. `success_threshold` probe successes close the breaker; one
//!   probe failure opens it again for a full cool-down.
//!
//! What counts:
//!
//! * **Failure**: any retryable error — [`Retry`](crate::WorkerErrorKind::Retry),
//!   [`RetryAfter`](crate::WorkerErrorKind::RetryAfter),
//!   [`RateLimited`](crate::WorkerErrorKind::RateLimited), [`Timeout`](crate::WorkerErrorKind::Timeout),
//!   [`Panic`](crate::WorkerErrorKind::Panic) returned as an error.
//! * **Neither**: [`Reject`](crate::WorkerErrorKind::Reject) — a poison message says nothing
//!   about the downstream — and calls dropped before they finish (shutdown). Neither counts
//!   towards the window nor resets the consecutive count; a neutral probe frees its slot.
//! * Results of calls admitted before the last state change are ignored: a slow call that
//!   started while closed does not decide a half-open breaker.
//!
//! State is shared by every clone of the service (and of the [`CircuitBreakerLayer`]). Each
//! state change is logged once (`warn` on open, `info` on half-open and close), sets the
//! `pythia_circuit_breaker_state` gauge (0 closed, 1 half-open, 2 open) and increments
//! `pythia_circuit_breaker_transitions_total{to=...}`, both labelled `breaker` with the
//! configured name; [`CircuitBreakerHandle`] observes it from outside.
//!
//! **Shared by every replica** (optional): with
//! [`CircuitBreakerConfig::with_shared_state`] the breaker syncs with a store (Redis, in
//! pythia-redis) so that one replica's failures pause them all and one replica's probes resume
//! them all; see [`shared`] for how, and what happens when the store is unreachable.
//!
//! Panics that unwind through the breaker are caught by the runtime outside it, so they count
//! as neither; put the breaker where it sees errors, as [`ResilienceConfig`] does
//! (see [Order](crate::resilience#order)).
//!
//! [`ResilienceConfig`]: crate::resilience::ResilienceConfig

mod config;
mod error;
mod future;
mod handle;
mod layer;
pub mod shared;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};
use tower::Service;

pub use self::config::CircuitBreakerConfig;
pub use self::error::CircuitOpen;
pub use self::future::ResponseFuture;
pub use self::handle::{CircuitBreakerHandle, CircuitState};
pub use self::layer::CircuitBreakerLayer;
pub use self::shared::{
    CircuitEvent, CircuitReport, CircuitStateStore, SharedCircuitState, StoreFuture,
};
use self::state::{Admission, ProbePermit, Shared, Ticket};
use crate::error::WorkerError;

/// A service that stops calling `S` while the downstream looks sick.
///
/// Built by [`CircuitBreakerLayer`]; see the [module docs](self) for the behaviour.
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The probe slot `poll_ready` reserved for the next call (half-open).
    permit: Option<ProbePermit>,
    /// The generation `poll_ready` admitted the next call in (closed).
    admitted: Option<u64>,
    /// Wakes the task when the cool-down ends (open).
    cool_down: Option<Pin<Box<Sleep>>>,
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in a new breaker of its own (closed). Prefer [`CircuitBreakerLayer`],
    /// which shares one breaker among every service it builds.
    pub fn new(inner: S, config: CircuitBreakerConfig) -> Self {
        Self::with_shared(inner, Shared::new(config))
    }

    fn with_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            permit: None,
            admitted: None,
            cool_down: None,
        }
    }

    /// A handle to observe this breaker.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(Arc::clone(&self.shared))
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

impl<S: Clone> Clone for CircuitBreaker<S> {
    /// A clone shares the breaker but not a readiness reservation: it must be polled ready itself.
    fn clone(&self) -> Self {
        Self::with_shared(self.inner.clone(), Arc::clone(&self.shared))
    }
}

impl<S: fmt::Debug> fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.config().name())
            .field("state", &self.shared.state())
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, Request> Service<Request> for CircuitBreaker<S>
where
    S: Service<Request, Error = WorkerError>,
{
    type Response = S::Response;
    type Error = WorkerError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WorkerError>> {
        loop {
            match self.shared.admit(self.permit.take(), Some(cx.waker())) {
                Admission::Closed { generation } => {
                    self.admitted = Some(generation);
                    break;
                }
                Admission::Probe(permit) => {
                    self.permit = Some(permit);
                    self.admitted = None;
                    break;
                }
                Admission::Full => {
                    self.admitted = None;
                    return Poll::Pending;
                }
                Admission::Open { until } => {
                    self.admitted = None;
                    let timer = self
                        .cool_down
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                    if timer.deadline() != until {
                        timer.as_mut().reset(until);
                    }
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // Cool-down over: ask again, which moves the breaker to half-open.
                }
            }
        }
        self.cool_down = None;
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let ticket = if let Some(permit) = self.permit.take() {
            Ticket::Probe(permit)
        } else if let Some(generation) = self.admitted.take() {
            // Admitted by `poll_ready`: honoured even if the breaker opened since.
            Ticket::Closed {
                shared: Arc::clone(&self.shared),
                generation,
            }
        } else {
            match self.shared.admit(None, None) {
                Admission::Closed { generation } => Ticket::Closed {
                    shared: Arc::clone(&self.shared),
                    generation,
                },
                Admission::Probe(permit) => Ticket::Probe(permit),
                Admission::Open { until } => {
                    let rest = until.saturating_duration_since(Instant::now());
                    let cause = CircuitOpen::new(self.shared.config().name());
                    return ResponseFuture::refused(WorkerError::retry_later(rest, cause));
                }
                Admission::Full => {
                    let cause = CircuitOpen::new(self.shared.config().name());
                    return ResponseFuture::refused(WorkerError::retry(cause));
                }
            }
        };
        ResponseFuture::new(self.inner.call(request), ticket)
    }
}
