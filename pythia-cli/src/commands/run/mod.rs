//! `pythia run`: a worker over one queue (several: `run_queues`), with a built-in, `--exec`, `--exec-persistent` or
//! `--http` handler.

use std::io::Write;

use pythia::exporter::MetricsServer;
use pythia::redis::queues::CountingBroker;
use pythia::redis::{
    ListBroker, PubSubBroker, QueueGate, RedisConnection, ReliableListBroker, ShardedStreamBroker,
    StreamBroker,
};
use pythia::{
    Broker, CancellationToken, CircuitBreakerConfig, InProcessRetry, Message, ResilienceConfig,
    RetryPolicy, RuntimeError, Worker, WorkerError, WorkerRuntime, worker_fn,
};

mod args;

pub(crate) use self::args::{BuiltinHandler, DEFAULT_METRICS_ADDR, MetricsAddr, RunArgs};
use crate::cli::{BrokerKind, ConnectTimeout};
use crate::error::CliError;
use crate::exec::per_message::ExecWorker;
use crate::exec::persistent::PersistentExecWorker;
use crate::http_worker::HttpWorker;
use crate::output::HandlerStdout;

/// Prints each body on its own line. When stdout fails, the message goes back to the queue
/// and the worker stops at once: see [`HandlerStdout`].
struct PrintWorker {
    stdout: HandlerStdout,
}

impl Worker for PrintWorker {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        if !self.stdout.is_closed() {
            let mut out = std::io::stdout().lock();
            match out
                .write_all(msg.body())
                .and_then(|()| out.write_all(b"\n"))
            {
                Ok(()) => return Ok(()),
                Err(e) => self.stdout.failed_with(e),
            }
        }
        // The hard stop drops this future and hands the message back.
        std::future::pending().await
    }
}

pub(crate) async fn run(args: RunArgs) -> Result<(), CliError> {
    if args.metrics_addr != Some(MetricsAddr::Off) {
        // Before any broker or layer registers its metrics: handles made earlier record nowhere.
        pythia::exporter::install_recorder().map_err(CliError::runtime)?;
    }
    let qa = &args.queue;
    let several = crate::commands::run_queues::plan(qa, &args.weights)?;
    if several.is_some() {
        // Checked by the plan.
    } else if qa.broker != BrokerKind::Pubsub {
        qa.single()?;
    } else if qa.queue.iter().all(|q| q.trim().is_empty()) && qa.pattern.is_empty() {
        return Err(CliError::usage(
            "--queue (a channel) or --pattern is required for --broker pubsub",
        ));
    }
    if qa.broker == BrokerKind::Pubsub && args.rate_limit.is_some() {
        return Err(CliError::usage(
            "--rate-limit is not for --broker pubsub: a channel cannot be held back",
        ));
    }
    let sharded = match &several {
        Some(_) => None,
        None => qa.sharded()?,
    };
    if let Some(url) = &args.http {
        // A bad --http set-up (an unreadable CA file) is reported before Redis is waited for.
        http_worker(url, &args)?;
    }
    // Served while waiting for Redis too: /healthz answers (the process is alive, no restart
    // loop) and /readyz says not ready until the worker runs.
    let metrics = MetricsEndpoint::start(args.metrics_addr).await?;
    let metrics = metrics.as_ref().map(|m| &m.server);
    let conn = qa.redis.connect_or_wait(ConnectTimeout::Forever).await?;
    let mut args = args;
    if args.breaker_shared && args.breaker_failures > 0 {
        args.breaker_store = Some(pythia::redis::RedisCircuitStateStore::new(&conn));
    }
    let qa = &args.queue;
    if let Some(plan) = &several {
        return crate::commands::run_queues::run(&conn, plan, &args, metrics).await;
    }
    let side = qa.list_side.into();
    if let Some(queue) = sharded {
        let b = ShardedStreamBroker::new(&conn, &queue, &qa.group).with_start(qa.group_start);
        tracing::info!(
            consumer = b.consumer(),
            group = b.group(),
            shards = queue.shard_count(),
            "consumer name"
        );
        return with_handler(
            counted(&conn, gated(&conn, b, &args), &args),
            &args,
            metrics,
        )
        .await;
    }
    match qa.broker {
        BrokerKind::List => {
            let b = ListBroker::new(&conn, qa.single()?).with_side(side);
            with_handler(
                counted(&conn, gated(&conn, b, &args), &args),
                &args,
                metrics,
            )
            .await
        }
        BrokerKind::ReliableList => {
            let b = ReliableListBroker::new(&conn, qa.single()?).with_side(side);
            tracing::info!(consumer = b.consumer(), "consumer name");
            with_handler(
                counted(&conn, gated(&conn, b, &args), &args),
                &args,
                metrics,
            )
            .await
        }
        BrokerKind::Stream => {
            let b = StreamBroker::new(&conn, qa.single()?, &qa.group).with_start(qa.group_start);
            tracing::info!(consumer = b.consumer(), group = b.group(), "consumer name");
            with_handler(
                counted(&conn, gated(&conn, b, &args), &args),
                &args,
                metrics,
            )
            .await
        }
        BrokerKind::Pubsub => {
            let b = PubSubBroker::builder(&conn)
                .channels(qa.queue.iter().filter(|q| !q.trim().is_empty()).cloned())
                .patterns(qa.pattern.iter().cloned())
                .with_capacity(args.buffer as usize)
                .with_overflow(args.overflow)
                .subscribe()
                .await
                .map_err(CliError::usage)?;
            with_handler(counted(&conn, b, &args), &args, metrics).await
        }
    }
}

