//! [`ListProducer`]: pushes messages onto a Redis list, one or many per round trip.

use crate::connection::SharedConnection;
use crate::connection::in_order::InOrder;
use pythia_core::{BrokerError, Message, envelope, python_wire};

use crate::connection::RedisConnection;
use crate::list::ListSide;
use crate::queues::registry::{QueueKind, Registration};

/// Values per `LPUSH`/`RPUSH` call when pushing many.
pub const PUSH_CHUNK: usize = 1000;
/// Pushes sent and not yet answered while the next is encoded, when pushing many: one keeps
/// Redis busy while the client works, two also hide the round trip between them.
pub const PUSHES_IN_FLIGHT: usize = 2;

/// How a producer writes each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Encoding {
    /// The Pythia JSON envelope: id, attempt, enqueue time (for latency metrics), headers, body.
    #[default]
    Envelope,
    /// The body alone, byte for byte; id, headers and enqueue time are not sent.
    Raw,
    /// Exactly what the Python `pythia-framework` 1.0.x producers write (see
    /// [`pythia_core::python_wire`]), for Python consumers: on a list the JSON
    /// `{"body": …, "headers": {…}, "message_id": …}`, on a stream the fields `body` and
    /// `header_<name>`, on a channel the body alone. Attempt and enqueue time are not sent; a body that is not UTF-8 is sent
    /// as hex digits.
    PythiaPy,
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
    registration: Registration,
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
            registration: Registration::producer(conn, queue, QueueKind::List),
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

    /// Pushes messages in order, in multi-value pushes of [`PUSH_CHUNK`]; returns how many
    /// were pushed.
    ///
    /// Up to [`PUSHES_IN_FLIGHT`] pushes are on their way (in order, on one connection) while
    /// the next is encoded, and command buffers are reused: fresh multi-megabyte pipeline
    /// buffers cost more in page faults than Redis spends on the pushes (measured in
    /// BENCHMARKS.md). At most `PUSHES_IN_FLIGHT + 1` chunks' encodings are held at once,
    /// however many messages are given. On an error, every chunk before the failed one is on
    /// the list, and the one sent after it may be.
    pub async fn push_many(&self, msgs: &[Message]) -> Result<usize, BrokerError> {
        self.registration.ensure(&self.conn).await;
        let started = std::time::Instant::now();
        let mut spare: Vec<redis::Cmd> = Vec::new();
        let mut window = InOrder::new(PUSHES_IN_FLIGHT);
        let mut scratch = Vec::with_capacity(256);
        for chunk in msgs.chunks(PUSH_CHUNK) {
            let mut cmd = spare.pop().unwrap_or_default();
            self.build_push(&mut cmd, chunk, &mut scratch);
            if let Some((cmd, res)) = window.send(send_owned(cmd, self.manager.clone())).await {
                res.map_err(|e| self.conn.error(self.side.push_cmd(), e))?;
                spare.push(cmd);
            }
        }
        while let Some((_, res)) = window.next().await {
            res.map_err(|e| self.conn.error(self.side.push_cmd(), e))?;
        }
        self.conn
            .client_metrics()
            .observe(crate::client_metrics::Op::Produce, started);
        Ok(msgs.len())
    }

    /// Makes `cmd` (its buffers reused) the push of `chunk`.
    fn build_push(&self, cmd: &mut redis::Cmd, chunk: &[Message], scratch: &mut Vec<u8>) {
        cmd.clear();
        cmd.arg(self.side.push_cmd()).arg(&self.queue);
        for msg in chunk {
            match self.encoding {
                Encoding::Envelope => {
                    scratch.clear();
                    envelope::encode_into(scratch, msg);
                    cmd.arg(&scratch[..]);
                }
                Encoding::Raw => {
                    cmd.arg(msg.body().as_ref());
                }
                Encoding::PythiaPy => {
                    scratch.clear();
                    python_wire::encode_list_item_into(scratch, msg);
                    cmd.arg(&scratch[..]);
                }
            }
        }
    }

    /// Pushes ready-made payloads (raw bodies or envelopes) in order; returns how many.
    pub async fn push_payloads<P: AsRef<[u8]>>(
        &self,
        payloads: &[P],
    ) -> Result<usize, BrokerError> {
        if payloads.is_empty() {
            return Ok(0);
        }
        self.registration.ensure(&self.conn).await;
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

/// Sends `cmd` and hands it back with the outcome, so that its buffers serve the next push.
async fn send_owned(
    cmd: redis::Cmd,
    mut conn: SharedConnection,
) -> (redis::Cmd, redis::RedisResult<()>) {
    let res = cmd.query_async::<()>(&mut conn).await;
    (cmd, res)
}
