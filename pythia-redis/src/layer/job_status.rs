//! Job status and results: a record per message (queued, running, succeeded, failed, dead)
//! with timestamps, attempts, the last error and an optional result, kept with a TTL.
//! [`JobStatusStore`] reads and writes it; [`JobStatusLayer`] writes it around the handler.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connection::SharedConnection;
use bytes::Bytes;
use pythia_core::message::unix_millis;
use pythia_core::worker::BoxFuture;
use pythia_core::{BrokerError, Message, Outcome, RetryPolicy, WorkerError};
use tower::{Layer, Service};

use crate::connection::RedisConnection;
use crate::connection::transient_retry::retry_transient;
use crate::keys::QueueKeys;
use crate::scripts::JOB_STATUS_QUEUED;

/// Error texts longer than this are cut (at a character boundary).
const MAX_ERROR_LEN: usize = 4096;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Enqueued by a producer that recorded it; not started yet.
    Queued,
    /// A worker is running it (attempt `attempts`).
    Running,
    /// The last attempt succeeded.
    Succeeded,
    /// The last attempt failed and the message will be retried.
    Failed,
    /// The message failed for good: rejected, or out of attempts; it is in the dead-letter
    /// queue.
    Dead,
}

impl JobState {
    /// `queued`, `running`, `succeeded`, `failed` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    /// Whether nothing more will happen to the job (succeeded or dead), barring a duplicate
    /// delivery.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            other => {
                return Err(BrokerError::backend(format!(
                    "unknown job state {other:?} in a status record"
                )));
            }
        })
    }
}

/// One job's status record, as read by [`JobStatusStore::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStatus {
    /// The message id.
    pub id: String,
    /// The queue (list or stream) it was consumed from.
    pub queue: String,
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far (0 while queued).
    pub attempts: u32,
    /// When a producer recorded it as queued.
    pub queued_at: Option<SystemTime>,
    /// When the current or last attempt started.
    pub started_at: Option<SystemTime>,
    /// When the last attempt ended.
    pub finished_at: Option<SystemTime>,
    /// When the record last changed.
    pub updated_at: Option<SystemTime>,
    /// The last error, if an attempt failed.
    pub last_error: Option<String>,
    /// The result the handler recorded ([`record_job_result`]), if any.
    pub result: Option<Bytes>,
}

impl JobStatus {
    /// The result decoded as JSON, if there is one.
    pub fn result_json<T: serde::de::DeserializeOwned>(&self) -> Option<serde_json::Result<T>> {
        self.result.as_ref().map(|r| serde_json::from_slice(r))
    }

    fn from_hash(mut h: HashMap<String, Vec<u8>>) -> Result<Option<Self>, BrokerError> {
        let Some(state) = h.remove("state") else {
            return Ok(None);
        };
        let text = |h: &mut HashMap<String, Vec<u8>>, k: &str| {
            h.remove(k)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let time = |h: &mut HashMap<String, Vec<u8>>, k: &str| {
            text(h, k)
                .and_then(|v| v.parse::<u64>().ok())
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        };
        Ok(Some(Self {
            state: String::from_utf8_lossy(&state).parse()?,
            id: text(&mut h, "id").unwrap_or_default(),
            queue: text(&mut h, "queue").unwrap_or_default(),
            attempts: text(&mut h, "attempts")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            queued_at: time(&mut h, "queued_at"),
            started_at: time(&mut h, "started_at"),
            finished_at: time(&mut h, "finished_at"),
            updated_at: time(&mut h, "updated_at"),
            last_error: text(&mut h, "error"),
            result: h.remove("result").map(Bytes::from),
        }))
    }
}

tokio::task_local! {
    static RESULT: RefCell<Option<Bytes>>;
}

/// Records `result` as the result of the message being handled, for the [`JobStatusLayer`]
/// around this handler to store with `succeeded`. Returns `false` (and stores nothing) when
/// called outside a handler wrapped by that layer, e.g. from a task the handler spawned.
///
/// ```
/// use pythia_core::{Message, Worker, WorkerError};
/// use pythia_redis::record_job_result;
///
/// struct Thumbnail;
/// impl Worker for Thumbnail {
///     async fn process_message(&self, _msg: &Message) -> Result<(), WorkerError> {
///         // ... make the thumbnail ...
///         record_job_result(r#"{"url":"https://cdn.example/t/7.png"}"#);
///         Ok(())
///     }
/// }
/// ```
pub fn record_job_result(result: impl Into<Bytes>) -> bool {
    let result = result.into();
    RESULT
        .try_with(|slot| *slot.borrow_mut() = Some(result))
        .is_ok()
}

/// Reads and writes job status records of one queue: the hash `<prefix>:{queue}:job:<id>`,
/// expiring [`DEFAULT_TTL`](Self::DEFAULT_TTL) after its last change.
///
/// Producers call [`record_queued`](Self::record_queued) (before pushing: a record that
/// exists is never overwritten by `queued`); the [`JobStatusLayer`] writes `running`,
/// `succeeded`, `failed` and `dead`; anyone reads with [`get`](Self::get) or waits with
/// [`wait_finished`](Self::wait_finished). The `pythia job <id> --queue <queue>` command
/// prints a record.
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_core::Message;
/// use pythia_redis::{JobState, JobStatusStore, ListProducer, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let status = JobStatusStore::new(&conn, "thumbnails");
/// let msg = Message::new("photo-7.png");
/// status.record_queued(std::slice::from_ref(&msg)).await?;
/// ListProducer::new(&conn, "thumbnails").push(&msg).await?;
///
/// if let Some(job) = status.wait_finished(msg.id(), Duration::from_secs(30)).await? {
///     if job.state == JobState::Succeeded {
///         println!("done after {} attempts: {:?}", job.attempts, job.result);
///     } else {
///         println!("dead: {:?}", job.last_error);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JobStatusStore {
    writer: StatusWriter,
    queue: String,
}

