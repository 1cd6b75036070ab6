//! [`ScheduledMessages`]: what waits in a queue's schedule (delayed messages and retries), paged
//! in due order, and cancelling one by its message id.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pythia_core::{BrokerError, Message, Source, envelope};

use crate::call::Call;
use crate::connection::transient_retry::retry_transient;
use crate::connection::{RedisConnection, SharedConnection};
use crate::coord::delayed::DELAYED_MEMBER_PREFIX;
use crate::coord::destination::decode_scheduled_fields;
use crate::keys::QueueKeys;
use crate::stream::message_from_entry;

/// Schedule members read per call when searching for a retry to cancel.
const SEARCH_PAGE: usize = 500;

/// Why a message waits in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduledKind {
    /// Scheduled by a [`DelayedProducer`](crate::DelayedProducer) (or `pythia produce --delay`).
    Delayed,
    /// A failed delivery waiting for its next attempt.
    Retry,
}

impl ScheduledKind {
    /// `"delayed"` or `"retry"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delayed => "delayed",
            Self::Retry => "retry",
        }
    }
}

/// One message waiting in a queue's schedule.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScheduledMessage {
    /// Delayed or a retry.
    pub kind: ScheduledKind,
    /// When it is due (promoted to the queue within a maintenance interval after).
    pub due_at: SystemTime,
    /// The message as it will be delivered: id, attempt (the attempt it will be), body, headers.
    /// `None` for a delayed member whose payload is missing.
    pub message: Option<Message>,
    /// The message id (also for a missing payload: the delayed member names it).
    pub id: String,
}

/// One page of a schedule, in due order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScheduledPage {
    /// The messages on this page.
    pub messages: Vec<ScheduledMessage>,
    /// How many wait in the schedule in all.
    pub total: u64,
}

/// A queue's schedule, the sorted set `<prefix>:{queue}:scheduled` where delayed messages and
/// retries of lists and streams wait for their time: listed in pages, cancelled by id.
///
/// ```no_run
/// use pythia_redis::{RedisConfig, RedisConnection, ScheduledMessages};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let schedule = ScheduledMessages::new(&conn, "emails");
/// let page = schedule.list(0, 20).await?;
/// for m in &page.messages {
///     println!("{} {} due {:?}", m.kind.as_str(), m.id, m.due_at);
/// }
/// schedule.cancel("reminder-42").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ScheduledMessages {
    conn: RedisConnection,
    manager: SharedConnection,
    keys: QueueKeys,
    source: Source,
}

