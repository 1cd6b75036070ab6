//! Typed jobs against a real redis-server: a `JobProducer` enqueues arguments, a raw `LPUSH`
//! of the same JSON works too, a `JobWorker` decodes them, and its outputs land in the job
//! status records.

use pythia_test_support as support;

use pythia_core::{Job, JobWorker, Message, WorkerError};
use pythia_redis::{
    JobProducer, JobState, JobStatusStore, JobTracking, JobTrackingExt, ListProducer,
    ReliableListBroker, StreamBroker, StreamProducer, record_job_result,
};
use support::{RedisServer, burst, cmd};

#[derive(serde::Serialize, serde::Deserialize)]
struct Resize {
    width: u32,
    height: u32,
}

#[derive(serde::Serialize)]
struct Resized {
    pixels: u64,
}

struct Thumbnail;

impl Job for Thumbnail {
    type Args = Resize;
    type Output = Resized;
    async fn run(&self, args: Resize, _msg: &Message) -> Result<Resized, WorkerError> {
        if args.width == 0 {
            return Err(WorkerError::reject("zero width"));
        }
        Ok(Resized {
            pixels: u64::from(args.width) * u64::from(args.height),
        })
    }
}

fn worker() -> JobWorker<Thumbnail> {
    JobWorker::new(Thumbnail).with_output(|msg, json| {
        record_job_result(msg, json);
    })
}

#[tokio::test]
async fn typed_and_raw_producers_feed_a_job_worker_that_records_outputs() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let jobs = JobProducer::<Thumbnail>::list(ListProducer::new(&conn, "thumbs"));
    let ids = jobs
        .enqueue_many(&[
            Resize {
                width: 3,
                height: 4,
            },
            Resize {
                width: 0,
                height: 9,
            },
        ])
        .await
        .unwrap();
    let _: i64 = cmd(&conn, &["LPUSH", "thumbs", r#"{"width":10,"height":10}"#]).await;
    let summary = burst(ReliableListBroker::new(&conn, "thumbs"), worker())
        .with_job_status(JobTracking::new(&conn))
        .run()
        .await
        .unwrap();
    assert_eq!((summary.acked, summary.dead_lettered), (2, 1));
    let store = JobStatusStore::new(&conn, "thumbs");
    let done = store.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result.as_deref(), Some(&br#"{"pixels":12}"#[..]));
    let dead = store.get(&ids[1]).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("zero width"));
}

#[tokio::test]
async fn a_stream_job_producer_feeds_a_stream_worker() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let jobs = JobProducer::<Thumbnail>::stream(StreamProducer::new(&conn, "thumb-events"));
    jobs.enqueue(&Resize {
        width: 2,
        height: 2,
    })
    .await
    .unwrap();
    let summary = burst(
        StreamBroker::new(&conn, "thumb-events", "workers"),
        worker(),
    )
    .run()
    .await
    .unwrap();
    assert_eq!((summary.acked, summary.dead_lettered), (1, 0));
}
