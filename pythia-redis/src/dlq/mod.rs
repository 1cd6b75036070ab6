//! [`DeadLetterQueue`]: read, replay and purge the dead letters of a queue.
//!
//! Where dead letters are kept:
//!
//! * list, reliable list and pub/sub: the list `<prefix>:{queue}:dlq`, newest first, of
//!   envelopes written by [`envelope::encode_dead_letter`] (the message, `"error"` and
//!   `"failed_at"`);
//! * stream: the stream `<prefix>:{stream}:dlq`, one entry per dead letter holding the original
//!   entry's fields plus `pythia-error`, `pythia-attempt`, `pythia-failed-at` and
//!   `pythia-entry-id` (see [`crate::stream::fields`]).
//!
//! A replay is atomic per message (one Lua script): a dead letter leaves the dead-letter queue
//! only when its message is put back, and is put back only if it was still there, so a replay
//! racing a purge or another replay never loses or doubles a message.

mod commands;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pythia_core::{BrokerError, Source, envelope};
use redis::Value;

use crate::connection::RedisConnection;
use crate::keys::QueueKeys;
use crate::list::ListSide;
use crate::stream::{fields, message_from_entry};

/// Dead letters per replay script call and per page read.
const CHUNK: usize = 200;

/// Where replayed messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Pushed onto the producers' end of the list.
    List(ListSide),
    /// Added to the stream as new entries.
    Stream,
    /// Published to the channel.
    Channel,
}

impl Target {
    /// The command that counts the dead letters: a stream's or a list's length.
    fn len_command(self) -> &'static str {
        if self == Target::Stream {
            "XLEN"
        } else {
            "LLEN"
        }
    }
}

/// The fields of a stream entry, in order.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// How a dead letter is found again in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Handle {
    /// The list item, byte for byte.
    Item(Bytes),
    /// The dead-letter stream entry: its id and fields.
    Entry { id: String, fields: Fields },
}

/// One dead letter of a [`DeadLetterQueue`]: the workspace's [`pythia_core::DeadLetter`] with
/// the queue's handle on it ([`DlqEntry`]), which replay and delete use to touch exactly that
/// item or entry.
pub type DeadLetter = pythia_core::DeadLetter<DlqEntry>;

/// Where a dead letter is in its queue: the list item byte for byte, or the dead-letter stream
/// entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqEntry(Handle);

impl DlqEntry {
    /// Stream dead letters: the id of the entry in the dead-letter stream.
    pub fn entry_id(&self) -> Option<&str> {
        match &self.0 {
            Handle::Entry { id, .. } => Some(id),
            Handle::Item(_) => None,
        }
    }

    /// Stream dead letters: the id the entry had in the stream it was read from.
    pub fn original_entry_id(&self) -> Option<String> {
        match &self.0 {
            Handle::Entry { fields: f, .. } => f
                .iter()
                .find(|(k, _)| k == fields::ENTRY_ID.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned()),
            Handle::Item(_) => None,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Messages put back on the queue (and removed from the dead-letter queue).
    pub replayed: u64,
    /// Dead letters no longer there (replayed, purged or trimmed meanwhile): nothing done.
    pub missing: u64,
    /// Pub/sub: messages left in the dead-letter list because no subscriber received the
    /// first of them (the replay stops there: publishing to nobody would lose them).
    pub unheard: u64,
    /// Stream dead letters with more fields than a script can pass to one command: left in the
    /// dead-letter stream, untouched (replay them with `XADD` by hand).
    pub too_big: u64,
}

impl std::ops::AddAssign for ReplayReport {
    fn add_assign(&mut self, o: Self) {
        self.replayed += o.replayed;
        self.missing += o.missing;
        self.unheard += o.unheard;
        self.too_big += o.too_big;
    }
}

/// The dead letters of one queue: read them, put them back on the queue, or delete them.
///
/// A replayed message keeps its id, body and headers; its attempt starts again at 1 and its
/// enqueue time is the time of the replay. Pythia's bookkeeping (error, failure time) is
/// dropped. A stream dead letter is added to the stream as a new entry with its original fields
/// (body and headers, `pythia-id`, and `pythia-group`, so that only the consumer group that
/// dead-lettered it processes it again).
///
/// ```no_run
/// use pythia_redis::{DeadLetterQueue, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let dlq = DeadLetterQueue::list(&conn, "emails");
/// for d in dlq.newest(10).await? {
///     println!("{} failed: {:?}", d.message.id(), d.reason);
/// }
/// let report = dlq.replay_all().await?;
/// println!("{} back on the queue", report.replayed);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    conn: RedisConnection,
    keys: QueueKeys,
    key: String,
    target: Target,
    source: Source,
}

impl DeadLetterQueue {
    /// The dead letters of the list `queue` ([`ListBroker`](crate::ListBroker) and
    /// [`ReliableListBroker`](crate::ReliableListBroker)); replays are pushed on the producers'
    /// end for consumers popping the right end (see [`with_side`](Self::with_side)).
    pub fn list(conn: &RedisConnection, queue: &str) -> Self {
        Self::build(conn, queue, Target::List(ListSide::default()), "list")
    }

