//! [`JobHandle`]: what a handler reports about the message it runs (progress, events, a
//! result) and the [`JobCheckpoint`] it saves to resume from after a crash. Attached to each
//! message by a runtime with job tracking on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pythia_core::message::unix_millis;
use pythia_core::{BrokerError, Message};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::record::{JobEvent, JobProgress};
use super::writer::{Change, JobWriter};
use crate::checkpoint::CheckpointStore;

/// Longest timeline line a handler's event may make; a longer one keeps a preview of its data.
const MAX_EVENT_LEN: usize = 4096;

/// What a runtime's job tracking shares with every message's handle.
#[derive(Debug)]
pub(crate) struct Tracking {
    pub(crate) writer: JobWriter,
    pub(crate) checkpoints: CheckpointStore,
}

/// The job behind the message a handler runs: report progress and events, record a result,
/// save and load a checkpoint.
///
/// A runtime with [`with_job_status`](crate::JobTrackingExt::with_job_status) attaches one to
/// every message it runs; [`JobHandle::of`] finds it (through any tower layer, since it travels
/// in the message's [`Extensions`](pythia_core::Extensions)). Without job tracking there is
/// none, and nothing is written.
///
/// # Behaviour
///
/// * Progress and events are written at once (one script call each), appended to the job's
///   timeline (at most [`JobTracking::DEFAULT_MAX_EVENTS`](crate::JobTracking::DEFAULT_MAX_EVENTS)
///   lines kept, the oldest trimmed) and give the records their TTL again.
/// * A result ([`set_result`](Self::set_result)) is stored with `succeeded`, when the broker
///   has acked the message.
/// * A checkpoint ([`save_checkpoint`](Self::save_checkpoint)) only moves forward (a higher
///   sequence); it is deleted when the message is acked or dead-lettered and expires with the
///   records otherwise. A delivery after a crash, a reclaim or a retry finds it with
///   [`checkpoint`](Self::checkpoint).
///
/// ```no_run
/// use pythia_core::{Message, Worker, WorkerError};
/// use pythia_redis::JobHandle;
///
/// struct Import;
/// impl Worker for Import {
///     async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
///         let job = JobHandle::of(msg).expect("the runtime has job tracking on");
///         // Resume after the last step a previous delivery finished.
///         let first = match job.checkpoint::<u64>().await? {
///             Some(cp) => cp.sequence + 1,
///             None => 1,
///         };
///         for step in first..=10 {
///             // ... do step `step` ...
///             job.save_checkpoint(step, None, &(step * 100)).await?;
///             job.progress((step * 10) as u8).await?;
///         }
///         job.event("imported", serde_json::json!({"rows": 1000})).await?;
///         job.set_result(r#"{"rows":1000}"#);
///         Ok(())
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct JobHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    tracking: Arc<Tracking>,
    queue: Arc<str>,
    id: String,
    attempt: u32,
    /// Set by the job-status layer once it recorded `running`: the handler ran.
    started: AtomicBool,
    result: Mutex<Option<Bytes>>,
    error: Mutex<Option<String>>,
}

/// A checkpoint a handler saved, as [`JobHandle::checkpoint`] loads it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobCheckpoint<T> {
    /// Its sequence: saves only move it up.
    pub sequence: u64,
    /// The progress saved with it, if any.
    pub progress: Option<JobProgress>,
    /// What the handler saved.
    pub data: T,
    /// When it was saved.
    pub saved_at: SystemTime,
}

impl JobHandle {
    pub(crate) fn new(tracking: Arc<Tracking>, msg: &Message) -> Self {
        Self {
            inner: Arc::new(HandleInner {
                tracking,
                queue: Arc::clone(msg.source().name_arc()),
                id: msg.id().to_owned(),
                attempt: msg.attempt(),
                started: AtomicBool::new(false),
                result: Mutex::new(None),
                error: Mutex::new(None),
            }),
        }
    }

