//! An operator's one-shot action on a queue: [`EmptyQueue`], what `pythia empty` runs.

use pythia_core::BrokerError;

use crate::call::Call;
use crate::connection::RedisConnection;
use crate::keys::QueueKeys;
use crate::scripts::QUEUE_EMPTY;

/// Empties a queue in one script: every message waiting to be delivered, and optionally every
/// delayed message and retry in its schedule.
///
/// # Behaviour
///
/// * **List** (list or reliable-list broker): the list is deleted; its length is the count.
/// * **Stream**: every entry is trimmed (`XTRIM MAXLEN 0`), the stream and its consumer groups
///   stay. The count is every entry the stream held, those already processed and not yet
///   trimmed included.
/// * **In flight** messages are left alone: a reliable list's in-flight hashes and a stream
///   group's pending entries are finished, settled (and retried, if they fail) by their
///   workers. Pause the queue first ([`gate::pause`](crate::gate::pause)) to stop workers
///   taking more while you look.
/// * **Scheduled** (delayed messages and retries) stay unless
///   [`with_scheduled`](Self::with_scheduled): they would reach the queue again when due.
/// * Dead letters are never touched (`pythia dlq purge`).
///
/// ```no_run
/// use pythia_redis::{EmptyQueue, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let report = EmptyQueue::new("emails").with_scheduled(true).run(&conn).await?;
/// println!("removed {} waiting, {} scheduled", report.waiting, report.scheduled);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EmptyQueue {
    queue: String,
    scheduled: bool,
}

/// What [`EmptyQueue::run`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmptyReport {
    /// Messages (list items, stream entries) removed from the queue.
    pub waiting: u64,
    /// Delayed messages and retries removed from the schedule.
    pub scheduled: u64,
}

impl EmptyQueue {
    /// Empties `queue`'s waiting messages (not its schedule).
    pub fn new(queue: &str) -> Self {
        Self {
            queue: queue.to_owned(),
            scheduled: false,
        }
    }

    /// Also removes delayed messages and retries.
    #[must_use]
    pub fn with_scheduled(mut self, on: bool) -> Self {
        self.scheduled = on;
        self
    }

    /// Empties it. Not retried on a connection error (the counts of a lost reply would be
    /// wrong); running it again is safe.
    pub async fn run(&self, conn: &RedisConnection) -> Result<EmptyReport, BrokerError> {
        let keys = QueueKeys::new(conn.config().key_prefix(), &self.queue);
        let mut m = conn.manager();
        let (waiting, scheduled): (u64, u64) = self
            .call(&keys)
            .query(&mut m)
            .await
            .map_err(|e| conn.error(&format!("empty queue {:?}", self.queue), e))?;
        Ok(EmptyReport { waiting, scheduled })
    }

    /// `queue_empty.lua` on the queue `keys` name (and its schedule, if asked): replies
    /// `(waiting removed, scheduled removed)`.
    fn call(&self, keys: &QueueKeys) -> Call {
        let mut call = Call::script(
            &QUEUE_EMPTY,
            &[
                keys.queue().to_owned(),
                keys.scheduled(),
                keys.scheduled_ids(),
            ],
        );
        call.arg(if self.scheduled { "1" } else { "0" });
        call
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emptying_names_the_queue_and_its_schedule() {
        let keys = QueueKeys::new("pythia", "jobs");
        let args = EmptyQueue::new("jobs").call(&keys).text();
        assert_eq!(args[..2], ["EVALSHA", QUEUE_EMPTY.get_hash()]);
        assert_eq!(
            args[2..],
            [
                "3",
                "jobs",
                "pythia:{jobs}:scheduled",
                "pythia:{jobs}:scheduled:ids",
                "0"
            ]
        );
        let args = EmptyQueue::new("jobs")
            .with_scheduled(true)
            .call(&keys)
            .text();
        assert_eq!(args[6], "1");
    }
}
