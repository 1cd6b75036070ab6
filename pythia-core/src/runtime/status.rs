//! A live view of a running runtime, for health probes and dashboards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Where a runtime is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeState {
    /// Built, not yet consuming (running the worker's `on_start`).
    Starting,
    /// Fetching and processing.
    Running,
    /// Stopped fetching; draining in-flight work.
    Stopping,
    /// Done.
    Stopped,
}

/// A cheap, cloneable handle on a runtime's health, readable from any task.
///
/// `/readyz` is [`RuntimeStatus::is_ready`]: running, the broker reachable, and the consume loop
/// made progress (a fetch returned, even empty, or a handler finished) within the stall limit.
#[derive(Debug, Clone)]
pub struct RuntimeStatus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    last_progress_ms: AtomicU64,
    fetch_ok: AtomicBool,
    maintain_ok: AtomicBool,
    state: AtomicU8,
    in_flight: AtomicUsize,
}

impl RuntimeStatus {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                last_progress_ms: AtomicU64::new(0),
                fetch_ok: AtomicBool::new(true),
                maintain_ok: AtomicBool::new(true),
                state: AtomicU8::new(0),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    pub(crate) fn progressed(&self) {
        let ms = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.last_progress_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn set_fetch_ok(&self, ok: bool) {
        self.inner.fetch_ok.store(ok, Ordering::Relaxed);
    }

    pub(crate) fn set_maintain_ok(&self, ok: bool) {
        self.inner.maintain_ok.store(ok, Ordering::Relaxed);
    }

    pub(crate) fn set_state(&self, s: RuntimeState) {
        let v = match s {
            RuntimeState::Starting => 0,
            RuntimeState::Running => 1,
            RuntimeState::Stopping => 2,
            RuntimeState::Stopped => 3,
        };
        self.inner.state.store(v, Ordering::Relaxed);
    }

    pub(crate) fn set_in_flight(&self, n: usize) {
        self.inner.in_flight.store(n, Ordering::Relaxed);
    }

    /// The current state.
    pub fn state(&self) -> RuntimeState {
        match self.inner.state.load(Ordering::Relaxed) {
            0 => RuntimeState::Starting,
            1 => RuntimeState::Running,
            2 => RuntimeState::Stopping,
            _ => RuntimeState::Stopped,
        }
    }

    /// Whether the broker is reachable: the last fetch and the last housekeeping run
    /// (heartbeats, reaping) both succeeded.
    pub fn broker_ok(&self) -> bool {
        self.inner.fetch_ok.load(Ordering::Relaxed)
            && self.inner.maintain_ok.load(Ordering::Relaxed)
    }

    /// Messages being processed now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Time since the consume loop last made progress.
    pub fn since_progress(&self) -> Duration {
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(
            now.saturating_sub(self.inner.last_progress_ms.load(Ordering::Relaxed)),
        )
    }

    /// Running, broker reachable, and progress within `stall_limit`.
    pub fn is_ready(&self, stall_limit: Duration) -> bool {
        self.state() == RuntimeState::Running
            && self.broker_ok()
            && self.since_progress() <= stall_limit
    }
}
