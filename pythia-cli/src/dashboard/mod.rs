//! `pythia dashboard`: a small web UI over the queues under a key prefix, served by the
//! `pythia` binary itself.
//!
//! * Pages (rendered here, see [`html`]): `/` every queue with its depth, in-flight messages,
//!   retries, dead letters, oldest message, consumers, rates and sparklines;
//!   `/queues/<queue>` its consumers (or stream groups) with heartbeats and charts, its pause
//!   state with a pause / resume button (processed and failed rates from the workers' daily
//!   counters on both pages);
//!   `/queues/<queue>/dlq` its dead letters, with replay and delete behind a confirmation page;
//!   `/queues/<queue>/jobs/<id>` a job's status record and timeline ([`job`]), found with the
//!   queue page's look-up form.
//!   One script (`assets/dashboard.js`) polls the JSON API every `--interval` and redraws the
//!   numbers and SVG charts; one style sheet. Both are compiled in: nothing is fetched from
//!   elsewhere, so it works offline.
//! * The JSON API ([`api`]) serves the documents of `pythia inspect --json` and
//!   `pythia dlq list --json`, built by the same functions, plus the overview and history
//!   that [`sampler`] keeps in memory.
//! * Security ([`security`]): loopback by default (another address needs `--token`), a token
//!   as bearer header or session cookie, CSRF token and same-origin check on every POST,
//!   Host check against DNS rebinding, a strict Content-Security-Policy, and every text from
//!   Redis escaped.
//! * HTTP: axum routes and parses requests; [`server`] accepts connections with hyper and
//!   bounds them in number, head size and time.

mod api;
mod documents;
mod html;
mod job;
mod pages;
mod sampler;
mod security;
mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pythia::redis::RedisConnection;
use tokio::net::TcpListener;

use crate::cli::DashboardArgs;
use crate::error::CliError;
use sampler::Sampler;
use security::Security;

/// Samples per queue in the overview (its sparklines); a queue's history has all of them.
const OVERVIEW_SPARK_POINTS: usize = 150;
/// Longest a request may take, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest sampling interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// What every handler shares.
#[derive(Debug)]
struct AppState {
    conn: RedisConnection,
    sampler: Arc<Sampler>,
    security: Security,
    /// The Redis URL, password masked.
    redis: String,
    prefix: String,
}

/// The handlers' state.
type App = Arc<AppState>;

/// Serves the dashboard until SIGTERM or Ctrl-C.
pub(crate) async fn dashboard(args: DashboardArgs) -> Result<(), CliError> {
    let token = args.token.filter(|t| !t.is_empty());
    if !args.addr.ip().is_loopback() && token.is_none() {
        return Err(CliError::usage(format!(
            "refusing to serve on {} without --token (or PYTHIA_DASHBOARD_TOKEN): anyone who can \
             reach it could replay and delete dead letters. Give a long random token, or serve \
             on 127.0.0.1",
            args.addr
        )));
    }
    if args.interval < MIN_INTERVAL {
        return Err(CliError::usage(format!(
            "--interval must be at least {MIN_INTERVAL:?}"
        )));
    }
    if args.history < args.interval {
        return Err(CliError::usage("--history must be at least --interval"));
    }
    let conn = args.redis.connect().await?;
    let listener = TcpListener::bind(args.addr)
        .await
        .map_err(|e| CliError::usage(format!("cannot listen on {}: {e}", args.addr)))?;
    let local = listener.local_addr().map_err(CliError::runtime)?;
    let security = Security::new(local, token).map_err(CliError::runtime)?;
    let sampler = Arc::new(Sampler::new(
        conn.clone(),
        &args.redis.key_prefix,
        args.list_side,
        args.interval,
        args.history,
        &args.queue,
    ));
    let app = Arc::new(AppState {
        redis: conn.config().masked_url(),
        conn,
        sampler: Arc::clone(&sampler),
        security,
        prefix: args.redis.key_prefix.clone(),
    });
    tokio::spawn(sampler.run());
    // One line on stdout, for people and for scripts that started it on port 0.
    crate::output::outln!(
        "pythia dashboard: serving http://{local}/ ({}, prefix {:?}){}",
        app.redis,
        app.prefix,
        if app.security.requires_token() {
            "; open it with ?token=<token> once"
        } else {
            ""
        }
    )?;
    server::serve(listener, router(app), shutdown_signal()).await;
    tracing::info!("dashboard stopped");
    Ok(())
}

/// Every route, behind the security gate and the response headers.
fn router(app: App) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/queues/{queue}", get(pages::queue))
        .route("/queues/{queue}/dlq", get(pages::dlq))
        .route("/queues/{queue}/dlq/confirm", get(pages::confirm))
        .route("/queues/{queue}/dlq/replay", post(pages::replay))
        .route("/queues/{queue}/dlq/delete", post(pages::delete))
        .route("/queues/{queue}/job", get(job::lookup))
        .route("/queues/{queue}/jobs/{id}", get(job::page))
        .route("/queues/{queue}/pause", post(pages::pause))
        .route("/queues/{queue}/resume", post(pages::resume))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/assets/dashboard.js", get(pages::script))
        .route("/assets/dashboard.css", get(pages::style))
        .route("/api/overview", get(api::overview))
        .route("/api/csrf", get(api::csrf))
        .route("/api/queues/{queue}", get(api::queue))
        .route("/api/queues/{queue}/history", get(api::history))
        .route("/api/queues/{queue}/dlq", get(api::dlq))
        .route("/api/queues/{queue}/jobs/{id}", get(job::api))
        .route("/api/queues/{queue}/dlq/replay", post(api::replay_api))
        .route("/api/queues/{queue}/dlq/delete", post(api::delete_api))
        .route("/api/queues/{queue}/pause", post(api::pause_api))
        .route("/api/queues/{queue}/resume", post(api::resume_api))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(security::MAX_FORM))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            security::guard,
        ))
        .layer(middleware::from_fn(deadline))
        .layer(middleware::from_fn(security::headers))
        .with_state(app)
}

/// Cuts a request that takes longer than [`REQUEST_TIMEOUT`] (a slow body, a stuck Redis).
async fn deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
