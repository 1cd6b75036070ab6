//! The seam for a circuit breaker shared by every replica: [`CircuitStateStore`] (implemented
//! by pythia-redis), what a replica reports to it and what it answers, and the sync task.
//!
//! # Behaviour
//!
//! Each replica keeps its own breaker, which decides every call locally as before (no store
//! round trip per message). A background task, started on the breaker's first use, syncs it
//! with the store every [`sync_interval`](super::CircuitBreakerConfig::sync_interval) and at
//! once after a local transition:
//!
//! * it reports what this replica saw since the last sync (counted successes and failures, its
//!   consecutive failures, and whether it opened or closed its breaker itself);
//! * the store applies that atomically to the shared state, which may trip it on the fleet's
//!   failures taken together, and answers the shared state (closed, open for how much longer,
//!   or half-open), timed by the store's own clock;
//! * the replica adopts that state: open when another replica opened it (with the same
//!   deadline), closed when another replica's probes closed it.
//!
//! A sync that fails (store unreachable) changes nothing: the local breaker decides alone, and
//! what it saw is reported with the next sync that succeeds.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::config::CircuitBreakerConfig;
use super::state::Shared;
use crate::error::BrokerError;

/// The future a [`CircuitStateStore`] returns.
pub type StoreFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SharedCircuitState, BrokerError>> + Send + 'a>>;

/// Where a shared circuit breaker keeps its state, so that every replica of a worker stops and
/// resumes together. pythia-redis implements it in Redis (`RedisCircuitStateStore`).
///
/// An implementation applies `report` to the shared state of the breaker named
/// `config.name()` **atomically** and answers the resulting state, with time measured by one
/// clock for every replica (the store's, not the replicas'):
///
/// * `report.event` [`Opened`](CircuitEvent::Opened): open it for `config.cool_down()` unless
///   it is open already (then its deadline stands);
/// * [`Closed`](CircuitEvent::Closed): close it if it is half-open (open past its deadline);
/// * counted calls: while closed, add them to the shared window and open the breaker when
///   the configured thresholds are met by the fleet's calls taken together.
///
/// ```
/// use pythia_core::resilience::{
///     CircuitBreakerConfig, CircuitReport, CircuitStateStore, SharedCircuitState, StoreFuture,
/// };
///
/// /// A store that never shares anything: every replica decides alone.
/// #[derive(Debug)]
/// struct Alone;
///
/// impl CircuitStateStore for Alone {
///     fn sync<'a>(&'a self, _: &'a CircuitBreakerConfig, _: &'a CircuitReport) -> StoreFuture<'a> {
///         Box::pin(async { Ok(SharedCircuitState::Closed) })
///     }
/// }
///
/// let config = CircuitBreakerConfig::default().with_shared_state(Alone);
/// assert!(config.is_shared());
/// ```
pub trait CircuitStateStore: Send + Sync + fmt::Debug + 'static {
    /// Applies `report` to the shared state of `config.name()` and answers that state.
    fn sync<'a>(
        &'a self,
        config: &'a CircuitBreakerConfig,
        report: &'a CircuitReport,
    ) -> StoreFuture<'a>;
}

/// A transition a replica made itself, reported to the [`CircuitStateStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitEvent {
    /// This replica opened its breaker (its own failures, or a failed probe).
    Opened,
    /// This replica's probes succeeded: it closed its breaker.
    Closed,
}

/// What one replica saw since its last successful sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitReport {
    /// Calls counted as successes while closed.
    pub successes: u64,
    /// Calls counted as failures while closed.
    pub failures: u64,
    /// This replica's failures in a row right now.
    pub consecutive_failures: u32,
    /// A transition this replica made itself, if any.
    pub event: Option<CircuitEvent>,
}

/// The shared state a [`CircuitStateStore`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedCircuitState {
    /// Calls go through.
    Closed,
    /// Calls are held back for `remaining` more (by the store's clock).
    Open {
        /// Time left until the breaker turns half-open.
        remaining: Duration,
    },
    /// The cool-down is over: probes may go through.
    HalfOpen,
}

/// A [`CircuitStateStore`] in a config: compared by identity.
#[derive(Clone)]
pub(super) struct StoreRef(pub(super) Arc<dyn CircuitStateStore>);

impl PartialEq for StoreRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for StoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Syncs `shared` with `store` until the breaker is dropped. `wake` is notified on each local
/// transition, for an early sync.
pub(super) async fn sync_loop(
    shared: Weak<Shared>,
    store: Arc<dyn CircuitStateStore>,
    wake: Arc<Notify>,
    interval: Duration,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = wake.notified() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (report, generation) = shared.take_report();
        match store.sync(shared.config(), &report).await {
            Ok(remote) => {
                if failing {
                    tracing::info!(
                        breaker = shared.config().name(),
                        "circuit breaker state store reachable again: sharing state"
                    );
                    failing = false;
                }
                shared.adopt(remote, generation);
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(
                        breaker = shared.config().name(),
                        %error,
                        "circuit breaker state store unreachable: this replica decides alone"
                    );
                    failing = true;
                }
                shared.restore_report(report);
            }
        }
    }
}
