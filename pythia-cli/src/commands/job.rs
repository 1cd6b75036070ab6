//! `pythia job <id>`: a job's status record (state, attempts, times, last error, result), as
//! written by workers with `JobStatusLayer` and by `pythia produce --track`.

use std::fmt::Write as _;

use pythia::redis::{JobStatus, JobStatusStore};
use serde_json::json;

use super::{escaped_preview, rfc3339};
use crate::cli::JobArgs;
use crate::error::CliError;

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
    if args.json {
        crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&to_json(&status)).expect("JSON values serialise")
        )?;
    } else {
        crate::output::out!("{}", to_text(&status))?;
    }
    Ok(())
}

fn time(t: Option<std::time::SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| json!(rfc3339(t)))
}

fn to_json(s: &JobStatus) -> serde_json::Value {
    let (result, result_hex) = match &s.result {
        None => (None, None),
        Some(r) => match std::str::from_utf8(r) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(hex(r))),
        },
    };
    json!({
        "id": s.id,
        "queue": s.queue,
        "state": s.state.as_str(),
        "attempts": s.attempts,
        "queued_at": time(s.queued_at),
        "started_at": time(s.started_at),
        "finished_at": time(s.finished_at),
        "updated_at": time(s.updated_at),
        "last_error": s.last_error,
        "result": result,
        "result_hex": result_hex,
    })
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
