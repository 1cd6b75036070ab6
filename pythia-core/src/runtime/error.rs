//! [`RuntimeError`]: why a run ended with an error, with its cause as the error's source.

use std::fmt;

use crate::error::{BrokerError, BrokerErrorKind, WorkerError};

/// Why a run ended with an error.
///
/// Its [`source`](std::error::Error::source) is the cause: the hook's or the layer's error, the
/// broker's.
#[derive(Debug)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The worker's `on_start` hook failed; nothing was consumed.
    Start(WorkerError),
    /// The broker failed in a way a retry cannot fix (bad configuration, closed).
    Broker(BrokerError),
    /// A layer of the handler stack failed in `poll_ready`, so no message can be handled.
    Service(WorkerError),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start(e) => write!(f, "worker on_start failed: {e}"),
            Self::Broker(e) => write!(f, "broker failed: {e}"),
            Self::Service(e) => write!(f, "handler stack failed: {e}"),
        }
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Start(e) | Self::Service(e) => Some(e.source_error()),
            Self::Broker(e) => Some(e),
        }
    }
}

impl From<BrokerError> for RuntimeError {
    fn from(e: BrokerError) -> Self {
        Self::Broker(e)
    }
}

impl RuntimeError {
    /// Whether the run stopped on a configuration error (a bad setting, a Redis key of the
    /// wrong type): restarting the worker will not help until the configuration is fixed. The
    /// `pythia` CLI exits 2 for these.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Broker(e) if e.kind() == BrokerErrorKind::Config)
    }
}
