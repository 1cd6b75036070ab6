//! `pythia dashboard`: its arguments (`DashboardArgs`), and the `pythia-dashboard` crate's
//! router served by the binary with the crate's bounded accept loop until SIGTERM or Ctrl-C.
//! The arguments are checked here (their messages name the flags); everything else is the
//! crate's.

use std::time::Duration;

use clap::Args;
use pythia_dashboard::{DashboardConfig, router, serve};
use tokio::net::TcpListener;

use crate::cli::{RedisArgs, Side, parse_duration};
use crate::error::CliError;

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
Pages: / (every queue), /queues/<queue> (consumers and charts), /queues/<queue>/dlq (dead \
letters, with replay and delete after a confirmation page). Numbers and charts refresh every 2 s \
from the JSON API below; nothing is loaded from outside this server.

JSON API (<queue> percent-encoded; every response is JSON):
  GET  /api/overview               every queue: broker, depth (streams: lag of all groups), \
in_flight (streams: pending), scheduled, dead_letters, oldest_age_seconds, consumers, \
consumers_alive, net_drain_per_second, dead_lettered_per_second, error, history {t_ms, depth, \
in_flight, scheduled, dead_letters}; and circuit_breakers {shared_in_redis: false, note}
  GET  /api/queues/<queue>         the document of `pythia inspect --queue <queue> --json`
  GET  /api/queues/<queue>/history the samples kept in memory and the rates
  GET  /api/queues/<queue>/dlq     the document of `pythia dlq list --json` (?limit=50, \
?preview=200), each dead letter with body_binary and body_hex (the first bytes) as well
  GET  /api/csrf                   {csrf_token}
  POST /api/queues/<queue>/dlq/replay  body {\"ids\": [...]} or {\"all\": true}: {replayed, \
missing, unheard}
  POST /api/queues/<queue>/dlq/delete  body {\"ids\": [...]} or {\"all\": true}: {deleted}
Errors: {error} with 400 (bad request), 401 (no or wrong token), 403 (CSRF or Origin), 404 \
(unknown dead letter), 502 (Redis failed).

Security: every POST needs the header X-CSRF-Token (or the form field csrf) with this process's \
random CSRF token, and a browser's Origin or Referer must be this server (403 otherwise). With \
--token, every request needs `Authorization: Bearer <token>` or the session cookie that \
opening /?token=<token> (or the login form) sets (401 otherwise). On a loopback address only \
Host headers naming that address are served (no DNS rebinding). Another address than loopback \
requires --token. Responses carry Content-Security-Policy: default-src 'self' and \
X-Content-Type-Options: nosniff; message bodies and errors are shown HTML-escaped and cut, \
binary bodies as hex.

Rates are computed by this process from its samples (every --interval, kept for --history, lost \
on restart): net drain = decrease per second of depth + in flight + scheduled over the last \
minute (negative: the backlog grows; it is not the processing rate, which each worker's /metrics \
reports as pythia_messages_total); dead-lettered = increase per second of the dead letters. \
Queues are found by SCANning <prefix>:{*}:* and <prefix>:q:* every 10 s and by --queue; a list queue that never \
retried or dead-lettered anything leaves no key of Pythia's: name it with --queue.")]
pub(crate) struct DashboardArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Address to serve on. Loopback by default; any other address requires --token.
    #[arg(long, env = "PYTHIA_DASHBOARD_ADDR", default_value = "127.0.0.1:9191")]
    pub(crate) addr: std::net::SocketAddr,

    /// Require this token on every request: the header `Authorization: Bearer <token>`, or a
    /// session cookie set by opening /?token=<token> once (or the login form). Prefer the
    /// environment variable: a flag is visible to every user of the machine in `ps`.
    #[arg(long, env = "PYTHIA_DASHBOARD_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// Always show this queue (repeatable, or comma-separated), besides those found from
    /// Pythia's keys.
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE", value_delimiter = ',')]
    pub(crate) queue: Vec<String>,

    /// Which end of the list consumers pop: decides which message is the oldest, and where
    /// replayed dead letters are pushed (the other end, behind the backlog).
    #[arg(long, value_enum, env = "PYTHIA_LIST_SIDE", default_value_t = Side::Right)]
    pub(crate) list_side: Side,

    /// How often every queue is sampled for the charts and rates.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) interval: Duration,

    /// How long samples are kept in memory (the span of the charts; at most 10,000 samples
    /// per queue).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub(crate) history: Duration,
}

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
    let min: Duration = DashboardConfig::MIN_INTERVAL;
    if args.interval < min {
        return Err(CliError::usage(format!(
            "--interval must be at least {min:?}"
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
    let mut config = DashboardConfig::new(conn.clone())
        .with_interval(args.interval)
        .and_then(|c| c.with_history(args.history))
        .map_err(CliError::usage)?
        .with_list_side(args.list_side.into())
        .with_queues(&args.queue)
        .with_local_addr(local);
    if let Some(t) = token {
        config = config.with_token(t);
    }
    let requires_token = config.requires_token();
    let app = router(config).map_err(CliError::runtime)?;
    // One line on stdout, for people and for scripts that started it on port 0.
    crate::output::outln!(
        "pythia dashboard: serving http://{local}/ ({}, prefix {:?}){}",
        conn.config().masked_url(),
        args.redis.key_prefix,
        if requires_token {
            "; open it with ?token=<token> once"
        } else {
            ""
        }
    )?;
    serve(listener, app, shutdown_signal()).await;
    tracing::info!("dashboard stopped");
    Ok(())
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
