//! [`CircuitBreakerConfig`]: a breaker's thresholds, window and cool-down, and their on-disk form.

use std::time::Duration;

use serde::Deserialize;

use super::shared::{CircuitStateStore, StoreRef};

/// When a [`CircuitBreakerLayer`](super::CircuitBreakerLayer) opens, how long it stays open,
/// and how it closes again.
///
/// The breaker opens when **either** trigger fires (set one to 0 to disable it):
///
/// * `consecutive_failures` failures in a row, or
/// * a failure rate of at least `failure_rate` over the last `window_size` counted calls, once
///   at least `minimum_calls` of them have been seen (so that 1 failure out of 1 call does not
///   open a rate-based breaker).
///
/// After `cool_down` it turns half-open and admits at most `half_open_max_probes` messages at
/// once; `success_threshold` probe successes close it, one probe failure opens it again for
/// another `cool_down`.
///
/// ```
/// use std::time::Duration;
/// use pythia_core::resilience::CircuitBreakerConfig;
///
/// let cfg = CircuitBreakerConfig::default()
///     .with_name("payments-api")
///     .with_consecutive_failures(10)
///     .with_failure_rate(0.5)
///     .with_window_size(50)
///     .with_minimum_calls(20)
///     .with_cool_down(Duration::from_secs(15))
///     .with_half_open_max_probes(2)
///     .with_success_threshold(3);
/// assert_eq!(cfg.cool_down(), Duration::from_secs(15));
/// assert_eq!(CircuitBreakerConfig::default().with_window_size(0).window_size(), 1); // clamped
/// ```
///
/// Deserializes from a table such as (every field optional, durations in milliseconds):
///
/// ```toml
/// name = "payments-api"
/// consecutive_failures = 5
/// failure_rate = 0.5
/// window_size = 20
/// minimum_calls = 10
/// cool_down_ms = 30000
/// half_open_max_probes = 1
/// success_threshold = 2
/// sync_interval_ms = 500
/// ```
///
/// A breaker shared by every replica ([`with_shared_state`](Self::with_shared_state)) needs a
/// store, so it is set in code, not in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "CircuitBreakerFile")]
pub struct CircuitBreakerConfig {
    name: String,
    consecutive_failures: u32,
    failure_rate: f64,
    window_size: usize,
    minimum_calls: usize,
    cool_down: Duration,
    half_open_max_probes: u32,
    success_threshold: u32,
    store: Option<StoreRef>,
    sync_interval: Duration,
}

