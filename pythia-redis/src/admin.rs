//! An operator's one-shot action on a queue: [`EmptyQueue`], what `pythia empty` runs.

use pythia_core::BrokerError;

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
        let (waiting, scheduled): (u64, u64) = QUEUE_EMPTY
            .key(keys.queue())
            .key(keys.scheduled())
            .key(keys.scheduled_ids())
            .arg(if self.scheduled { "1" } else { "0" })
            .invoke_async(&mut m)
            .await
            .map_err(|e| conn.error(&format!("empty queue {:?}", self.queue), e))?;
        Ok(EmptyReport { waiting, scheduled })
    }
}
