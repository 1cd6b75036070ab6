//! [`StreamProducer`]: adds messages to a Redis stream, one or many per round trip.

use std::time::SystemTime;

use crate::connection::SharedConnection;
use pythia_core::message::unix_millis;
use pythia_core::{BrokerError, Message};
use redis::Value;

use crate::connection::RedisConnection;
use crate::connection::in_order::InOrder;
use crate::list::producer::Encoding;
use crate::queues::registry::{QueueKind, Registration};
use crate::stream::{StreamEntryId, fields};

/// `XADD`s per pipeline (one round trip) when adding many.
pub const XADD_PIPELINE_CHUNK: usize = 1000;
/// Pipelines sent and not yet answered while the next is built, when adding many.
pub const PIPELINES_IN_FLIGHT: usize = 2;

/// How much older than now a message's enqueue time must be for `pythia-enqueued-at` to be
/// written; a fresher one is the time in the entry id, to within this.
const ENQUEUED_AT_SLACK_MS: u64 = 1000;

/// Adds messages to the stream a [`StreamBroker`](crate::StreamBroker) consumes.
///
/// Each message is one entry (`XADD <stream> * …`):
///
/// * [`Encoding::Envelope`] (the default) writes the `body` field, `pythia-id` (the message id,
///   which then stays the same across retries), and one field per header. `pythia-attempt` is
///   written only for an attempt above 1, and `pythia-enqueued-at` only for a message enqueued
///   more than a second before (a replay): otherwise the time in the entry id, when Redis added
///   it, is the enqueue time. Every field costs Redis memory and reply bytes on each read, and
///   the reader an allocation or two, so the common entry carries two fields besides the
///   headers. Header names `body` and `pythia-…` are reserved and refused.
/// * [`Encoding::Raw`] writes the `body` field alone, for consumers that are not Pythia.
/// * [`Encoding::PythiaPy`] writes what the Python `pythia-framework` writes: `body` and
///   `header_<name>` fields.
///
/// **Trimming**: none by default. The consumers remove processed entries (see
/// [`StreamBroker`](crate::StreamBroker), "Memory"), never one a group has not been delivered,
/// so the stream holds the backlog and little more. [`with_max_len`](Self::with_max_len) opts in
/// to a hard cap, `XADD … MAXLEN ~ n`, that bounds the stream's memory even if every consumer is
/// gone: it drops the oldest entries whether they were delivered or not, so with a backlog
/// above `n` messages are **lost** (counted by the consumers in
/// [`TRIMMED_UNDELIVERED_TOTAL`](crate::stream::TRIMMED_UNDELIVERED_TOTAL) and logged). Size it
/// above the largest backlog you expect (about 100–200 bytes of Redis memory per entry of a
/// 100-byte body).
///
/// Many messages go out in pipelines of [`XADD_PIPELINE_CHUNK`] commands.
///
/// ```no_run
/// use pythia_core::Message;
/// use pythia_redis::{Encoding, RedisConfig, RedisConnection, StreamProducer};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let producer = StreamProducer::new(&conn, "events").with_max_len(Some(100_000));
/// let id = producer.add(&Message::new("one").with_header("tenant", "acme")).await?;
/// println!("added {id}");
/// let ids = producer.add_many(&[Message::new("two"), Message::new("three")]).await?;
/// assert_eq!(ids.len(), 2);
/// // For a consumer that knows nothing of Pythia: just the body field.
/// let raw = StreamProducer::new(&conn, "events").with_encoding(Encoding::Raw);
/// raw.add(&Message::new("x")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StreamProducer {
    conn: RedisConnection,
    manager: SharedConnection,
    stream: String,
    max_len: Option<usize>,
    encoding: Encoding,
    registration: Registration,
}

