//! One `redis-server` process of a test topology (a cluster node, a sentinel): spawned in its
//! own directory with its output in `redis.log` there, trusted only once the server answering
//! on its port reports the child's own process id, and queried with one-shot blocking
//! connections so that a killed neighbour never leaves a broken connection behind.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a spawned server may take to serve on its port.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect timeout of the one-shot query connections (loopback: a refusal is immediate).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Read and write timeout of the one-shot query connections.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeouts of the probe that asks a new server for its process id: short, as a foreign
/// process on the port may accept the connection and never answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// A `redis-server` child process, SIGKILLed and its directory removed when dropped.
pub struct RedisProcess {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisProcess {
    /// Spawns `redis-server <args>` in `dir` (created) and waits until it serves on `port`.
    ///
    /// `Err` (the process killed, `dir` removed) when it exits first, typically because the
    /// port was taken since it was chosen, or when another process answers on `port`: the
    /// caller picks another port and tries again.
    pub fn spawn(args: &[OsString], port: u16, dir: PathBuf) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("redis.log"))
            .map_err(|e| format!("creating the log in {}: {e}", dir.display()))?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let mut process = Self {
            port,
            dir,
            child: None,
        };
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(&process.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                format!(
                    "redis-server not runnable ({e}); install it: apt-get install -y redis-server"
                )
            })?;
        let pid = child.id();
        process.child = Some(child);
        let deadline = Instant::now() + SERVE_TIMEOUT;
        loop {
            // A server that cannot bind its port exits within milliseconds: look for that
            // before asking the port, which may be another process's.
            std::thread::sleep(Duration::from_millis(10));
            if let Some(c) = process.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!(
                    "redis-server on port {port} exited at start ({status}); its log ends:\n{}",
                    process.log_tail(10)
                ));
            }
            if let Ok(info) = query_within::<String>(PROBE_TIMEOUT, port, &["INFO", "server"]) {
                if info_field(&info, "process_id") == Some(pid.to_string().as_str()) {
                    return Ok(process);
                }
                return Err(format!("port {port} is served by another process"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {port} did not serve within {SERVE_TIMEOUT:?}; its log ends:\n{}",
                    process.log_tail(10)
                ));
            }
        }
    }

    /// The port it serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its directory (its `redis.log`, any config file it writes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// False once [`kill`](Self::kill)ed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("redis.log"), lines)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs one command on a fresh blocking connection to `127.0.0.1:port`.
pub fn query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> redis::RedisResult<T> {
    query_within(IO_TIMEOUT, port, args)
}

fn query_within<T: redis::FromRedisValue>(
    timeout: Duration,
    port: u16,
    args: &[&str],
) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(timeout.min(CONNECT_TIMEOUT))?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
}

/// The value of `field` in an `INFO` reply (`role` in `role:master`).
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')
            .map(str::trim_end)
    })
}

/// Whether `port` can be bound on 127.0.0.1 right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Polls `check` every 20 ms until it is `Ok` or `within` passes; the `Err` then names `what`
/// and the last thing `check` saw wrong.
pub fn wait_until(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(last) if Instant::now() > deadline => {
                return Err(format!("{what}: not within {within:?}; last seen: {last}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs blocking harness code from sync or async tests: in a multi-thread tokio runtime it
/// goes through `block_in_place`, so the tasks of the test (a worker under test) keep running
/// on another thread while the harness waits out a failover.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The last `lines` lines of a file, ANSI colour codes removed (redis-cli colours its output
/// even into a file).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(no {}: {e})", path.display()));
    let plain = strip_ansi(&text);
    let all: Vec<&str> = plain.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence: ESC '[' parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
