//! The breaker's state machine, shared by every clone of the service.
//!
//! One mutex guards a handful of fields and is held for a few assignments. Wakers are woken and
//! stale probe permits dropped only after it is released (a permit's `Drop` takes the lock).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use metrics::{Counter, Gauge};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::config::CircuitBreakerConfig;
use super::handle::CircuitState;
use super::shared::{CircuitEvent, CircuitReport, SharedCircuitState, sync_loop};
use crate::error::WorkerError;
use crate::resilience::metrics::{CIRCUIT_BREAKER_STATE, CIRCUIT_BREAKER_TRANSITIONS_TOTAL};

/// How a finished call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Success,
    /// A retryable error: the downstream may be sick.
    Failure,
    /// Neither: a rejected (poison) message, or a call cancelled before it finished.
    Neutral,
}

impl Verdict {
    pub(super) fn of<T>(result: &Result<T, WorkerError>) -> Self {
        match result {
            Ok(_) => Self::Success,
            Err(e) if e.is_retryable() => Self::Failure,
            Err(_) => Self::Neutral,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probes: u32, successes: u32 },
}

impl Phase {
    fn state(self) -> CircuitState {
        match self {
            Self::Closed => CircuitState::Closed,
            Self::Open { .. } => CircuitState::Open,
            Self::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// Why the breaker changes state, for the log line.
#[derive(Debug, Clone, Copy)]
enum Why {
    ConsecutiveFailures(u32),
    FailureRate {
        rate: f64,
        calls: usize,
    },
    CoolDownOver,
    ProbeFailed,
    ProbesSucceeded(u32),
    /// Adopted from the state shared by every replica.
    Shared,
}

/// Outcomes of the most recent counted calls.
#[derive(Debug)]
struct Window {
    outcomes: VecDeque<bool>,
    failures: usize,
    capacity: usize,
}

impl Window {
    fn new(capacity: usize) -> Self {
        Self {
            outcomes: VecDeque::with_capacity(capacity),
            failures: 0,
            capacity,
        }
    }

    fn push(&mut self, failed: bool) {
        if self.outcomes.len() == self.capacity && self.outcomes.pop_front() == Some(true) {
            self.failures -= 1;
        }
        self.outcomes.push_back(failed);
        self.failures += usize::from(failed);
    }

    fn len(&self) -> usize {
        self.outcomes.len()
    }

    fn failure_rate(&self) -> f64 {
        if self.outcomes.is_empty() {
            0.0
        } else {
            self.failures as f64 / self.outcomes.len() as f64
        }
    }

    fn clear(&mut self) {
        self.outcomes.clear();
        self.failures = 0;
    }
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every transition: results of calls admitted before it are ignored.
    generation: u64,
    consecutive_failures: u32,
    window: Window,
    /// Tasks waiting for the breaker to admit a call.
    waiters: Vec<Waker>,
    transitions: u64,
    /// Shared breakers: what this replica saw since its last sync.
    report: CircuitReport,
}

/// A shared breaker's link to its sync task.
#[derive(Debug)]
struct SyncLink {
    started: AtomicBool,
    wake: Arc<Notify>,
}

#[derive(Debug)]
struct BreakerMetrics {
    state: Gauge,
    to_closed: Counter,
    to_half_open: Counter,
    to_open: Counter,
}

/// State shared by a [`CircuitBreakerLayer`](super::CircuitBreakerLayer), every service it
/// builds and every [`CircuitBreakerHandle`](super::CircuitBreakerHandle).
pub(super) struct Shared {
    config: CircuitBreakerConfig,
    inner: Mutex<Inner>,
    state_tx: watch::Sender<CircuitState>,
    metrics: BreakerMetrics,
    sync: Option<SyncLink>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.config.name())
            .field("state", &self.state())
            .finish()
    }
}

/// What the breaker lets a caller do right now.
#[derive(Debug)]
pub(super) enum Admission {
    /// Closed: go ahead.
    Closed { generation: u64 },
    /// Half-open and a probe slot is yours.
    Probe(ProbePermit),
    /// Open until then; the caller should arm a timer.
    Open { until: Instant },
    /// Half-open and every probe slot is taken; the caller is woken when one frees up.
    Full,
}

/// A reserved half-open probe slot. Dropping it unused frees the slot.
pub(super) struct ProbePermit {
    shared: Arc<Shared>,
    generation: u64,
    finished: bool,
}

impl std::fmt::Debug for ProbePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbePermit")
            .field("generation", &self.generation)
            .finish()
    }
}

