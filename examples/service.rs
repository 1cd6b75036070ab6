//! A long-running worker service: the shape of a production worker binary, and what
//! `deploy/Dockerfile.worker` builds by default. It consumes a reliable list until SIGTERM or
//! Ctrl-C (in-flight jobs finish, the rest stay queued) and serves `/metrics`, `/healthz` and
//! `/readyz` for Prometheus and the Kubernetes probes of `deploy/k8s/deployment.yaml`.
//!
//! Settings from the environment: `REDIS_URL` (default redis://127.0.0.1:6379), `PYTHIA_QUEUE`
//! (default `jobs`), `PYTHIA_METRICS_ADDR` (default 0.0.0.0:9090). Replace `Handler` with your
//! own work.
//!
//! Run, then feed it (`pythia produce --queue jobs --count 1000`) and stop it with Ctrl-C:
//!
//!     cargo run -p pythia-examples --example service

use std::net::SocketAddr;

use pythia::exporter::MetricsServer;
use pythia::redis::{RedisConfig, RedisConnection, ReliableListBroker};
use pythia::{CancellationToken, Message, Worker, WorkerError, WorkerRuntime};

/// Your handler: here it logs each job.
struct Handler;

impl Worker for Handler {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let body = msg.body_str().map_err(WorkerError::reject)?; // not UTF-8: poison
        tracing::info!(id = %msg.id(), len = body.len(), "job done");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let queue = std::env::var("PYTHIA_QUEUE").unwrap_or_else(|_| "jobs".to_owned());
    let addr: SocketAddr = std::env::var("PYTHIA_METRICS_ADDR")
        .unwrap_or_else(|_| "0.0.0.0:9090".to_owned())
        .parse()?;
    // Bound before anything registers a metric, and before Redis is reached: /healthz answers
    // while the worker waits for its Redis, /readyz once the worker runs.
    let metrics = MetricsServer::bind(addr).await?;
    let stop_metrics = CancellationToken::new();
    tokio::spawn(metrics.clone().serve(stop_metrics.clone()));

    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
    let runtime =
        WorkerRuntime::new(ReliableListBroker::new(&conn, &queue), Handler).with_concurrency(64);
    metrics.watch(runtime.status());
    let summary = runtime.run().await?; // until SIGTERM / Ctrl-C
    stop_metrics.cancel();
    println!("{summary}");
    Ok(())
}
