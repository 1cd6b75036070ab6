//! [`DelayedProducer`]: messages that reach their queue at a given time, cancellable by id.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connection::SharedConnection;
use pythia_core::message::unix_millis;
use pythia_core::{BrokerError, Message};

use crate::call::Call;
use crate::connection::RedisConnection;
use crate::connection::transient_retry::retry_transient;
use crate::consumer::retry_schedule::{promote_due, promote_due_to_stream};
use crate::coord::destination::{Destination, scheduled_payload};
use crate::keys::QueueKeys;
use crate::list::ListSide;
use crate::queues::registry::{QueueKind, Registration};
use crate::scripts::{DELAYED_CANCEL, DELAYED_SCHEDULE};

/// The schedule member of a delayed message is this prefix and the message id.
pub(crate) const DELAYED_MEMBER_PREFIX: &str = "delayed:";

/// Messages scheduled per script call when scheduling many.
const SCHEDULE_BATCH: usize = 500;

/// Produces messages that are delivered at a given time instead of now, and cancels them by id.
///
/// # How
///
/// A delayed message waits in the queue's schedule, the sorted set
/// `<prefix>:{queue}:scheduled` scored by due time, where the brokers also keep their retries.
/// Its payload (the envelope for a list, the entry's fields for a stream) is kept in the hash
/// `<prefix>:{queue}:scheduled:ids` under the message id, and the schedule holds
/// `delayed:<id>`; one Lua script writes both. Every list, reliable-list and stream worker of
/// the queue promotes due members each maintenance interval with one atomic script that takes
/// the payload out of the hash and pushes it onto the queue (`LPUSH`/`RPUSH`, or `XADD`): with
/// any number of workers racing, each message is promoted once, by whichever gets there first,
/// no earlier than its time and within one maintenance interval after it (500 ms for a list,
/// 1 s for a reliable list or stream by default) while some worker is running.
/// [`promote_due`](Self::promote_due) does the same for a process that only produces.
///
/// * **Ids**: the message id names the delayed message. Scheduling an id that is already
///   waiting replaces it (its time and payload): the same message scheduled twice is
///   delivered once.
/// * **Cancel**: [`cancel`](Self::cancel) removes it from the schedule and the hash in one
///   script, and says whether it was still waiting; a cancelled message is never delivered.
/// * **Lists** get the Pythia envelope, with the enqueue time set to the due time, so the
///   end-to-end latency metric measures the delay after the due time. **Streams** get the
///   fields a [`StreamProducer`](crate::StreamProducer) writes, as a new entry for every
///   consumer group (header names `body` and `pythia-…` are refused).
/// * **Memory**: the payload lives in Redis until promoted or cancelled; the broker gauges
///   count delayed messages under `pythia_queue_scheduled`, and burst mode waits for them.
///
/// ```no_run
/// use std::time::{Duration, SystemTime};
/// use pythia_core::Message;
/// use pythia_redis::{DelayedProducer, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let delayed = DelayedProducer::list(&conn, "emails");
/// let reminder = Message::new(r#"{"to":"a@example.com"}"#).with_id("reminder-42");
/// delayed.schedule_in(&reminder, Duration::from_secs(3600)).await?;
/// delayed
///     .schedule_at(&Message::new("report"), SystemTime::now() + Duration::from_secs(60))
///     .await?;
/// // The user unsubscribed: the reminder will never be sent.
/// assert!(delayed.cancel("reminder-42").await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DelayedProducer {
    conn: RedisConnection,
    manager: SharedConnection,
    keys: QueueKeys,
    destination: Destination,
    registration: Registration,
}

