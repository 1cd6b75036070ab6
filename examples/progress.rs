//! Job progress and events: a handler reports how far each job is and what it did, through the
//! `JobHandle` the runtime attaches to each message when job tracking is on; the record and its
//! timeline are what `pythia job <id> --queue example:imports` prints, and
//! `pythia jobs --queue example:imports --state succeeded` lists the jobs.
//!
//! Enqueues 5 imports of 4 batches each on `example:imports` (recorded as queued), drains them
//! on a reliable list and prints the first job's record and timeline.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example progress

use std::time::Duration;

use pythia::redis::{
    JobHandle, JobStatusStore, JobTracking, JobTrackingExt, ListProducer, RedisConfig,
    RedisConnection, ReliableListBroker,
};
use pythia::{Message, Worker, WorkerError, WorkerRuntime};
use serde::Serialize;

const BATCHES: u64 = 4;

/// What the handler adds to the timeline after each batch.
#[derive(Serialize)]
struct Imported {
    batch: u64,
    rows: u64,
}

struct Import;

impl Worker for Import {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let job = JobHandle::of(msg).ok_or_else(|| WorkerError::reject("job tracking is off"))?;
        for batch in 1..=BATCHES {
            tokio::time::sleep(Duration::from_millis(5)).await; // ... import 100 rows ...
            job.event("imported", Imported { batch, rows: 100 }).await?;
            job.progress_count(batch, Some(BATCHES)).await?;
        }
        job.set_result(format!("{{\"rows\":{}}}", BATCHES * 100));
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
    let queue = "example:imports";
    let jobs: Vec<Message> = (0..5)
        .map(|i| Message::new(format!("file-{i}.csv")))
        .collect();
    let store = JobStatusStore::new(&conn, queue);
    store.record_queued(&jobs).await?;
    ListProducer::new(&conn, queue).push_many(&jobs).await?;

    let summary = WorkerRuntime::new(ReliableListBroker::new(&conn, queue), Import)
        .with_job_status(JobTracking::new(&conn))
        .with_burst(true)
        .run()
        .await?;
    println!("{summary}");

    let id = jobs[0].id();
    if let Some(s) = store.get(id).await? {
        let progress = s.progress.map(|p| p.to_string()).unwrap_or_default();
        println!("job {id}: {} {progress}", s.state);
    }
    for e in store.events(id, 0, 100).await? {
        let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let fields = fields.join(" ");
        println!("  {:<9} attempt {} {fields}", e.kind, e.attempt);
    }
    Ok(())
}
