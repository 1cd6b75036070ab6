//! `pythia scheduled list|cancel`: a queue's delayed messages and scheduled retries, in due
//! order, paged; cancel one by message id.

use std::time::SystemTime;

use clap::{Args, Subcommand};
use pythia::redis::{ScheduledMessage, ScheduledMessages};
use serde_json::json;

use super::{escaped_preview, human_duration, rfc3339, table};
use crate::cli::RedisArgs;
use crate::error::CliError;

/// The arguments of `pythia scheduled`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ScheduledArgs {
    #[command(subcommand)]
    pub(crate) action: ScheduledAction,
}

/// What to do with the schedule.
#[derive(Debug, Clone, Subcommand)]
#[command(
    after_long_help = "The schedule is `<prefix>:{queue}:scheduled`, a sorted set by due \
    time: delayed messages (`produce --delay`, DelayedProducer) and retries of failed messages \
    wait there until a worker of the queue promotes them."
)]
pub(crate) enum ScheduledAction {
    /// Show scheduled messages, next due first: kind (delayed or retry), due time, id, attempt
    /// and a body preview.
    List(ScheduledListArgs),
    /// Cancel scheduled messages by id: removed, never delivered (a retry is dropped, not
    /// dead-lettered). Exit 1 if any id was not found.
    Cancel(ScheduledCancelArgs),
}

/// `pythia scheduled list`.
#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "JSON fields (--json): queue, total, offset, scheduled[] {kind \
    (delayed, retry), id, due_at (RFC 3339, UTC), due_at_ms, attempt (the attempt it will be; \
    null when a delayed payload is missing), headers, body (lossy UTF-8, cut to --preview)}."
)]
pub(crate) struct ScheduledListArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// The queue (the list or stream key).
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: String,

    /// Skip this many (next due first): the page starts here.
    #[arg(long, default_value_t = 0)]
    pub(crate) offset: usize,

    /// Show at most this many.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) limit: u32,

    /// Characters of each body shown (escaped; longer bodies are cut with …).
    #[arg(long, default_value_t = 60)]
    pub(crate) preview: usize,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `pythia scheduled cancel`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ScheduledCancelArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// The queue (the list or stream key).
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: String,

    /// The message id to cancel (the `ID` column of `scheduled list`). Repeatable.
    #[arg(long = "id", value_name = "ID", required = true)]
    pub(crate) ids: Vec<String>,

    /// Print one JSON object: queue, cancelled[] {id, kind}, missing[].
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn scheduled(args: ScheduledArgs) -> Result<(), CliError> {
    match args.action {
        ScheduledAction::List(a) => list(a).await,
        ScheduledAction::Cancel(a) => cancel(a).await,
    }
}

fn check_queue(q: &str) -> Result<(), CliError> {
    if q.trim().is_empty() {
        return Err(CliError::usage("--queue must not be empty"));
    }
    Ok(())
}

async fn list(args: ScheduledListArgs) -> Result<(), CliError> {
    check_queue(&args.queue)?;
    let conn = args.redis.connect().await?;
    let page = ScheduledMessages::new(&conn, &args.queue)
        .list(args.offset, args.limit as usize)
        .await
        .map_err(CliError::runtime)?;
    if args.json {
        let items: Vec<_> = page
            .messages
            .iter()
            .map(|m| to_json(m, args.preview))
            .collect();
        let doc = json!({
            "queue": args.queue,
            "total": page.total,
            "offset": args.offset,
            "scheduled": items,
        });
        return crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON values serialise")
        );
    }
    if page.messages.is_empty() {
        return crate::output::outln!(
            "nothing scheduled in queue {:?}{}",
            args.queue,
            if args.offset > 0 && page.total > 0 {
                format!(" from position {} ({} in all)", args.offset, page.total)
            } else {
                String::new()
            }
        );
    }
    let now = SystemTime::now();
    let rows: Vec<Vec<String>> = page
        .messages
        .iter()
        .map(|m| {
            let due_in = match m.due_at.duration_since(now) {
                Ok(d) => format!("in {}", human_duration(d)),
                Err(_) => "due".to_owned(),
            };
            let (attempt, body) = match &m.message {
                Some(msg) => (
                    msg.attempt().to_string(),
                    escaped_preview(&String::from_utf8_lossy(msg.body()), args.preview),
                ),
                None => ("-".to_owned(), "(payload missing)".to_owned()),
            };
            vec![
                m.kind.as_str().to_owned(),
                rfc3339(m.due_at),
                due_in,
                m.id.clone(),
                attempt,
                body,
            ]
        })
        .collect();
    crate::output::out!(
        "{}",
        table(&["KIND", "DUE", "", "ID", "ATTEMPT", "BODY"], &rows)
    )?;
    let shown_to = args.offset + page.messages.len();
    crate::output::outln!(
        "{}–{} of {} scheduled in queue {:?}{}",
        args.offset + 1,
        shown_to,
        page.total,
        args.queue,
        if (shown_to as u64) < page.total {
            format!("; next page: --offset {shown_to}")
        } else {
            String::new()
        }
    )
}

fn to_json(m: &ScheduledMessage, preview: usize) -> serde_json::Value {
    let ms = m
        .due_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (attempt, headers, body) = match &m.message {
        Some(msg) => (
            json!(msg.attempt()),
            json!(msg.headers()),
            json!(
                String::from_utf8_lossy(msg.body())
                    .chars()
                    .take(preview)
                    .collect::<String>()
            ),
        ),
        None => (json!(null), json!({}), json!(null)),
    };
    json!({
        "kind": m.kind.as_str(),
        "id": m.id,
        "due_at": rfc3339(m.due_at),
        "due_at_ms": ms,
        "attempt": attempt,
        "headers": headers,
        "body": body,
    })
}

async fn cancel(args: ScheduledCancelArgs) -> Result<(), CliError> {
    check_queue(&args.queue)?;
    let conn = args.redis.connect().await?;
    let schedule = ScheduledMessages::new(&conn, &args.queue);
    let mut cancelled = Vec::new();
    let mut missing = Vec::new();
    for id in &args.ids {
        match schedule.cancel(id).await.map_err(CliError::runtime)? {
            Some(kind) => cancelled.push((id.as_str(), kind)),
            None => missing.push(id.as_str()),
        }
    }
    if args.json {
        let doc = json!({
            "queue": args.queue,
            "cancelled": cancelled
                .iter()
                .map(|(id, k)| json!({ "id": id, "kind": k.as_str() }))
                .collect::<Vec<_>>(),
            "missing": missing,
        });
        crate::output::outln!("{doc}")?;
    } else {
        for (id, kind) in &cancelled {
            crate::output::outln!("cancelled {} {id:?}", kind.as_str())?;
        }
        for id in &missing {
            crate::output::errln!(
                "not scheduled in queue {:?}: {id:?} (promoted already, cancelled, or never there)",
                args.queue
            );
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::runtime(format!(
            "{} of {} ids not found",
            missing.len(),
            args.ids.len()
        )))
    }
}
