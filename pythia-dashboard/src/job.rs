//! A job's page, `/queues/<queue>/jobs/<id>` (and `/api/queues/<queue>/jobs/<id>`): its status
//! record and its timeline (queued, started, progress, the handler's events, retried,
//! succeeded or dead), as workers with job tracking write them and `pythia job` shows them.
//! `/queues/<queue>/job?id=` is the queue page's look-up form.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, Redirect, Response};
use maud::{Markup, html};
use pythia_redis::{JobEvent, JobStatus, JobStatusStore};
use serde::Deserialize;
use serde_json::Value;

use super::App;
use super::api::Failure;
use super::html::{enc, layout, queue_path};
use crate::documents::{job_event_json, job_json};
use crate::format::rfc3339;

/// Timeline lines shown, newest last (the store keeps a bounded number).
const EVENTS: usize = 200;
/// Characters of a result, an error or an event's fields shown.
const PREVIEW: usize = 2000;

/// The record and timeline of job `id` of `queue`.
async fn read(app: &App, queue: &str, id: &str) -> Result<(JobStatus, Vec<JobEvent>), Failure> {
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
    Ok((status, events))
}

/// `GET /api/queues/<queue>/jobs/<id>`: `pythia job --json`'s document.
pub(super) async fn api(
    State(app): State<App>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<Value>, Response> {
    let (status, events) = read(&app, &queue, &id).await.map_err(Failure::json)?;
    let mut doc = job_json(&status);
    doc["events"] = events.iter().map(job_event_json).collect();
    Ok(Json(doc))
}

/// `GET /queues/<queue>/jobs/<id>`.
pub(super) async fn page(
    State(app): State<App>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Html<String>, Response> {
    let (status, events) = read(&app, &queue, &id).await.map_err(|f| f.page(&app))?;
    Ok(Html(render(&app, &queue, &id, &status, &events)))
}

/// `?id=` of the queue page's look-up form.
#[derive(Debug, Deserialize)]
pub(super) struct Lookup {
    #[serde(default)]
    id: String,
}

/// `GET /queues/<queue>/job?id=`: to the job's page.
pub(super) async fn lookup(
    State(app): State<App>,
    Path(queue): Path<String>,
    Query(q): Query<Lookup>,
) -> Redirect {
    let page = app.url(&queue_path(&queue));
    let id = q.id.trim();
    if id.is_empty() {
        return Redirect::to(&page);
    }
    Redirect::to(&format!("{page}/jobs/{}", enc(id)))
}

/// The look-up form the queue page shows.
pub(super) fn lookup_form(app: &App, queue: &str) -> Markup {
    html! {
        form.lookup method="get" action={ (app.url(&queue_path(queue))) "/job" } {
            label { "Job " input name="id" placeholder="message id" required; }
            " "
            button { "Show" }
        }
    }
}

/// A JSON value as text: a string as it is, `null` as `-`.
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

fn render(app: &App, queue: &str, id: &str, s: &JobStatus, events: &[JobEvent]) -> String {
    let path = app.url(&queue_path(queue));
    let time = |t: Option<SystemTime>| t.map_or_else(|| "-".to_owned(), rfc3339);
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let result = s
        .result
        .as_deref()
        .and_then(|r| std::str::from_utf8(r).ok());
    let facts = [
        ("Attempts", "attempts", s.attempts.to_string()),
        (
            "Progress",
            "progress",
            s.progress.map_or_else(|| "-".to_owned(), |p| p.to_string()),
        ),
        ("Queued", "queued_at", time(s.queued_at)),
        ("Started", "started_at", time(s.started_at)),
        ("Finished", "finished_at", time(s.finished_at)),
        ("Updated", "updated_at", time(s.updated_at)),
        ("Last error", "last_error", or_dash(s.last_error.as_deref())),
        ("Result", "result", or_dash(result)),
    ];
    let c = html! {
        nav.crumbs { a href=(app.url("/")) { "Queues" } " / " a href=(path) { (queue) } " / job" }
        h1 { "Job " code { (id) } " " span.kind #job-state { (s.state.as_str()) } }
        table.grid.facts-table #job-record {
            @for (label, field, value) in &facts {
                tr { th { (label) } td data-f=(field) { (cut(value)) } }
            }
        }
        h2 { "Timeline" }
        @if events.is_empty() {
            p.muted { "No events recorded." }
        } @else {
            table.grid #timeline {
                thead { tr { th { "Time" } th { "Event" } th { "Attempt" } th { "Detail" } } }
                tbody {
                    @for e in events {
                        tr {
                            td { (rfc3339(e.at)) }
                            td.event { (e.kind) }
                            td { (e.attempt) }
                            td { (detail(e)) }
                        }
                    }
                }
            }
        }
    };
    layout(app, &format!("Job {id}"), "job", Some(queue), c)
}

/// An event's own fields: nothing, its progress alone, or the fields as JSON, cut.
fn detail(e: &JobEvent) -> String {
    match e.fields.len() {
        0 => String::new(),
        1 if e.fields.contains_key("progress") => text(&e.fields["progress"]),
        _ => cut(&Value::Object(e.fields.clone()).to_string()),
    }
}
