//! Retries that survive a crash: a sorted set of messages scored by their due time, promoted to
//! the queue by a Lua script when due, and the dead-letter list they end in.

use std::time::{Duration, SystemTime};

use crate::connection::SharedConnection;
use pythia_core::{BrokerError, Message, envelope, message::unix_millis};

use crate::connection::RedisConnection;
use crate::keys::QueueKeys;
use crate::list::ListSide;
use crate::scripts::PROMOTE_DUE;

/// Due retries moved per script call (well below Lua's `unpack` limit).
pub(crate) const PROMOTE_BATCH: usize = 1000;

/// Default number of dead letters kept per queue; older ones are trimmed.
pub const DEFAULT_DEAD_LETTER_CAP: usize = 100_000;

/// The payload scheduled for a retry: the message's envelope with the attempt raised.
pub(crate) fn retry_payload(msg: &Message) -> Vec<u8> {
    envelope::encode(&msg.clone().with_attempt(msg.attempt().saturating_add(1)))
}

/// The score (due time in ms since the epoch) of a retry after `delay`.
pub(crate) fn due_score(delay: Duration) -> u64 {
    unix_millis(SystemTime::now() + delay)
}

/// The payload of a dead letter.
pub(crate) fn dead_letter_payload(msg: &Message, reason: &str) -> Vec<u8> {
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
        let now = unix_millis(SystemTime::now());
        let n: u64 = PROMOTE_DUE
            .key(keys.scheduled())
            .key(keys.queue())
            .key(keys.scheduled_ids())
            .arg(now)
            .arg(PROMOTE_BATCH)
            .arg(side.push_flag())
            .invoke_async(manager)
            .await
            .map_err(|e| conn.error("promote retries", e))?;
        total += n;
        if (n as usize) < PROMOTE_BATCH {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_payload_at_the_last_attempt_number_keeps_it_instead_of_wrapping_to_one() {
        let msg = Message::new("x").with_attempt(u32::MAX);
        let payload = retry_payload(&msg);
        let back = envelope::decode(payload.into(), &pythia_core::Source::new("list", "q"));
        assert_eq!(back.attempt(), u32::MAX);
    }
}
