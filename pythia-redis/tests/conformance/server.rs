//! Scenarios on the server side and in the data, with workers in this process counting in
//! memory (so recording never depends on the server being up): Redis restarts with AOF for an
//! outage shorter and longer than the heartbeat lifetime, CLIENT KILL and CLIENT PAUSE while
//! draining, a key of the wrong type at each step, hash-tag neighbours, oversized entries.

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pythia_core::{BrokerErrorKind, RuntimeError};
use pythia_redis::RedisConnection;

use super::harness::{Env, Plan, Probe, Running, Step, Subject, TTL, bodies, numbered, saved_key};
use super::workers::scale;
use crate::chaos::{lost_and_duplicated, query, report, within};
use crate::support::server_chaos::{ClientKiller, ServerPauses, drain_with_chaos};
use crate::support::{RedisServer, eventually};

const CONCURRENCY: usize = 16;
const BATCH: usize = 64;
/// What `/readyz` uses: ready means running, Redis reachable, and progress within this.
const STALL_LIMIT: Duration = Duration::from_secs(60);

async fn produce<S: Subject>(s: &S, conn: &RedisConnection, msgs: &[pythia_core::Message]) {
    s.prepare(conn).await;
    for chunk in msgs.chunks(1000) {
        s.produce(conn, chunk).await.unwrap();
    }
}

/// A server persisting every write (`appendfsync always`).
pub fn aof_server(extra: &[&str]) -> RedisServer {
    let mut args = vec!["--appendonly", "yes", "--appendfsync", "always"];
    args.extend_from_slice(extra);
    RedisServer::start_with(&args)
}

/// Redis restart, outage shorter than the lifetime: the server, persisting with `appendfsync
/// always`, is killed while a worker drains and started again 300 ms later (heartbeats have not
/// expired). The worker notices (not ready), resumes by itself, and every message is processed;
/// extra deliveries are at most a batch in flight.
pub async fn restart_short<S: Subject>() {
    let mut server = aof_server(&[]);
    let env = Env::single(&server).await;
    let s = S::on("restart");
    let n = scale(8000);
    let msgs = numbered("", 0, n);
    let ids = bodies(&msgs);
    produce(&s, &env.conn, &msgs).await;
    drop(msgs);
    let probe = Probe::new(Duration::from_millis(1), Plan::AllOk);
    let w = Running::start(
        s.broker(&env.conn, None, TTL),
        probe.clone(),
        CONCURRENCY,
        BATCH,
    );
    eventually(Duration::from_secs(30), "1000 processed", || async {
        probe.total() >= 1000
    })
    .await;
    server.stop();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    let up = Instant::now();
    let before = probe.total();
    eventually(
        Duration::from_secs(20),
        "processing to resume and the worker to be ready",
        || async { probe.total() > before + 100 && w.status.is_ready(STALL_LIMIT) },
    )
    .await;
    let recovery = up.elapsed();
    eventually(
        Duration::from_secs(60),
        "every message processed",
        || async { probe.distinct() == n },
    )
    .await;
    let summary = w.finish().await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &probe.counts());
    report(
        "redis-restart-short",
        S::NAME,
        n,
        lost,
        duplicated,
        Some(recovery),
        &format!(
            "aof=always outage_ms={} ttl_ms={} acked={} unsettled={}",
            (up - down).as_millis(),
            TTL.as_millis(),
            summary.acked,
            summary.unsettled
        ),
    );
    assert_eq!(lost, 0, "{}: acknowledged messages lost", S::NAME);
    assert!(
        duplicated <= (BATCH + CONCURRENCY) as i64,
        "{}: {duplicated} duplicates after one short outage",
        S::NAME
    );
    assert!(
        recovery < Duration::from_secs(10),
        "took {recovery:?} to resume"
    );
    s.assert_no_state_left(&env).await;
}

