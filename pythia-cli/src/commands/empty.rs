//! `pythia empty`: delete every message waiting in a queue (and, with --scheduled, its delayed
//! messages and retries), saying how many went.

use clap::Args;
use pythia::redis::EmptyQueue;
use serde_json::json;

use crate::cli::RedisArgs;
use crate::error::CliError;

/// The arguments of `pythia empty`.
#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "What goes: a list queue's items (the list is deleted), or a \
    stream's entries (trimmed to 0; the stream and its consumer groups stay; the count includes \
    entries already processed and not yet trimmed). What stays: messages in flight (workers \
    finish, settle and retry them as usual), dead letters (`pythia dlq purge`), and delayed \
    messages and retries unless --scheduled is given (they reach the queue again when due; \
    `pythia scheduled list` shows them). Pause the queue first to look at it before workers \
    take more.\n\
    JSON fields (--json): queue, removed (from the queue), removed_scheduled."
)]
pub(crate) struct EmptyArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// The queue (the list or stream key).
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: String,

    /// Also delete the queue's delayed messages and scheduled retries.
    #[arg(long)]
    pub(crate) scheduled: bool,

    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn empty(args: EmptyArgs) -> Result<(), CliError> {
    let q = &args.queue;
    if q.trim().is_empty() {
        return Err(CliError::usage("--queue must not be empty"));
    }
    let what = if args.scheduled {
        format!("every waiting, delayed and retrying message of queue {q:?}")
    } else {
        format!("every waiting message of queue {q:?}")
    };
    if !args.yes {
        super::confirm_deletion(&what, "empty")?;
    }
    let conn = args.redis.connect().await?;
    let report = EmptyQueue::new(q)
        .with_scheduled(args.scheduled)
        .run(&conn)
        .await
        .map_err(|e| {
            if e.kind() == pythia::BrokerErrorKind::Config {
                CliError::usage(e)
            } else {
                CliError::runtime(e)
            }
        })?;
    if args.json {
        let doc = json!({
            "queue": q,
            "removed": report.waiting,
            "removed_scheduled": report.scheduled,
        });
        return crate::output::outln!("{doc}");
    }
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if args.scheduled {
        crate::output::outln!(
            "removed {} message{} from queue {q:?} and {} delayed or retrying message{}",
            report.waiting,
            plural(report.waiting),
            report.scheduled,
            plural(report.scheduled)
        )
    } else {
        crate::output::outln!(
            "removed {} message{} from queue {q:?} (in-flight, delayed and retrying messages kept)",
            report.waiting,
            plural(report.waiting)
        )
    }
}
