//! `pythia dlq list|replay|purge`: a queue's dead letters, through
//! [`DeadLetterQueue`](pythia::redis::DeadLetterQueue).

use std::time::SystemTime;

use clap::{Args, Subcommand};
use pythia::redis::queues::QueueKind;
use pythia::redis::queues::inspect::{InspectError, dead_letters_of};
use pythia::redis::{DeadLetter, DeadLetterQueue, RedisConnection};
use pythia_dashboard::documents::dead_letters_json;
use serde_json::json;

use super::{escaped_preview, human_duration, rfc3339, table};
use crate::cli::{BrokerKind, TargetArgs};
use crate::error::CliError;

#[derive(Debug, Clone, Args)]
pub(crate) struct DlqArgs {
    #[command(subcommand)]
    pub(crate) action: DlqAction,
}

/// What to do with dead letters.
#[derive(Debug, Clone, Subcommand)]
#[command(
    after_long_help = "Dead letters live in `<prefix>:{queue}:dlq`: a list of envelopes \
    for list, reliable-list and pub/sub queues, a stream for stream queues."
)]
pub(crate) enum DlqAction {
    /// Show dead letters, newest first: id, attempts, when, error and a body preview.
    List(DlqListArgs),
    /// Put dead letters back on the queue (all, or those given by --id) with the attempt reset
    /// to 1, each atomically: a dead letter leaves the DLQ only when it was re-enqueued.
    Replay(DlqReplayArgs),
    /// Delete dead letters (all, or those given by --id). Asks for confirmation on a terminal;
    /// without one, refuses (exit 2) unless --yes is given.
    Purge(DlqPurgeArgs),
}

#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "JSON fields (--json): queue, broker (null when the queue key does not \
    exist and --broker was not given), key (of the dead letters), total, dead_letters[] {id, \
    entry_id (streams), original_entry_id (streams), attempts, failed_at (RFC 3339, UTC), \
    failed_at_ms, error, headers, body (lossy UTF-8, truncated to --preview), body_bytes}."
)]
pub(crate) struct DlqListArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Show at most this many (newest first).
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,

    /// Characters of each body shown (escaped; longer bodies are cut with …).
    #[arg(long, default_value_t = 60)]
    pub(crate) preview: usize,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DlqReplayArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Replay only the dead letter with this id (the `id` column of `dlq list`; for streams
    /// the dead-letter entry id works too). Repeatable. Without it, every dead letter.
    #[arg(long = "id", value_name = "ID")]
    pub(crate) ids: Vec<String>,

    /// Print one JSON object: queue, broker, replayed, missing, unheard.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DlqPurgeArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Delete only the dead letter with this id (as for `replay`). Repeatable. Without it,
    /// every dead letter.
    #[arg(long = "id", value_name = "ID")]
    pub(crate) ids: Vec<String>,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    /// Print one JSON object: queue, broker, deleted.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Characters of an error shown in the table.
const ERROR_PREVIEW: usize = 60;

pub(crate) async fn dlq(args: DlqArgs) -> Result<(), CliError> {
    match args.action {
        DlqAction::List(a) => list(a).await,
        DlqAction::Replay(a) => replay(a).await,
        DlqAction::Purge(a) => purge(a).await,
    }
}

/// The dead-letter queue of the target, and what kind of queue it belongs to (`None` when it
/// cannot be told: a list dead-letter queue of a queue key that does not exist may be a list's
/// or a pub/sub channel's).
async fn open(
    t: &TargetArgs,
) -> Result<(RedisConnection, DeadLetterQueue, Option<BrokerKind>), CliError> {
    t.single()?;
    let conn = t.redis.connect().await?;
    let (dlq, kind) = open_on(&conn, t).await?;
    Ok((conn, dlq, kind))
}

/// [`open`] on an existing connection (`t.redis.redis_url` is not used).
pub(crate) async fn open_on(
    conn: &RedisConnection,
    t: &TargetArgs,
) -> Result<(DeadLetterQueue, Option<BrokerKind>), CliError> {
    let q = t.single()?.to_owned();
    let conn = conn.clone();
    let (dlq, kind) = match t.broker {
        Some(k) => {
            let dlq = match k {
                BrokerKind::Stream => DeadLetterQueue::stream(&conn, &q),
                BrokerKind::Pubsub => DeadLetterQueue::channel(&conn, &q),
                _ => DeadLetterQueue::list(&conn, &q).with_side(t.list_side.into()),
            };
            (dlq, Some(k))
        }
        None => {
            let (dlq, kind) = dead_letters_of(&conn, &q, t.list_side.into())
                .await
                .map_err(|e| match e {
                    e @ InspectError::WrongType { .. } => {
                        CliError::usage(format!("{e}; give --broker pubsub for a channel"))
                    }
                    e => CliError::runtime(e),
                })?;
            let kind = kind.map(|k| match k {
                QueueKind::Stream => BrokerKind::Stream,
                _ => BrokerKind::List,
            });
            (dlq, kind)
        }
    };
    Ok((dlq, kind))
}

fn describe(kind: Option<BrokerKind>, q: &str) -> String {
    match kind {
        Some(BrokerKind::Stream) => format!("stream {q:?}"),
        Some(BrokerKind::Pubsub) => format!("channel {q:?}"),
        Some(_) => format!("list {q:?}"),
        None => format!("queue {q:?}"),
    }
}

async fn list(args: DlqListArgs) -> Result<(), CliError> {
    let (_conn, dlq, kind) = open(&args.target).await?;
    let q = args.target.single()?;
    let total = dlq.len().await.map_err(CliError::runtime)?;
    let letters = dlq.newest(args.limit).await.map_err(CliError::runtime)?;
    if args.json {
        let doc = dead_letters_json(
            q,
            dlq.key(),
            kind.map(BrokerKind::as_str),
            total,
            &letters,
            args.preview,
        );
        crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON values serialise")
        )?;
        return Ok(());
    }
    crate::output::outln!(
        "{total} dead letter{} of {} in {}{}",
        if total == 1 { "" } else { "s" },
        describe(kind, q),
        dlq.key(),
        if total > letters.len() as u64 {
            format!(", newest {} shown (--limit)", letters.len())
        } else if total > 1 {
            ", newest first".to_owned()
        } else {
            String::new()
        }
    )?;
    if letters.is_empty() {
        return Ok(());
    }
    let now = SystemTime::now();
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|d| {
            let when = d
                .failed_at
                .map(|t| {
                    let ago = now
                        .duration_since(t)
                        .map(|a| format!(" ({} ago)", human_duration(a)))
                        .unwrap_or_default();
                    format!("{}{ago}", rfc3339(t))
                })
                .unwrap_or_else(|| "-".to_owned());
            let body = String::from_utf8_lossy(d.message.body());
            vec![
                d.message.id().to_owned(),
                d.message.attempt().to_string(),
                when,
                escaped_preview(d.reason.as_deref().unwrap_or("-"), ERROR_PREVIEW),
                format!("\"{}\"", escaped_preview(&body, args.preview)),
            ]
        })
        .collect();
    crate::output::out!(
        "{}",
        table(&["ID", "ATTEMPTS", "FAILED AT", "ERROR", "BODY"], &rows)
    )?;
    Ok(())
}

