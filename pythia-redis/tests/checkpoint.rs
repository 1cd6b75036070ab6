//! Checkpoints of plain `XREAD` readers against a real redis-server: forward-only saves, TTL,
//! and a reader that resumes where it was after a restart.

use pythia_test_support as support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{CancellationToken, Message, WorkerError, worker_fn};
use pythia_redis::{Checkpoint, ReaderStart, StreamEntryId, StreamProducer, StreamReader};
use support::{RedisServer, eventually};

fn id(s: &str) -> StreamEntryId {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_checkpoint_only_moves_forward_and_can_expire() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let cp = Checkpoint::new(&conn, "events", "audit");
    assert_eq!(cp.key(), "pythia:{events}:checkpoint:audit");
    assert_eq!(cp.load().await.unwrap(), None);
    assert!(cp.save(id("9-5")).await.unwrap());
    assert!(!cp.save(id("3-0")).await.unwrap(), "never back");
    assert!(
        !cp.save(id("9-5")).await.unwrap(),
        "a repeated save is harmless"
    );
    assert!(cp.save(id("9-10")).await.unwrap());
    assert!(
        cp.save(id("10-0")).await.unwrap(),
        "numeric, not textual, order"
    );
    assert_eq!(cp.load().await.unwrap(), Some(id("10-0")));
    cp.reset().await.unwrap();
    assert_eq!(cp.load().await.unwrap(), None);

    let short = Checkpoint::new(&conn, "events", "tmp").with_ttl(Some(Duration::from_millis(200)));
    assert!(short.save(id("1-0")).await.unwrap());
    assert_eq!(short.load().await.unwrap(), Some(id("1-0")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(short.load().await.unwrap(), None, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_resumes_after_a_restart() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let producer = StreamProducer::new(&conn, "events");
    let first: Vec<Message> = (0..10).map(|i| Message::new(format!("e{i}"))).collect();
    producer.add_many(&first).await.unwrap();

    // First life: reads from the beginning, processes 6 entries, commits, "crashes".
    let reader = StreamReader::new(&conn, "events", "audit")
        .with_start(ReaderStart::Beginning)
        .with_batch_size(6);
    let batch = reader.read().await.unwrap();
    assert_eq!(batch.len(), 6);
    assert_eq!(batch[0].1.body().as_ref(), b"e0");
    assert_eq!(
        batch[0].1.id(),
        first[0].id(),
        "decoded like a stream broker's entry"
    );
    let last = batch.last().unwrap().0;
    assert!(reader.commit(last).await.unwrap());
    let _unprocessed = reader.read().await.unwrap(); // read, never committed
    drop(reader);

    let more: Vec<Message> = (10..14).map(|i| Message::new(format!("e{i}"))).collect();
    producer.add_many(&more).await.unwrap();

    // Second life: resumes after the checkpoint, processes everything else exactly once.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let rec = Arc::clone(&seen);
    let flaky_once = Arc::new(Mutex::new(true));
    let worker = worker_fn(move |msg: Message| {
        let body = msg.body_str().unwrap().to_owned();
        let fail = body == "e7" && std::mem::take(&mut *flaky_once.lock().unwrap());
        if !fail {
            rec.lock().unwrap().push(body);
        }
        async move {
            if fail {
                Err(WorkerError::retry("blip"))
            } else {
                Ok(())
            }
        }
    });
    let reader = Arc::new(
        StreamReader::new(&conn, "events", "audit")
            .with_start(ReaderStart::Beginning)
            .with_retry_policy(
                pythia_core::RetryPolicy::default().with_initial_delay(Duration::from_millis(10)),
            ),
    );
    assert_eq!(reader.position().await.unwrap(), last);
    let stop = CancellationToken::new();
    let run = {
        let (reader, stop) = (Arc::clone(&reader), stop.clone());
        tokio::spawn(async move { reader.run(&worker, stop).await })
    };
    eventually(Duration::from_secs(5), "the 8 remaining entries", || {
        let n = seen.lock().unwrap().len();
        async move { n >= 8 }
    })
    .await;
    stop.cancel();
    let processed = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(processed, 8);
    let expected: Vec<String> = (6..14).map(|i| format!("e{i}")).collect();
    assert_eq!(
        *seen.lock().unwrap(),
        expected,
        "in order, once, e7 retried in process"
    );
    let end = reader.checkpoint().load().await.unwrap().unwrap();
    let tail: Vec<(String, Vec<(String, String)>)> =
        support::cmd(&conn, &["XREVRANGE", "events", "+", "-", "COUNT", "1"]).await;
    assert_eq!(end.to_string(), tail[0].0, "committed up to the last entry");
}

#[tokio::test]
async fn a_new_reader_starts_at_new_entries_by_default() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let producer = StreamProducer::new(&conn, "log");
    producer.add(&Message::new("old")).await.unwrap();
    let reader = StreamReader::new(&conn, "log", "tail");
    let start = reader.position().await.unwrap();
    assert!(start > StreamEntryId::default());
    producer.add(&Message::new("new")).await.unwrap();
    let got = reader.read().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.body().as_ref(), b"new");
    assert!(
        reader.read().await.unwrap().is_empty(),
        "blocks, then nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_stopped_while_an_entry_still_fails_does_not_commit_it() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let producer = StreamProducer::new(&conn, "events");
    let msgs: Vec<Message> = (0..3).map(|i| Message::new(format!("e{i}"))).collect();
    producer.add_many(&msgs).await.unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> =
        support::cmd(&conn, &["XRANGE", "events", "-", "+"]).await;

    let attempts_of_e1 = Arc::new(Mutex::new(0u32));
    let attempts = Arc::clone(&attempts_of_e1);
    let worker = worker_fn(move |msg: Message| {
        let failing = msg.body_str().unwrap() == "e1";
        if failing {
            *attempts.lock().unwrap() += 1;
        }
        async move {
            if failing {
                Err(WorkerError::retry("downstream down"))
            } else {
                Ok(())
            }
        }
    });
    let reader = Arc::new(
        StreamReader::new(&conn, "events", "audit")
            .with_start(ReaderStart::Beginning)
            .with_retry_policy(
                pythia_core::RetryPolicy::default()
                    .with_max_attempts(5)
                    .with_initial_delay(Duration::from_secs(60)),
            ),
    );
    let stop = CancellationToken::new();
    let run = {
        let (reader, stop) = (Arc::clone(&reader), stop.clone());
        tokio::spawn(async move { reader.run(&worker, stop).await })
    };
    eventually(Duration::from_secs(5), "e1's first failure", || {
        let n = *attempts_of_e1.lock().unwrap();
        async move { n >= 1 }
    })
    .await;
    stop.cancel(); // while e1 waits for its retry
    let processed = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        reader.checkpoint().load().await.unwrap(),
        Some(id(&entries[0].0)),
        "e1 still failed: it is not committed, so the next run reads it again"
    );
    assert_eq!(processed, 1, "only e0 finished");
    assert_eq!(reader.position().await.unwrap(), id(&entries[0].0));
}
