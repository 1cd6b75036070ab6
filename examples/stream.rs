//! A Redis stream worker in a consumer group, at-least-once: run it in several terminals (or
//! Kubernetes pods) and the replicas share the entries. Each entry is acked after the handler
//! succeeds; a replica that dies leaves its entries pending, and a live one claims them once
//! the dead one's heartbeat expires. Retries are scheduled in Redis, dead letters go to the
//! stream `pythia:{example:stream}:dlq`, processed entries are trimmed from the stream.
//!
//! Creates the group `example-workers` on `example:stream`, adds 500 jobs (one in ten failing on
//! its first attempt, job 250 rejected as poison) and drains them. Stop it with Ctrl-C at any
//! time: in-flight jobs finish, unstarted ones go back to the stream for the other replicas.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example stream

use std::time::Duration;

use pythia::redis::{RedisConfig, RedisConnection, StreamBroker, StreamProducer};
use pythia::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};

struct Billing;

impl Worker for Billing {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let n: u32 = msg.body_str()?.parse().map_err(WorkerError::reject)?; // not a number: poison
        tokio::time::sleep(Duration::from_millis(2)).await; // some I/O
        if n == 250 {
            return Err(WorkerError::reject(format!("job {n}: malformed invoice")));
        }
        if n.is_multiple_of(10) && msg.attempt() == 1 {
            return Err(WorkerError::retry(format!("job {n}: downstream busy")));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;

    // Jobs added before any worker ran are processed: a new group starts at the beginning of
    // the stream (`GroupStart::NewEntries` is for event streams whose backlog does not matter).
    let broker = StreamBroker::new(&conn, "example:stream", "example-workers");
    let jobs: Vec<Message> = (0..500)
        .map(|i| Message::new(i.to_string()).with_header("customer", format!("c{}", i % 7)))
        .collect();
    StreamProducer::new(&conn, "example:stream")
        .add_many(&jobs)
        .await?;

    println!("consumer {} in group {}", broker.consumer(), broker.group());
    let summary = WorkerRuntime::new(broker, Billing)
        .with_concurrency(100)
        .with_retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(200)))
        .with_burst(true)
        .run()
        .await?;
    println!("{summary}");
    Ok(())
}
