//! `pythia quickstart`: Pythia end to end in one command. Starts a throwaway redis-server (unless
//! given a URL), produces a batch of messages, drains it with a worker in each list mode, prints
//! what happened, and cleans up what it started.

use std::time::Instant;

use clap::Args;
use pythia::redis::{ListBroker, ListProducer, ReliableListBroker};
use pythia::{Broker, Message, Worker, WorkerError, WorkerRuntime};

use super::produce::numbered_body;
use crate::error::CliError;
use crate::local_redis::LocalRedis;

#[derive(Debug, Clone, Args)]
pub(crate) struct QuickstartArgs {
    /// Use this Redis instead of starting a throwaway local redis-server.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,

    /// Messages to produce and process.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub(crate) messages: u64,

    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,

    /// Messages processed at once.
    #[arg(long, short = 'c', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) concurrency: u32,

    /// Print one JSON object instead of text: redis (the masked URL), throwaway_redis,
    /// messages, size, produced[] {messages, seconds}, modes[] {mode, processed, acked,
    /// dead_lettered, seconds, rate_per_second}, left, ok.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Checks each body is the size the quick start produced; anything else is rejected.
struct CheckSize(usize);

impl Worker for CheckSize {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        if msg.body().len() == self.0 {
            Ok(())
        } else {
            Err(WorkerError::reject(format!(
                "expected {} bytes, got {}",
                self.0,
                msg.body().len()
            )))
        }
    }
}

pub(crate) async fn quickstart(args: QuickstartArgs) -> Result<(), CliError> {
    let (url, local) = LocalRedis::unless_given(args.redis_url.as_deref())
        .await
        .map_err(CliError::usage)?;
    let result = demo(&url, &args, local.is_some()).await;
    if let Some(l) = local {
        l.stop().await;
        if !args.json {
            crate::output::outln!("stopped the throwaway redis-server")?;
        }
    }
    result
}

/// `outln!` unless `--json` was given.
macro_rules! say {
    ($args:expr, $($fmt:tt)*) => {
        if $args.json { Ok(()) } else { crate::output::outln!($($fmt)*) }
    };
}

async fn demo(url: &str, args: &QuickstartArgs, local: bool) -> Result<(), CliError> {
    let conn = super::connect_url(url, "pythia").await?;
    say!(
        args,
        "Redis: {} ({})",
        conn.config().masked_url(),
        if local {
            "a throwaway redis-server this command started"
        } else {
            "given"
        }
    )?;
    let queue = format!("pythia-quickstart-{}", std::process::id());
    let mut total_ok = true;
    let mut produced = Vec::new();
    let mut modes = Vec::new();
    for mode in ["reliable-list", "list"] {
        let (n, secs) = produce(&conn, &queue, args).await?;
        produced.push(serde_json::json!({ "messages": n, "seconds": secs }));
        let summary = match mode {
            "reliable-list" => drain(ReliableListBroker::new(&conn, &queue), args).await?,
            _ => drain(ListBroker::new(&conn, &queue), args).await?,
        };
        let guarantee = if mode == "list" {
            "at-most-once: popped, then processed"
        } else {
            "at-least-once: acked only after the handler finished"
        };
        say!(
            args,
            "  {mode:<13} processed {} of {n} in {:.3}s = {:.0} msg/s ({guarantee})",
            summary.acked,
            summary.active.as_secs_f64(),
            summary.active_rate()
        )?;
        modes.push(serde_json::json!({
            "mode": mode,
            "processed": summary.processed(),
            "acked": summary.acked,
            "dead_lettered": summary.dead_lettered,
            "seconds": summary.active.as_secs_f64(),
            "rate_per_second": summary.active_rate(),
        }));
        total_ok &= summary.acked == n && summary.dead_lettered == 0;
    }
    let mut m = conn.manager();
    let left: u64 = redis::cmd("LLEN")
        .arg(&queue)
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("LLEN", e)))?;
    let ok = total_ok && left == 0;
    if args.json {
        let doc = serde_json::json!({
            "redis": conn.config().masked_url(),
            "throwaway_redis": local,
            "messages": args.messages,
            "size": args.size,
            "produced": produced,
            "modes": modes,
            "left": left,
            "ok": ok,
        });
        crate::output::outln!("{doc}")?;
    } else {
        crate::output::outln!("queue {queue:?} now holds {left} messages")?;
    }
    if ok {
        say!(
            args,
            "done: every message was processed exactly as produced"
        )?;
        say!(
            args,
            "metrics: this demo runs in-process and serves none; `pythia run --metrics-addr 0.0.0.0:9090` \
             (the default) serves /metrics, /healthz and /readyz"
        )?;
        Ok(())
    } else {
        Err(CliError::runtime("some messages were not processed"))
    }
}

/// Produces `--messages` messages; returns how many and the seconds it took.
async fn produce(
    conn: &pythia::redis::RedisConnection,
    queue: &str,
    args: &QuickstartArgs,
) -> Result<(u64, f64), CliError> {
    let producer = ListProducer::new(conn, queue);
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < args.messages {
        let n = (args.messages - sent).min(10_000);
        let batch: Vec<Message> = (sent..sent + n)
            .map(|i| Message::new(numbered_body(i, args.size)))
            .collect();
        producer
            .push_many(&batch)
            .await
            .map_err(CliError::runtime)?;
        sent += n;
    }
    let secs = started.elapsed().as_secs_f64();
    say!(
        args,
        "produced {sent} messages of {} bytes in {secs:.3}s = {:.0} msg/s",
        args.size,
        sent as f64 / secs.max(1e-9)
    )?;
    Ok((sent, secs))
}

async fn drain<B: Broker>(
    broker: B,
    args: &QuickstartArgs,
) -> Result<pythia::RunSummary, CliError> {
    WorkerRuntime::new(broker, CheckSize(args.size))
        .with_concurrency(args.concurrency as usize)
        .with_batch_size(1000)
        .with_burst(true)
        .run()
        .await
        .map_err(CliError::runtime)
}
