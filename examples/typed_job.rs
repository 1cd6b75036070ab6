//! A typed job: `Job` takes decoded arguments and returns an output, `JobProducer` enqueues
//! arguments of that type, `JobWorker` runs the job, and the job-status layer keeps each
//! output with its job's record (`pythia job <id>` shows it).
//!
//! Enqueues 100 thumbnails to make (one with a zero width, rejected) on `example:thumbs`,
//! drains them on a reliable list and prints the first job's record.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example typed_job

use pythia::redis::{
    JobProducer, JobStatusStore, JobTracking, JobTrackingExt, ListProducer, RedisConfig,
    RedisConnection, ReliableListBroker, record_job_result,
};
use pythia::{Job, JobWorker, Message, WorkerError, WorkerRuntime};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Resize {
    image: String,
    width: u32,
}

#[derive(Serialize)]
struct Thumbnail {
    url: String,
}

struct MakeThumbnail;

impl Job for MakeThumbnail {
    type Args = Resize;
    type Output = Thumbnail;

    async fn run(&self, args: Resize, _msg: &Message) -> Result<Thumbnail, WorkerError> {
        if args.width == 0 {
            return Err(WorkerError::reject("width must be above 0"));
        }
        Ok(Thumbnail {
            url: format!("https://cdn.example/{}-{}.png", args.image, args.width),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
    let queue = "example:thumbs";
    let jobs: Vec<Resize> = (0..100)
        .map(|i| Resize {
            image: format!("img{i}"),
            width: if i == 7 { 0 } else { 128 },
        })
        .collect();
    let ids = JobProducer::<MakeThumbnail>::list(ListProducer::new(&conn, queue))
        .enqueue_many(&jobs)
        .await?;

    let worker = JobWorker::new(MakeThumbnail).with_output(|msg, json| {
        record_job_result(msg, json);
    });
    let summary = WorkerRuntime::new(ReliableListBroker::new(&conn, queue), worker)
        .with_job_status(JobTracking::new(&conn))
        .with_burst(true)
        .run()
        .await?;
    println!("{summary}");
    if let Some(status) = JobStatusStore::new(&conn, queue).get(&ids[0]).await? {
        let output = status.result.as_deref().map(String::from_utf8_lossy);
        println!(
            "job {}: {} {}",
            ids[0],
            status.state,
            output.unwrap_or_default()
        );
    }
    Ok(())
}
