//! Shared helpers of the chaos and crash tests (`tests/chaos_*.rs`, the brokers' kill tests):
//! worker child processes to kill, commands that survive a dropped connection, tallies of what
//! was processed (in memory, or in Redis where a killed process leaves them), and the one-line
//! figure every scenario prints.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pythia_core::{Broker, Message, RunSummary, Worker, WorkerError, WorkerRuntime};
use pythia_redis::{RedisConfig, RedisConnection};

use crate::RedisServer;

/// The env var that turns a test binary's `chaos_child` test into a worker process; its value is
/// the child's settings, `key=value` pairs separated by `;`.
pub const CHILD_ENV: &str = "PYTHIA_CHAOS_CHILD";

/// Fails the test instead of hanging it when `fut` does not finish within `secs`.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}

/// Runs a raw command, retrying for up to 10 s while the connection is being killed or the
/// server restarted: the chaos tests break the test's own connections too.
pub async fn query<T: redis::FromRedisValue>(conn: &RedisConnection, args: &[&str]) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut m = conn.manager();
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        match c.query_async(&mut m).await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{args:?} kept failing: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Every `pythia:{queue}:*` key.
pub async fn pythia_keys(conn: &RedisConnection, queue: &str) -> Vec<String> {
    query(conn, &["KEYS", &format!("pythia:{{{queue}}}:*")]).await
}

/// Messages lost and extra deliveries, given the ids sent and how often each was processed.
pub fn lost_and_duplicated(sent: &[String], processed: &HashMap<String, i64>) -> (usize, i64) {
    let lost = sent
        .iter()
        .filter(|id| !processed.contains_key(*id))
        .count();
    let duplicated = processed.values().map(|n| (n - 1).max(0)).sum();
    (lost, duplicated)
}

/// The one-line figure of a scenario, in a fixed shape that RELIABILITY.md quotes.
pub fn report(
    scenario: &str,
    broker: &str,
    messages: usize,
    lost: usize,
    duplicated: i64,
    recovery: Option<Duration>,
    extra: &str,
) {
    let recovery = recovery.map_or("-".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()));
    eprintln!(
        "CHAOS {scenario} broker={broker} messages={messages} lost={lost} duplicated={duplicated} recovery={recovery} {extra}"
    );
}

/// Adds one to `field` of the hash `key` (`HINCRBY`): how a handler records what it finished
/// in Redis, so that a process killed mid-run leaves an exact record of it.
pub async fn count_in_hash(
    conn: &RedisConnection,
    key: &str,
    field: &str,
) -> redis::RedisResult<i64> {
    let mut m = conn.manager();
    redis::cmd("HINCRBY")
        .arg(key)
        .arg(field)
        .arg(1)
        .query_async(&mut m)
        .await
}

/// Writes a child's run summary (fetched, acked, released, unsettled, then `extra`) into the
/// hash `key`, for its parent test to read once the child has exited.
pub async fn save_summary(
    conn: &RedisConnection,
    key: &str,
    s: &RunSummary,
    extra: &[(&str, String)],
) {
    let fields = [
        ("fetched", s.fetched.to_string()),
        ("acked", s.acked.to_string()),
        ("released", s.released.to_string()),
        ("unsettled", s.unsettled.to_string()),
    ];
    let mut args = vec!["HSET", key];
    for (k, v) in fields.iter().chain(extra) {
        args.extend([*k, v.as_str()]);
    }
    let _: i64 = query(conn, &args).await;
}

/// A worker that records each processed message id in the Redis hash `processed`
/// ([`count_in_hash`]), after sleeping its delay: the handler of workers that a test kills.
#[derive(Clone)]
pub struct Record {
    conn: RedisConnection,
    delay: Duration,
}

impl Record {
    /// Records on `conn`, with no delay.
    pub fn new(conn: &RedisConnection) -> Self {
        Self {
            conn: conn.clone(),
            delay: Duration::ZERO,
        }
    }

    /// Sleeps `delay` per message before recording it.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl Worker for Record {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        tokio::time::sleep(self.delay).await;
        count_in_hash(&self.conn, "processed", msg.id()).await?;
        Ok(())
    }
}

/// What [`Record`] recorded: id → times processed.
pub async fn recorded(conn: &RedisConnection) -> HashMap<String, i64> {
    crate::cmd(conn, &["HGETALL", "processed"]).await
}

/// The body of a crash test's worker child (started by [`kill_recording_child`]): connects to
/// the `url` of its [`ChildSpec`], names the consumer of `broker(conn)` in the key
/// `child-consumer`, then runs it with a [`Record`] (3 ms a message, 32 at a time, batches of
/// 64) until it is killed.
pub async fn run_recording_child<B: Broker>(
    broker: impl FnOnce(&RedisConnection) -> B,
    consumer: impl FnOnce(&B) -> String,
) {
    let spec = ChildSpec::from_env().expect("run by its parent test");
    let url = spec.get("url").expect("the parent passes its url");
    let conn = RedisConnection::connect(RedisConfig::from_url(url).unwrap())
        .await
        .unwrap();
    let broker = broker(&conn);
    let (): () = crate::cmd(&conn, &["SET", "child-consumer", &consumer(&broker)]).await;
    WorkerRuntime::new(
        broker,
        Record::new(&conn).with_delay(Duration::from_millis(3)),
    )
    .with_concurrency(32)
    .with_batch_size(64)
    .run()
    .await
    .unwrap();
}