impl StreamProducer {
    /// A producer for `stream`, writing Pythia's fields, trimming nothing.
    pub fn new(conn: &RedisConnection, stream: &str) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            stream: stream.to_owned(),
            max_len: None,
            encoding: Encoding::default(),
            registration: Registration::producer(conn, stream, QueueKind::Stream),
        }
    }

    /// The approximate cap on the stream's length (`MAXLEN ~ n`, at least 1), or `None` (the
    /// default) to add without trimming. A cap drops entries no group has been delivered when
    /// the backlog outgrows it: see "Trimming" above.
    #[must_use]
    pub fn with_max_len(mut self, max_len: Option<usize>) -> Self {
        self.max_len = max_len.map(|n| n.max(1));
        self
    }

    /// Pythia's fields (default) or the body alone.
    #[must_use]
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The stream key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Adds one message; returns its entry id.
    pub async fn add(&self, msg: &Message) -> Result<StreamEntryId, BrokerError> {
        let ids = self.add_many(std::slice::from_ref(msg)).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| BrokerError::backend("XADD returned no id"))
    }

    /// Adds messages in order, pipelined; returns their entry ids.
    ///
    /// Fails with a [`Config`](pythia_core::BrokerErrorKind::Config) error, before sending
    /// anything, if a header name is reserved.
    pub async fn add_many(&self, msgs: &[Message]) -> Result<Vec<StreamEntryId>, BrokerError> {
        let refs: Vec<&Message> = msgs.iter().collect();
        self.check_headers(&refs)?;
        self.registration.ensure(&self.conn).await;
        self.add_refs(&refs).await
    }

    /// Refuses reserved header names (Envelope encoding only), before anything is sent.
    pub(crate) fn check_headers(&self, msgs: &[&Message]) -> Result<(), BrokerError> {
        if self.encoding == Encoding::Envelope {
            for msg in msgs {
                if let Some(name) = msg.headers().keys().find(|k| is_reserved(k)) {
                    return Err(BrokerError::config(format!(
                        "header {name:?} of message {} is reserved: stream headers may not be named \"body\" or start with \"pythia-\"",
                        msg.id()
                    )));
                }
            }
        }
        Ok(())
    }

    /// [`add_many`](Self::add_many) of messages already checked, by reference (the sharded
    /// producer hands each shard its part of a batch without copying it).
    pub(crate) async fn add_refs(
        &self,
        msgs: &[&Message],
    ) -> Result<Vec<StreamEntryId>, BrokerError> {
        let now = unix_millis(SystemTime::now());
        let started = std::time::Instant::now();
        let mut ids = Vec::with_capacity(msgs.len());
        // The next pipeline is built while Redis works on the previous ones (see `InOrder`).
        let mut window = InOrder::new(PIPELINES_IN_FLIGHT);
        for chunk in msgs.chunks(XADD_PIPELINE_CHUNK) {
            let mut pipe = redis::pipe();
            for msg in chunk {
                let cmd = pipe.cmd("XADD").arg(&self.stream);
                if let Some(n) = self.max_len {
                    cmd.arg("MAXLEN").arg("~").arg(n);
                }
                cmd.arg("*");
                if self.encoding == Encoding::PythiaPy {
                    for (k, v) in pythia_core::python_wire::stream_fields(msg) {
                        cmd.arg(k).arg(v);
                    }
                    continue;
                }
                cmd.arg(fields::BODY).arg(msg.body().as_ref());
                if self.encoding == Encoding::Envelope {
                    // Each field costs Redis memory and reply bytes, and the reader an allocation
                    // or two: only what the entry itself does not say is written.
                    cmd.arg(fields::ID).arg(msg.id());
                    if msg.attempt() > 1 {
                        cmd.arg(fields::ATTEMPT).arg(msg.attempt());
                    }
                    if let Some(at) = msg.enqueued_at().map(unix_millis)
                        && now.saturating_sub(at) > ENQUEUED_AT_SLACK_MS
                    {
                        cmd.arg(fields::ENQUEUED_AT).arg(at);
                    }
                    for (k, v) in msg.headers() {
                        cmd.arg(k).arg(v);
                    }
                }
            }
            if let Some(replies) = window.send(send_owned(pipe, self.manager.clone())).await {
                self.collect_ids(replies, &mut ids)?;
            }
        }
        while let Some(replies) = window.next().await {
            self.collect_ids(replies, &mut ids)?;
        }
        self.conn
            .client_metrics()
            .observe(crate::client_metrics::Op::Produce, started);
        Ok(ids)
    }

    /// Adds one entry with exactly the given fields (another producer's format, a replayed
    /// dead letter); returns its entry id. Nothing is checked or added.
    pub async fn add_fields<K, V>(&self, entry: &[(K, V)]) -> Result<StreamEntryId, BrokerError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        if entry.is_empty() {
            return Err(BrokerError::config(
                "a stream entry needs at least one field",
            ));
        }
        self.registration.ensure(&self.conn).await;
        let mut pipe = redis::pipe();
        let cmd = pipe.cmd("XADD").arg(&self.stream);
        if let Some(n) = self.max_len {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*");
        for (k, v) in entry {
            cmd.arg(k.as_ref()).arg(v.as_ref());
        }
        let mut ids = Vec::with_capacity(1);
        let replies = send_owned(pipe, self.manager.clone()).await;
        self.collect_ids(replies, &mut ids)?;
        ids.pop()
            .ok_or_else(|| BrokerError::backend("XADD returned no id"))
    }

    /// The entry ids of one pipeline's `XADD` replies, in order.
    fn collect_ids(
        &self,
        replies: redis::RedisResult<Vec<Value>>,
        ids: &mut Vec<StreamEntryId>,
    ) -> Result<(), BrokerError> {
        let replies = replies.map_err(|e| self.conn.error("XADD", e))?;
        for reply in replies {
            let id = match &reply {
                Value::BulkString(b) => StreamEntryId::parse(b),
                Value::SimpleString(s) => StreamEntryId::parse(s.as_bytes()),
                _ => None,
            };
            ids.push(id.ok_or_else(|| {
                BrokerError::backend(format!("XADD gave an unexpected reply: {reply:?}"))
            })?);
        }
        Ok(())
    }
}

fn is_reserved(name: &str) -> bool {
    name == fields::BODY || name.starts_with(fields::RESERVED_PREFIX)
}

/// Sends `pipe`; its replies, one per command.
async fn send_owned(
    pipe: redis::Pipeline,
    mut conn: SharedConnection,
) -> redis::RedisResult<Vec<Value>> {
    pipe.query_async(&mut conn).await
}
