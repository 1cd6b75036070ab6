//! Delayed and scheduled messages against a real redis-server: promoted once and on time by
//! racing workers, cancellable by id, for lists and streams.

use pythia_test_support as support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pythia_core::message::unix_millis;
use pythia_core::{
    Broker, CancellationToken, Message, RunSummary, RuntimeError, Worker, WorkerRuntime, worker_fn,
};
use pythia_redis::{
    DelayedProducer, GroupStart, ListBroker, QueueKeys, ReliableListBroker, StreamBroker,
};
use support::{RedisServer, cmd, eventually};
use tokio::task::JoinHandle;

const INTERVAL: Duration = Duration::from_millis(100);

type Seen = Arc<Mutex<Vec<(String, u64, String)>>>;

fn recorder(seen: &Seen, who: &str) -> impl Worker + use<> {
    let seen = Arc::clone(seen);
    let who = who.to_owned();
    worker_fn(move |msg: Message| {
        seen.lock().unwrap().push((
            msg.id().to_owned(),
            unix_millis(SystemTime::now()),
            who.clone(),
        ));
        async { Ok(()) }
    })
}

/// A runtime of `worker` over `broker` that runs until `stop` is cancelled.
fn until_stopped<B: Broker, W: Worker>(
    broker: B,
    worker: W,
    stop: &CancellationToken,
) -> WorkerRuntime<B> {
    WorkerRuntime::new(broker, worker)
        .with_signal_handling(false)
        .with_cancellation(stop.clone())
}

/// Cancels `stop`, then waits (10 s at most each) for every runtime to end without error.
async fn stop_all(
    stop: &CancellationToken,
    handles: Vec<JoinHandle<Result<RunSummary, RuntimeError>>>,
) {
    stop.cancel();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_fire_once_and_on_time_with_racing_workers() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let delayed = DelayedProducer::list(&conn, "jobs");
    let start = SystemTime::now();
    let mut due = HashMap::new();
    let mut items = Vec::new();
    for i in 0..40u64 {
        let at = start + Duration::from_millis(400 + i * 25);
        let msg = Message::new(format!("job {i}"));
        due.insert(msg.id().to_owned(), unix_millis(at));
        items.push((msg, at));
    }
    assert_eq!(delayed.schedule_many(&items).await.unwrap(), 0);
    assert_eq!(delayed.pending().await.unwrap(), 40);

    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let mut handles = Vec::new();
    for i in 0..3 {
        let who = format!("reliable-{i}");
        let broker = ReliableListBroker::new(&conn, "jobs").with_maintenance_interval(INTERVAL);
        handles.push(tokio::spawn(
            until_stopped(broker, recorder(&seen, &who), &stop).run(),
        ));
    }
    for i in 0..2 {
        let who = format!("list-{i}");
        let broker = ListBroker::new(&conn, "jobs").with_maintenance_interval(INTERVAL);
        handles.push(tokio::spawn(
            until_stopped(broker, recorder(&seen, &who), &stop).run(),
        ));
    }
    eventually(Duration::from_secs(10), "all 40 delayed messages", || {
        let n = seen.lock().unwrap().len();
        async move { n >= 40 }
    })
    .await;
    // Long enough for a doubled promotion to show.
    tokio::time::sleep(INTERVAL * 4).await;
    stop_all(&stop, handles).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        40,
        "each delayed message exactly once: {seen:?}"
    );
    let mut by_id: HashMap<&str, u64> = HashMap::new();
    for (id, at, _) in seen.iter() {
        assert!(by_id.insert(id, *at).is_none(), "{id} delivered twice");
    }
    let mut workers: Vec<&str> = seen.iter().map(|(_, _, w)| w.as_str()).collect();
    workers.sort_unstable();
    workers.dedup();
    println!("consumed by {workers:?}");
    for (id, due_ms) in &due {
        let at = by_id[id.as_str()];
        assert!(at >= *due_ms, "{id} delivered {} ms early", due_ms - at);
        // One promotion interval, plus slack for a loaded 2-core machine.
        assert!(
            at <= due_ms + INTERVAL.as_millis() as u64 + 400,
            "{id} delivered {} ms after its time",
            at - due_ms
        );
    }
    let keys = QueueKeys::new("pythia", "jobs");
    assert_eq!(cmd::<u64>(&conn, &["ZCARD", &keys.scheduled()]).await, 0);
    assert_eq!(cmd::<u64>(&conn, &["HLEN", &keys.scheduled_ids()]).await, 0);
}

