//! The JSON API, and the reads and actions the pages share with it.
//!
//! `GET /api/queues/<queue>` is the document of `pythia inspect --json` and
//! `GET /api/queues/<queue>/dlq` that of `pythia dlq list --json` (plus `body_binary` and
//! `body_hex`): the same functions build them. The routes are listed in `pythia dashboard
//! --help` and the README.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use pythia_redis::queues::QueueKind;
use pythia_redis::queues::inspect::{InspectError, QueueInspection, dead_letters_of};
use pythia_redis::{DeadLetter, DeadLetterQueue, ReplayReport};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::documents::{History, Overview, dead_letter_json, dead_letters_json};
use crate::{App, OVERVIEW_SPARK_POINTS, html};

/// Dead letters listed when no `limit` is given.
pub(super) const DEFAULT_LIMIT: usize = 50;
/// Most dead letters listed at once.
pub(super) const MAX_LIMIT: usize = 1000;
/// Characters of a body shown when no `preview` is given.
const DEFAULT_PREVIEW: usize = 200;
/// Most characters of a body shown.
const MAX_PREVIEW: usize = 10_000;
/// Characters of a body shown on the confirmation page.
pub(super) const CONFIRM_PREVIEW: usize = 2000;
/// Bytes of a binary body shown as hex.
const HEX_BYTES: usize = 64;

/// A request that failed: its status and why.
#[derive(Debug)]
pub(super) struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// Asking for what is not there (a key of another type, a missing group) is a 400; a
    /// Redis failure a 502.
    pub(super) fn from_inspect(e: InspectError) -> Self {
        let status = if e.is_usage() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::BAD_GATEWAY
        };
        Self::new(status, e.to_string())
    }

    /// Redis failed: a 502.
    pub(super) fn redis(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, e.to_string())
    }

    /// As the API answers: `{"error": …}`.
    pub(super) fn json(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }

    /// As a page.
    pub(super) fn page(self, app: &App) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        (
            self.status,
            Html(html::message_page(app, title, &self.message)),
        )
            .into_response()
    }
}

/// The inspection of `queue` (`pythia inspect`'s); a queue that exists is tracked from then on.
pub(super) async fn report(app: &App, queue: &str) -> Result<QueueInspection, Failure> {
    let r = app
        .sampler
        .inspect(queue)
        .await
        .map_err(Failure::from_inspect)?;
    if r.exists() {
        app.sampler.track(queue);
    }
    Ok(r)
}

/// The dead-letter queue of `queue`, as `pythia dlq` opens it, and the kind of the queue
/// when its key exists.
async fn open(app: &App, queue: &str) -> Result<(DeadLetterQueue, Option<QueueKind>), Failure> {
    dead_letters_of(&app.conn, queue, app.sampler.side())
        .await
        .map_err(|e| match e {
            e @ InspectError::WrongType { .. } => Failure::new(
                StatusCode::BAD_REQUEST,
                format!("{e}; give --broker pubsub for a channel"),
            ),
            e => Failure::from_inspect(e),
        })
}

/// Whether a body is shown as hex: not UTF-8, or control characters other than white space.
pub(super) fn is_binary(body: &[u8]) -> bool {
    match std::str::from_utf8(body) {
        Err(_) => true,
        Ok(s) => s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')),
    }
}

/// The first [`HEX_BYTES`] of a binary body as hex, `…` after them when there are more.
pub(super) fn hex_preview(body: &[u8]) -> String {
    let mut out = String::with_capacity(HEX_BYTES * 3 + 4);
    for (i, b) in body.iter().take(HEX_BYTES).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    if body.len() > HEX_BYTES {
        out.push_str(" …");
    }
    out
}

/// One dead letter as `pythia dlq list --json` has it, plus `body_binary` and `body_hex`.
fn dead_letter(d: &DeadLetter, preview: usize) -> Value {
    let mut j = dead_letter_json(d, preview);
    let body = d.message.body();
    let binary = is_binary(body);
    j["body_binary"] = json!(binary);
    j["body_hex"] = if binary {
        json!(hex_preview(body))
    } else {
        Value::Null
    };
    j
}

/// `?limit=&preview=` of a dead-letter listing.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    limit: Option<usize>,
    preview: Option<usize>,
}

impl ListQuery {
    pub(super) fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
    }

    pub(super) fn preview(&self) -> usize {
        self.preview.unwrap_or(DEFAULT_PREVIEW).min(MAX_PREVIEW)
    }
}

