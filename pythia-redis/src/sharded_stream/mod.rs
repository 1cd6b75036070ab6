//! A sharded stream queue: one logical queue spread over N Redis streams, each in a Redis
//! Cluster slot of its own, so that one busy queue is not pinned to one node.
//!
//! * [`ShardedQueue`] names the shards, the same way in every process.
//! * [`ShardedStreamProducer`] adds messages round robin, or by a key (all messages of one key
//!   in one shard, in order).
//! * [`ShardedStreamBroker`] consumes every shard, at-least-once, as one consumer of each
//!   shard's consumer group: it is one [`StreamBroker`](crate::StreamBroker) per shard
//!   behind one [`Broker`](pythia_core::Broker).
//!
//! # Shard names
//!
//! Shard `i` of the queue `orders` is the stream `{orders#i.k}`: the whole name is its hash
//! tag, so the shard's own Pythia keys (`pythia:{orders#i.k}:dlq`, `…:scheduled`,
//! `…:heartbeat:<consumer>`) live in the shard's slot, and two queues never share a tag. `k` is
//! the smallest number from 0 up that puts the shard's slot (`CLUSTER KEYSLOT`) in the window
//! of `max(16384 / (4·N), 64)` slots centred on `(2i + 1) · 16384 / (2N)`: the shards sit
//! evenly over the slot space, so that on a cluster whose masters own equal contiguous slot
//! ranges (what `redis-cli --cluster create` makes) they spread over the masters as evenly as
//! the counts allow (4 shards on 3 masters: 1, 2 and 1). After a resharding that moves slot
//! ranges, the names stay and the spread is whatever the new ranges make it. On a standalone
//! server the shards are just N streams.
//!
//! Find them with [`ShardedQueue::streams`], in `GET pythia:{orders}:shards` (the layout, one
//! name a line, written by the first producer or consumer), or with
//! `redis-cli --scan --pattern '{orders#*'` (on a cluster, against each master).
//!
//! # The layout is checked
//!
//! A producer and a consumer that disagree on the shard count would write to streams nobody
//! reads. The first call of each (fetch, add) stores the layout with `SET … NX` in
//! `<prefix>:{<queue>}:shards` and compares it with its own: a mismatch is a
//! [`Config`](pythia_core::BrokerErrorKind::Config) error (fatal for a worker). To change
//! the shard count, drain the queue, stop its producers and consumers, and delete that key.

mod broker;
mod fetch;
mod producer;
mod queue;

use std::fmt;

use crate::stream::StreamEntryId;
use pythia_core::BrokerError;

pub use self::broker::ShardedStreamBroker;
pub use self::producer::ShardedStreamProducer;
pub use self::queue::ShardedQueue;

/// The token of a [`ShardedStreamBroker`] delivery: the shard and the entry's id in the
/// shard's stream. Copy, no allocation; shown as `<shard>/<entry id>`.
///
/// ```
/// use pythia_redis::{ShardEntryId, StreamEntryId};
///
/// let token = ShardEntryId::new(2, StreamEntryId::new(1_700_000_000_000, 0));
/// assert_eq!(token.to_string(), "2/1700000000000-0");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardEntryId {
    shard: u32,
    id: StreamEntryId,
}

impl ShardEntryId {
    /// Entry `id` of shard `shard`.
    pub const fn new(shard: u32, id: StreamEntryId) -> Self {
        Self { shard, id }
    }

    /// The shard index.
    pub fn shard(self) -> usize {
        self.shard as usize
    }

    /// The entry's id in the shard's stream.
    pub fn id(self) -> StreamEntryId {
        self.id
    }
}

impl fmt::Display for ShardEntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.shard, self.id)
    }
}

/// The values of every result, or the first error.
fn first_error<T>(results: Vec<Result<T, BrokerError>>) -> Result<Vec<T>, BrokerError> {
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_show_shard_and_entry() {
        let t = ShardEntryId::new(3, StreamEntryId::new(5, 6));
        assert_eq!((t.shard(), t.id()), (3, StreamEntryId::new(5, 6)));
        assert_eq!(t.to_string(), "3/5-6");
    }
}
