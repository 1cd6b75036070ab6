//! Distributed locks against a real redis-server: exclusivity, expiry, owner-only release,
//! extension, force release, waiting, and singletons with `run_exclusive`.

use pythia_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pythia_redis::{Exclusive, Lock};
use support::{RedisServer, Resume, cmd, eventually};

#[tokio::test]
async fn a_lock_is_exclusive_and_expires() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let a = Lock::new(&conn, "report").with_owner("pod-a");
    let b = Lock::new(&conn, "report").with_owner("pod-b");
    assert_eq!(a.key(), "pythia:{report}:lock");

    let guard = a
        .try_acquire(Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert!(guard.token().starts_with("pod-a:"));
    assert!(
        b.try_acquire(Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        b.holder().await.unwrap().as_deref(),
        Some(guard.token()),
        "anyone can see who holds it"
    );
    let left = a.remaining().await.unwrap().unwrap();
    assert!(left <= Duration::from_millis(300) && left > Duration::ZERO);

    // Not extended: it expires, and then another owner takes it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!guard.is_held().await.unwrap());
    let guard_b = b
        .try_acquire(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("expired lock is free");
    // The first owner's late calls never touch the new owner's lock.
    assert!(!guard.extend(Duration::from_secs(5)).await.unwrap());
    assert!(!guard.release().await.unwrap(), "owner-only release");
    assert!(guard_b.is_held().await.unwrap());
    assert!(guard_b.release().await.unwrap());
    assert_eq!(a.holder().await.unwrap(), None);
}

#[tokio::test]
async fn extend_keeps_it_and_force_release_frees_it() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let a = Lock::new(&conn, "singleton");
    let b = Lock::new(&conn, "singleton");
    let guard = a
        .try_acquire(Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(guard.extend(Duration::from_millis(300)).await.unwrap());
    }
    // 450 ms after a 300 ms TTL: held only because it was extended.
    assert!(
        b.try_acquire(Duration::from_secs(1))
            .await
            .unwrap()
            .is_none()
    );
    assert!(guard.is_held().await.unwrap());

    assert!(b.force_release().await.unwrap());
    assert!(!b.force_release().await.unwrap());
    assert!(!guard.is_held().await.unwrap());
    assert!(!guard.extend(Duration::from_secs(1)).await.unwrap());
    let guard_b = b
        .try_acquire(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    drop(guard); // dropping the old guard must not release the new owner's lock
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(guard_b.is_held().await.unwrap());

    // Dropping a guard that holds the lock releases it in the background.
    drop(guard_b);
    eventually(Duration::from_secs(2), "dropped guard released", || {
        let a = a.clone();
        async move { a.holder().await.unwrap().is_none() }
    })
    .await;
}

#[tokio::test]
async fn acquire_waits_for_the_holder() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let a = Lock::new(&conn, "door");
    let b = Lock::new(&conn, "door");
    let guard = a
        .try_acquire(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(
        b.acquire(Duration::from_secs(5), Duration::from_millis(100))
            .await
            .unwrap()
            .is_none(),
        "still held after the wait"
    );
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        guard.release().await.unwrap()
    });
    let started = std::time::Instant::now();
    let got = b
        .acquire(Duration::from_secs(5), Duration::from_secs(3))
        .await
        .unwrap();
    assert!(got.is_some());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(releaser.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exclusive_runs_one_singleton_at_a_time() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let lock = Lock::new(&conn, "cron-leader").with_owner(&format!("replica-{i}"));
        let (inside, max_inside) = (Arc::clone(&inside), Arc::clone(&max_inside));
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for _ in 0..10 {
                let work = async {
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max_inside.fetch_max(n, Ordering::SeqCst);
                    // Longer than the TTL: only the keep-alive keeps it.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                };
                match lock
                    .run_exclusive(Duration::from_millis(150), work)
                    .await
                    .unwrap()
                {
                    Exclusive::Done(()) => done += 1,
                    Exclusive::NotAcquired => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            done
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(done >= 1);
    assert_eq!(max_inside.load(Ordering::SeqCst), 1, "never two at once");
}

#[tokio::test]
async fn run_exclusive_cancels_the_work_when_the_lock_is_lost() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let lock = Lock::new(&conn, "job");
    let thief = Lock::new(&conn, "job");
    let stealer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        thief.force_release().await.unwrap();
        thief
            .try_acquire(Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap()
    });
    let started = std::time::Instant::now();
    let out = lock
        .run_exclusive(
            Duration::from_millis(300),
            tokio::time::sleep(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert_eq!(out, Exclusive::Lost);
    assert!(started.elapsed() < Duration::from_secs(2));
    let thief_guard = stealer.await.unwrap();
    assert!(
        thief_guard.is_held().await.unwrap(),
        "the loser leaves the new owner's lock alone"
    );
    let value: String = cmd(&conn, &["GET", lock.key()]).await;
    assert_eq!(value, thief_guard.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exclusive_stops_the_work_within_the_ttl_while_extends_hang() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let info: String = cmd(&conn, &["INFO", "server"]).await;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("INFO server has process_id")
        .trim()
        .to_owned();
    let lock = Lock::new(&conn, "job");
    let ttl = Duration::from_millis(600);
    let started = tokio::time::Instant::now();
    let stalled = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Sockets stay open, nothing answers: every extend waits for its reply timeout and is
        // retried.
        Resume::stop(&pid)
    });
    let out = lock
        .run_exclusive(ttl, tokio::time::sleep(Duration::from_secs(30)))
        .await
        .unwrap();
    let took = started.elapsed();
    drop(stalled.await.unwrap()); // SIGCONT
    assert_eq!(out, Exclusive::Lost);
    assert!(
        // Slack for scheduling on a loaded machine; without the fix this is tens of seconds.
        took < ttl + Duration::from_millis(500),
        "the work went on {took:?} after taking a {ttl:?} lock that may have expired"
    );
}
