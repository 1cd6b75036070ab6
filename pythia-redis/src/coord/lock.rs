//! [`Lock`]: a distributed lock in Redis with a TTL and an owner token, for singletons.

use std::future::Future;
use std::time::Duration;

use crate::connection::SharedConnection;
use pythia_core::{BrokerError, CancellationToken};
use tokio::time::Instant;

use crate::connection::RedisConnection;
use crate::connection::transient_retry::retry_transient;
use crate::keys::{QueueKeys, unique_consumer_name};

/// A named distributed lock: at most one owner at a time across every process sharing the
/// Redis, held for a TTL unless extended.
///
/// # How
///
/// The lock is the key `<prefix>:{<name>}:lock`, holding the owner's token and expiring after
/// the TTL (`PX`). Taking it, extending it and releasing it are Lua scripts that compare the
/// token first, so an owner whose lock expired and was taken by another can neither extend nor
/// delete the other's lock. [`force_release`](Self::force_release) deletes it whoever holds it
/// (an operator's tool).
///
/// * **Tokens** are `<owner>:<16 random hex digits>`, a fresh one per acquisition; the owner
///   part is [`unique_consumer_name`] unless set with [`with_owner`](Self::with_owner), so
///   [`holder`](Self::holder) tells who holds it.
/// * **Expiry is the safety net**: a crashed owner's lock frees itself after the TTL. A live
///   owner extends it ([`LockGuard::extend`]) or lets
///   [`run_exclusive`](Self::run_exclusive) do so every third of the TTL.
/// * **Lost locks**: an owner that cannot reach Redis for a whole TTL must assume the lock is
///   gone. [`run_exclusive`](Self::run_exclusive) does: it cancels the work and says
///   [`Exclusive::Lost`].
/// * **Errors**: taking, extending and reading are retried with backoff on connection errors
///   (repeating them changes nothing); other errors are returned at once.
/// * **Dropping** a [`LockGuard`] that was not released spawns a release on the current tokio
///   runtime (best effort; the TTL covers the rest).
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_redis::{Exclusive, Lock, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let lock = Lock::new(&conn, "nightly-report");
///
/// // By hand: take it, work, release it.
/// if let Some(guard) = lock.try_acquire(Duration::from_secs(30)).await? {
///     // ... at most one replica is here ...
///     guard.extend(Duration::from_secs(30)).await?;
///     guard.release().await?;
/// }
///
/// // A singleton: kept alive while the work runs, cancelled if the lock is lost.
/// match lock.run_exclusive(Duration::from_secs(10), async { 42 }).await? {
///     Exclusive::Done(n) => println!("ran alone: {n}"),
///     Exclusive::NotAcquired => println!("another replica holds it"),
///     Exclusive::Lost => println!("lost the lock: work cancelled"),
///     _ => {}
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    conn: RedisConnection,
    manager: SharedConnection,
    name: String,
    key: String,
    owner: String,
}

/// How [`Lock::run_exclusive`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exclusive<T> {
    /// The work ran to the end under the lock; the lock was then released.
    Done(T),
    /// Another owner holds the lock: the work did not run.
    NotAcquired,
    /// The lock was lost while the work ran (taken over after an expiry, force-released, or
    /// Redis unreachable for a whole TTL): the work was cancelled (dropped).
    Lost,
}

impl Lock {
    /// A TTL for locks whose owner extends them: 30 s.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

