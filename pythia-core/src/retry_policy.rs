//! How many times a failed message is delivered again, and how long to wait between attempts.

use std::time::Duration;

use crate::broker::Outcome;
use crate::error::WorkerError;
use crate::message::Message;

/// Redelivery policy: the runtime turns a worker's failure into [`Outcome::Retry`] (scheduled
/// by the broker, so it survives a crash) until `max_attempts`, then [`Outcome::DeadLetter`].
///
/// The delay before attempt `n + 1` is `min(initial_delay · factor^(n-1), max_delay)`, reduced
/// by a random fraction of up to `jitter` (0 = none, 1 = anywhere down to zero) so that many
/// failing messages do not come back at the same instant. A [`WorkerError::retry_later`] delay
/// is used as it is.
///
/// ```
/// use std::time::Duration;
/// use pythia_core::RetryPolicy;
///
/// let p = RetryPolicy::default()
///     .with_max_attempts(5)
///     .with_initial_delay(Duration::from_millis(200))
///     .with_jitter(0.0);
/// assert_eq!(p.delay_for(1), Duration::from_millis(200));
/// assert_eq!(p.delay_for(3), Duration::from_millis(800));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
    factor: f64,
    jitter: f64,
}

impl RetryPolicy {
    /// Default attempts in all (the first delivery counts): 3.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// Default delay before the second attempt: 100 ms.
    pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(100);
    /// Default cap on the delay: 30 s.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
    /// Default growth factor: 2.
    pub const DEFAULT_FACTOR: f64 = 2.0;
    /// Default jitter fraction: 0.2.
    pub const DEFAULT_JITTER: f64 = 0.2;

    /// No retries at all: the first failure dead-letters the message.
    pub fn no_retries() -> Self {
        Self::default().with_max_attempts(1)
    }

    /// Attempts in all, counting the first delivery (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Delay before the second attempt.
    #[must_use]
    pub fn with_initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self.max_delay = self.max_delay.max(d);
        self
    }

    /// Cap on any computed delay (raised to the initial delay if below it).
    #[must_use]
    pub fn with_max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d.max(self.initial_delay);
        self
    }

    /// Growth factor per attempt (clamped to 1..=16).
    #[must_use]
    pub fn with_factor(mut self, f: f64) -> Self {
        self.factor = factor_in_range(f, Self::DEFAULT_FACTOR);
        self
    }

    /// Random reduction of each delay, as a fraction (clamped to 0..=1).
    #[must_use]
    pub fn with_jitter(mut self, j: f64) -> Self {
        self.jitter = jitter_in_range(j);
        self
    }

    /// Attempts in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before the attempt after `attempt` failed, jitter included.
    pub fn delay_for(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, fastrand::f64())
    }

    /// The delay with a given random draw in `0..1` (for tests and reproducible schedules).
    pub fn delay_with(&self, attempt: u32, draw: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(64) as i32;
        let base = self.initial_delay.as_secs_f64() * self.factor.powi(exp);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter * draw.clamp(0.0, 1.0));
        Duration::from_secs_f64(jittered.max(0.0))
    }

    /// The outcome of one processed message.
    pub fn outcome(&self, msg: &Message, result: &Result<(), WorkerError>) -> Outcome {
        match result {
            Ok(()) => Outcome::Ack,
            Err(e) if !e.is_retryable() => Outcome::DeadLetter {
                reason: format!("rejected: {e}"),
            },
            Err(e) if msg.attempt() >= self.max_attempts => Outcome::DeadLetter {
                reason: format!("failed after {} attempts: {e}", msg.attempt()),
            },
            Err(e) => Outcome::Retry {
                delay: e
                    .retry_after()
                    .unwrap_or_else(|| self.delay_for(msg.attempt())),
            },
        }
    }
}

/// A backoff growth factor clamped to 1..=16; `default` when it is not a number (NaN, ±∞).
/// [`RetryPolicy`] and the in-process retry's config validate theirs alike.
pub(crate) fn factor_in_range(f: f64, default: f64) -> f64 {
    if f.is_finite() {
        f.clamp(1.0, 16.0)
    } else {
        default
    }
}

/// A jitter fraction clamped to 0..=1; none when it is not a number.
pub(crate) fn jitter_in_range(j: f64) -> f64 {
    if j.is_finite() {
        j.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            initial_delay: Self::DEFAULT_INITIAL_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
            factor: Self::DEFAULT_FACTOR,
            jitter: Self::DEFAULT_JITTER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_grows_and_caps() {
        let p = RetryPolicy::default()
            .with_jitter(0.0)
            .with_max_delay(Duration::from_secs(1));
        let got: Vec<_> = (1..=6).map(|n| p.delay_for(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = RetryPolicy::default().with_jitter(0.5);
        for attempt in 1..8 {
            let full = p.delay_with(attempt, 0.0);
            let least = p.delay_with(attempt, 1.0);
            assert_eq!(least.as_secs_f64(), full.as_secs_f64() * 0.5);
            for _ in 0..100 {
                let d = p.delay_for(attempt);
                assert!(
                    d <= full && d >= least,
                    "{d:?} outside {least:?}..={full:?}"
                );
            }
        }
    }

    #[test]
    fn outcomes_follow_intent_and_attempts() {
        let p = RetryPolicy::default().with_max_attempts(2).with_jitter(0.0);
        let first = Message::new("x");
        let last = first.clone().with_attempt(2);
        assert_eq!(p.outcome(&first, &Ok(())), Outcome::Ack);
        assert_eq!(
            p.outcome(&first, &Err(WorkerError::retry("x"))),
            Outcome::Retry {
                delay: Duration::from_millis(100)
            }
        );
        assert_eq!(
            p.outcome(
                &first,
                &Err(WorkerError::retry_later(Duration::from_secs(7), "x"))
            ),
            Outcome::Retry {
                delay: Duration::from_secs(7)
            }
        );
        assert_eq!(
            p.outcome(
                &first,
                &Err(WorkerError::rate_limited(Duration::from_secs(3), "429"))
            ),
            Outcome::Retry {
                delay: Duration::from_secs(3)
            }
        );
        assert!(matches!(
            p.outcome(&first, &Err(WorkerError::reject("bad"))),
            Outcome::DeadLetter { reason } if reason == "rejected: bad"
        ));
        assert!(matches!(
            p.outcome(&last, &Err(WorkerError::retry("boom"))),
            Outcome::DeadLetter { reason } if reason == "failed after 2 attempts: boom"
        ));
    }
}