impl CircuitBreakerConfig {
    /// Default name, the `breaker` label of its metrics: `"default"`.
    pub const DEFAULT_NAME: &'static str = "default";
    /// Default failures in a row that open the breaker: 5.
    pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
    /// Default failure rate over the window that opens the breaker: 0.5.
    pub const DEFAULT_FAILURE_RATE: f64 = 0.5;
    /// Default number of most recent counted calls the failure rate is computed over: 20.
    pub const DEFAULT_WINDOW_SIZE: usize = 20;
    /// Largest window accepted: 10,000 calls.
    pub const MAX_WINDOW_SIZE: usize = 10_000;
    /// Default calls in the window before the failure rate can open the breaker: 10.
    pub const DEFAULT_MINIMUM_CALLS: usize = 10;
    /// Default time the breaker stays open before it lets probes through: 30 s.
    pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);
    /// Shortest cool-down accepted: 1 ms.
    pub const MIN_COOL_DOWN: Duration = Duration::from_millis(1);
    /// Default probe messages in flight at once while half-open: 1.
    pub const DEFAULT_HALF_OPEN_MAX_PROBES: u32 = 1;
    /// Default probe successes that close the breaker: 2.
    pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 2;
    /// Default time between two syncs of a shared breaker with its store: 500 ms.
    pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(500);
    /// Shortest sync interval accepted: 10 ms.
    pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(10);

    /// The defaults (see the constants).
    pub fn new() -> Self {
        Self {
            name: Self::DEFAULT_NAME.to_owned(),
            consecutive_failures: Self::DEFAULT_CONSECUTIVE_FAILURES,
            failure_rate: Self::DEFAULT_FAILURE_RATE,
            window_size: Self::DEFAULT_WINDOW_SIZE,
            minimum_calls: Self::DEFAULT_MINIMUM_CALLS,
            cool_down: Self::DEFAULT_COOL_DOWN,
            half_open_max_probes: Self::DEFAULT_HALF_OPEN_MAX_PROBES,
            success_threshold: Self::DEFAULT_SUCCESS_THRESHOLD,
            store: None,
            sync_interval: Self::DEFAULT_SYNC_INTERVAL,
        }
    }

    /// Shares this breaker's state with every replica through `store` (pythia-redis:
    /// `RedisCircuitStateStore`): when one replica opens it, all stop fetching; when one
    /// replica's probes close it, all resume. See
    /// [`circuit_breaker::shared`](super::shared) for the behaviour. The replicas must use
    /// the same [`name`](Self::with_name).
    ///
    /// The sync task starts on the breaker's first use, on the current Tokio runtime.
    #[must_use]
    pub fn with_shared_state(mut self, store: impl CircuitStateStore) -> Self {
        self.store = Some(StoreRef(std::sync::Arc::new(store)));
        self
    }

    /// Time between two syncs of a shared breaker with its store (at least
    /// [`MIN_SYNC_INTERVAL`](Self::MIN_SYNC_INTERVAL)); a local transition syncs at once.
    #[must_use]
    pub fn with_sync_interval(mut self, d: Duration) -> Self {
        self.sync_interval = d.max(Self::MIN_SYNC_INTERVAL);
        self
    }

    /// Whether the state is shared through a store.
    pub fn is_shared(&self) -> bool {
        self.store.is_some()
    }

    /// Time between two syncs of a shared breaker.
    pub fn sync_interval(&self) -> Duration {
        self.sync_interval
    }

    pub(super) fn store(&self) -> Option<&StoreRef> {
        self.store.as_ref()
    }

    /// The breaker's name: the `breaker` label of its metrics and a field of its log lines
    /// (an empty name becomes [`DEFAULT_NAME`](Self::DEFAULT_NAME)).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.name = if name.is_empty() {
            Self::DEFAULT_NAME.to_owned()
        } else {
            name
        };
        self
    }

    /// Failures in a row that open the breaker (0 disables this trigger).
    #[must_use]
    pub fn with_consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Failure rate over the window that opens the breaker (clamped to 0..=1; 0 or NaN disables
    /// this trigger).
    #[must_use]
    pub fn with_failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self
    }

    /// Number of most recent counted calls the failure rate is computed over (clamped to
    /// 1..=[`MAX_WINDOW_SIZE`](Self::MAX_WINDOW_SIZE)).
    #[must_use]
    pub fn with_window_size(mut self, n: usize) -> Self {
        self.window_size = n.clamp(1, Self::MAX_WINDOW_SIZE);
        self
    }

    /// Counted calls in the window before the failure rate can open the breaker (at least 1;
    /// a value above the window size acts as the window size).
    #[must_use]
    pub fn with_minimum_calls(mut self, n: usize) -> Self {
        self.minimum_calls = n.max(1);
        self
    }

    /// How long the breaker stays open before it lets probes through (at least
    /// [`MIN_COOL_DOWN`](Self::MIN_COOL_DOWN)).
    #[must_use]
    pub fn with_cool_down(mut self, d: Duration) -> Self {
        self.cool_down = d.max(Self::MIN_COOL_DOWN);
        self
    }

    /// Probe messages in flight at once while half-open (at least 1).
    #[must_use]
    pub fn with_half_open_max_probes(mut self, n: u32) -> Self {
        self.half_open_max_probes = n.max(1);
        self
    }

    /// Probe successes that close the breaker (at least 1).
    #[must_use]
    pub fn with_success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n.max(1);
        self
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Failures in a row that open the breaker (0 = disabled).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Failure rate that opens the breaker (0 = disabled).
    pub fn failure_rate(&self) -> f64 {
        self.failure_rate
    }

    /// Calls the failure rate is computed over.
    pub fn window_size(&self) -> usize {
        self.window_size
    }

    /// Counted calls needed before the failure rate can open the breaker, as configured.
    pub fn minimum_calls(&self) -> usize {
        self.minimum_calls
    }

    /// How long the breaker stays open.
    pub fn cool_down(&self) -> Duration {
        self.cool_down
    }

    /// Probe messages in flight at once while half-open.
    pub fn half_open_max_probes(&self) -> u32 {
        self.half_open_max_probes
    }

    /// Probe successes that close the breaker.
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold
    }

    /// The minimum volume as applied: never more than the window can hold.
    pub fn effective_minimum_calls(&self) -> usize {
        self.minimum_calls.min(self.window_size)
    }
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The on-disk form: milliseconds, every field optional, validated through the setters.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CircuitBreakerFile {
    name: String,
    consecutive_failures: u32,
    failure_rate: f64,
    window_size: usize,
    minimum_calls: usize,
    cool_down_ms: u64,
    half_open_max_probes: u32,
    success_threshold: u32,
    sync_interval_ms: u64,
}

impl Default for CircuitBreakerFile {
    fn default() -> Self {
        let d = CircuitBreakerConfig::new();
        Self {
            name: d.name,
            consecutive_failures: d.consecutive_failures,
            failure_rate: d.failure_rate,
            window_size: d.window_size,
            minimum_calls: d.minimum_calls,
            cool_down_ms: d.cool_down.as_millis() as u64,
            half_open_max_probes: d.half_open_max_probes,
            success_threshold: d.success_threshold,
            sync_interval_ms: d.sync_interval.as_millis() as u64,
        }
    }
}

impl From<CircuitBreakerFile> for CircuitBreakerConfig {
    fn from(f: CircuitBreakerFile) -> Self {
        Self::new()
            .with_name(f.name)
            .with_consecutive_failures(f.consecutive_failures)
            .with_failure_rate(f.failure_rate)
            .with_window_size(f.window_size)
            .with_minimum_calls(f.minimum_calls)
            .with_cool_down(Duration::from_millis(f.cool_down_ms))
            .with_half_open_max_probes(f.half_open_max_probes)
            .with_success_threshold(f.success_threshold)
            .with_sync_interval(Duration::from_millis(f.sync_interval_ms))
    }
}
