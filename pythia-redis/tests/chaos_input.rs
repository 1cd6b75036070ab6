//! Chaos, input side: what producers that are not Pythia may put in a queue. Invalid UTF-8, a
//! truncated or ill-typed JSON envelope, a 10 MB body, an empty body, stream entries with
//! unexpected fields or no body field, and a queue key of the wrong type. Nothing may panic,
//! every item is delivered as documented (a raw body when it is not a well-formed envelope; see
//! `pythia_core::envelope` and `pythia_redis::stream`), a handler that refuses it sends it to
//! the dead-letter queue with a clear reason, and the worker keeps running.
//!
//! ```sh
//! cargo test -p pythia-redis --test chaos_input -- --nocapture
//! ```
//!
//! The last tests throw random bytes and mutated envelopes at the decoders (a bounded,
//! stable-Rust counterpart of the cargo-fuzz targets in `fuzz/`).

use pythia_test_support as support;
use pythia_test_support::chaos;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chaos::{query, report, within};
use pythia_core::{
    Broker, BrokerErrorKind, Message, RuntimeError, Source, Worker, WorkerError, WorkerRuntime,
    envelope,
};
use pythia_redis::stream::message_from_entry;
use pythia_redis::{
    GroupStart, ListBroker, ListProducer, PubSubBroker, RedisConnection, ReliableListBroker,
    StreamBroker,
};
use support::{RedisServer, burst, eventually};

const TEN_MB: usize = 10 * 1024 * 1024;

/// Accepts JSON bodies and rejects anything else ("poison": straight to the dead-letter
/// queue), remembering every message it was given.
#[derive(Clone, Default)]
struct JsonOrReject {
    seen: Arc<Mutex<Vec<Message>>>,
}

impl Worker for JsonOrReject {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        self.seen.lock().unwrap().push(msg.clone());
        msg.json::<serde_json::Value>()
            .map(drop)
            .map_err(|e| WorkerError::reject(format!("not JSON: {e}")))
    }
}

impl JsonOrReject {
    fn seen(&self) -> Vec<Message> {
        self.seen.lock().unwrap().clone()
    }
}

fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(b).is_ok()
}

/// Raw list items of every awkward kind, with the body each must be delivered as.
fn awkward_items() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let big = vec![b'x'; TEN_MB];
    vec![
        (
            "invalid utf-8",
            vec![0xff, 0xfe, 0x00, 0x80],
            vec![0xff, 0xfe, 0x00, 0x80],
        ),
        (
            "truncated envelope",
            br#"{"pythia":1,"body":"#.to_vec(),
            br#"{"pythia":1,"body":"#.to_vec(),
        ),
        (
            "ill-typed envelope",
            br#"{"pythia":1,"attempt":"three","body":"x"}"#.to_vec(),
            br#"{"pythia":1,"attempt":"three","body":"x"}"#.to_vec(),
        ),
        (
            "negative attempt",
            br#"{"pythia":1,"attempt":-1,"body":"x"}"#.to_vec(),
            br#"{"pythia":1,"attempt":-1,"body":"x"}"#.to_vec(),
        ),
        (
            "corrupt base64 body",
            br#"{"pythia":1,"id":"b","body_b64":"!!!"}"#.to_vec(),
            br#"{"pythia":1,"id":"b","body_b64":"!!!"}"#.to_vec(),
        ),
        (
            "envelope with a JSON body",
            br#"{"pythia":1,"id":"j","body":"{\"ok\":true}","headers":{"n":1}}"#.to_vec(),
            br#"{"ok":true}"#.to_vec(),
        ),
        ("empty body", Vec::new(), Vec::new()),
        ("10 MB raw body", big.clone(), big),
        (
            "good",
            br#"{"order":7}"#.to_vec(),
            br#"{"order":7}"#.to_vec(),
        ),
    ]
}