/// `broker` counting what it settles in the queue's daily counters of `pythia queues` and the
/// dashboard (no Redis command when `--no-counters`).
pub(super) fn counted<B: Broker>(
    conn: &RedisConnection,
    broker: B,
    args: &RunArgs,
) -> CountingBroker<B> {
    CountingBroker::new(broker, conn).with_counting(!args.no_counters)
}

/// `broker` behind the queue's gate: `pythia pause`, a handler's rate-limited throttle and
/// `--rate-limit` hold for every replica (one poll of Redis per 500 ms while fetching).
pub(super) fn gated<B: Broker>(conn: &RedisConnection, broker: B, args: &RunArgs) -> QueueGate<B> {
    let gate = QueueGate::new(conn, broker);
    match args.rate_limit {
        Some(limit) => {
            tracing::info!(%limit, "rate limit, shared by every replica of the queue");
            gate.with_rate_limit(limit)
        }
        None => gate,
    }
}

/// The `--http` worker (built twice for a run: once before connecting to Redis, to report a bad
/// set-up at once, and once to run; reading the system's roots twice costs milliseconds).
fn http_worker(url: &crate::http_worker::HttpUrl, args: &RunArgs) -> Result<HttpWorker, CliError> {
    HttpWorker::new(url.clone(), args.http_timeout, args.http_ca_file.as_deref())
        .map_err(CliError::usage)
}

/// The /metrics, /healthz and /readyz endpoint of `--metrics-addr`, served until dropped.
struct MetricsEndpoint {
    server: MetricsServer,
    stop: CancellationToken,
}

