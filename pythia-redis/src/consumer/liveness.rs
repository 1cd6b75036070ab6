//! Consumer liveness, shared by the reliable list and the stream broker: how often a consumer
//! refreshes its heartbeat key, how long silence means it is dead, and when a consumer may judge
//! the others ([`ReapGate`]).

use std::sync::Mutex;
use std::time::Duration;

use pythia_core::BrokerError;
use redis::Pipeline;
use tokio::time::Instant;

use crate::call::Call;
use crate::connection::{RedisConnection, SharedConnection};
use crate::keys::QueueKeys;

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

    /// Sends the heartbeat ([`heartbeat`](Self::heartbeat)) and tells `gate` how it went.
    pub(crate) async fn beat(
        &self,
        gate: &ReapGate,
        conn: &RedisConnection,
        manager: &mut SharedConnection,
        heartbeat_key: &str,
        registry: &str,
        consumer: &str,
    ) -> Result<(), BrokerError> {
        let started = std::time::Instant::now();
        let res = self
            .heartbeat(heartbeat_key, registry, consumer)
            .query_async::<()>(manager)
            .await;
        conn.client_metrics()
            .observe(crate::client_metrics::Op::Heartbeat, started);
        match res {
            Ok(()) => {
                gate.beat_ok(self);
                Ok(())
            }
            Err(e) => {
                gate.beat_failed();
                Err(conn.error("heartbeat", e))
            }
        }
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

/// Of the registered consumers `members`, the others than `me`, each with whether its heartbeat
/// key still exists (one pipelined `EXISTS` per consumer): the dead-consumer scan every
/// consumer-group broker starts from. Whether this consumer may act on a missing heartbeat is
/// [`ReapGate`]'s to say.
pub(crate) async fn peers_alive<'a>(
    conn: &RedisConnection,
    manager: &mut SharedConnection,
    keys: &QueueKeys,
    members: &'a [String],
    me: &str,
) -> Result<Vec<(&'a str, bool)>, BrokerError> {
    let others: Vec<&str> = members
        .iter()
        .map(String::as_str)
        .filter(|c| *c != me)
        .collect();
    if others.is_empty() {
        return Ok(Vec::new());
    }
    let alive: Vec<bool> = heartbeats_call(keys, &others)
        .query(manager)
        .await
        .map_err(|e| conn.error("heartbeat check", e))?;
    Ok(others.into_iter().zip(alive).collect())
}

/// One `EXISTS` of each of `consumers`' heartbeat keys, pipelined: replies whether each lives.
fn heartbeats_call(keys: &QueueKeys, consumers: &[&str]) -> Call {
    let mut pipe = redis::pipe();
    for c in consumers {
        pipe.exists(keys.heartbeat(c));
    }
    Call::pipeline(pipe)
}

/// Settlements (acks, retries, dead letters) of deliveries the consumer no longer owned: another
/// consumer took it for dead (a stopped process, a long stall) and reclaimed them meanwhile, so
/// they run, or ran, a second time. Also counts a settle repeated after its reply was lost.
pub const SETTLE_NOT_OWNED_TOTAL: &str = "pythia_settle_not_owned_total";

/// Counts and logs settlements of deliveries this consumer no longer owned
/// ([`SETTLE_NOT_OWNED_TOTAL`]).
#[derive(Debug)]
pub(crate) struct NotOwned {
    counter: metrics::Counter,
}

impl NotOwned {
    pub(crate) fn new(queue: &str, broker: &'static str) -> Self {
        Self {
            counter: metrics::counter!(SETTLE_NOT_OWNED_TOTAL, "queue" => queue.to_owned(), "broker" => broker),
        }
    }

    /// Of `sent` settlements, Redis applied `settled`: the others changed nothing, their
    /// deliveries were no longer this consumer's (counted and logged).
    pub(crate) fn settled(&self, sent: usize, settled: u64, consumer: &str) {
        let n = (sent as u64).saturating_sub(settled);
        if n == 0 {
            return;
        }
        self.counter.increment(n);
        tracing::warn!(
            count = n,
            consumer,
            "settled deliveries this consumer no longer owned (reclaimed by another consumer while \
             it was stopped or cut off): they run again there"
        );
    }
}

/// Whether this consumer may take another consumer's silence for death.
///
/// A missing heartbeat key proves a consumer dead only if it could have refreshed it: after a
/// Redis outage (a restart, a failover, a network cut, a paused server) longer than the heartbeat
/// lifetime, every key has expired while every consumer was still working, and the first one
/// back would reap the others' running jobs. So a consumer judges others only once it has itself
/// heartbeated without a break for a whole heartbeat lifetime: then every live peer has had that
/// same lifetime to heartbeat again. A failed heartbeat, or a gap between two successful ones
/// longer than half the lifetime (a stalled connection, a stopped process), starts that wait
/// again; so does a new consumer's first heartbeat.
///
/// A consumer that starts or reconnects thus reclaims a dead peer's work at most one heartbeat
/// lifetime later than it could; one that has been running all along reclaims as soon as the
/// peer's heartbeat expires.
#[derive(Debug, Default)]
pub(crate) struct ReapGate {
    run: Mutex<Option<Run>>,
}

/// The current unbroken run of heartbeats.
#[derive(Debug, Clone, Copy)]
struct Run {
    since: Instant,
    last: Instant,
}

