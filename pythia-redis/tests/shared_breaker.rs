//! `RedisCircuitStateStore`: two breakers of one name ("replicas" in one process, each on its
//! own runtime) share their state through a real redis-server; with Redis down each decides
//! alone.

use pythia_test_support as support;

use std::time::Duration;

use pythia_core::resilience::{
    CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState,
};
use pythia_core::{
    CancellationToken, MemoryBroker, Message, WorkerError, WorkerRuntime, worker_fn,
};
use pythia_redis::RedisCircuitStateStore;
use support::{RedisServer, cmd, eventually};

fn config(store: Option<RedisCircuitStateStore>) -> CircuitBreakerConfig {
    let c = CircuitBreakerConfig::default()
        .with_name("smtp")
        .with_consecutive_failures(3)
        .with_cool_down(Duration::from_secs(30))
        .with_sync_interval(Duration::from_millis(50));
    match store {
        Some(s) => c.with_shared_state(s),
        None => c,
    }
}

/// A replica: a runtime over its own in-memory queue of `n` messages, with a handler that fails
/// (retryably) or succeeds.
fn replica(
    layer: &CircuitBreakerLayer,
    n: usize,
    fails: bool,
) -> (CircuitBreakerHandle, CancellationToken, MemoryBroker) {
    let broker = MemoryBroker::new("mail");
    broker.push_many((0..n).map(|i| Message::new(format!("mail {i}"))));
    let handler = worker_fn(move |_m: Message| async move {
        if fails {
            Err(WorkerError::retry("smtp down"))
        } else {
            Ok(())
        }
    });
    let runtime = WorkerRuntime::new(broker.clone(), handler)
        .layer(layer.clone())
        .with_concurrency(1)
        .with_signal_handling(false);
    let stop = runtime.cancellation_token();
    tokio::spawn(runtime.run());
    (layer.handle(), stop, broker)
}

#[tokio::test]
async fn one_replica_opens_the_breaker_for_both() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let store = RedisCircuitStateStore::new(&conn);
    let a = CircuitBreakerLayer::new(config(Some(store.clone())));
    let b = CircuitBreakerLayer::new(config(Some(store.clone())));
    // b starts first and idles (nothing queued), closed.
    let (b_handle, b_stop, b_broker) = replica(&b, 0, false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b_handle.state(), CircuitState::Closed);

    let (a_handle, a_stop, _) = replica(&a, 10, true);
    eventually(
        Duration::from_secs(5),
        "a opens on its own failures",
        || {
            let s = a_handle.state();
            async move { s == CircuitState::Open }
        },
    )
    .await;
    eventually(Duration::from_secs(5), "b follows through Redis", || {
        let s = b_handle.state();
        async move { s == CircuitState::Open }
    })
    .await;
    let state: String = cmd(&conn, &["HGET", &store.key("smtp"), "state"]).await;
    assert_eq!(state, "open");
    let ttl: i64 = cmd(&conn, &["PTTL", &store.key("smtp")]).await;
    assert!(ttl > 0, "the hash expires when nobody syncs it");

    // b fetches (almost) nothing while open, though its queue now has work: the idle runtime
    // was made ready while closed and waits in its fetch, so at most that one message is taken.
    b_broker.push_many((0..5).map(|i| Message::new(format!("late {i}"))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b_broker.stats().delivered <= 1, "{:?}", b_broker.stats());
    a_stop.cancel();
    b_stop.cancel();
}

#[tokio::test]
async fn with_redis_down_each_replica_decides_alone() {
    let mut server = RedisServer::start();
    let conn = server.connect().await;
    let store = RedisCircuitStateStore::new(&conn);
    server.stop();
    let a = CircuitBreakerLayer::new(config(Some(store.clone())));
    let b = CircuitBreakerLayer::new(config(Some(store)));
    let (b_handle, b_stop, _) = replica(&b, 5, false);
    let (a_handle, a_stop, _) = replica(&a, 10, true);
    eventually(Duration::from_secs(10), "a opens alone", || {
        let s = a_handle.state();
        async move { s == CircuitState::Open }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b_handle.state(),
        CircuitState::Closed,
        "nothing shared: b decides alone"
    );
    a_stop.cancel();
    b_stop.cancel();
}
