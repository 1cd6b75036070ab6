//! Retries that survive a crash: a sorted set of messages scored by their due time, promoted to
//! the queue by a Lua script when due, and the dead-letter list they end in.

use std::time::{Duration, Instant, SystemTime};

use crate::connection::SharedConnection;
use pythia_core::{BrokerError, Message, envelope};

use crate::call::Call;
use crate::client_metrics::Op;
use crate::connection::RedisConnection;
use crate::coord::destination::decode_scheduled_fields;
use crate::keys::QueueKeys;
use crate::list::ListSide;
use crate::scripts::{PROMOTE_DUE, STREAM_PROMOTE};

/// Due retries moved per script call (well below Lua's `unpack` limit).
pub(crate) const PROMOTE_BATCH: usize = 1000;

/// Default number of dead letters kept per queue: 0, no cap. A dead letter is a message; every
/// one is kept until it is replayed or purged (`pythia dlq`). A cap is an explicit opt-in.
pub const DEFAULT_DEAD_LETTER_CAP: usize = 0;

/// Dead letters a configured cap trimmed (the oldest ones): lost messages, counted per queue.
pub const DEAD_LETTERS_TRIMMED_TOTAL: &str = "pythia_dead_letters_trimmed_total";

/// A queue's dead-letter cap (0 = none, the default) and the count of what it trimmed
/// ([`DEAD_LETTERS_TRIMMED_TOTAL`]), shared by every broker that dead-letters.
#[derive(Debug)]
pub(crate) struct DeadLetterCap {
    cap: usize,
    queue: String,
    trimmed: metrics::Counter,
}

impl DeadLetterCap {
    /// No cap, for `queue`.
    pub(crate) fn new(queue: &str) -> Self {
        Self {
            cap: DEFAULT_DEAD_LETTER_CAP,
            queue: queue.to_owned(),
            trimmed: metrics::counter!(DEAD_LETTERS_TRIMMED_TOTAL, "queue" => queue.to_owned()),
        }
    }

    /// At most `cap` dead letters (0 = no cap).
    pub(crate) fn with_cap(mut self, cap: usize) -> Self {
        self.cap = cap;
        self
    }

    /// The cap (0 = none).
    pub(crate) fn get(&self) -> usize {
        self.cap
    }

    /// `n` dead letters were trimmed by the cap: counted, and logged as lost.
    pub(crate) fn trimmed(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.trimmed.increment(n);
        tracing::warn!(
            trimmed = n,
            cap = self.cap,
            queue = %self.queue,
            "the dead-letter cap trimmed the oldest dead letters: those messages are lost; raise \
             the cap or replay / purge dead letters sooner"
        );
    }
}

/// The payload scheduled for a retry: the message's envelope with the attempt raised.
pub fn retry_payload(msg: &Message) -> Vec<u8> {
    envelope::encode(&msg.clone().with_attempt(msg.attempt().saturating_add(1)))
}

/// A retry delay as the settle scripts take it: milliseconds from now on the server's clock
/// (every worker's retries are due on one clock, whatever its own says).
pub(crate) fn delay_ms(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}

/// The payload of a dead letter: the message's envelope with the failure `reason` and the time.
pub fn dead_letter_payload(msg: &Message, reason: &str) -> Vec<u8> {
    envelope::encode_dead_letter(msg, reason, SystemTime::now())
}

/// Promotes every due retry and delayed message to the back of the queue; returns how many
/// moved.
pub(crate) async fn promote_due(
    conn: &RedisConnection,
    manager: &mut SharedConnection,
    keys: &QueueKeys,
    side: ListSide,
) -> Result<u64, BrokerError> {
    let mut total = 0u64;
    loop {
        let started = Instant::now();
        let n = promote_call(keys, side).query(manager).await;
        conn.client_metrics().observe(Op::Promote, started);
        let n: u64 = n.map_err(|e| conn.error("promote retries", e))?;
        total += n;
        if (n as usize) < PROMOTE_BATCH {
            return Ok(total);
        }
    }
}

/// Promotes every due retry and delayed message of a stream queue onto the stream; returns how
/// many schedule members were due.
///
/// The script moves each entry (added, then removed from the schedule). An entry with more
/// fields than a script can pass to one command is left to [`promote_by_transaction`]; a member
/// that is not a Pythia stream retry is dead-lettered whole.
pub(crate) async fn promote_due_to_stream(
    conn: &RedisConnection,
    manager: &mut SharedConnection,
    keys: &QueueKeys,
) -> Result<u64, BrokerError> {
    let mut total = 0u64;
    loop {
        let started = Instant::now();
        let res = stream_promote_call(keys).query(manager).await;
        conn.client_metrics().observe(Op::Promote, started);
        let (n, too_big, bad): (u64, Vec<Vec<u8>>, u64) =
            res.map_err(|e| conn.error("promote retries", e))?;
        if bad > 0 {
            tracing::warn!(
                count = bad,
                queue = keys.queue(),
                "retry schedule members that are not Pythia stream entries were dead-lettered whole"
            );
        }
        for member in &too_big {
            promote_by_transaction(conn, manager, keys, member).await?;
        }
        total += n;
        if (n as usize) < PROMOTE_BATCH {
            return Ok(total);
        }
    }
}

