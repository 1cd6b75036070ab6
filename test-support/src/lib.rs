//! Test support of the Pythia workspace, a dev-dependency of its crates' integration tests:
//! [`RedisServer`], a real `redis-server` on 127.0.0.1 at a free port in a temporary directory,
//! killed when dropped (never a mock, never port 6379); [`cluster`] and [`sentinel`] topologies
//! of them; [`tls`] certificates and a TLS server; [`chaos`], worker child processes to kill and
//! tallies of what they processed; [`server_chaos`], what a scenario does to a server while a
//! worker drains; [`broker_scenarios`], scenarios every at-least-once broker runs; [`collect`],
//! a worker that keeps every message it saw; [`counters`], a counting metrics recorder; and the
//! small helpers every test uses ([`acks`], [`bodies_of`], [`burst`], [`cmd`], [`eventually`],
//! [`fetch_at_least`], [`season`], [`Resume`]).
//!
//! Tests name it `support`: `use pythia_test_support as support;`.

// Test code: its items are documented where it helps a test writer, and not every type needs Debug.
#![allow(missing_docs, missing_debug_implementations)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pythia_core::{Broker, Delivery, Outcome, Settlement, Worker, WorkerRuntime};
use pythia_redis::{RedisConfig, RedisConnection};

pub mod broker_scenarios;
pub mod chaos;
pub mod cluster;
pub mod collect;
pub mod counters;
pub mod redis_process;
pub mod sentinel;
pub mod server_chaos;
pub mod tls;

/// A redis-server process owned by a test.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts a server with no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`["--requirepass", "x"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "pythia-test-redis-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut last_err = String::new();
        for _ in 0..5 {
            let mut s = Self {
                port: free_port(),
                dir: dir.clone(),
                child: None,
                extra: extra.iter().map(|s| s.to_string()).collect(),
            };
            match s.spawn() {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start redis-server: {last_err}");
    }

    /// Starts a server on `port`, a free port the test picked earlier (for a client started
    /// before its server), with extra `redis-server` arguments.
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "pythia-test-redis-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Self {
            port,
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        if let Err(e) = s.spawn() {
            panic!("could not start redis-server on port {port}: {e}");
        }
        s
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--loglevel")
            .arg("warning")
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| {
            format!("redis-server not runnable ({e}); install it: apt-get install -y redis-server")
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("redis-server exited early: {status}"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not start listening within 10 s".into())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A config for this server, with short timeouts suited to tests.
    pub fn config(&self) -> RedisConfig {
        RedisConfig::from_url(&self.url())
            .unwrap()
            .with_block_timeout(Duration::from_millis(200))
            .with_connect_timeout(Duration::from_secs(1))
    }

    /// A connection to this server.
    pub async fn connect(&self) -> RedisConnection {
        RedisConnection::connect(self.config()).await.unwrap()
    }

    /// Kills the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("restart failed: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A runtime of `worker` over `broker` that stops once the queue is empty (burst mode), with no
/// signal listener: what the broker tests run to drain a queue.
pub fn burst<B: Broker, W: Worker>(broker: B, worker: W) -> WorkerRuntime<B> {
    WorkerRuntime::new(broker, worker)
        .with_signal_handling(false)
        .with_burst(true)
}

/// [`burst`] over a broker the test keeps its own handle on (a subscribed pub/sub broker).
pub fn burst_shared<B: Broker, W: Worker>(broker: &Arc<B>, worker: W) -> WorkerRuntime<B> {
    WorkerRuntime::new(Arc::clone(broker), worker)
        .with_signal_handling(false)
        .with_burst(true)
}

/// The bodies of `deliveries`, in order (text bodies: panics on one that is not UTF-8).
pub fn bodies_of<T>(deliveries: &[Delivery<T>]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d.message.body_str().unwrap().to_owned())
        .collect()
}

/// Settlements that ack each of `deliveries`.
pub fn acks<T>(deliveries: Vec<Delivery<T>>) -> Vec<Settlement<T>> {
    deliveries
        .into_iter()
        .map(|d| Settlement {
            token: d.token,
            message: d.message,
            outcome: Outcome::Ack,
        })
        .collect()
}

/// Fetches from `broker` until at least `n` deliveries came (a pub/sub broker's buffer fills as
/// messages arrive).
pub async fn fetch_at_least<B: Broker>(broker: &B, n: usize) -> Vec<Delivery<B::Token>> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(broker.fetch(10).await.unwrap());
    }
    got
}

/// Runs a raw command on `conn`'s shared connection.
pub async fn cmd<T: redis::FromRedisValue>(conn: &RedisConnection, args: &[&str]) -> T {
    let mut m = conn.manager();
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(&mut m).await.unwrap()
}

/// Runs `maintain` (a broker's maintenance) every 100 ms for a little more than `lifetime`: a
/// consumer judges others dead only once it has heartbeated without a break for a whole
/// heartbeat lifetime (see `pythia-redis/src/consumer/liveness.rs`). Its maintenance may reclaim
/// meanwhile.
pub async fn season<F, Fut, E>(lifetime: Duration, mut maintain: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Debug,
{
    let until = Instant::now() + lifetime + Duration::from_millis(150);
    while Instant::now() < until {
        maintain().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    maintain().await.unwrap();
}

/// Polls `f` every 20 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A process stopped with SIGSTOP (a server that keeps its sockets open and answers nothing),
/// sent SIGCONT when dropped, so that a failing test never leaves it stopped.
pub struct Resume(String);

impl Resume {
    /// Stops the process `pid`.
    pub fn stop(pid: &str) -> Self {
        let ok = Command::new("kill")
            .args(["-STOP", pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -STOP {pid}");
        Self(pid.to_owned())
    }
}

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}