impl JobStatusStore {
    /// Default lifetime of a record after its last change: 24 h.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

    /// The records of `queue`, kept for [`DEFAULT_TTL`](Self::DEFAULT_TTL).
    pub fn new(conn: &RedisConnection, queue: &str) -> Self {
        Self {
            writer: StatusWriter::new(conn, Self::DEFAULT_TTL),
            queue: queue.to_owned(),
        }
    }

    /// Lifetime of a record after its last change (at least 1 s).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.writer.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The status of message `id`, if it has a record (recorded and not expired).
    pub async fn get(&self, id: &str) -> Result<Option<JobStatus>, BrokerError> {
        let key = self.writer.key(&self.queue, id);
        let key = &key;
        let w = &self.writer;
        let h: HashMap<String, Vec<u8>> = retry_transient("read a job status", || async move {
            let mut m = w.manager.clone();
            redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut m)
                .await
                .map_err(|e| w.conn.error("read a job status", e))
        })
        .await?;
        JobStatus::from_hash(h)
    }

    /// Polls [`get`](Self::get) (every 20 ms, backing off to 500 ms) until the job is
    /// succeeded or dead, or `timeout` passes; returns the last record seen.
    pub async fn wait_finished(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<JobStatus>, BrokerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let status = self.get(id).await?;
            let now = tokio::time::Instant::now();
            if status.as_ref().is_some_and(|s| s.state.is_finished()) || now >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Records messages as queued, in one script call (at most 1,000 at a time), each only if
    /// it has no record yet. Returns how many records were created.
    pub async fn record_queued(&self, msgs: &[Message]) -> Result<u64, BrokerError> {
        let now = unix_millis(SystemTime::now());
        let ttl = self.writer.ttl.as_millis() as u64;
        let mut created = 0;
        for chunk in msgs.chunks(1000) {
            let w = &self.writer;
            let queue = &self.queue;
            created += retry_transient("record queued jobs", || async move {
                let mut inv = JOB_STATUS_QUEUED.prepare_invoke();
                inv.arg(ttl).arg(now).arg(queue);
                for msg in chunk {
                    inv.key(w.key(queue, msg.id())).arg(msg.id());
                }
                let mut m = w.manager.clone();
                inv.invoke_async::<u64>(&mut m)
                    .await
                    .map_err(|e| w.conn.error("record queued jobs", e))
            })
            .await?;
        }
        Ok(created)
    }

    /// Deletes the record of `id`; `true` if there was one.
    pub async fn delete(&self, id: &str) -> Result<bool, BrokerError> {
        let key = self.writer.key(&self.queue, id);
        let mut m = self.writer.manager.clone();
        let n: u64 = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut m)
            .await
            .map_err(|e| self.writer.conn.error("delete a job status", e))?;
        Ok(n > 0)
    }
}

