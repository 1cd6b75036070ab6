//! `rediss://` against a real redis-server listening with TLS (feature `tls`): a self-signed
//! certificate made with openssl for the test. Verification is on by default (an untrusted
//! certificate is refused); trusting the test CA file works; a worker round trip runs over TLS.

#![cfg(feature = "tls")]

use pythia_test_support as support;

use std::time::Duration;

use pythia_core::{BrokerErrorKind, Message, worker_fn};
use pythia_redis::{ListProducer, RedisConfig, RedisConnection, ReliableListBroker};
use support::burst;
use support::tls::start_tls_redis;

#[tokio::test]
async fn rediss_verifies_by_default_and_carries_a_worker() {
    let server = start_tls_redis();

    // The CA is not trusted by the system: verification must refuse the connection, at once.
    let strict = server.url();
    let err = RedisConnection::connect(
        RedisConfig::from_url(&strict)
            .unwrap()
            .with_connect_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    // A configuration error, not an outage: retrying will not make the certificate trusted.
    assert_eq!(err.kind(), BrokerErrorKind::Config, "{err}");

    let trusted = RedisConfig::from_url(&strict)
        .unwrap()
        .with_tls_ca_file(server.ca_file());
    let conn = RedisConnection::connect(trusted).await.unwrap();
    ListProducer::new(&conn, "secure")
        .push_many(
            &(0..100)
                .map(|i| Message::new(format!("{i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let summary = burst(
        ReliableListBroker::new(&conn, "secure"),
        worker_fn(|_m: Message| async { Ok(()) }),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(summary.acked, 100);
}
