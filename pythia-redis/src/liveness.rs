//! Consumer liveness, shared by the reliable list and the stream broker: how often a consumer
//! refreshes its heartbeat key and how long silence means it is dead.

use std::time::Duration;

use redis::Pipeline;

/// Heartbeat lifetime and maintenance interval, kept consistent: the interval stays within
/// 50 ms to 10 s and the lifetime at least three intervals, so one late refresh never makes a
/// live consumer look dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Liveness {
    heartbeat_ttl: Duration,
    interval: Duration,
}

impl Liveness {
    /// Default heartbeat lifetime: 10 s.
    pub(crate) const DEFAULT_HEARTBEAT_TTL: Duration = Duration::from_secs(10);
    /// Default maintenance interval: 1 s.
    pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

    pub(crate) fn with_heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.heartbeat_ttl = ttl.max(self.interval * 3);
        self
    }

    pub(crate) fn with_interval(mut self, d: Duration) -> Self {
        self.interval = d.clamp(Duration::from_millis(50), Duration::from_secs(10));
        self.heartbeat_ttl = self.heartbeat_ttl.max(self.interval * 3);
        self
    }

    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// The heartbeat lifetime in milliseconds, as `SET … PX` takes it.
    pub(crate) fn heartbeat_ttl_ms(&self) -> u64 {
        self.heartbeat_ttl.as_millis() as u64
    }

    /// The heartbeat: `SET <key> 1 PX <ttl>` and the consumer's entry in its registry set.
    pub(crate) fn heartbeat(
        &self,
        heartbeat_key: &str,
        registry: &str,
        consumer: &str,
    ) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(heartbeat_key)
            .arg(1)
            .arg("PX")
            .arg(self.heartbeat_ttl_ms())
            .ignore()
            .sadd(registry, consumer)
            .ignore();
        pipe
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            heartbeat_ttl: Self::DEFAULT_HEARTBEAT_TTL,
            interval: Self::DEFAULT_INTERVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifetime_stays_at_least_three_intervals() {
        let l = Liveness::default().with_interval(Duration::from_secs(5));
        assert_eq!(l.heartbeat_ttl, Duration::from_secs(15));
        let l = l.with_heartbeat_ttl(Duration::from_secs(1));
        assert_eq!(l.heartbeat_ttl, Duration::from_secs(15));
        let l = Liveness::default().with_interval(Duration::ZERO);
        assert_eq!(l.interval(), Duration::from_millis(50));
        assert_eq!(l.heartbeat_ttl, Duration::from_secs(10));
    }
}