/// Scenario 6 for a list broker: every awkward item is delivered once as documented, the ones
/// the handler refuses are in the dead-letter list with their body and reason, and a message
/// after them is processed: the worker kept running.
async fn awkward_list_items<B: Broker>(
    name: &'static str,
    make: impl FnOnce(&RedisConnection) -> B,
) {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let items = awkward_items();
    let mut m = conn.manager();
    for (_, raw, _) in &items {
        let _: i64 = redis::cmd("LPUSH")
            .arg("bad")
            .arg(raw.as_slice())
            .query_async(&mut m)
            .await
            .unwrap();
    }
    // A 10 MB binary body through Pythia's producer: base64 in the envelope, bytes back out.
    let binary: Vec<u8> = (0..TEN_MB).map(|i| (i % 251) as u8).collect();
    ListProducer::new(&conn, "bad")
        .push(&Message::new(binary.clone()))
        .await
        .unwrap();
    let w = JsonOrReject::default();
    let rt = burst(make(&conn), w.clone()).with_stats_interval(None);
    let summary = within(60, "the worker", rt.run()).await.unwrap();

    let seen = w.seen();
    let mut expected: Vec<Vec<u8>> = items.iter().map(|(_, _, body)| body.clone()).collect();
    expected.push(binary);
    let mut got: Vec<Vec<u8>> = seen.iter().map(|m| m.body().to_vec()).collect();
    expected.sort();
    got.sort();
    assert_eq!(
        got.len(),
        expected.len(),
        "{name}: each item delivered once"
    );
    assert!(got == expected, "{name}: bodies delivered as documented");
    assert!(seen.iter().all(|m| m.attempt() == 1));
    let headed = seen.iter().find(|m| m.id() == "j").expect("the envelope");
    assert_eq!(
        headed.header("n"),
        Some("1"),
        "a non-string header value as JSON"
    );

    let refused = expected.iter().filter(|b| !is_json(b)).count();
    assert_eq!(
        summary.dead_lettered as usize, refused,
        "{name}: {summary:?}"
    );
    assert_eq!(summary.acked as usize, expected.len() - refused);
    let dlq: Vec<Vec<u8>> = query(&conn, &["LRANGE", "pythia:{bad}:dlq", "0", "-1"]).await;
    assert_eq!(dlq.len(), refused);
    for raw in dlq {
        let dead = envelope::decode_dead_letter(raw.into(), &Source::new(name, "bad"));
        let reason = dead.reason.expect("a reason");
        assert!(reason.starts_with("rejected: not JSON"), "{reason}");
        assert!(dead.failed_at.is_some());
        assert!(expected.contains(&dead.message.body().to_vec()));
    }
    let left: i64 = query(&conn, &["LLEN", "bad"]).await;
    assert_eq!(left, 0);
    report(
        "bad-input",
        name,
        expected.len(),
        0,
        0,
        None,
        &format!(
            "dead_lettered={} acked={} (invalid utf-8, truncated/ill-typed envelopes, empty, 10 MB raw and enveloped)",
            summary.dead_lettered, summary.acked
        ),
    );
}

#[tokio::test]
async fn awkward_items_on_a_reliable_list() {
    awkward_list_items("reliable-list", |c| ReliableListBroker::new(c, "bad")).await;
}

#[tokio::test]
async fn awkward_items_on_a_list() {
    awkward_list_items("list", |c| ListBroker::new(c, "bad")).await;
}

