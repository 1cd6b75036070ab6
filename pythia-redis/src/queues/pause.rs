//! Pausing a queue: the flag is the key [`QueueKeys::paused`] (`<prefix>:{<queue>}:paused`);
//! the queue is paused while it exists, whatever it holds.
//!
//! This is the one place that reads and writes the flag; the workers that obey it are built
//! elsewhere.

use pythia_core::BrokerError;

use crate::QueueKeys;
use crate::connection::RedisConnection;

fn key(conn: &RedisConnection, queue: &str) -> String {
    QueueKeys::new(conn.config().key_prefix(), queue).paused()
}

/// Whether `queue` is paused.
pub async fn is_paused(conn: &RedisConnection, queue: &str) -> Result<bool, BrokerError> {
    let mut m = conn.manager();
    redis::cmd("EXISTS")
        .arg(key(conn, queue))
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("EXISTS paused", e))
}

/// Pauses `queue` (sets its flag, with the time of the pause in ms since the Unix epoch).
pub async fn pause(conn: &RedisConnection, queue: &str) -> Result<(), BrokerError> {
    let mut m = conn.manager();
    redis::cmd("SET")
        .arg(key(conn, queue))
        .arg(pythia_core::message::unix_millis(
            std::time::SystemTime::now(),
        ))
        .query_async::<()>(&mut m)
        .await
        .map_err(|e| conn.error("SET paused", e))
}

/// Resumes `queue` (deletes its flag); returns whether it was paused.
pub async fn resume(conn: &RedisConnection, queue: &str) -> Result<bool, BrokerError> {
    let mut m = conn.manager();
    let n: u64 = redis::cmd("DEL")
        .arg(key(conn, queue))
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("DEL paused", e))?;
    Ok(n > 0)
}
