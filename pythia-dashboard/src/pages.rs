//! The HTML routes: pages, the confirmation step, the form actions, the login and the assets.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::api::{self, Failure, ListQuery, Selection};
use super::html::{self, Action, Notice};
use super::{App, OVERVIEW_SPARK_POINTS};

/// `/`.
pub(super) async fn overview(State(app): State<App>) -> Html<String> {
    Html(html::overview_page(
        &app,
        &app.sampler.overview(OVERVIEW_SPARK_POINTS),
    ))
}

/// `/queues/<queue>`.
pub(super) async fn queue(
    State(app): State<App>,
    Path(queue): Path<String>,
) -> Result<Html<String>, Response> {
    let r = api::report(&app, &queue).await.map_err(|f| f.page(&app))?;
    let rates = app.sampler.history(&queue);
    // The inspection of a list or stream holds the pause flag already; only a channel's is
    // read on its own.
    let paused = match r.paused() {
        Some(p) => p,
        None => api::paused(&app, &queue).await.map_err(|f| f.page(&app))?,
    };
    Ok(Html(html::queue_page(
        &app,
        &queue,
        &r,
        rates.as_ref(),
        paused,
    )))
}

/// `POST /queues/<queue>/pause` (its `csrf` field was checked by the guard), then back to the
/// queue's page.
pub(super) async fn pause(
    State(app): State<App>,
    Path(queue): Path<String>,
) -> Result<Redirect, Response> {
    api::set_paused(&app, &queue, true)
        .await
        .map_err(|f| f.page(&app))?;
    Ok(Redirect::to(&app.url(&html::queue_path(&queue))))
}

/// `POST /queues/<queue>/resume`.
pub(super) async fn resume(
    State(app): State<App>,
    Path(queue): Path<String>,
) -> Result<Redirect, Response> {
    api::set_paused(&app, &queue, false)
        .await
        .map_err(|f| f.page(&app))?;
    Ok(Redirect::to(&app.url(&html::queue_path(&queue))))
}

/// `/queues/<queue>/dlq`.
pub(super) async fn dlq(
    State(app): State<App>,
    Path(queue): Path<String>,
    Query(list): Query<ListQuery>,
    Query(notice): Query<Notice>,
) -> Result<Html<String>, Response> {
    let doc = api::dead_letters(&app, &queue, &list)
        .await
        .map_err(|f| f.page(&app))?;
    Ok(Html(html::dlq_page(
        &app,
        &queue,
        &doc,
        &notice,
        list.limit(),
    )))
}

/// `?action=replay|delete&id=` of the confirmation page.
#[derive(Debug, Deserialize)]
pub(super) struct ConfirmQuery {
    action: String,
    id: Option<String>,
}

fn action(name: &str) -> Result<Action, Failure> {
    match name {
        "replay" => Ok(Action::Replay),
        "delete" => Ok(Action::Delete),
        other => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("unknown action {other:?}: replay or delete"),
        )),
    }
}

/// `/queues/<queue>/dlq/confirm`: what will happen, and the form that does it.
pub(super) async fn confirm(
    State(app): State<App>,
    Path(queue): Path<String>,
    Query(q): Query<ConfirmQuery>,
) -> Result<Html<String>, Response> {
    let act = action(&q.action).map_err(|f| f.page(&app))?;
    let page = match q.id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => {
            let (d, known) = api::one(&app, &queue, id).await.map_err(|f| f.page(&app))?;
            html::confirm_page(&app, &queue, act, Some(&d), 1, known)
        }
        None => {
            let (total, known) = api::count(&app, &queue).await.map_err(|f| f.page(&app))?;
            html::confirm_page(&app, &queue, act, None, total, known)
        }
    };
    Ok(Html(page))
}

/// The form of the confirmation page (its `csrf` field was checked by the guard).
#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    id: Option<String>,
    all: Option<String>,
}

impl ActionForm {
    fn selection(self) -> Result<Selection, Failure> {
        match (self.id.filter(|i| !i.is_empty()), self.all.as_deref()) {
            (Some(id), None) => Ok(Selection::Ids(vec![id])),
            (None, Some("1")) => Ok(Selection::All),
            _ => Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "give an id, or all=1",
            )),
        }
    }
}

/// `POST /queues/<queue>/dlq/replay`, then back to the dead letters with what happened.
pub(super) async fn replay(
    State(app): State<App>,
    Path(queue): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Redirect, Response> {
    let which = form.selection().map_err(|f| f.page(&app))?;
    let r = api::replay(&app, &queue, &which)
        .await
        .map_err(|f| f.page(&app))?;
    Ok(Redirect::to(&format!(
        "{}/dlq?replayed={}&missing={}&unheard={}",
        app.url(&html::queue_path(&queue)),
        r.replayed,
        r.missing,
        r.unheard
    )))
}

/// `POST /queues/<queue>/dlq/delete`.
pub(super) async fn delete(
    State(app): State<App>,
    Path(queue): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Redirect, Response> {
    let which = form.selection().map_err(|f| f.page(&app))?;
    let n = api::delete(&app, &queue, &which)
        .await
        .map_err(|f| f.page(&app))?;
    Ok(Redirect::to(&format!(
        "{}/dlq?deleted={n}",
        app.url(&html::queue_path(&queue))
    )))
}

/// `GET /login`.
pub(super) async fn login_form(State(app): State<App>) -> Html<String> {
    Html(html::login_page(&app, "/", "Log in"))
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /login`: sets the session cookie when the token is right.
pub(super) async fn login(State(app): State<App>, Form(form): Form<LoginForm>) -> Response {
    let next = form
        .next
        .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/".to_owned());
    if !app.security.requires_token() {
        return Redirect::to(&app.url(&next)).into_response();
    }
    if !app.security.token_matches(&form.token) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(html::login_page(&app, &next, "Wrong token")),
        )
            .into_response();
    }
    let mut r = Redirect::to(&app.url(&next)).into_response();
    if let Ok(v) = HeaderValue::from_str(&app.session_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `/assets/dashboard.js`.
pub(super) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/dashboard.js"),
    )
        .into_response()
}

/// `/assets/dashboard.css`.
pub(super) async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/dashboard.css"),
    )
        .into_response()
}

/// Any other path.
pub(super) async fn not_found(State(app): State<App>, uri: Uri) -> Response {
    let f = Failure::new(StatusCode::NOT_FOUND, format!("nothing at {}", uri.path()));
    if uri.path().starts_with("/api/") {
        f.json()
    } else {
        f.page(&app)
    }
}
