//! Tests of the timeout layer: a handler cut off at its deadline, and one that finishes in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::TimeoutLayer;
use crate::error::{WorkerError, WorkerErrorKind};
use crate::message::Message;
use crate::worker::{WorkerService, worker_fn};

/// Sets its flag when dropped: proves a handler future was cancelled.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn an_overrunning_handler_is_dropped_and_fails_with_timeout() {
    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (d, f) = (dropped.clone(), finished.clone());
    let handler = WorkerService::new(Arc::new(worker_fn(move |_m: Message| {
        let (d, f) = (d.clone(), f.clone());
        async move {
            let _guard = DropFlag(d);
            tokio::time::sleep(Duration::from_secs(10)).await;
            f.store(true, Ordering::SeqCst);
            Ok(())
        }
    })));
    let mut svc = TimeoutLayer::new(Duration::from_secs(1)).layer(handler);

    let start = Instant::now();
    let mut fut = svc.ready().await.unwrap().call(Message::new("x"));
    let err = (&mut fut).await.unwrap_err();
    // Checked while the response future is still alive: the handler was dropped by the
    // timeout itself, not by the caller dropping the response future.
    assert!(
        dropped.load(Ordering::SeqCst),
        "handler future must be dropped"
    );
    drop(fut);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(err.kind(), WorkerErrorKind::Timeout);
    assert!(err.is_retryable());
    assert_eq!(err.to_string(), "handler timed out after 1s");

    // Even long after, the cancelled handler never resumes.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_handler_within_its_deadline_passes_through_unchanged() {
    let handler = WorkerService::new(Arc::new(worker_fn(|m: Message| async move {
        tokio::time::sleep(Duration::from_millis(999)).await;
        match m.body_str().unwrap() {
            "ok" => Ok(()),
            _ => Err(WorkerError::reject("poison")),
        }
    })));
    let mut svc = TimeoutLayer::new(Duration::from_secs(1)).layer(handler);
    svc.ready()
        .await
        .unwrap()
        .call(Message::new("ok"))
        .await
        .unwrap();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Message::new("bad"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Reject);
    assert_eq!(err.to_string(), "poison");
}

#[test]
fn the_layer_is_a_const_config() {
    const LAYER: TimeoutLayer = TimeoutLayer::new(Duration::from_secs(30));
    assert_eq!(LAYER.limit(), Duration::from_secs(30));
    let svc = LAYER.layer(());
    assert_eq!(svc.limit(), Duration::from_secs(30));
}
