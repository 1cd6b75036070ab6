//! [`ResilienceLayer`]: the circuit breaker, retry and timeout layers of a config, stacked in their
//! one order (breaker outermost, timeout nearest the worker).

use tower::util::BoxCloneService;
use tower::{Layer, Service};

use super::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use super::config::ResilienceConfig;
use super::retry::RetryLayer;
use super::timeout::TimeoutLayer;
use crate::error::WorkerError;
use crate::message::Message;
use crate::worker::HandlerService;

/// The layers of a [`ResilienceConfig`], built: circuit breaker → in-process retry → timeout,
/// each present only if configured.
///
/// # Order
///
/// The breaker is outermost, the timeout innermost, nearest the worker; the
/// [module docs](super#order) say why. The result is erased to a [`HandlerService`], so no
/// nested generic types reach the user.
///
/// ```
/// use std::time::Duration;
/// use pythia_core::resilience::{CircuitBreakerConfig, CircuitState, ResilienceConfig};
/// use pythia_core::{worker_fn, MemoryBroker, Message, WorkerRuntime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stack = ResilienceConfig::default()
///     .with_timeout(Duration::from_secs(10))
///     .with_circuit_breaker(CircuitBreakerConfig::default())
///     .build();
/// let breaker = stack.circuit_breaker().expect("configured");
///
/// let broker = MemoryBroker::new("jobs");
/// broker.push(Message::new("x"));
/// let summary = WorkerRuntime::new(broker, worker_fn(|_m| async { Ok(()) }))
///     .layer(stack)
///     .with_burst(true)
///     .run()
///     .await
///     .unwrap();
/// assert_eq!(summary.acked, 1);
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ResilienceLayer {
    breaker: Option<CircuitBreakerLayer>,
    retry: Option<RetryLayer>,
    timeout: Option<TimeoutLayer>,
}

impl ResilienceLayer {
    /// Builds the layers `config` enables.
    pub fn new(config: ResilienceConfig) -> Self {
        Self {
            breaker: config
                .circuit_breaker()
                .cloned()
                .map(CircuitBreakerLayer::new),
            retry: config.in_process_retry().cloned().map(RetryLayer::new),
            timeout: config.timeout().map(TimeoutLayer::new),
        }
    }

    /// A handle to the circuit breaker, if one is configured.
    pub fn circuit_breaker(&self) -> Option<CircuitBreakerHandle> {
        self.breaker.as_ref().map(CircuitBreakerLayer::handle)
    }
}

impl<S> Layer<S> for ResilienceLayer
where
    S: Service<Message, Response = (), Error = WorkerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Service = HandlerService;

    fn layer(&self, inner: S) -> HandlerService {
        let mut service = BoxCloneService::new(inner);
        if let Some(timeout) = &self.timeout {
            service = BoxCloneService::new(timeout.layer(service));
        }
        if let Some(retry) = &self.retry {
            service = BoxCloneService::new(retry.layer(service));
        }
        if let Some(breaker) = &self.breaker {
            service = BoxCloneService::new(breaker.layer(service));
        }
        service
    }
}
