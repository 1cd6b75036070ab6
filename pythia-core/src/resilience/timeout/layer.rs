//! [`TimeoutLayer`]: the timeout middleware's `const` config, which wraps a handler in
//! [`Timeout`](super::Timeout).

use std::time::Duration;

use tower::Layer;

use super::Timeout;

/// Gives each try of the handler a deadline: see the [module docs](super) for the behaviour.
///
/// ```
/// use std::time::Duration;
/// use pythia_core::resilience::TimeoutLayer;
/// use pythia_core::{worker_fn, MemoryBroker, Message, RetryPolicy, WorkerRuntime};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let broker = MemoryBroker::new("thumbnails");
/// broker.push(Message::new("huge.png"));
/// let slow = worker_fn(|_msg| async {
///     tokio::time::sleep(Duration::from_secs(3600)).await; // stuck on a dead socket
///     Ok(())
/// });
/// let summary = WorkerRuntime::new(broker.clone(), slow)
///     .layer(TimeoutLayer::new(Duration::from_secs(30)))
///     .with_retry_policy(RetryPolicy::no_retries())
///     .with_burst(true)
///     .run()
///     .await
///     .unwrap();
/// assert_eq!(summary.dead_lettered, 1);
/// assert!(broker.dead_letters()[0].reason.as_deref().unwrap().contains("timed out after 30s"));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// A layer that cancels any try still running after `limit`.
    pub const fn new(limit: Duration) -> Self {
        Self { limit }
    }

    /// The deadline of each try.
    pub const fn limit(&self) -> Duration {
        self.limit
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::new(inner, self.limit)
    }
}