impl DelayedProducer {
    /// A producer of delayed messages for `destination`.
    pub fn new(conn: &RedisConnection, destination: Destination) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            keys: QueueKeys::new(conn.config().key_prefix(), destination.name()),
            registration: Registration::producer(
                conn,
                destination.name(),
                if destination.is_stream() {
                    QueueKind::Stream
                } else {
                    QueueKind::List
                },
            ),
            destination,
        }
    }

    /// Delayed messages for the list `queue` (consumers popping the right end).
    pub fn list(conn: &RedisConnection, queue: &str) -> Self {
        Self::new(conn, Destination::list(queue))
    }

    /// Delayed messages for the stream `stream`.
    pub fn stream(conn: &RedisConnection, stream: &str) -> Self {
        Self::new(conn, Destination::stream(stream))
    }

    /// For a list: the end its consumers pop, as set on their broker.
    #[must_use]
    pub fn with_side(mut self, side: ListSide) -> Self {
        self.destination = self.destination.with_side(side);
        self
    }

    /// Where messages go when due.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// Schedules `msg` to be delivered after `delay`, counted on the Redis server's clock (so a
    /// producer whose own clock is off still delays by `delay`). Returns `true` if a message
    /// with the same id was waiting and has been replaced.
    pub async fn schedule_in(&self, msg: &Message, delay: Duration) -> Result<bool, BrokerError> {
        let now = self.conn.server_time().await?;
        self.schedule_at(msg, now + delay).await
    }

    /// Schedules every message of `msgs` to be delivered after `delay`, on the Redis server's
    /// clock (see [`schedule_in`](Self::schedule_in)). Returns how many replaced a waiting
    /// message with the same id.
    pub async fn schedule_many_in(
        &self,
        msgs: &[Message],
        delay: Duration,
    ) -> Result<usize, BrokerError> {
        let at = self.conn.server_time().await? + delay;
        let items: Vec<(Message, SystemTime)> = msgs.iter().map(|m| (m.clone(), at)).collect();
        self.schedule_many(&items).await
    }

    /// Schedules `msg` to be delivered at `at` (a time in the past means at the next
    /// promotion). Returns `true` if a message with the same id was waiting and has been
    /// replaced.
    pub async fn schedule_at(&self, msg: &Message, at: SystemTime) -> Result<bool, BrokerError> {
        let n = self.schedule_many(&[(msg.clone(), at)]).await?;
        Ok(n > 0)
    }

    /// Schedules many messages, each at its own time, in batches of one script call each.
    /// Returns how many replaced a message with the same id that was waiting.
    ///
    /// Safe to call again after an error: an id scheduled twice is kept once.
    pub async fn schedule_many(
        &self,
        items: &[(Message, SystemTime)],
    ) -> Result<usize, BrokerError> {
        self.registration.ensure(&self.conn).await;
        let mut replaced = 0;
        for chunk in items.chunks(SCHEDULE_BATCH) {
            let mut args: Vec<(String, u64, Vec<u8>)> = Vec::with_capacity(chunk.len());
            for (msg, at) in chunk {
                let due = unix_millis(*at);
                // Latency is measured from the due time, not from when it was scheduled.
                let stamped = msg
                    .clone()
                    .with_enqueued_at(Some(UNIX_EPOCH + Duration::from_millis(due)));
                let payload = scheduled_payload(&self.destination, &stamped)?;
                args.push((msg.id().to_owned(), due, payload));
            }
            let call = &schedule_call(&self.keys, &args);
            let n: usize = retry_transient("schedule delayed messages", || {
                let mut m = self.manager.clone();
                async move {
                    call.query(&mut m)
                        .await
                        .map_err(|e| self.conn.error("schedule delayed messages", e))
                }
            })
            .await?;
            replaced += n;
        }
        Ok(replaced)
    }

    /// Cancels the delayed message with id `id`. Returns `true` if it was waiting (it will not
    /// be delivered), `false` if there is no such delayed message: never scheduled, cancelled
    /// already, or already promoted to the queue.
    ///
    /// Not retried on a connection error (a lost reply would turn `true` into `false`); the
    /// error says so and calling again is safe.
    pub async fn cancel(&self, id: &str) -> Result<bool, BrokerError> {
        cancel_delayed(&self.conn, &self.keys, id).await
    }

    /// When the delayed message `id` is due, if it is still waiting.
    pub async fn due_at(&self, id: &str) -> Result<Option<SystemTime>, BrokerError> {
        let member = format!("{DELAYED_MEMBER_PREFIX}{id}");
        let score: Option<f64> = retry_transient("read a delayed message's time", || {
            let mut m = self.manager.clone();
            let cmd = redis::cmd("ZSCORE")
                .arg(self.keys.scheduled())
                .arg(&member)
                .clone();
            async move {
                cmd.query_async(&mut m)
                    .await
                    .map_err(|e| self.conn.error("ZSCORE", e))
            }
        })
        .await?;
        Ok(score.map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0.0) as u64)))
    }

    /// How many delayed messages are waiting (retries scheduled by the brokers not counted).
    pub async fn pending(&self) -> Result<u64, BrokerError> {
        retry_transient("count delayed messages", || {
            let mut m = self.manager.clone();
            async move {
                redis::cmd("HLEN")
                    .arg(self.keys.scheduled_ids())
                    .query_async(&mut m)
                    .await
                    .map_err(|e| self.conn.error("HLEN", e))
            }
        })
        .await
    }

    /// Promotes every due delayed message and retry of the queue now, exactly as the workers'
    /// maintenance does (atomically, so it can race with them); returns how many moved. Only
    /// needed when no worker of the queue runs, or to deliver sooner than their interval.
    pub async fn promote_due(&self) -> Result<u64, BrokerError> {
        let mut m = self.manager.clone();
        match self.destination.list_side() {
            Some(side) => promote_due(&self.conn, &mut m, &self.keys, side).await,
            None => promote_due_to_stream(&self.conn, &mut m, &self.keys).await,
        }
    }
}

