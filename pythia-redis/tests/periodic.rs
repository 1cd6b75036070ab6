//! Periodic jobs against a real redis-server: one leader, every slot fired once across a leader
//! crash, bounded catch-up, racing replicas, cron on a stream.

use pythia_test_support as support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use pythia_core::{CancellationToken, Source, envelope};
use pythia_redis::{
    Destination, Lock, PeriodicJob, PeriodicScheduler, RedisConfig, RedisConnection, Schedule,
};
use support::{RedisServer, cmd, eventually};

const PERIOD: u64 = 200;

fn ticking(conn: &RedisConnection, owner: &str, queue: &str) -> PeriodicScheduler {
    PeriodicScheduler::new(conn, "test")
        .with_owner(owner)
        .with_lock_ttl(Duration::from_millis(600))
        .with_tick(Duration::from_millis(50))
        .with_job(
            PeriodicJob::new(
                "tick",
                Schedule::every(Duration::from_millis(PERIOD)),
                Destination::list(queue),
            )
            .with_body("tick"),
        )
}

/// Slot → how many times it was enqueued, from the list `queue`.
async fn firings(conn: &RedisConnection, queue: &str) -> BTreeMap<u64, usize> {
    let items: Vec<Vec<u8>> = cmd(conn, &["LRANGE", queue, "0", "-1"]).await;
    let mut out = BTreeMap::new();
    for raw in items {
        let msg = envelope::decode(Bytes::from(raw), &Source::new("list", queue));
        let slot: u64 = msg.header("periodic-slot").unwrap().parse().unwrap();
        assert_eq!(msg.id(), format!("tick:{slot}"));
        *out.entry(slot).or_default() += 1;
    }
    out
}

fn assert_each_slot_once_without_gaps(f: &BTreeMap<u64, usize>) {
    assert!(f.values().all(|n| *n == 1), "a slot fired twice: {f:?}");
    let slots: Vec<u64> = f.keys().copied().collect();
    for w in slots.windows(2) {
        assert_eq!(
            w[1] - w[0],
            PERIOD,
            "slot missed between {} and {}",
            w[0],
            w[1]
        );
    }
}

/// A replica on its own thread and runtime, with its own connection, so that killing it is a
/// crash: its lock is never released and simply expires.
struct Replica {
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    fn start(cfg: RedisConfig, owner: &str, queue: &str) -> Self {
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let (owner, queue) = (owner.to_owned(), queue.to_owned());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let conn = RedisConnection::connect(cfg).await.unwrap();
                let run = ticking(&conn, &owner, &queue).run(CancellationToken::new());
                tokio::select! {
                    () = run => {}
                    _ = killed => {}
                }
            });
            // The runtime goes with the thread: nothing it had spawned runs again.
        });
        Self {
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_hands_over_without_missing_or_doubling_a_slot() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let mut replicas: Vec<(String, Replica)> = (0..3)
        .map(|i| {
            let owner = format!("replica-{i}");
            let r = Replica::start(server.config(), &owner, "ticks");
            (owner, r)
        })
        .collect();
    let lock = Lock::new(&conn, "periodic:test");
    eventually(Duration::from_secs(5), "a leader and a few firings", || {
        let (lock, conn) = (lock.clone(), conn.clone());
        async move {
            lock.holder().await.unwrap().is_some() && firings(&conn, "ticks").await.len() >= 4
        }
    })
    .await;
    let holder = lock.holder().await.unwrap().unwrap();
    let leader = replicas
        .iter()
        .position(|(owner, _)| holder.starts_with(&format!("{owner}:")))
        .expect("the holder is one of the replicas");
    let before = firings(&conn, "ticks").await;
    replicas[leader].1.kill();
    let killed_at = std::time::Instant::now();

    // The lock expires (600 ms), another replica takes it and catches up.
    eventually(Duration::from_secs(5), "a new leader", || {
        let lock = lock.clone();
        let dead = replicas[leader].0.clone();
        async move {
            lock.holder()
                .await
                .unwrap()
                .is_some_and(|h| !h.starts_with(&format!("{dead}:")))
        }
    })
    .await;
    let takeover = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(800)).await;
    for (_, r) in &mut replicas {
        r.kill();
    }
    let after = firings(&conn, "ticks").await;
    println!(
        "{} slots before the crash, {} after; takeover in {takeover:?}",
        before.len(),
        after.len()
    );
    assert!(
        takeover >= Duration::from_millis(300),
        "the crashed leader's lock was not released"
    );
    assert!(after.len() >= before.len() + 5, "{after:?}");
    assert_each_slot_once_without_gaps(&after);
}

