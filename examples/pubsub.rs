//! A pub/sub worker, at-most-once fan-out: it subscribes to the channel `example:news` and the
//! pattern `example:orders.*`, publishes a few messages itself, processes them and stops once
//! publishers go quiet (burst mode). Every subscriber gets every message; Redis keeps nothing
//! for subscribers that are not connected, so a message published while this worker is down is
//! not delivered to it. One message fails once and is retried in process.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example pubsub
//!
//! While it runs (it waits one idle second before stopping), `redis-cli PUBLISH example:news hi`
//! from another terminal is processed too.

use std::time::Duration;

use pythia::redis::{Encoding, Overflow, PubSubBroker, Publisher, RedisConfig, RedisConnection};
use pythia::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};

struct Show;

impl Worker for Show {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let source = msg.source();
        let via = source
            .pattern()
            .map_or(String::new(), |p| format!(" via {p}"));
        let body = String::from_utf8_lossy(msg.body());
        if body.contains("flaky") && msg.attempt() == 1 {
            return Err(WorkerError::retry("downstream busy"));
        }
        println!("{}{via} (attempt {}): {body}", source.name(), msg.attempt());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;

    // Subscribed (and confirmed by Redis) before anything is published.
    let broker = PubSubBroker::builder(&conn)
        .channel("example:news")
        .pattern("example:orders.*")
        .with_capacity(10_000)
        .with_overflow(Overflow::DropOldest)
        .subscribe()
        .await?;

    let news = Publisher::new(&conn, "example:news");
    let receivers = news
        .publish_many(&[Message::new("hello"), Message::new("flaky headline")])
        .await?;
    println!("news published to {receivers:?} subscribers");
    Publisher::new(&conn, "example:orders.eu")
        .publish(&Message::new("order 1").with_header("tenant", "acme"))
        .await?;
    Publisher::new(&conn, "example:orders.us")
        .with_encoding(Encoding::Raw)
        .publish(&Message::new("order 2, raw body"))
        .await?;

    let summary = WorkerRuntime::new(broker, Show)
        .with_retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(200)))
        .with_burst(true)
        .run()
        .await?;
    println!("{summary}");
    Ok(())
}
