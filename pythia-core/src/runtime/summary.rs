//! What one run did, returned by [`WorkerRuntime::run`](crate::WorkerRuntime::run).

use std::fmt;
use std::time::Duration;

/// Counts of one run. Every fetched message ends in exactly one of `acked`, `retried`,
/// `dead_lettered`, `released` or `unsettled`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Messages fetched from the broker.
    pub fetched: u64,
    /// Processed successfully and acknowledged (the broker confirmed the settle).
    pub acked: u64,
    /// Failed and scheduled for another attempt (the broker confirmed the settle).
    pub retried: u64,
    /// Sent to the dead-letter queue, rejected or out of attempts (the broker confirmed the
    /// settle).
    pub dead_lettered: u64,
    /// Handed back unprocessed on shutdown.
    pub released: u64,
    /// Finished, but the settle did not reach the broker: still failing (or on the wire) at the
    /// shutdown deadline, or refused for a configuration error. An at-least-once broker delivers
    /// them again.
    pub unsettled: u64,
    /// Handler panics caught (each also counted in its outcome).
    pub panics: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Time from the first message fetched to the last outcome settled: the busy part of the
    /// run, without waiting on an empty queue before and after.
    pub active: Duration,
}

impl RunSummary {
    /// Messages processed (acked, retried or dead-lettered).
    pub fn processed(&self) -> u64 {
        self.acked + self.retried + self.dead_lettered
    }

    /// Messages processed per second of the run's wall time.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.processed() as f64 / secs
        } else {
            0.0
        }
    }

    /// Messages processed per second of [`active`](Self::active) time: the throughput while
    /// there was work.
    pub fn active_rate(&self) -> f64 {
        let secs = self.active.as_secs_f64();
        if secs > 0.0 {
            self.processed() as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "processed {} (acked {}, retried {}, dead-lettered {}), released {}, unsettled {}, in {:.3}s ({:.3}s busy, {:.0} msg/s)",
            self.processed(),
            self.acked,
            self.retried,
            self.dead_lettered,
            self.released,
            self.unsettled,
            self.elapsed.as_secs_f64(),
            self.active.as_secs_f64(),
            self.active_rate()
        )
    }
}
