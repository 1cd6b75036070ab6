//! What the server-side chaos scenarios do to a Redis server while a worker drains a queue
//! (`pythia-redis/tests/chaos_redis.rs` and the conformance suite's `server.rs`): the drain loop
//! that applies the chaos at points spread over its progress, killing every client connection,
//! and making the server stand still.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pythia_redis::RedisConnection;
use tokio::task::JoinHandle;

use crate::chaos::{GapWatch, query, within};

/// How long a drain may take before the test fails as stalled.
const DRAIN_DEADLINE: Duration = Duration::from_secs(90);

/// Applies `chaos(1..=points)` at `points` moments spread over a drain of `n` messages by its
/// progress (`done()`: deliveries so far), polling every 20 ms until `finished(applied)`; fails
/// the test with `stalled(applied)` when the drain takes more than 90 s. Returns the longest
/// time progress stood still (a stall shows there).
pub async fn drain_with_chaos<C, CF, F, FF>(
    n: usize,
    points: usize,
    done: impl Fn() -> u64,
    mut chaos: C,
    mut finished: F,
    stalled: impl Fn(usize) -> String,
) -> Duration
where
    C: FnMut(usize) -> CF,
    CF: Future<Output = ()>,
    F: FnMut(usize) -> FF,
    FF: Future<Output = bool>,
{
    let mut gaps = GapWatch::new(0);
    let mut applied = 0;
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let done = done();
        gaps.observe(done);
        if applied < points && done as usize >= n * (applied + 1) / (points + 1) {
            applied += 1;
            chaos(applied).await;
            continue;
        }
        if finished(applied).await {
            break;
        }
        assert!(Instant::now() < deadline, "{}", stalled(applied));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gaps.longest()
}

/// Kills every normal client connection (`CLIENT KILL TYPE normal`) at each [`kill`](Self::kill),
/// counting them; its own admin connection survives (`SKIPME yes` is the default).
#[derive(Clone)]
pub struct ClientKiller {
    admin: RedisConnection,
    killed: Arc<Mutex<i64>>,
}

impl ClientKiller {
    /// Kills through `admin`.
    pub fn new(admin: &RedisConnection) -> Self {
        Self {
            admin: admin.clone(),
            killed: Arc::default(),
        }
    }

    /// One round of kills.
    pub fn kill(&self) -> impl Future<Output = ()> + use<> {
        let this = self.clone();
        async move {
            let k: i64 = query(&this.admin, &["CLIENT", "KILL", "TYPE", "normal"]).await;
            *this.killed.lock().unwrap() += k;
        }
    }

    /// Connections killed so far.
    pub fn killed(&self) -> i64 {
        *self.killed.lock().unwrap()
    }
}

/// Makes the server stand still for 2 s: `CLIENT PAUSE 2000 ALL` at event 1, `DEBUG SLEEP 2`
/// (the whole server blocked; the server needs `--enable-debug-command yes`) at any other.
/// `DEBUG SLEEP` blocks its own caller too, so it runs aside; [`finish`](Self::finish) waits
/// for it.
#[derive(Clone)]
pub struct ServerPauses {
    admin: RedisConnection,
    sleeper: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl ServerPauses {
    /// Pauses through `admin`.
    pub fn new(admin: &RedisConnection) -> Self {
        Self {
            admin: admin.clone(),
            sleeper: Arc::default(),
        }
    }

    /// The pause of `event` (1: `CLIENT PAUSE`, otherwise `DEBUG SLEEP`).
    pub fn pause(&self, event: usize) -> impl Future<Output = ()> + use<> {
        let this = self.clone();
        async move {
            if event == 1 {
                let () = query(&this.admin, &["CLIENT", "PAUSE", "2000", "ALL"]).await;
            } else {
                let admin = this.admin.clone();
                *this.sleeper.lock().unwrap() = Some(tokio::spawn(async move {
                    let () = query(&admin, &["DEBUG", "SLEEP", "2"]).await;
                }));
            }
        }
    }

    /// Waits for a `DEBUG SLEEP` started aside to return.
    pub async fn finish(&self) {
        let debug_sleep = self.sleeper.lock().unwrap().take();
        if let Some(h) = debug_sleep {
            within(10, "DEBUG SLEEP", h).await.unwrap();
        }
    }
}
