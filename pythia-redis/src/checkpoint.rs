//! [`CheckpointStore`]: positions that only move forward, kept in Redis with an optional TTL,
//! each with an optional payload. The one store behind a stream reader's
//! [`Checkpoint`](crate::Checkpoint) and a job's [`JobCheckpoint`](crate::JobCheckpoint).

use std::time::Duration;

use bytes::Bytes;
use pythia_core::BrokerError;

use crate::call::Call;
use crate::connection::transient_retry::retry_transient;
use crate::connection::{RedisConnection, SharedConnection};
use crate::scripts::CHECKPOINT_SAVE;

/// A position and its payload, as [`CheckpointStore::load`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredCheckpoint {
    /// `(major, minor)`, ordered as a pair: a stream entry id's `(ms, seq)`, a job's
    /// `(sequence, 0)`.
    pub position: (u64, u64),
    /// What was saved with the position, if anything.
    pub payload: Option<Bytes>,
}

/// Saves, loads and deletes checkpoints: string keys holding `<major>-<minor>`, then a space
/// and a payload when there is one.
///
/// # Behaviour
///
/// * [`save`](Self::save) only moves a checkpoint **forward** (a Lua compare of the positions):
///   a repeated or late save changes nothing but the TTL and returns `false`, so saves can be
///   retried on connection errors, and a stale worker cannot move a checkpoint back.
/// * With a TTL ([`with_ttl`](Self::with_ttl)), a checkpoint not saved for that long is
///   forgotten; without one it stays until [`delete`](Self::delete).
/// * Reads and saves are retried on transient connection errors.
///
/// ```no_run
/// use pythia_redis::{CheckpointStore, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let store = CheckpointStore::new(&conn);
/// assert!(store.save("my:checkpoint", (3, 0), Some(b"{\"row\":300}")).await?);
/// assert!(!store.save("my:checkpoint", (2, 0), None).await?, "never back");
/// let cp = store.load("my:checkpoint").await?.unwrap();
/// assert_eq!(cp.position, (3, 0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    conn: RedisConnection,
    manager: SharedConnection,
    ttl: Option<Duration>,
}

impl CheckpointStore {
    /// A store whose checkpoints never expire.
    pub fn new(conn: &RedisConnection) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            ttl: None,
        }
    }

    /// Forget a checkpoint this long after its last save (`None`: keep it; at least 1 ms).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl.map(|t| t.max(Duration::from_millis(1)));
        self
    }

    /// The TTL given to checkpoints on each save.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The checkpoint at `key`, if any.
    pub async fn load(&self, key: &str) -> Result<Option<StoredCheckpoint>, BrokerError> {
        let raw: Option<Vec<u8>> = retry_transient("load a checkpoint", || async move {
            let mut m = self.manager.clone();
            redis::cmd("GET")
                .arg(key)
                .query_async(&mut m)
                .await
                .map_err(|e| self.conn.error("load a checkpoint", e))
        })
        .await?;
        raw.map(|raw| {
            parse(&raw).ok_or_else(|| {
                BrokerError::backend(format!(
                    "checkpoint {key} holds {:?}, not <major>-<minor>[ payload]",
                    String::from_utf8_lossy(&raw[..raw.len().min(64)])
                ))
            })
        })
        .transpose()
    }

    /// Moves the checkpoint at `key` to `position` with `payload`, if that is past where it is;
    /// `true` if it moved. Refreshes the TTL either way.
    pub async fn save(
        &self,
        key: &str,
        position: (u64, u64),
        payload: Option<&[u8]>,
    ) -> Result<bool, BrokerError> {
        let ttl = self.ttl.map_or(0, |t| t.as_millis() as u64);
        let call = &save_call(key, position, ttl, payload);
        let moved: i64 = retry_transient("save a checkpoint", || async move {
            let mut m = self.manager.clone();
            call.query(&mut m)
                .await
                .map_err(|e| self.conn.error("save a checkpoint", e))
        })
        .await?;
        Ok(moved == 1)
    }

    /// Deletes the checkpoint at `key`; `true` if there was one.
    pub async fn delete(&self, key: &str) -> Result<bool, BrokerError> {
        let n: u64 = retry_transient("delete a checkpoint", || async move {
            let mut m = self.manager.clone();
            redis::cmd("DEL")
                .arg(key)
                .query_async(&mut m)
                .await
                .map_err(|e| self.conn.error("delete a checkpoint", e))
        })
        .await?;
        Ok(n > 0)
    }
}

/// `checkpoint_save.lua`: the checkpoint at `key` moved to `position` with `payload` if that is
/// past where it is, its TTL set to `ttl_ms` either way (0: none). Replies 1 if it moved.
fn save_call(key: &str, position: (u64, u64), ttl_ms: u64, payload: Option<&[u8]>) -> Call {
    let mut call = Call::script(&CHECKPOINT_SAVE, &[key]);
    call.arg(format!("{}-{}", position.0, position.1))
        .arg(ttl_ms);
    if let Some(p) = payload {
        call.arg(p);
    }
    call
}

/// `<major>-<minor>` then, optionally, a space and the payload.
fn parse(raw: &[u8]) -> Option<StoredCheckpoint> {
    let (head, payload) = match raw.iter().position(|b| *b == b' ') {
        Some(i) => (&raw[..i], Some(Bytes::copy_from_slice(&raw[i + 1..]))),
        None => (raw, None),
    };
    let head = std::str::from_utf8(head).ok()?;
    let (major, minor) = head.split_once('-')?;
    Some(StoredCheckpoint {
        position: (major.parse().ok()?, minor.parse().ok()?),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_sends_the_position_the_ttl_and_the_payload() {
        let args = save_call("pythia:{ev}:checkpoint:r1", (12, 3), 5000, Some(b"{}")).text();
        assert_eq!(args[..2], ["EVALSHA", CHECKPOINT_SAVE.get_hash()]);
        assert_eq!(
            args[2..],
            ["1", "pythia:{ev}:checkpoint:r1", "12-3", "5000", "{}"]
        );
        let args = save_call("k", (1, 0), 0, None).text();
        assert_eq!(args[2..], ["1", "k", "1-0", "0"]);
    }

    #[test]
    fn values_parse_with_and_without_a_payload() {
        let cp = parse(b"12-3").unwrap();
        assert_eq!((cp.position, cp.payload), ((12, 3), None));
        let cp = parse(b"6-0 {\"a\": 1}").unwrap();
        assert_eq!(cp.position, (6, 0));
        assert_eq!(cp.payload.as_deref(), Some(&b"{\"a\": 1}"[..]));
        for bad in [&b""[..], b"12", b"x-1", b"1-", b"-1 p"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