/// The dead letters named by `ids` (message id, or stream dead-letter entry id); an error
/// naming those not found.
pub(crate) async fn select(
    dlq: &DeadLetterQueue,
    ids: &[String],
) -> Result<Vec<DeadLetter>, CliError> {
    let (found, missing) = dlq.find_ids(ids).await.map_err(CliError::runtime)?;
    if !missing.is_empty() {
        return Err(CliError::usage(format!(
            "no dead letter with id {} in {} (see `pythia dlq list`); nothing done",
            missing.join(", "),
            dlq.key()
        )));
    }
    Ok(found)
}

async fn replay(args: DlqReplayArgs) -> Result<(), CliError> {
    let (_conn, dlq, kind) = open(&args.target).await?;
    let q = args.target.single()?;
    if kind.is_none() {
        // An empty list does not exist in Redis: most likely a drained list queue.
        crate::output::errln!(
            "note: no key {q:?}; replaying onto a list (give --broker pubsub to publish to a channel)"
        );
    }
    let kind = kind.or(Some(BrokerKind::List));
    let report = if args.ids.is_empty() {
        dlq.replay_all().await
    } else {
        let selected = select(&dlq, &args.ids).await?;
        dlq.replay(&selected).await
    }
    .map_err(CliError::runtime)?;
    if args.json {
        let doc = json!({
            "queue": q,
            "broker": kind.map(BrokerKind::as_str),
            "replayed": report.replayed,
            "missing": report.missing,
            "unheard": report.unheard,
        });
        crate::output::outln!("{doc}")?;
    } else {
        crate::output::outln!(
            "replayed {} dead letter{} onto {} (attempt reset to 1)",
            report.replayed,
            if report.replayed == 1 { "" } else { "s" },
            describe(kind, q)
        )?;
    }
    if report.missing > 0 && !args.json {
        crate::output::outln!(
            "{} were gone before they could be replayed (replayed or purged meanwhile)",
            report.missing
        )?;
    }
    if report.unheard > 0 {
        return Err(CliError::runtime(format!(
            "{} left in {}: no subscriber received the first of them on channel {q:?}",
            report.unheard,
            dlq.key()
        )));
    }
    Ok(())
}

async fn purge(args: DlqPurgeArgs) -> Result<(), CliError> {
    let (_conn, dlq, kind) = open(&args.target).await?;
    let q = args.target.single()?;
    let selected = if args.ids.is_empty() {
        None
    } else {
        Some(select(&dlq, &args.ids).await?)
    };
    let count = match &selected {
        Some(s) => s.len() as u64,
        None => dlq.len().await.map_err(CliError::runtime)?,
    };
    let purged = |deleted: u64| json!({ "queue": q, "broker": kind.map(BrokerKind::as_str), "deleted": deleted });
    if count == 0 {
        if args.json {
            return crate::output::outln!("{}", purged(0));
        }
        crate::output::outln!("no dead letters of {} to purge", describe(kind, q))?;
        return Ok(());
    }
    let what = format!(
        "{}{count} dead letter{} of {}",
        if selected.is_none() { "all " } else { "" },
        if count == 1 { "" } else { "s" },
        describe(kind, q)
    );
    if !args.yes {
        super::confirm_deletion(&what, "purge")?;
    }
    let deleted = match &selected {
        Some(s) => dlq.delete(s).await,
        None => dlq.purge().await,
    }
    .map_err(CliError::runtime)?;
    if args.json {
        return crate::output::outln!("{}", purged(deleted));
    }
    crate::output::outln!(
        "deleted {deleted} dead letter{} of {}",
        if deleted == 1 { "" } else { "s" },
        describe(kind, q)
    )?;
    Ok(())
}
