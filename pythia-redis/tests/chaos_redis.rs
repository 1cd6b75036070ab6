//! Chaos, server side: the Redis server restarted mid-run (with AOF), its connections killed
//! over and over (`CLIENT KILL TYPE normal`, `CLIENT KILL TYPE pubsub`), and the server
//! paused (`CLIENT PAUSE 2000 ALL`, `DEBUG SLEEP 2`) while workers drain. Each scenario prints
//! one `CHAOS …` line with its figures (see RELIABILITY.md):
//!
//! ```sh
//! cargo test -p pythia-redis --test chaos_redis -- --nocapture
//! ```
//!
//! The workers run in this process and count what they processed in memory, so recording never
//! depends on the server being up. Every wait is bounded: a worker that stalls fails the test.

use pythia_test_support as support;
use pythia_test_support::chaos;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos::{Tally, lost_and_duplicated, pythia_keys, query, report, within};
use pythia_core::{
    Broker, CancellationToken, Message, RunSummary, RuntimeError, RuntimeStatus, WorkerRuntime,
};
use pythia_redis::{
    GroupStart, ListBroker, ListProducer, PubSubBroker, Publisher, RedisConnection,
    ReliableListBroker, StreamBroker, StreamProducer,
};
use redis::Value;
use support::server_chaos::{ClientKiller, ServerPauses, drain_with_chaos};
use support::{RedisServer, burst, eventually};
use tokio::task::JoinHandle;

const QUEUE: &str = "chaos";
const GROUP: &str = "g";
const CONCURRENCY: usize = 16;
const BATCH: usize = 64;
/// What `/readyz` uses: ready means running, Redis reachable, and progress within this.
const STALL_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Reliable,
    Stream,
    List,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Reliable => "reliable",
            Self::Stream => "stream",
            Self::List => "list",
        }
    }
}

/// A worker runtime running in this process.
struct Running {
    status: RuntimeStatus,
    stop: CancellationToken,
    handle: JoinHandle<Result<RunSummary, RuntimeError>>,
}

impl Running {
    async fn finish(self) -> RunSummary {
        assert!(
            !self.handle.is_finished(),
            "the runtime ended by itself during the chaos"
        );
        self.stop.cancel();
        within(30, "the runtime to stop", self.handle)
            .await
            .unwrap()
            .expect("the runtime ends without error")
    }
}

fn spawn_runtime<B: Broker>(rt: WorkerRuntime<B>) -> Running {
    let rt = rt
        .with_signal_handling(false)
        .with_concurrency(CONCURRENCY)
        .with_batch_size(BATCH)
        .with_stats_interval(None);
    Running {
        status: rt.status(),
        stop: rt.cancellation_token(),
        handle: tokio::spawn(rt.run()),
    }
}

fn start(kind: Kind, conn: &RedisConnection, tally: &Tally) -> Running {
    let maint = Duration::from_millis(100);
    let ttl = Duration::from_millis(600);
    match kind {
        Kind::Reliable => spawn_runtime(WorkerRuntime::new(
            ReliableListBroker::new(conn, QUEUE)
                .with_maintenance_interval(maint)
                .with_heartbeat_ttl(ttl),
            tally.clone(),
        )),
        Kind::Stream => spawn_runtime(WorkerRuntime::new(
            StreamBroker::new(conn, QUEUE, GROUP)
                .with_start(GroupStart::Beginning)
                .with_maintenance_interval(maint)
                .with_heartbeat_ttl(ttl),
            tally.clone(),
        )),
        Kind::List => spawn_runtime(WorkerRuntime::new(
            ListBroker::new(conn, QUEUE),
            tally.clone(),
        )),
    }
}

async fn produce(
    kind: Kind,
    conn: &RedisConnection,
    msgs: &[Message],
) -> Result<(), pythia_core::BrokerError> {
    match kind {
        Kind::Stream => StreamProducer::new(conn, QUEUE)
            .add_many(msgs)
            .await
            .map(drop),
        _ => ListProducer::new(conn, QUEUE)
            .push_many(msgs)
            .await
            .map(drop),
    }
}

