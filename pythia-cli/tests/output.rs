//! A closed stdout (`pythia … | head`) against a real redis-server: the print handler stops the
//! worker like SIGTERM and hands the unprinted messages back, never failing them; every command
//! that prints exits 141 (as if killed by SIGPIPE) instead of panicking.

mod common;
use pythia_test_support as support;

use common::{command, produce, text};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{RedisServer, cmd};

/// The exit code of a command whose stdout was closed: 128 + SIGPIPE, what a shell reports
/// for a program SIGPIPE killed.
const EXIT_OUTPUT_CLOSED: i32 = 141;

/// Reads the child's stderr on a thread (a full pipe would block it), to be joined at exit.
fn collect_stderr(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let mut from = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut from, &mut s);
        s
    })
}

fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("exited, not killed");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pythia did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pythia run --burst HANDLER | head -n 3` over `n` messages: the worker must exit 141, fail
/// nothing, and leave every message printed (acked) or back in the queue.
async fn closed_pipe_hands_messages_back(queue: &str, n: usize, handler: &[&str]) {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let o = produce(&url, &["--queue", queue, "--count", &n.to_string()]);
    assert!(o.status.success(), "{}", text(&o));

    let mut child = command([
        "run",
        "--redis-url",
        &url,
        "--queue",
        queue,
        "--burst",
        "--metrics-addr",
        "off",
        "--log",
        "warn",
    ])
    .args(handler)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = collect_stderr(&mut child);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        lines.next().unwrap().unwrap();
    }
    drop(lines); // closes the read end, as `head` does when it has its lines
    let code = wait_with_deadline(&mut child, Duration::from_secs(60));
    let stderr = stderr.join().unwrap();
    assert_eq!(code, EXIT_OUTPUT_CLOSED, "{handler:?}: {stderr}");

    let dead: i64 = cmd(&conn, &["LLEN", &format!("pythia:{{{queue}}}:dlq")]).await;
    assert_eq!(dead, 0, "nothing dead-lettered: {stderr}");
    assert!(
        stderr.contains("retried 0, dead-lettered 0"),
        "no message failed: {stderr}"
    );
    let acked: u64 = stderr
        .split("acked ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a summary on stderr: {stderr}"));
    let left: u64 = cmd(&conn, &["LLEN", queue]).await;
    assert!(left > 0, "the pipe cannot have taken all {n}: {stderr}");
    assert_eq!(
        left + acked,
        n as u64,
        "every message printed (acked) or back in the queue: {stderr}"
    );
    let keys: Vec<String> = cmd(&conn, &["KEYS", &format!("pythia:{{{queue}}}:*")]).await;
    for key in keys {
        let t: String = cmd(&conn, &["TYPE", &key]).await;
        let n: i64 = match t.as_str() {
            "list" => cmd(&conn, &["LLEN", &key]).await,
            "zset" => cmd(&conn, &["ZCARD", &key]).await,
            _ => 0,
        };
        assert!(
            n == 0 || key.ends_with(":consumers") || key.ends_with(":seq"),
            "{key} holds {n}: nothing in flight or scheduled"
        );
    }
}

#[tokio::test]
async fn print_to_a_closed_pipe_hands_messages_back_and_exits_141() {
    closed_pipe_hands_messages_back("pq", 20_000, &["--handler", "print"]).await;
}

#[tokio::test]
async fn exec_output_to_a_closed_pipe_hands_messages_back_and_exits_141() {
    // The command writes to the worker's stdout: `pythia run --exec cat | head` (each line
    // ~100 bytes, so 2,000 overflow the 64 KiB pipe).
    closed_pipe_hands_messages_back("xq", 2_000, &["--exec", "cat; echo"]).await;
}

#[tokio::test]
async fn commands_that_print_exit_141_on_a_closed_pipe_instead_of_panicking() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let dead: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"body":"dead {i}","error":"x"}}"#))
        .collect();
    for d in &dead {
        let _: i64 = cmd(&conn, &["RPUSH", "pythia:{dq}:dlq", d]).await;
    }
    for args in [
        vec![
            "dlq",
            "list",
            "--redis-url",
            &url,
            "--queue",
            "dq",
            "--json",
        ],
        vec!["dlq", "list", "--redis-url", &url, "--queue", "dq"],
        vec!["inspect", "--redis-url", &url, "--queue", "dq", "--json"],
        vec!["doctor", "--redis-url", &url],
        vec![
            "produce",
            "--redis-url",
            &url,
            "--queue",
            "pp",
            "--print-ids",
            "a",
            "b",
        ],
    ] {
        // `| head -c 0`: the reader is gone before the first byte is written.
        let mut child = command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let stderr = collect_stderr(&mut child);
        let code = wait_with_deadline(&mut child, Duration::from_secs(20));
        let stderr = stderr.join().unwrap();
        assert_eq!(code, EXIT_OUTPUT_CLOSED, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    // `pythia … 2>&1 | head -c 0`: the error message cannot be written; the exit code still
    // says what happened (2: bad input), not a panic's 101.
    let mut child = command(["inspect", "--redis-url", "http://nope", "--queue", "q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let code = wait_with_deadline(&mut child, Duration::from_secs(20));
    assert_eq!(code, 2);
}
