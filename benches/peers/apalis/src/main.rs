//! apalis 1.0 + apalis-redis 1.0 on the peers' workload (benches/peers/run.sh):
//!
//! * `apalis-peer preload URL N`: pushes N tasks whose argument is a 100-byte string
//!   (`push_bulk`, 10,000 at a time).
//! * `apalis-peer work URL N default|tuned`: one worker, a no-op handler, until N tasks are
//!   done; prints one JSON line: `{"processed":N,"seconds":S}`, S from the first task started to
//!   the N-th done. `default` is `WorkerBuilder` and `Config` as they come; `tuned` fetches 100
//!   tasks per poll (`Config::batch_size`) and runs up to 100 at once (`concurrency`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use apalis::prelude::*;
use apalis_redis::RedisStorage;

static DONE: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(0);
static FIRST: OnceLock<Instant> = OnceLock::new();

async fn noop(_task: String, wrk: WorkerContext) -> Result<(), BoxDynError> {
    FIRST.get_or_init(Instant::now);
    let n = DONE.fetch_add(1, Ordering::Relaxed) + 1;
    if n == TARGET.load(Ordering::Relaxed) {
        let seconds = FIRST.get().expect("set above").elapsed().as_secs_f64();
        println!("{{\"processed\":{n},\"seconds\":{seconds}}}");
        wrk.stop()?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxDynError> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: apalis-peer preload|work URL N [default|tuned]";
    let (cmd, url, n) = match &args[..] {
        [_, cmd, url, n, ..] => (cmd.as_str(), url.as_str(), n.parse::<u64>()?),
        _ => return Err(usage.into()),
    };
    let conn = apalis_redis::connect(url).await?;
    match (cmd, args.get(4).map(String::as_str)) {
        ("preload", _) => {
            let mut storage = RedisStorage::<String>::new(conn);
            let body = "x".repeat(100);
            let mut left = n;
            while left > 0 {
                let k = left.min(10_000);
                storage.push_bulk(vec![body.clone(); k as usize]).await?;
                left -= k;
            }
        }
        ("work", Some("default")) => {
            TARGET.store(n, Ordering::Relaxed);
            let storage = RedisStorage::<String>::new(conn);
            WorkerBuilder::new("peer")
                .backend(storage)
                .build(noop)
                .run()
                .await?;
        }
        ("work", Some("tuned")) => {
            TARGET.store(n, Ordering::Relaxed);
            let storage = RedisStorage::<String>::new(conn);
            // The storage's own config (its queue is named after the task type), batch changed.
            let config = storage.get_config().clone().batch_size(100);
            WorkerBuilder::new("peer")
                .backend(storage.with_config(config))
                .concurrency(100)
                .build(noop)
                .run()
                .await?;
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
