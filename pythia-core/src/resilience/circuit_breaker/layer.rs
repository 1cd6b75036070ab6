//! [`CircuitBreakerLayer`]: one breaker shared by every [`CircuitBreaker`](super::CircuitBreaker)
//! service it builds.

use std::sync::Arc;

use tower::Layer;

use super::CircuitBreaker;
use super::config::CircuitBreakerConfig;
use super::handle::CircuitBreakerHandle;
use super::state::Shared;

/// Pauses consumption while the downstream looks sick: see the [module docs](super) for the
/// behaviour.
///
/// The layer *is* one breaker: every service it builds, and every clone of the layer, share one
/// state, so the breaker sees all calls however the runtime clones the stack. Build a second
/// layer for an independent breaker.
///
/// ```
/// use std::time::Duration;
/// use pythia_core::resilience::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
/// use pythia_core::{worker_fn, MemoryBroker, Message, WorkerError, WorkerRuntime};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let breaker = CircuitBreakerLayer::new(
///     CircuitBreakerConfig::default()
///         .with_name("smtp")
///         .with_consecutive_failures(3)
///         .with_cool_down(Duration::from_secs(30)),
/// );
/// let handle = breaker.handle();
///
/// let broker = MemoryBroker::new("emails");
/// broker.push_many((0..10).map(|i| Message::new(format!("mail {i}"))));
/// let smtp_down = worker_fn(|_msg| async { Err(WorkerError::retry("connection refused")) });
/// let runtime = WorkerRuntime::new(broker.clone(), smtp_down)
///     .layer(breaker)
///     .with_concurrency(1)
///     .with_signal_handling(false);
/// let stop = runtime.cancellation_token();
/// let run = tokio::spawn(runtime.run());
///
/// tokio::time::sleep(Duration::from_secs(10)).await;
/// assert_eq!(handle.state(), CircuitState::Open);
/// assert_eq!(broker.stats().delivered, 3); // fetching paused after the third failure
///
/// stop.cancel();
/// run.await.unwrap().unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    shared: Arc<Shared>,
}

impl CircuitBreakerLayer {
    /// A new breaker, closed, with `config`. Registers its metrics with the installed recorder.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            shared: Shared::new(config),
        }
    }

    /// A handle to observe this breaker.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(Arc::clone(&self.shared))
    }

    /// The breaker's settings.
    pub fn config(&self) -> &CircuitBreakerConfig {
        self.shared.config()
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new(CircuitBreakerConfig::default())
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker::with_shared(inner, Arc::clone(&self.shared))
    }
}
