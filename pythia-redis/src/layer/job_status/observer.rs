//! The two halves of job tracking in a runtime: a tower layer that records `running` before
//! the handler (and keeps its error), and a settle observer that records the final state the
//! runtime decided (succeeded, failed, dead) once the broker has it.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use pythia_core::message::unix_millis;
use pythia_core::worker::BoxFuture;
use pythia_core::{Message, Outcome, SettleObserver, Settled, WorkerError};
use tower::{Layer, Service};

use super::handle::{JobHandle, Tracking};
use super::record::{JobEvent, JobState};
use super::writer::Change;
use crate::call::Call;

/// Error texts longer than this are cut (at a character boundary).
const MAX_ERROR_LEN: usize = 4096;

/// Most job writes sent in one pipeline.
const WRITES_PER_PIPELINE: usize = 512;

fn now_bytes() -> Vec<u8> {
    unix_millis(SystemTime::now()).to_string().into_bytes()
}

/// Attaches a [`JobHandle`] to each message and records the outcome.
#[derive(Debug)]
pub(crate) struct JobStatusObserver {
    pub(crate) tracking: Arc<Tracking>,
}

impl SettleObserver for JobStatusObserver {
    fn on_start(&self, message: &mut Message) {
        let handle = JobHandle::new(Arc::clone(&self.tracking), message);
        message.insert_extension(handle);
    }

    async fn on_settled(&self, batch: &[Settled]) {
        let w = &self.tracking.writer;
        let now = SystemTime::now();
        let mut calls = Vec::with_capacity(batch.len());
        for s in batch {
            calls.push(call_for(&self.tracking, s, now));
        }
        for chunk in calls.chunks(WRITES_PER_PIPELINE) {
            if let Err(e) = w.send("record jobs' outcomes", chunk).await {
                tracing::warn!(error = %e, count = chunk.len(), "could not record jobs' outcomes");
            }
        }
    }
}

/// The write for one settled message.
fn call_for(tracking: &Tracking, s: &Settled, now: SystemTime) -> Call {
    let msg = &s.message;
    let handle = JobHandle::of(msg);
    // Whether the handler ran under the job-status layer (not skipped by an outer layer, not
    // dead-lettered without running).
    let ran = handle.is_some_and(JobHandle::started);
    let error = handle.and_then(JobHandle::take_error);
    let (queue, id, attempt) = (msg.source().name(), msg.id(), msg.attempt());
    let mut set = vec![
        ("id", id.as_bytes().to_vec()),
        ("queue", queue.as_bytes().to_vec()),
        ("attempts", attempt.to_string().into_bytes()),
    ];
    let mut fields = serde_json::Map::new();
    let (state, clear, delete_checkpoint): (_, &'static [&'static str], _) = match &s.outcome {
        Outcome::Ack if !ran => {
            // Acked without running here (an idempotency layer's duplicate): the record stays
            // as it is; only a checkpoint left behind goes.
            let key = tracking.writer.keys(queue).job_checkpoint(id);
            return Call::command(redis::cmd("DEL").arg(key).clone());
        }
        Outcome::Ack => {
            set.push(("finished_at", now_bytes()));
            if let Some(r) = handle.and_then(JobHandle::take_result) {
                set.push(("result", r.to_vec()));
            }
            (JobState::Succeeded, &["error"][..], true)
        }
        Outcome::Retry { delay } => {
            let error = error.unwrap_or_else(|| "failed".to_owned());
            fields.insert("error".into(), truncate(&error).into());
            fields.insert("delay_ms".into(), (delay.as_millis() as u64).into());
            if ran {
                set.push(("finished_at", now_bytes()));
            }
            set.push(("error", truncate(&error).into_bytes()));
            (JobState::Failed, &[][..], false)
        }
        Outcome::DeadLetter { reason } => {
            fields.insert("reason".into(), truncate(reason).into());
            if ran {
                set.push(("finished_at", now_bytes()));
            }
            let error = error.unwrap_or_else(|| reason.clone());
            set.push(("error", truncate(&error).into_bytes()));
            (JobState::Dead, &[][..], true)
        }
    };
    let kind = match state {
        JobState::Failed => "retried",
        other => other.as_str(),
    };
    let change = Change {
        queue,
        id,
        state: Some(state),
        event: Some(JobEvent::line(now, kind, attempt, fields)),
        delete_checkpoint,
        clear,
        set,
    };
    tracking.writer.call(&change, now)
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

/// Records `running` before the handler, and the handler's error for the observer.
#[derive(Debug, Clone)]
pub(crate) struct JobRunningLayer;

impl<S> Layer<S> for JobRunningLayer {
    type Service = JobRunningService<S>;

    fn layer(&self, inner: S) -> JobRunningService<S> {
        JobRunningService { inner }
    }
}

/// The service [`JobRunningLayer`] builds around the handler.
#[derive(Debug, Clone)]
pub(crate) struct JobRunningService<S> {
    inner: S,
}

impl<S> Service<Message> for JobRunningService<S>
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
        Box::pin(async move {
            let Some(handle) = JobHandle::of(&msg).cloned() else {
                return inner.call(msg).await;
            };
            if let Err(e) = handle.write_running().await {
                tracing::warn!(id = msg.id(), error = %e, "could not record a job as running");
            }
            handle.mark_started();
            let result = inner.call(msg).await;
            if let Err(e) = &result {
                handle.record_error(e.to_string());
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("short"), "short");
        assert_eq!(truncate(&"é".repeat(3000)).len(), 4096 + "…".len());
    }
}
