//! The operator's view from the library: a worker that keeps the daily processed / failed
//! counters (`CountingBroker`), then one typed `QueueReport` per registered queue, as
//! `pythia queues --json` prints them; and the pause flag.
//!
//! Produces 100 messages onto `example:queues` (every tenth is not an order and is
//! dead-lettered), drains them with a counting reliable-list worker, pauses the queue, and prints
//! each queue's report as JSON.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example queues

use pythia::redis::queues::{CountingBroker, pause, queue_reports, resume};
use pythia::redis::{ListProducer, RedisConfig, RedisConnection, ReliableListBroker};
use pythia::{Message, Worker, WorkerError, WorkerRuntime};

/// Accepts orders; anything else is rejected (dead-lettered).
struct Orders;

impl Worker for Orders {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        if !msg.body_str()?.starts_with("order") {
            return Err(WorkerError::reject("not an order"));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;

    // The producer's first push registers the queue: it is listed from here on.
    let msgs: Vec<Message> = (0..100)
        .map(|i| {
            Message::new(if i % 10 == 0 {
                "junk".to_owned()
            } else {
                format!("order {i}")
            })
        })
        .collect();
    ListProducer::new(&conn, "example:queues")
        .push_many(&msgs)
        .await?;

    // The counts reach Redis every 2 s and when the broker closes.
    let broker = CountingBroker::new(ReliableListBroker::new(&conn, "example:queues"), &conn);
    let summary = WorkerRuntime::new(broker, Orders)
        .with_burst(true)
        .with_signal_handling(false)
        .run()
        .await?;
    println!("{summary}");

    pause(&conn, "example:queues").await?;
    for report in queue_reports(&conn, &[]).await? {
        println!("{}", serde_json::to_string(&report)?);
    }
    resume(&conn, "example:queues").await?;
    Ok(())
}
