//! The list / pub/sub wire format: `envelope::encode`, `encode_into` and `decode` of every shape
//! a worker reads. One iteration is one message.
//!
//! `cargo bench -p pythia-benches --bench envelope`

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pythia_core::{Message, Source, envelope};

/// `len` bytes of printable ASCII that need no JSON escaping.
fn text(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `len` bytes that are not UTF-8 (so the envelope carries them as base64).
fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 151 + 128) as u8 | 0x80).collect()
}

fn producer_message(body: Vec<u8>) -> Message {
    Message::new(body).with_header("tenant", "acme")
}

/// A JSON object of exactly 100 bytes: a body with quotes to escape, as most real ones are.
fn json_object_100b() -> Vec<u8> {
    let prefix = r#"{"user": 7, "action": "signup", "note": ""#;
    let mut body = prefix.as_bytes().to_vec();
    body.extend_from_slice(&text(100 - prefix.len() - 2));
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), 100);
    body
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope/encode");
    g.throughput(Throughput::Elements(1));
    let cases = [
        ("text_100B", producer_message(text(100))),
        ("text_1KiB", producer_message(text(1024))),
        ("binary_100B_base64", producer_message(binary(100))),
        ("json_100B_escaped", producer_message(json_object_100b())),
        // What `pythia bench`'s produce scenarios send: no header.
        ("text_100B_no_header", Message::new(text(100))),
    ];
    assert!(
        cases[2].1.body_str().is_err(),
        "the binary body must not be UTF-8"
    );
    for (name, msg) in &cases {
        g.bench_function(*name, |b| b.iter(|| envelope::encode(black_box(msg))));
    }
    // What ListProducer does: one scratch buffer reused for every message.
    for (name, msg) in &cases {
        let mut buf = Vec::with_capacity(4096);
        g.bench_function(format!("encode_into_reused_buf/{name}"), |b| {
            b.iter(|| {
                buf.clear();
                envelope::encode_into(&mut buf, black_box(msg));
                black_box(buf.len())
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let source = Source::new("list", "jobs");
    let mut g = c.benchmark_group("envelope/decode");
    g.throughput(Throughput::Elements(1));

    let body100 = String::from_utf8(text(100)).unwrap();
    // The Python framework's JSON body, exactly 100 bytes.
    let pad = |prefix: &str| format!(r#"{prefix}"{}"}}"#, &body100[..100 - prefix.len() - 3]);
    let python_body = pad(r#"{"order": 7, "note": "#);
    let json_body = json_object_100b();
    assert_eq!((python_body.len(), json_body.len()), (100, 100));
    let cases: [(&str, Bytes); 6] = [
        (
            "pythia_100B",
            envelope::encode(&producer_message(text(100))).into(),
        ),
        (
            "pythia_1KiB",
            envelope::encode(&producer_message(text(1024))).into(),
        ),
        (
            "pythia_binary_100B_base64",
            envelope::encode(&producer_message(binary(100))).into(),
        ),
        // What the Python pythia-framework writes: a JSON body, headers and a message id.
        (
            "python_framework_100B",
            format!(
                r#"{{"body": {python_body}, "headers": {{"tenant": "acme"}}, "message_id": "6f1c2b1e-2f0a-4d35-9a59-0b7f5d1c9e42"}}"#
            )
            .into(),
        ),
        // `redis-cli LPUSH jobs hello…`: not JSON, taken byte for byte.
        ("raw_text_100B", Bytes::from(text(100))),
        // A JSON object that is not an envelope: parsed, then taken as a raw body.
        ("json_not_envelope_100B", Bytes::from(json_body)),
    ];
    for (name, raw) in &cases {
        let want = if name.starts_with("raw") || name.starts_with("json") {
            raw.len()
        } else if name.starts_with("python") {
            100
        } else if name.ends_with("1KiB") {
            1024
        } else {
            100
        };
        assert_eq!(
            envelope::decode(raw.clone(), &source).body().len(),
            want,
            "{name}"
        );
        g.bench_function(*name, |b| {
            b.iter(|| envelope::decode(black_box(raw.clone()), &source))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode, decode
}
criterion_main!(benches);