    /// The lock `name` under the connection's key prefix.
    pub fn new(conn: &RedisConnection, name: &str) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            name: name.to_owned(),
            key: QueueKeys::new(conn.config().key_prefix(), name).lock(),
            owner: unique_consumer_name(),
        }
    }

    /// The owner part of this handle's tokens (default: [`unique_consumer_name`]), shown by
    /// [`holder`](Self::holder).
    #[must_use]
    pub fn with_owner(mut self, owner: &str) -> Self {
        self.owner = owner.to_owned();
        self
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Redis key of the lock.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Takes the lock for `ttl` if nobody holds it; `None` if another owner does.
    pub async fn try_acquire(&self, ttl: Duration) -> Result<Option<LockGuard>, BrokerError> {
        let token = format!("{}:{:016x}", self.owner, fastrand::u64(..));
        let ttl = ttl.max(Duration::from_millis(1));
        let token_ref = &token;
        let taken: i64 = retry_transient("acquire a lock", || async move {
            let mut m = self.manager.clone();
            calls::acquire(&self.key, token_ref, ttl)
                .query(&mut m)
                .await
                .map_err(|e| self.conn.error(&format!("acquire lock {:?}", self.name), e))
        })
        .await?;
        Ok((taken == 1).then(|| LockGuard {
            lock: self.clone(),
            token,
            released: false,
        }))
    }

    /// Takes the lock for `ttl`, waiting up to `wait` for the holder to let go (polling every
    /// 10 ms, backing off to 250 ms); `None` if it is still held then.
    pub async fn acquire(
        &self,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<LockGuard>, BrokerError> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(guard) = self.try_acquire(ttl).await? {
                return Ok(Some(guard));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let jittered = pause.mul_f64(0.5 + fastrand::f64() / 2.0);
            tokio::time::sleep(jittered.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// The token of the current holder, if any.
    pub async fn holder(&self) -> Result<Option<String>, BrokerError> {
        retry_transient("read a lock", || {
            let mut m = self.manager.clone();
            async move {
                redis::cmd("GET")
                    .arg(&self.key)
                    .query_async(&mut m)
                    .await
                    .map_err(|e| self.conn.error(&format!("read lock {:?}", self.name), e))
            }
        })
        .await
    }

    /// How long the lock is held for yet, if held.
    pub async fn remaining(&self) -> Result<Option<Duration>, BrokerError> {
        let ms: i64 = retry_transient("read a lock's TTL", || {
            let mut m = self.manager.clone();
            async move {
                redis::cmd("PTTL")
                    .arg(&self.key)
                    .query_async(&mut m)
                    .await
                    .map_err(|e| self.conn.error(&format!("read lock {:?}", self.name), e))
            }
        })
        .await?;
        Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
    }

    /// Deletes the lock whoever holds it; `true` if it was held. The holder finds out at its
    /// next [`extend`](LockGuard::extend). Meant for operators clearing a stuck lock.
    pub async fn force_release(&self) -> Result<bool, BrokerError> {
        let mut m = self.manager.clone();
        let n: u64 = redis::cmd("DEL")
            .arg(&self.key)
            .query_async(&mut m)
            .await
            .map_err(|e| {
                self.conn
                    .error(&format!("force-release lock {:?}", self.name), e)
            })?;
        Ok(n > 0)
    }

    /// Runs `work` only if the lock can be taken, holding it (extended every third of `ttl`)
    /// until `work` ends, then releasing it.
    ///
    /// # Behaviour
    ///
    /// * Held by another owner: `work` does not run; [`Exclusive::NotAcquired`].
    /// * An extension finds the lock gone or taken by another, or no extension has succeeded
    ///   within `ttl` of the last successful one's request (an extension still waiting for
    ///   Redis, or retrying, is abandoned at that moment): `work` is dropped at its next
    ///   `.await` and [`Exclusive::Lost`] returned, so two owners never keep working at once
    ///   for longer than the time `work` takes to reach an `.await`.
    /// * `work` finishes: the lock is released; [`Exclusive::Done`] with its output.
    pub async fn run_exclusive<F: Future>(
        &self,
        ttl: Duration,
        work: F,
    ) -> Result<Exclusive<F::Output>, BrokerError> {
        let ttl = ttl.max(Duration::from_millis(30));
        let asked = Instant::now();
        let Some(guard) = self.try_acquire(ttl).await? else {
            return Ok(Exclusive::NotAcquired);
        };
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep_alive(
            self.clone(),
            guard.token.clone(),
            ttl,
            asked + ttl,
            lost.clone(),
        ));
        let out = tokio::select! {
            out = work => Some(out),
            () = lost.cancelled() => None,
        };
        keeper.abort();
        match out {
            Some(out) => {
                if let Err(e) = guard.release().await {
                    tracing::warn!(lock = %self.name, error = %e, "releasing a lock failed; it expires by itself");
                }
                Ok(Exclusive::Done(out))
            }
            None => {
                tracing::warn!(lock = %self.name, "lock lost: exclusive work cancelled");
                guard.forget();
                Ok(Exclusive::Lost)
            }
        }
    }

    async fn extend_token(&self, token: &str, ttl: Duration) -> Result<bool, BrokerError> {
        let ttl = ttl.max(Duration::from_millis(1));
        let n: i64 = retry_transient("extend a lock", || async move {
            let mut m = self.manager.clone();
            calls::extend(&self.key, token, ttl)
                .query(&mut m)
                .await
                .map_err(|e| self.conn.error(&format!("extend lock {:?}", self.name), e))
        })
        .await?;
        Ok(n == 1)
    }

    async fn release_token(&self, token: &str) -> Result<bool, BrokerError> {
        let n: i64 = retry_transient("release a lock", || async move {
            let mut m = self.manager.clone();
            calls::release(&self.key, token)
                .query(&mut m)
                .await
                .map_err(|e| self.conn.error(&format!("release lock {:?}", self.name), e))
        })
        .await?;
        Ok(n == 1)
    }
}

/// Extends the lock every third of `ttl`; cancels `lost` once it is gone or may be.
///
/// `held_until` is when the lock may expire at the earliest (the last successful request's
/// start plus `ttl`). Nothing here may run past it: an extension still waiting for Redis (its
/// reply timeout, its transient retries) is abandoned then, since another owner may hold the
/// lock from that moment.
async fn keep_alive(
    lock: Lock,
    token: String,
    ttl: Duration,
    mut held_until: Instant,
    lost: CancellationToken,
) {
    loop {
        tokio::time::sleep_until((Instant::now() + ttl / 3).min(held_until)).await;
        let asked = Instant::now();
        if asked >= held_until {
            tracing::warn!(lock = %lock.name, "lock not extended within its TTL: it may be gone");
            break;
        }
        match tokio::time::timeout_at(held_until, lock.extend_token(&token, ttl)).await {
            Ok(Ok(true)) => held_until = asked + ttl,
            Ok(Ok(false)) => break,
            Ok(Err(e)) => {
                tracing::warn!(lock = %lock.name, error = %e, "extending a lock failed");
            }
            Err(_) => {
                tracing::warn!(lock = %lock.name, "lock not extended within its TTL (Redis did not answer): it may be gone");
                break;
            }
        }
    }
    lost.cancel();
}

/// A held [`Lock`]. Release it with [`release`](Self::release); dropping it releases it in the
/// background (best effort).
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock"]
pub struct LockGuard {
    lock: Lock,
    token: String,
    released: bool,
}

impl LockGuard {
    /// The owner token this guard holds the lock with.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.lock.name
    }

    /// Sets the lock's TTL to `ttl` from now; `false` if the lock is no longer this guard's
    /// (expired, possibly taken by another, or force-released): stop the exclusive work then.
    pub async fn extend(&self, ttl: Duration) -> Result<bool, BrokerError> {
        self.lock.extend_token(&self.token, ttl).await
    }

    /// Whether this guard still holds the lock.
    pub async fn is_held(&self) -> Result<bool, BrokerError> {
        Ok(self.lock.holder().await?.as_deref() == Some(self.token.as_str()))
    }

    /// Releases the lock if this guard still holds it (compare-and-delete); `true` if it did.
    /// `false` means it was no longer this guard's: expired or force-released, and perhaps
    /// held by another owner now, whose lock is left alone.
    pub async fn release(mut self) -> Result<bool, BrokerError> {
        self.released = true;
        self.lock.release_token(&self.token).await
    }

    /// Gives up the guard without releasing (the lock expires by its TTL).
    fn forget(mut self) {
        self.released = true;
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let lock = self.lock.clone();
            let token = std::mem::take(&mut self.token);
            rt.spawn(async move {
                if let Err(e) = lock.release_token(&token).await {
                    tracing::debug!(lock = %lock.name, error = %e, "releasing a dropped lock guard failed; it expires by itself");
                }
            });
        }
    }
}

