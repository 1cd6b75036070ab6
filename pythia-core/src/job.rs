//! Typed jobs: a [`Job`] takes its arguments already decoded (JSON) and returns an output;
//! [`JobWorker`] runs it as a [`Worker`]. Raw producers keep working: a job's message is a
//! plain message whose body is the arguments' JSON ([`job_message`]).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::WorkerError;
use crate::message::Message;
use crate::worker::Worker;

/// A job with typed arguments and output, run by a [`JobWorker`].
///
/// A body that is not the arguments' JSON is rejected (dead-lettered at once: decoding never
/// succeeds on a second try); the error `run` returns says what happens next, as with
/// [`Worker::process_message`].
///
/// ```
/// use pythia_core::{Job, JobWorker, MemoryBroker, Message, WorkerError, WorkerRuntime, job_message};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Email { to: String, subject: String }
///
/// struct SendEmail;
/// impl Job for SendEmail {
///     type Args = Email;
///     type Output = u64; // e.g. the mail server's id
///     async fn run(&self, email: Email, _msg: &Message) -> Result<u64, WorkerError> {
///         if email.to.is_empty() {
///             return Err(WorkerError::reject("no recipient"));
///         }
///         Ok(42)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let broker = MemoryBroker::new("emails");
/// broker.push(job_message(&Email { to: "a@example.com".into(), subject: "hi".into() }).unwrap());
/// broker.push(Message::new("not json")); // rejected, never retried
/// let summary = WorkerRuntime::new(broker.clone(), JobWorker::new(SendEmail))
///     .with_burst(true)
///     .run()
///     .await
///     .unwrap();
/// assert_eq!((summary.acked, summary.dead_lettered), (1, 1));
/// # }
/// ```
pub trait Job: Send + Sync + 'static {
    /// The arguments, decoded from the message body (JSON).
    type Args: DeserializeOwned + Send + 'static;
    /// What a successful run returns; kept when the [`JobWorker`] has an output sink
    /// ([`JobWorker::with_output`]). `()` for nothing.
    type Output: Serialize + Send + 'static;

    /// Runs the job for `args`; `msg` is the message they came in (id, attempt, headers).
    fn run(
        &self,
        args: Self::Args,
        msg: &Message,
    ) -> impl Future<Output = Result<Self::Output, WorkerError>> + Send;
}

/// Where a job's output goes: called with the message and the output's JSON after each
/// successful run (not for an output of `null`, such as `()`).
pub type OutputSink = Arc<dyn Fn(&Message, Bytes) + Send + Sync>;

/// A [`Job`] as a [`Worker`]: decodes the arguments, runs the job, hands the output to the
/// sink if there is one.
pub struct JobWorker<J> {
    job: J,
    output: Option<OutputSink>,
}

impl<J> std::fmt::Debug for JobWorker<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobWorker")
            .field("job", &std::any::type_name::<J>())
            .field("output", &self.output.is_some())
            .finish()
    }
}

impl<J: Job> JobWorker<J> {
    /// Runs `job`; its outputs are dropped.
    pub fn new(job: J) -> Self {
        Self { job, output: None }
    }

    /// Hands each output (as JSON) to `sink`, e.g. to the job-status record:
    /// `.with_output(|msg, json| { pythia_redis::record_job_result(msg, json); })`.
    #[must_use]
    pub fn with_output(mut self, sink: impl Fn(&Message, Bytes) + Send + Sync + 'static) -> Self {
        self.output = Some(Arc::new(sink));
        self
    }

    /// The job.
    pub fn job(&self) -> &J {
        &self.job
    }
}

impl<J: Job> Worker for JobWorker<J> {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let args: J::Args = msg.json()?;
        let output = self.job.run(args, msg).await?;
        if let Some(sink) = &self.output {
            match serde_json::to_vec(&output) {
                Ok(json) if json != b"null" => sink(msg, Bytes::from(json)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(id = msg.id(), error = %e, "a job's output is not JSON; not kept")
                }
            }
        }
        Ok(())
    }
}

/// A message carrying `args` as its JSON body, as a raw producer would write it: what a
/// [`JobWorker`] of a job with these arguments decodes.
pub fn job_message<A: Serialize + ?Sized>(args: &A) -> Result<Message, serde_json::Error> {
    Ok(Message::new(serde_json::to_vec(args)?))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{MemoryBroker, WorkerRuntime};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Add {
        a: i64,
        b: i64,
    }

    struct Adder;
    impl Job for Adder {
        type Args = Add;
        type Output = i64;
        async fn run(&self, args: Add, _msg: &Message) -> Result<i64, WorkerError> {
            if args.b == 0 {
                return Err(WorkerError::reject("b is zero"));
            }
            Ok(args.a + args.b)
        }
    }

    #[tokio::test]
    async fn outputs_reach_the_sink_and_bad_bodies_are_rejected() {
        let broker = MemoryBroker::new("sums");
        broker.push(job_message(&Add { a: 2, b: 3 }).unwrap());
        broker.push(job_message(&Add { a: 1, b: 0 }).unwrap());
        broker.push(Message::new(r#"{"a": "two"}"#));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let worker = JobWorker::new(Adder).with_output(move |_msg, json| {
            sink.lock().unwrap().push(json);
        });
        let summary = WorkerRuntime::new(broker.clone(), worker).run_burst().await;
        assert_eq!(
            (summary.acked, summary.dead_lettered, summary.retried),
            (1, 2, 0)
        );
        assert_eq!(*seen.lock().unwrap(), vec![Bytes::from_static(b"5")]);
        let mut reasons: Vec<String> = broker
            .dead_letters()
            .into_iter()
            .filter_map(|d| d.reason)
            .collect();
        reasons.sort();
        assert_eq!(reasons[0], "rejected: b is zero");
        assert!(
            reasons[1].starts_with("rejected: body is not the expected JSON"),
            "{reasons:?}"
        );
    }
}