/// Redis restart, outage longer than the lifetime (every heartbeat key expires meanwhile):
/// two live consumers running 5 s jobs must not take each other for dead and start those jobs
/// a second time.
pub async fn restart_long<S: Subject>() {
    let lifetime = Duration::from_millis(600);
    let outage = Duration::from_millis(2500);
    let mut server = aof_server(&[]);
    let env = Env::single(&server).await;
    let s = S::on("jobs");
    let msgs = numbered("job-", 0, 2);
    let ids = bodies(&msgs);
    produce(&s, &env.conn, &msgs).await;
    let probe = Probe::new(Duration::from_secs(5), Plan::AllOk);
    let conns = [server.connect().await, server.connect().await];
    let workers: Vec<Running> = conns
        .iter()
        .map(|c| Running::start(s.broker(c, None, lifetime), probe.clone(), 1, 1))
        .collect();
    eventually(Duration::from_secs(10), "both jobs running", || async {
        probe.starts().len() == 2
    })
    .await;
    let t0 = Instant::now();
    server.stop();
    tokio::time::sleep(outage).await;
    server.restart();
    eventually(Duration::from_secs(30), "both jobs done", || async {
        probe.total() >= 2
    })
    .await;
    // Time for a consumer that took the other for dead to deliver its job again.
    tokio::time::sleep(lifetime * 4).await;
    for w in workers {
        w.finish().await;
    }
    let starts = probe.starts();
    let (lost, duplicated) = lost_and_duplicated(&ids, &probe.counts());
    report(
        "redis-restart-long",
        S::NAME,
        2,
        lost,
        starts.len() as i64 - 2,
        Some(t0.elapsed()),
        &format!(
            "aof=always outage_ms={} ttl_ms={} job_ms=5000 handled_twice={duplicated}",
            outage.as_millis(),
            lifetime.as_millis()
        ),
    );
    assert_eq!(lost, 0);
    assert_eq!(
        starts.len(),
        2,
        "{}: a live consumer's running job was started again: {starts:?}",
        S::NAME
    );
    s.assert_no_state_left(&env).await;
}

/// Drains `n` preloaded messages while `chaos` is applied at `points` moments spread over the
/// drain by progress. Returns the probe, the summary, the longest stand-still and the ids.
async fn drain_under<S, F, Fut>(
    s: &S,
    conn: &RedisConnection,
    n: usize,
    points: usize,
    chaos: F,
) -> (Probe, pythia_core::RunSummary, Duration, Vec<String>)
where
    S: Subject,
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let msgs = numbered("", 0, n);
    produce(s, conn, &msgs).await;
    let ids = bodies(&msgs);
    drop(msgs);
    let probe = Probe::new(Duration::from_millis(1), Plan::AllOk);
    let w = Running::start(s.broker(conn, None, TTL), probe.clone(), CONCURRENCY, BATCH);
    let gap = drain_with_chaos(
        n,
        points,
        || probe.total(),
        chaos,
        |_| async { probe.distinct() == n },
        |applied| {
            format!(
                "{}: stalled at {} of {n} after {applied} chaos events",
                S::NAME,
                probe.distinct(),
            )
        },
    )
    .await;
    let summary = w.finish().await;
    (probe, summary, gap, ids)
}

/// CLIENT KILL: `CLIENT KILL TYPE normal` five times while draining; every connection of the
/// worker (shared, blocking, maintenance) dies at a random point of its work.
pub async fn client_kill<S: Subject>() {
    let server = RedisServer::start();
    let env = Env::single(&server).await;
    // The killer's own connection survives its CLIENT KILL (SKIPME yes).
    let admin = server.connect().await;
    let s = S::on("kill");
    let n = scale(6000);
    let kills = 5;
    let killer = ClientKiller::new(&admin);
    let (probe, summary, gap, ids) = drain_under(&s, &env.conn, n, kills, |_| killer.kill()).await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &probe.counts());
    let connections = killer.killed();
    report(
        "client-kill",
        S::NAME,
        n,
        lost,
        duplicated,
        Some(gap),
        &format!(
            "kills={kills} connections_killed={connections} acked={} unsettled={}",
            summary.acked, summary.unsettled
        ),
    );
    assert!(connections >= kills as i64, "the kills hit nothing");
    assert_eq!(lost, 0, "{}: lost messages", S::NAME);
    assert!(gap < Duration::from_secs(10), "stood still for {gap:?}");
    s.assert_no_state_left(&env).await;
}

