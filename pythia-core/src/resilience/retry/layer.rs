//! [`RetryLayer`]: the retry middleware's cheap, cloneable config, which wraps a handler in
//! [`Retry`](super::Retry).

use tower::Layer;

use super::{InProcessRetry, Retry};

/// Retries transient errors in-process before handing them to the runtime: see the
/// [module docs](super) for the behaviour.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use pythia_core::resilience::{InProcessRetry, RetryLayer};
/// use pythia_core::{worker_fn, MemoryBroker, Message, WorkerError, WorkerRuntime};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let broker = MemoryBroker::new("webhooks");
/// broker.push(Message::new("https://example.com/hook"));
/// let tries = Arc::new(AtomicU32::new(0));
/// let t = tries.clone();
/// let flaky = worker_fn(move |msg: Message| {
///     let t = t.clone();
///     async move {
///         assert_eq!(msg.attempt(), 1); // in-process tries are not broker deliveries
///         match t.fetch_add(1, Ordering::SeqCst) {
///             0 => Err(WorkerError::retry("connection reset")),
///             _ => Ok(()),
///         }
///     }
/// });
/// let summary = WorkerRuntime::new(broker, flaky)
///     .layer(RetryLayer::new(InProcessRetry::default()))
///     .with_burst(true)
///     .run()
///     .await
///     .unwrap();
/// assert_eq!((summary.acked, summary.retried), (1, 0)); // no broker-level retry needed
/// assert_eq!(tries.load(Ordering::SeqCst), 2);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryLayer {
    config: InProcessRetry,
}

impl RetryLayer {
    /// A layer that retries by `config`.
    pub const fn new(config: InProcessRetry) -> Self {
        Self { config }
    }

    /// The retry settings.
    pub fn config(&self) -> &InProcessRetry {
        &self.config
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new(InProcessRetry::new())
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, self.config.clone())
    }
}
