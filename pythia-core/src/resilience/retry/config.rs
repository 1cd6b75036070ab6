//! [`InProcessRetry`]: how many extra tries the retry layer makes and its backoff, and their on-
//! disk form.

use std::time::Duration;

use serde::Deserialize;

use crate::error::WorkerError;
use crate::retry_policy::{RetryPolicy, factor_in_range, jitter_in_range};

/// How the [`RetryLayer`](super::RetryLayer) retries in-process: how many extra tries, and the
/// backoff between them.
///
/// The delay before extra try `n` (1-based) is [`RetryPolicy`]'s schedule with this config's
/// numbers: `min(initial_delay · factor^(n-1), max_delay)`, reduced by a random fraction of up
/// to `jitter`. A [`WorkerError::retry_later`] delay is used as it is when it is at most
/// `max_delay`; a longer one is not slept in-process (see the [module docs](super)).
///
/// ```
/// use std::time::Duration;
/// use pythia_core::resilience::InProcessRetry;
///
/// let retry = InProcessRetry::default()
///     .with_max_retries(3)
///     .with_initial_delay(Duration::from_millis(20))
///     .with_max_delay(Duration::from_millis(50));
/// assert_eq!(retry.delay_with(1, 0.0), Duration::from_millis(20));
/// assert_eq!(retry.delay_with(3, 0.0), Duration::from_millis(50)); // capped
/// assert_eq!(retry.delay_with(1, 1.0), Duration::from_millis(10)); // full jitter draw: half
/// ```
///
/// Deserializes from a table such as (every field optional, durations in milliseconds):
///
/// ```toml
/// max_retries = 2
/// initial_delay_ms = 50
/// max_delay_ms = 1000
/// factor = 2.0
/// jitter = 0.5
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "InProcessRetryFile")]
pub struct InProcessRetry {
    max_retries: u32,
    initial_delay: Duration,
    max_delay: Duration,
    factor: f64,
    jitter: f64,
}

impl InProcessRetry {
    /// Default extra tries after the first: 2.
    pub const DEFAULT_MAX_RETRIES: u32 = 2;
    /// Most extra tries accepted: 10. In-process retries hold a concurrency slot; longer
    /// schedules belong to the broker-level [`RetryPolicy`].
    pub const MAX_RETRIES_LIMIT: u32 = 10;
    /// Default delay before the first extra try: 50 ms.
    pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(50);
    /// Default cap on any in-process delay: 1 s.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(1);
    /// Longest cap accepted: 30 s.
    pub const MAX_DELAY_LIMIT: Duration = Duration::from_secs(30);
    /// Default growth factor: 2.
    pub const DEFAULT_FACTOR: f64 = 2.0;
    /// Default jitter fraction: 0.5 (each delay lands between half and all of its nominal value).
    pub const DEFAULT_JITTER: f64 = 0.5;

    /// The defaults: 2 extra tries, from 50 ms, doubling, capped at 1 s, jitter 0.5.
    pub const fn new() -> Self {
        Self {
            max_retries: Self::DEFAULT_MAX_RETRIES,
            initial_delay: Self::DEFAULT_INITIAL_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
            factor: Self::DEFAULT_FACTOR,
            jitter: Self::DEFAULT_JITTER,
        }
    }

    /// Extra tries after the first (clamped to [`MAX_RETRIES_LIMIT`](Self::MAX_RETRIES_LIMIT);
    /// 0 passes every result straight through).
    #[must_use]
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n.min(Self::MAX_RETRIES_LIMIT);
        self
    }

    /// Delay before the first extra try (clamped to
    /// [`MAX_DELAY_LIMIT`](Self::MAX_DELAY_LIMIT); raises the cap if above it).
    #[must_use]
    pub fn with_initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d.min(Self::MAX_DELAY_LIMIT);
        self.max_delay = self.max_delay.max(self.initial_delay);
        self
    }

    /// Cap on any computed delay, and the longest [`WorkerError::retry_later`] delay slept
    /// in-process (clamped to the initial delay ..= [`MAX_DELAY_LIMIT`](Self::MAX_DELAY_LIMIT)).
    #[must_use]
    pub fn with_max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d.min(Self::MAX_DELAY_LIMIT).max(self.initial_delay);
        self
    }

    /// Growth factor per try (clamped to 1..=16, as [`RetryPolicy::with_factor`]).
    #[must_use]
    pub fn with_factor(mut self, f: f64) -> Self {
        self.factor = factor_in_range(f, Self::DEFAULT_FACTOR);
        self
    }

    /// Random reduction of each delay, as a fraction (clamped to 0..=1, as
    /// [`RetryPolicy::with_jitter`]).
    #[must_use]
    pub fn with_jitter(mut self, j: f64) -> Self {
        self.jitter = jitter_in_range(j);
        self
    }

    /// Extra tries after the first.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Delay before the first extra try.
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }

    /// Cap on any in-process delay.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// Growth factor per try.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// Jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay before extra try `retry` (1-based), with a random jitter draw.
    pub fn delay_for(&self, retry: u32) -> Duration {
        self.delay_with(retry, fastrand::f64())
    }

    /// The delay before extra try `retry` (1-based) with a given jitter draw in `0..=1`
    /// (0 = the full delay, 1 = the largest reduction), for tests and reproducible schedules.
    pub fn delay_with(&self, retry: u32, draw: f64) -> Duration {
        self.schedule().delay_with(retry, draw)
    }

    /// Whether to try again after `err` failed extra try `retries_done` (0 = the first call),
    /// and after how long. `None` hands `err` back to the runtime.
    pub(super) fn plan(&self, retries_done: u32, err: &WorkerError, draw: f64) -> Option<Duration> {
        // A rate-limited downstream: the queue backs off as a whole (the broker's throttle), not
        // this one slot.
        if !err.is_retryable() || retries_done >= self.max_retries || err.throttle().is_some() {
            return None;
        }
        match err.retry_after() {
            // Too long to hold a concurrency slot: the broker schedules it, surviving a crash.
            Some(d) if d > self.max_delay => None,
            Some(d) => Some(d),
            None => Some(self.delay_with(retries_done + 1, draw)),
        }
    }

    /// The backoff math is [`RetryPolicy`]'s; only the numbers differ.
    fn schedule(&self) -> RetryPolicy {
        RetryPolicy::default()
            .with_initial_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_jitter(self.jitter)
    }
}

impl Default for InProcessRetry {
    fn default() -> Self {
        Self::new()
    }
}

/// The on-disk form: milliseconds, every field optional, validated through the setters.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct InProcessRetryFile {
    max_retries: u32,
    initial_delay_ms: u64,
    max_delay_ms: u64,
    factor: f64,
    jitter: f64,
}

impl Default for InProcessRetryFile {
    fn default() -> Self {
        let d = InProcessRetry::new();
        Self {
            max_retries: d.max_retries,
            initial_delay_ms: d.initial_delay.as_millis() as u64,
            max_delay_ms: d.max_delay.as_millis() as u64,
            factor: d.factor,
            jitter: d.jitter,
        }
    }
}

impl From<InProcessRetryFile> for InProcessRetry {
    fn from(f: InProcessRetryFile) -> Self {
        Self::new()
            .with_max_retries(f.max_retries)
            .with_initial_delay(Duration::from_millis(f.initial_delay_ms))
            .with_max_delay(Duration::from_millis(f.max_delay_ms))
            .with_factor(f.factor)
            .with_jitter(f.jitter)
    }
}