impl ProbePermit {
    fn finish(mut self, verdict: Verdict) {
        self.finished = true;
        self.shared.finish_probe(self.generation, verdict);
    }
}

impl Drop for ProbePermit {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.finish_probe(self.generation, Verdict::Neutral);
        }
    }
}

/// What an admitted call reports back when it finishes.
#[derive(Debug)]
pub(super) enum Ticket {
    Closed {
        shared: Arc<Shared>,
        generation: u64,
    },
    Probe(ProbePermit),
}

impl Ticket {
    pub(super) fn finish(self, verdict: Verdict) {
        match self {
            Self::Closed { shared, generation } => shared.record_closed(generation, verdict),
            Self::Probe(permit) => permit.finish(verdict),
        }
    }
}

fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}

fn register(waiters: &mut Vec<Waker>, waker: Option<&Waker>) {
    if let Some(w) = waker
        && !waiters.iter().any(|x| x.will_wake(w))
    {
        waiters.push(w.clone());
    }
}

impl Shared {
    pub(super) fn new(config: CircuitBreakerConfig) -> Arc<Self> {
        let name = config.name().to_owned();
        let to = |state: &'static str| metrics::counter!(CIRCUIT_BREAKER_TRANSITIONS_TOTAL, "breaker" => name.clone(), "to" => state);
        let metrics = BreakerMetrics {
            state: metrics::gauge!(CIRCUIT_BREAKER_STATE, "breaker" => name.clone()),
            to_closed: to(CircuitState::Closed.as_str()),
            to_half_open: to(CircuitState::HalfOpen.as_str()),
            to_open: to(CircuitState::Open.as_str()),
        };
        metrics.state.set(CircuitState::Closed.as_gauge());
        let window = Window::new(config.window_size());
        let config_is_shared = config.is_shared();
        Arc::new(Self {
            config,
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                generation: 0,
                consecutive_failures: 0,
                window,
                waiters: Vec::new(),
                transitions: 0,
                report: CircuitReport::default(),
            }),
            state_tx: watch::channel(CircuitState::Closed).0,
            metrics,
            sync: config_is_shared.then(|| SyncLink {
                started: AtomicBool::new(false),
                wake: Arc::new(Notify::new()),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; if something did, the state is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    pub(super) fn state(&self) -> CircuitState {
        self.lock().phase.state()
    }

    pub(super) fn transitions(&self) -> u64 {
        self.lock().transitions
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<CircuitState> {
        self.state_tx.subscribe()
    }

    /// Asks to make a call now. `held` is a probe slot the caller reserved earlier (kept if
    /// still valid); `waker` is registered when the answer is "not now".
    pub(super) fn admit(
        self: &Arc<Self>,
        held: Option<ProbePermit>,
        waker: Option<&Waker>,
    ) -> Admission {
        if let Some(link) = &self.sync
            && !link.started.load(Ordering::Relaxed)
        {
            self.start_sync(link);
        }
        let mut woken = Vec::new();
        let mut stale = None;
        let admission = {
            let mut inner = self.lock();
            if let Phase::Open { until } = inner.phase
                && Instant::now() >= until
            {
                let phase = Phase::HalfOpen {
                    probes: 0,
                    successes: 0,
                };
                self.enter(&mut inner, phase, Why::CoolDownOver, &mut woken);
            }
            let generation = inner.generation;
            let phase = inner.phase;
            match phase {
                Phase::Closed => {
                    stale = held;
                    Admission::Closed { generation }
                }
                Phase::Open { until } => {
                    stale = held;
                    register(&mut inner.waiters, waker);
                    Admission::Open { until }
                }
                Phase::HalfOpen { probes, successes } => match held {
                    Some(permit) if permit.generation == generation => Admission::Probe(permit),
                    other => {
                        stale = other;
                        if probes < self.config.half_open_max_probes() {
                            inner.phase = Phase::HalfOpen {
                                probes: probes + 1,
                                successes,
                            };
                            Admission::Probe(ProbePermit {
                                shared: Arc::clone(self),
                                generation,
                                finished: false,
                            })
                        } else {
                            register(&mut inner.waiters, waker);
                            Admission::Full
                        }
                    }
                },
            }
        };
        drop(stale);
        wake_all(woken);
        admission
    }

    /// A call admitted while closed finished.
    fn record_closed(&self, generation: u64, verdict: Verdict) {
        if verdict == Verdict::Neutral {
            return;
        }
        let mut woken = Vec::new();
        {
            let mut inner = self.lock();
            if inner.generation != generation || !matches!(inner.phase, Phase::Closed) {
                return; // admitted before the last transition: no longer relevant
            }
            let failed = verdict == Verdict::Failure;
            if self.sync.is_some() {
                if failed {
                    inner.report.failures += 1;
                } else {
                    inner.report.successes += 1;
                }
            }
            inner.window.push(failed);
            inner.consecutive_failures = if failed {
                inner.consecutive_failures + 1
            } else {
                0
            };
            if let Some(why) = self.trip_reason(&inner) {
                let until = Instant::now() + self.config.cool_down();
                self.enter(&mut inner, Phase::Open { until }, why, &mut woken);
            }
        }
        wake_all(woken);
    }

    fn trip_reason(&self, inner: &Inner) -> Option<Why> {
        let threshold = self.config.consecutive_failures();
        if threshold > 0 && inner.consecutive_failures >= threshold {
            return Some(Why::ConsecutiveFailures(inner.consecutive_failures));
        }
        let max_rate = self.config.failure_rate();
        let calls = inner.window.len();
        if max_rate > 0.0 && calls >= self.config.effective_minimum_calls() {
            let rate = inner.window.failure_rate();
            if rate >= max_rate {
                return Some(Why::FailureRate { rate, calls });
            }
        }
        None
    }

    /// A probe admitted while half-open finished (or was dropped: `Neutral`).
    fn finish_probe(&self, generation: u64, verdict: Verdict) {
        let mut woken = Vec::new();
        {
            let mut inner = self.lock();
            let Phase::HalfOpen { probes, successes } = inner.phase else {
                return;
            };
            if inner.generation != generation {
                return;
            }
            let probes = probes.saturating_sub(1);
            match verdict {
                Verdict::Failure => {
                    let until = Instant::now() + self.config.cool_down();
                    self.enter(
                        &mut inner,
                        Phase::Open { until },
                        Why::ProbeFailed,
                        &mut woken,
                    );
                }
                Verdict::Success if successes + 1 >= self.config.success_threshold() => {
                    let why = Why::ProbesSucceeded(successes + 1);
                    self.enter(&mut inner, Phase::Closed, why, &mut woken);
                }
                Verdict::Success | Verdict::Neutral => {
                    let successes = successes + u32::from(verdict == Verdict::Success);
                    inner.phase = Phase::HalfOpen { probes, successes };
                    // A probe slot is free again.
                    woken.append(&mut inner.waiters);
                }
            }
        }
        wake_all(woken);
    }

    fn enter(&self, inner: &mut Inner, phase: Phase, why: Why, woken: &mut Vec<Waker>) {
        inner.phase = phase;
        inner.generation += 1;
        inner.transitions += 1;
        inner.consecutive_failures = 0;
        inner.window.clear();
        woken.append(&mut inner.waiters);
        if let Some(link) = &self.sync {
            inner.report.successes = 0;
            inner.report.failures = 0;
            match why {
                Why::ConsecutiveFailures(_) | Why::FailureRate { .. } | Why::ProbeFailed => {
                    inner.report.event = Some(CircuitEvent::Opened);
                    link.wake.notify_one();
                }
                Why::ProbesSucceeded(_) => {
                    inner.report.event = Some(CircuitEvent::Closed);
                    link.wake.notify_one();
                }
                Why::CoolDownOver | Why::Shared => {}
            }
        }

        let state = phase.state();
        self.metrics.state.set(state.as_gauge());
        match state {
            CircuitState::Closed => self.metrics.to_closed.increment(1),
            CircuitState::HalfOpen => self.metrics.to_half_open.increment(1),
            CircuitState::Open => self.metrics.to_open.increment(1),
        }
        self.state_tx.send_replace(state);

        let breaker = self.config.name();
        let cool_down = self.config.cool_down();
        match why {
            Why::ConsecutiveFailures(n) => tracing::warn!(
                breaker,
                consecutive_failures = n,
                ?cool_down,
                "circuit breaker opened: consumption paused"
            ),
            Why::FailureRate { rate, calls } => tracing::warn!(
                breaker,
                failure_rate = rate,
                calls,
                ?cool_down,
                "circuit breaker opened: consumption paused"
            ),
            Why::ProbeFailed => tracing::warn!(
                breaker,
                ?cool_down,
                "circuit breaker re-opened: a probe message failed"
            ),
            Why::CoolDownOver => tracing::info!(
                breaker,
                max_probes = self.config.half_open_max_probes(),
                "circuit breaker half-open: letting probe messages through"
            ),
            Why::ProbesSucceeded(n) => tracing::info!(
                breaker,
                probe_successes = n,
                "circuit breaker closed: consumption resumed"
            ),
            Why::Shared => tracing::info!(
                breaker,
                state = state.as_str(),
                "circuit breaker follows the state shared by every replica"
            ),
        }
    }
}

/// Shared breakers: the sync task's side.
impl Shared {
    fn start_sync(self: &Arc<Self>, link: &SyncLink) {
        let Some(store) = self.config.store() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime here: try again on the next call
        };
        if link.started.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(sync_loop(
            Arc::downgrade(self),
            Arc::clone(&store.0),
            Arc::clone(&link.wake),
            self.config.sync_interval(),
        ));
    }

    /// What this replica saw since the last sync, and the generation it saw it in.
    pub(super) fn take_report(&self) -> (CircuitReport, u64) {
        let mut inner = self.lock();
        let mut report = std::mem::take(&mut inner.report);
        report.consecutive_failures = inner.consecutive_failures;
        (report, inner.generation)
    }

    /// A sync failed: what it carried is reported with the next one.
    pub(super) fn restore_report(&self, report: CircuitReport) {
        let mut inner = self.lock();
        inner.report.successes += report.successes;
        inner.report.failures += report.failures;
        if inner.report.event.is_none() {
            inner.report.event = report.event;
        }
    }

    /// Follows the shared state, unless this replica changed state since it sent its report
    /// (`generation`): that change goes out with the next sync.
    pub(super) fn adopt(&self, remote: SharedCircuitState, generation: u64) {
        let mut woken = Vec::new();
        {
            let mut inner = self.lock();
            if inner.generation != generation {
                return;
            }
            let now = Instant::now();
            match (inner.phase, remote) {
                (
                    Phase::Closed | Phase::HalfOpen { .. },
                    SharedCircuitState::Open { remaining },
                ) if !remaining.is_zero() => {
                    let phase = Phase::Open {
                        until: now + remaining,
                    };
                    self.enter(&mut inner, phase, Why::Shared, &mut woken);
                }
                (Phase::Open { .. }, SharedCircuitState::Open { remaining }) => {
                    // The shared deadline: a timer armed for the old one re-arms when it fires.
                    inner.phase = Phase::Open {
                        until: now + remaining,
                    };
                }
                (Phase::Open { .. } | Phase::HalfOpen { .. }, SharedCircuitState::Closed) => {
                    self.enter(&mut inner, Phase::Closed, Why::Shared, &mut woken);
                }
                (Phase::Closed, SharedCircuitState::HalfOpen) => {
                    let phase = Phase::HalfOpen {
                        probes: 0,
                        successes: 0,
                    };
                    self.enter(&mut inner, phase, Why::Shared, &mut woken);
                }
                (Phase::Open { .. }, SharedCircuitState::HalfOpen) => {
                    // Cool-down over by the shared clock: the next admission probes.
                    inner.phase = Phase::Open { until: now };
                    woken.append(&mut inner.waiters);
                }
                _ => {}
            }
        }
        wake_all(woken);
    }
}
