//! Steering a live queue from Redis: [`QueueGate`], a [`Broker`] wrapper that every replica of
//! a queue runs, so that what one operator sets in Redis holds for all of them.
//!
//! * **Pause** ([`pause`] / [`resume`]): while `<prefix>:{queue}:paused` exists, gated workers
//!   fetch nothing and keep settling what they hold.
//! * **Rate limit** ([`QueueGate::with_rate_limit`], [`RateLimit`]): at most N messages per
//!   second or minute fetched by all replicas together, a GCRA in one Lua script on the
//!   server's clock.
//! * **Throttle**: a handler that returns
//!   [`WorkerError::rate_limited(d)`](pythia_core::WorkerError::rate_limited) stops the queue's
//!   fetching for `d` on every replica.
//!
//! # Why a broker wrapper
//!
//! The gate decides one thing, whether and how much to fetch, and the broker's `fetch` is where
//! that is decided; wrapping it needs nothing from the runtime, and composes per queue: a
//! multi-queue broker that wraps several brokers wraps gated ones, each paused or limited on
//! its own. The one runtime seam is [`Broker::throttle`], through which the runtime passes a
//! handler's "rate limited" to the broker that delivered the message.
//!
//! # Cost
//!
//! The gate learns the pause and throttle flags with one script call (`lua/gate_poll.lua`) at
//! most every [`POLL_INTERVAL`], made by `fetch` when its last answer is older: no command per
//! message. Without a rate limit, that is all it adds. With one, a fetch takes tokens from a
//! batch the replica holds; a script call grants a new batch (50 ms worth of the limit), and a
//! replica that finds the budget spent waits until a batch is free: about 30 calls a second
//! per busy replica at any limit.

mod control;
mod rate_limit;

use std::sync::Mutex;
use std::time::Duration;

use pythia_core::metrics::QUEUE_PAUSED;
use pythia_core::{
    Broker, BrokerError, Delivery, DeliveryGuarantee, QueueStats, Settlement, Source,
};
use tokio::time::Instant;

use crate::call::Call;
use crate::connection::{RedisConnection, SharedConnection};
use crate::keys::QueueKeys;
use crate::scripts::GATE_POLL;

pub use self::control::{is_paused, pause, resume};
use self::rate_limit::{Grant, Limiter};
pub use self::rate_limit::{ParseRateLimitError, RateLimit};

/// How often a gate asks Redis whether its queue is paused or throttled (at most; only while
/// it fetches). A pause reaches every replica within this, plus a fetch already waiting on an
/// empty queue (the block timeout, 1 s by default).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A [`Broker`] whose fetches obey the queue's pause flag, throttle and rate limit, as set in
/// Redis for every replica (see the [module docs](self)).
///
/// Everything but `fetch` goes straight to the wrapped broker: settles, releases, maintenance
/// and stats run while paused, so a paused worker finishes and settles what it holds, stays
/// ready (`/readyz`) and keeps its heartbeats.
///
/// # Behaviour
///
/// * **Paused**: `fetch` returns no messages after waiting up to [`POLL_INTERVAL`] (so the
///   runtime does not spin), and the gauge `pythia_queue_paused{queue}` is 1.
/// * **Throttled** (a handler's [`rate_limited`](pythia_core::WorkerError::rate_limited)):
///   the replica stops fetching at once for the time asked; the throttle is written to Redis
///   (extending, never shortening, one already set) and the other replicas stop at their next
///   poll. The message goes back to the queue through [`Broker::release`] with no attempt
///   counted (the runtime does so because [`Broker::throttle`] says this gate throttles), and is
///   fetched again when the pause is over: a downstream that keeps answering 429 never
///   dead-letters a message. Between the throttle and another replica's next poll, that replica
///   may still fetch (and call the downstream) once.
/// * **Rate limited**: a fetch asks for no more than the tokens granted; when the budget is
///   spent it waits (at most [`POLL_INTERVAL`]) and returns no messages. Tokens a fetch did not
///   use are kept for the next one for up to a second. Over any window, the replicas together
///   fetch at most `limit × window + burst`, the burst being two batches (100 ms of the limit).
///   Fetched, not processed: a message that fails and is retried takes a token again.
///
/// ```no_run
/// use pythia_core::{WorkerRuntime, worker_fn, Message};
/// use pythia_redis::{QueueGate, RateLimit, RedisConfig, RedisConnection, StreamBroker};
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let broker = QueueGate::new(&conn, StreamBroker::new(&conn, "emails", "senders"))
///     .with_rate_limit(RateLimit::per_second(50));
/// WorkerRuntime::new(broker, worker_fn(|_m: Message| async { Ok(()) }))
///     .run()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct QueueGate<B> {
    inner: B,
    conn: RedisConnection,
    manager: SharedConnection,
    keys: QueueKeys,
    limiter: Option<Limiter>,
    state: Mutex<GateState>,
    paused_gauge: metrics::Gauge,
}

