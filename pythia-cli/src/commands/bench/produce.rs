//! The produce-list and produce-stream runs: the library's producers against the bare pipelined
//! commands they send, the clock on the sending alone.

use std::time::Instant;

use pythia::Message;
use pythia::redis::list::producer::PUSH_CHUNK;
use pythia::redis::{Encoding, ListProducer, RedisConnection, StreamProducer};

use super::BenchChildArgs;
use super::child::RunResult;
use crate::commands::produce::numbered_body;
use crate::error::CliError;

/// Framework: Pythia envelopes through `ListProducer`. Bare: raw bodies, multi-value LPUSH in
/// the producer's grouping (LPUSH of 1000 values), pipelined by 10 per round trip.
pub(super) async fn produce(
    conn: &RedisConnection,
    args: &BenchChildArgs,
    bare: bool,
) -> Result<RunResult, CliError> {
    let producer = ListProducer::new(conn, &args.queue).with_encoding(Encoding::Envelope);
    timed_produce(
        conn,
        args,
        bare,
        ("LPUSH", 10 * PUSH_CHUNK),
        |pipe, group| {
            for chunk in group.chunks(PUSH_CHUNK) {
                pipe.cmd("LPUSH").arg(&args.queue).arg(chunk).ignore();
            }
        },
        async |msgs| producer.push_many(msgs).await.map(drop),
    )
    .await
}

/// Times sending `args.messages` numbered bodies of `args.size` bytes. Bare: the bodies,
/// `per_round_trip` to a pipeline, `bare_commands` adding the commands of each pipeline's
/// share (each pipeline built on the clock). Framework: the bodies as messages through `send`.
async fn timed_produce(
    conn: &RedisConnection,
    args: &BenchChildArgs,
    bare: bool,
    (op, per_round_trip): (&'static str, usize),
    bare_commands: impl Fn(&mut redis::Pipeline, &[Vec<u8>]),
    send: impl AsyncFnOnce(&[Message]) -> Result<(), pythia::BrokerError>,
) -> Result<RunResult, CliError> {
    let bodies: Vec<Vec<u8>> = (0..args.messages)
        .map(|i| numbered_body(i, args.size))
        .collect();
    // Read the clock right after the last reply, in both branches: dropping the prepared
    // messages (100,000 frees) is not producing.
    let seconds;
    if bare {
        let mut m = conn.manager();
        let started = Instant::now();
        for group in bodies.chunks(per_round_trip) {
            let mut pipe = redis::pipe();
            bare_commands(&mut pipe, group);
            pipe.query_async::<()>(&mut m)
                .await
                .map_err(|e| CliError::runtime(conn.error(op, e)))?;
        }
        seconds = started.elapsed().as_secs_f64();
    } else {
        let msgs: Vec<Message> = bodies.into_iter().map(Message::new).collect();
        let started = Instant::now();
        send(&msgs).await.map_err(CliError::runtime)?;
        seconds = started.elapsed().as_secs_f64();
    }
    Ok(RunResult {
        processed: args.messages,
        seconds,
        ..RunResult::default()
    })
}

/// Framework: `StreamProducer` (Pythia fields). Bare: `XADD s * body b`,
/// pipelined by 1000.
pub(super) async fn produce_stream(
    conn: &RedisConnection,
    args: &BenchChildArgs,
    bare: bool,
) -> Result<RunResult, CliError> {
    let producer = StreamProducer::new(conn, &args.queue);
    timed_produce(
        conn,
        args,
        bare,
        ("XADD", 1000),
        |pipe, group| {
            for b in group {
                pipe.cmd("XADD")
                    .arg(&args.queue)
                    .arg("*")
                    .arg("body")
                    .arg(b)
                    .ignore();
            }
        },
        async |msgs| producer.add_many(msgs).await.map(drop),
    )
    .await
}
