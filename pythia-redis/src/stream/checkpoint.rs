//! [`Checkpoint`]: where a plain `XREAD` reader (no consumer group) is in a stream, kept in
//! Redis (by the [`CheckpointStore`]) so that it resumes there after a restart.

use std::time::Duration;

use pythia_core::BrokerError;

use crate::checkpoint::CheckpointStore;
use crate::connection::RedisConnection;
use crate::keys::QueueKeys;
use crate::stream::StreamEntryId;

/// The last stream entry id a reader processed, in `<prefix>:{stream}:checkpoint:<reader>`
/// (a [`CheckpointStore`] key).
///
/// A consumer group keeps its position in Redis by itself; a reader outside any group
/// (`XREAD`, e.g. one that sees every entry, like a projection or an audit log) does not.
/// `Checkpoint` is that position:
///
/// * [`save`](Self::save) only moves it **forward** (a Lua compare of the ids), so a repeated
///   or late save is harmless and saves are retried on connection errors;
/// * an optional TTL ([`with_ttl`](Self::with_ttl)) makes a reader that stays away forgotten
///   (it then starts afresh); without one the key stays until [`reset`](Self::reset);
/// * [`StreamReader`](crate::StreamReader) reads from it and saves it after each batch.
///
/// Save after processing (at-least-once: after a crash, entries processed since the last save
/// are read again), or before (at-most-once).
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_redis::{Checkpoint, RedisConfig, RedisConnection, StreamEntryId};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let cp = Checkpoint::new(&conn, "events", "audit-log").with_ttl(Some(Duration::from_secs(7 * 86400)));
/// let from = cp.load().await?.unwrap_or_default(); // 0-0: the beginning
/// // ... XREAD STREAMS events <from>, process ...
/// cp.save("1700000000000-3".parse::<StreamEntryId>().unwrap()).await?;
/// # let _ = from; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Checkpoint {
    store: CheckpointStore,
    key: String,
}

impl Checkpoint {
    /// The checkpoint of reader `reader` in `stream`, without a TTL.
    pub fn new(conn: &RedisConnection, stream: &str, reader: &str) -> Self {
        Self {
            store: CheckpointStore::new(conn),
            key: QueueKeys::new(conn.config().key_prefix(), stream).checkpoint(reader),
        }
    }

    /// Forget the checkpoint this long after its last save (`None`: keep it; at least 1 ms).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.store = self.store.with_ttl(ttl);
        self
    }

    /// The Redis key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The last saved id, if any.
    pub async fn load(&self) -> Result<Option<StreamEntryId>, BrokerError> {
        Ok(self
            .store
            .load(&self.key)
            .await?
            .map(|cp| StreamEntryId::new(cp.position.0, cp.position.1)))
    }

    /// Moves the checkpoint to `id` if that is past it; `true` if it moved. Refreshes the TTL
    /// either way.
    pub async fn save(&self, id: StreamEntryId) -> Result<bool, BrokerError> {
        self.store.save(&self.key, (id.ms(), id.seq()), None).await
    }

    /// Deletes the checkpoint: the reader starts afresh.
    pub async fn reset(&self) -> Result<(), BrokerError> {
        self.store.delete(&self.key).await.map(drop)
    }
}
