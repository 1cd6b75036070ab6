#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod broker;
pub mod dead_letter;
pub mod envelope;
pub mod error;
#[cfg(feature = "exporter")]
#[cfg_attr(docsrs, doc(cfg(feature = "exporter")))]
pub mod exporter;
pub mod extensions;
pub mod job;
mod json_write;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod python_wire;
pub mod queues;
pub mod resilience;
pub mod retry_policy;
pub mod runtime;
pub mod worker;

pub use crate::broker::{Broker, Delivery, DeliveryGuarantee, Outcome, QueueStats, Settlement};
pub use crate::dead_letter::DeadLetter;
pub use crate::error::{
    BodyError, BoxError, BrokerError, BrokerErrorKind, IntoWorkerError, WorkerError,
    WorkerErrorKind,
};
pub use crate::extensions::Extensions;
pub use crate::job::{Job, JobWorker, OutputSink, job_message};
pub use crate::memory::{MemoryBroker, MemoryStats};
pub use crate::message::{Headers, Message, Source};
pub use crate::resilience::{
    CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState, InProcessRetry,
    ResilienceConfig, ResilienceLayer, RetryLayer, TimeoutLayer,
};
pub use crate::retry_policy::RetryPolicy;
pub use crate::runtime::{
    Dispatch, RunSummary, RuntimeError, RuntimeState, RuntimeStatus, SettleObserver, Settled,
    WorkerRuntime, shutdown_signal,
};
pub use crate::worker::{FnWorker, HandlerService, Worker, WorkerService, worker_fn};
pub use tokio_util::sync::CancellationToken;
