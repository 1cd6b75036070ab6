//! [`ScheduledMessages`] and [`EmptyQueue`] against a real redis-server: the schedule of a list
//! and of a stream listed in pages with due time, id and attempt, cancelled by id (delayed or
//! retry); a queue emptied with counts, in-flight work left to its worker.

use pythia_test_support as support;

use std::time::{Duration, SystemTime};

use pythia_core::{Broker, Message, Outcome, Settlement};
use pythia_redis::{
    DelayedProducer, EmptyQueue, GroupStart, ListProducer, ReliableListBroker, ScheduledKind,
    ScheduledMessages, StreamBroker, StreamProducer,
};
use support::{RedisServer, acks, cmd};

async fn retry_one<B: Broker>(b: &B, delay: Duration) -> String {
    let mut d = b.fetch(1).await.unwrap();
    let d = d.pop().expect("a message");
    let id = d.message.id().to_owned();
    b.settle(&[Settlement {
        token: d.token,
        message: d.message,
        outcome: Outcome::Retry { delay },
    }])
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn a_list_schedule_is_listed_in_due_order_and_cancelled_by_id() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let delayed = DelayedProducer::list(&conn, "jobs");
    for i in 0..5u64 {
        let at = SystemTime::now() + Duration::from_secs(3600 + i * 60);
        let m = Message::new(format!("later {i}")).with_id(format!("d{i}"));
        delayed.schedule_at(&m, at).await.unwrap();
    }
    ListProducer::new(&conn, "jobs")
        .push(&Message::new("fails").with_id("r1"))
        .await
        .unwrap();
    let b = ReliableListBroker::new(&conn, "jobs");
    assert_eq!(retry_one(&b, Duration::from_secs(60)).await, "r1");

    let schedule = ScheduledMessages::new(&conn, "jobs");
    let page = schedule.list(0, 3).await.unwrap();
    assert_eq!(page.total, 6);
    let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["r1", "d0", "d1"], "due order");
    let retry = &page.messages[0];
    assert_eq!(retry.kind, ScheduledKind::Retry);
    assert_eq!(retry.message.as_ref().unwrap().attempt(), 2);
    assert_eq!(retry.message.as_ref().unwrap().body_str().unwrap(), "fails");
    let due = retry.due_at.duration_since(SystemTime::now()).unwrap();
    assert!(
        due > Duration::from_secs(50) && due <= Duration::from_secs(61),
        "{due:?}"
    );
    assert_eq!(page.messages[1].kind, ScheduledKind::Delayed);
    assert_eq!(page.messages[1].message.as_ref().unwrap().attempt(), 1);
    let rest = schedule.list(3, 10).await.unwrap();
    let ids: Vec<&str> = rest.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["d2", "d3", "d4"]);

    assert_eq!(
        schedule.cancel("d3").await.unwrap(),
        Some(ScheduledKind::Delayed)
    );
    assert_eq!(
        schedule.cancel("r1").await.unwrap(),
        Some(ScheduledKind::Retry)
    );
    assert_eq!(schedule.cancel("r1").await.unwrap(), None);
    assert_eq!(schedule.cancel("nope").await.unwrap(), None);
    let left = schedule.list(0, 10).await.unwrap();
    let ids: Vec<&str> = left.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["d0", "d1", "d2", "d4"]);
    assert_eq!(
        delayed.pending().await.unwrap(),
        4,
        "the payload went with d3"
    );
}

#[tokio::test]
async fn a_stream_retry_is_listed_and_cancelled() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    StreamProducer::new(&conn, "ev")
        .add(&Message::new("x").with_id("s1"))
        .await
        .unwrap();
    let b = StreamBroker::new(&conn, "ev", "g").with_start(GroupStart::Beginning);
    assert_eq!(retry_one(&b, Duration::from_secs(60)).await, "s1");
    let schedule = ScheduledMessages::new(&conn, "ev");
    let page = schedule.list(0, 10).await.unwrap();
    assert_eq!(page.total, 1);
    let m = &page.messages[0];
    assert_eq!((m.kind, m.id.as_str()), (ScheduledKind::Retry, "s1"));
    assert_eq!(m.message.as_ref().unwrap().attempt(), 2);
    assert_eq!(
        schedule.cancel("s1").await.unwrap(),
        Some(ScheduledKind::Retry)
    );
    assert_eq!(schedule.list(0, 10).await.unwrap().total, 0);
}

#[tokio::test]
async fn empty_removes_waiting_messages_and_leaves_in_flight_work_to_its_worker() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let msgs: Vec<Message> = (0..10).map(|i| Message::new(format!("m{i}"))).collect();
    ListProducer::new(&conn, "jobs")
        .push_many(&msgs)
        .await
        .unwrap();
    DelayedProducer::list(&conn, "jobs")
        .schedule_in(&Message::new("later"), Duration::from_secs(3600))
        .await
        .unwrap();
    let b = ReliableListBroker::new(&conn, "jobs");
    let held = b.fetch(3).await.unwrap();

    let report = EmptyQueue::new("jobs").run(&conn).await.unwrap();
    assert_eq!((report.waiting, report.scheduled), (7, 0));
    assert_eq!(cmd::<i64>(&conn, &["LLEN", "jobs"]).await, 0);
    assert_eq!(
        ScheduledMessages::new(&conn, "jobs")
            .list(0, 5)
            .await
            .unwrap()
            .total,
        1
    );
    // The worker still holds and acks its three.
    let acks = acks(held);
    b.settle(&acks).await.unwrap();
    assert!(
        !b.is_drained().await.unwrap(),
        "the delayed message is still there"
    );

    let report = EmptyQueue::new("jobs")
        .with_scheduled(true)
        .run(&conn)
        .await
        .unwrap();
    assert_eq!((report.waiting, report.scheduled), (0, 1));
    assert!(b.is_drained().await.unwrap());

    // A stream keeps its group; a key of another type is refused before any write.
    let p = StreamProducer::new(&conn, "ev");
    p.add(&Message::new("e1")).await.unwrap();
    p.add(&Message::new("e2")).await.unwrap();
    let s = StreamBroker::new(&conn, "ev", "g").with_start(GroupStart::Beginning);
    assert_eq!(s.fetch(1).await.unwrap().len(), 1);
    assert_eq!(EmptyQueue::new("ev").run(&conn).await.unwrap().waiting, 2);
    assert_eq!(cmd::<i64>(&conn, &["XLEN", "ev"]).await, 0);
    let groups: Vec<redis::Value> = cmd(&conn, &["XINFO", "GROUPS", "ev"]).await;
    assert_eq!(groups.len(), 1, "the group stays");
    let _: i64 = cmd(&conn, &["SADD", "odd", "x"]).await;
    let e = EmptyQueue::new("odd").run(&conn).await.unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
}
