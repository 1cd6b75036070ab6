//! Periodic jobs: [`PeriodicScheduler`] enqueues each [`PeriodicJob`]'s message on its
//! [`Schedule`] (a cron expression or a fixed interval), from exactly one replica at a time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connection::SharedConnection;
use bytes::Bytes;
use pythia_core::message::unix_millis;
use pythia_core::{BrokerError, CancellationToken, Headers, Message, envelope};
use tokio::time::Instant;

use crate::call::Call;
use crate::connection::RedisConnection;
use crate::connection::transient_retry::retry_transient;
use crate::coord::destination::{Destination, stream_fields};
use crate::coord::lock::{Lock, LockGuard};
pub use crate::coord::schedule::Schedule;
use crate::keys::{QueueKeys, unique_consumer_name};
use crate::scripts::PERIODIC_FIRE;

/// One periodic job: a name, a [`Schedule`], a [`Destination`] and the message to enqueue.
///
/// Each firing enqueues a message with the job's body and headers, plus the headers
/// `periodic-job` (the name) and `periodic-slot` (the slot, ms since the Unix epoch); its id
/// is `<name>:<slot>`, the same whichever replica fires it, so a worker can deduplicate by it.
/// Its enqueue time is the slot.
///
/// ```
/// use std::time::Duration;
/// use pythia_redis::{Destination, PeriodicJob, Schedule};
///
/// let job = PeriodicJob::new(
///     "cleanup",
///     Schedule::cron("0 * * * *").unwrap(),
///     Destination::list("maintenance"),
/// )
/// .with_body(r#"{"task":"cleanup"}"#)
/// .with_header("tenant", "all");
/// assert_eq!(job.name(), "cleanup");
/// ```
#[derive(Debug, Clone)]
pub struct PeriodicJob {
    name: String,
    schedule: Schedule,
    destination: Destination,
    body: Bytes,
    headers: Headers,
}

impl PeriodicJob {
    /// A job named `name` (unique among a scheduler's jobs, and stable across deployments: the
    /// last fired slot is recorded under it) enqueuing an empty body onto `destination`.
    pub fn new(name: &str, schedule: Schedule, destination: Destination) -> Self {
        Self {
            name: name.to_owned(),
            schedule,
            destination,
            body: Bytes::new(),
            headers: Headers::new(),
        }
    }

    /// The body of each message.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// A header on each message.
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job's schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The message of slot `slot`.
    fn message(&self, slot: u64) -> Message {
        Message::new(self.body.clone())
            .with_id(format!("{}:{slot}", self.name))
            .with_headers(self.headers.clone())
            .with_header("periodic-job", self.name.clone())
            .with_header("periodic-slot", slot.to_string())
            .with_enqueued_at(Some(UNIX_EPOCH + Duration::from_millis(slot)))
    }
}

/// What one pass of [`PeriodicScheduler::fire_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FireReport {
    /// Slots fired by this pass.
    pub fired: u64,
    /// Jobs whose missed slots went beyond the catch-up limit (the oldest were skipped).
    pub skipped_jobs: u64,
}