#[derive(Debug)]
struct GateState {
    /// When Redis was last asked; `None` before the first poll.
    polled_at: Option<Instant>,
    paused: bool,
    /// No fetch before this (a throttle, this replica's or another's).
    blocked_until: Option<Instant>,
    /// A throttle asked by a handler here and not yet written to Redis.
    throttle_to_publish: Option<Duration>,
}

impl<B: Broker> QueueGate<B> {
    /// Gates `inner`, whose queue is its [`source`](Broker::source)'s name.
    pub fn new(conn: &RedisConnection, inner: B) -> Self {
        let queue = inner.source().name().to_owned();
        let keys = QueueKeys::new(conn.config().key_prefix(), &queue);
        Self {
            paused_gauge: metrics::gauge!(QUEUE_PAUSED, "queue" => queue),
            inner,
            conn: conn.clone(),
            manager: conn.manager(),
            keys,
            limiter: None,
            state: Mutex::new(GateState {
                polled_at: None,
                paused: false,
                blocked_until: None,
                throttle_to_publish: None,
            }),
        }
    }

    /// Limits the queue to `limit` messages fetched, by all replicas together (each gives the
    /// same limit; the budget is the key [`QueueKeys::rate_limit`]).
    #[must_use]
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.limiter = Some(Limiter::new(limit, self.keys.rate_limit()));
        self
    }

    /// The rate limit, if any.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.limiter.as_ref().map(Limiter::limit)
    }

    /// The wrapped broker.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Whether the last poll found the queue paused.
    pub fn is_paused(&self) -> bool {
        self.state.lock().expect("gate lock").paused
    }

    /// Asks Redis when the last answer is older than [`POLL_INTERVAL`] or a throttle waits to be
    /// written; updates the state and the gauge.
    async fn poll(&self) -> Result<(), BrokerError> {
        let publish = {
            let st = self.state.lock().expect("gate lock");
            let fresh = st.polled_at.is_some_and(|t| t.elapsed() < POLL_INTERVAL);
            if fresh && st.throttle_to_publish.is_none() {
                return Ok(());
            }
            st.throttle_to_publish
        };
        let ms = publish.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut m = self.manager.clone();
        let (paused, left_ms): (u64, u64) = poll_call(&self.keys, ms)
            .query(&mut m)
            .await
            .map_err(|e| self.conn.error("poll the queue's pause flag", e))?;
        let now = Instant::now();
        let mut st = self.state.lock().expect("gate lock");
        if st.throttle_to_publish == publish {
            st.throttle_to_publish = None;
        }
        st.polled_at = Some(now);
        if st.paused != (paused > 0) {
            tracing::info!(
                queue = self.keys.queue(),
                paused = paused > 0,
                "{}",
                if paused > 0 {
                    "queue paused: fetching stops"
                } else {
                    "queue resumed: fetching again"
                }
            );
        }
        st.paused = paused > 0;
        if left_ms > 0 {
            let until = now + Duration::from_millis(left_ms);
            st.blocked_until = Some(st.blocked_until.map_or(until, |b| b.max(until)));
        }
        self.paused_gauge.set(if st.paused { 1.0 } else { 0.0 });
        Ok(())
    }

    /// Writes a throttle to Redis now, on a task of its own (`throttle` must not block), so the
    /// other replicas see it at their next poll even while this one fetches nothing; the next
    /// fetch's poll writes it too (harmless twice), and alone when there is no runtime.
    fn publish_throttle(&self, pause: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        let call = poll_call(&self.keys, ms);
        let mut m = self.manager.clone();
        let queue = self.keys.queue().to_owned();
        rt.spawn(async move {
            let res = call.query::<(u64, u64)>(&mut m).await;
            if let Err(e) = res {
                tracing::warn!(%queue, error = %e, "writing the queue's throttle failed; the next fetch tries again");
            }
        });
    }

    /// How long fetching must wait now (paused or throttled), if it must.
    fn must_wait(&self) -> Option<Duration> {
        let mut st = self.state.lock().expect("gate lock");
        let now = Instant::now();
        if let Some(until) = st.blocked_until {
            if until > now {
                return Some(until - now);
            }
            st.blocked_until = None;
        }
        // Paused: until the next poll is due.
        let since = st.polled_at.map_or(POLL_INTERVAL, |t| t.elapsed());
        st.paused.then(|| {
            POLL_INTERVAL
                .saturating_sub(since)
                .max(Duration::from_millis(10))
        })
    }
}

