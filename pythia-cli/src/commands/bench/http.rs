//! The `http` scenario: the `--http` handler (hyper-util's pooled client, HTTP/1.1 keep-alive)
//! draining the reliable list into a local endpoint that answers `200` at once, and the bare
//! equivalent: the same client and the same requests in a plain loop of `--http-concurrency`
//! tasks, with no Redis and no framework.
//!
//! The endpoint is a hyper HTTP/1.1 server on a thread and current-thread runtime of its own,
//! inside the measured process: its CPU time and memory are in the figures of both runs, and
//! it competes for the same cores as the worker, as a sidecar on the same machine would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pythia::redis::{RedisConnection, ReliableListBroker};
use pythia::{Message, Worker};

use super::BenchChildArgs;
use super::child::{RunResult, drain};
use crate::commands::produce::numbered_body;
use crate::error::CliError;
use crate::http_worker::{HttpUrl, HttpWorker};

/// Generous: a request to the local endpoint takes well under a millisecond.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Framework: the reliable list through [`HttpWorker`].
pub(super) async fn framework(
    conn: &RedisConnection,
    args: &BenchChildArgs,
) -> Result<RunResult, CliError> {
    let endpoint = Endpoint::start()?;
    let worker = endpoint.worker()?;
    let r = drain(ReliableListBroker::new(conn, &args.queue), worker, args).await?;
    endpoint.check(r.processed)?;
    Ok(r)
}

/// Bare: `--messages` POSTs of numbered bodies through the same client, `--concurrency` at a
/// time, each task taking the next number until none is left.
pub(super) async fn bare(args: &BenchChildArgs) -> Result<RunResult, CliError> {
    let endpoint = Endpoint::start()?;
    let worker = Arc::new(endpoint.worker()?);
    // Built before the clock starts, as the framework run's are preloaded.
    let messages: Arc<Vec<Message>> = Arc::new(
        (0..args.messages)
            .map(|i| Message::new(numbered_body(i, args.size)))
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (worker, messages, next) = (worker.clone(), messages.clone(), next.clone());
        tasks.spawn(async move {
            let mut done = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(msg) = messages.get(i as usize) else {
                    return Ok::<_, String>(done);
                };
                worker
                    .process_message(msg)
                    .await
                    .map_err(|e| e.to_string())?;
                done += 1;
            }
        });
    }
    let mut processed = 0;
    while let Some(joined) = tasks.join_next().await {
        processed += joined
            .map_err(CliError::runtime)?
            .map_err(CliError::runtime)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    endpoint.check(processed)?;
    Ok(RunResult {
        processed,
        seconds,
        ..RunResult::default()
    })
}

/// A local HTTP/1.1 keep-alive server answering `200` with an empty body, counting requests.
struct Endpoint {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

impl Endpoint {
    fn start() -> Result<Self, CliError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(CliError::runtime)?;
        listener.set_nonblocking(true).map_err(CliError::runtime)?;
        let addr = listener.local_addr().map_err(CliError::runtime)?;
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CliError::runtime)?;
        // Ends with the process (one bench-child run).
        std::thread::Builder::new()
            .name("bench-http-endpoint".into())
            .spawn(move || rt.block_on(serve(listener, counter)))
            .map_err(CliError::runtime)?;
        Ok(Self { addr, requests })
    }

    fn worker(&self) -> Result<HttpWorker, CliError> {
        let url: HttpUrl = format!("http://{}/bench", self.addr)
            .parse()
            .map_err(CliError::runtime)?;
        HttpWorker::new(url, TIMEOUT, None).map_err(CliError::runtime)
    }

    /// Every processed message reached the endpoint exactly once.
    fn check(&self, processed: u64) -> Result<(), CliError> {
        let served = self.requests.load(Ordering::Relaxed);
        if served != processed {
            return Err(CliError::runtime(format!(
                "the endpoint served {served} requests for {processed} messages"
            )));
        }
        Ok(())
    }
}

async fn serve(listener: std::net::TcpListener, requests: Arc<AtomicU64>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        let requests = requests.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, requests.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn answer(
    req: hyper::Request<Incoming>,
    requests: Arc<AtomicU64>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    // Read the body, as a real endpoint would, before answering.
    let _ = req.into_body().collect().await;
    requests.fetch_add(1, Ordering::Relaxed);
    Ok(hyper::Response::new(Full::new(Bytes::new())))
}