/// Enqueues periodic jobs from one replica at a time, firing every slot once.
///
/// # How
///
/// * **One leader**: every replica runs the scheduler; they compete for the lock
///   `<prefix>:{periodic:<name>}:lock` (a [`Lock`], [`DEFAULT_LOCK_TTL`](Self::DEFAULT_LOCK_TTL)).
///   The holder extends it every tick and fires jobs; the others try to take it every third of
///   the TTL. A leader that dies stops extending; its lock expires and another replica takes
///   over. A leader that cannot confirm its lock for a whole TTL steps down.
/// * **Each slot at most once**: each job's last fired slot is kept in
///   `<prefix>:{<queue>}:periodic:<job>`, in the queue's hash slot. Firing a slot is one Lua
///   script that compares it with the record, records it and enqueues the message together,
///   so even two replicas that both believe they lead (a paused process waking up) fire a slot
///   once, and a slot is recorded if and only if its message was enqueued.
/// * **No slot missed**: each pass fires, in order, every slot after the recorded one up to
///   now (by the Redis server's clock, `TIME`, so replicas' clocks do not matter), so a new
///   leader catches up on slots missed while no leader was alive, up to
///   [`with_catch_up_limit`](Self::with_catch_up_limit) slots per job (the newest ones; the
///   older ones are skipped and logged).
/// * **A new job** (no record yet) starts at its first slot after the scheduler first sees it:
///   nothing before is fired.
/// * **Bounded memory**: the slot record expires after
///   [`with_record_ttl`](Self::with_record_ttl) (7 days by default, at least three periods of
///   the job) without firing; after that the job starts afresh as a new one.
/// * **Errors**: Redis errors are retried with backoff (every step is safe to repeat); a
///   pass that still fails is logged once per outage and tried again at the next tick.
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_core::CancellationToken;
/// use pythia_redis::{Destination, PeriodicJob, PeriodicScheduler, RedisConfig, RedisConnection, Schedule};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let stop = CancellationToken::new();
/// let scheduler = PeriodicScheduler::new(&conn, "billing")
///     .with_job(PeriodicJob::new(
///         "invoices",
///         Schedule::cron("0 6 * * 1-5")?, // 06:00 UTC on weekdays
///         Destination::list("invoices"),
///     ))
///     .with_job(
///         PeriodicJob::new("heartbeat", Schedule::every(Duration::from_secs(30)), Destination::stream("events"))
///             .with_body("tick"),
///     );
/// // On every replica: one of them fires each slot.
/// tokio::spawn(scheduler.run(stop.clone()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PeriodicScheduler {
    conn: RedisConnection,
    manager: SharedConnection,
    name: String,
    owner: String,
    jobs: Vec<PeriodicJob>,
    lock_ttl: Duration,
    tick: Duration,
    catch_up_limit: usize,
    record_ttl: Duration,
}

impl PeriodicScheduler {
    /// Default TTL of the leader lock: a dead leader is replaced within this: 10 s.
    pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(10);
    /// Default interval between passes of the leader: 1 s (a slot fires at most this late).
    pub const DEFAULT_TICK: Duration = Duration::from_secs(1);
    /// Default number of missed slots per job a new leader fires: 60.
    pub const DEFAULT_CATCH_UP_LIMIT: usize = 60;
    /// Default lifetime of a job's slot record after its last firing: 7 days.
    pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

