//! Turning one `XREADGROUP` reply of 1000 entries into deliveries, as `StreamBroker::fetch`
//! does, against redis' typed `StreamReadReply` conversion. The reply is the RESP2 shape the
//! client hands over: `[[stream, [[id, [field, value, …]], …]]]`, each entry with a 100-byte
//! `body` and the fields `StreamProducer` writes. Cloning the reply (each parser consumes it)
//! and dropping the result are not timed.
//!
//! * `pythia/*`: `pythia_redis::stream::decode_group_read`, the same code path as a
//!   fetch (reply walk, entry id parse, field decode into a `Message`).
//! * `typed/stream_read_reply`: `redis::from_redis_value::<StreamReadReply>` alone (no
//!   messages yet; note that it clones the whole reply before parsing it).
//! * `typed/stream_read_reply+message_from_entry`: the same, then each entry made into a
//!   `Message` through the public `stream::message_from_entry`: what a worker built on the
//!   typed reply would pay.
//!
//! `cargo bench -p pythia-benches --bench stream_reply`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pythia_core::Source;
use pythia_core::message::new_message_id;
use pythia_redis::stream::{decode_group_read, fields, message_from_entry};
use redis::Value;
use redis::streams::StreamReadReply;

const ENTRIES: usize = 1000;

fn bulk(b: impl Into<Vec<u8>>) -> Value {
    Value::BulkString(b.into())
}

#[derive(Clone, Copy)]
enum Shape {
    /// `Encoding::Raw`: the body alone.
    Raw,
    /// `Encoding::Envelope` (the default) for a fresh message: body and `pythia-id`.
    Envelope,
    /// The same with one header.
    EnvelopeWithHeader,
}

/// A realistic `XREADGROUP … STREAMS jobs >` reply.
fn reply(shape: Shape) -> Value {
    let body: Vec<u8> = (0..100).map(|i| b'a' + (i % 26) as u8).collect();
    let entries = (0..ENTRIES)
        .map(|i| {
            // Entries added within a few milliseconds: ids like 1700000000123-17.
            let id = format!("{}-{}", 1_700_000_000_000u64 + (i / 100) as u64, i % 100);
            let mut kv = vec![bulk(fields::BODY), bulk(body.clone())];
            if !matches!(shape, Shape::Raw) {
                kv.extend([bulk(fields::ID), bulk(new_message_id())]);
            }
            if matches!(shape, Shape::EnvelopeWithHeader) {
                kv.extend([bulk("tenant"), bulk("acme")]);
            }
            Value::Array(vec![bulk(id), Value::Array(kv)])
        })
        .collect();
    Value::Array(vec![Value::Array(vec![
        bulk("jobs"),
        Value::Array(entries),
    ])])
}

fn typed_to_messages(reply: Value, source: &Source) -> Vec<pythia_core::Message> {
    let typed: StreamReadReply = redis::from_redis_value(reply).expect("a stream reply");
    let mut out = Vec::with_capacity(ENTRIES);
    for key in typed.keys {
        for entry in key.ids {
            let fields = entry
                .map
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::BulkString(b) => b,
                        other => redis::from_redis_value(other).unwrap_or_default(),
                    };
                    (k.into_bytes(), v)
                })
                .collect();
            out.push(message_from_entry(&entry.id, fields, source));
        }
    }
    out
}

fn stream_reply(c: &mut Criterion) {
    let source = Source::new("stream", "jobs");
    let mut g = c.benchmark_group("stream_reply/1000_entries");
    g.throughput(Throughput::Elements(ENTRIES as u64));
    for (name, shape) in [
        ("raw_body", Shape::Raw),
        ("envelope", Shape::Envelope),
        ("envelope+header", Shape::EnvelopeWithHeader),
    ] {
        let r = reply(shape);
        let (deliveries, skipped) = decode_group_read(r.clone(), "g", &source);
        assert_eq!((deliveries.len(), skipped), (ENTRIES, 0));
        assert_eq!(deliveries[0].message.body().len(), 100);
        g.bench_function(format!("pythia/{name}"), |b| {
            b.iter_batched(
                || r.clone(),
                |r| decode_group_read(black_box(r), "g", &source),
                BatchSize::LargeInput,
            )
        });
    }
    let r = reply(Shape::Envelope);
    assert_eq!(typed_to_messages(r.clone(), &source).len(), ENTRIES);
    g.bench_function("typed/stream_read_reply", |b| {
        b.iter_batched(
            || r.clone(),
            |r| redis::from_redis_value::<StreamReadReply>(black_box(r)).expect("a stream reply"),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("typed/stream_read_reply+message_from_entry", |b| {
        b.iter_batched(
            || r.clone(),
            |r| typed_to_messages(black_box(r), &source),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = stream_reply
}
criterion_main!(benches);
