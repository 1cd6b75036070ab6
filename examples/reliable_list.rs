//! A reliable list worker, at-least-once: each batch is moved atomically into this consumer's
//! in-flight hash, acked only after the handler succeeds, and returned to the queue by any live
//! consumer if this one dies (its heartbeat expires). Retries are scheduled in Redis.
//!
//! Feeds `example:reliable` with 500 jobs, one in ten failing on its first attempt, and drains
//! them. Stop it with Ctrl-C at any time: in-flight jobs finish, the rest go back to the queue.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example reliable_list

use std::time::Duration;

use pythia::redis::{ListProducer, RedisConfig, RedisConnection, ReliableListBroker};
use pythia::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};

struct Flaky;

impl Worker for Flaky {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let n: u32 = msg.body_str()?.parse().map_err(WorkerError::reject)?; // not a number: poison
        tokio::time::sleep(Duration::from_millis(2)).await; // some I/O
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
    let jobs: Vec<Message> = (0..500).map(|i| Message::new(i.to_string())).collect();
    ListProducer::new(&conn, "example:reliable")
        .push_many(&jobs)
        .await?;

    let broker = ReliableListBroker::new(&conn, "example:reliable");
    println!("consumer {}", broker.consumer());
    let summary = WorkerRuntime::new(broker, Flaky)
        .with_concurrency(100)
        .with_retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(200)))
        .with_burst(true)
        .run()
        .await?;
    println!("{summary}");
    Ok(())
}
