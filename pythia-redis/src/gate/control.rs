//! Pausing and resuming a queue from anywhere (the CLI, a dashboard, an operator's script):
//! one key, `<prefix>:{queue}:paused`, that every [`QueueGate`](super::QueueGate) polls.

use std::time::UNIX_EPOCH;

use pythia_core::BrokerError;

use crate::connection::RedisConnection;
use crate::connection::transient_retry::retry_transient;
use crate::keys::QueueKeys;

/// Pauses `queue`: its gated workers, on every replica, stop fetching within a poll interval
/// (500 ms) and keep settling what they hold. Returns `false` if it was paused already.
///
/// The flag is the key [`QueueKeys::paused`] (it holds the Unix time in ms it was set at; any
/// value means paused). It stays until [`resume`]: a restarted worker stays paused too.
///
/// ```no_run
/// use pythia_redis::{RedisConfig, RedisConnection, gate};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// gate::pause(&conn, "emails").await?;
/// assert!(gate::is_paused(&conn, "emails").await?);
/// gate::resume(&conn, "emails").await?;
/// # Ok(()) }
/// ```
pub async fn pause(conn: &RedisConnection, queue: &str) -> Result<bool, BrokerError> {
    let key = QueueKeys::new(conn.config().key_prefix(), queue).paused();
    let at = UNIX_EPOCH.elapsed().unwrap_or_default().as_millis() as u64;
    // SET NX: setting again would be harmless, the answer says whether this call paused it.
    let set: Option<String> = retry_transient("pause a queue", || {
        let mut m = conn.manager();
        let cmd = redis::cmd("SET").arg(&key).arg(at).arg("NX").clone();
        async move {
            cmd.query_async(&mut m)
                .await
                .map_err(|e| conn.error("SET paused", e))
        }
    })
    .await?;
    Ok(set.is_some())
}

/// Resumes `queue`: its gated workers fetch again within a poll interval. Returns `false` if
/// it was not paused.
pub async fn resume(conn: &RedisConnection, queue: &str) -> Result<bool, BrokerError> {
    let key = QueueKeys::new(conn.config().key_prefix(), queue).paused();
    let removed: u64 = retry_transient("resume a queue", || {
        let mut m = conn.manager();
        let cmd = redis::cmd("DEL").arg(&key).clone();
        async move {
            cmd.query_async(&mut m)
                .await
                .map_err(|e| conn.error("DEL paused", e))
        }
    })
    .await?;
    Ok(removed > 0)
}

/// Whether `queue` is paused.
pub async fn is_paused(conn: &RedisConnection, queue: &str) -> Result<bool, BrokerError> {
    let key = QueueKeys::new(conn.config().key_prefix(), queue).paused();
    let n: u64 = retry_transient("read a queue's pause flag", || {
        let mut m = conn.manager();
        let cmd = redis::cmd("EXISTS").arg(&key).clone();
        async move {
            cmd.query_async(&mut m)
                .await
                .map_err(|e| conn.error("EXISTS paused", e))
        }
    })
    .await?;
    Ok(n > 0)
}