impl ScheduledMessages {
    /// The schedule of `queue` (a list or a stream).
    pub fn new(conn: &RedisConnection, queue: &str) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            keys: QueueKeys::new(conn.config().key_prefix(), queue),
            source: Source::new("scheduled", queue),
        }
    }

    /// Up to `count` messages from position `offset` (0 = the next due).
    pub async fn list(&self, offset: usize, count: usize) -> Result<ScheduledPage, BrokerError> {
        let (members, total) = self.page(offset, count).await?;
        let delayed_ids: Vec<&[u8]> = members
            .iter()
            .filter_map(|(m, _)| m.strip_prefix(DELAYED_MEMBER_PREFIX.as_bytes()))
            .collect();
        let payloads: Vec<Option<Vec<u8>>> = if delayed_ids.is_empty() {
            Vec::new()
        } else {
            retry_transient("read delayed payloads", || {
                let mut m = self.manager.clone();
                let cmd = redis::cmd("HMGET")
                    .arg(self.keys.scheduled_ids())
                    .arg(&delayed_ids)
                    .clone();
                async move {
                    cmd.query_async(&mut m)
                        .await
                        .map_err(|e| self.conn.error("HMGET", e))
                }
            })
            .await?
        };
        let mut payloads = payloads.into_iter();
        let messages = members
            .into_iter()
            .map(|(member, score)| {
                let due_at = UNIX_EPOCH + Duration::from_millis(score.max(0.0) as u64);
                match member.strip_prefix(DELAYED_MEMBER_PREFIX.as_bytes()) {
                    Some(id) => {
                        let message = payloads.next().flatten().map(|p| self.decode(&p));
                        ScheduledMessage {
                            kind: ScheduledKind::Delayed,
                            due_at,
                            id: String::from_utf8_lossy(id).into_owned(),
                            message,
                        }
                    }
                    None => {
                        let message = self.decode(&member);
                        ScheduledMessage {
                            kind: ScheduledKind::Retry,
                            due_at,
                            id: message.id().to_owned(),
                            message: Some(message),
                        }
                    }
                }
            })
            .collect();
        Ok(ScheduledPage { messages, total })
    }

    /// Cancels the scheduled message `id`, delayed or retry: it is removed and never delivered
    /// (a cancelled retry is dropped, not dead-lettered). Returns what it was, or `None` when
    /// nothing with that id waits (promoted already, cancelled, never there).
    ///
    /// A delayed message goes in one script; a retry is found by reading the schedule in pages
    /// and removed with `ZREM` of its exact member, so a retry promoted meanwhile is left alone.
    pub async fn cancel(&self, id: &str) -> Result<Option<ScheduledKind>, BrokerError> {
        if super::delayed::cancel_delayed(&self.conn, &self.keys, id).await? {
            return Ok(Some(ScheduledKind::Delayed));
        }
        let mut offset = 0;
        loop {
            let (members, total) = self.page(offset, SEARCH_PAGE).await?;
            for (member, _) in &members {
                if member.starts_with(DELAYED_MEMBER_PREFIX.as_bytes()) {
                    continue;
                }
                if self.decode(member).id() == id {
                    let mut m = self.manager.clone();
                    let removed: u64 = redis::cmd("ZREM")
                        .arg(self.keys.scheduled())
                        .arg(&member[..])
                        .query_async(&mut m)
                        .await
                        .map_err(|e| self.conn.error("ZREM", e))?;
                    if removed > 0 {
                        return Ok(Some(ScheduledKind::Retry));
                    }
                }
            }
            offset += members.len();
            if members.len() < SEARCH_PAGE || offset as u64 >= total {
                return Ok(None);
            }
        }
    }

    /// Members and scores from rank `offset`, and the schedule's size.
    async fn page(
        &self,
        offset: usize,
        count: usize,
    ) -> Result<(Vec<(Vec<u8>, f64)>, u64), BrokerError> {
        if count == 0 {
            return Ok((Vec::new(), 0));
        }
        let call = &page_call(&self.keys, offset, count);
        retry_transient("read the schedule", || async move {
            let mut m = self.manager.clone();
            call.query(&mut m)
                .await
                .map_err(|e| self.conn.error("ZRANGE", e))
        })
        .await
    }

    /// A schedule payload as a message: encoded stream fields, or a list envelope.
    fn decode(&self, payload: &[u8]) -> Message {
        if let Some(parts) = decode_scheduled_fields(payload)
            && parts.iter().step_by(2).any(|name| *name == b"body")
        {
            let fields = parts
                .chunks(2)
                .map(|p| (p[0].to_vec(), p[1].to_vec()))
                .collect();
            return message_from_entry("", fields, &self.source);
        }
        envelope::decode(Bytes::copy_from_slice(payload), &self.source)
    }
}

/// `count` (> 0) members of the schedule of the queue `keys` name, with their scores, from rank
/// `offset`, and the schedule's size, pipelined: replies `([(member, score)…], size)`.
fn page_call(keys: &QueueKeys, offset: usize, count: usize) -> Call {
    let mut pipe = redis::pipe();
    pipe.cmd("ZRANGE")
        .arg(keys.scheduled())
        .arg(offset)
        .arg(offset + count - 1)
        .arg("WITHSCORES")
        .cmd("ZCARD")
        .arg(keys.scheduled());
    Call::pipeline(pipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_a_rank_range_with_scores_and_the_size() {
        assert_eq!(
            page_call(&QueueKeys::new("pythia", "mail"), 20, 10).commands_text(),
            [
                vec![
                    "ZRANGE",
                    "pythia:{mail}:scheduled",
                    "20",
                    "29",
                    "WITHSCORES"
                ],
                vec!["ZCARD", "pythia:{mail}:scheduled"]
            ]
        );
    }
}
