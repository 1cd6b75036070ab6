//! Steering a queue from Redis: a worker behind `QueueGate`, limited to 100 messages a second
//! across every replica, whose handler meets a rate-limited downstream once (the queue backs
//! off for half a second) and which an operator pauses for a second halfway, as
//! `pythia pause` / `pythia resume` would.
//!
//! Feeds `example:steering` with 300 jobs and drains them: about 3 s at the limit, plus the
//! pause and the back-off. Start a second copy while it runs: the two share the 100/s.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example steering

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pythia::redis::{
    ListProducer, QueueGate, RateLimit, RedisConfig, RedisConnection, ReliableListBroker, gate,
};
use pythia::{Message, RetryPolicy, Worker, WorkerError, WorkerRuntime};

const QUEUE: &str = "example:steering";

/// Calls a downstream that answers "429, retry in 500 ms" once.
struct Downstream {
    limited_once: AtomicBool,
}

impl Worker for Downstream {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let n: u32 = msg.body_str()?.parse().map_err(WorkerError::reject)?;
        if n == 50 && !self.limited_once.swap(true, Ordering::Relaxed) {
            // Not this message's fault: retried after the wait, and the whole queue backs off.
            return Err(WorkerError::rate_limited(
                Duration::from_millis(500),
                "429 Too Many Requests",
            ));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
    let jobs: Vec<Message> = (0..300).map(|i| Message::new(i.to_string())).collect();
    ListProducer::new(&conn, QUEUE).push_many(&jobs).await?;

    // The operator: pause after a second, resume a second later.
    let operator = {
        let conn = conn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            gate::pause(&conn, QUEUE).await?;
            println!("paused");
            tokio::time::sleep(Duration::from_secs(1)).await;
            gate::resume(&conn, QUEUE).await?;
            println!("resumed");
            Ok::<_, pythia::BrokerError>(())
        })
    };

    let broker = QueueGate::new(&conn, ReliableListBroker::new(&conn, QUEUE))
        .with_rate_limit(RateLimit::per_second(100));
    let started = Instant::now();
    let summary = WorkerRuntime::new(
        broker,
        Downstream {
            limited_once: AtomicBool::new(false),
        },
    )
    .with_concurrency(20)
    .with_retry_policy(RetryPolicy::default().with_max_attempts(3))
    .with_burst(true)
    .run()
    .await?;
    operator.await??;
    println!("{summary}");
    println!("took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