/// The newest dead letters of a queue, as the DLQ page and API list them.
#[derive(Debug)]
pub(super) struct DeadLetterList {
    pub(super) queue: String,
    pub(super) dlq: DeadLetterQueue,
    /// The kind of the queue, when its key exists.
    pub(super) kind: Option<QueueKind>,
    /// Dead letters in all.
    pub(super) total: u64,
    /// The newest of them, newest first.
    pub(super) letters: Vec<DeadLetter>,
    /// Characters of a body shown.
    pub(super) preview: usize,
}

impl DeadLetterList {
    /// The `pythia dlq list --json` document, each dead letter with `body_binary` and
    /// `body_hex`.
    fn json(&self) -> Value {
        let mut doc = dead_letters_json(
            &self.queue,
            self.dlq.key(),
            self.kind.map(QueueKind::as_str),
            self.total,
            &self.letters,
            self.preview,
        );
        doc["dead_letters"] = self
            .letters
            .iter()
            .map(|d| dead_letter(d, self.preview))
            .collect();
        doc
    }
}

/// The newest dead letters of `queue`.
pub(super) async fn dead_letters(
    app: &App,
    queue: &str,
    q: &ListQuery,
) -> Result<DeadLetterList, Failure> {
    let (dlq, kind) = open(app, queue).await?;
    let total = dlq.len().await.map_err(Failure::redis)?;
    let letters = dlq.newest(q.limit()).await.map_err(Failure::redis)?;
    if total > 0 {
        app.sampler.track(queue);
    }
    Ok(DeadLetterList {
        queue: queue.to_owned(),
        dlq,
        kind,
        total,
        letters,
        preview: q.preview(),
    })
}

/// The dead letter of `queue` with this id (message id or stream entry id), and whether the
/// kind of the queue is known (its key exists).
pub(super) async fn one(app: &App, queue: &str, id: &str) -> Result<(DeadLetter, bool), Failure> {
    let (dlq, kind) = open(app, queue).await?;
    let mut found = select(&dlq, &[id.to_owned()]).await?;
    Ok((found.swap_remove(0), kind.is_some()))
}

/// How many dead letters `queue` has, and whether the kind of the queue is known.
pub(super) async fn count(app: &App, queue: &str) -> Result<(u64, bool), Failure> {
    let (dlq, kind) = open(app, queue).await?;
    let n = dlq.len().await.map_err(Failure::redis)?;
    Ok((n, kind.is_some()))
}

/// The dead letters named by `ids`; 404 when one is not there.
async fn select(dlq: &DeadLetterQueue, ids: &[String]) -> Result<Vec<DeadLetter>, Failure> {
    let (found, missing) = dlq.find_ids(ids).await.map_err(Failure::redis)?;
    if !missing.is_empty() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "no dead letter with id {} in {} (see `pythia dlq list`); nothing done",
                missing.join(", "),
                dlq.key()
            ),
        ));
    }
    Ok(found)
}

/// Which dead letters an action is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Selection {
    All,
    Ids(Vec<String>),
}

/// Puts the selected dead letters of `queue` back on it.
pub(super) async fn replay(
    app: &App,
    queue: &str,
    which: &Selection,
) -> Result<ReplayReport, Failure> {
    let (dlq, _) = open(app, queue).await?;
    let report = match which {
        Selection::All => dlq.replay_all().await,
        Selection::Ids(ids) => {
            let found = select(&dlq, ids).await?;
            dlq.replay(&found).await
        }
    }
    .map_err(Failure::redis)?;
    tracing::info!(
        queue,
        replayed = report.replayed,
        missing = report.missing,
        unheard = report.unheard,
        "dashboard: dead letters replayed"
    );
    Ok(report)
}

/// Deletes the selected dead letters of `queue`; how many were deleted.
pub(super) async fn delete(app: &App, queue: &str, which: &Selection) -> Result<u64, Failure> {
    let (dlq, _) = open(app, queue).await?;
    let deleted = match which {
        Selection::All => dlq.purge().await,
        Selection::Ids(ids) => {
            let found = select(&dlq, ids).await?;
            dlq.delete(&found).await
        }
    }
    .map_err(Failure::redis)?;
    tracing::info!(queue, deleted, "dashboard: dead letters deleted");
    Ok(deleted)
}

/// Whether `queue` is paused (its flag, read now).
pub(super) async fn paused(app: &App, queue: &str) -> Result<bool, Failure> {
    pythia_redis::queues::is_paused(&app.conn, queue)
        .await
        .map_err(Failure::redis)
}

