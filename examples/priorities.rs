//! Many queues in one worker: `critical`, `default` and `low` served by one runtime (one
//! concurrency budget, one shutdown), first in strict priority, then weighted 6:3:1.
//!
//! Feeds each of the three reliable lists with 200 jobs and drains them in strict priority:
//! every `critical` job starts before any `default` one, every `default` before any `low`. Then
//! feeds them again and drains them weighted: while every queue has work, about 60 % of the
//! jobs come from `critical`, 30 % from `default` and 10 % from `low`. Prints the order of the
//! first jobs of each run and the summaries.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example priorities

use std::sync::{Arc, Mutex};

use pythia::queues::QueueSet;
use pythia::redis::{ListProducer, RedisConfig, RedisConnection, ReliableListBroker};
use pythia::{Broker, Message, RunSummary, WorkerRuntime, worker_fn};

const QUEUES: [&str; 3] = ["example:critical", "example:default", "example:low"];

async fn feed(conn: &RedisConnection) -> Result<(), Box<dyn std::error::Error>> {
    for q in QUEUES {
        let jobs: Vec<Message> = (0..200).map(|i| Message::new(format!("{q} {i}"))).collect();
        ListProducer::new(conn, q).push_many(&jobs).await?;
    }
    Ok(())
}

/// Drains `set` in burst mode; returns the summary and the queue of each job in the order
/// started.
async fn drain<B: Broker>(
    set: QueueSet<B>,
) -> Result<(RunSummary, Vec<String>), Box<dyn std::error::Error>>
where
    B::Token: Clone,
{
    let order = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&order);
    let worker = worker_fn(move |msg: Message| {
        // The queue each message came from: per-message metrics and logs carry it too.
        let queue = msg
            .source()
            .name()
            .trim_start_matches("example:")
            .to_owned();
        log.lock().unwrap().push(queue);
        async { Ok(()) }
    });
    let summary = WorkerRuntime::new(set, worker)
        .with_concurrency(10)
        // One message per fetch, so that the split shows over a few hundred jobs.
        .with_batch_size(1)
        .with_burst(true)
        .run()
        .await?;
    let order = order.lock().unwrap().clone();
    Ok((summary, order))
}

fn shares(order: &[String]) -> String {
    let n = order.len().max(1) as f64;
    ["critical", "default", "low"]
        .iter()
        .map(|q| {
            let k = order.iter().filter(|o| o == q).count() as f64;
            format!("{q} {:.0}%", k / n * 100.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;

    feed(&conn).await?;
    let strict = QueueSet::strict(QUEUES.map(|q| ReliableListBroker::new(&conn, q)))?;
    let (summary, order) = drain(strict).await?;
    println!("strict, first 300 jobs: {}", shares(&order[..300]));
    println!("{summary}");

    feed(&conn).await?;
    let weighted = QueueSet::weighted([
        (ReliableListBroker::new(&conn, QUEUES[0]), 6),
        (ReliableListBroker::new(&conn, QUEUES[1]), 3),
        (ReliableListBroker::new(&conn, QUEUES[2]), 1),
    ])?;
    let (summary, order) = drain(weighted).await?;
    // `critical` (60 % of fetches) lasts about 330 jobs: the first 300 show the weights.
    println!("weighted, first 300 jobs: {}", shares(&order[..300]));
    println!("{summary}");
    Ok(())
}
