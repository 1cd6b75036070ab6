//! Building the settle commands of one batch of 1000 outcomes, client side, without a server.
//!
//! The commands are the brokers' own, built without I/O by `pythia_redis::list::{ReliableListCommands,
//! ListCommands}` and `pythia_redis::stream::StreamCommands` (the same functions the brokers
//! call before they send), and packed to the RESP bytes the client writes (`Call::packed`).
//!
//! * `all_acks`: 1000 acks. Reliable list: one `HDEL` of 1000 delivery ids. Stream: one `XACK`
//!   of 1000 entry ids. List (at-most-once): no command at all.
//! * `mixed`: 900 acks, 80 retries, 20 dead letters. Reliable list: one `reliable_settle.lua`
//!   call of 4 arguments per delivery, with an envelope per retry and dead letter (`script_call`:
//!   built; `evalsha_packed`: built and packed). List: one `list_settle.lua` call of the
//!   retries and dead letters (`script_packed`).
//! * `payload/*`: one retry or dead-letter payload (an envelope with the attempt raised, or
//!   with the failure).
//!
//! `cargo bench -p pythia-benches --bench settle`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pythia_core::{Message, Outcome, Settlement, Source, envelope};
use pythia_redis::list::{ListCommands, ReliableListCommands};
use pythia_redis::retry_schedule::{dead_letter_payload, retry_payload};
use pythia_redis::stream::StreamCommands;
use pythia_redis::{QueueKeys, StreamEntryId};

const BATCH: usize = 1000;
const DEAD_LETTER_CAP: usize = 100_000;

/// A message as a reliable-list fetch decodes it: a Pythia envelope with a 100-byte body.
fn delivered(i: usize) -> Message {
    let body: Vec<u8> = (0..100).map(|j| b'a' + ((i + j) % 26) as u8).collect();
    let produced = Message::new(body).with_header("tenant", "acme");
    envelope::decode(
        envelope::encode(&produced).into(),
        &Source::new("reliable-list", "jobs"),
    )
}

/// 1000 settlements; in `mixed`, every 50th is a dead letter and 4 more in 50 are retries.
fn batch<T>(mixed: bool, token: impl Fn(usize) -> T) -> Vec<Settlement<T>> {
    (0..BATCH)
        .map(|i| {
            let outcome = match i % 50 {
                0 if mixed => Outcome::DeadLetter {
                    reason: "invalid order: missing field `customer`".to_owned(),
                },
                1..=4 if mixed => Outcome::Retry {
                    delay: Duration::from_millis(200),
                },
                _ => Outcome::Ack,
            };
            Settlement {
                token: token(i),
                message: delivered(i),
                outcome,
            }
        })
        .collect()
}

fn settle(c: &mut Criterion) {
    let keys = QueueKeys::new("pythia", "jobs");
    let reliable = ReliableListCommands::new(&keys, "host-1234-abcd");
    let list = ListCommands::new(&keys);
    let stream = StreamCommands::new(&QueueKeys::new("pythia", "jobs"), "workers");
    let rl_acks = batch(false, |i| i as u64);
    let rl_mixed = batch(true, |i| i as u64);
    let list_acks = batch(false, |_| ());
    let list_mixed = batch(true, |_| ());
    let stream_ack_batch = batch(false, |i| {
        StreamEntryId::new(1_700_000_000_000 + (i / 100) as u64, (i % 100) as u64)
    });
    let retries = rl_mixed
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Retry { .. }))
        .count();
    assert_eq!(retries, 80);

    let mut g = c.benchmark_group("settle/1000");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("all_acks/reliable_list_hdel_packed", |b| {
        b.iter(|| reliable.acks(black_box(&rl_acks)).packed())
    });
    g.bench_function("all_acks/stream_xack_packed", |b| {
        b.iter(|| {
            let ids: Vec<StreamEntryId> = black_box(&stream_ack_batch)
                .iter()
                .map(|s| s.token)
                .collect();
            stream.ack(&ids).packed()
        })
    });
    assert!(list.settle(&list_acks, DEAD_LETTER_CAP).is_none());
    g.bench_function("all_acks/list_nothing_to_send", |b| {
        b.iter(|| list.settle(black_box(&list_acks), DEAD_LETTER_CAP))
    });
    g.bench_function("mixed/reliable_list_script_call", |b| {
        b.iter(|| reliable.settle(black_box(&rl_mixed), DEAD_LETTER_CAP))
    });
    g.bench_function("mixed/reliable_list_evalsha_packed", |b| {
        b.iter(|| {
            reliable
                .settle(black_box(&rl_mixed), DEAD_LETTER_CAP)
                .packed()
        })
    });
    g.bench_function("mixed/list_script_packed", |b| {
        b.iter(|| {
            list.settle(black_box(&list_mixed), DEAD_LETTER_CAP)
                .map(|c| c.packed())
        })
    });
    g.finish();

    let msg = delivered(0);
    let mut g = c.benchmark_group("settle/payload");
    g.throughput(Throughput::Elements(1));
    g.bench_function("retry_payload_100B", |b| {
        b.iter(|| retry_payload(black_box(&msg)))
    });
    g.bench_function("dead_letter_payload_100B", |b| {
        b.iter(|| dead_letter_payload(black_box(&msg), "invalid order"))
    });
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
    targets = settle
}
criterion_main!(benches);