/// Writes status records for any queue (the layer sees messages of one queue, but its
/// messages name it).
#[derive(Debug, Clone)]
struct StatusWriter {
    conn: RedisConnection,
    manager: SharedConnection,
    ttl: Duration,
}

/// One transition: fields to set and fields to clear.
struct Transition<'a> {
    msg: &'a Message,
    state: JobState,
    set: Vec<(&'static str, Vec<u8>)>,
    clear: &'static [&'static str],
}

impl StatusWriter {
    fn new(conn: &RedisConnection, ttl: Duration) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            ttl,
        }
    }

    fn key(&self, queue: &str, id: &str) -> String {
        QueueKeys::new(self.conn.config().key_prefix(), queue).job_status(id)
    }

    /// Writes a transition atomically (`MULTI`: `HSET`, `HDEL`, `PEXPIRE`).
    async fn write(&self, t: Transition<'_>) -> Result<(), BrokerError> {
        let queue = t.msg.source().name();
        let key = self.key(queue, t.msg.id());
        let now = unix_millis(SystemTime::now()).to_string();
        let mut pipe = redis::pipe();
        pipe.atomic();
        let hset = pipe
            .cmd("HSET")
            .arg(&key)
            .arg("id")
            .arg(t.msg.id())
            .arg("queue")
            .arg(queue)
            .arg("state")
            .arg(t.state.as_str())
            .arg("attempts")
            .arg(t.msg.attempt())
            .arg("updated_at")
            .arg(&now);
        for (k, v) in &t.set {
            hset.arg(*k).arg(&v[..]);
        }
        hset.ignore();
        if !t.clear.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(t.clear).ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(self.ttl.as_millis() as u64)
            .ignore();
        let pipe = &pipe;
        retry_transient("write a job status", || async move {
            let mut m = self.manager.clone();
            pipe.query_async::<()>(&mut m)
                .await
                .map_err(|e| self.conn.error("write a job status", e))
        })
        .await
    }
}

/// A tower layer that records each message's job status around the handler.
///
/// # Behaviour
///
/// * Before the handler: `running`, with the attempt number and `started_at` (the previous
///   attempt's `finished_at` is cleared; its `last_error` stays until a success).
/// * After it: `succeeded` with `finished_at` and the result the handler gave to
///   [`record_job_result`] (the last error is cleared); or, on an error, `failed` (a retry will
///   follow) or `dead` (rejected, or the last attempt), with the error text. Which one is
///   decided by the same [`RetryPolicy`] as the runtime's: give the layer the policy the
///   runtime has ([`with_retry_policy`](Self::with_retry_policy); the default policy
///   otherwise).
/// * Every write refreshes the record's TTL (24 h by default), so records of old jobs expire.
/// * Status is best effort: a write that fails (after retries) is logged and the message is
///   processed as usual; the handler's result is never changed by this layer.
/// * Messages the runtime dead-letters without running them (redelivered past `max_attempts`
///   after crashes) are not seen by any layer, so their record stays at its last state.
///
/// Place it inside an [`IdempotencyLayer`](crate::IdempotencyLayer) (a skipped duplicate then
/// leaves the record alone) and outside the resilience layers, so that in-process retries
/// show as one attempt.
///
/// ```no_run
/// use pythia_core::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};
/// use pythia_redis::{JobStatusLayer, RedisConfig, RedisConnection, ReliableListBroker, record_job_result};
///
/// struct Render;
/// impl Worker for Render {
///     async fn process_message(&self, _msg: &Message) -> Result<(), WorkerError> {
///         record_job_result("https://cdn.example/report-7.pdf");
///         Ok(())
///     }
/// }
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let policy = RetryPolicy::default().with_max_attempts(5);
/// WorkerRuntime::new(ReliableListBroker::new(&conn, "reports"), Render)
///     .with_retry_policy(policy.clone())
///     .layer(JobStatusLayer::new(&conn).with_retry_policy(policy))
///     .run()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JobStatusLayer {
    shared: Arc<LayerShared>,
}

#[derive(Debug)]
struct LayerShared {
    writer: StatusWriter,
    policy: RetryPolicy,
}

impl JobStatusLayer {
    /// A layer writing records kept for [`JobStatusStore::DEFAULT_TTL`], judging failures by
    /// the default [`RetryPolicy`].
    pub fn new(conn: &RedisConnection) -> Self {
        Self {
            shared: Arc::new(LayerShared {
                writer: StatusWriter::new(conn, JobStatusStore::DEFAULT_TTL),
                policy: RetryPolicy::default(),
            }),
        }
    }

