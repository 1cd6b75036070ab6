//! `pythia run --exec-persistent` end to end against a real redis-server, with the reference
//! clients of `examples/` (Python and Node) and with hand-written children that crash, hang or
//! write garbage: every message ends acked or dead-lettered, as the Redis state shows.

mod common;
use pythia_test_support as support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{command, pythia, text};
use pythia::redis::RedisConnection;
use support::{RedisServer, cmd, eventually};

/// The repository's `examples/` folder, where the reference clients live.
fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A fresh scratch directory for one test's handler files, removed when dropped (a failing
/// test leaves none behind either).
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!(
        "pythia-persistent-{name}-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// One test's redis-server, its URL and a connection, and its scratch directory `name`.
async fn setup(name: &str) -> (RedisServer, String, RedisConnection, Scratch) {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    (server, url, conn, scratch(name))
}

/// Writes the Python child `text` to `dir/file` (see [`write_script`]); returns the command
/// that runs it.
fn python_child(dir: &Path, file: &str, text: &str) -> String {
    format!("python3 {}", write_script(dir, file, text))
}

/// Writes `text` (with `{EXAMPLES}` and `{DIR}` filled in) to `dir/file`; returns its path.
fn write_script(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    let text = text
        .replace("{EXAMPLES}", examples().to_str().unwrap())
        .replace("{DIR}", dir.to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `pythia produce` of `bodies` to `queue`, with a tenant header.
fn produce(url: &str, queue: &str, bodies: &[&str]) {
    let mut args = vec![
        "produce",
        "--redis-url",
        url,
        "--queue",
        queue,
        "--header",
        "tenant=acme",
    ];
    args.extend_from_slice(bodies);
    let o = pythia(&args);
    assert!(o.status.success(), "{}", text(&o));
}

/// `pythia run --burst` over the reliable list `queue` with `extra` flags.
fn run_burst(url: &str, queue: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--redis-url",
        url,
        "--broker",
        "reliable-list",
        "--queue",
        queue,
        "--burst",
        "--retry-delay",
        "20ms",
        "--metrics-addr",
        "off",
        "--log",
        "warn",
    ];
    args.extend_from_slice(extra);
    pythia(&args)
}

/// `pythia run` (not a burst) over the list `queue` with the persistent `child` command and
/// `extra` flags, to be spawned and stopped by the test.
fn persistent_worker(url: &str, queue: &str, child: &str, extra: &[&str]) -> Command {
    let mut c = command([
        "run",
        "--redis-url",
        url,
        "--queue",
        queue,
        "--metrics-addr",
        "off",
        "--log",
        "warn",
        "--exec-persistent",
        child,
    ]);
    c.args(extra);
    c
}

/// The dead letters of `queue`, newest first.
async fn dead_letters(conn: &pythia::redis::RedisConnection, queue: &str) -> Vec<String> {
    cmd(
        conn,
        &["LRANGE", &format!("pythia:{{{queue}}}:dlq",), "0", "-1"],
    )
    .await
}

/// Nothing of `queue` is left waiting, scheduled or in flight.
async fn assert_nothing_left(conn: &pythia::redis::RedisConnection, queue: &str) {
    let left: i64 = cmd(conn, &["LLEN", queue]).await;
    assert_eq!(left, 0, "queued");
    let scheduled: i64 = cmd(conn, &["ZCARD", &format!("pythia:{{{queue}}}:scheduled")]).await;
    assert_eq!(scheduled, 0, "scheduled");
    let keys: Vec<String> = cmd(conn, &["KEYS", &format!("pythia:{{{queue}}}:inflight:*")]).await;
    for k in keys {
        let n: i64 = cmd(conn, &["HLEN", &k]).await;
        assert_eq!(n, 0, "in flight in {k}");
    }
}

/// Pushes a raw, non-UTF-8 body (`ff 00 61`) to `queue`.
async fn push_binary(conn: &pythia::redis::RedisConnection, queue: &str) {
    let mut m = conn.manager();
    let _: i64 = redis::cmd("LPUSH")
        .arg(queue)
        .arg(&[0xff_u8, 0x00, b'a'][..])
        .query_async(&mut m)
        .await
        .unwrap();
}

const PYTHON_HANDLER: &str = r#"
import os, sys
sys.path.insert(0, "{EXAMPLES}")
from persistent_child import serve, Retry, Reject

def handle(m):
    body = m["body"]
    if "REDIS_URL" in os.environ or os.environ.get("API_KEY") != "k" or "PYTHIA_CHILD" not in os.environ:
        raise Reject("wrong environment")
    if isinstance(body, bytes):
        if body != b"\xff\x00a":
            raise Reject("wrong bytes %r" % body)
        return
    if m["headers"].get("tenant") != "acme":
        raise Reject("no tenant header")
    if body == "bad":
        raise Reject("bad body")
    if body == "flaky" and m["attempt"] < 2:
        raise Retry("not yet", after=0.05)
    if body == "boom":
        raise ValueError("boom")
    print("handled", body)

serve(handle)
"#;

const NODE_HANDLER: &str = r#"
const { serve, Retry, Reject } = require("{EXAMPLES}/persistent_child.js");

serve(async (m) => {
  const body = m.body;
  if (process.env.REDIS_URL !== undefined || process.env.API_KEY !== "k" || process.env.PYTHIA_CHILD === undefined)
    throw new Reject("wrong environment");
  if (Buffer.isBuffer(body)) {
    if (!body.equals(Buffer.from([0xff, 0x00, 0x61]))) throw new Reject("wrong bytes");
    return;
  }
  if (m.headers.tenant !== "acme") throw new Reject("no tenant header");
  if (body === "bad") throw new Reject("bad body");
  if (body === "flaky" && m.attempt < 2) throw new Retry("not yet", 0.05);
  if (body === "boom") throw new Error("boom");
  await new Promise((r) => setTimeout(r, 1));
  console.log("handled", body);
});
"#;

/// Both reference clients: text and binary bodies, headers, attempts and the environment reach
/// the handler; its return acks, Reject dead-letters with the reason, Retry and other errors
/// retry; print()/console.log() output reaches stderr with the child's prefix.
#[tokio::test]
async fn the_python_and_node_reference_clients_ack_retry_and_reject() {
    let (_server, url, conn, dir) = setup("clients").await;
    let py = write_script(&dir, "handler.py", PYTHON_HANDLER);
    let js = write_script(&dir, "handler.js", NODE_HANDLER);
    for (lang, child_command) in [
        ("python", format!("python3 {py}")),
        ("node", format!("node {js}")),
    ] {
        let q = format!("pc-{lang}");
        let bodies: Vec<String> = (0..200).map(|i| format!("job-{i}")).collect();
        let mut all: Vec<&str> = bodies.iter().map(String::as_str).collect();
        all.extend(["bad", "flaky", "boom"]);
        produce(&url, &q, &all);
        push_binary(&conn, &q).await;
        let o = command([
            "run",
            "--broker",
            "reliable-list",
            "--queue",
            &q,
            "--burst",
            "--retry-delay",
            "20ms",
            "--max-attempts",
            "2",
            "--metrics-addr",
            "off",
            "--log",
            "warn",
            "--exec-persistent",
            &child_command,
            "--exec-children",
            "2",
            "--exec-in-flight",
            "16",
            "--pass-env",
            "API_KEY",
        ])
        .env("REDIS_URL", &url)
        .env("API_KEY", "k")
        .output()
        .unwrap();
        let out = text(&o);
        assert!(o.status.success(), "{lang}: {out}");
        // 200 jobs + binary + flaky acked; bad rejected; boom retried, then dead-lettered;
        // flaky retried once.
        assert!(
            out.contains("processed 206 (acked 202, retried 2, dead-lettered 2)"),
            "{lang}: {out}"
        );
        let dead = dead_letters(&conn, &q).await;
        assert_eq!(dead.len(), 2, "{lang}: {dead:?}");
        assert!(
            dead.iter()
                .any(|d| d.contains(r#""body":"bad""#) && d.contains("rejected it: bad body")),
            "{lang}: {dead:?}"
        );
        assert!(
            dead.iter()
                .any(|d| d.contains(r#""body":"boom""#) && d.contains("boom")),
            "{lang}: {dead:?}"
        );
        assert!(
            !out.contains("wrong environment") && !out.contains("wrong bytes"),
            "{out}"
        );
        let program = if lang == "python" { "python3" } else { "node" };
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("[{program} #")) && l.ends_with("handled job-7")),
            "{lang}: {stderr}"
        );
        assert_nothing_left(&conn, &q).await;
    }
}

/// A child that exits in the middle of a message, with others in flight behind it: each of
/// them is retried, the crashing one is dead-lettered by policy, every other one is handled;
/// none is lost or acked unhandled. On its first attempt the crashing message waits for the
/// next request before the exit, so that the child provably dies holding two messages.
#[tokio::test]
async fn a_child_that_crashes_mid_message_loses_nothing() {
    let (_server, url, conn, dir) = setup("crash").await;
    let child = python_child(
        &dir,
        "crash.py",
        r#"
import json, os, sys

log = open(os.path.join("{DIR}", "handled-%d" % os.getpid()), "a")
crash_on_next = False
for line in sys.stdin:
    m = json.loads(line)
    if crash_on_next:
        print("about to crash holding", m["body"], file=sys.stderr, flush=True)
        os._exit(3)
    if m["body"] == "crash":
        if m["attempt"] == 1:
            crash_on_next = True
            continue
        print("about to crash", file=sys.stderr, flush=True)
        os._exit(3)
    log.write(m["body"] + "\n")
    log.flush()
    print(json.dumps({"id": m["id"], "outcome": "ack"}), flush=True)
"#,
    );
    let q = "crashy";
    let bodies: Vec<String> = (0..400).map(|i| format!("job-{i}")).collect();
    let mut all: Vec<&str> = bodies.iter().map(String::as_str).collect();
    all.insert(150, "crash");
    produce(&url, q, &all);
    let o = run_burst(
        &url,
        q,
        &[
            "--max-attempts",
            "3",
            "--exec-persistent",
            &child,
            "--exec-children",
            "1",
            "--exec-in-flight",
            "64",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("processed "))
        .unwrap_or_else(|| panic!("{out}"));
    let count = |what: &str| -> u64 {
        let at = summary.find(what).unwrap_or_else(|| panic!("{summary}")) + what.len();
        summary[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (acked, retried, dead) = (count("acked "), count("retried "), count("dead-lettered "));
    assert_eq!(acked + dead, 401, "{summary}");
    assert!(
        retried >= 2,
        "the crash and what was in flight behind it: {summary}"
    );
    let dead_letters = dead_letters(&conn, q).await;
    assert_eq!(dead_letters.len() as u64, dead, "{dead_letters:?}");
    assert!(
        dead_letters
            .iter()
            .all(|d| d.contains("exited 3") && d.contains("about to crash")),
        "dead letters name the exit and the end of stderr: {dead_letters:?}"
    );
    assert!(
        dead_letters.iter().any(|d| d.contains(r#""body":"crash""#)),
        "{dead_letters:?}"
    );
    // Every job was handled by some child, or dead-lettered.
    let mut handled = HashSet::new();
    for entry in std::fs::read_dir(&*dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("handled-")
        {
            handled.extend(
                std::fs::read_to_string(path)
                    .unwrap()
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    for b in &bodies {
        assert!(
            handled.contains(b)
                || dead_letters
                    .iter()
                    .any(|d| d.contains(&format!("\"body\":\"{b}\""))),
            "{b} lost"
        );
    }
    assert_nothing_left(&conn, q).await;
}

/// A raw child (no reference client): a line that is not a reply stops and restarts it, and
/// the messages it held are retried; a reply for a message it does not hold is ignored.
#[tokio::test]
async fn a_line_that_is_not_a_reply_restarts_the_child_and_retries_its_messages() {
    let (_server, url, conn, dir) = setup("garbage").await;
    let child = python_child(
        &dir,
        "raw.py",
        r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m["body"] == "garbage" and m["attempt"] == 1:
        print("hello, I am not JSON", flush=True)
        continue
    if m["body"] == "twice":
        print(json.dumps({"id": m["id"], "outcome": "ack"}))
    print(json.dumps({"id": m["id"], "outcome": "ack"}), flush=True)
"#,
    );
    let q = "garbled";
    produce(&url, q, &["one", "garbage", "twice", "two"]);
    let o = run_burst(
        &url,
        q,
        &["--exec-persistent", &child, "--exec-children", "1"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("acked 4"), "{out}");
    assert!(out.contains("dead-lettered 0"), "{out}");
    assert!(
        out.contains("wrote a line that is not a reply") && out.contains("hello, I am not JSON"),
        "{out}"
    );
    assert!(
        out.contains("does not hold"),
        "the second reply is ignored: {out}"
    );
    assert!(dead_letters(&conn, q).await.is_empty());
    assert_nothing_left(&conn, q).await;
}

/// A message whose reply never comes fails at --timeout and is retried; the child, which
/// answered nothing meanwhile, is taken as hung and restarted.
#[tokio::test]
async fn a_reply_that_never_comes_times_out_and_the_hung_child_is_restarted() {
    let (_server, url, conn, dir) = setup("hang").await;
    let child = python_child(
        &dir,
        "hang.py",
        r#"
import json, sys, time
for line in sys.stdin:
    m = json.loads(line)
    if m["attempt"] == 1:
        time.sleep(3600)
    print(json.dumps({"id": m["id"], "outcome": "ack"}), flush=True)
"#,
    );
    let q = "hangs";
    produce(&url, q, &["stuck"]);
    let started = std::time::Instant::now();
    let o = run_burst(
        &url,
        q,
        &[
            "--timeout",
            "1s",
            "--exec-persistent",
            &child,
            "--exec-children",
            "1",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("processed 2 (acked 1, retried 1, dead-lettered 0)"),
        "{out}"
    );
    assert!(
        out.contains("answered nothing since a message it held was given up"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    assert_nothing_left(&conn, q).await;
}

/// A retry reply with `after` puts the message in the retry schedule at that delay.
#[tokio::test]
async fn a_retry_after_reply_schedules_the_message_at_that_delay() {
    let (_server, url, conn, dir) = setup("later").await;
    let child = python_child(
        &dir,
        "later.py",
        r#"
import sys
sys.path.insert(0, "{EXAMPLES}")
from persistent_child import serve, Retry

def handle(m):
    raise Retry("come back later", after=60)

serve(handle)
"#,
    );
    let q = "later";
    produce(&url, q, &["x"]);
    let mut worker = persistent_worker(&url, q, &child, &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let key = format!("pythia:{{{q}}}:scheduled");
    eventually(
        Duration::from_secs(20),
        "the retry is scheduled",
        || async {
            let n: i64 = cmd(&conn, &["ZCARD", &key]).await;
            n == 1
        },
    )
    .await;
    let scored: Vec<(String, f64)> = cmd(&conn, &["ZRANGE", &key, "0", "-1", "WITHSCORES"]).await;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let ahead = scored[0].1 - now_ms;
    assert!((50_000.0..=61_000.0).contains(&ahead), "due in {ahead} ms");
    let _ = worker.kill();
    let _ = worker.wait();
}

#[test]
fn exec_persistent_excludes_the_other_handlers() {
    for other in [
        &["--exec", "cat"][..],
        &["--http", "http://127.0.0.1:1/"],
        &["--handler", "noop"],
    ] {
        let mut args = vec!["run", "--queue", "q", "--exec-persistent", "cat"];
        args.extend_from_slice(other);
        let o = pythia(&args);
        assert_eq!(o.status.code(), Some(2), "{other:?}: {}", text(&o));
        assert!(text(&o).contains("cannot be used with"), "{}", text(&o));
    }
    let o = pythia(&["run", "--queue", "q", "--exec-children", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Ctrl-C in a terminal signals the whole foreground process group: the children must not die
/// with the worker's signal, but finish what they hold while the worker drains, then exit when
/// their stdin closes.
#[tokio::test]
async fn a_signal_to_the_process_group_lets_the_children_finish_their_messages() {
    use std::os::unix::process::CommandExt as _;
    let (_server, url, conn, dir) = setup("sigint").await;
    let child = python_child(
        &dir,
        "slow.py",
        r#"
import sys, time
sys.path.insert(0, "{EXAMPLES}")
from persistent_child import serve

serve(lambda m: time.sleep(1))
"#,
    );
    let q = "interrupted";
    produce(&url, q, &["a", "b"]);
    let worker = persistent_worker(&url, q, &child, &["--exec-children", "1"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let in_flight = format!("pythia:{{{q}}}:inflight:*");
    eventually(
        Duration::from_secs(20),
        "both messages in flight",
        || async {
            let keys: Vec<String> = cmd(&conn, &["KEYS", &in_flight]).await;
            let mut n = 0;
            for k in keys {
                n += cmd::<i64>(&conn, &["HLEN", &k]).await;
            }
            n == 2
        },
    )
    .await;
    let group = format!("-{}", worker.id());
    let sent = Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = worker.wait_with_output().unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("processed 2 (acked 2, retried 0, dead-lettered 0)"),
        "{out}"
    );
    assert!(!out.contains("killed by a signal"), "{out}");
    assert_nothing_left(&conn, q).await;
}

/// A command that cannot run (it exits at once, answering nothing) is restarted with a growing
/// backoff; its message waits for a child within --timeout, then takes the retry policy's way.
#[tokio::test]
async fn a_child_that_never_starts_is_restarted_with_backoff_and_its_message_times_out() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let q = "nostart";
    produce(&url, q, &["x"]);
    let o = run_burst(
        &url,
        q,
        &[
            "--timeout",
            "1s",
            "--max-attempts",
            "1",
            "--exec-persistent",
            "echo no such handler >&2; exit 127",
            "--exec-children",
            "1",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("processed 1 (acked 0, retried 0, dead-lettered 1)"),
        "{out}"
    );
    assert!(
        out.contains("`echo` (persistent child 0, pid")
            && out.contains("exited 127: no such handler"),
        "{out}"
    );
    assert!(
        out.contains("restarting the persistent child in 100ms")
            && out.contains("restarting the persistent child in 200ms"),
        "{out}"
    );
    let dead = dead_letters(&conn, q).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_nothing_left(&conn, q).await;
}
