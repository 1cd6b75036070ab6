//! [`JobProducer`]: enqueues a [`Job`]'s typed arguments on a list, a stream or a sharded
//! stream, as the message body (JSON) that a [`JobWorker`](pythia_core::JobWorker) of that job
//! decodes.

use std::marker::PhantomData;

use pythia_core::{BrokerError, Job, Message, job_message};
use serde::Serialize;

use crate::list::producer::ListProducer;
use crate::sharded_stream::ShardedStreamProducer;
use crate::stream::producer::StreamProducer;

/// Enqueues arguments of the job `J`: a typo in a field is a compile error, not a dead letter.
///
/// ```no_run
/// use pythia_core::{Job, Message, WorkerError};
/// use pythia_redis::{JobProducer, ListProducer, RedisConfig, RedisConnection};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Email { to: String }
/// struct SendEmail;
/// impl Job for SendEmail {
///     type Args = Email;
///     type Output = ();
///     async fn run(&self, _email: Email, _msg: &Message) -> Result<(), WorkerError> { Ok(()) }
/// }
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let emails = JobProducer::<SendEmail>::list(ListProducer::new(&conn, "emails"));
/// let id = emails.enqueue(&Email { to: "a@example.com".into() }).await?;
/// println!("queued {id}");
/// # Ok(()) }
/// ```
pub struct JobProducer<J> {
    target: Target,
    job: PhantomData<fn() -> J>,
}

enum Target {
    List(ListProducer),
    Stream(StreamProducer),
    Sharded(ShardedStreamProducer),
}

impl<J> std::fmt::Debug for JobProducer<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::List(_) => "list",
            Target::Stream(_) => "stream",
            Target::Sharded(_) => "sharded stream",
        };
        f.debug_struct("JobProducer")
            .field("job", &std::any::type_name::<J>())
            .field("target", &target)
            .finish()
    }
}

impl<J: Job> JobProducer<J>
where
    J::Args: Serialize,
{
    /// Enqueues on a list (a list or reliable-list worker consumes it).
    pub fn list(producer: ListProducer) -> Self {
        Self::new(Target::List(producer))
    }

    /// Enqueues on a stream.
    pub fn stream(producer: StreamProducer) -> Self {
        Self::new(Target::Stream(producer))
    }

    /// Enqueues on a sharded stream.
    pub fn sharded(producer: ShardedStreamProducer) -> Self {
        Self::new(Target::Sharded(producer))
    }

    fn new(target: Target) -> Self {
        Self {
            target,
            job: PhantomData,
        }
    }

    /// Enqueues one job; returns its message id.
    pub async fn enqueue(&self, args: &J::Args) -> Result<String, BrokerError> {
        let msg = message(args)?;
        match &self.target {
            Target::List(p) => p.push(&msg).await?,
            Target::Stream(p) => drop(p.add(&msg).await?),
            Target::Sharded(p) => drop(p.add(&msg).await?),
        }
        Ok(msg.id().to_owned())
    }

    /// Enqueues jobs in order; returns their message ids.
    pub async fn enqueue_many(&self, args: &[J::Args]) -> Result<Vec<String>, BrokerError> {
        let msgs = args.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        match &self.target {
            Target::List(p) => drop(p.push_many(&msgs).await?),
            Target::Stream(p) => drop(p.add_many(&msgs).await?),
            Target::Sharded(p) => drop(p.add_many(&msgs).await?),
        }
        Ok(msgs.iter().map(|m| m.id().to_owned()).collect())
    }
}

fn message<A: Serialize>(args: &A) -> Result<Message, BrokerError> {
    job_message(args).map_err(|e| BrokerError::config(format!("job arguments are not JSON: {e}")))
}
