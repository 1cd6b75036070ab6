//! `pythia jobs --queue Q --state S`: a queue's recent jobs in one state, newest first, from
//! the per-state indexes job tracking keeps (bounded by time and count).

use clap::Args;
use pythia::redis::{JobState, JobStatusStore};

use super::{escaped_preview, rfc3339, table};
use crate::cli::RedisArgs;
use crate::error::CliError;

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
Workers with job tracking (pythia::redis::JobTrackingExt::with_job_status) keep, per queue and \
state, the ids of the jobs that entered it: the sorted sets <prefix>:{queue}:jobs:<state>, trimmed \
to the records' TTL (24 h by default) and to 10,000 ids. A job is in one state at a time.

JSON (--json): an array of records, each as `pythia job --json` prints it without its events.")]
pub(crate) struct JobsArgs {
    /// The queue.
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: String,

    /// The state: queued, running, succeeded, failed (a retry follows) or dead.
    #[arg(long, short = 's', value_parser = parse_state)]
    pub(crate) state: JobState,

    /// Most jobs listed.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,

    /// Jobs skipped first (the newest).
    #[arg(long, default_value_t = 0)]
    pub(crate) offset: usize,

    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_state(s: &str) -> Result<JobState, String> {
    s.parse::<JobState>()
        .map_err(|_| format!("{s:?} is not a job state (queued, running, succeeded, failed, dead)"))
}

pub(crate) async fn jobs(args: JobsArgs) -> Result<(), CliError> {
    if args.queue.trim().is_empty() {
        return Err(CliError::usage("--queue must not be empty"));
    }
    let conn = args.redis.connect().await?;
    let store = JobStatusStore::new(&conn, &args.queue);
    let jobs = store
        .recent(args.state, args.offset, args.limit)
        .await
        .map_err(CliError::runtime)?;
    if args.json {
        let all: Vec<serde_json::Value> = jobs
            .iter()
            .map(pythia_dashboard::documents::job_json)
            .collect();
        crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&all).expect("JSON values serialise")
        )?;
        return Ok(());
    }
    if jobs.is_empty() {
        crate::output::outln!(
            "no {} jobs in queue {:?} (recent window)",
            args.state,
            args.queue
        )?;
        return Ok(());
    }
    let t = |t: Option<std::time::SystemTime>| t.map_or_else(|| "-".to_owned(), rfc3339);
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.clone(),
                t(j.updated_at),
                j.attempts.to_string(),
                j.progress.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                j.last_error
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |e| escaped_preview(e, 80)),
            ]
        })
        .collect();
    crate::output::out!(
        "{}",
        table(
            &["id", "since", "attempts", "progress", "last error"],
            &rows
        )
    )?;
    Ok(())
}