    /// The handle of the job `msg` is, when the runtime tracks jobs.
    pub fn of(msg: &Message) -> Option<&JobHandle> {
        msg.extension()
    }

    /// The job (message) id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The queue it came from.
    pub fn queue(&self) -> &str {
        &self.inner.queue
    }

    /// The attempt running (1 on the first delivery).
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Reports `percent` done (at most 100): in the record (`progress`) and on the timeline.
    pub async fn progress(&self, percent: u8) -> Result<(), BrokerError> {
        self.write_progress(JobProgress::Percent(percent.min(100)))
            .await
    }

    /// Reports `done` units of `total` (when known): in the record and on the timeline.
    pub async fn progress_count(&self, done: u64, total: Option<u64>) -> Result<(), BrokerError> {
        self.write_progress(JobProgress::Count { done, total })
            .await
    }

    async fn write_progress(&self, p: JobProgress) -> Result<(), BrokerError> {
        let text = p.to_string();
        let mut fields = serde_json::Map::new();
        fields.insert("progress".into(), text.clone().into());
        self.write(
            "record a job's progress",
            Some(JobEvent::line(
                SystemTime::now(),
                "progress",
                self.attempt(),
                fields,
            )),
            vec![("progress", text.into_bytes())],
        )
        .await
    }

    /// Appends an event of kind `kind` with `data` (any JSON value; `()` for none) to the
    /// job's timeline. A line longer than 4 KiB keeps a preview of its data, marked
    /// `"truncated": true`.
    pub async fn event(&self, kind: &str, data: impl Serialize) -> Result<(), BrokerError> {
        let data = serde_json::to_value(data)
            .map_err(|e| BrokerError::backend(format!("a job event's data is not JSON: {e}")))?;
        let now = SystemTime::now();
        let mut fields = serde_json::Map::new();
        if !data.is_null() {
            fields.insert("data".into(), data);
        }
        let mut line = JobEvent::line(now, kind, self.attempt(), fields.clone());
        if line.len() > MAX_EVENT_LEN {
            let text = fields
                .remove("data")
                .map(|d| d.to_string())
                .unwrap_or_default();
            let mut end = (MAX_EVENT_LEN / 2).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            fields.insert("data".into(), text[..end].into());
            fields.insert("truncated".into(), true.into());
            let kind: String = kind.chars().take(200).collect();
            line = JobEvent::line(now, &kind, self.attempt(), fields);
        }
        self.write("record a job event", Some(line), Vec::new())
            .await
    }

    /// Records `result` as the job's result, stored with `succeeded` once the message is
    /// acked (a later call replaces it; a failed attempt stores none).
    pub fn set_result(&self, result: impl Into<Bytes>) {
        *lock(&self.inner.result) = Some(result.into());
    }

    /// The latest checkpoint saved for this job, with its data decoded from JSON as `T`.
    pub async fn checkpoint<T: DeserializeOwned>(
        &self,
    ) -> Result<Option<JobCheckpoint<T>>, BrokerError> {
        let key = self.keys().job_checkpoint(self.id());
        let Some(stored) = self.inner.tracking.checkpoints.load(&key).await? else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        struct Payload<T> {
            progress: Option<String>,
            saved_at: u64,
            data: T,
        }
        let bad = |e: String| BrokerError::backend(format!("job checkpoint {key}: {e}"));
        let raw = stored.payload.ok_or_else(|| bad("no payload".into()))?;
        let p: Payload<T> = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
        Ok(Some(JobCheckpoint {
            sequence: stored.position.0,
            progress: p.progress.and_then(|p| p.parse().ok()),
            data: p.data,
            saved_at: UNIX_EPOCH + Duration::from_millis(p.saved_at),
        }))
    }

