//! Building the settle commands of one batch of 1000 outcomes, client side, without a server.
//!
//! The brokers' `settle` methods build their commands inline and send them at once, so this
//! bench repeats their building code step for step (the same redis-rs calls and the same
//! payload functions, through `pythia_core::envelope`); keep it in step with
//! `pythia-redis/src/{reliable_list,list,stream,retry_schedule}.rs`. Each command is also
//! packed to the RESP bytes the client writes, where redis-rs lets us (`get_packed_*`).
//!
//! * `all_acks`: 1000 acks. Reliable list: one `HDEL` of 1000 delivery ids. Stream: one `XACK`
//!   of 1000 entry ids. List (at-most-once): no command at all.
//! * `mixed`: 900 acks, 80 retries, 20 dead letters. Reliable list: one `reliable_settle.lua`
//!   invocation of 4 arguments per delivery, with an envelope per retry and dead letter. List:
//!   one atomic pipeline `ZADD` (retries) + `LPUSH` + `LTRIM` (dead letters).
//! * `payload/*`: one retry or dead-letter payload (`retry_payload` / `dead_letter_payload`).
//!
//! `cargo bench -p pythia-benches --bench settle`

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pythia_core::{Message, Outcome, Settlement, Source, envelope};
use pythia_redis::StreamEntryId;
use redis::Script;

const BATCH: usize = 1000;
const IN_FLIGHT_KEY: &str = "pythia:{jobs}:inflight:host-1234-abcd";
const SCHEDULED_KEY: &str = "pythia:{jobs}:scheduled";
const DLQ_KEY: &str = "pythia:{jobs}:dlq";
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

// The payload functions of `pythia-redis/src/consumer/retry_schedule.rs` (crate-private there).
fn retry_payload(msg: &Message) -> Vec<u8> {
    envelope::encode(&msg.clone().with_attempt(msg.attempt().saturating_add(1)))
}
/// A retry delay as the settle scripts take it (they add the server's clock).
fn delay_ms(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}
fn dead_letter_payload(msg: &Message, reason: &str) -> Vec<u8> {
    envelope::encode_dead_letter(msg, reason, SystemTime::now())
}

/// `ReliableListBroker::settle`, all acks: `HDEL <in-flight> <id>…`, packed.
fn reliable_acks(batch: &[Settlement<u64>]) -> Vec<u8> {
    assert!(batch.iter().all(|s| s.outcome == Outcome::Ack));
    let ids: Vec<u64> = batch.iter().map(|s| s.token).collect();
    redis::cmd("HDEL")
        .arg(IN_FLIGHT_KEY)
        .arg(&ids)
        .get_packed_command()
}

/// `ReliableListBroker::settle`, mixed: the script invocation as `settle` builds it (redis-rs
/// copies it into an `EVALSHA` command when invoked; that copy and the packing are in
/// `reliable_mixed_packed`).
fn reliable_mixed_invocation(script: &Script, batch: &[Settlement<u64>]) -> usize {
    let mut inv = script.prepare_invoke();
    inv.key(IN_FLIGHT_KEY)
        .key(SCHEDULED_KEY)
        .key(DLQ_KEY)
        .arg(DEAD_LETTER_CAP);
    pythia_redis::list::reliable::push_settle_args(&mut inv, batch);
    black_box(&inv);
    batch.len()
}

/// The same arguments as one packed `EVALSHA` command: what goes on the wire.
fn reliable_mixed_packed(script: &Script, batch: &[Settlement<u64>]) -> Vec<u8> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(3)
        .arg(IN_FLIGHT_KEY)
        .arg(SCHEDULED_KEY)
        .arg(DLQ_KEY)
        .arg(DEAD_LETTER_CAP);
    for s in batch {
        match &s.outcome {
            Outcome::Retry { delay } => cmd
                .arg("r")
                .arg(s.token)
                .arg(delay_ms(*delay))
                .arg(retry_payload(&s.message)),
            Outcome::DeadLetter { reason } => cmd
                .arg("d")
                .arg(s.token)
                .arg(0)
                .arg(dead_letter_payload(&s.message, reason)),
            Outcome::Ack => cmd.arg("a").arg(s.token).arg(0).arg(""),
        };
    }
    cmd.get_packed_command()
}

/// `ListBroker::settle`: acks cost nothing; retries and dead letters in one `list_settle.lua`
/// call (packed as the `EVALSHA` redis-rs sends).
fn list_settle(batch: &[Settlement<()>]) -> Option<Vec<u8>> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(LIST_SETTLE.get_hash())
        .arg(2)
        .arg(SCHEDULED_KEY)
        .arg(DLQ_KEY)
        .arg(DEAD_LETTER_CAP);
    let mut any = false;
    for s in batch {
        match &s.outcome {
            Outcome::Retry { delay } => {
                cmd.arg(delay_ms(*delay)).arg(retry_payload(&s.message));
            }
            Outcome::DeadLetter { reason } => {
                cmd.arg("d").arg(dead_letter_payload(&s.message, reason));
            }
            Outcome::Ack => continue,
        }
        any = true;
    }
    any.then(|| cmd.get_packed_command())
}

/// `StreamBroker::settle`, all acks: `XACK <stream> <group> <id>…`, packed.
fn stream_acks(batch: &[Settlement<StreamEntryId>]) -> Vec<u8> {
    assert!(batch.iter().all(|s| s.outcome == Outcome::Ack));
    let ids: Vec<StreamEntryId> = batch.iter().map(|s| s.token).collect();
    let mut xack = redis::cmd("XACK");
    xack.arg("jobs").arg("workers").arg(&ids);
    xack.get_packed_command()
}

static LIST_SETTLE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../pythia-redis/lua/lib/checks.lua"),
        include_str!("../pythia-redis/lua/list_settle.lua")
    ))
});

fn settle(c: &mut Criterion) {
    let script = Script::new(concat!(
        include_str!("../pythia-redis/lua/lib/checks.lua"),
        include_str!("../pythia-redis/lua/reliable_settle.lua")
    ));
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
        b.iter(|| reliable_acks(black_box(&rl_acks)))
    });
    g.bench_function("all_acks/stream_xack_packed", |b| {
        b.iter(|| stream_acks(black_box(&stream_ack_batch)))
    });
    assert!(list_settle(&list_acks).is_none());
    g.bench_function("all_acks/list_nothing_to_send", |b| {
        b.iter(|| list_settle(black_box(&list_acks)))
    });
    g.bench_function("mixed/reliable_list_script_invocation", |b| {
        b.iter(|| reliable_mixed_invocation(&script, black_box(&rl_mixed)))
    });
    g.bench_function("mixed/reliable_list_evalsha_packed", |b| {
        b.iter(|| reliable_mixed_packed(&script, black_box(&rl_mixed)))
    });
    g.bench_function("mixed/list_pipeline_packed", |b| {
        b.iter(|| list_settle(black_box(&list_mixed)))
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