/// Scenario 6 for a stream: entries no Pythia producer would write.
#[tokio::test]
async fn awkward_stream_entries() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let big = vec![b'y'; TEN_MB];
    let mut m = conn.manager();
    let mut add = async |fields: &[(&[u8], &[u8])]| -> String {
        let mut c = redis::cmd("XADD");
        c.arg("odd").arg("*");
        for (k, v) in fields {
            c.arg(*k).arg(*v);
        }
        c.query_async(&mut m).await.unwrap()
    };
    let no_body = add(&[(b"user", b"7"), (b"action", b"signup")]).await;
    let extra = add(&[
        (b"body", b"{\"a\":1}"),
        (b"weird-field", b"w"),
        (b"pythia-unknown", b"ignored"),
        (b"pythia-attempt", b"not a number"),
        (b"pythia-enqueued-at", b"yesterday"),
    ])
    .await;
    let binary = add(&[(b"body", &[0xff, 0x00]), (&[0xc3, 0x28], &[0xfe])]).await;
    let empty = add(&[(b"body", b"")]).await;
    let large = add(&[(b"body", &big)]).await;
    let truncated = add(&[(b"body", br#"{"pythia":1,"body":"#)]).await;
    // A foreign producer that claims a high attempt number: out of attempts on arrival.
    let exhausted = add(&[(b"body", b"{}"), (b"pythia-attempt", b"99")]).await;
    let good = add(&[(b"body", b"[1,2,3]")]).await;

    let w = JsonOrReject::default();
    let broker = StreamBroker::new(&conn, "odd", "g")
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(Duration::from_millis(100))
        .with_heartbeat_ttl(Duration::from_millis(600));
    let rt = burst(broker, w.clone()).with_stats_interval(None);
    let summary = within(60, "the worker", rt.run()).await.unwrap();
    let seen: HashMap<String, Message> = w
        .seen()
        .into_iter()
        .map(|m| (m.id().to_owned(), m))
        .collect();

    let m = &seen[&no_body];
    let object: serde_json::Value = m.json().unwrap();
    assert_eq!(object, serde_json::json!({"user": "7", "action": "signup"}));
    let m = &seen[&extra];
    assert_eq!(m.body().as_ref(), b"{\"a\":1}");
    assert_eq!(m.header("weird-field"), Some("w"));
    assert_eq!(m.headers().len(), 1, "pythia-* fields are never headers");
    assert_eq!(m.attempt(), 1, "a garbage attempt counts as the first");
    let entry_ms: u64 = extra.split('-').next().unwrap().parse().unwrap();
    assert_eq!(
        m.enqueued_at().map(pythia_core::message::unix_millis),
        Some(entry_ms),
        "a garbage enqueue time falls back to the entry id's"
    );
    let m = &seen[&binary];
    assert_eq!(m.body().as_ref(), &[0xff, 0x00]);
    assert_eq!(
        m.header("\u{fffd}("),
        Some("\u{fffd}"),
        "invalid UTF-8 replaced"
    );
    assert_eq!(seen[&empty].body().len(), 0);
    assert_eq!(seen[&large].body().len(), TEN_MB);
    assert_eq!(
        seen[&truncated].body().as_ref(),
        br#"{"pythia":1,"body":"#,
        "a stream body is never unwrapped"
    );
    assert!(
        !seen.contains_key(&exhausted),
        "dead-lettered without running"
    );
    assert!(seen.contains_key(&good));

    // Refused: binary, empty, 10 MB of 'y', truncated (4) + the exhausted one.
    assert_eq!(summary.dead_lettered, 5, "{summary:?}");
    assert_eq!(summary.acked, 3);
    // Read as raw values: a dead letter keeps the entry's fields byte for byte, invalid UTF-8
    // field names included.
    let dlq: redis::Value = query(&conn, &["XRANGE", "pythia:{odd}:dlq", "-", "+"]).await;
    let redis::Value::Array(dlq) = dlq else {
        panic!("unexpected XRANGE reply")
    };
    assert_eq!(dlq.len(), 5);
    for e in dlq {
        let (_, fields): (String, Vec<Vec<u8>>) = redis::from_redis_value(e).unwrap();
        let error = fields
            .chunks(2)
            .find(|kv| kv[0] == b"pythia-error")
            .map(|kv| String::from_utf8_lossy(&kv[1]).into_owned())
            .expect("a reason");
        assert!(
            error.starts_with("rejected: not JSON") || error.contains("exceeded 3 attempts"),
            "{error}"
        );
    }
    report(
        "bad-input",
        "stream",
        8,
        0,
        0,
        None,
        &format!(
            "dead_lettered={} acked={} (no body field, unexpected/reserved/garbage fields, invalid utf-8, empty, 10 MB, pythia-attempt=99)",
            summary.dead_lettered, summary.acked
        ),
    );
}

/// Scenario 6 for pub/sub: payloads are decoded like list items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_pubsub_payloads() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let broker = Arc::new(
        PubSubBroker::builder(&conn)
            .channel("odd.c")
            .subscribe()
            .await
            .unwrap(),
    );
    let w = JsonOrReject::default();
    let rt = WorkerRuntime::<PubSubBroker>::new(Arc::clone(&broker), w.clone())
        .with_signal_handling(false)
        .with_stats_interval(None);
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    let items = awkward_items();
    let mut m = conn.manager();
    for (_, raw, _) in &items {
        let n: i64 = redis::cmd("PUBLISH")
            .arg("odd.c")
            .arg(raw.as_slice())
            .query_async(&mut m)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    eventually(Duration::from_secs(30), "every payload", || async {
        w.seen.lock().unwrap().len() == items.len()
    })
    .await;
    stop.cancel();
    let summary = within(30, "the worker", run).await.unwrap().unwrap();
    let mut got: Vec<Vec<u8>> = w.seen().iter().map(|m| m.body().to_vec()).collect();
    let mut expected: Vec<Vec<u8>> = items.into_iter().map(|(_, _, b)| b).collect();
    got.sort();
    expected.sort();
    assert!(got == expected, "payloads delivered as documented");
    let refused = expected.iter().filter(|b| !is_json(b)).count();
    assert_eq!(summary.dead_lettered as usize, refused);
    let dlq: i64 = query(&conn, &["LLEN", "pythia:{odd.c}:dlq"]).await;
    assert_eq!(dlq as usize, refused);
    report(
        "bad-input",
        "pubsub",
        expected.len(),
        0,
        0,
        None,
        &format!(
            "dead_lettered={} acked={}",
            summary.dead_lettered, summary.acked
        ),
    );
}

/// Scenario 6, a queue key of the wrong type (a hash where a list or stream belongs): a clear
/// `WRONGTYPE` configuration error, fatal for the worker (no retry fixes another program's
/// key; `pythia run` exits 2), nothing written or lost, and a worker started once the key is
/// fixed consumes. The at-least-once brokers go through this at every step (queue, dead
/// letters, schedule, in-flight) in the conformance suite (`tests/conformance.rs`).
async fn wrong_type_key<B: Broker>(name: &str, make: impl Fn(&RedisConnection) -> B) {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: i64 = query(&conn, &["HSET", "wrong", "f", "v"]).await;
    let broker = make(&conn);
    let e = match broker.fetch(10).await {
        Ok(got) => panic!("{name}: fetched {} from a hash", got.len()),
        Err(e) => e,
    };
    assert_eq!(e.kind(), BrokerErrorKind::Config, "{e}");
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");

    let w = JsonOrReject::default();
    let rt = WorkerRuntime::new(broker, w.clone())
        .with_signal_handling(false)
        .with_stats_interval(None);
    match within(10, "the worker to stop", rt.run()).await {
        Err(RuntimeError::Broker(e)) => assert_eq!(e.kind(), BrokerErrorKind::Config, "{e}"),
        other => panic!("{name}: the worker went on with a wrong-type key: {other:?}"),
    }
    let kept: i64 = query(&conn, &["HLEN", "wrong"]).await;
    assert_eq!(kept, 1, "{name}: the other program's key is untouched");

    let _: i64 = query(&conn, &["DEL", "wrong"]).await;
    let _: i64 = query(&conn, &["LPUSH", "wrong", "{}"]).await;
    let rt = WorkerRuntime::new(make(&conn), w.clone())
        .with_signal_handling(false)
        .with_stats_interval(None);
    let stop = rt.cancellation_token();
    let run = tokio::spawn(rt.run());
    eventually(
        Duration::from_secs(15),
        "consuming once the key is fixed",
        || async { !w.seen.lock().unwrap().is_empty() },
    )
    .await;
    stop.cancel();
    let summary = within(30, "the worker", run).await.unwrap().unwrap();
    assert_eq!(summary.acked, 1);
    report(
        "wrong-type-key",
        name,
        1,
        0,
        0,
        None,
        &format!("error={:?}", e.to_string()),
    );
}

#[tokio::test]
async fn a_wrong_type_list_key() {
    wrong_type_key("list", |c| ListBroker::new(c, "wrong")).await;
}

// ---- decoders under random input (bounded; the cargo-fuzz targets in fuzz/ go further) ----

fn seed() -> u64 {
    std::env::var("PYTHIA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// A random mutation of `raw`: flipped, inserted, removed bytes, a truncation, or a splice of
/// JSON punctuation.
fn mutate(rng: &mut fastrand::Rng, raw: &[u8]) -> Vec<u8> {
    let mut v = raw.to_vec();
    for _ in 0..rng.usize(1..4) {
        let at = rng.usize(..=v.len());
        match rng.u8(..6) {
            0 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] ^= 1 << rng.u8(..8);
            }
            1 => v.insert(at, rng.u8(..)),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 => v.truncate(at),
            4 => {
                let bits: &[&[u8]] =
                    &[b"{", b"}", b"\"", b",", b":", b"null", b"\\u0000", b"1e999"];
                let b = bits[rng.usize(..bits.len())];
                v.splice(at..at, b.iter().copied());
            }
            _ => {}
        }
    }
    v
}

/// Checks the decoders' contract on one input: no panic, and a decoded message survives a round
/// trip through Pythia's envelope unchanged.
fn check_decode(raw: &[u8]) {
    let source = Source::new("list", "fuzz");
    let msg = envelope::decode(Bytes::copy_from_slice(raw), &source);
    let again = envelope::decode(envelope::encode(&msg).into(), &source);
    assert_eq!(again.body(), msg.body(), "input {raw:?}");
    assert_eq!(again.id(), msg.id());
    assert_eq!(again.attempt(), msg.attempt());
    assert_eq!(again.headers(), msg.headers());
    let dead = envelope::decode_dead_letter(Bytes::copy_from_slice(raw), &source);
    assert_eq!(dead.message.body(), msg.body());
}

#[test]
fn decoders_survive_random_and_mutated_input() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let templates: Vec<Vec<u8>> = vec![
        envelope::encode(&Message::new("hello").with_header("k", "v").with_attempt(2)),
        envelope::encode(&Message::new(vec![0u8, 255, 7])),
        envelope::encode_dead_letter(&Message::new("x"), "boom", std::time::SystemTime::now()),
        br#"{"body": {"order": 7}, "headers": {"tenant": "acme"}, "message_id": "py-1"}"#.to_vec(),
        br#"{"pythia":1,"id":"x","attempt":1,"body_b64":"AAEC"}"#.to_vec(),
    ];
    let cases = 20_000;
    for i in 0..cases {
        let raw = if i % 4 == 0 {
            let n = rng.usize(..64);
            (0..n).map(|_| rng.u8(..)).collect()
        } else {
            let t = rng.usize(..templates.len());
            mutate(&mut rng, &templates[t])
        };
        check_decode(&raw);
    }
    // Stream entries: random ids and fields, some named like Pythia's own.
    let names: &[&[u8]] = &[
        b"body",
        b"pythia-id",
        b"pythia-attempt",
        b"pythia-enqueued-at",
        b"pythia-group",
        b"header_x",
        b"header_",
        b"tenant",
        b"",
    ];
    for _ in 0..cases {
        let id: String = match rng.u8(..3) {
            0 => format!("{}-{}", rng.u64(..), rng.u64(..)),
            1 => String::from_utf8_lossy(
                &(0..rng.usize(..12)).map(|_| rng.u8(..)).collect::<Vec<_>>(),
            )
            .into_owned(),
            _ => "18446744073709551616-1".to_owned(),
        };
        let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..rng.usize(..6))
            .map(|_| {
                let k = if rng.bool() {
                    names[rng.usize(..names.len())].to_vec()
                } else {
                    (0..rng.usize(..8)).map(|_| rng.u8(..)).collect()
                };
                let v = (0..rng.usize(..16)).map(|_| rng.u8(..)).collect();
                (k, v)
            })
            .collect();
        let body = fields
            .iter()
            .rev()
            .find(|(k, _)| k.as_slice() == b"body")
            .map(|(_, v)| v.clone());
        let msg = message_from_entry(&id, fields, &Source::new("stream", "fuzz"));
        assert!(msg.attempt() >= 1);
        assert!(msg.headers().keys().all(|k| !k.starts_with("pythia-")));
        if let Some(body) = body {
            assert_eq!(msg.body().as_ref(), body.as_slice());
        }
    }
    report(
        "decoder-fuzz",
        "envelope+stream-entry",
        2 * cases,
        0,
        0,
        None,
        &format!("panics=0 seed={seed}"),
    );
}
