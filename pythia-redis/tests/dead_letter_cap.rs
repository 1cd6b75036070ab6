//! Dead letters are messages: by default every one is kept until it is replayed or purged,
//! however many there are. A cap is an explicit opt-in (`with_dead_letter_cap`); what it trims
//! is counted in `pythia_dead_letters_trimmed_total` and logged.

use pythia_test_support as support;
use pythia_test_support::counters;

use std::time::Duration;

use counters::{counter, metrics_recorder};
use pythia_core::{Broker, Message, Outcome, Settlement};
use pythia_redis::{
    GroupStart, ListBroker, ListProducer, QueueKeys, RedisConnection, ReliableListBroker,
    StreamBroker, StreamProducer,
};
use support::{RedisServer, cmd};

const TRIMMED: &str = "pythia_dead_letters_trimmed_total";

fn dead<T>(token: T, message: Message) -> Settlement<T> {
    Settlement {
        token,
        message,
        outcome: Outcome::DeadLetter {
            reason: "poison".into(),
        },
    }
}

/// More dead letters than the old default cap of 100,000: all of them are kept.
#[tokio::test]
async fn by_default_every_dead_letter_is_kept() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let broker = ListBroker::new(&conn, "many");
    let n = 100_500;
    let batch: Vec<Settlement<()>> = (0..1000).map(|_| dead((), Message::new("x"))).collect();
    for _ in 0..n / 1000 {
        broker.settle(&batch).await.unwrap();
    }
    broker.settle(&batch[..n % 1000]).await.unwrap();
    let kept: i64 = cmd(
        &conn,
        &["LLEN", &QueueKeys::new("pythia", "many").dead_letters()],
    )
    .await;
    assert_eq!(kept as usize, n, "no dead letter dropped by default");
}

async fn reliable_dead_letters(conn: &RedisConnection, queue: &str, n: usize) {
    ListProducer::new(conn, queue)
        .push_many(
            &(0..n)
                .map(|i| Message::new(i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let b = ReliableListBroker::new(conn, queue).with_dead_letter_cap(3);
    let got = b.fetch(n).await.unwrap();
    let batch: Vec<_> = got.into_iter().map(|d| dead(d.token, d.message)).collect();
    b.settle(&batch).await.unwrap();
}

/// A cap keeps the newest and counts what it trimmed, for every broker that dead-letters.
#[tokio::test]
async fn a_cap_trims_the_oldest_and_counts_them() {
    metrics_recorder();
    let server = RedisServer::start();
    let conn = server.connect().await;

    let list = ListBroker::new(&conn, "capped-list").with_dead_letter_cap(3);
    let batch: Vec<Settlement<()>> = (0..10).map(|_| dead((), Message::new("x"))).collect();
    list.settle(&batch).await.unwrap();
    let kept: i64 = cmd(
        &conn,
        &[
            "LLEN",
            &QueueKeys::new("pythia", "capped-list").dead_letters(),
        ],
    )
    .await;
    assert_eq!(kept, 3);
    assert_eq!(counter(TRIMMED, &[("queue", "capped-list")]), 7);

    reliable_dead_letters(&conn, "capped-reliable", 10).await;
    let kept: i64 = cmd(
        &conn,
        &[
            "LLEN",
            &QueueKeys::new("pythia", "capped-reliable").dead_letters(),
        ],
    )
    .await;
    assert_eq!(kept, 3);
    assert_eq!(counter(TRIMMED, &[("queue", "capped-reliable")]), 7);

    // A stream's dead letters are trimmed approximately (`MAXLEN ~`): what went is counted.
    let msgs: Vec<Message> = (0..300).map(|i| Message::new(i.to_string())).collect();
    StreamProducer::new(&conn, "capped-stream")
        .add_many(&msgs)
        .await
        .unwrap();
    let s = StreamBroker::new(&conn, "capped-stream", "g")
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_dead_letter_cap(10);
    let mut settled = 0;
    while settled < 300 {
        let got = s.fetch(100).await.unwrap();
        settled += got.len();
        let batch: Vec<_> = got.into_iter().map(|d| dead(d.token, d.message)).collect();
        s.settle(&batch).await.unwrap();
    }
    let kept: i64 = cmd(
        &conn,
        &[
            "XLEN",
            &QueueKeys::new("pythia", "capped-stream").dead_letters(),
        ],
    )
    .await;
    assert!(kept < 300, "the cap trimmed ({kept} kept)");
    assert_eq!(
        counter(TRIMMED, &[("queue", "capped-stream")]),
        300 - kept as u64,
        "every trimmed dead letter counted"
    );
}