/// Pauses or resumes `queue` (the library's `pause` / `resume`).
pub(super) async fn set_paused(app: &App, queue: &str, on: bool) -> Result<(), Failure> {
    if queue.trim().is_empty() {
        return Err(Failure::new(StatusCode::BAD_REQUEST, "no queue named"));
    }
    let done = if on {
        pythia_redis::queues::pause(&app.conn, queue)
            .await
            .map(drop)
    } else {
        pythia_redis::queues::resume(&app.conn, queue)
            .await
            .map(drop)
    };
    done.map_err(Failure::redis)?;
    tracing::info!(queue, paused = on, "dashboard: pause flag set");
    Ok(())
}

/// `POST /api/queues/<queue>/pause`: `{"queue", "paused": true}`.
pub(super) async fn pause_api(
    State(app): State<App>,
    Path(queue): Path<String>,
) -> Result<Json<Value>, Response> {
    set_paused(&app, &queue, true)
        .await
        .map_err(Failure::json)?;
    Ok(Json(json!({ "queue": queue, "paused": true })))
}

/// `POST /api/queues/<queue>/resume`: `{"queue", "paused": false}`.
pub(super) async fn resume_api(
    State(app): State<App>,
    Path(queue): Path<String>,
) -> Result<Json<Value>, Response> {
    set_paused(&app, &queue, false)
        .await
        .map_err(Failure::json)?;
    Ok(Json(json!({ "queue": queue, "paused": false })))
}

/// `GET /api/overview`.
pub(super) async fn overview(State(app): State<App>) -> Json<Overview> {
    Json(app.sampler.overview(OVERVIEW_SPARK_POINTS))
}

/// `GET /api/csrf`.
pub(super) async fn csrf(State(app): State<App>) -> Json<Value> {
    Json(json!({ "csrf_token": app.security.csrf() }))
}

/// `GET /api/queues/<queue>`: `pythia inspect --json`.
pub(super) async fn queue(
    State(app): State<App>,
    Path(queue): Path<String>,
) -> Result<Json<QueueInspection>, Response> {
    report(&app, &queue).await.map(Json).map_err(Failure::json)
}

/// `GET /api/queues/<queue>/history`.
pub(super) async fn history(
    State(app): State<App>,
    Path(queue): Path<String>,
) -> Result<Json<History>, Response> {
    if let Some(h) = app.sampler.history(&queue) {
        return Ok(Json(h));
    }
    report(&app, &queue).await.map_err(Failure::json)?;
    app.sampler.history(&queue).map(Json).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("no queue {queue:?}: nothing in Redis under that name"),
        )
        .json()
    })
}

/// `GET /api/queues/<queue>/dlq`: `pythia dlq list --json`.
pub(super) async fn dlq(
    State(app): State<App>,
    Path(queue): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, Response> {
    dead_letters(&app, &queue, &q)
        .await
        .map(|list| Json(list.json()))
        .map_err(Failure::json)
}

/// The body of `POST /api/queues/<queue>/dlq/{replay,delete}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionBody {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

fn selection(body: Result<Json<ActionBody>, JsonRejection>) -> Result<Selection, Failure> {
    let Json(b) = body.map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    match (b.all, b.ids.is_empty()) {
        (true, true) => Ok(Selection::All),
        (false, false) => Ok(Selection::Ids(b.ids)),
        _ => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "give either {\"ids\": [...]} or {\"all\": true}",
        )),
    }
}

/// `POST /api/queues/<queue>/dlq/replay`.
pub(super) async fn replay_api(
    State(app): State<App>,
    Path(queue): Path<String>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Result<Json<Value>, Response> {
    let which = selection(body).map_err(Failure::json)?;
    let r = replay(&app, &queue, &which).await.map_err(Failure::json)?;
    Ok(Json(json!({
        "replayed": r.replayed,
        "missing": r.missing,
        "unheard": r.unheard,
    })))
}

/// `POST /api/queues/<queue>/dlq/delete`.
pub(super) async fn delete_api(
    State(app): State<App>,
    Path(queue): Path<String>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Result<Json<Value>, Response> {
    let which = selection(body).map_err(Failure::json)?;
    let deleted = delete(&app, &queue, &which).await.map_err(Failure::json)?;
    Ok(Json(json!({ "deleted": deleted })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_bodies() {
        assert!(!is_binary(b"hello\n\tworld"));
        assert!(!is_binary("héllo <script>".as_bytes()));
        assert!(is_binary(b"\xff\xfe"));
        assert!(is_binary(b"a\x00b"));
        assert_eq!(hex_preview(b"\x00\xffA"), "00 ff 41");
        assert!(hex_preview(&[7; 65]).ends_with("07 …"));
    }
}