impl<B: Broker> QueueGate<B> {
    /// `batch`, unless a handler throttled the queue while the fetch waited (a blocking fetch
    /// on an empty queue would otherwise take the very message the throttle handed back, at
    /// once): then the batch goes back, no attempt counted, and the fetch waits.
    async fn unless_throttled_meanwhile(
        &self,
        batch: Vec<Delivery<B::Token>>,
        wait: bool,
    ) -> Result<Vec<Delivery<B::Token>>, BrokerError> {
        if batch.is_empty() {
            return Ok(batch);
        }
        let throttled = {
            let st = self.state.lock().expect("gate lock");
            st.blocked_until
                .and_then(|until| until.checked_duration_since(Instant::now()))
        };
        match throttled {
            None => Ok(batch),
            Some(throttled_for) => {
                if let Some(limiter) = &self.limiter {
                    limiter.give_back(batch.len());
                }
                self.inner.release(batch).await?;
                idle_if(wait, throttled_for).await
            }
        }
    }

    /// [`Broker::fetch`] (`wait`: the wrapped broker's blocking fetch, and the gate's own waits)
    /// or [`Broker::try_fetch`] (not `wait`: nothing waits, an empty batch at once when the
    /// queue is paused, throttled or out of budget).
    async fn gated_fetch(
        &self,
        max: usize,
        wait: bool,
    ) -> Result<Vec<Delivery<B::Token>>, BrokerError> {
        self.poll().await?;
        if let Some(d) = self.must_wait() {
            return idle_if(wait, d).await;
        }
        let n = match &self.limiter {
            None => max,
            Some(limiter) => match limiter.take(&self.conn, &self.manager, max).await? {
                Grant::Wait(d) => return idle_if(wait, d).await,
                Grant::Take(n) => n,
            },
        };
        let batch = if wait {
            self.inner.fetch(n).await?
        } else {
            self.inner.try_fetch(n).await?
        };
        if let Some(limiter) = &self.limiter {
            limiter.give_back(n.saturating_sub(batch.len()));
        }
        self.unless_throttled_meanwhile(batch, wait).await
    }
}

/// `gate_poll.lua` on the queue `keys` name: first extends its throttle to `throttle_ms` (0:
/// none; never shortened), then replies `(paused, throttle ms left)`.
fn poll_call(keys: &QueueKeys, throttle_ms: u64) -> Call {
    let mut call = Call::script(&GATE_POLL, &[keys.paused(), keys.throttled()]);
    call.arg(throttle_ms);
    call
}

/// Waits `d` when `wait`, at most [`POLL_INTERVAL`] (a fetch returns within a bounded time, and
/// the next one polls again), and returns an empty batch.
async fn idle_if<T>(wait: bool, d: Duration) -> Result<Vec<Delivery<T>>, BrokerError> {
    if wait {
        tokio::time::sleep(d.min(POLL_INTERVAL)).await;
    }
    Ok(Vec::new())
}

impl<B: Broker> Broker for QueueGate<B> {
    type Token = B::Token;

    fn guarantee(&self) -> DeliveryGuarantee {
        self.inner.guarantee()
    }

    fn source(&self) -> &Source {
        self.inner.source()
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Self::Token>>, BrokerError> {
        self.gated_fetch(max, true).await
    }

    /// As [`fetch`](Broker::fetch) without any wait (a [`QueueSet`](pythia_core::queues::QueueSet)
    /// passing over this queue): a paused, throttled or spent queue answers empty at once.
    async fn try_fetch(&self, max: usize) -> Result<Vec<Delivery<Self::Token>>, BrokerError> {
        self.gated_fetch(max, false).await
    }

    async fn settle(&self, batch: &[Settlement<Self::Token>]) -> Result<(), BrokerError> {
        self.inner.settle(batch).await
    }

    async fn release(&self, batch: Vec<Delivery<Self::Token>>) -> Result<(), BrokerError> {
        self.inner.release(batch).await
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        self.inner.is_drained().await
    }

    async fn maintain(&self) -> Result<(), BrokerError> {
        self.inner.maintain().await
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        self.inner.maintenance_interval()
    }

    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        self.inner.stats().await
    }

    fn throttle(&self, token: &Self::Token, pause: Duration) -> bool {
        {
            let mut st = self.state.lock().expect("gate lock");
            let until = Instant::now() + pause;
            st.blocked_until = Some(st.blocked_until.map_or(until, |b| b.max(until)));
            st.throttle_to_publish = Some(st.throttle_to_publish.map_or(pause, |p| p.max(pause)));
        }
        tracing::info!(
            queue = self.keys.queue(),
            ?pause,
            "handler rate-limited by its downstream: queue throttled"
        );
        self.publish_throttle(pause);
        // This gate stops fetching for `pause`, whatever the wrapped broker says.
        let _ = self.inner.throttle(token, pause);
        true
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_reads_the_pause_flag_and_writes_the_throttle() {
        let keys = QueueKeys::new("pythia", "mail");
        let args = poll_call(&keys, 1500).text();
        assert_eq!(args[..2], ["EVALSHA", GATE_POLL.get_hash()]);
        assert_eq!(
            args[2..],
            [
                "2",
                "pythia:{mail}:paused",
                "pythia:{mail}:throttled",
                "1500"
            ]
        );
    }
}
