//! A circuit breaker shared by every replica through Redis: two replicas of one worker (two
//! runtimes here; in production two processes or pods) consume `example:breaker`. Only replica
//! a's downstream fails at first; its third failure in a row opens the breaker, and replica b,
//! whose calls all succeed, pauses too (it follows the state in Redis). A second later the
//! downstream recovers; after the shared cool-down a probe closes the breaker for both, and they
//! drain the queue.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example shared_breaker

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pythia::redis::{
    ListProducer, RedisCircuitStateStore, RedisConfig, RedisConnection, ReliableListBroker,
};
use pythia::resilience::{CircuitBreakerConfig, CircuitState, ResilienceConfig, ResilienceLayer};
use pythia::{Message, RetryPolicy, WorkerError, WorkerRuntime, worker_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
    let jobs: Vec<Message> = (0..60)
        .map(|i| Message::new(format!("charge {i}")))
        .collect();
    ListProducer::new(&conn, "example:breaker")
        .push_many(&jobs)
        .await?;

    // Every replica: the same breaker name, the same store.
    let resilience = ResilienceConfig::default().with_circuit_breaker(
        CircuitBreakerConfig::default()
            .with_name("payments-api")
            .with_consecutive_failures(3)
            .with_cool_down(Duration::from_secs(2))
            .with_sync_interval(Duration::from_millis(100))
            .with_shared_state(RedisCircuitStateStore::new(&conn)),
    );
    let down = Arc::new(AtomicBool::new(true));
    let mut replicas = Vec::new();
    let mut handles = Vec::new();
    for name in ["a", "b"] {
        let down = Arc::clone(&down);
        let fails = name == "a";
        let handler = worker_fn(move |_m: Message| {
            let sick = fails && down.load(Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await; // the downstream call
                if sick {
                    Err(WorkerError::retry("payments-api: 503"))
                } else {
                    Ok(())
                }
            }
        });
        // Each replica its own breaker (its own process, in production), synced through Redis.
        let stack = ResilienceLayer::new(resilience.clone());
        handles.push(stack.circuit_breaker().expect("configured"));
        let runtime =
            WorkerRuntime::new(ReliableListBroker::new(&conn, "example:breaker"), handler)
                .with_resilience(stack)
                .with_retry_policy(
                    RetryPolicy::default().with_initial_delay(Duration::from_millis(100)),
                )
                // Small batches, so that both replicas get messages (one fetch of the default
                // size would take all 60 and leave the failing replica with none).
                .with_concurrency(4)
                .with_batch_size(4)
                .with_burst(true);
        replicas.push(tokio::spawn(runtime.run()));
    }

    let wait_for = |state: CircuitState| {
        let handles = handles.clone();
        async move {
            while handles.iter().any(|h| h.state() != state) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait_for(CircuitState::Open)).await?;
    println!("breaker open on both replicas (only replica a saw failures)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    down.store(false, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), wait_for(CircuitState::Closed)).await?;
    println!("breaker closed on both replicas by one probe's success");

    for (name, replica) in ["a", "b"].iter().zip(replicas) {
        println!("replica {name}: {}", replica.await??);
    }
    Ok(())
}