/// Starts the child test `entry` ([`run_recording_child`]) against `server`, waits until it
/// has recorded 500 messages, SIGKILLs it (no drain, no release, no goodbye) and returns the
/// name of the consumer it killed.
pub async fn kill_recording_child(
    entry: &str,
    server: &RedisServer,
    conn: &RedisConnection,
) -> String {
    let child = ChildWorker::spawn(entry, &ChildSpec::new().set("url", server.url()));
    crate::eventually(
        Duration::from_secs(20),
        "the child to process 500",
        || async {
            let n: i64 = crate::cmd(conn, &["HLEN", "processed"]).await;
            n >= 500
        },
    )
    .await;
    child.kill().await;
    crate::cmd(conn, &["GET", "child-consumer"]).await
}

/// A worker that counts each processed message id in process memory, for runtimes that run in
/// the test process (a Redis outage must not make recording fail).
#[derive(Clone, Default)]
pub struct Tally {
    seen: Arc<Mutex<HashMap<String, i64>>>,
    total: Arc<AtomicU64>,
    delay: Duration,
}

impl Tally {
    /// A tally whose handler sleeps `delay` per message first.
    pub fn with_delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// Deliveries processed so far (duplicates included).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Distinct message ids processed so far.
    pub fn distinct(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Id → times processed.
    pub fn counts(&self) -> HashMap<String, i64> {
        self.seen.lock().unwrap().clone()
    }
}

impl Worker for Tally {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        *self
            .seen
            .lock()
            .unwrap()
            .entry(msg.id().to_owned())
            .or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Watches a progress counter and remembers the longest time it stood still: a stall shows as a
/// long gap even when the run finishes in the end.
pub struct GapWatch {
    last_value: u64,
    last_change: Instant,
    longest: Duration,
}

impl GapWatch {
    pub fn new(value: u64) -> Self {
        Self {
            last_value: value,
            last_change: Instant::now(),
            longest: Duration::ZERO,
        }
    }

    pub fn observe(&mut self, value: u64) {
        let now = Instant::now();
        if value != self.last_value {
            self.longest = self.longest.max(now - self.last_change);
            self.last_value = value;
            self.last_change = now;
        }
    }

    pub fn longest(&self) -> Duration {
        self.longest
    }
}

/// `VmRSS` of this process in KiB, from `/proc/self/status`.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The value of `field` in an `INFO` reply.
pub fn info_field(info: &str, field: &str) -> Option<u64> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Settings of a worker child process, passed through [`CHILD_ENV`].
#[derive(Debug, Clone, Default)]
pub struct ChildSpec(pub Vec<(String, String)>);

impl ChildSpec {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn set(mut self, k: &str, v: impl ToString) -> Self {
        self.0.push((k.to_owned(), v.to_string()));
        self
    }

    fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The settings this process was started with, if it is a chaos child.
    pub fn from_env() -> Option<Self> {
        let raw = std::env::var(CHILD_ENV).ok()?;
        Some(Self(
            raw.split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn num(&self, k: &str, default: u64) -> u64 {
        self.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
    }
}

/// A worker process: this test binary re-executed with only the test `entry` selected and
/// [`CHILD_ENV`] set. Killed when dropped, so a failing test leaves no process behind.
pub struct ChildWorker {
    child: tokio::process::Child,
    pub pid: u32,
    pub started: Instant,
    pub log: PathBuf,
}

impl ChildWorker {
    pub fn spawn(entry: &str, spec: &ChildSpec) -> Self {
        Self::spawn_wrapped(entry, spec, &[], &[])
    }

    /// [`spawn`](Self::spawn) under a wrapper command (`["faketime", "-f", "+1h"]`), with
    /// extra environment variables.
    pub fn spawn_wrapped(
        entry: &str,
        spec: &ChildSpec,
        wrapper: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let log = log_dir().join(format!(
            "chaos-{entry}-{}-{:x}.log",
            std::process::id(),
            fastrand::u32(..)
        ));
        let file = std::fs::File::create(&log).expect("child log file");
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => tokio::process::Command::new(&exe),
        };
        let child = cmd
            .args([
                entry,
                "--ignored",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(envs.iter().copied())
            .env(CHILD_ENV, spec.encode())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the worker child");
        let pid = child.id().expect("a running child has a pid");
        Self {
            child,
            pid,
            started: Instant::now(),
            log,
        }
    }

    /// SIGKILL: no drain, no hand-back, no goodbye. Returns once the process is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        within(10, "a SIGKILLed child to exit", self.child.wait())
            .await
            .unwrap();
        let _ = std::fs::remove_file(&self.log);
    }

    /// SIGTERM: the runtime's graceful shutdown.
    pub fn terminate(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM {}", self.pid);
    }

    /// Waits for the process to exit (failing the test after `secs`).
    pub async fn wait(&mut self, secs: u64) -> ExitStatus {
        within(secs, "the worker child to exit", self.child.wait())
            .await
            .unwrap()
    }

    /// The child's stderr so far (panics, test harness output), for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Where child logs go: `target/tmp`, next to the test binaries (`target/<profile>/deps/…`), as
/// Cargo's `CARGO_TARGET_TMPDIR` for integration tests; the system's temporary directory when the
/// binary lives elsewhere.
fn log_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .ancestors()
        .nth(3)
        .map_or_else(std::env::temp_dir, |target| target.join("tmp"));
    std::fs::create_dir_all(&dir).expect("child log directory");
    dir
}