/// Removes the delayed message `id` from the schedule of the queue `keys` name (the schedule
/// and its id index, in one script); whether it was there. Shared by
/// [`DelayedProducer::cancel`] and [`ScheduledMessages::cancel`](crate::ScheduledMessages::cancel).
pub(crate) async fn cancel_delayed(
    conn: &RedisConnection,
    keys: &QueueKeys,
    id: &str,
) -> Result<bool, BrokerError> {
    let mut m = conn.manager();
    let removed: u64 = cancel_call(keys, id)
        .query(&mut m)
        .await
        .map_err(|e| conn.error(&format!("cancel delayed message {id:?}"), e))?;
    Ok(removed > 0)
}

/// `delayed_schedule.lua`: each `(id, due ms, payload)` of `items` into the schedule of the
/// queue `keys` name, indexed by id (an id scheduled again replaces its entry). Replies how many
/// it replaced.
fn schedule_call(keys: &QueueKeys, items: &[(String, u64, Vec<u8>)]) -> Call {
    let mut call = Call::script(&DELAYED_SCHEDULE, &[keys.scheduled(), keys.scheduled_ids()]);
    for (id, due, payload) in items {
        call.arg(id).arg(*due).arg(&payload[..]);
    }
    call
}

/// `delayed_cancel.lua`: the delayed message `id` out of the schedule and its index. Replies how
/// many entries it removed.
fn cancel_call(keys: &QueueKeys, id: &str) -> Call {
    let mut call = Call::script(&DELAYED_CANCEL, &[keys.scheduled(), keys.scheduled_ids()]);
    call.arg(id);
    call
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_and_cancel_name_the_schedule_and_its_index() {
        let keys = QueueKeys::new("pythia", "mail");
        let items = [
            ("a".to_owned(), 1_000, b"pa".to_vec()),
            ("b".to_owned(), 2_000, b"pb".to_vec()),
        ];
        let args = schedule_call(&keys, &items).text();
        assert_eq!(args[..2], ["EVALSHA", DELAYED_SCHEDULE.get_hash()]);
        assert_eq!(
            args[2..],
            [
                "2",
                "pythia:{mail}:scheduled",
                "pythia:{mail}:scheduled:ids",
                "a",
                "1000",
                "pa",
                "b",
                "2000",
                "pb"
            ]
        );
        let args = cancel_call(&keys, "a").text();
        assert_eq!(args[..2], ["EVALSHA", DELAYED_CANCEL.get_hash()]);
        assert_eq!(
            args[2..],
            [
                "2",
                "pythia:{mail}:scheduled",
                "pythia:{mail}:scheduled:ids",
                "a"
            ]
        );
    }
}
