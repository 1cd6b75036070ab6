//! `pythia pause` and `pythia resume`: set or clear a queue's pause flag, which every worker of
//! the queue (`pythia run`, or a library worker behind `QueueGate`) polls.

use clap::Args;
use pythia::redis::gate;
use serde_json::json;

use crate::cli::RedisArgs;
use crate::error::CliError;

/// The arguments of `pythia pause` and `pythia resume`.
#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "The flag is the key `<prefix>:{queue}:paused`; it stays until \
    `pythia resume` (a restarted worker stays paused). Paused workers finish and settle what \
    they hold, keep their heartbeats, and stay ready (/readyz); the gauge \
    pythia_queue_paused{queue} is 1. Producers are not paused: messages wait in the queue.\n\
    JSON fields (--json): queue, paused (the state now), changed (false when it was so already)."
)]
pub(crate) struct PauseArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// The queue (the list or stream key).
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: String,

    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn pause(args: PauseArgs) -> Result<(), CliError> {
    set(args, true).await
}

pub(crate) async fn resume(args: PauseArgs) -> Result<(), CliError> {
    set(args, false).await
}

async fn set(args: PauseArgs, paused: bool) -> Result<(), CliError> {
    if args.queue.trim().is_empty() {
        return Err(CliError::usage("--queue must not be empty"));
    }
    let conn = args.redis.connect().await?;
    let changed = if paused {
        gate::pause(&conn, &args.queue).await
    } else {
        gate::resume(&conn, &args.queue).await
    }
    .map_err(CliError::runtime)?;
    if args.json {
        let doc = json!({ "queue": args.queue, "paused": paused, "changed": changed });
        return crate::output::outln!("{doc}");
    }
    let q = &args.queue;
    match (paused, changed) {
        (true, true) => crate::output::outln!(
            "paused queue {q:?}: its workers stop fetching within a second and finish what they hold"
        ),
        (true, false) => crate::output::outln!("queue {q:?} was paused already"),
        (false, true) => {
            crate::output::outln!("resumed queue {q:?}: its workers fetch again within a second")
        }
        (false, false) => crate::output::outln!("queue {q:?} was not paused"),
    }
}
