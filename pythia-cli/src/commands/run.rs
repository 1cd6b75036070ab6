//! `pythia run`: a worker over one queue, with a built-in or `--exec` handler.

use std::io::Write;

use pythia::redis::{ListBroker, ReliableListBroker};
use pythia::{Broker, Message, RetryPolicy, Worker, WorkerError, WorkerRuntime, worker_fn};

use crate::cli::{BrokerKind, BuiltinHandler, RunArgs};
use crate::error::CliError;
use crate::exec_worker::ExecWorker;

/// Prints each body on its own line.
struct PrintWorker;

impl Worker for PrintWorker {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let mut out = std::io::stdout().lock();
        out.write_all(msg.body())?;
        out.write_all(b"\n")?;
        Ok(())
    }
}

pub(crate) async fn run(args: RunArgs) -> Result<(), CliError> {
    let conn = super::connect(&args.queue).await?;
    let q = &args.queue.queue;
    let side = args.queue.list_side.into();
    match args.queue.broker {
        BrokerKind::List => with_handler(ListBroker::new(&conn, q).with_side(side), &args).await,
        BrokerKind::ReliableList => {
            let b = ReliableListBroker::new(&conn, q).with_side(side);
            tracing::info!(consumer = b.consumer(), "consumer name");
            with_handler(b, &args).await
        }
    }
}

async fn with_handler<B: Broker>(broker: B, args: &RunArgs) -> Result<(), CliError> {
    match (&args.exec, args.handler) {
        (Some(cmd), _) => drive(broker, ExecWorker::new(cmd.clone()), args).await,
        (None, BuiltinHandler::Print) => drive(broker, PrintWorker, args).await,
        (None, BuiltinHandler::Noop) => {
            drive(broker, worker_fn(|_m: Message| async { Ok(()) }), args).await
        }
    }
}

async fn drive<B: Broker, W: Worker>(broker: B, worker: W, args: &RunArgs) -> Result<(), CliError> {
    let policy = RetryPolicy::default()
        .with_max_attempts(args.max_attempts)
        .with_initial_delay(args.retry_delay);
    let summary = WorkerRuntime::new(broker, worker)
        .with_concurrency(args.concurrency as usize)
        .with_batch_size(args.batch_size as usize)
        .with_retry_policy(policy)
        .with_shutdown_grace(args.shutdown_grace)
        .with_burst(args.burst)
        .run()
        .await
        .map_err(CliError::runtime)?;
    eprintln!("{summary}");
    Ok(())
}
