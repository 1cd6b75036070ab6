//! [`ListProducer`]: pushes messages onto a Redis list, one or many per round trip.

use crate::connection::SharedConnection;
use pythia_core::{BrokerError, Message, envelope};

use crate::connection::RedisConnection;
use crate::list::ListSide;

/// Values per `LPUSH`/`RPUSH` call when pushing many.
pub const PUSH_CHUNK: usize = 1000;
/// Messages per pipeline (one round trip) when pushing many: bounds the memory a large push
/// holds at once.
pub const PIPELINE_MESSAGES: usize = 10_000;

/// How a producer writes each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Encoding {
    /// The Pythia JSON envelope: id, attempt, enqueue time (for latency metrics), headers, body.
    #[default]
    Envelope,
    /// The body alone, byte for byte; id, headers and enqueue time are not sent.
    Raw,
}

/// Pushes messages onto the list a [`ListBroker`](crate::ListBroker) or
/// [`ReliableListBroker`](crate::ReliableListBroker) consumes.
///
/// Set the same [`ListSide`] as the consumers: the producer pushes on the other end, so the
/// queue is first-in first-out. Many messages go out in one pipeline of multi-value pushes.
///
/// ```no_run
/// use pythia_core::Message;
/// use pythia_redis::{ListProducer, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let producer = ListProducer::new(&conn, "jobs");
/// producer.push(&Message::new("one")).await?;
/// let n = producer.push_many(&[Message::new("two"), Message::new("three")]).await?;
/// assert_eq!(n, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ListProducer {
    conn: RedisConnection,
    manager: SharedConnection,
    queue: String,
    side: ListSide,
    encoding: Encoding,
}

impl ListProducer {
    /// A producer for the list `queue`, for consumers popping the right end, writing envelopes.
    pub fn new(conn: &RedisConnection, queue: &str) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            queue: queue.to_owned(),
            side: ListSide::default(),
            encoding: Encoding::default(),
        }
    }

    /// The end the consumers pop (the producer pushes the other).
    #[must_use]
    pub fn with_side(mut self, side: ListSide) -> Self {
        self.side = side;
        self
    }

    /// Envelope (default) or raw bodies.
    #[must_use]
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Pushes one message.
    pub async fn push(&self, msg: &Message) -> Result<(), BrokerError> {
        self.push_many(std::slice::from_ref(msg)).await.map(drop)
    }

    /// Pushes messages in order: multi-value pushes of [`PUSH_CHUNK`], pipelined by
    /// [`PIPELINE_MESSAGES`]; returns how many were pushed.
    pub async fn push_many(&self, msgs: &[Message]) -> Result<usize, BrokerError> {
        let mut scratch = Vec::with_capacity(256);
        let mut m = self.manager.clone();
        for group in msgs.chunks(PIPELINE_MESSAGES) {
            let mut pipe = redis::pipe();
            for chunk in group.chunks(PUSH_CHUNK) {
                let cmd = pipe.cmd(self.side.push_cmd()).arg(&self.queue);
                for msg in chunk {
                    scratch.clear();
                    match self.encoding {
                        Encoding::Envelope => envelope::encode_into(&mut scratch, msg),
                        Encoding::Raw => scratch.extend_from_slice(msg.body()),
                    }
                    cmd.arg(&scratch[..]);
                }
                cmd.ignore();
            }
            pipe.query_async::<()>(&mut m)
                .await
                .map_err(|e| self.conn.error(self.side.push_cmd(), e))?;
        }
        Ok(msgs.len())
    }

    /// Pushes ready-made payloads (raw bodies or envelopes) in order; returns how many.
    pub async fn push_payloads<P: AsRef<[u8]>>(
        &self,
        payloads: &[P],
    ) -> Result<usize, BrokerError> {
        if payloads.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for chunk in payloads.chunks(PUSH_CHUNK) {
            let chunk: Vec<&[u8]> = chunk.iter().map(AsRef::as_ref).collect();
            pipe.cmd(self.side.push_cmd())
                .arg(&self.queue)
                .arg(chunk)
                .ignore();
        }
        let mut m = self.manager.clone();
        pipe.query_async::<()>(&mut m)
            .await
            .map_err(|e| self.conn.error(self.side.push_cmd(), e))?;
        Ok(payloads.len())
    }
}