    /// The runtime's retry policy, to tell `failed` (retried) from `dead`.
    #[must_use]
    pub fn with_retry_policy(self, policy: RetryPolicy) -> Self {
        Self {
            shared: Arc::new(LayerShared {
                writer: self.shared.writer.clone(),
                policy,
            }),
        }
    }

    /// Lifetime of a record after its last change (at least 1 s).
    #[must_use]
    pub fn with_ttl(self, ttl: Duration) -> Self {
        let mut writer = self.shared.writer.clone();
        writer.ttl = ttl.max(Duration::from_secs(1));
        Self {
            shared: Arc::new(LayerShared {
                writer,
                policy: self.shared.policy.clone(),
            }),
        }
    }
}

impl<S> Layer<S> for JobStatusLayer {
    type Service = JobStatusService<S>;

    fn layer(&self, inner: S) -> JobStatusService<S> {
        JobStatusService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`JobStatusLayer`] builds around the handler.
#[derive(Debug, Clone)]
pub struct JobStatusService<S> {
    inner: S,
    shared: Arc<LayerShared>,
}

impl<S> Service<Message> for JobStatusService<S>
where
    S: Service<Message, Response = (), Error = WorkerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = WorkerError;
    type Future = BoxFuture<Result<(), WorkerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WorkerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, msg: Message) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let now = || unix_millis(SystemTime::now()).to_string().into_bytes();
            let running = Transition {
                msg: &msg,
                state: JobState::Running,
                set: vec![("started_at", now())],
                clear: &["finished_at"],
            };
            if let Err(e) = shared.writer.write(running).await {
                tracing::warn!(id = msg.id(), error = %e, "could not record a job as running");
            }
            let fut = inner.call(msg.clone());
            let (result, recorded) = RESULT
                .scope(RefCell::new(None), async move {
                    let r = fut.await;
                    (r, RESULT.with(|slot| slot.borrow_mut().take()))
                })
                .await;
            let done = match &result {
                Ok(()) => {
                    let mut set = vec![("finished_at", now())];
                    if let Some(r) = recorded {
                        set.push(("result", r.to_vec()));
                    }
                    Transition {
                        msg: &msg,
                        state: JobState::Succeeded,
                        set,
                        clear: &["error"],
                    }
                }
                Err(e) => {
                    let state = match shared.policy.outcome(&msg, &result) {
                        Outcome::Retry { .. } => JobState::Failed,
                        Outcome::DeadLetter { .. } | Outcome::Ack => JobState::Dead,
                    };
                    Transition {
                        msg: &msg,
                        state,
                        set: vec![
                            ("finished_at", now()),
                            ("error", truncate(&e.to_string()).into_bytes()),
                        ],
                        clear: &[],
                    }
                }
            };
            let state = done.state;
            if let Err(e) = shared.writer.write(done).await {
                tracing::warn!(id = msg.id(), state = %state, error = %e, "could not record a job's status");
            }
            result
        })
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_ERROR_LEN {
        return s.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_records_parse() {
        for s in [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Dead,
        ] {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        assert!("nope".parse::<JobState>().is_err());
        let h: HashMap<String, Vec<u8>> = [
            ("id", "m1"),
            ("queue", "q"),
            ("state", "failed"),
            ("attempts", "2"),
            ("started_at", "1000"),
            ("error", "boom"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
        let s = JobStatus::from_hash(h).unwrap().unwrap();
        assert_eq!(s.state, JobState::Failed);
        assert_eq!(s.attempts, 2);
        assert_eq!(s.started_at, Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(s.last_error.as_deref(), Some("boom"));
        assert_eq!(s.result, None);
        assert_eq!(JobStatus::from_hash(HashMap::new()).unwrap(), None);
        assert_eq!(truncate(&"é".repeat(3000)).len(), 4096 + "…".len());
    }

    #[tokio::test]
    async fn results_are_recorded_only_inside_the_layer_scope() {
        assert!(!record_job_result("outside"));
        let got = RESULT
            .scope(RefCell::new(None), async {
                assert!(record_job_result("inside"));
                RESULT.with(|s| s.borrow_mut().take())
            })
            .await;
        assert_eq!(got.as_deref(), Some(&b"inside"[..]));
    }
}
