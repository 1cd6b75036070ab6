//! `pythia queues`: every queue under the key prefix, one line each (or one JSON document),
//! from the library's typed reports ([`pythia::redis::queues::QueueReport`]).
//!
//! The queues are those in the registry (written by every producer and worker), and with
//! `--scan` also those found among Pythia's keys (queues last touched by an older version).

use std::time::Duration;

use clap::Args;
use pythia::redis::queues::{QueueReport, discovered_queues, queue_reports};
use serde::Serialize;

use super::{human_duration, table};
use crate::cli::RedisArgs;
use crate::error::CliError;

/// `pythia queues`.
#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "A queue is listed from its first message: every producer and worker \
    writes its name and type once in the registry hash <prefix>:queues. Counts of today (UTC) \
    come from the daily counters workers keep (pythia run, unless --no-counters).\n\
    JSON fields (--json): prefix, queues[] {name, kind (list, reliable-list, stream, \
    sharded-stream, pubsub), registered, depth, in_flight, scheduled, dead_letters, consumers, \
    oldest_age_seconds (or null), paused, day (YYYY-MM-DD), today {processed, failed, retried}, \
    groups[] {name, depth, in_flight, consumers, oldest_age_seconds} (streams)}."
)]
pub(crate) struct QueuesArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Also list queues found among Pythia's keys (SCAN of every master), not only those in the
    /// registry (queues last used by a version without it).
    #[arg(long)]
    pub(crate) scan: bool,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Most keys read by `--scan`.
const SCAN_LIMIT: usize = 1_000_000;

/// The `--json` document.
#[derive(Debug, Serialize)]
struct Document<'a> {
    prefix: &'a str,
    queues: &'a [QueueReport],
}

pub(crate) async fn queues(args: QueuesArgs) -> Result<(), CliError> {
    let conn = args.redis.connect().await?;
    let also = if args.scan {
        discovered_queues(&conn, SCAN_LIMIT)
            .await
            .map_err(CliError::runtime)?
    } else {
        Vec::new()
    };
    let reports = queue_reports(&conn, &also)
        .await
        .map_err(CliError::runtime)?;
    if args.json {
        let doc = Document {
            prefix: &args.redis.key_prefix,
            queues: &reports,
        };
        crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("reports serialise")
        )?;
    } else if reports.is_empty() {
        crate::output::outln!(
            "no queue under the prefix {:?} yet (producers and workers register theirs; \
             --scan also looks for Pythia's keys)",
            args.redis.key_prefix
        )?;
    } else {
        crate::output::out!("{}", render(&reports))?;
    }
    Ok(())
}

/// The table of `pythia queues`.
fn render(reports: &[QueueReport]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.kind.to_string(),
                r.depth.to_string(),
                r.in_flight.to_string(),
                r.scheduled.to_string(),
                r.dead_letters.to_string(),
                r.consumers.to_string(),
                r.oldest_age_seconds.map_or_else(
                    || "-".to_owned(),
                    |s| human_duration(Duration::from_secs_f64(s)),
                ),
                if r.paused { "yes" } else { "no" }.to_owned(),
                r.today.processed.to_string(),
                r.today.failed.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "QUEUE",
            "TYPE",
            "DEPTH",
            "IN FLIGHT",
            "SCHEDULED",
            "DEAD",
            "CONSUMERS",
            "OLDEST",
            "PAUSED",
            "PROCESSED TODAY",
            "FAILED TODAY",
        ],
        &rows,
    )
}
