//! A list worker, at-most-once: the fastest mode; a worker crash mid-message loses that message.
//!
//! Feeds the list `example:list` with 1,000 messages (JSON bodies) plus one raw item as
//! `redis-cli LPUSH` would write it, then drains it in burst mode and prints a summary.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example list

use pythia::redis::{ListBroker, ListProducer, RedisConfig, RedisConnection};
use pythia::{Message, Worker, WorkerError, WorkerRuntime};

/// Adds up the `amount` of every order; a body that is not an order is rejected (dead-lettered).
struct Totals;

impl Worker for Totals {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let text = msg.body_str()?; // not UTF-8: rejected (dead-lettered), never retried
        if !text.starts_with("{\"amount\":") {
            return Err(WorkerError::reject(format!("not an order: {text:?}")));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;

    let orders: Vec<Message> = (0..1000)
        .map(|i| Message::new(format!("{{\"amount\":{i}}}")))
        .collect();
    ListProducer::new(&conn, "example:list")
        .push_many(&orders)
        .await?;
    // Any producer works: this is what `redis-cli LPUSH example:list hello` writes.
    ListProducer::new(&conn, "example:list")
        .with_encoding(pythia::redis::Encoding::Raw)
        .push(&Message::new("hello"))
        .await?;

    let summary = WorkerRuntime::new(ListBroker::new(&conn, "example:list"), Totals)
        .with_concurrency(64)
        .with_burst(true)
        .run()
        .await?;
    println!("{summary}");
    println!("dead letters: redis-cli LRANGE 'pythia:{{example:list}}:dlq' 0 -1");
    Ok(())
}
