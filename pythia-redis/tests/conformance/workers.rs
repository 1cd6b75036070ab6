//! Scenarios on the worker side, with worker child processes: SIGKILL mid-batch, SIGTERM drain,
//! SIGSTOP longer than the heartbeat lifetime, a consumer name reused after a SIGKILL, and two
//! workers whose clocks are an hour apart. They run on one server or on a cluster ([`Env`]).

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::children::{
    consumer_of, processed, processed_len, spawn, spawn_skewed, started_len, summary_key,
};
use super::harness::{Env, Subject, TTL, bodies, numbered};
use crate::chaos::{ChildSpec, ChildWorker, lost_and_duplicated, query, report, within};
use crate::support::{Resume, eventually};

/// Worker processes draining at once in the SIGKILL scenario.
const WORKERS: usize = 3;

fn seed() -> u64 {
    std::env::var("PYTHIA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// Waits until every message is processed and nothing waits in the queue any more (the
/// redeliveries of what a killed or stopped worker held are consumed too).
async fn drained<S: Subject>(env: &Env, s: &S, queue: &str, n: usize) {
    let conn = &env.conn;
    eventually(
        Duration::from_secs(120),
        "every message processed",
        || async { processed_len(conn, queue).await == n as i64 },
    )
    .await;
    // Nothing waiting and nothing in flight: a worker stopped now hands nothing back.
    eventually(Duration::from_secs(30), "the backlog consumed", || async {
        s.backlog(conn).await == 0 && s.pending(conn).await == 0
    })
    .await;
}

/// Longer soaks (`PYTHIA_CHAOS_LONG=1`) multiply the messages.
pub fn scale(n: usize) -> usize {
    if std::env::var_os("PYTHIA_CHAOS_LONG").is_some() {
        n * 10
    } else {
        n
    }
}

/// Queues `n` numbered messages on `s` (prepared first); returns their bodies.
async fn produce_numbered<S: Subject>(env: &Env, s: &S, n: usize) -> Vec<String> {
    let msgs = numbered("", 0, n);
    s.prepare(&env.conn).await;
    for chunk in msgs.chunks(1000) {
        s.produce(&env.conn, chunk).await.unwrap();
    }
    bodies(&msgs)
}

async fn stop_all(children: &mut [ChildWorker]) {
    for c in children.iter() {
        c.terminate();
    }
    for c in children.iter_mut() {
        let status = c.wait(30).await;
        assert!(
            status.success(),
            "a worker exited with {status}: {}",
            c.log_text()
        );
    }
}

/// SIGKILL mid-batch: [`WORKERS`] worker processes drain `n` messages; `kills` times, at a
/// random moment spread over the drain, a random one is SIGKILLed and a new one started in its
/// place. Every message is processed, extra deliveries are bounded by what the killed workers
/// held, each killed consumer is forgotten within a bounded time, and nothing is left.
pub async fn sigkill<S: Subject>(env: &Env, queue: &str, n: usize, kills: usize) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let s = S::on(queue);
    let ids = produce_numbered(env, &s, n).await;
    let spec = ChildSpec::new().set("delay_ms", 2);
    let mut children: Vec<ChildWorker> = (0..WORKERS)
        .map(|_| spawn::<S>(env, queue, &spec))
        .collect();
    let conn = &env.conn;
    let started = Instant::now();
    let mut held_total = 0i64;
    let mut watchers = Vec::new();
    for k in 1..=kills {
        let step = n / (kills + 1);
        let jitter = rng.usize(0..=step / 2) as i64 - (step / 4) as i64;
        let at = ((step * k) as i64 + jitter).clamp(1, n as i64 - 1);
        eventually(
            Duration::from_secs(120),
            &format!("{at} processed before kill {k}"),
            || async { processed_len(conn, queue).await >= at },
        )
        .await;
        let (i, consumer) = loop {
            let i = rng.usize(..children.len());
            if let Some(name) = consumer_of(conn, queue, children[i].pid).await {
                break (i, name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let dead = children.swap_remove(i);
        let t_kill = Instant::now();
        dead.kill().await;
        held_total += s.held(conn, &consumer).await;
        children.push(spawn::<S>(env, queue, &spec));
        let (s2, c2) = (s.clone(), conn.clone());
        watchers.push(tokio::spawn(async move {
            eventually(
                Duration::from_secs(30),
                "a killed consumer's work recovered and the consumer forgotten",
                || async { s2.gone(&c2, &consumer).await },
            )
            .await;
            t_kill.elapsed()
        }));
    }
    eventually(
        Duration::from_secs(120),
        "every message processed",
        || async { processed_len(conn, queue).await == n as i64 },
    )
    .await;
    drained(env, &s, queue, n).await;
    let mut recovery = Duration::ZERO;
    for w in watchers {
        recovery = recovery.max(within(40, "recovery watchers", w).await.unwrap());
    }
    let drained_in = started.elapsed();
    stop_all(&mut children).await;

    let (lost, duplicated) = lost_and_duplicated(&ids, &processed(conn, queue).await);
    report(
        "sigkill",
        &env.label(S::NAME),
        n,
        lost,
        duplicated,
        Some(recovery),
        &format!(
            "kills={kills} held_by_killed={held_total} workers={WORKERS} ttl_ms={} drained_in={:.1}s seed={seed}",
            TTL.as_millis(),
            drained_in.as_secs_f64()
        ),
    );
    assert_eq!(lost, 0, "{}: lost messages (seed {seed})", S::NAME);
    assert!(
        duplicated <= held_total,
        "{}: {duplicated} duplicates, but the killed workers held only {held_total}",
        S::NAME
    );
    // A fresh consumer reaps once it has heartbeated a whole lifetime, and the dead one's
    // heartbeat expires one lifetime after the kill.
    assert!(
        recovery < TTL * 4 + Duration::from_secs(3),
        "recovery took {recovery:?}"
    );
    s.assert_no_state_left(env).await;
}

/// SIGTERM drain: a busy worker process gets SIGTERM. Every handler that had started finishes
/// within the grace period, the process exits 0 with nothing unsettled, its consumer leaves
/// nothing behind, and what it had not started is processed later exactly once.
pub async fn sigterm<S: Subject>(env: &Env, queue: &str) {
    let n = 1000;
    let s = S::on(queue);
    let ids = produce_numbered(env, &s, n).await;
    let spec = ChildSpec::new()
        .set("delay_ms", 200)
        .set("concurrency", 32)
        .set("batch", 32)
        .set("record_start", 1);
    let conn = &env.conn;
    let mut child = spawn::<S>(env, queue, &spec);
    eventually(Duration::from_secs(30), "the child to be busy", || async {
        processed_len(conn, queue).await >= 64 && started_len(conn, queue).await >= 96
    })
    .await;
    let in_flight_at_term = started_len(conn, queue).await - processed_len(conn, queue).await;
    let consumer = consumer_of(conn, queue, child.pid).await.unwrap();
    let t = Instant::now();
    child.terminate();
    let status = child.wait(20).await;
    let exit_took = t.elapsed();
    assert!(status.success(), "exit {status}: {}", child.log_text());
    assert!(exit_took < Duration::from_secs(10), "took {exit_took:?}");

    let started: HashMap<String, i64> =
        query(conn, &["HGETALL", &super::children::started_key(queue)]).await;
    let done = processed(conn, queue).await;
    let cut_off = started.keys().filter(|id| !done.contains_key(*id)).count();
    assert_eq!(cut_off, 0, "handlers cut off by a graceful stop");
    let summary: HashMap<String, u64> =
        query(conn, &["HGETALL", &summary_key(queue, child.pid)]).await;
    assert_eq!(summary.get("unsettled"), Some(&0), "{summary:?}");
    assert_eq!(
        s.held(conn, &consumer).await,
        0,
        "the stopped consumer holds work"
    );
    assert!(s.gone(conn, &consumer).await, "{consumer} left state");

    // The rest, by a second worker process.
    let mut rest = spawn::<S>(env, queue, &ChildSpec::new().set("delay_ms", 0));
    eventually(Duration::from_secs(60), "the rest processed", || async {
        processed_len(conn, queue).await == n as i64
    })
    .await;
    stop_all(std::slice::from_mut(&mut rest)).await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &processed(conn, queue).await);
    report(
        "sigterm",
        &env.label(S::NAME),
        n,
        lost,
        duplicated,
        Some(exit_took),
        &format!(
            "in_flight_at_term={in_flight_at_term} released={} acked_before_exit={} exit=0",
            summary.get("released").copied().unwrap_or(0),
            summary.get("acked").copied().unwrap_or(0),
        ),
    );
    assert_eq!(lost, 0, "{}: lost on a graceful stop", S::NAME);
    assert_eq!(
        duplicated,
        0,
        "{}: a graceful stop never redelivers",
        S::NAME
    );
    s.assert_no_state_left(env).await;
}

/// A stopped-and-continued worker: a worker process with long jobs is SIGSTOPped for longer
/// than the heartbeat lifetime; another consumer reclaims its work and processes it; then the
/// stopped one continues, finishes its (now duplicate) jobs and settles them. Nothing is lost,
/// the duplicates are only what it held, and both then stop cleanly leaving nothing behind.
pub async fn sigstop<S: Subject>(env: &Env, queue: &str) {
    let n = 200;
    let s = S::on(queue);
    let ids = produce_numbered(env, &s, n).await;
    let conn = &env.conn;
    let a = spawn::<S>(
        env,
        queue,
        &ChildSpec::new()
            .set("delay_ms", 4000)
            .set("concurrency", 8)
            .set("batch", 8)
            .set("record_start", 1),
    );
    eventually(Duration::from_secs(30), "A busy with its jobs", || async {
        started_len(conn, queue).await >= 8
    })
    .await;
    let a_name = consumer_of(conn, queue, a.pid).await.unwrap();
    let stopped = Resume::stop(&a.pid.to_string());
    let t_stop = Instant::now();
    let held = s.held(conn, &a_name).await;
    let b = spawn::<S>(env, queue, &ChildSpec::new().set("delay_ms", 2));
    eventually(
        Duration::from_secs(30),
        "B to reclaim A's work and process everything",
        || async { s.gone(conn, &a_name).await && processed_len(conn, queue).await == n as i64 },
    )
    .await;
    let recovery = t_stop.elapsed();
    drained(env, &s, queue, n).await;
    assert!(
        recovery > TTL,
        "reclaimed after {recovery:?}, within A's lifetime"
    );
    drop(stopped); // SIGCONT
    // A's handlers end (their sleep is over) and A settles what B now owns.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a_pid = a.pid;
    let mut both = [a, b];
    stop_all(&mut both).await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &processed(conn, queue).await);
    let summary: HashMap<String, u64> = query(conn, &["HGETALL", &summary_key(queue, a_pid)]).await;
    let not_owned = summary.get("not_owned").copied().unwrap_or(0);
    report(
        "sigstop",
        &env.label(S::NAME),
        n,
        lost,
        duplicated,
        Some(recovery),
        &format!(
            "held_by_stopped={held} settled_not_owned={not_owned} ttl_ms={}",
            TTL.as_millis()
        ),
    );
    assert_eq!(lost, 0, "{}: lost messages", S::NAME);
    assert!(
        duplicated <= held,
        "{}: {duplicated} duplicates, the stopped worker held {held}",
        S::NAME
    );
    // Every delivery the stopped worker handled again was settled late, and each such
    // settlement was counted (pythia_settle_not_owned_total), none applied twice silently.
    assert!(
        not_owned as i64 >= duplicated && duplicated > 0,
        "{}: {duplicated} handled twice, {not_owned} late settlements counted",
        S::NAME
    );
    s.assert_no_state_left(env).await;
}

/// A consumer name reused after a SIGKILL (a StatefulSet pod restarted under its name): the new
/// process takes back what the killed one held at once, without waiting for its heartbeat to
/// expire (the lifetime here is 10 s, the recovery must be well under it).
pub async fn reused_name<S: Subject>(env: &Env, queue: &str) {
    let n = 600;
    let ttl = Duration::from_secs(10);
    let s = S::on(queue);
    let ids = produce_numbered(env, &s, n).await;
    let conn = &env.conn;
    let spec = ChildSpec::new()
        .set("consumer", "pod-0")
        .set("ttl_ms", ttl.as_millis())
        .set("delay_ms", 20)
        .set("concurrency", 16)
        .set("batch", 32);
    let first = spawn::<S>(env, queue, &spec);
    eventually(Duration::from_secs(30), "100 processed", || async {
        processed_len(conn, queue).await >= 100
    })
    .await;
    first.kill().await;
    let t_kill = Instant::now();
    let held = s.held(conn, "pod-0").await;
    let mut second = spawn::<S>(env, queue, &spec.clone().set("delay_ms", 2));
    eventually(
        Duration::from_secs(60),
        "every message processed",
        || async { processed_len(conn, queue).await == n as i64 },
    )
    .await;
    let recovery = t_kill.elapsed();
    drained(env, &s, queue, n).await;
    stop_all(std::slice::from_mut(&mut second)).await;
    let (lost, duplicated) = lost_and_duplicated(&ids, &processed(conn, queue).await);
    report(
        "reused-name",
        &env.label(S::NAME),
        n,
        lost,
        duplicated,
        Some(recovery),
        &format!("held_by_killed={held} ttl_ms={}", ttl.as_millis()),
    );
    assert_eq!(lost, 0, "{}: lost messages", S::NAME);
    assert!(duplicated <= held, "{duplicated} duplicates, held {held}");
    assert!(
        recovery < ttl / 2,
        "{}: the reused name waited {recovery:?} for its own work",
        S::NAME
    );
    s.assert_no_state_left(env).await;
}

/// Clock skew: two worker processes, one under `faketime -f +1h`, drain a queue in which every
/// even message fails its first attempt with a 300 ms retry. Retries come back on the server's
/// clock (not an hour late, nor promoted an hour early by the skewed one: each still gets its
/// second attempt), and neither worker takes the other for dead.
pub async fn clock_skew<S: Subject>(env: &Env, queue: &str) {
    let n = 400;
    let s = S::on(queue);
    let ids = produce_numbered(env, &s, n).await;
    let conn = &env.conn;
    let spec = ChildSpec::new()
        .set("delay_ms", 5)
        .set("concurrency", 4)
        .set("batch", 8)
        .set("plan", "retry-even");
    let t0 = Instant::now();
    let normal = spawn::<S>(env, queue, &spec);
    let skewed = spawn_skewed::<S>(env, queue, &spec, "+1h");
    eventually(
        Duration::from_secs(60),
        "every message processed",
        || async { processed_len(conn, queue).await == n as i64 },
    )
    .await;
    let drained_in = t0.elapsed();
    drained(env, &s, queue, n).await;
    // The skewed worker runs under faketime, which does not pass signals on: stop each worker
    // by the pid it registered itself.
    let pids: HashMap<String, String> =
        query(conn, &["HGETALL", &super::children::consumers_key(queue)]).await;
    assert_eq!(pids.len(), 2, "both workers consumed: {pids:?}");
    // One wall clock is an hour ahead of the server's, the other is not.
    let clocks: HashMap<String, i64> =
        query(conn, &["HGETALL", &super::children::clocks_key(queue)]).await;
    let t: Vec<String> = query(conn, &["TIME"]).await;
    let server_ms = t[0].parse::<i64>().unwrap() * 1000;
    let mut offsets: Vec<i64> = clocks.values().map(|c| (c - server_ms) / 60_000).collect();
    offsets.sort_unstable();
    assert!(
        offsets.len() == 2 && offsets[0].abs() <= 1 && (59..=61).contains(&offsets[1]),
        "worker clock offsets in minutes: {offsets:?}"
    );
    for pid in pids.keys() {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {pid}");
    }
    for mut c in [normal, skewed] {
        let status = c.wait(30).await;
        assert!(status.success(), "exit {status}: {}", c.log_text());
    }
    let (lost, duplicated) = lost_and_duplicated(&ids, &processed(conn, queue).await);
    report(
        "clock-skew",
        &env.label(S::NAME),
        n,
        lost,
        duplicated,
        Some(drained_in),
        "offset=+1h retries=300ms",
    );
    assert_eq!(lost, 0, "{}: lost messages", S::NAME);
    assert_eq!(
        duplicated,
        0,
        "{}: a skewed clock made a duplicate",
        S::NAME
    );
    assert!(drained_in < Duration::from_secs(60));
    s.assert_no_state_left(env).await;
}
