//! `pythia job <id>`: a job's status record (state, attempts, times, progress, last error,
//! result) and its timeline, as written by workers with job tracking and by
//! `pythia produce --track`.

use std::fmt::Write as _;

use clap::Args;
use pythia::redis::{JobEvent, JobStatus, JobStatusStore};
use pythia_dashboard::documents::{job_event_json, job_json};

use super::{escaped_preview, hex, rfc3339};
use crate::cli::RedisArgs;
use crate::error::CliError;

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
The record is the hash <prefix>:{queue}:job:<id> and its timeline the list \
<prefix>:{queue}:job-events:<id>, written by workers with job tracking \
(pythia::redis::JobTrackingExt::with_job_status: running, then succeeded, failed (a retry follows) \
or dead, and the handler's progress and events) and by producers that track their messages \
(`pythia produce --track`: queued). They expire 24 h after their last change by default. Exit 1 \
when there is no record.

JSON fields (--json): id, queue, state (queued, running, succeeded, failed, dead), attempts, \
queued_at, started_at, finished_at, updated_at (RFC 3339, UTC, or null), progress (`42%`, `3/10`, \
or null), last_error (or null), result (the handler's result as text, or null), result_hex (a \
result that is not UTF-8, or null), events (oldest first: at, kind, attempt and the event's other \
fields).")]
pub(crate) struct JobArgs {
    /// The message (job) id, as `pythia produce --print-ids` prints it.
    pub(crate) id: String,

    /// The queue the job went to (its records are under the queue's key prefix and hash tag).
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: String,

    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Most timeline events shown.
    #[arg(long, default_value_t = 100)]
    pub(crate) events: usize,

    /// Timeline events skipped first (the oldest).
    #[arg(long, default_value_t = 0)]
    pub(crate) events_offset: usize,
}

/// Characters of the result and the error shown in text mode.
const PREVIEW: usize = 2000;

pub(crate) async fn job(args: JobArgs) -> Result<(), CliError> {
    if args.queue.trim().is_empty() {
        return Err(CliError::usage("--queue must not be empty"));
    }
    let conn = args.redis.connect().await?;
    let store = JobStatusStore::new(&conn, &args.queue);
    let Some(status) = store.get(&args.id).await.map_err(CliError::runtime)? else {
        return Err(CliError::runtime(format!(
            "no status record for job {:?} in queue {:?}: never recorded (the worker needs the \
             job-status layer, the producer `--track`), or expired",
            args.id, args.queue
        )));
    };
    let events = store
        .events(&args.id, args.events_offset, args.events)
        .await
        .map_err(CliError::runtime)?;
    if args.json {
        let mut j = job_json(&status);
        j["events"] = events.iter().map(job_event_json).collect();
        crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&j).expect("JSON values serialise")
        )?;
    } else {
        crate::output::out!("{}{}", to_text(&status), timeline(&events))?;
    }
    Ok(())
}

/// One line per event: time, kind, attempt, then its other fields.
fn timeline(events: &[JobEvent]) -> String {
    let mut out = String::from("timeline\n");
    if events.is_empty() {
        out.push_str("  -\n");
    }
    for e in events {
        let detail = if e.fields.is_empty() {
            String::new()
        } else if let (1, Some(p)) = (e.fields.len(), e.fields.get("progress")) {
            p.as_str().unwrap_or_default().to_owned()
        } else {
            escaped_preview(
                &serde_json::Value::Object(e.fields.clone()).to_string(),
                200,
            )
        };
        let line = format!(
            "  {}  {:<10} attempt {:<3} {detail}",
            rfc3339(e.at),
            escaped_preview(&e.kind, 40),
            e.attempt
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn to_text(s: &JobStatus) -> String {
    let t = |t: Option<std::time::SystemTime>| t.map_or_else(|| "-".to_owned(), rfc3339);
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<12}{v}");
    };
    line("id", s.id.clone());
    line("queue", s.queue.clone());
    line("state", s.state.as_str().to_owned());
    line("attempts", s.attempts.to_string());
    line("queued at", t(s.queued_at));
    line("started at", t(s.started_at));
    line("finished at", t(s.finished_at));
    line("updated at", t(s.updated_at));
    line(
        "progress",
        s.progress.map_or_else(|| "-".to_owned(), |p| p.to_string()),
    );
    line(
        "last error",
        s.last_error
            .as_deref()
            .map_or_else(|| "-".to_owned(), |e| escaped_preview(e, PREVIEW)),
    );
    line(
        "result",
        match &s.result {
            None => "-".to_owned(),
            Some(r) => match std::str::from_utf8(r) {
                Ok(text) => escaped_preview(text, PREVIEW),
                Err(_) => format!(
                    "{} bytes of binary: {}",
                    r.len(),
                    hex(&r[..r.len().min(64)])
                ),
            },
        },
    );
    out
}
