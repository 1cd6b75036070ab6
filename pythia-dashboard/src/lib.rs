#![doc = include_str!("../README.md")]

// Where things live:
// lib.rs        DashboardConfig, router(), serve()
// sampler.rs    the queues' samples and rates; documents.rs its typed documents, and the dead
//               letters' and job records' JSON the commands share
// api.rs        the JSON API and the reads and actions the pages share with it
// pages.rs job.rs   the HTML routes; html/ renders the pages
// security.rs   token, session, CSRF, Host check, response headers; server.rs the accept loop
// format.rs     numbers, durations, sizes and times (shared with the `pythia` commands)

mod api;
pub mod documents;
pub mod format;
mod html;
mod job;
mod pages;
mod sampler;
mod security;
mod server;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pythia_redis::{ListSide, RedisConnection};

pub use server::serve;

use sampler::Sampler;
use security::Security;

/// Samples per queue in the overview (its sparklines); a queue's history has all of them.
const OVERVIEW_SPARK_POINTS: usize = 150;
/// Longest a request may take, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares.
#[derive(Debug)]
struct AppState {
    conn: RedisConnection,
    sampler: Arc<Sampler>,
    security: Security,
    /// The Redis URL, password masked.
    redis: String,
    prefix: String,
    /// The path the dashboard is mounted under (`""` at the root).
    base: String,
}

impl AppState {
    /// The URL of `path` (from the dashboard's root, starting with `/`) under the base path;
    /// the root itself is the base path without a trailing `/` (what `Router::nest` serves).
    fn url(&self, path: &str) -> String {
        if path == "/" && !self.base.is_empty() {
            return self.base.clone();
        }
        format!("{}{path}", self.base)
    }

    /// `Set-Cookie` of a logged-in browser, its `Path` the base path (`/` at the root).
    fn session_cookie(&self) -> String {
        self.security.session_cookie(&self.url("/"))
    }
}

/// The handlers' state.
type App = Arc<AppState>;

/// What a dashboard watches and who may use it: the Redis connection (whose key prefix names
/// the queues), how often it samples, how much history it keeps, and the token.
///
/// ```no_run
/// # fn demo(conn: pythia_redis::RedisConnection) -> Result<(), pythia_dashboard::DashboardError> {
/// use std::time::Duration;
/// use pythia_dashboard::{DashboardConfig, router};
///
/// let config = DashboardConfig::new(conn)
///     .with_interval(Duration::from_secs(5))?
///     .with_token("a long random secret");
/// let app: axum::Router = router(config)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DashboardConfig {
    conn: RedisConnection,
    interval: Duration,
    history: Duration,
    list_side: ListSide,
    queues: Vec<String>,
    token: Option<String>,
    local_addr: Option<SocketAddr>,
    base_path: String,
}

impl DashboardConfig {
    /// Sampling interval by default.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    /// History kept by default.
    pub const DEFAULT_HISTORY: Duration = Duration::from_secs(15 * 60);
    /// Shortest sampling interval accepted.
    pub const MIN_INTERVAL: Duration = Duration::from_millis(200);

    /// The queues under `conn`'s key prefix, sampled every [`DEFAULT_INTERVAL`](Self::DEFAULT_INTERVAL),
    /// [`DEFAULT_HISTORY`](Self::DEFAULT_HISTORY) of history, lists popped at the right end,
    /// no token, any `Host`.
    pub fn new(conn: RedisConnection) -> Self {
        Self {
            conn,
            interval: Self::DEFAULT_INTERVAL,
            history: Self::DEFAULT_HISTORY,
            list_side: ListSide::default(),
            queues: Vec::new(),
            token: None,
            local_addr: None,
            base_path: String::new(),
        }
    }

    /// Samples every `interval` (at least [`MIN_INTERVAL`](Self::MIN_INTERVAL)); the history
    /// grows to at least one interval.
    pub fn with_interval(mut self, interval: Duration) -> Result<Self, DashboardError> {
        if interval < Self::MIN_INTERVAL {
            return Err(DashboardError(format!(
                "the sampling interval must be at least {:?}",
                Self::MIN_INTERVAL
            )));
        }
        self.interval = interval;
        self.history = self.history.max(interval);
        Ok(self)
    }

