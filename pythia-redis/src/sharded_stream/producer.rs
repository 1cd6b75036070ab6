//! [`ShardedStreamProducer`]: adds messages to a sharded queue, round robin or by key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::future::join_all;
use pythia_core::{BrokerError, Message};

use super::{ShardEntryId, ShardedQueue};
use crate::connection::RedisConnection;
use crate::list::producer::Encoding;
use crate::queues::registry::{QueueKind, Registration};
use crate::stream::StreamEntryId;
use crate::stream::producer::StreamProducer;

/// Adds messages to the shards of a [`ShardedQueue`], for a
/// [`ShardedStreamBroker`](super::ShardedStreamBroker).
///
/// * [`add`](Self::add) / [`add_many`](Self::add_many) spread messages **round robin** over
///   the shards, starting at a random shard (so that many producers adding one message each do
///   not all pick shard 0).
/// * [`add_keyed`](Self::add_keyed) / [`add_many_keyed`](Self::add_many_keyed) put every
///   message of one key in the shard [`ShardedQueue::shard_for_key`] names, in the order
///   given, so related messages stay ordered.
///
/// Each shard's part of a batch goes out in pipelines of `XADD`s (as
/// [`StreamProducer::add_many`]), the shards at once. Entries are written as a
/// [`StreamProducer`] writes them ([`with_encoding`](Self::with_encoding),
/// [`with_max_len`](Self::with_max_len) per shard). Reserved header names are refused before
/// anything is sent; when a shard fails, the other shards' parts may have been added.
///
/// The first add checks the queue's layout (see the [module docs](super)).
///
/// ```no_run
/// use pythia_core::Message;
/// use pythia_redis::{RedisConfig, RedisConnection, ShardedQueue, ShardedStreamProducer};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let producer = ShardedStreamProducer::new(&conn, &ShardedQueue::new("orders", 4)?);
/// producer.add_many(&[Message::new("a"), Message::new("b")]).await?;
/// let orders = vec![
///     Message::new("created").with_header("customer", "42"),
///     Message::new("paid").with_header("customer", "42"),
/// ];
/// // Both in customer 42's shard, "created" first.
/// producer
///     .add_many_keyed(&orders, |m| m.header("customer").unwrap_or_default().to_owned())
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ShardedStreamProducer {
    conn: RedisConnection,
    queue: ShardedQueue,
    shards: Vec<StreamProducer>,
    next: Arc<AtomicUsize>,
    layout_checked: Arc<AtomicBool>,
    registration: Registration,
}

impl ShardedStreamProducer {
    /// A producer for `queue`, writing Pythia's fields, trimming nothing.
    pub fn new(conn: &RedisConnection, queue: &ShardedQueue) -> Self {
        Self {
            conn: conn.clone(),
            queue: queue.clone(),
            shards: queue
                .streams()
                .iter()
                .map(|s| StreamProducer::new(conn, s))
                .collect(),
            next: Arc::new(AtomicUsize::new(fastrand::usize(..queue.shard_count()))),
            layout_checked: Arc::new(AtomicBool::new(false)),
            registration: Registration::producer(conn, queue.name(), QueueKind::ShardedStream),
        }
    }

    /// The approximate cap on each shard's length (`MAXLEN ~ n`), or `None` (the default) for
    /// none. A cap drops entries no group has been delivered when a shard's backlog outgrows it
    /// ([`StreamProducer::with_max_len`]).
    #[must_use]
    pub fn with_max_len(mut self, max_len: Option<usize>) -> Self {
        self.shards = self
            .shards
            .into_iter()
            .map(|s| s.with_max_len(max_len))
            .collect();
        self
    }

    /// Pythia's fields (default) or the body alone.
    #[must_use]
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.shards = self
            .shards
            .into_iter()
            .map(|s| s.with_encoding(encoding))
            .collect();
        self
    }

    /// The queue and its shards.
    pub fn queue(&self) -> &ShardedQueue {
        &self.queue
    }

    /// Adds one message to the next shard in turn; returns its shard and entry id.
    pub async fn add(&self, msg: &Message) -> Result<ShardEntryId, BrokerError> {
        let ids = self.add_many(std::slice::from_ref(msg)).await?;
        Ok(ids[0])
    }

    /// Adds messages round robin over the shards; returns their shards and entry ids, in the
    /// order given.
    pub async fn add_many(&self, msgs: &[Message]) -> Result<Vec<ShardEntryId>, BrokerError> {
        let n = self.shards.len();
        let first = self.next.fetch_add(msgs.len(), Ordering::Relaxed);
        let shards: Vec<usize> = (0..msgs.len()).map(|k| (first + k) % n).collect();
        self.add_to(msgs, &shards).await
    }

    /// Adds one message to the shard of `key`; returns its shard and entry id.
    pub async fn add_keyed(
        &self,
        key: impl AsRef<[u8]>,
        msg: &Message,
    ) -> Result<ShardEntryId, BrokerError> {
        let shard = self.queue.shard_for_key(key);
        let ids = self.add_to(std::slice::from_ref(msg), &[shard]).await?;
        Ok(ids[0])
    }

    /// Adds each message to the shard of its key (`key_of(message)`), in the order given
    /// within each shard; returns their shards and entry ids, in the order given.
    pub async fn add_many_keyed<K, F>(
        &self,
        msgs: &[Message],
        key_of: F,
    ) -> Result<Vec<ShardEntryId>, BrokerError>
    where
        K: AsRef<[u8]>,
        F: Fn(&Message) -> K,
    {
        let shards: Vec<usize> = msgs
            .iter()
            .map(|m| self.queue.shard_for_key(key_of(m)))
            .collect();
        self.add_to(msgs, &shards).await
    }

    /// Adds `msgs[k]` to shard `shards[k]`, each shard's part in one go, the shards at once.
    async fn add_to(
        &self,
        msgs: &[Message],
        shards: &[usize],
    ) -> Result<Vec<ShardEntryId>, BrokerError> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<&Message> = msgs.iter().collect();
        self.shards[0].check_headers(&all)?;
        if !self.layout_checked.load(Ordering::Acquire) {
            self.queue.check_layout(&self.conn).await?;
            self.layout_checked.store(true, Ordering::Release);
        }
        self.registration.ensure(&self.conn).await;
        let mut parts: Vec<Vec<&Message>> = self.shards.iter().map(|_| Vec::new()).collect();
        for (msg, &shard) in msgs.iter().zip(shards) {
            parts[shard].push(msg);
        }
        let adds = self
            .shards
            .iter()
            .zip(&parts)
            .filter(|(_, part)| !part.is_empty())
            .map(|(producer, part)| producer.add_refs(part));
        let mut ids_by_shard: Vec<std::vec::IntoIter<StreamEntryId>> =
            self.shards.iter().map(|_| Vec::new().into_iter()).collect();
        let non_empty = parts.iter().enumerate().filter(|(_, p)| !p.is_empty());
        for ((shard, _), ids) in non_empty.zip(join_all(adds).await) {
            ids_by_shard[shard] = ids?.into_iter();
        }
        shards
            .iter()
            .map(|&shard| {
                let id = ids_by_shard[shard]
                    .next()
                    .ok_or_else(|| BrokerError::backend("XADD returned fewer ids than entries"))?;
                Ok(ShardEntryId::new(shard as u32, id))
            })
            .collect()
    }
}
