//! The Redis client metrics (`pythia_redis_*`), recorded by a real reliable list broker and
//! producer against a real redis-server and read back from the Prometheus recorder: round
//! trips by operation, script errors by script, connections open and re-opened, Redis memory.

use pythia_test_support as support;

use std::time::Duration;

use pythia_core::{Broker, Message, Outcome, Settlement};
use pythia_redis::{ListProducer, ReliableListBroker};
use support::{RedisServer, cmd};

/// The value of the sample `name{labels}` in a scrape.
fn sample(scrape: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    scrape.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == key).then(|| v.parse().ok())?
    })
}

#[tokio::test]
async fn redis_client_metrics_are_recorded() {
    let prometheus = pythia_core::exporter::install_recorder().unwrap();
    let mut server = RedisServer::start_with(&["--maxmemory", "100mb"]);
    let conn = server.connect().await;
    let queue = "metered";
    let jobs: Vec<Message> = (0..10).map(|i| Message::new(format!("job {i}"))).collect();
    ListProducer::new(&conn, queue)
        .push_many(&jobs)
        .await
        .unwrap();
    let broker = ReliableListBroker::new(&conn, queue);

    let got = broker.fetch(10).await.unwrap();
    assert_eq!(got.len(), 10);
    let settle = |d: &pythia_core::Delivery<u64>, outcome| Settlement {
        token: d.token,
        message: d.message.clone(),
        outcome,
    };
    let acks: Vec<_> = got[..5].iter().map(|d| settle(d, Outcome::Ack)).collect();
    broker.settle(&acks).await.unwrap();
    let retry = Outcome::Retry {
        delay: Duration::from_millis(1),
    };
    broker
        .settle(&[settle(&got[5], retry.clone())])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    broker.maintain().await.unwrap(); // heartbeat + promote
    broker.stats().await.unwrap(); // samples Redis memory

    // A script error: the retry schedule is not a sorted set.
    let scheduled = broker.keys().scheduled();
    let _: () = cmd(&conn, &["DEL", &scheduled]).await;
    let _: () = cmd(&conn, &["SET", &scheduled, "not a zset"]).await;
    let err = broker.settle(&[settle(&got[6], retry)]).await;
    assert!(err.is_err(), "the settle script refuses a wrong key type");

    let scrape = prometheus.render();
    for op in ["fetch", "settle", "promote", "heartbeat", "produce"] {
        let n = sample(
            &scrape,
            "pythia_redis_command_seconds_count",
            &format!("op=\"{op}\""),
        );
        assert!(n.is_some_and(|n| n >= 1.0), "op {op}: {n:?}\n{scrape}");
    }
    assert_eq!(
        sample(
            &scrape,
            "pythia_redis_script_errors_total",
            "script=\"reliable_settle\""
        ),
        Some(1.0),
        "{scrape}"
    );
    assert!(sample(&scrape, "pythia_redis_used_memory_bytes", "").is_some_and(|b| b > 0.0));
    assert_eq!(
        sample(&scrape, "pythia_redis_maxmemory_bytes", ""),
        Some(100.0 * 1024.0 * 1024.0)
    );
    assert_eq!(sample(&scrape, "pythia_redis_connections", ""), Some(1.0));

    // A blocking connection opens for the wait on an empty queue; one dropped by an error is
    // opened again: a reconnect.
    let _: () = cmd(&conn, &["DEL", queue]).await;
    assert!(broker.fetch(10).await.unwrap().is_empty());
    let scrape = prometheus.render();
    assert_eq!(sample(&scrape, "pythia_redis_connections", ""), Some(2.0));
    server.restart();
    let mut reconnected = false;
    for _ in 0..50 {
        if broker.fetch(10).await.is_ok() {
            let scrape = prometheus.render();
            if sample(&scrape, "pythia_redis_reconnects_total", "").is_some_and(|n| n >= 1.0) {
                reconnected = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reconnected, "{}", prometheus.render());
    drop(broker);
}
