//! A job's page, `/queues/<queue>/jobs/<id>` (and `/api/queues/<queue>/jobs/<id>`): its status
//! record and its timeline (queued, started, progress, the handler's events, retried,
//! succeeded or dead), as workers with job tracking write them and `pythia job` shows them.
//! `/queues/<queue>/job?id=` is the queue page's look-up form.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, Redirect, Response};
use pythia_redis::JobStatusStore;
use serde::Deserialize;
use serde_json::Value;

use super::App;
use super::api::Failure;
use super::html::{enc, esc, layout, queue_path};
use crate::documents::{job_event_json, job_json};

/// Timeline lines shown, newest last (the store keeps a bounded number).
const EVENTS: usize = 200;
/// Characters of a result, an error or an event's fields shown.
const PREVIEW: usize = 2000;

/// The record and timeline of job `id` of `queue`: `pythia job --json`'s document.
async fn doc(app: &App, queue: &str, id: &str) -> Result<Value, Failure> {
    let store = JobStatusStore::new(&app.conn, queue);
    let Some(status) = store.get(id).await.map_err(Failure::redis)? else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "no status record for job {id:?} in queue {queue:?}: never recorded (the worker \
                 needs job tracking, the producer `--track`), or expired"
            ),
        ));
    };
    let events = store.events(id, 0, EVENTS).await.map_err(Failure::redis)?;
    let mut doc = job_json(&status);
    doc["events"] = events.iter().map(job_event_json).collect();
    Ok(doc)
}

/// `GET /api/queues/<queue>/jobs/<id>`.
pub(super) async fn api(
    State(app): State<App>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<Value>, Response> {
    doc(&app, &queue, &id)
        .await
        .map(Json)
        .map_err(Failure::json)
}

/// `GET /queues/<queue>/jobs/<id>`.
pub(super) async fn page(
    State(app): State<App>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Html<String>, Response> {
    let doc = doc(&app, &queue, &id).await.map_err(|f| f.page(&app))?;
    Ok(Html(render(&app, &queue, &id, &doc)))
}

/// `?id=` of the queue page's look-up form.
#[derive(Debug, Deserialize)]
pub(super) struct Lookup {
    #[serde(default)]
    id: String,
}

/// `GET /queues/<queue>/job?id=`: to the job's page.
pub(super) async fn lookup(Path(queue): Path<String>, Query(q): Query<Lookup>) -> Redirect {
    let id = q.id.trim();
    if id.is_empty() {
        return Redirect::to(&queue_path(&queue));
    }
    Redirect::to(&format!("{}/jobs/{}", queue_path(&queue), enc(id)))
}

/// The look-up form the queue page shows.
pub(super) fn lookup_form(queue: &str) -> String {
    format!(
        "<form class=\"lookup\" method=\"get\" action=\"{}/job\"><label>Job \
<input name=\"id\" placeholder=\"message id\" required></label> <button>Show</button></form>",
        queue_path(queue)
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cut(s: &str) -> String {
    crate::format::escaped_preview(s, PREVIEW)
}

fn render(app: &App, queue: &str, id: &str, doc: &Value) -> String {
    let path = queue_path(queue);
    let mut c = String::new();
    let _ = write!(
        c,
        "<nav class=\"crumbs\"><a href=\"/\">Queues</a> / <a href=\"{path}\">{}</a> / job</nav>\
<h1>Job <code>{}</code> <span class=\"kind\" id=\"job-state\">{}</span></h1><table class=\"grid facts-table\" id=\"job-record\">",
        esc(queue),
        esc(id),
        esc(&text(&doc["state"])),
    );
    for (label, field) in [
        ("Attempts", "attempts"),
        ("Progress", "progress"),
        ("Queued", "queued_at"),
        ("Started", "started_at"),
        ("Finished", "finished_at"),
        ("Updated", "updated_at"),
        ("Last error", "last_error"),
        ("Result", "result"),
    ] {
        let _ = write!(
            c,
            "<tr><th>{label}</th><td data-f=\"{field}\">{}</td></tr>",
            esc(&cut(&text(&doc[field])))
        );
    }
    c.push_str("</table><h2>Timeline</h2>");
    let events = doc["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        c.push_str("<p class=\"muted\">No events recorded.</p>");
    } else {
        c.push_str(
            "<table class=\"grid\" id=\"timeline\"><thead><tr><th>Time</th><th>Event</th>\
<th>Attempt</th><th>Detail</th></tr></thead><tbody>",
        );
        for e in &events {
            let mut detail = e.clone();
            if let Some(o) = detail.as_object_mut() {
                for k in ["at", "kind", "attempt"] {
                    o.remove(k);
                }
            }
            let detail = match detail.as_object() {
                Some(o) if o.is_empty() => String::new(),
                Some(o) if o.len() == 1 && o.contains_key("progress") => text(&o["progress"]),
                _ => cut(&detail.to_string()),
            };
            let _ = write!(
                c,
                "<tr><td>{}</td><td class=\"event\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&text(&e["at"])),
                esc(&text(&e["kind"])),
                esc(&text(&e["attempt"])),
                esc(&detail),
            );
        }
        c.push_str("</tbody></table>");
    }
    layout(app, &format!("Job {id}"), "job", Some(queue), &c)
}
