//! [`CircuitOpen`]: why a call was refused while the breaker is open.

/// The cause of the error a [`CircuitBreaker`](super::CircuitBreaker) returns when it is
/// called without a successful readiness check while it is not admitting calls.
///
/// The runtime never sees this: it awaits readiness before every call, and an open breaker is
/// simply not ready. A caller that skips `poll_ready` gets
/// [`WorkerError::retry_later`](crate::WorkerError::retry_later) with the rest of the cool-down
/// (open) or [`WorkerError::retry`](crate::WorkerError::retry) (half-open, all probe slots taken),
/// caused by this error; the refused call does not count towards the breaker.
#[derive(Debug, Clone, thiserror::Error)]
#[error("circuit breaker {breaker:?} is not admitting calls")]
pub struct CircuitOpen {
    breaker: String,
}

impl CircuitOpen {
    pub(super) fn new(breaker: &str) -> Self {
        Self {
            breaker: breaker.to_owned(),
        }
    }

    /// The name of the breaker that refused the call.
    pub fn breaker(&self) -> &str {
        &self.breaker
    }
}