    /// Saves a checkpoint: `sequence` (saves only move it up: `false` when one at or past it
    /// is there already), an optional progress, and `data` (stored as JSON). It is deleted when
    /// the message is acked or dead-lettered, and expires with the job's records otherwise.
    pub async fn save_checkpoint<T: Serialize + ?Sized>(
        &self,
        sequence: u64,
        progress: Option<JobProgress>,
        data: &T,
    ) -> Result<bool, BrokerError> {
        #[derive(Serialize)]
        struct Payload<'a, T: ?Sized> {
            #[serde(skip_serializing_if = "Option::is_none")]
            progress: Option<String>,
            saved_at: u64,
            data: &'a T,
        }
        let payload = serde_json::to_vec(&Payload {
            progress: progress.map(|p| p.to_string()),
            saved_at: unix_millis(SystemTime::now()),
            data,
        })
        .map_err(|e| BrokerError::backend(format!("a job checkpoint is not JSON: {e}")))?;
        let key = self.keys().job_checkpoint(self.id());
        self.inner
            .tracking
            .checkpoints
            .save(&key, (sequence, 0), Some(&payload))
            .await
    }

    /// Deletes the job's checkpoint (a handler that starts over).
    pub async fn clear_checkpoint(&self) -> Result<(), BrokerError> {
        let key = self.keys().job_checkpoint(self.id());
        self.inner.tracking.checkpoints.delete(&key).await.map(drop)
    }

    fn keys(&self) -> crate::keys::QueueKeys {
        self.inner.tracking.writer.keys(&self.inner.queue)
    }

    async fn write(
        &self,
        what: &str,
        event: Option<String>,
        set: Vec<(&'static str, Vec<u8>)>,
    ) -> Result<(), BrokerError> {
        let change = Change {
            queue: &self.inner.queue,
            id: &self.inner.id,
            state: None,
            event,
            delete_checkpoint: false,
            clear: &[],
            set,
        };
        let w = &self.inner.tracking.writer;
        w.send(what, &[w.call(&change, SystemTime::now())]).await
    }

    /// Records `running` for this attempt (`started_at` now, the last `finished_at` cleared;
    /// the last error stays until a success) and a `started` event.
    pub(crate) async fn write_running(&self) -> Result<(), BrokerError> {
        let now = SystemTime::now();
        let change = Change {
            queue: &self.inner.queue,
            id: &self.inner.id,
            state: Some(super::record::JobState::Running),
            event: Some(JobEvent::line(
                now,
                "started",
                self.attempt(),
                serde_json::Map::new(),
            )),
            delete_checkpoint: false,
            clear: &["finished_at", "progress"],
            set: vec![
                ("id", self.inner.id.as_bytes().to_vec()),
                ("queue", self.inner.queue.as_bytes().to_vec()),
                ("attempts", self.attempt().to_string().into_bytes()),
                ("started_at", unix_millis(now).to_string().into_bytes()),
            ],
        };
        let w = &self.inner.tracking.writer;
        w.send("record a job as running", &[w.call(&change, now)])
            .await
    }

    pub(crate) fn mark_started(&self) {
        self.inner.started.store(true, Ordering::Release);
    }

    pub(crate) fn started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    pub(crate) fn record_error(&self, error: String) {
        *lock(&self.inner.error) = Some(error);
    }

    pub(crate) fn take_error(&self) -> Option<String> {
        lock(&self.inner.error).take()
    }

    pub(crate) fn take_result(&self) -> Option<Bytes> {
        lock(&self.inner.result).take()
    }
}

/// Records `result` as the result of the job `msg` is (see [`JobHandle::set_result`]).
/// Returns `false` (and stores nothing) when the runtime does not track jobs.
///
/// ```
/// use pythia_core::{Message, Worker, WorkerError};
/// use pythia_redis::record_job_result;
///
/// struct Thumbnail;
/// impl Worker for Thumbnail {
///     async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
///         // ... make the thumbnail ...
///         record_job_result(msg, r#"{"url":"https://cdn.example/t/7.png"}"#);
///         Ok(())
///     }
/// }
/// ```
pub fn record_job_result(msg: &Message, result: impl Into<Bytes>) -> bool {
    match JobHandle::of(msg) {
        Some(h) => {
            h.set_result(result);
            true
        }
        None => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