impl ReapGate {
    /// A heartbeat reached Redis.
    pub(crate) fn beat_ok(&self, liveness: &Liveness) {
        let now = Instant::now();
        let mut run = self.run.lock().expect("reap gate lock");
        *run = Some(match *run {
            Some(r) if now.duration_since(r.last) <= liveness.heartbeat_ttl / 2 => Run {
                since: r.since,
                last: now,
            },
            broken => {
                if broken.is_some() {
                    tracing::info!(
                        wait = ?liveness.heartbeat_ttl,
                        "heartbeats were interrupted: not judging other consumers dead for one heartbeat lifetime"
                    );
                }
                Run {
                    since: now,
                    last: now,
                }
            }
        });
    }

    /// A heartbeat failed: whatever kept this consumer from Redis may have kept the others too.
    pub(crate) fn beat_failed(&self) {
        *self.run.lock().expect("reap gate lock") = None;
    }

    /// Whether other consumers' missing heartbeats may be taken for death now.
    pub(crate) fn is_open(&self, liveness: &Liveness) -> bool {
        let now = Instant::now();
        self.run.lock().expect("reap gate lock").is_some_and(|r| {
            now.duration_since(r.since) >= liveness.heartbeat_ttl
                && now.duration_since(r.last) <= liveness.heartbeat_ttl / 2
        })
    }
}

/// One consumer's membership of its queue (or consumer group), shared by the reliable list and
/// the stream broker: its name, its heartbeat key and the registry it is listed in, its
/// [`Liveness`] settings, and the [`ReapGate`] that says when it may judge the others.
#[derive(Debug)]
pub(crate) struct Membership {
    consumer: String,
    heartbeat_key: String,
    registry: String,
    liveness: Liveness,
    gate: ReapGate,
    /// Whether this consumer is registered (its broker sets it after its first heartbeat and
    /// clears it when it leaves).
    pub(crate) registered: std::sync::atomic::AtomicBool,
}

impl Membership {
    /// Consumer `consumer`, beating on `heartbeat_key` and listed in the set `registry`, with the
    /// default [`Liveness`].
    pub(crate) fn new(consumer: &str, heartbeat_key: String, registry: String) -> Self {
        Self {
            consumer: consumer.to_owned(),
            heartbeat_key,
            registry,
            liveness: Liveness::default(),
            gate: ReapGate::default(),
            registered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// See [`Liveness::with_heartbeat_ttl`].
    pub(crate) fn with_heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.liveness = self.liveness.with_heartbeat_ttl(ttl);
        self
    }

    /// See [`Liveness::with_interval`].
    pub(crate) fn with_interval(mut self, d: Duration) -> Self {
        self.liveness = self.liveness.with_interval(d);
        self
    }

    /// The consumer's name.
    pub(crate) fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Its heartbeat key.
    pub(crate) fn heartbeat_key(&self) -> &str {
        &self.heartbeat_key
    }

    /// The set of consumers it is registered in.
    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    /// Heartbeat lifetime and maintenance interval.
    pub(crate) fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// Sends the heartbeat and the registration (see [`Liveness::beat`]).
    pub(crate) async fn beat(
        &self,
        conn: &RedisConnection,
        manager: &mut SharedConnection,
    ) -> Result<(), BrokerError> {
        self.liveness
            .beat(
                &self.gate,
                conn,
                manager,
                &self.heartbeat_key,
                &self.registry,
                &self.consumer,
            )
            .await
    }

    /// Whether other consumers' missing heartbeats may be taken for death now (see
    /// [`ReapGate`]).
    pub(crate) fn may_judge_others(&self) -> bool {
        self.gate.is_open(&self.liveness)
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
    fn the_peer_check_reads_each_heartbeat_key() {
        let call = heartbeats_call(&QueueKeys::new("pythia", "jobs"), &["a", "b"]);
        assert_eq!(
            call.commands_text(),
            [
                ["EXISTS", "pythia:{jobs}:heartbeat:a"],
                ["EXISTS", "pythia:{jobs}:heartbeat:b"]
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn judging_others_waits_for_a_whole_lifetime_of_unbroken_heartbeats() {
        let l = Liveness::default(); // 1 s interval, 10 s lifetime
        let gate = ReapGate::default();
        assert!(!gate.is_open(&l), "never before a first heartbeat");
        for _ in 0..10 {
            gate.beat_ok(&l);
            assert!(!gate.is_open(&l), "a new consumer waits a lifetime");
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        gate.beat_ok(&l);
        assert!(gate.is_open(&l));

        // An outage: heartbeats fail, then come back.
        gate.beat_failed();
        assert!(!gate.is_open(&l));
        gate.beat_ok(&l);
        tokio::time::advance(Duration::from_secs(9)).await;
        gate.beat_ok(&l);
        assert!(
            !gate.is_open(&l),
            "9 s (with a gap) after the outage is too soon"
        );
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(1)).await;
            gate.beat_ok(&l);
        }
        assert!(gate.is_open(&l));

        // A stall without an error (a stopped process, a hung connection): the same.
        tokio::time::advance(Duration::from_secs(12)).await;
        assert!(!gate.is_open(&l), "silent for longer than half a lifetime");
        gate.beat_ok(&l);
        assert!(!gate.is_open(&l), "back, but the others may not be yet");
    }

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