fn numbered(from: usize, n: usize) -> Vec<Message> {
    (from..from + n)
        .map(|i| Message::new(format!("{i}")))
        .collect()
}

async fn prepare(kind: Kind, conn: &RedisConnection) {
    if kind == Kind::Stream {
        StreamBroker::new(conn, QUEUE, GROUP)
            .with_start(GroupStart::Beginning)
            .ensure_group()
            .await
            .unwrap();
    }
}

/// Nothing of Pythia's left once the worker stopped cleanly.
async fn assert_no_state_left(kind: Kind, conn: &RedisConnection) {
    let keys = pythia_keys(conn, QUEUE).await;
    assert!(keys.is_empty(), "{}: left behind: {keys:?}", kind.name());
    if kind == Kind::Stream {
        let v: Value = query(conn, &["XPENDING", QUEUE, GROUP]).await;
        let Value::Array(parts) = v else {
            panic!("unexpected XPENDING reply")
        };
        assert_eq!(parts.first(), Some(&Value::Int(0)), "stream PEL not empty");
    } else {
        let len: i64 = query(conn, &["LLEN", QUEUE]).await;
        assert_eq!(len, 0);
    }
}

/// A producer task that adds batches of 100 numbered messages every 20 ms until stopped. A
/// batch that fails (Redis is down) is sent again, same messages, until Redis takes it; only
/// then are its ids counted as produced. Returns every produced id, and how many messages were
/// sent more than once (a batch Redis applied whose reply died with the server is in the queue
/// twice: duplicates made by the producer, not by the worker).
fn spawn_producer(
    kind: Kind,
    conn: &RedisConnection,
    stop: CancellationToken,
) -> JoinHandle<(Vec<String>, usize)> {
    let conn = conn.clone();
    tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut resent = 0;
        let mut next = 0;
        while !stop.is_cancelled() {
            let batch = numbered(next, 100);
            next += 100;
            let deadline = Instant::now() + Duration::from_secs(30);
            while let Err(e) = produce(kind, &conn, &batch).await {
                assert!(Instant::now() < deadline, "producing kept failing: {e}");
                resent += batch.len();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ids.extend(batch.iter().map(|m| m.id().to_owned()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ids, resent)
    })
}

/// Scenario 3: the server, persisting with `appendfsync always`, is killed and started again
/// while a producer and a worker run. The worker notices (not ready), reconnects by itself once
/// the server is back (ready again, processing resumes: the recovery time), and in the end
/// every message Redis acknowledged to the producer was processed.
async fn redis_restart_mid_run(kind: Kind) {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let conn = server.connect().await;
    prepare(kind, &conn).await;
    let tally = Tally::with_delay(Duration::from_millis(1));
    let worker = start(kind, &conn, &tally);
    let stop_producing = CancellationToken::new();
    let producer = spawn_producer(kind, &conn, stop_producing.clone());
    eventually(Duration::from_secs(20), "2000 processed", || async {
        tally.total() >= 2000
    })
    .await;

    let down = Instant::now();
    server.stop();
    eventually(
        Duration::from_secs(10),
        "the worker to report not ready (/readyz 503)",
        || async { !worker.status.is_ready(STALL_LIMIT) },
    )
    .await;
    let noticed = down.elapsed();
    // Keep the server down a little longer: reconnect attempts fail and back off.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!worker.status.is_ready(STALL_LIMIT));
    server.restart();
    let up = Instant::now();
    let before = tally.total();
    eventually(
        Duration::from_secs(20),
        "processing to resume and the worker to be ready (/readyz 200)",
        || async { tally.total() > before + 100 && worker.status.is_ready(STALL_LIMIT) },
    )
    .await;
    let recovery = up.elapsed();

    // Run on a while after the restart, then drain what was produced.
    let resumed_at = tally.total();
    eventually(Duration::from_secs(20), "2000 more processed", || async {
        tally.total() >= resumed_at + 2000
    })
    .await;
    stop_producing.cancel();
    let (produced, resent) = within(40, "the producer", producer).await.unwrap();
    let wanted: HashSet<&String> = produced.iter().collect();
    if kind == Kind::List {
        eventually(Duration::from_secs(20), "the list to be empty", || async {
            let len: i64 = query(&conn, &["LLEN", QUEUE]).await;
            len == 0
        })
        .await;
    } else {
        eventually(
            Duration::from_secs(30),
            "every produced message processed",
            || async {
                let counts = tally.counts();
                wanted.iter().all(|id| counts.contains_key(*id))
            },
        )
        .await;
    }
    let summary = worker.finish().await;
    if kind == Kind::List {
        drain_released(&conn, &tally).await;
    }
    let (lost, duplicated) = lost_and_duplicated(&produced, &tally.counts());
    report(
        "redis-restart",
        kind.name(),
        produced.len(),
        lost,
        duplicated,
        Some(recovery),
        &format!(
            "aof=always outage_noticed={:.2}s producer_resent={resent} acked={} unsettled={}",
            noticed.as_secs_f64(),
            summary.acked,
            summary.unsettled
        ),
    );
    if kind == Kind::List {
        // At-most-once: a popped batch whose reply died with the server is lost, nothing more.
        assert!(lost <= BATCH + 1, "list lost {lost}, more than one batch");
    } else {
        assert_eq!(lost, 0, "{}: acknowledged messages lost", kind.name());
    }
    assert!(
        recovery < Duration::from_secs(10),
        "took {recovery:?} to resume"
    );
    assert_no_state_left(kind, &conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_reliable_list() {
    redis_restart_mid_run(Kind::Reliable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_stream() {
    redis_restart_mid_run(Kind::Stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_list() {
    redis_restart_mid_run(Kind::List).await;
}

/// Drains `n` preloaded messages while `chaos` is applied at `points` moments, spread over the
/// drain by progress. Returns the tally, the summary, and the longest time the worker made no
/// progress (a stall shows there).
async fn drain_under<F, Fut>(
    kind: Kind,
    server: &RedisServer,
    conn: &RedisConnection,
    n: usize,
    points: usize,
    chaos: F,
) -> (Tally, RunSummary, Duration, Vec<String>)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    prepare(kind, conn).await;
    let msgs = numbered(0, n);
    produce(kind, conn, &msgs).await.unwrap();
    let ids: Vec<String> = msgs.iter().map(|m| m.id().to_owned()).collect();
    drop(msgs);
    let tally = Tally::with_delay(Duration::from_millis(1));
    let worker = start(kind, conn, &tally);
    let longest_gap = drain_with_chaos(
        n,
        points,
        || tally.total(),
        chaos,
        |applied| {
            let (tally, status) = (&tally, &worker.status);
            async move {
                if kind == Kind::List {
                    let len: i64 = query(conn, &["LLEN", QUEUE]).await;
                    len == 0 && status.in_flight() == 0 && applied == points
                } else {
                    tally.distinct() == n
                }
            }
        },
        |applied| {
            format!(
                "{}: stalled at {} of {n} after {applied} chaos events (server {})",
                kind.name(),
                tally.distinct(),
                server.port()
            )
        },
    )
    .await;
    let summary = worker.finish().await;
    if kind == Kind::List {
        drain_released(conn, &tally).await;
    }
    (tally, summary, longest_gap, ids)
}

/// The list check above can see an empty queue while a pop's reply is still on its way to the
/// worker; the worker, stopping, then puts that batch back at the front (graceful shutdown
/// releases what it has not started). Those messages are not lost: a second worker in burst
/// mode drains them into the same tally.
async fn drain_released(conn: &RedisConnection, tally: &Tally) {
    let left: i64 = query(conn, &["LLEN", QUEUE]).await;
    if left == 0 {
        return;
    }
    let rt = burst(ListBroker::new(conn, QUEUE), tally.clone())
        .with_concurrency(CONCURRENCY)
        .with_batch_size(BATCH)
        .with_stats_interval(None);
    let summary = within(30, "the released messages to drain", rt.run())
        .await
        .expect("the burst runtime ends without error");
    println!(
        "released at shutdown and drained again: {left} (fetched {})",
        summary.fetched
    );
}

/// Scenario 4a: `CLIENT KILL TYPE normal` ten times while draining: every connection of the
/// worker (shared, blocking) dies at a random point of its work.
async fn client_kill_while_draining(kind: Kind) {
    let server = RedisServer::start();
    let conn = server.connect().await;
    // The killer's own connection survives its CLIENT KILL (SKIPME yes).
    let admin = server.connect().await;
    let n = 20_000;
    let kills = 10;
    let killer = ClientKiller::new(&admin);
    let (tally, summary, longest_gap, ids) =
        drain_under(kind, &server, &conn, n, kills, |_| killer.kill()).await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &tally.counts());
    let connections = killer.killed();
    report(
        "client-kill",
        kind.name(),
        n,
        lost,
        duplicated,
        Some(longest_gap),
        &format!(
            "kills={kills} connections_killed={connections} acked={} unsettled={}",
            summary.acked, summary.unsettled
        ),
    );
    assert!(connections >= kills as i64, "the kills hit nothing");
    if kind == Kind::List {
        // At-most-once: a pop whose reply dies with the connection loses that batch.
        assert!(
            lost <= kills * (BATCH + 1),
            "list lost {lost}, more than a batch per kill"
        );
    } else {
        assert_eq!(lost, 0, "{}: lost messages", kind.name());
    }
    assert!(
        longest_gap < Duration::from_secs(10),
        "stood still for {longest_gap:?}"
    );
    assert_no_state_left(kind, &conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_while_draining_list() {
    client_kill_while_draining(Kind::List).await;
}

/// Scenario 4b: the server stops answering for 2 s, twice: `CLIENT PAUSE 2000 ALL`, then
/// `DEBUG SLEEP 2` (the whole server blocked). The worker's reply timeout is 1 s, shorter than
/// the pause, so replies are given up on while the server still executes the commands.
async fn server_paused_while_draining(kind: Kind) {
    let server = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let conn = RedisConnection::connect(
        server
            .config()
            .with_response_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let admin = server.connect().await;
    let n = 20_000;
    let pauses = ServerPauses::new(&admin);
    let (tally, summary, longest_gap, ids) =
        drain_under(kind, &server, &conn, n, 2, |event| pauses.pause(event)).await;
    pauses.finish().await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &tally.counts());
    report(
        "server-pause",
        kind.name(),
        n,
        lost,
        duplicated,
        Some(longest_gap),
        &format!(
            "pauses=CLIENT_PAUSE_2000_ALL+DEBUG_SLEEP_2 reply_timeout=1s acked={} unsettled={}",
            summary.acked, summary.unsettled
        ),
    );
    if kind == Kind::List {
        assert!(lost <= 2 * (BATCH + 1), "list lost {lost}");
    } else {
        assert_eq!(lost, 0, "{}: lost messages", kind.name());
    }
    assert!(
        longest_gap < Duration::from_secs(8),
        "stood still for {longest_gap:?} after a 2 s pause"
    );
    assert_no_state_left(kind, &conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_paused_while_draining_list() {
    server_paused_while_draining(Kind::List).await;
}

/// Scenario 4c, pub/sub: `CLIENT KILL TYPE pubsub` eight times while a publisher publishes
/// continuously. Pub/sub is at-most-once: what is published while the subscription is down is
/// lost, as documented. What it must do is never stall: after each kill it resubscribes by
/// itself (the recovery time) and receives what is published from then on, and it never
/// delivers a message twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_pubsub_never_stalls() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let admin = server.connect().await;
    let broker = Arc::new(
        PubSubBroker::builder(&conn)
            .channel("chaos.c")
            .with_ping_interval(Duration::from_millis(200))
            .subscribe()
            .await
            .unwrap(),
    );
    let tally = Tally::default();
    let worker = spawn_runtime(WorkerRuntime::<PubSubBroker>::new(
        Arc::clone(&broker),
        tally.clone(),
    ));
    let publisher = Publisher::new(&admin, "chaos.c");
    let mut published: Vec<String> = Vec::new();
    let mut next = 0;
    let mut publish = async |published: &mut Vec<String>, count: usize| {
        for _ in 0..count {
            let m = Message::new(format!("{next}"));
            next += 1;
            if publisher.publish(&m).await.is_ok() {
                published.push(m.id().to_owned());
            }
        }
    };
    let kills = 8;
    let mut recovery = Duration::ZERO;
    for k in 1..=kills {
        publish(&mut published, 200).await;
        let killed: i64 = query(&admin, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
        assert_eq!(killed, 1, "kill {k}: one subscriber connection");
        let t = Instant::now();
        eventually(Duration::from_secs(10), "resubscribed", || async {
            broker.reconnects() == k && broker.is_connected()
        })
        .await;
        recovery = recovery.max(t.elapsed());
        // Received from the new subscription: publish until one arrives.
        let before = tally.total();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tally.total() == before {
            assert!(
                Instant::now() < deadline,
                "kill {k}: nothing received after resubscribing"
            );
            publish(&mut published, 10).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // After the last kill: everything published reaches the worker.
    let tail_start = published.len();
    publish(&mut published, 500).await;
    let tail: Vec<String> = published[tail_start..].to_vec();
    eventually(Duration::from_secs(10), "the last 500 received", || async {
        let counts = tally.counts();
        tail.iter().all(|id| counts.contains_key(id))
    })
    .await;
    let summary = worker.finish().await;
    let (lost, duplicated) = lost_and_duplicated(&published, &tally.counts());
    report(
        "client-kill",
        "pubsub",
        published.len(),
        lost,
        duplicated,
        Some(recovery),
        &format!(
            "kills={kills} reconnects={} dropped={} acked={} (pub/sub is at-most-once: lost = published during the gaps)",
            broker.reconnects(),
            broker.dropped(),
            summary.acked
        ),
    );
    assert_eq!(duplicated, 0, "pub/sub delivered a message twice");
    assert!(
        // Reconnect backoff: at most 2 s plus up to 100 % jitter, then the SUBSCRIBE.
        recovery < Duration::from_secs(6),
        "resubscribing took {recovery:?}"
    );
}

/// Scenario 4b, pub/sub: `CLIENT PAUSE 2000 ALL` and `DEBUG SLEEP 2` stall the server; the
/// subscription's liveness PING notices, and either way messages flow again right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_paused_pubsub_never_stalls() {
    let server = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let conn = RedisConnection::connect(
        server
            .config()
            .with_response_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let admin = server.connect().await;
    let broker = Arc::new(
        PubSubBroker::builder(&conn)
            .channel("pause.c")
            .with_ping_interval(Duration::from_millis(200))
            .subscribe()
            .await
            .unwrap(),
    );
    let tally = Tally::default();
    let worker = spawn_runtime(WorkerRuntime::<PubSubBroker>::new(
        Arc::clone(&broker),
        tally.clone(),
    ));
    let publisher = Publisher::new(&admin, "pause.c");
    let mut published = 0usize;
    let mut recovery = Duration::ZERO;
    for how in ["CLIENT PAUSE 2000 ALL", "DEBUG SLEEP 2"] {
        let args: Vec<&str> = how.split(' ').collect();
        let admin2 = admin.clone();
        let started = Instant::now();
        let pause = tokio::spawn(async move {
            let _: Value = query(&admin2, &args).await;
        });
        within(10, how, pause).await.unwrap();
        // The pause is over for CLIENT PAUSE once it expires, for DEBUG SLEEP once it answered.
        let over = started.elapsed().max(Duration::from_secs(2));
        let before = tally.total();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tally.total() == before {
            assert!(
                Instant::now() < deadline,
                "{how}: nothing received after the pause"
            );
            if publisher.publish(&Message::new("after")).await.is_ok() {
                published += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        recovery = recovery.max(started.elapsed().saturating_sub(over));
    }
    let summary = worker.finish().await;
    report(
        "server-pause",
        "pubsub",
        published,
        published.saturating_sub(summary.acked as usize),
        0,
        Some(recovery),
        &format!(
            "pauses=CLIENT_PAUSE_2000_ALL+DEBUG_SLEEP_2 reconnects={} acked={}",
            broker.reconnects(),
            summary.acked
        ),
    );
    assert!(
        recovery < Duration::from_secs(6),
        "messages flowed again only {recovery:?} after the pause"
    );
}
