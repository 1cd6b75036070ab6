//! [`serve`]: an accept loop of hyper's HTTP/1 connections with bounds that axum's `serve` does
//! not set.
//!
//! * at most [`MAX_CONNECTIONS`] at once (more wait in the listen backlog);
//! * a request head must arrive within [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD`] bytes;
//! * a connection lives at most [`CONNECTION_LIFETIME`] (then closes after its current
//!   request), so an idle keep-alive connection cannot hold a slot for ever;
//! * request bodies and handlers are bounded by the router (body limit, request deadline).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 128;
/// Time a client gets to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (hyper's smallest allowed read buffer).
const MAX_HEAD: usize = 16 * 1024;
/// Longest a connection is kept.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Time a closing connection gets to finish its request.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// Serves `router` (the dashboard's, or any) on `listener` until `shutdown` completes: what
/// `pythia dashboard` runs. At most 128 connections at once (more wait in the listen
/// backlog); a request head must arrive within 10 s and fit in 16 KiB; a connection lives at
/// most a minute, then closes after its current request (30 s of grace). A service that mounts
/// the [`router`](crate::router) in its own server sets its own bounds.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = &mut shutdown => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("dashboard: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
            tokio::select! {
                _ = conn.as_mut() => {}
                () = tokio::time::sleep(CONNECTION_LIFETIME) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
                }
            }
        });
    }
}
