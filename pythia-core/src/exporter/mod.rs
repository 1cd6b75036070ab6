//! The worker's HTTP endpoint for Kubernetes and Prometheus (feature `exporter`):
//!
//! * `GET /metrics` — every metric recorded through the [`metrics`] facade, in the Prometheus
//!   text format (Pythia's own `pythia_*` metrics and any the user records).
//! * `GET /healthz` — 200 while the process is alive and serving (liveness probe).
//! * `GET /readyz` — 200 while every watched runtime is running, reaching its broker, and its
//!   consume loop made progress within the stall limit; 503 otherwise, with the reason
//!   (readiness probe).
//!
//! Bind the server (or call [`install_recorder`]) **before** building brokers, layers and the
//! runtime: metric handles created before the recorder is installed record nowhere.
//!
//! ```no_run
//! use pythia_core::exporter::MetricsServer;
//! use pythia_core::{worker_fn, CancellationToken, MemoryBroker, Message, WorkerRuntime};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let server = MetricsServer::bind("0.0.0.0:9090".parse().unwrap()).await?;
//! let runtime = WorkerRuntime::new(MemoryBroker::new("jobs"), worker_fn(|_m: Message| async { Ok(()) }));
//! server.watch(runtime.status());
//! let stop = CancellationToken::new();
//! tokio::spawn(server.serve(stop.clone()));
//! runtime.run().await.unwrap();
//! stop.cancel();
//! # Ok(()) }
//! ```

mod http;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::{RuntimeState, RuntimeStatus};

/// Buckets of every `_seconds` histogram: 0.5 ms to 60 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Buckets of the fetch batch size histogram.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// Default time without progress after which `/readyz` fails: 60 s.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(60);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle) and
/// describes Pythia's metrics. Fails if another `metrics` recorder is already installed.
pub fn install_recorder() -> Result<PrometheusHandle, std::io::Error> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(crate::metrics::FETCH_BATCH_SIZE.into()),
                BATCH_BUCKETS,
            )
        })
        .map_err(std::io::Error::other)?;
    let handle = HANDLE.get_or_init(|| {
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will be empty");
        }
        crate::metrics::describe();
        handle
    });
    Ok(handle.clone())
}

/// The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct MetricsServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    listener: Mutex<Option<TcpListener>>,
    local_addr: SocketAddr,
    handle: PrometheusHandle,
    watched: Mutex<Vec<RuntimeStatus>>,
    stall_limit: Mutex<Duration>,
}

impl MetricsServer {
    /// Installs the recorder (see [`install_recorder`]) and binds `addr` (port 0 picks a free
    /// port; see [`local_addr`](Self::local_addr)).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let handle = install_recorder()?;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} for /metrics: {e}"),
            )
        })?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            inner: Arc::new(Inner {
                listener: Mutex::new(Some(listener)),
                local_addr,
                handle,
                watched: Mutex::new(Vec::new()),
                stall_limit: Mutex::new(DEFAULT_STALL_LIMIT),
            }),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Makes `/readyz` depend on this runtime too.
    pub fn watch(&self, status: RuntimeStatus) {
        self.inner
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(status);
    }

    /// Time without progress after which `/readyz` fails (default [`DEFAULT_STALL_LIMIT`]).
    pub fn set_stall_limit(&self, limit: Duration) {
        *self
            .inner
            .stall_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = limit;
    }

    /// The Prometheus text exposition of every metric now.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// `Ok` when every watched runtime is ready, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let limit = *self
            .inner
            .stall_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
        if watched.is_empty() {
            return Err("no worker runtime registered yet".into());
        }
        for s in watched.iter() {
            if s.state() != RuntimeState::Running {
                return Err(format!("worker is {:?}", s.state()));
            }
            if !s.broker_ok() {
                return Err("broker unreachable".into());
            }
            if s.since_progress() > limit {
                return Err(format!(
                    "no progress for {:?} (limit {limit:?})",
                    s.since_progress()
                ));
            }
        }
        Ok(())
    }

    /// Serves requests until `shutdown` is cancelled. Can be called once.
    pub async fn serve(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| std::io::Error::other("MetricsServer::serve called twice"))?;
        tracing::info!(addr = %self.inner.local_addr, "serving /metrics, /healthz and /readyz");
        let mut upkeep = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = upkeep.tick() => self.inner.handle.run_upkeep(),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let me = self.clone();
                        tokio::spawn(async move { http::handle(stream, &me).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed on the metrics endpoint");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }
}