/// The lock's scripts, built without I/O: what [`Lock`] sends and the tests below read.
mod calls {
    use std::time::Duration;

    use crate::call::Call;
    use crate::scripts::{LOCK_ACQUIRE, LOCK_EXTEND, LOCK_RELEASE};

    /// `lock_acquire.lua`: `key` set to `token` for `ttl` unless held; replies 1 if taken.
    pub(super) fn acquire(key: &str, token: &str, ttl: Duration) -> Call {
        let mut call = Call::script(&LOCK_ACQUIRE, &[key]);
        call.arg(token).arg(ttl.as_millis() as u64);
        call
    }

    /// `lock_extend.lua`: `key`'s TTL set to `ttl` if it still holds `token`; replies 1 if so.
    pub(super) fn extend(key: &str, token: &str, ttl: Duration) -> Call {
        let mut call = Call::script(&LOCK_EXTEND, &[key]);
        call.arg(token).arg(ttl.as_millis() as u64);
        call
    }

    /// `lock_release.lua`: `key` deleted if it still holds `token`; replies 1 if so.
    pub(super) fn release(key: &str, token: &str) -> Call {
        let mut call = Call::script(&LOCK_RELEASE, &[key]);
        call.arg(token);
        call
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn each_script_names_the_lock_key_and_the_token() {
            let key = "pythia:{nightly}:lock";
            let ttl = Duration::from_millis(1500);
            let acquire = acquire(key, "w1:00ff", ttl).text();
            assert_eq!(acquire[..2], ["EVALSHA", LOCK_ACQUIRE.get_hash()]);
            assert_eq!(acquire[2..], ["1", key, "w1:00ff", "1500"]);
            let extend = extend(key, "w1:00ff", ttl).text();
            assert_eq!(extend[..2], ["EVALSHA", LOCK_EXTEND.get_hash()]);
            assert_eq!(extend[2..], ["1", key, "w1:00ff", "1500"]);
            let release = release(key, "w1:00ff").text();
            assert_eq!(release[..2], ["EVALSHA", LOCK_RELEASE.get_hash()]);
            assert_eq!(release[2..], ["1", key, "w1:00ff"]);
        }
    }
}
