//! The `exec-persistent` scenario: the reliable list drained by `--exec-persistent` children
//! running the Python reference client (`examples/persistent_child.py`, whose handler acks at
//! once), against the bare loop of the same children: the same request lines written to them
//! over pipes, with as many in flight, and their replies read back, without Redis or the
//! runtime.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use pythia::Message;
use pythia::redis::{RedisConnection, ReliableListBroker};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

use super::BenchChildArgs;
use super::child::{RunResult, drain};
use crate::commands::produce::numbered_body;
use crate::error::CliError;
use crate::exec::persistent::{PersistentExecWorker, default_children, protocol};

/// The Python reference client, as the bench runs it (`examples/persistent_child.py` links to
/// this file, so that the packaged crate holds it).
const CLIENT: &str = include_str!("../../../clients/persistent_child.py");

/// The reference client written to a temporary file (removed on drop).
struct ClientFile(PathBuf);

impl ClientFile {
    fn write() -> Result<Self, CliError> {
        let dir = std::env::temp_dir().join(format!("pythia-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(CliError::runtime)?;
        let path = dir.join("persistent_child.py");
        std::fs::write(&path, CLIENT).map_err(CliError::runtime)?;
        Ok(Self(path))
    }

    fn command(&self) -> String {
        format!("python3 '{}'", self.0.display())
    }
}

impl Drop for ClientFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether `python3` runs here (the scenario needs it).
pub(super) async fn python_available() -> bool {
    tokio::process::Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

fn children(args: &BenchChildArgs) -> usize {
    args.exec_children
        .map_or_else(default_children, usize::from)
}

/// The framework: `pythia run --exec-persistent` as the bench child runs it.
pub(super) async fn framework(
    conn: &RedisConnection,
    args: &BenchChildArgs,
) -> Result<RunResult, CliError> {
    let client = ClientFile::write()?;
    let worker = PersistentExecWorker::new(
        client.command(),
        &[],
        children(args),
        args.exec_in_flight as usize,
    );
    drain(ReliableListBroker::new(conn, &args.queue), worker, args).await
}

/// The bare loop: the same children fed the same request lines over pipes, `--exec-in-flight`
/// (and `--concurrency` in all) outstanding, each child's share of the messages written as the
/// window allows and its replies counted.
pub(super) async fn bare(args: &BenchChildArgs) -> Result<RunResult, CliError> {
    let client = ClientFile::write()?;
    let n = children(args);
    let window = (args.exec_in_flight as usize).min(args.concurrency.div_ceil(n).max(1));
    let mut procs = Vec::new();
    for _ in 0..n {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(client.command())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(CliError::runtime)?;
        procs.push(child);
    }
    // The requests are built before the clock starts, as the framework's are read from Redis
    // before they are handled: the loop measures the pipes and the child.
    let requests: Vec<Vec<Vec<u8>>> = (0..n)
        .map(|c| {
            (c as u64..args.messages)
                .step_by(n)
                .map(|i| {
                    let mut line = Vec::with_capacity(args.size + 96);
                    protocol::write_request(&mut line, &Message::new(numbered_body(i, args.size)));
                    line
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut child, lines) in procs.into_iter().zip(requests) {
        let mut stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let window = std::sync::Arc::new(Semaphore::new(window));
        let total = lines.len() as u64;
        let w = std::sync::Arc::clone(&window);
        let writer = tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut lines = lines.into_iter().peekable();
            while lines.peek().is_some() {
                // Wait for room for one, then take all the room there is: one write.
                let first = w.acquire().await.expect("open");
                first.forget();
                buf.clear();
                buf.extend_from_slice(&lines.next().expect("peeked"));
                let more = w.available_permits();
                for line in lines.by_ref().take(more) {
                    w.acquire().await.expect("open").forget();
                    buf.extend_from_slice(&line);
                }
                stdin.write_all(&buf).await?;
            }
            Ok::<_, std::io::Error>(stdin)
        });
        let reader = tokio::spawn(async move {
            let mut from = BufReader::with_capacity(64 * 1024, stdout);
            let mut line = Vec::new();
            let mut acked = 0u64;
            while acked < total {
                line.clear();
                if from.read_until(b'\n', &mut line).await? == 0 {
                    break;
                }
                if protocol::parse_reply(line.trim_ascii())
                    .is_ok_and(|r| r.verdict == protocol::Verdict::Ack)
                {
                    acked += 1;
                }
                window.add_permits(1);
            }
            Ok::<_, std::io::Error>(acked)
        });
        tasks.push((child, writer, reader));
    }
    let mut processed = 0;
    let mut children = Vec::new();
    for (child, writer, reader) in tasks {
        processed += reader
            .await
            .map_err(CliError::runtime)?
            .map_err(CliError::runtime)?;
        // Closing stdin ends the child.
        drop(writer.await.map_err(CliError::runtime)?);
        children.push(child);
    }
    let seconds = started.elapsed().as_secs_f64();
    for mut c in children {
        let _ = c.wait().await;
    }
    Ok(RunResult {
        processed,
        seconds,
        ..RunResult::default()
    })
}
