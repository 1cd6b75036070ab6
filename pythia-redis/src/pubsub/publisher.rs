//! [`Publisher`]: `PUBLISH`es messages to a Redis pub/sub channel (`SPUBLISH` on a Redis
//! Cluster), one or many per round trip.

use crate::connection::SharedConnection;
use pythia_core::{BrokerError, Message, envelope};

use super::commands::publish;
use crate::connection::RedisConnection;
use crate::list::producer::Encoding;
use crate::queues::registry::{QueueKind, Registration};

/// `PUBLISH` commands per pipeline when publishing many (on a Redis Cluster: payloads per
/// script call).
pub const PUBLISH_CHUNK: usize = 1000;

/// Publishes messages to the channel a [`PubSubBroker`](crate::PubSubBroker) subscribes to
/// (directly, or through a pattern).
///
/// Each call returns how many subscribers received each message, as Redis counts them. A count
/// of 0 means nobody was subscribed and the message is gone: pub/sub keeps nothing.
///
/// Many messages go out as pipelines of up to [`PUBLISH_CHUNK`] `PUBLISH` commands. When a
/// call fails (the connection dropped mid-way), part of the batch may have been published.
///
/// # On a Redis Cluster
///
/// The publisher uses sharded pub/sub, as a cluster [`PubSubBroker`](crate::PubSubBroker)
/// does: `SPUBLISH`, on the master that owns the channel's hash slot, which relays each
/// message to the shard's replicas. The count is the master's own subscribers (a cluster
/// `PubSubBroker` subscribes there; subscribers attached to a replica receive the message but
/// are not counted). A subscriber that used classic `SUBSCRIBE` receives nothing.
///
/// # Behaviour
///
/// On a cluster each chunk of up to [`PUBLISH_CHUNK`] payloads is one Lua script call
/// (`EVALSHA`, so the user needs the `@scripting` ACL category) that runs `SPUBLISH` per
/// payload. A bare `SPUBLISH` would be routed like a read: a replica accepts it for its
/// master's slots and delivers it to its own subscribers only. After a failover, while the
/// shared connection still names the demoted master first for the slot, every message would
/// go there, counted 0, and be lost without an error. A script is a write, so a replica
/// answers `MOVED` and the connection follows it to the new master. While the master is down
/// and its replica not yet promoted, publishing fails with a retryable
/// [`Connection`](pythia_core::BrokerErrorKind::Connection) error.
///
/// ```no_run
/// use pythia_core::Message;
/// use pythia_redis::{Encoding, Publisher, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let news = Publisher::new(&conn, "news");
/// let receivers = news.publish(&Message::new("hello")).await?;
/// println!("{receivers} subscribers got it");
/// let counts = news
///     .publish_many(&[Message::new("two"), Message::new("three")])
///     .await?;
/// assert_eq!(counts.len(), 2);
/// // Bodies alone, for subscribers that are not Pythia workers:
/// Publisher::new(&conn, "legacy")
///     .with_encoding(Encoding::Raw)
///     .publish(&Message::new("plain text"))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Publisher {
    conn: RedisConnection,
    manager: SharedConnection,
    channel: String,
    encoding: Encoding,
    sharded: bool,
    registration: Registration,
}

impl Publisher {
    /// A publisher to `channel`, writing Pythia envelopes.
    pub fn new(conn: &RedisConnection, channel: &str) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            channel: channel.to_owned(),
            encoding: Encoding::default(),
            sharded: conn.is_cluster(),
            registration: Registration::producer(conn, channel, QueueKind::Pubsub),
        }
    }

    /// Envelope (default: id, attempt, enqueue time and headers travel with the body) or raw
    /// bodies.
    #[must_use]
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The channel this publisher writes to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Whether messages go out with `SPUBLISH` (sharded pub/sub): true on a Redis Cluster.
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    fn encode(&self, msg: &Message) -> Vec<u8> {
        match self.encoding {
            Encoding::Envelope => envelope::encode(msg),
            Encoding::Raw => msg.body().to_vec(),
            Encoding::PythiaPy => pythia_core::python_wire::pubsub_payload(msg),
        }
    }

    /// Publishes one message; returns how many subscribers received it.
    pub async fn publish(&self, msg: &Message) -> Result<usize, BrokerError> {
        let counts = self.publish_many(std::slice::from_ref(msg)).await?;
        Ok(counts.first().copied().unwrap_or(0))
    }

    /// Publishes messages in order, pipelined; returns the receiver count of each.
    pub async fn publish_many(&self, msgs: &[Message]) -> Result<Vec<usize>, BrokerError> {
        let payloads: Vec<Vec<u8>> = msgs.iter().map(|m| self.encode(m)).collect();
        self.publish_payloads(&payloads).await
    }

    /// Publishes ready-made payloads (raw bodies or envelopes) in order, pipelined; returns the
    /// receiver count of each.
    pub async fn publish_payloads<P: AsRef<[u8]>>(
        &self,
        payloads: &[P],
    ) -> Result<Vec<usize>, BrokerError> {
        self.registration.ensure(&self.conn).await;
        let mut counts = Vec::with_capacity(payloads.len());
        let mut m = self.manager.clone();
        let started = std::time::Instant::now();
        for chunk in payloads.chunks(PUBLISH_CHUNK) {
            let what = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
            let got: Vec<usize> = publish(&self.channel, self.sharded, chunk)
                .query(&mut m)
                .await
                .map_err(|e| self.conn.error(what, e))?;
            counts.extend(got);
        }
        self.conn
            .client_metrics()
            .observe(crate::client_metrics::Op::Produce, started);
        Ok(counts)
    }
}