    /// Keeps `history` of samples per queue for the charts (at least one interval).
    pub fn with_history(mut self, history: Duration) -> Result<Self, DashboardError> {
        if history < self.interval {
            return Err(DashboardError(
                "the history must be at least the sampling interval".to_owned(),
            ));
        }
        self.history = history;
        Ok(self)
    }

    /// The end of a list consumers pop: decides which message is the oldest.
    #[must_use]
    pub fn with_list_side(mut self, side: ListSide) -> Self {
        self.list_side = side;
        self
    }

    /// Tracks these queues from the start, besides those of the registry and the key space.
    #[must_use]
    pub fn with_queues(mut self, queues: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Requires this token: as `Authorization: Bearer`, or once as `?token=` or through the
    /// login form, which set a session cookie. An empty token requires nothing.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// The address the dashboard is served on: on a loopback address, only requests whose
    /// `Host` names it are served (a page whose domain is rebound to 127.0.0.1 gets 400).
    #[must_use]
    pub fn with_local_addr(mut self, addr: SocketAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// The path the router is [`nest`](Router::nest)ed under (`/ops/queues`, without a
    /// trailing `/`), which its pages' links, the script's requests and its redirects start
    /// with, and the session cookie's `Path` (so that the service it is nested in does not get
    /// it on its other routes). Letters, digits and `-._~/` only.
    pub fn with_base_path(mut self, path: &str) -> Result<Self, DashboardError> {
        self.base_path = base_path(path).ok_or_else(|| {
            DashboardError(format!(
                "invalid base path {path:?}: it starts with `/` and holds letters, digits and \
                 -._~/ only"
            ))
        })?;
        Ok(self)
    }

    /// Whether requests need a token.
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }
}

/// `path` without its trailing `/`s, when it is a valid base path (`""`: the root).
fn base_path(path: &str) -> Option<String> {
    let path = path.trim_end_matches('/');
    let valid = path.is_empty()
        || (path.starts_with('/')
            && !path.contains("//")
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b)));
    valid.then(|| path.to_owned())
}

/// Why a dashboard could not be set up.
#[derive(Debug)]
pub struct DashboardError(String);

impl fmt::Display for DashboardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DashboardError {}

/// The dashboard's routes (pages, JSON API, assets) behind its security gate, ready to serve,
/// to [`merge`](Router::merge) into a service of one's own, or to [`nest`](Router::nest) under
/// the path given to [`DashboardConfig::with_base_path`].
///
/// Starts the sampler on the current Tokio runtime (call it from within one); it stops once
/// the router and every clone of it are dropped.
///
/// # Errors
///
/// When the OS gives no random numbers for the CSRF token and session secret.
pub fn router(config: DashboardConfig) -> Result<Router, DashboardError> {
    let security = Security::new(config.local_addr, config.token).map_err(DashboardError)?;
    let prefix = config.conn.config().key_prefix().to_owned();
    let sampler = Arc::new(Sampler::new(
        config.conn.clone(),
        &prefix,
        config.list_side,
        config.interval,
        config.history,
        &config.queues,
    ));
    tokio::spawn(Sampler::run(Arc::downgrade(&sampler)));
    let app = Arc::new(AppState {
        redis: config.conn.config().masked_url(),
        conn: config.conn,
        sampler,
        security,
        prefix,
        base: config.base_path,
    });
    Ok(routes(app))
}

/// Every route, behind the security gate and the response headers.
fn routes(app: App) -> Router {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths() {
        assert_eq!(base_path("/ops/queues/").as_deref(), Some("/ops/queues"));
        assert_eq!(base_path("/").as_deref(), Some(""));
        assert_eq!(base_path("").as_deref(), Some(""));
        for bad in ["ops", "/a b", "/a\"b", "//evil.example", "/a//b", "/é"] {
            assert_eq!(base_path(bad), None, "{bad}");
        }
    }
}