    /// The dead letters of the stream `stream` ([`StreamBroker`](crate::StreamBroker)).
    pub fn stream(conn: &RedisConnection, stream: &str) -> Self {
        Self::build(conn, stream, Target::Stream, "stream")
    }

    /// The dead letters of the pub/sub channel `channel` ([`PubSubBroker`](crate::PubSubBroker)
    /// with its default dead-letter list). Replays are published: a message no subscriber
    /// receives stays in the dead-letter list.
    pub fn channel(conn: &RedisConnection, channel: &str) -> Self {
        Self::build(conn, channel, Target::Channel, "pubsub")
    }

    fn build(conn: &RedisConnection, queue: &str, target: Target, broker: &'static str) -> Self {
        let keys = QueueKeys::new(conn.config().key_prefix(), queue);
        Self {
            conn: conn.clone(),
            key: keys.dead_letters(),
            keys,
            target,
            source: Source::new(broker, queue),
        }
    }

    /// List queues: the end the consumers pop (replays go on the other end, behind the
    /// queue's backlog). No effect on streams and channels.
    #[must_use]
    pub fn with_side(mut self, side: ListSide) -> Self {
        if let Target::List(_) = self.target {
            self.target = Target::List(side);
        }
        self
    }

    /// The key holding the dead letters.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How many dead letters there are.
    pub async fn len(&self) -> Result<u64, BrokerError> {
        let cmd = self.target.len_command();
        let mut m = self.conn.manager();
        redis::cmd(cmd)
            .arg(&self.key)
            .query_async(&mut m)
            .await
            .map_err(|e| self.conn.error(cmd, e))
    }

    /// True when there is no dead letter.
    pub async fn is_empty(&self) -> Result<bool, BrokerError> {
        Ok(self.len().await? == 0)
    }

    /// The `limit` most recent dead letters, newest first.
    pub async fn newest(&self, limit: usize) -> Result<Vec<DeadLetter>, BrokerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self.target {
            Target::Stream => self.entries("XREVRANGE", "+", "-", limit).await,
            _ => self.items(0, limit as isize - 1, false).await,
        }
    }

