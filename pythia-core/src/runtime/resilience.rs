//! [`WorkerRuntime::with_resilience`]: the recommended middleware stack in one call.

use super::WorkerRuntime;
use crate::broker::Broker;
use crate::resilience::ResilienceLayer;

impl<B: Broker> WorkerRuntime<B> {
    /// Wraps the handler in the resilience stack: a [`ResilienceConfig`] (built here) or a
    /// [`ResilienceLayer`] (built earlier, e.g. to keep its circuit breaker handle).
    ///
    /// # Order
    ///
    /// Circuit breaker (outermost) → in-process retry → timeout → worker; the
    /// [`resilience` module docs](crate::resilience#order) say why. Like any
    /// [`layer`](Self::layer), the stack sits inside the layers added before this call and
    /// outside those added after it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pythia_core::resilience::{CircuitBreakerConfig, ResilienceConfig};
    /// use pythia_core::{worker_fn, MemoryBroker, Message, WorkerRuntime};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let broker = MemoryBroker::new("jobs");
    /// broker.push(Message::new("x"));
    /// let summary = WorkerRuntime::new(broker, worker_fn(|_m| async { Ok(()) }))
    ///     .with_resilience(
    ///         ResilienceConfig::default()
    ///             .with_timeout(Duration::from_secs(5))
    ///             .with_circuit_breaker(CircuitBreakerConfig::default().with_name("jobs")),
    ///     )
    ///     .with_burst(true)
    ///     .run()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(summary.acked, 1);
    /// # }
    /// ```
    ///
    /// [`ResilienceConfig`]: crate::resilience::ResilienceConfig
    pub fn with_resilience(self, resilience: impl Into<ResilienceLayer>) -> Self {
        self.layer(resilience.into())
    }
}
