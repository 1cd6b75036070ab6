//! A sharded stream queue, at-least-once: the queue `example:orders` spread over 4 streams in
//! 4 different Redis Cluster slots (on a standalone server, 4 streams), so one busy queue is not
//! pinned to one master. Orders are produced by customer, so each customer's orders stay in
//! one shard, in order; run it in several terminals and the replicas share every shard.
//! Retries go back to the shard that failed them, dead letters to that shard's own
//! `pythia:{<shard>}:dlq`.
//!
//! Adds 1,000 orders of 50 customers (one in ten failing on its first attempt) and drains
//! them, printing each shard's stream and how many orders it got, then the run's summary.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example sharded_stream
//!
//! On a cluster, with seed nodes:
//!
//!     REDIS_URL=redis://127.0.0.1:7001,redis://127.0.0.1:7002 PYTHIA_CLUSTER=1 \
//!         cargo run -p pythia-examples --example sharded_stream

use std::time::Duration;

use pythia::redis::{
    RedisConfig, RedisConnection, ShardedQueue, ShardedStreamBroker, ShardedStreamProducer,
};
use pythia::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};

struct Orders;

impl Worker for Orders {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let n: u32 = msg.body_str()?.parse().map_err(WorkerError::reject)?; // not a number: poison
        tokio::time::sleep(Duration::from_millis(1)).await; // some I/O
        if n.is_multiple_of(10) && msg.attempt() == 1 {
            return Err(WorkerError::retry(format!(
                "order {n}: payment service busy"
            )));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
    let queue = ShardedQueue::new("example:orders", 4)?;

    // Every shard's group starts at the beginning of its shard: orders added before any
    // worker ran are processed.
    let broker = ShardedStreamBroker::new(&conn, &queue, "example-workers");
    let orders: Vec<Message> = (0..1000)
        .map(|i| Message::new(i.to_string()).with_header("customer", format!("c{}", i % 50)))
        .collect();
    let added = ShardedStreamProducer::new(&conn, &queue)
        .add_many_keyed(&orders, |m| {
            m.header("customer").unwrap_or_default().to_owned()
        })
        .await?;
    for (shard, stream) in queue.streams().iter().enumerate() {
        let n = added.iter().filter(|t| t.shard() == shard).count();
        println!("shard {shard}: stream {stream}, {n} orders");
    }

    println!("consumer {} in group {}", broker.consumer(), broker.group());
    let summary = WorkerRuntime::new(broker, Orders)
        .with_concurrency(100)
        .with_retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(200)))
        .with_burst(true)
        .run()
        .await?;
    println!("{summary}");
    Ok(())
}