    /// The `limit` oldest dead letters, oldest first (the order [`replay_all`](Self::replay_all)
    /// puts them back in).
    pub async fn oldest(&self, limit: usize) -> Result<Vec<DeadLetter>, BrokerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self.target {
            Target::Stream => self.entries("XRANGE", "-", "+", limit).await,
            _ => self.items(-(limit as isize), -1, true).await,
        }
    }

    /// The dead letters named by `ids` (a message id, or a stream dead-letter entry id), and
    /// the ids not found.
    pub async fn find_ids(
        &self,
        ids: &[String],
    ) -> Result<(Vec<DeadLetter>, Vec<String>), BrokerError> {
        let named =
            |d: &DeadLetter, id: &str| d.message.id() == id || d.location.entry_id() == Some(id);
        let found = self.find(|d| ids.iter().any(|id| named(d, id))).await?;
        let missing = ids
            .iter()
            .filter(|id| !found.iter().any(|d| named(d, id)))
            .cloned()
            .collect();
        Ok((found, missing))
    }

    /// Every dead letter `keep` selects, oldest first, read in pages (dead letters added or
    /// removed while it reads may be missed).
    pub async fn find(
        &self,
        mut keep: impl FnMut(&DeadLetter) -> bool,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let mut found = Vec::new();
        match self.target {
            Target::Stream => {
                let mut from = "-".to_owned();
                loop {
                    let page = self.entries("XRANGE", &from, "+", CHUNK).await?;
                    let Some(last) = page.last().and_then(|d| d.location.entry_id()) else {
                        break;
                    };
                    from = format!("({last}");
                    let full = page.len() == CHUNK;
                    found.extend(page.into_iter().filter(|d| keep(d)));
                    if !full {
                        break;
                    }
                }
            }
            _ => {
                let mut skip = 0isize;
                loop {
                    let page = self
                        .items(-(skip + CHUNK as isize), -(skip + 1), true)
                        .await?;
                    let full = page.len() == CHUNK;
                    skip += page.len() as isize;
                    found.extend(page.into_iter().filter(|d| keep(d)));
                    if !full {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }

    /// Puts `letters` back on the queue, in the order given, each atomically: removed from the
    /// dead-letter queue only when re-enqueued, and re-enqueued only if still there.
    pub async fn replay(&self, letters: &[DeadLetter]) -> Result<ReplayReport, BrokerError> {
        let mut report = ReplayReport::default();
        for (i, chunk) in letters.chunks(CHUNK).enumerate() {
            let r = self.replay_chunk(chunk).await?;
            report += r;
            if r.unheard > 0 {
                // The rest were not tried either: nobody listens.
                let done = i * CHUNK + (r.replayed + r.missing) as usize;
                report.unheard = (letters.len() - done) as u64;
                break;
            }
        }
        Ok(report)
    }

    /// Puts every dead letter back on the queue, oldest first. Dead letters added while it
    /// runs (a replayed message failing again) are left for the next call: it replays at most
    /// as many as there were when it started.
    pub async fn replay_all(&self) -> Result<ReplayReport, BrokerError> {
        let mut left = self.len().await?;
        let mut report = ReplayReport::default();
        while left > 0 {
            let chunk = self.oldest((left as usize).min(CHUNK)).await?;
            if chunk.is_empty() {
                break;
            }
            left = left.saturating_sub(chunk.len() as u64);
            let r = self.replay(&chunk).await?;
            report += r;
            if r.unheard > 0 {
                report.unheard += left;
                break;
            }
        }
        Ok(report)
    }

    /// Deletes `letters`; returns how many were still there.
    pub async fn delete(&self, letters: &[DeadLetter]) -> Result<u64, BrokerError> {
        let mut removed = 0u64;
        let mut m = self.conn.manager();
        for chunk in letters.chunks(CHUNK) {
            let counts: Vec<u64> = commands::delete(&self.key, chunk)
                .query(&mut m)
                .await
                .map_err(|e| self.conn.error("delete dead letters", e))?;
            removed += counts.iter().sum::<u64>();
        }
        Ok(removed)
    }

    /// Deletes every dead letter; returns how many there were.
    pub async fn purge(&self) -> Result<u64, BrokerError> {
        let mut m = self.conn.manager();
        let (n, _): (u64, u64) = commands::purge(&self.key, self.target)
            .query(&mut m)
            .await
            .map_err(|e| self.conn.error("purge dead letters", e))?;
        Ok(n)
    }

    async fn replay_chunk(&self, chunk: &[DeadLetter]) -> Result<ReplayReport, BrokerError> {
        if chunk.is_empty() {
            return Ok(ReplayReport::default());
        }
        let call = commands::replay(
            &self.key,
            self.keys.queue(),
            self.target,
            chunk,
            SystemTime::now(),
        );
        let mut m = self.conn.manager();
        let (replayed, missing, unheard, too_big): (u64, u64, u64, u64) = call
            .query(&mut m)
            .await
            .map_err(|e| self.conn.error("replay dead letters", e))?;
        if too_big > 0 {
            tracing::warn!(
                count = too_big,
                queue = self.keys.queue(),
                "dead letters with too many fields for a script were left in the dead-letter stream"
            );
        }
        Ok(ReplayReport {
            replayed,
            missing,
            unheard,
            too_big,
        })
    }

    /// List items `start..=stop` (LRANGE indexes), oldest first when `reverse`.
    async fn items(
        &self,
        start: isize,
        stop: isize,
        reverse: bool,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let mut m = self.conn.manager();
        let mut raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&self.key)
            .arg(start)
            .arg(stop)
            .query_async(&mut m)
            .await
            .map_err(|e| self.conn.error("LRANGE", e))?;
        if reverse {
            raw.reverse();
        }
        Ok(raw
            .into_iter()
            .map(|item| {
                let item = Bytes::from(item);
                envelope::decode_dead_letter(item.clone(), &self.source)
                    .at(DlqEntry(Handle::Item(item)))
            })
            .collect())
    }

    /// Stream entries by `XRANGE`/`XREVRANGE`.
    async fn entries(
        &self,
        cmd: &str,
        from: &str,
        to: &str,
        count: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let mut m = self.conn.manager();
        let reply: Value = redis::cmd(cmd)
            .arg(&self.key)
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut m)
            .await
            .map_err(|e| self.conn.error(cmd, e))?;
        Ok(parse_entries(reply)
            .into_iter()
            .map(|(id, f)| {
                let field = |name: &str| {
                    f.iter()
                        .find(|(k, _)| k == name.as_bytes())
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                };
                let reason = field(fields::ERROR);
                let failed_at = field(fields::FAILED_AT)
                    .and_then(|ms| ms.trim().parse().ok())
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
                pythia_core::DeadLetter::new(
                    message_from_entry(&id, f.clone(), &self.source),
                    reason,
                    failed_at,
                )
                .at(DlqEntry(Handle::Entry { id, fields: f }))
            })
            .collect())
    }
}

fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// `[[id, [field, value, …]], …]` (or the fields as a RESP3 map).
fn parse_entries(reply: Value) -> Vec<(String, Fields)> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|e| {
            let Value::Array(mut parts) = e else {
                return None;
            };
            if parts.len() != 2 {
                return None;
            }
            let f = parts.pop()?;
            let id = String::from_utf8(bytes_of(parts.pop()?)?).ok()?;
            let pairs = match f {
                Value::Array(flat) => {
                    let mut it = flat.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((bytes_of(k)?, bytes_of(v)?));
                    }
                    pairs
                }
                Value::Map(map) => map
                    .into_iter()
                    .filter_map(|(k, v)| Some((bytes_of(k)?, bytes_of(v)?)))
                    .collect(),
                _ => return None,
            };
            Some((id, pairs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("body"), bulk("x"), bulk("k"), bulk("v")]),
        ])]);
        let e = parse_entries(reply);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, "1-0");
        assert_eq!(e[0].1[1], (b"k".to_vec(), b"v".to_vec()));
    }
}
