//! Chaos, resumable jobs: a 10-step job whose worker process is SIGKILLed during step 6 is
//! reclaimed by another worker process, which loads the job's checkpoint and resumes at step 6,
//! not at step 1; the checkpoint is gone once the job is acked.
//!
//! ```sh
//! cargo test -p pythia-redis --test chaos_checkpoint -- --nocapture
//! ```
//!
//! Workers are child processes (this test binary re-executed with only `checkpoint_child`
//! selected), so the kill is a real process death. Each step a worker runs is recorded in the
//! Redis list `ran` as `<pid> <step>`.

use pythia_test_support as support;
use pythia_test_support::chaos;

use std::time::Duration;

use chaos::{ChildSpec, ChildWorker, query, within};
use pythia_core::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};
use pythia_redis::{
    JobHandle, JobProgress, JobState, JobStatusStore, JobTracking, JobTrackingExt, ListProducer,
    QueueKeys, RedisConfig, RedisConnection, ReliableListBroker,
};
use support::{RedisServer, eventually};

const QUEUE: &str = "long-jobs";
const STEPS: u64 = 10;

/// Runs the steps after the job's checkpoint; stalls for ever at step `stall_at` (if set),
/// after announcing it in the key `stalled`.
struct TenSteps {
    conn: RedisConnection,
    stall_at: Option<u64>,
}

impl Worker for TenSteps {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let job = JobHandle::of(msg).expect("job tracking is on");
        let first = job
            .checkpoint::<u64>()
            .await?
            .map_or(1, |cp| cp.sequence + 1);
        let me = std::process::id().to_string();
        for step in first..=STEPS {
            if self.stall_at == Some(step) {
                let _: () = query(&self.conn, &["SET", "stalled", &me]).await;
                std::future::pending::<()>().await;
            }
            // The step's work, then its checkpoint.
            let _: i64 = query(&self.conn, &["RPUSH", "ran", &format!("{me} {step}")]).await;
            job.save_checkpoint(step, Some(JobProgress::Percent((step * 10) as u8)), &step)
                .await?;
        }
        Ok(())
    }
}

/// Not a test of its own (ignored, so it never counts as a pass): the body of the worker
/// processes the test below starts and kills, which run it with `--ignored --exact`.
#[tokio::test]
#[ignore = "a worker child process, run by its parent test (--ignored --exact), not a test"]
async fn checkpoint_child() {
    let spec = ChildSpec::from_env().expect("run by its parent test, with PYTHIA_CHAOS_CHILD");
    let config = RedisConfig::from_url(spec.get("url").expect("url"))
        .unwrap()
        .with_block_timeout(Duration::from_millis(200));
    let conn = RedisConnection::connect(config).await.unwrap();
    let broker = ReliableListBroker::new(&conn, QUEUE)
        .with_heartbeat_ttl(Duration::from_millis(600))
        .with_maintenance_interval(Duration::from_millis(100));
    let worker = TenSteps {
        conn: conn.clone(),
        stall_at: spec.get("stall_at").and_then(|s| s.parse().ok()),
    };
    WorkerRuntime::new(broker, worker)
        .with_retry_policy(RetryPolicy::default().with_max_attempts(5))
        .with_job_status(JobTracking::new(&conn))
        .with_stats_interval(None)
        .run()
        .await
        .expect("the runtime ends without error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_at_step_6_resumes_at_step_6_on_another_worker() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let msg = Message::new("import").with_id("job-import");
    ListProducer::new(&conn, QUEUE).push(&msg).await.unwrap();

    let spec = ChildSpec::new().set("url", server.url());
    let first = ChildWorker::spawn("checkpoint_child", &spec.clone().set("stall_at", 6));
    let first_pid = first.pid.to_string();
    eventually(
        Duration::from_secs(20),
        "the first worker to reach step 6",
        || {
            let conn = conn.clone();
            async move {
                query::<Option<String>>(&conn, &["GET", "stalled"])
                    .await
                    .is_some()
            }
        },
    )
    .await;
    let log = first.log_text();
    first.kill().await;

    let mut second = ChildWorker::spawn("checkpoint_child", &spec);
    let second_pid = second.pid.to_string();
    let store = JobStatusStore::new(&conn, QUEUE);
    let done = within(30, "the job to succeed on the second worker", async {
        loop {
            if let Some(s) = store.get("job-import").await.unwrap()
                && s.state == JobState::Succeeded
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    second.terminate();
    second.wait(20).await;

    let ran: Vec<String> = query(&conn, &["LRANGE", "ran", "0", "-1"]).await;
    let steps_of = |pid: &str| -> Vec<u64> {
        ran.iter()
            .filter_map(|l| l.split_once(' '))
            .filter(|(p, _)| *p == pid)
            .map(|(_, s)| s.parse().unwrap())
            .collect()
    };
    assert_eq!(
        steps_of(&first_pid),
        [1, 2, 3, 4, 5],
        "the first worker ran steps 1 to 5 and died in step 6: {ran:?}\n{log}"
    );
    assert_eq!(
        steps_of(&second_pid),
        [6, 7, 8, 9, 10],
        "the second worker resumed at step 6, not at step 1: {ran:?}"
    );
    assert_eq!(
        done.progress, None,
        "progress is the handler's, not the checkpoint's"
    );
    let key = QueueKeys::new("pythia", QUEUE).job_checkpoint("job-import");
    let exists: i64 = query(&conn, &["EXISTS", &key]).await;
    assert_eq!(exists, 0, "the checkpoint goes once the job is acked");
    println!(
        "CHAOS checkpoint: killed in step 6 (pid {first_pid}), resumed at step 6 (pid {second_pid}), attempts {}",
        done.attempts
    );
}
