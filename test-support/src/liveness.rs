//! Scenarios of consumer liveness that each at-least-once broker's tests run the same way
//! against their own broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pythia_core::{Broker, Message, worker_fn};

use crate::{burst, eventually};

/// A live consumer keeps its long job: the queue holds one message; consumer A (`broker()`)
/// takes it and works on it for 3 s, five lifetimes of a 600 ms heartbeat TTL, while consumer
/// B (`broker()` again) starts. B must never start the job, and A acks it; what is left in
/// Redis afterwards is the caller's to check.
pub async fn a_live_consumer_keeps_its_long_job<B: Broker>(broker: impl Fn() -> B) {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let slow = worker_fn(move |_m: Message| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3)).await; // five heartbeat lifetimes
            Ok(())
        }
    });
    let r = runs.clone();
    let other = worker_fn(move |_m: Message| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let a = burst(broker(), slow).run();
    let b = async {
        eventually(Duration::from_secs(5), "A to start the job", || async {
            runs.load(Ordering::SeqCst) == 1
        })
        .await;
        burst(broker(), other).run().await
    };
    let (a, b) = tokio::join!(a, b);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(runs.load(Ordering::SeqCst), 1, "B never stole A's job");
    assert_eq!((a.acked, b.acked), (1, 0));
}
