//! `pythia dashboard`: the `pythia-dashboard` crate's router, served by the binary with the
//! crate's bounded accept loop until SIGTERM or Ctrl-C. The arguments are checked here (their
//! messages name the flags); everything else is the crate's.

use std::time::Duration;

use pythia_dashboard::{DashboardConfig, router, serve};
use tokio::net::TcpListener;

use crate::cli::DashboardArgs;
use crate::error::CliError;

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