impl MetricsEndpoint {
    /// Binds and serves `addr` (`None`: the default address); `None` for `off`, and for the
    /// default address when its port is taken.
    async fn start(addr: Option<MetricsAddr>) -> Result<Option<Self>, CliError> {
        let server = match addr {
            Some(MetricsAddr::Off) => return Ok(None),
            Some(MetricsAddr::At(addr)) => {
                MetricsServer::bind(addr).await.map_err(CliError::usage)?
            }
            // A second worker on the same host finds the default port taken: it works without
            // an endpoint rather than not at all. An address somebody chose must be served.
            None => match MetricsServer::bind(DEFAULT_METRICS_ADDR).await {
                Ok(server) => server,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::warn!(
                        error = %e,
                        "the default metrics port is taken (another worker on this host?): \
                         running without /metrics, /healthz and /readyz; choose a port with \
                         --metrics-addr, or `off`"
                    );
                    return Ok(None);
                }
                Err(e) => return Err(CliError::usage(e)),
            },
        };
        let stop = CancellationToken::new();
        tokio::spawn(server.clone().serve(stop.clone()));
        Ok(Some(Self { server, stop }))
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(super) async fn with_handler<B: Broker>(
    broker: B,
    args: &RunArgs,
    metrics: Option<&MetricsServer>,
) -> Result<(), CliError> {
    if let Some(url) = &args.http {
        let worker = http_worker(url, args)?;
        return drive(broker, worker, args, None, metrics).await;
    }
    if let Some(cmd) = &args.exec_persistent {
        let children = args
            .exec_children
            .map_or_else(crate::exec::persistent::default_children, |n| n as usize);
        let worker = PersistentExecWorker::new(
            cmd.clone(),
            &args.pass_env,
            children,
            args.exec_in_flight as usize,
        );
        return drive(broker, worker, args, None, metrics).await;
    }
    let stdout = HandlerStdout::default();
    match (&args.exec, args.handler) {
        (Some(cmd), _) => {
            let worker = ExecWorker::new(cmd.clone(), &args.pass_env, stdout.clone());
            let run = drive(broker, worker, args, Some(stdout.stop_token()), metrics).await;
            stdout.result(run)
        }
        (None, BuiltinHandler::Print) => {
            let worker = PrintWorker {
                stdout: stdout.clone(),
            };
            let run = drive(broker, worker, args, Some(stdout.stop_token()), metrics).await;
            stdout.result(run)
        }
        (None, BuiltinHandler::Noop) => {
            drive(
                broker,
                worker_fn(|_m: Message| async { Ok(()) }),
                args,
                None,
                metrics,
            )
            .await
        }
    }
}

/// The resilience layers the flags ask for.
pub(crate) fn resilience(args: &RunArgs, queue: &str) -> ResilienceConfig {
    let mut cfg = ResilienceConfig::new();
    cfg = if args.timeout.is_zero() {
        cfg.without_timeout()
    } else {
        cfg.with_timeout(args.timeout)
    };
    if args.inprocess_retries > 0 {
        cfg = cfg
            .with_in_process_retry(InProcessRetry::new().with_max_retries(args.inprocess_retries));
    }
    if args.breaker_failures > 0 {
        let mut breaker = CircuitBreakerConfig::new()
            .with_name(queue)
            .with_consecutive_failures(args.breaker_failures)
            .with_cool_down(args.breaker_cooldown);
        if let Some(store) = &args.breaker_store {
            breaker = breaker.with_shared_state(store.clone());
        }
        cfg = cfg.with_circuit_breaker(breaker);
    }
    cfg
}

/// Runs `worker` over `broker` as the flags say; `hard_stop`, when given, stops it at once
/// (see [`WorkerRuntime::with_hard_stop`]); `metrics`' /readyz follows the runtime.
async fn drive<B: Broker, W: Worker>(
    broker: B,
    worker: W,
    args: &RunArgs,
    hard_stop: Option<CancellationToken>,
    metrics: Option<&MetricsServer>,
) -> Result<(), CliError> {
    let policy = RetryPolicy::default()
        .with_max_attempts(args.max_attempts)
        .with_initial_delay(args.retry_delay);
    let runtime = WorkerRuntime::new(broker, worker)
        .with_concurrency(args.concurrency as usize)
        .with_batch_size(args.batch_size as usize)
        .with_prefetch(args.prefetch as usize)
        .with_retry_policy(policy)
        .with_resilience(resilience(args, &args.queue.queue.join(",")))
        .with_shutdown_grace(args.shutdown_grace)
        .with_burst(args.burst);
    let runtime = match hard_stop {
        Some(token) => runtime.with_hard_stop(token),
        None => runtime,
    };
    if let Some(server) = metrics {
        server.watch(runtime.status());
    }
    let result = runtime.run().await;
    let summary = result.map_err(run_error)?;
    if args.json {
        let doc = serde_json::json!({
            "fetched": summary.fetched,
            "processed": summary.processed(),
            "acked": summary.acked,
            "retried": summary.retried,
            "dead_lettered": summary.dead_lettered,
            "released": summary.released,
            "unsettled": summary.unsettled,
            "panics": summary.panics,
            "elapsed_seconds": summary.elapsed.as_secs_f64(),
            "active_seconds": summary.active.as_secs_f64(),
            "rate_per_second": summary.rate(),
        });
        crate::output::outln!("{doc}")?;
    } else {
        crate::output::errln!("{summary}");
    }
    Ok(())
}

/// The exit code of a run that stopped on an error: 2 for a configuration error (a Redis key of
/// the wrong type: restarting will not help until it is fixed), 1 otherwise.
fn run_error(e: RuntimeError) -> CliError {
    if e.is_config() {
        CliError::usage(e)
    } else {
        CliError::runtime(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pythia::BrokerError;

    #[test]
    fn a_run_stopped_by_a_configuration_error_exits_2() {
        let wrong_type = RuntimeError::Broker(BrokerError::config("WRONGTYPE dead-letter key"));
        assert_eq!(run_error(wrong_type).code, 2);
        let other = RuntimeError::Broker(BrokerError::backend("ERR unknown"));
        assert_eq!(run_error(other).code, 1);
    }
}
