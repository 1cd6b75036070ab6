//! [`CircuitBreakerHandle`] and [`CircuitState`]: watching a breaker from outside the handler.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use super::config::CircuitBreakerConfig;
use super::state::Shared;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls go through; failures are counted.
    Closed,
    /// The cool-down is over: a limited number of probe calls go through to test the downstream.
    HalfOpen,
    /// Calls are held back (the service is not ready) until the cool-down ends.
    Open,
}

impl CircuitState {
    /// The value of the `pythia_circuit_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub const fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }

    /// `closed`, `half_open` or `open`: the `to` label of
    /// `pythia_circuit_breaker_transitions_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A view of a circuit breaker from outside the handler stack: its state, its transitions.
///
/// Get one from [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle),
/// [`CircuitBreaker::handle`](super::CircuitBreaker::handle) or
/// [`ResilienceLayer::circuit_breaker`](crate::resilience::ResilienceLayer::circuit_breaker).
/// Cheap to clone; every clone sees the same breaker.
///
/// ```
/// use pythia_core::resilience::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::default().with_name("smtp"));
/// let handle = layer.handle();
/// assert_eq!(handle.state(), CircuitState::Closed);
///
/// // e.g. flip a readiness flag or page someone on every change:
/// let mut changes = handle.subscribe();
/// tokio::spawn(async move {
///     while changes.changed().await.is_ok() {
///         let state = *changes.borrow_and_update();
///         if state == CircuitState::Open { /* alert */ }
///     }
/// });
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    shared: Arc<Shared>,
}

impl CircuitBreakerHandle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The current state.
    ///
    /// The move from open to half-open happens when a caller next asks the breaker for
    /// readiness after the cool-down (the runtime does, woken by a timer), so just after the
    /// cool-down this may still say `Open` for an instant.
    pub fn state(&self) -> CircuitState {
        self.shared.state()
    }

    /// A receiver of the state: `changed().await` wakes on each transition.
    ///
    /// A `watch` channel keeps only the latest state, so a slow reader may skip intermediate
    /// states; [`transitions`](Self::transitions) counts them all.
    pub fn subscribe(&self) -> watch::Receiver<CircuitState> {
        self.shared.subscribe()
    }

    /// State changes since the breaker was created.
    pub fn transitions(&self) -> u64 {
        self.shared.transitions()
    }

    /// The breaker's name (the `breaker` metric label).
    pub fn name(&self) -> &str {
        self.shared.config().name()
    }

    /// The breaker's settings.
    pub fn config(&self) -> &CircuitBreakerConfig {
        self.shared.config()
    }
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}