    /// A scheduler named `name` (replicas with the same name share one leader) with no jobs.
    pub fn new(conn: &RedisConnection, name: &str) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            name: name.to_owned(),
            owner: unique_consumer_name(),
            jobs: Vec::new(),
            lock_ttl: Self::DEFAULT_LOCK_TTL,
            tick: Self::DEFAULT_TICK,
            catch_up_limit: Self::DEFAULT_CATCH_UP_LIMIT,
            record_ttl: Self::DEFAULT_RECORD_TTL,
        }
    }

    /// Adds a job. A job with the same name replaces the earlier one.
    #[must_use]
    pub fn with_job(mut self, job: PeriodicJob) -> Self {
        self.jobs.retain(|j| j.name != job.name);
        self.jobs.push(job);
        self
    }

    /// TTL of the leader lock (at least 30 ms; the tick is lowered to a third of it if longer).
    #[must_use]
    pub fn with_lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl.max(Duration::from_millis(30));
        self.tick = self.tick.min(self.lock_ttl / 3);
        self
    }

    /// Interval between passes (10 ms to a third of the lock TTL).
    #[must_use]
    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = tick.clamp(Duration::from_millis(10), self.lock_ttl / 3);
        self
    }

    /// Most missed slots per job fired by one pass (at least 1: the current slot always fires).
    #[must_use]
    pub fn with_catch_up_limit(mut self, n: usize) -> Self {
        self.catch_up_limit = n.max(1);
        self
    }

    /// Lifetime of a job's slot record after its last firing (raised to three periods of the
    /// job when that is longer).
    #[must_use]
    pub fn with_record_ttl(mut self, ttl: Duration) -> Self {
        self.record_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The owner name in the leader lock's token (default: [`unique_consumer_name`]).
    #[must_use]
    pub fn with_owner(mut self, owner: &str) -> Self {
        self.owner = owner.to_owned();
        self
    }

    /// The jobs.
    pub fn jobs(&self) -> &[PeriodicJob] {
        &self.jobs
    }

    /// The leader lock.
    pub fn leader_lock(&self) -> Lock {
        Lock::new(&self.conn, &format!("periodic:{}", self.name)).with_owner(&self.owner)
    }

    /// The last slot job `job` fired, if it has a record.
    pub async fn last_fired(&self, job: &str) -> Result<Option<SystemTime>, BrokerError> {
        let Some(j) = self.jobs.iter().find(|j| j.name == job) else {
            return Ok(None);
        };
        let key = self.record_key(j);
        let ms: Option<u64> = retry_transient("read a periodic job's last slot", || {
            let mut m = self.manager.clone();
            let key = &key;
            async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut m)
                    .await
                    .map_err(|e| self.conn.error("GET", e))
            }
        })
        .await?;
        Ok(ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }

    /// Runs until `stop` is cancelled: competes for leadership and, while leading, fires due
    /// slots every tick. Returns when stopped (releasing the lock if held).
    pub async fn run(self, stop: CancellationToken) {
        let lock = self.leader_lock();
        let mut failing = false;
        while !stop.is_cancelled() {
            match lock.try_acquire(self.lock_ttl).await {
                Ok(Some(guard)) => {
                    failing = false;
                    tracing::info!(scheduler = %self.name, owner = %self.owner, "periodic scheduler: leading");
                    self.lead(guard, &stop).await;
                }
                Ok(None) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(scheduler = %self.name, error = %e, "periodic scheduler: cannot reach the leader lock; will keep trying");
                    }
                    failing = true;
                }
            }
            let pause = (self.lock_ttl / 3).mul_f64(0.75 + fastrand::f64() / 2.0);
            if stop
                .run_until_cancelled(tokio::time::sleep(pause))
                .await
                .is_none()
            {
                break;
            }
        }
    }

    /// Leads until stopped or the lock is lost.
    async fn lead(&self, guard: LockGuard, stop: &CancellationToken) {
        let mut confirmed = Instant::now();
        let mut failing = false;
        loop {
            match self.fire_due().await {
                Ok(_) if failing => {
                    tracing::info!(scheduler = %self.name, "periodic scheduler: firing recovered");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(scheduler = %self.name, error = %e, "periodic scheduler: firing failed; will keep trying");
                    }
                    failing = true;
                }
            }
            if stop
                .run_until_cancelled(tokio::time::sleep(self.tick))
                .await
                .is_none()
            {
                if let Err(e) = guard.release().await {
                    tracing::debug!(error = %e, "releasing the periodic leader lock failed; it expires by itself");
                }
                return;
            }
            let asked = Instant::now();
            match guard.extend(self.lock_ttl).await {
                Ok(true) => confirmed = asked,
                Ok(false) => {
                    tracing::info!(scheduler = %self.name, "periodic scheduler: lost the leader lock");
                    return;
                }
                Err(e) if asked.duration_since(confirmed) >= self.lock_ttl => {
                    tracing::warn!(scheduler = %self.name, error = %e, "periodic scheduler: leader lock unconfirmed for a whole TTL; stepping down");
                    return;
                }
                Err(_) => {}
            }
        }
    }

    /// One pass: fires every job's due slots now, whether or not this replica leads (the
    /// firing script keeps each slot to one firing anyway; the leader lock only spares the
    /// others the work). [`run`](Self::run) calls this every tick while leading.
    pub async fn fire_due(&self) -> Result<FireReport, BrokerError> {
        let now = self.server_time().await?;
        let mut report = FireReport::default();
        for job in &self.jobs {
            let (fired, skipped) = self.fire_job(job, now).await?;
            report.fired += fired;
            report.skipped_jobs += u64::from(skipped);
        }
        Ok(report)
    }

    async fn fire_job(&self, job: &PeriodicJob, now: u64) -> Result<(u64, bool), BrokerError> {
        let key = self.record_key(job);
        let ttl_ms = self.record_ttl_for(job).as_millis() as u64;
        let call = &start_record_call(&key, now, ttl_ms);
        let last: Option<u64> = retry_transient("start a periodic job's record", || async move {
            let mut m = self.manager.clone();
            let (_, last): ((), Option<u64>) = call
                .query(&mut m)
                .await
                .map_err(|e| self.conn.error("periodic record", e))?;
            Ok(last)
        })
        .await?;
        let last = last.unwrap_or(now);
        let (slots, skipped) = job.schedule.due_slots(last, now, self.catch_up_limit);
        if skipped {
            tracing::warn!(
                job = %job.name,
                first_fired = slots.first().copied().unwrap_or_default(),
                last_recorded = last,
                limit = self.catch_up_limit,
                "periodic job missed more slots than the catch-up limit; the oldest were skipped"
            );
        }
        let mut fired = 0;
        for slot in slots {
            if self.fire_slot(job, &key, slot, ttl_ms).await? {
                fired += 1;
                tracing::debug!(job = %job.name, slot, "periodic job fired");
            }
        }
        Ok((fired, skipped))
    }

    async fn fire_slot(
        &self,
        job: &PeriodicJob,
        key: &str,
        slot: u64,
        ttl_ms: u64,
    ) -> Result<bool, BrokerError> {
        let msg = job.message(slot);
        let (mode, payload): (&str, Vec<Vec<u8>>) = match job.destination.list_side() {
            Some(side) => (side.push_flag(), vec![envelope::encode(&msg)]),
            None => (
                "X",
                stream_fields(&msg)?
                    .into_iter()
                    .flat_map(|(k, v)| [k.to_vec(), v])
                    .collect(),
            ),
        };
        // No MAXLEN on a stream: a cap would drop entries no group has been delivered yet; the
        // consumers trim what they processed.
        let max_len = 0;
        let call = &fire_call(
            key,
            job.destination.name(),
            slot,
            ttl_ms,
            mode,
            max_len,
            &payload,
        );
        let fired: i64 = retry_transient("fire a periodic job", || async move {
            let mut m = self.manager.clone();
            call.query(&mut m).await.map_err(|e| {
                self.conn
                    .error(&format!("fire periodic job {:?}", job.name), e)
            })
        })
        .await?;
        Ok(fired == 1)
    }

    fn record_key(&self, job: &PeriodicJob) -> String {
        QueueKeys::new(self.conn.config().key_prefix(), job.destination.name())
            .periodic_slot(&job.name)
    }

    fn record_ttl_for(&self, job: &PeriodicJob) -> Duration {
        self.record_ttl.max(job.schedule.period_hint() * 3)
    }

    /// The Redis server's clock, in ms since the epoch: one clock for every replica.
    async fn server_time(&self) -> Result<u64, BrokerError> {
        Ok(unix_millis(self.conn.server_time().await?))
    }
}

