//! [`RedisCircuitStateStore`]: the state of a circuit breaker shared by every replica, in Redis.

use std::time::Duration;

use pythia_core::resilience::{
    CircuitBreakerConfig, CircuitEvent, CircuitReport, CircuitStateStore, SharedCircuitState,
    StoreFuture,
};

use crate::call::Call;
use crate::connection::{RedisConnection, SharedConnection};
use crate::keys::QueueKeys;
use crate::scripts::BREAKER_SYNC;

/// Keeps a [circuit breaker](pythia_core::resilience::circuit_breaker)'s state in Redis, so that
/// every replica of a worker pauses when one sees the downstream fail, and resumes when one
/// replica's probes succeed.
///
/// # How
///
/// The state of the breaker named `name` is the hash `<prefix>:{<name>}:breaker` (`state`,
/// `until` in milliseconds by the Redis server's clock, and the fleet's window: `calls`,
/// `failures`, `consecutive`). Each replica syncs with it every
/// [`sync_interval`](CircuitBreakerConfig::sync_interval) and at once after a transition of
/// its own, in one Lua script (`lua/breaker_sync.lua`) that applies what the replica saw and
/// answers the state — one command per replica per interval, none per message. Deadlines
/// come from `TIME` on the server, so replicas with skewed clocks still agree. The hash expires
/// after [`DEFAULT_TTL`](Self::DEFAULT_TTL) without a sync.
///
/// If Redis is unreachable a sync fails and changes nothing: each replica's breaker decides
/// alone until Redis answers again.
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_core::resilience::{CircuitBreakerConfig, ResilienceConfig};
/// use pythia_redis::{RedisCircuitStateStore, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let breaker = CircuitBreakerConfig::default()
///     .with_name("payments-api") // the same name on every replica
///     .with_consecutive_failures(5)
///     .with_cool_down(Duration::from_secs(30))
///     .with_shared_state(RedisCircuitStateStore::new(&conn));
/// let resilience = ResilienceConfig::default().with_circuit_breaker(breaker);
/// # let _ = resilience; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisCircuitStateStore {
    conn: RedisConnection,
    manager: SharedConnection,
    ttl: Duration,
}

impl RedisCircuitStateStore {
    /// How long a breaker's hash outlives its last sync: 1 hour.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// Breakers' states under the connection's key prefix.
    pub fn new(conn: &RedisConnection) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            ttl: Self::DEFAULT_TTL,
        }
    }

    /// How long a breaker's hash outlives its last sync (at least its cool-down is kept anyway).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The Redis key of the breaker named `name`.
    pub fn key(&self, name: &str) -> String {
        QueueKeys::new(self.conn.config().key_prefix(), name).breaker()
    }
}

impl CircuitStateStore for RedisCircuitStateStore {
    fn sync<'a>(
        &'a self,
        config: &'a CircuitBreakerConfig,
        report: &'a CircuitReport,
    ) -> StoreFuture<'a> {
        Box::pin(async move {
            let mut m = self.manager.clone();
            let reply: Vec<i64> = sync_call(&self.key(config.name()), config, report, self.ttl)
                .query(&mut m)
                .await
                .map_err(|e| self.conn.error("sync circuit breaker", e))?;
            Ok(match reply.as_slice() {
                [2, remaining, ..] => SharedCircuitState::Open {
                    remaining: Duration::from_millis((*remaining).max(0) as u64),
                },
                [1, ..] => SharedCircuitState::HalfOpen,
                _ => SharedCircuitState::Closed,
            })
        })
    }
}

/// `breaker_sync.lua` on the breaker's hash at `key`: `report` merged, the state decided with
/// `config`'s thresholds, the hash kept for `ttl` (at least twice the cool-down). Replies
/// `[state, open ms left]`: 2 open, 1 half-open, else closed.
fn sync_call(
    key: &str,
    config: &CircuitBreakerConfig,
    report: &CircuitReport,
    ttl: Duration,
) -> Call {
    let event = match report.event {
        Some(CircuitEvent::Opened) => "opened",
        Some(CircuitEvent::Closed) => "closed",
        _ => "",
    };
    let cool_down = config.cool_down().as_millis() as u64;
    let ttl = (ttl.as_millis() as u64).max(cool_down * 2);
    let mut call = Call::script(&BREAKER_SYNC, &[key]);
    call.arg(report.successes)
        .arg(report.failures)
        .arg(report.consecutive_failures)
        .arg(event)
        .arg(cool_down)
        .arg(config.consecutive_failures())
        .arg(config.failure_rate())
        .arg(config.window_size())
        .arg(config.effective_minimum_calls())
        .arg(ttl);
    call
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_sends_the_report_and_the_thresholds() {
        let key = QueueKeys::new("pythia", "payments").breaker();
        let config = CircuitBreakerConfig::new()
            .with_name("payments")
            .with_consecutive_failures(3)
            .with_failure_rate(0.25)
            .with_window_size(8)
            .with_minimum_calls(20)
            .with_cool_down(Duration::from_secs(5));
        let mut report = CircuitReport::default();
        report.successes = 4;
        report.failures = 2;
        report.consecutive_failures = 1;
        report.event = Some(CircuitEvent::Opened);
        let args = sync_call(&key, &config, &report, Duration::from_secs(60)).text();
        assert_eq!(args[..2], ["EVALSHA", BREAKER_SYNC.get_hash()]);
        assert_eq!(
            args[2..],
            [
                "1", &key, "4", "2", "1", "opened", "5000", "3", "0.25", "8", "8", "60000"
            ]
        );
        // The hash outlives at least two cool-downs, and a report without a transition says so.
        let args = sync_call(
            &key,
            &config,
            &CircuitReport::default(),
            Duration::from_secs(1),
        )
        .text();
        assert_eq!(args[6..9], ["0", "", "5000"]);
        assert_eq!(args[13], "10000");
    }
}