/// Moves one due stream retry whose entry has too many fields for a script: `XADD` of the entry,
/// then its removal from the schedule, in one `MULTI` transaction. Two workers doing this at once
/// may both add it (it runs twice; it is never lost).
async fn promote_by_transaction(
    conn: &RedisConnection,
    manager: &mut SharedConnection,
    keys: &QueueKeys,
    member: &[u8],
) -> Result<(), BrokerError> {
    let delayed_id = member.strip_prefix(b"delayed:");
    let encoded: Option<Vec<u8>> = match delayed_id {
        Some(id) => redis::cmd("HGET")
            .arg(keys.scheduled_ids())
            .arg(id)
            .query_async(manager)
            .await
            .map_err(|e| conn.error("promote retries", e))?,
        None => Some(member.to_vec()),
    };
    let fields = encoded.as_deref().and_then(decode_scheduled_fields);
    promote_transaction(keys, member, fields, delayed_id)
        .query::<()>(manager)
        .await
        .map_err(|e| conn.error("promote retries", e))?;
    tracing::info!(
        queue = keys.queue(),
        "promoted a retry with too many fields for a script by a transaction"
    );
    Ok(())
}

/// A schedule `member` too wide for a script moved in one transaction: its `fields` (when they
/// decode) added to the stream first, then the member taken from the schedule and, for a delayed
/// message, its `delayed_id` from the index.
fn promote_transaction(
    keys: &QueueKeys,
    member: &[u8],
    fields: Option<Vec<&[u8]>>,
    delayed_id: Option<&[u8]>,
) -> Call {
    let mut pipe = redis::pipe();
    if let Some(fields) = fields {
        pipe.cmd("XADD")
            .arg(keys.queue())
            .arg("*")
            .arg(fields)
            .ignore();
    }
    pipe.zrem(keys.scheduled(), member).ignore();
    if let Some(id) = delayed_id {
        pipe.hdel(keys.scheduled_ids(), id).ignore();
    }
    Call::transaction(pipe)
}

/// `promote_due.lua`: up to [`PROMOTE_BATCH`] due members of the queue's schedule pushed onto
/// the list (at the `side` producers push to). Replies how many moved.
fn promote_call(keys: &QueueKeys, side: ListSide) -> Call {
    let mut call = Call::script(
        &PROMOTE_DUE,
        &[
            keys.scheduled(),
            keys.queue().to_owned(),
            keys.scheduled_ids(),
        ],
    );
    call.arg(PROMOTE_BATCH).arg(side.push_flag());
    call
}

/// `stream_promote.lua`: up to [`PROMOTE_BATCH`] due members of the queue's schedule added to the
/// stream (what is not a Pythia stream retry dead-lettered whole). Replies `(due, [members too
/// wide for a script…], dead-lettered)`.
fn stream_promote_call(keys: &QueueKeys) -> Call {
    let mut call = Call::script(
        &STREAM_PROMOTE,
        &[
            keys.scheduled(),
            keys.queue().to_owned(),
            keys.scheduled_ids(),
            keys.dead_letters(),
        ],
    );
    call.arg(PROMOTE_BATCH);
    call
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_member_is_added_before_it_leaves_the_schedule() {
        let keys = QueueKeys::new("pythia", "ev");
        let call = promote_transaction(
            &keys,
            b"delayed:d1",
            Some(vec![&b"body"[..], b"x"]),
            Some(b"d1"),
        );
        assert_eq!(
            call.commands_text(),
            [
                vec!["XADD", "ev", "*", "body", "x"],
                vec!["ZREM", "pythia:{ev}:scheduled", "delayed:d1"],
                vec!["HDEL", "pythia:{ev}:scheduled:ids", "d1"]
            ]
        );
        assert!(call.packed().starts_with(b"*1\r\n$5\r\nMULTI\r\n"));
        let undecodable = promote_transaction(&keys, b"junk", None, None).commands_text();
        assert_eq!(undecodable, [["ZREM", "pythia:{ev}:scheduled", "junk"]]);
    }

    #[test]
    fn promotions_name_the_schedule_the_queue_and_the_batch() {
        let keys = QueueKeys::new("pythia", "jobs");
        let args = promote_call(&keys, ListSide::Right).text();
        assert_eq!(args[..2], ["EVALSHA", PROMOTE_DUE.get_hash()]);
        assert_eq!(
            args[2..],
            [
                "3",
                "pythia:{jobs}:scheduled",
                "jobs",
                "pythia:{jobs}:scheduled:ids",
                "1000",
                "L"
            ]
        );
        let args = stream_promote_call(&keys).text();
        assert_eq!(args[..2], ["EVALSHA", STREAM_PROMOTE.get_hash()]);
        assert_eq!(
            args[2..],
            [
                "4",
                "pythia:{jobs}:scheduled",
                "jobs",
                "pythia:{jobs}:scheduled:ids",
                "pythia:{jobs}:dlq",
                "1000"
            ]
        );
    }

    #[test]
    fn a_retry_payload_at_the_last_attempt_number_keeps_it_instead_of_wrapping_to_one() {
        let msg = Message::new("x").with_attempt(u32::MAX);
        let payload = retry_payload(&msg);
        let back = envelope::decode(payload.into(), &pythia_core::Source::new("list", "q"));
        assert_eq!(back.attempt(), u32::MAX);
    }
}