/// CLIENT PAUSE: the server stops answering for 2 s, twice: `CLIENT PAUSE 2000 ALL`, then
/// `DEBUG SLEEP 2` (the whole server blocked). The worker's reply timeout is 1 s, shorter than
/// the pause, so replies are given up on while the server still executes the commands.
pub async fn client_pause<S: Subject>() {
    let server = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let env = Env::single(&server).await;
    let conn = RedisConnection::connect(
        server
            .config()
            .with_response_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let admin = server.connect().await;
    let s = S::on("pause");
    let n = scale(6000);
    let pauses = ServerPauses::new(&admin);
    let (probe, summary, gap, ids) =
        drain_under(&s, &conn, n, 2, |event| pauses.pause(event)).await;
    pauses.finish().await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &probe.counts());
    report(
        "client-pause",
        S::NAME,
        n,
        lost,
        duplicated,
        Some(gap),
        &format!(
            "pauses=CLIENT_PAUSE_2000_ALL+DEBUG_SLEEP_2 reply_timeout=1s acked={} unsettled={}",
            summary.acked, summary.unsettled
        ),
    );
    assert_eq!(lost, 0, "{}: lost messages", S::NAME);
    assert!(
        gap < Duration::from_secs(8),
        "stood still for {gap:?} after a 2 s pause"
    );
    s.assert_no_state_left(&env).await;
}

/// Parks `KEYS[1]` at `KEYS[2]` (when it exists) and puts the string `ARGV[1]` in its place.
const PARK: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then \
     redis.call('RENAME', KEYS[1], KEYS[2]) end \
     redis.call('SET', KEYS[1], ARGV[1])";
/// Puts the content parked at `KEYS[2]` (if any) back at `KEYS[1]`.
const RESTORE: &str = "redis.call('DEL', KEYS[1]) \
     if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[1]) end";

/// A key of the wrong type at each step (queue, dead letters, schedule, in-flight): while a
/// worker drains a queue where a quarter of the messages are rejected and a quarter retried
/// once, another program's string replaces the step's key (its content parked aside). The
/// worker stops with a fatal `Config` error (WRONGTYPE), the other program's key is untouched,
/// and once the key is fixed a worker under the same consumer name finishes the queue: every
/// message handled, every rejected one dead-lettered once, nothing left behind.
pub async fn wrong_type<S: Subject>(env: &Env, prefix: &str, steps: &[Step]) {
    let n = 200;
    for &step in steps {
        let queue = format!("{prefix}-{}", step.name());
        let s = S::on(&queue);
        let keys = s.key_of(step, "c1");
        if keys.is_empty() {
            continue;
        }
        let conn = &env.conn;
        let msgs = numbered("", 0, n);
        let ids = bodies(&msgs);
        produce(&s, conn, &msgs).await;
        let probe = Probe::new(Duration::from_millis(5), Plan::Mixed);
        let w = Running::start(s.broker(conn, Some("c1"), TTL), probe.clone(), 4, 8);
        eventually(Duration::from_secs(30), "40 handled", || async {
            probe.total() >= 40
        })
        .await;
        for k in &keys {
            // In one step: a write between a RENAME and a SET would be overwritten.
            let () = query(
                conn,
                &["EVAL", PARK, "2", k, &saved_key(k), "another program's"],
            )
            .await;
        }
        let t = Instant::now();
        let e = match within(30, "the worker to stop on WRONGTYPE", w.handle)
            .await
            .unwrap()
        {
            Err(RuntimeError::Broker(e)) => e,
            other => panic!(
                "{} {}: the worker went on with a wrong-type key: {other:?}",
                S::NAME,
                step.name()
            ),
        };
        let stopped_in = t.elapsed();
        assert_eq!(e.kind(), BrokerErrorKind::Config, "{e}");
        assert!(e.to_string().contains("WRONGTYPE"), "{e}");
        for k in &keys {
            let v: Option<String> = query(conn, &["GET", k]).await;
            assert_eq!(v.as_deref(), Some("another program's"), "{k} was touched");
            let () = query(conn, &["EVAL", RESTORE, "2", k, &saved_key(k)]).await;
        }
        let handled_before = probe.total();
        let w = Running::start(s.broker(conn, Some("c1"), TTL), probe.clone(), 4, 8);
        eventually(Duration::from_secs(60), "every message handled", || async {
            probe.distinct() == n
        })
        .await;
        w.finish().await;
        let (lost, duplicated) = lost_and_duplicated(&ids, &probe.counts());
        let dead = s.dead_letters(conn).await;
        report(
            &format!("wrong-type-{}", step.name()),
            &env.label(S::NAME),
            n,
            lost,
            duplicated,
            Some(stopped_in),
            &format!("error=Config handled_before_stop={handled_before} dead_letters={dead}"),
        );
        assert_eq!(lost, 0, "{} {}: lost messages", S::NAME, step.name());
        assert!(
            duplicated <= 16,
            "{} {}: {duplicated} handled twice, more than a batch and the handlers",
            S::NAME,
            step.name()
        );
        assert_eq!(
            dead,
            n as i64 / 4,
            "every rejected message dead-lettered once"
        );
        s.clear_dead_letters(conn).await;
        s.assert_no_state_left(env).await;
    }
}

