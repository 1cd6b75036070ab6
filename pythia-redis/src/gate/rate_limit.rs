//! [`RateLimit`], a queue's limit as `500/s` or `30/m`, and the per-replica side of its GCRA: a
//! batch of tokens granted by `lua/rate_limit.lua`, spent by fetches.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use pythia_core::BrokerError;
use tokio::time::Instant;

use crate::call::Call;
use crate::connection::{RedisConnection, SharedConnection};
use crate::scripts::RATE_LIMIT;

/// Tokens a replica holds are worth this long of the limit: a batch is granted per script call,
/// so at 500/s a replica calls the script about 20 times a second, whatever its fetch size.
const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// Tokens held longer than this are given up: a replica that fetched nothing for a while must
/// not spend an old grant in a burst on top of what the others take now.
const TOKEN_SHELF_LIFE: Duration = Duration::from_secs(1);

/// Most tokens granted per call.
const MAX_BATCH: u64 = 1000;

/// A rate limit: at most `count` messages fetched per `period`, across every replica of a queue.
///
/// Parsed from `N/s`, `N/m` or `N/h` (`500/s`, `30/m`); `Display` writes it back that way.
///
/// ```
/// use std::time::Duration;
/// use pythia_redis::RateLimit;
///
/// let limit: RateLimit = "500/s".parse().unwrap();
/// assert_eq!(limit, RateLimit::per_second(500));
/// assert_eq!("30/m".parse::<RateLimit>().unwrap().period(), Duration::from_secs(60));
/// assert!("0/s".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    count: u32,
    period: Duration,
}

impl RateLimit {
    /// `count` messages per `period`. Panics on a zero count or period (use the parser for
    /// input).
    pub fn new(count: u32, period: Duration) -> Self {
        assert!(
            count > 0 && !period.is_zero(),
            "a rate limit needs a count and a period"
        );
        Self { count, period }
    }

