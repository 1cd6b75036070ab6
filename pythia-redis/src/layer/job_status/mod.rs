//! Job tracking: a record per message (queued, running, succeeded, failed, dead) with times,
//! attempts, the last error, an optional result and progress; a timeline of events; recent jobs
//! by state; and checkpoints a handler resumes from. All kept in Redis with a TTL.
//!
//! * [`JobTracking`] turns it on in a runtime ([`JobTrackingExt::with_job_status`]): a settle
//!   observer records each message's final state as the runtime decided it (no second copy of
//!   the retry policy), a tower layer records `running` before the handler.
//! * [`JobHandle`] is what a handler reports through: progress, events, its result, checkpoints.
//! * [`JobStatusStore`] reads it all (and records jobs as queued, for producers).
//!
//! Without job tracking, a runtime writes nothing of this: no command per message.

mod handle;
mod observer;
mod record;
mod store;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use pythia_core::{Broker, WorkerRuntime};

use self::handle::Tracking;
use self::observer::{JobRunningLayer, JobStatusObserver};
use self::writer::JobWriter;
use crate::checkpoint::CheckpointStore;
use crate::connection::RedisConnection;

pub use self::handle::{JobCheckpoint, JobHandle, record_job_result};
pub use self::record::{JobEvent, JobProgress, JobState, JobStatus};
pub use self::store::JobStatusStore;

/// The settings of job tracking in a runtime, given to
/// [`with_job_status`](JobTrackingExt::with_job_status).
///
/// # Behaviour
///
/// * Before the handler: `running`, with the attempt number and `started_at` (the previous
///   attempt's `finished_at` and progress are cleared; its `last_error` stays until a success),
///   and a `started` event.
/// * Once the broker has settled the message, as the runtime's
///   [`RetryPolicy`](pythia_core::RetryPolicy) decided: `succeeded` with `finished_at` and the
///   result the handler gave ([`JobHandle::set_result`]), the last error cleared; `failed` with
///   the error (a retry follows; a `retried` event with the delay); or `dead` (rejected, out of
///   attempts, or dead-lettered without running after crashes), with the error. Acked or
///   dead-lettered, the job's checkpoint is deleted.
/// * Every write gives the records their TTL again (24 h by default) and moves the job between
///   the per-state indexes, each trimmed to the TTL's window and to
///   [`DEFAULT_MAX_PER_STATE`](Self::DEFAULT_MAX_PER_STATE) ids; the timeline keeps the last
///   [`DEFAULT_MAX_EVENTS`](Self::DEFAULT_MAX_EVENTS) events.
/// * Status is best effort: a write that fails (after retries) is logged and the message is
///   processed as usual; the handler's result is never changed by it. Outcomes are written off
///   the runtime's path, in pipelined batches, and flushed before `run()` returns.
/// * A message acked without running under the layer (an
///   [`IdempotencyLayer`](crate::IdempotencyLayer)'s duplicate, added before
///   `with_job_status`) leaves its record alone.
///
/// # Cost
///
/// Two script calls per message (`running`, and the outcome, pipelined with others), plus one
/// per progress report or event. Without job tracking: none.
///
/// ```no_run
/// use pythia_core::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};
/// use pythia_redis::{JobHandle, JobTracking, JobTrackingExt, RedisConfig, RedisConnection, ReliableListBroker};
///
/// struct Render;
/// impl Worker for Render {
///     async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
///         if let Some(job) = JobHandle::of(msg) {
///             job.progress(50).await?;
///             job.set_result("https://cdn.example/report-7.pdf");
///         }
///         Ok(())
///     }
/// }
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// WorkerRuntime::new(ReliableListBroker::new(&conn, "reports"), Render)
///     .with_retry_policy(RetryPolicy::default().with_max_attempts(5))
///     .with_job_status(JobTracking::new(&conn))
///     .run()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JobTracking {
    writer: JobWriter,
}

impl JobTracking {
    /// Default events kept per job: 1,000.
    pub const DEFAULT_MAX_EVENTS: usize = 1000;
    /// Default ids kept per state index of a queue: 10,000.
    pub const DEFAULT_MAX_PER_STATE: usize = 10_000;

    /// Job tracking with records kept for [`JobStatusStore::DEFAULT_TTL`].
    pub fn new(conn: &RedisConnection) -> Self {
        Self {
            writer: JobWriter::new(conn, JobStatusStore::DEFAULT_TTL),
        }
    }

    /// Lifetime of the records (status, timeline, indexes, checkpoint) after their last change
    /// (at least 1 s).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.writer.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// Events kept per job, the oldest trimmed (at least 1).
    #[must_use]
    pub fn with_max_events(mut self, n: usize) -> Self {
        self.writer.max_events = n.max(1);
        self
    }

    /// Ids kept per state index of a queue, the oldest trimmed (at least 1).
    #[must_use]
    pub fn with_max_per_state(mut self, n: usize) -> Self {
        self.writer.max_per_state = n.max(1);
        self
    }

    fn tracking(&self) -> Arc<Tracking> {
        Arc::new(Tracking {
            checkpoints: CheckpointStore::new(&self.writer.conn).with_ttl(Some(self.writer.ttl)),
            writer: self.writer.clone(),
        })
    }
}

/// Job tracking for a [`WorkerRuntime`]: `use pythia_redis::JobTrackingExt` and call
/// [`with_job_status`](Self::with_job_status).
pub trait JobTrackingExt: Sized {
    /// Tracks every message as a job (see [`JobTracking`]): adds the settle observer that
    /// records outcomes, and the layer that records `running`, at this point of the layer
    /// stack: after an [`IdempotencyLayer`](crate::IdempotencyLayer) (so that a skipped
    /// duplicate leaves the record alone) and before the resilience layers (so that in-process
    /// retries show as one attempt).
    fn with_job_status(self, tracking: JobTracking) -> Self;
}

impl<B: Broker> JobTrackingExt for WorkerRuntime<B> {
    fn with_job_status(self, tracking: JobTracking) -> Self {
        let tracking = tracking.tracking();
        self.with_settle_observer(JobStatusObserver { tracking })
            .layer(JobRunningLayer)
    }
}