#[tokio::test]
async fn a_new_leader_catches_up_within_the_limit() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let first = ticking(&conn, "a", "q");
    // A new job starts now: nothing before is fired.
    assert_eq!(first.fire_due().await.unwrap().fired, 0);
    tokio::time::sleep(Duration::from_millis(PERIOD * 2 + 50)).await;
    let r = first.fire_due().await.unwrap();
    assert!(r.fired >= 2, "{r:?}");
    let last = first.last_fired("tick").await.unwrap().unwrap();

    // Nobody leads for ~10 periods; the next leader fires only the newest 3 missed slots.
    tokio::time::sleep(Duration::from_millis(PERIOD * 10)).await;
    let second = ticking(&conn, "b", "q").with_catch_up_limit(3);
    let r = second.fire_due().await.unwrap();
    assert_eq!((r.fired, r.skipped_jobs), (3, 1), "{r:?}");
    let f = firings(&conn, "q").await;
    assert!(f.values().all(|n| *n == 1));
    let slots: Vec<u64> = f.keys().copied().collect();
    let newest = &slots[slots.len() - 3..];
    assert_eq!(newest[1] - newest[0], PERIOD);
    assert_eq!(newest[2] - newest[1], PERIOD);
    let last_ms = last
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        newest[0] > last_ms + PERIOD,
        "older missed slots were skipped"
    );
    // Nothing more is due right away.
    assert_eq!(second.fire_due().await.unwrap().fired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_firing_at_once_fire_each_slot_once() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    // No leader lock here: every replica fires on every pass, only the script decides.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s = ticking(&conn, &format!("r{i}"), "race");
        tasks.push(tokio::spawn(async move {
            let mut fired = 0;
            for _ in 0..60 {
                fired += s.fire_due().await.unwrap().fired;
                tokio::time::sleep(Duration::from_millis(10 + i)).await;
            }
            fired
        }));
    }
    let mut fired = 0;
    for t in tasks {
        fired += t.await.unwrap();
    }
    let f = firings(&conn, "race").await;
    assert_eq!(fired as usize, f.len());
    assert!(f.len() >= 3, "{f:?}");
    assert_each_slot_once_without_gaps(&f);
}

/// Every command the server runs from now on, those of scripts included (`MONITOR`), one line
/// each.
fn monitor(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::{BufRead, BufReader, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(b"MONITOR\r\n").unwrap();
    let mut lines = BufReader::new(tcp).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "+OK");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            s.lock().unwrap().push(line);
        }
    });
    seen
}

/// The entries of a stream destination are never trimmed: a `MAXLEN` would drop entries no
/// consumer group has been delivered yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_fires_on_whole_seconds_onto_a_stream() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let commands = monitor(server.port());
    let stop = CancellationToken::new();
    let scheduler = PeriodicScheduler::new(&conn, "cron")
        .with_lock_ttl(Duration::from_millis(600))
        .with_tick(Duration::from_millis(50))
        .with_job(
            PeriodicJob::new(
                "every-second",
                Schedule::cron("* * * * * *").unwrap(),
                Destination::stream("events"),
            )
            .with_body("beat")
            .with_header("kind", "heartbeat"),
        );
    let check = scheduler.clone();
    let h = tokio::spawn(scheduler.run(stop.clone()));
    eventually(Duration::from_secs(5), "two cron firings", || {
        let conn = conn.clone();
        async move { cmd::<u64>(&conn, &["XLEN", "events"]).await >= 2 }
    })
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), h)
        .await
        .unwrap()
        .unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> =
        cmd(&conn, &["XRANGE", "events", "-", "+"]).await;
    assert!(entries.len() >= 2);
    let mut slots = Vec::new();
    for (_, fields) in &entries {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("body"), "beat");
        assert_eq!(get("kind"), "heartbeat");
        assert_eq!(get("periodic-job"), "every-second");
        let slot: u64 = get("periodic-slot").parse().unwrap();
        assert_eq!(slot % 1000, 0, "on a whole second");
        assert_eq!(get("pythia-id"), format!("every-second:{slot}"));
        slots.push(slot);
    }
    for w in slots.windows(2) {
        assert_eq!(w[1] - w[0], 1000);
    }
    let adds: Vec<String> = commands
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("\"XADD\""))
        .cloned()
        .collect();
    assert!(adds.len() >= 2, "MONITOR saw the XADDs: {adds:?}");
    assert!(
        adds.iter().all(|l| !l.contains("\"MAXLEN\"")),
        "a periodic job's XADD trims nothing: {adds:?}"
    );
    let last = check.last_fired("every-second").await.unwrap().unwrap();
    assert_eq!(
        last.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        *slots.last().unwrap()
    );
    assert_eq!(
        Lock::new(&conn, "periodic:cron").holder().await.unwrap(),
        None,
        "released on stop"
    );
}
