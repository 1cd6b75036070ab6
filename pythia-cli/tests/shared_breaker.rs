//! `pythia run --breaker-shared`: three worker processes share one circuit breaker in a real
//! redis-server. Only one replica's downstream fails; all three pause, and once it recovers a
//! probe closes the breaker for all three. Each replica's metrics say the same.

mod common;
use pythia_test_support as support;

use common::{command, free_port, get, sample};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::{RedisServer, cmd, eventually};

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Replica `i`: its handler fails (a retry) while `<dir>/down-<i>` exists.
fn replica(url: &str, dir: &Path, i: usize, port: u16) -> Worker {
    let flag = dir.join(format!("down-{i}"));
    let script = format!(
        "cat >/dev/null; [ -e '{}' ] && exit 1; exit 0",
        flag.display()
    );
    Worker(
        command([
            "run",
            "--redis-url",
            url,
            "--queue",
            "payments",
            "--log",
            "warn",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--exec", &script, "--concurrency", "1"])
        .args(["--breaker-failures", "3", "--breaker-cooldown", "6s"])
        .args(["--retry-delay", "100ms", "--max-attempts", "100"])
        .arg("--breaker-shared")
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    )
}

fn produce(url: &str, n: usize) {
    let bodies: Vec<String> = (0..n).map(|i| format!("pay-{i}")).collect();
    let o = command(["produce", "--redis-url", url, "--queue", "payments"])
        .args(&bodies)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

fn scrape(port: u16) -> String {
    get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

fn breaker(scrape: &str) -> Option<f64> {
    sample(
        scrape,
        "pythia_circuit_breaker_state",
        &[("breaker", "payments")],
    )
}

fn transitions(scrape: &str, to: &str) -> Option<f64> {
    sample(
        scrape,
        "pythia_circuit_breaker_transitions_total",
        &[("breaker", "payments"), ("to", to)],
    )
}

fn acked(scrape: &str) -> f64 {
    sample(
        scrape,
        "pythia_messages_total",
        &[("queue", "payments"), ("outcome", "ok")],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn one_replica_sees_the_failures_and_all_three_pause_then_resume() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = std::env::temp_dir().join(format!("pythia-shared-breaker-{}", server.port()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("down-0"), "").unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let _workers: Vec<Worker> = (0..3).map(|i| replica(&url, &dir, i, ports[i])).collect();
    for port in ports {
        eventually(
            Duration::from_secs(20),
            "every replica ready",
            || async move { get(port, "/readyz").map(|r| r.0) == Some(200) },
        )
        .await;
    }

    // Replica 0's downstream is down: its third failure in a row opens its breaker, and the
    // other two, whose every call succeeded, follow it through Redis.
    produce(&url, 60);
    for port in ports {
        eventually(
            Duration::from_secs(15),
            "every replica's breaker open",
            || {
                let state = breaker(&scrape(port));
                async move { state == Some(2.0) }
            },
        )
        .await;
    }
    let conn = server.connect().await;
    let state: String = cmd(&conn, &["HGET", "pythia:{payments}:breaker", "state"]).await;
    assert_eq!(state, "open");

    // Paused: with messages waiting, no replica acks anything.
    produce(&url, 30);
    let before: Vec<f64> = ports.iter().map(|&p| acked(&scrape(p))).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after: Vec<f64> = ports.iter().map(|&p| acked(&scrape(p))).collect();
    let waiting: i64 = cmd(&conn, &["LLEN", "payments"]).await;
    assert!(waiting > 0, "messages wait in Redis while open");
    assert_eq!(before, after, "no replica processed anything while open");
    for port in ports {
        assert_eq!(
            breaker(&scrape(port)),
            Some(2.0),
            "still open during the cool-down"
        );
    }

    // The downstream recovers: after the shared cool-down a probe closes the breaker for all.
    std::fs::remove_file(dir.join("down-0")).unwrap();
    for port in ports {
        eventually(
            Duration::from_secs(20),
            "every replica's breaker closed",
            || {
                let state = breaker(&scrape(port));
                async move { state == Some(0.0) }
            },
        )
        .await;
    }
    eventually(Duration::from_secs(30), "the queue drained", || {
        let total: f64 = ports.iter().map(|&p| acked(&scrape(p))).sum();
        async move { total >= 90.0 }
    })
    .await;

    // Each replica's metrics tell the same story: opened once, closed once.
    for port in ports {
        let s = scrape(port);
        assert_eq!(transitions(&s, "open"), Some(1.0), "replica on {port}: {s}");
        assert_eq!(transitions(&s, "closed"), Some(1.0), "replica on {port}");
    }
    let state: String = cmd(&conn, &["HGET", "pythia:{payments}:breaker", "state"]).await;
    assert_eq!(state, "closed");
}
