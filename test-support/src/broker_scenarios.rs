//! Scenarios that each at-least-once broker's tests run the same way against their own broker:
//! a live consumer keeps its long job, a retry outlives the worker that scheduled it. Each test
//! produces its message first and makes its own broker's checks after.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pythia_core::{Broker, Message, WorkerError, WorkerRuntime, worker_fn};
use pythia_redis::RedisConnection;

use crate::{burst, cmd, eventually};

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

/// The first half of "a retry outlives the worker that scheduled it": a worker over `broker`
/// fails the queue's one message with a retry due in 800 ms and is stopped as soon as that
/// retry waits in `queue`'s schedule; it reports one retry. The test then starts another
/// worker and checks the second attempt.
pub async fn schedule_a_retry_then_stop<B: Broker>(broker: B, conn: &RedisConnection, queue: &str) {
    let fail = worker_fn(|_m: Message| async {
        Err(WorkerError::retry_later(
            Duration::from_millis(800),
            "not yet",
        ))
    });
    let rt = WorkerRuntime::new(broker, fail).with_signal_handling(false);
    let stop = rt.cancellation_token();
    let schedule = format!("pythia:{{{queue}}}:scheduled");
    let stopper = async {
        eventually(
            Duration::from_secs(5),
            "the retry to be scheduled",
            || async {
                let n: i64 = cmd(conn, &["ZCARD", &schedule]).await;
                n == 1
            },
        )
        .await;
        stop.cancel();
    };
    let (summary, ()) = tokio::join!(rt.run(), stopper);
    assert_eq!(summary.unwrap().retried, 1);
}