/// Hash-tag neighbours: queues whose names share a hash tag (`{t}.a`, `{t}.b`: one Cluster
/// slot) drained at once, with retries and dead letters: each worker sees only its own queue's
/// messages, each queue keeps its own dead letters, nothing lost or doubled.
pub async fn neighbours<S: Subject>(env: &Env) {
    let n = 80;
    let (a, b) = S::neighbours();
    let conn = &env.conn;
    let (msgs_a, msgs_b) = (numbered("a-", 0, n), numbered("b-", 0, n));
    produce(&a, conn, &msgs_a).await;
    produce(&b, conn, &msgs_b).await;
    let (pa, pb) = (
        Probe::new(Duration::from_millis(2), Plan::Mixed),
        Probe::new(Duration::from_millis(2), Plan::Mixed),
    );
    let wa = Running::start(a.broker(conn, None, TTL), pa.clone(), 4, 8);
    let wb = Running::start(b.broker(conn, None, TTL), pb.clone(), 4, 8);
    let t = Instant::now();
    eventually(Duration::from_secs(60), "both queues handled", || async {
        pa.distinct() >= n && pb.distinct() >= n
    })
    .await;
    let took = t.elapsed();
    // Time for a misplaced retry to show up on the wrong side.
    tokio::time::sleep(Duration::from_millis(600)).await;
    wa.finish().await;
    wb.finish().await;
    let strays = |p: &Probe, own: &str| {
        p.starts()
            .into_iter()
            .filter(|(body, _)| !body.starts_with(own))
            .count()
    };
    let stray = strays(&pa, "a-") + strays(&pb, "b-");
    let (lost_a, dup_a) = lost_and_duplicated(&bodies(&msgs_a), &pa.counts());
    let (lost_b, dup_b) = lost_and_duplicated(&bodies(&msgs_b), &pb.counts());
    let (dead_a, dead_b) = (a.dead_letters(conn).await, b.dead_letters(conn).await);
    report(
        "hash-tag-neighbours",
        &env.label(S::NAME),
        2 * n,
        lost_a + lost_b,
        dup_a + dup_b,
        Some(took),
        &format!("strays={stray} dead_letters_a={dead_a} dead_letters_b={dead_b}"),
    );
    assert_eq!(stray, 0, "a neighbour's message reached the wrong worker");
    assert_eq!((lost_a, lost_b), (0, 0));
    assert_eq!((dup_a, dup_b), (0, 0));
    assert_eq!((dead_a, dead_b), (n as i64 / 4, n as i64 / 4));
    for s in [&a, &b] {
        s.clear_dead_letters(conn).await;
        s.assert_no_state_left(env).await;
    }
}

/// Oversized entries: 2 MiB messages among small ones, some retried, some dead-lettered:
/// each is handled with its body whole, once, and every rejected one is kept.
pub async fn oversized<S: Subject>(env: &Env) {
    let s = S::on("big");
    let conn = &env.conn;
    let big = "x".repeat(2 << 20);
    let msgs: Vec<pythia_core::Message> = (0..24)
        .map(|i| {
            if i < 8 {
                pythia_core::Message::new(format!("{big}-{i}"))
            } else {
                pythia_core::Message::new(format!("small-{i}"))
            }
        })
        .collect();
    let ids = bodies(&msgs);
    produce(&s, conn, &msgs).await;
    drop(msgs);
    let probe = Probe::new(Duration::ZERO, Plan::Mixed);
    let w = Running::start(s.broker(conn, None, TTL), probe.clone(), 4, 8);
    let t = Instant::now();
    eventually(Duration::from_secs(60), "every message handled", || async {
        probe.distinct() == ids.len()
    })
    .await;
    let took = t.elapsed();
    w.finish().await;
    let counts: HashMap<String, i64> = probe.counts();
    let (lost, duplicated) = lost_and_duplicated(&ids, &counts);
    let dead = s.dead_letters(conn).await;
    report(
        "oversized",
        &env.label(S::NAME),
        ids.len(),
        lost,
        duplicated,
        Some(took),
        &format!("big=8x2MiB dead_letters={dead}"),
    );
    assert_eq!(lost, 0, "a big message lost or changed");
    assert_eq!(duplicated, 0);
    assert_eq!(dead, 6, "every rejected message kept whole");
    s.clear_dead_letters(conn).await;
    s.assert_no_state_left(env).await;
}