    /// `count` messages a second.
    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` messages a minute.
    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// Messages per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The limit in messages per second.
    pub fn per_second_f64(&self) -> f64 {
        f64::from(self.count) / self.period.as_secs_f64()
    }

    /// Milliseconds between two messages at the limit (the GCRA's emission interval).
    fn interval_ms(&self) -> f64 {
        self.period.as_secs_f64() * 1000.0 / f64::from(self.count)
    }

    /// Tokens asked for per script call: 50 ms worth of the limit.
    fn batch(&self) -> u64 {
        ((self.per_second_f64() * BATCH_WINDOW.as_secs_f64()).ceil() as u64).clamp(1, MAX_BATCH)
    }

    /// The fewest tokens a script call grants: a whole batch, so that replicas racing for the
    /// budget take it in batches, not one token per call, and a starved replica asks about
    /// once per batch window.
    fn least_grant(&self) -> u64 {
        self.batch()
    }

    /// Tokens the budget holds when full: two batches, so that it does not overflow (losing
    /// rate) while a replica waits out a batch window with jitter.
    fn burst(&self) -> u64 {
        2 * self.batch()
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => return write!(f, "{}/{:?}", self.count, self.period),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A rate limit that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate limit {0:?}: expected N/s, N/m or N/h with N > 0 (e.g. 500/s)")]
pub struct ParseRateLimitError(String);

impl FromStr for RateLimit {
    type Err = ParseRateLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseRateLimitError(s.to_owned());
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Self::new(count, period))
    }
}

/// What a fetch may take now.
pub(super) enum Grant {
    /// Fetch at most this many.
    Take(usize),
    /// The budget is spent: ask again after this long.
    Wait(Duration),
}

/// One replica's share of a queue's rate limit: tokens granted and not yet spent.
#[derive(Debug)]
pub(super) struct Limiter {
    limit: RateLimit,
    key: String,
    held: Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    tokens: u64,
    granted_at: Instant,
    /// The budget was spent: no token can be granted before this (other replicas only push it
    /// later), so the script is not asked again until then.
    spent_until: Option<Instant>,
}

impl Limiter {
    pub(super) fn new(limit: RateLimit, key: String) -> Self {
        Self {
            limit,
            key,
            held: Mutex::new(Held {
                tokens: 0,
                granted_at: Instant::now(),
                spent_until: None,
            }),
        }
    }

    pub(super) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes up to `max` tokens: from those held, else one script call for a batch.
    pub(super) async fn take(
        &self,
        conn: &RedisConnection,
        manager: &SharedConnection,
        max: usize,
    ) -> Result<Grant, BrokerError> {
        let max = max.max(1) as u64;
        if let Some(grant) = self.take_held(max) {
            return Ok(grant);
        }
        let want = self.limit.batch().max(1);
        let mut m = manager.clone();
        let (granted, wait_ms): (u64, u64) = self
            .call(want)
            .query(&mut m)
            .await
            .map_err(|e| conn.error("take rate-limit tokens", e))?;
        let mut held = self.held.lock().expect("limiter lock");
        if granted == 0 {
            // Up to half again as long, at random: replicas denied together do not all ask
            // again at the same moment, where all but one would be denied again.
            let wait = Duration::from_millis(wait_ms.max(1)).mul_f64(1.0 + fastrand::f64() / 2.0);
            held.spent_until = Some(Instant::now() + wait);
            return Ok(Grant::Wait(wait));
        }
        let now = granted.min(max);
        held.tokens = granted - now;
        held.granted_at = Instant::now();
        held.spent_until = None;
        Ok(Grant::Take(now as usize))
    }

    /// `rate_limit.lua`: up to `want` tokens of the shared GCRA bucket (at least the limit's
    /// least grant, or none). Replies `(granted, ms to wait when none)`.
    fn call(&self, want: u64) -> Call {
        let mut call = Call::script(&RATE_LIMIT, &[&self.key]);
        call.arg(self.limit.interval_ms())
            .arg(self.limit.burst())
            .arg(want)
            .arg(self.limit.least_grant());
        call
    }

    /// Tokens held here, or the wait left when the budget is known to be spent; `None` to ask
    /// Redis.
    fn take_held(&self, max: u64) -> Option<Grant> {
        let mut held = self.held.lock().expect("limiter lock");
        let now = Instant::now();
        if let Some(until) = held.spent_until {
            if until > now {
                return Some(Grant::Wait(until - now));
            }
            held.spent_until = None;
        }
        if held.granted_at.elapsed() > TOKEN_SHELF_LIFE {
            held.tokens = 0;
        }
        if held.tokens == 0 {
            return None;
        }
        let n = held.tokens.min(max);
        held.tokens -= n;
        Some(Grant::Take(n as usize))
    }

    /// Puts back tokens a fetch did not use (it found fewer messages than it was allowed).
    pub(super) fn give_back(&self, n: usize) {
        if n > 0 {
            self.held.lock().expect("limiter lock").tokens += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, count, secs) in [("500/s", 500, 1), ("30/m", 30, 60), (" 2 / h ", 2, 3600)] {
            let r: RateLimit = text.parse().unwrap();
            assert_eq!((r.count(), r.period().as_secs()), (count, secs), "{text}");
        }
        assert_eq!(RateLimit::per_minute(30).to_string(), "30/m");
        for bad in ["", "500", "0/s", "-1/s", "5/d", "x/s", "5/"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_take_asks_the_shared_bucket_for_a_batch() {
        let key = crate::keys::QueueKeys::new("pythia", "mail").rate_limit();
        assert_eq!(key, "pythia:{mail}:ratelimit");
        let limiter = Limiter::new(RateLimit::per_second(200), key.clone());
        let args = limiter.call(10).text();
        assert_eq!(args[..2], ["EVALSHA", RATE_LIMIT.get_hash()]);
        assert_eq!(args[2..], ["1", &key, "5.0", "20", "10", "10"]);
    }

    #[test]
    fn batches_are_fifty_ms_of_the_limit() {
        assert_eq!(RateLimit::per_second(200).batch(), 10);
        assert_eq!(RateLimit::per_second(1).batch(), 1);
        assert_eq!(RateLimit::per_minute(30).batch(), 1);
        assert_eq!(RateLimit::per_second(1_000_000).batch(), MAX_BATCH);
        assert_eq!(RateLimit::per_second(2000).least_grant(), 100);
        assert_eq!(RateLimit::per_second(2000).burst(), 200);
        assert!((RateLimit::per_second(200).interval_ms() - 5.0).abs() < 1e-9);
    }
}
