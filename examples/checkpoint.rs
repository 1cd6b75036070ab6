//! Resumable jobs: a long job saves a checkpoint after each step; when its message is delivered
//! again (a retry here; a worker's crash or a reclaim the same way) the handler loads the latest
//! checkpoint and goes on from there instead of starting over. The checkpoint is deleted once
//! the message is acked or dead-lettered, and expires with the job's records otherwise.
//!
//! Enqueues one 10-step job on `example:long`; its first attempt fails in step 6 (a lost
//! connection, say), the retry resumes at step 6.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example checkpoint

use std::time::Duration;

use pythia::redis::{
    JobHandle, JobProgress, JobTracking, JobTrackingExt, ListProducer, RedisConfig,
    RedisConnection, ReliableListBroker,
};
use pythia::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};
use serde::{Deserialize, Serialize};

const STEPS: u64 = 10;

/// What the job carries from step to step.
#[derive(Serialize, Deserialize, Default)]
struct Totals {
    rows: u64,
}

struct LongJob;

impl Worker for LongJob {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let job = JobHandle::of(msg).ok_or_else(|| WorkerError::reject("job tracking is off"))?;
        let (first, mut totals) = match job.checkpoint::<Totals>().await? {
            Some(cp) => (cp.sequence + 1, cp.data),
            None => (1, Totals::default()),
        };
        println!("attempt {} starts at step {first}", msg.attempt());
        for step in first..=STEPS {
            if step == 6 && msg.attempt() == 1 {
                return Err(WorkerError::retry("connection lost in step 6"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await; // ... the step's work ...
            totals.rows += 100;
            let progress = JobProgress::Percent((step * 100 / STEPS) as u8);
            job.save_checkpoint(step, Some(progress), &totals).await?;
        }
        println!("done: {} rows", totals.rows);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
    let queue = "example:long";
    ListProducer::new(&conn, queue)
        .push(&Message::new("ten steps"))
        .await?;
    let summary = WorkerRuntime::new(ReliableListBroker::new(&conn, queue), LongJob)
        .with_retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(100)))
        .with_job_status(JobTracking::new(&conn))
        .with_burst(true)
        .run()
        .await?;
    println!("{summary}");
    Ok(())
}