/// A job's record at `record` started at `now` (ms) unless one exists (`SET NX`: a new job
/// keeps what another replica recorded), kept `ttl_ms`, then read: replies `((), last slot)`.
fn start_record_call(record: &str, now: u64, ttl_ms: u64) -> Call {
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(record)
        .arg(now)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .cmd("GET")
        .arg(record);
    Call::pipeline(pipe)
}

/// `periodic_fire.lua`: the slot recorded in `record` (for `ttl_ms`) and, if it was not
/// recorded already, its message sent to the queue `destination`: `mode` is the list push flag
/// or `X` for a stream (capped at `max_len` entries, 0 for no cap), `payload` the envelope or
/// the stream's field/value pairs. Replies 1 if this call fired the slot.
fn fire_call(
    record: &str,
    destination: &str,
    slot: u64,
    ttl_ms: u64,
    mode: &str,
    max_len: u64,
    payload: &[Vec<u8>],
) -> Call {
    let mut call = Call::script(&PERIODIC_FIRE, &[record, destination]);
    call.arg(slot).arg(ttl_ms).arg(mode).arg(max_len);
    for p in payload {
        call.arg(&p[..]);
    }
    call
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_starts_only_if_absent_and_is_read_back() {
        assert_eq!(
            start_record_call("pythia:{q}:periodic:j", 5000, 60_000).commands_text(),
            [
                vec!["SET", "pythia:{q}:periodic:j", "5000", "NX", "PX", "60000"],
                vec!["GET", "pythia:{q}:periodic:j"]
            ]
        );
    }

    #[test]
    fn a_fire_records_the_slot_then_sends_the_payload() {
        let record = QueueKeys::new("pythia", "q").periodic_slot("j");
        let call = fire_call(
            &record,
            "q",
            5000,
            60_000,
            "X",
            0,
            &[b"body".to_vec(), b"hi".to_vec()],
        );
        let args = call.text();
        assert_eq!(args[..2], ["EVALSHA", PERIODIC_FIRE.get_hash()]);
        assert_eq!(
            args[2..],
            ["2", &record, "q", "5000", "60000", "X", "0", "body", "hi"]
        );
    }

    #[test]
    fn a_slot_message_has_a_stable_id() {
        let job = PeriodicJob::new(
            "j",
            Schedule::every(Duration::from_secs(1)),
            Destination::list("q"),
        )
        .with_body("b");
        let m = job.message(5000);
        assert_eq!(m.id(), "j:5000");
        assert_eq!(m.header("periodic-slot"), Some("5000"));
        assert_eq!(
            m.enqueued_at(),
            Some(UNIX_EPOCH + Duration::from_millis(5000))
        );
    }
}
