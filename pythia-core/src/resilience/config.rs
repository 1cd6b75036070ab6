//! [`ResilienceConfig`]: the timeout, retry and circuit breaker settings as one (file-loadable)
//! config.

use std::time::Duration;

use serde::Deserialize;

use super::circuit_breaker::CircuitBreakerConfig;
use super::retry::InProcessRetry;
use super::stack::ResilienceLayer;

/// The resilience stack in one value, with defaults for a new user.
///
/// | part | default |
/// |---|---|
/// | per-try timeout | 30 s ([`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)) |
/// | in-process retry | off: the runtime's [`RetryPolicy`](crate::RetryPolicy) retries through the broker |
/// | circuit breaker | off until configured (what counts as sick depends on the downstream) |
///
/// [`build`](Self::build) turns it into a [`ResilienceLayer`];
/// [`WorkerRuntime::with_resilience`](crate::WorkerRuntime::with_resilience) takes either. The
/// layers are applied in the order of the [module docs](super#order).
///
/// ```
/// use std::time::Duration;
/// use pythia_core::resilience::{CircuitBreakerConfig, InProcessRetry, ResilienceConfig};
///
/// let cfg = ResilienceConfig::default()
///     .with_timeout(Duration::from_secs(5))
///     .with_in_process_retry(InProcessRetry::default().with_max_retries(1))
///     .with_circuit_breaker(CircuitBreakerConfig::default().with_consecutive_failures(10));
/// assert_eq!(cfg.timeout(), Some(Duration::from_secs(5)));
/// assert_eq!(ResilienceConfig::default().timeout(), Some(Duration::from_secs(30)));
/// assert!(ResilienceConfig::default().circuit_breaker().is_none());
/// ```
///
/// Deserializes from a table such as (every field optional; `timeout_ms = 0` disables the
/// timeout; a missing `in_process_retry` or `circuit_breaker` table leaves that layer off; see
/// [`InProcessRetry`] and [`CircuitBreakerConfig`] for their fields):
///
/// ```toml
/// timeout_ms = 30000
///
/// [in_process_retry]
/// max_retries = 2
///
/// [circuit_breaker]
/// name = "payments-api"
/// consecutive_failures = 5
/// cool_down_ms = 30000
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "ResilienceFile")]
pub struct ResilienceConfig {
    timeout: Option<Duration>,
    in_process_retry: Option<InProcessRetry>,
    circuit_breaker: Option<CircuitBreakerConfig>,
}

impl ResilienceConfig {
    /// Default deadline of each try: 30 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Shortest timeout accepted: 1 ms.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

    /// The defaults: a 30 s timeout, no in-process retry, no circuit breaker.
    pub const fn new() -> Self {
        Self {
            timeout: Some(Self::DEFAULT_TIMEOUT),
            in_process_retry: None,
            circuit_breaker: None,
        }
    }

    /// Deadline of each try (at least [`MIN_TIMEOUT`](Self::MIN_TIMEOUT)).
    #[must_use]
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit.max(Self::MIN_TIMEOUT));
        self
    }

    /// No timeout: a handler may run for as long as it likes.
    #[must_use]
    pub fn without_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Retries transient errors in-process before the broker-level retry.
    #[must_use]
    pub fn with_in_process_retry(mut self, retry: InProcessRetry) -> Self {
        self.in_process_retry = Some(retry);
        self
    }

    /// No in-process retry (the default).
    #[must_use]
    pub fn without_in_process_retry(mut self) -> Self {
        self.in_process_retry = None;
        self
    }

    /// Adds a circuit breaker.
    #[must_use]
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreakerConfig) -> Self {
        self.circuit_breaker = Some(breaker);
        self
    }

    /// No circuit breaker (the default).
    #[must_use]
    pub fn without_circuit_breaker(mut self) -> Self {
        self.circuit_breaker = None;
        self
    }

    /// The deadline of each try, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The in-process retry settings, if enabled.
    pub fn in_process_retry(&self) -> Option<&InProcessRetry> {
        self.in_process_retry.as_ref()
    }

    /// The circuit breaker settings, if enabled.
    pub fn circuit_breaker(&self) -> Option<&CircuitBreakerConfig> {
        self.circuit_breaker.as_ref()
    }

    /// Builds the layers (creating the circuit breaker, if any).
    pub fn build(self) -> ResilienceLayer {
        ResilienceLayer::new(self)
    }
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl From<ResilienceConfig> for ResilienceLayer {
    fn from(cfg: ResilienceConfig) -> Self {
        cfg.build()
    }
}

/// The on-disk form: milliseconds, every field optional, validated through the setters.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ResilienceFile {
    timeout_ms: u64,
    in_process_retry: Option<InProcessRetry>,
    circuit_breaker: Option<CircuitBreakerConfig>,
}

impl Default for ResilienceFile {
    fn default() -> Self {
        Self {
            timeout_ms: ResilienceConfig::DEFAULT_TIMEOUT.as_millis() as u64,
            in_process_retry: None,
            circuit_breaker: None,
        }
    }
}

impl From<ResilienceFile> for ResilienceConfig {
    fn from(f: ResilienceFile) -> Self {
        let cfg = Self {
            timeout: None,
            in_process_retry: f.in_process_retry,
            circuit_breaker: f.circuit_breaker,
        };
        match f.timeout_ms {
            0 => cfg,
            ms => cfg.with_timeout(Duration::from_millis(ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_suit_a_new_user() {
        let cfg = ResilienceConfig::default();
        assert_eq!(cfg.timeout(), Some(Duration::from_secs(30)));
        assert!(cfg.in_process_retry().is_none());
        assert!(cfg.circuit_breaker().is_none());
        let layer = cfg.build();
        assert!(layer.circuit_breaker().is_none());
        assert_eq!(
            ResilienceConfig::new()
                .with_timeout(Duration::ZERO)
                .timeout(),
            Some(ResilienceConfig::MIN_TIMEOUT)
        );
    }

    #[test]
    fn deserializes_with_defaults_for_missing_parts() {
        let empty: ResilienceConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, ResilienceConfig::default());

        let cfg: ResilienceConfig = serde_json::from_str(
            r#"{
                "timeout_ms": 1500,
                "in_process_retry": { "max_retries": 1 },
                "circuit_breaker": { "name": "api", "cool_down_ms": 2000, "window_size": 0 }
            }"#,
        )
        .unwrap();
        assert_eq!(
            cfg,
            ResilienceConfig::default()
                .with_timeout(Duration::from_millis(1500))
                .with_in_process_retry(InProcessRetry::default().with_max_retries(1))
                .with_circuit_breaker(
                    CircuitBreakerConfig::default()
                        .with_name("api")
                        .with_cool_down(Duration::from_secs(2))
                        .with_window_size(1)
                )
        );

        let off: ResilienceConfig = serde_json::from_str(r#"{"timeout_ms": 0}"#).unwrap();
        assert_eq!(off.timeout(), None);
        assert!(serde_json::from_str::<ResilienceConfig>(r#"{"timeout": 5}"#).is_err());
    }
}
