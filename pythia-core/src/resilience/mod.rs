//! Resilience middleware: composable tower layers around the handler.
//!
//! | layer | what it does |
//! |---|---|
//! | [`CircuitBreakerLayer`] | stops consuming while the downstream looks sick: an open breaker makes the handler stack not ready, so the runtime stops fetching and messages stay in the broker |
//! | [`RetryLayer`] | retries transient errors in-process a few times, with short jittered backoff, before the broker-level [`RetryPolicy`](crate::RetryPolicy) takes over |
//! | [`TimeoutLayer`] | gives each try a deadline: an overrunning handler is cancelled and fails with [`WorkerErrorKind::Timeout`](crate::WorkerErrorKind::Timeout) |
//!
//! Each layer lives in its own module ([`timeout`], [`retry`], [`circuit_breaker`]) and can be
//! used alone with [`WorkerRuntime::layer`](crate::WorkerRuntime::layer) or any tower stack.
//! [`ResilienceConfig`] bundles them with defaults for a new user, and
//! [`WorkerRuntime::with_resilience`](crate::WorkerRuntime::with_resilience) applies the bundle
//! in the recommended order.
//!
//! # Order
//!
//! ```text
//! runtime ──► circuit breaker ──► in-process retry ──► timeout ──► Worker::process_message
//! ```
//!
//! * **Timeout innermost**, so the deadline is per try: a hung try is cancelled and the retry
//!   layer can try again. Outside the retry layer, one deadline would cover every try and the
//!   backoff sleeps between them.
//! * **Retry inside the breaker**, so the breaker judges whole messages: a blip that an
//!   in-process retry absorbs is not a failure, and a message that fails all its tries counts
//!   once, not once per try.
//! * **Breaker outermost**, because its readiness is what pauses fetching: the runtime asks the
//!   outermost layer whether it is ready before it fetches. Inside the retry layer, an open
//!   breaker would instead stall a message that was already taken out of the broker.
//!
//! Layers added with [`WorkerRuntime::layer`](crate::WorkerRuntime::layer) before
//! `with_resilience` sit outside this stack; layers added after it sit inside, nearer the worker.
//!
//! ```
//! use std::time::Duration;
//! use pythia_core::resilience::{CircuitBreakerConfig, InProcessRetry, ResilienceConfig};
//! use pythia_core::{worker_fn, MemoryBroker, Message, WorkerRuntime};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let resilience = ResilienceConfig::default()
//!     .with_timeout(Duration::from_secs(10))
//!     .with_in_process_retry(InProcessRetry::default())
//!     .with_circuit_breaker(CircuitBreakerConfig::default().with_name("payments"))
//!     .build();
//! let breaker = resilience.circuit_breaker().expect("configured above");
//!
//! let broker = MemoryBroker::new("payments");
//! broker.push(Message::new("charge 42"));
//! let summary = WorkerRuntime::new(broker, worker_fn(|_msg| async { Ok(()) }))
//!     .with_resilience(resilience)
//!     .with_burst(true)
//!     .run()
//!     .await
//!     .unwrap();
//! assert_eq!(summary.acked, 1);
//! assert_eq!(breaker.state(), pythia_core::resilience::CircuitState::Closed);
//! # }
//! ```

pub mod circuit_breaker;
mod config;
pub mod metrics;
pub mod retry;
mod stack;
pub mod timeout;

pub use self::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitEvent, CircuitReport,
    CircuitState, CircuitStateStore, SharedCircuitState, StoreFuture,
};
pub use self::config::ResilienceConfig;
pub use self::retry::{InProcessRetry, RetryLayer};
pub use self::stack::ResilienceLayer;
pub use self::timeout::TimeoutLayer;