#[tokio::test]
async fn cancel_by_id_and_reschedule() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let delayed = DelayedProducer::list(&conn, "mail");
    let soon = SystemTime::now() + Duration::from_millis(200);
    let a = Message::new("a").with_id("a");
    let b = Message::new("b").with_id("b");
    assert!(!delayed.schedule_at(&a, soon).await.unwrap());
    assert!(!delayed.schedule_at(&b, soon).await.unwrap());
    // Scheduling the same id again replaces it: one message, at the new time.
    let a2 = Message::new("a, updated").with_id("a");
    assert!(delayed.schedule_at(&a2, soon).await.unwrap());
    assert_eq!(delayed.pending().await.unwrap(), 2);
    let due = delayed.due_at("a").await.unwrap().unwrap();
    assert_eq!(unix_millis(due), unix_millis(soon));

    assert!(delayed.cancel("b").await.unwrap());
    assert!(!delayed.cancel("b").await.unwrap(), "cancelled already");
    assert!(!delayed.cancel("never").await.unwrap());
    assert_eq!(delayed.due_at("b").await.unwrap(), None);

    assert_eq!(delayed.promote_due().await.unwrap(), 0, "not due yet");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(delayed.promote_due().await.unwrap(), 1);
    let items: Vec<String> = cmd(&conn, &["LRANGE", "mail", "0", "-1"]).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(items[0].contains("a, updated") && items[0].contains(r#""id":"a""#));
    assert!(
        !delayed.cancel("a").await.unwrap(),
        "promoted: too late to cancel"
    );
    let keys = QueueKeys::new("pythia", "mail");
    assert_eq!(cmd::<u64>(&conn, &["HLEN", &keys.scheduled_ids()]).await, 0);
    assert_eq!(cmd::<u64>(&conn, &["ZCARD", &keys.scheduled()]).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_stream_message_is_promoted_by_the_stream_broker() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let delayed = DelayedProducer::stream(&conn, "events");
    let msg = Message::new("ping").with_header("tenant", "acme");
    let cancelled = Message::new("never");
    let at = SystemTime::now() + Duration::from_millis(300);
    delayed.schedule_at(&msg, at).await.unwrap();
    delayed.schedule_at(&cancelled, at).await.unwrap();
    assert!(delayed.cancel(cancelled.id()).await.unwrap());
    assert!(
        delayed
            .schedule_at(&Message::new("x").with_header("body", "no"), at)
            .await
            .is_err(),
        "reserved header refused"
    );

    let seen: Arc<Mutex<Vec<(Message, u64)>>> = Arc::default();
    let stop = CancellationToken::new();
    let broker = StreamBroker::new(&conn, "events", "g")
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(INTERVAL);
    let rec = Arc::clone(&seen);
    let worker = worker_fn(move |m: Message| {
        rec.lock()
            .unwrap()
            .push((m, unix_millis(SystemTime::now())));
        async { Ok(()) }
    });
    let h = tokio::spawn(until_stopped(broker, worker, &stop).run());
    eventually(Duration::from_secs(5), "the delayed entry", || {
        let n = seen.lock().unwrap().len();
        async move { n >= 1 }
    })
    .await;
    tokio::time::sleep(INTERVAL * 4).await;
    stop_all(&stop, vec![h]).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (got, when) = &seen[0];
    assert_eq!(got.id(), msg.id());
    assert_eq!(got.body().as_ref(), b"ping");
    assert_eq!(got.header("tenant"), Some("acme"));
    assert!(*when >= unix_millis(at));
    assert_eq!(delayed.pending().await.unwrap(), 0);
}
