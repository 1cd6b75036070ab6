//! Two-way interop with the Python `pythia-framework` (the real package, pinned in
//! benches/peers/python, installed in a venv by tests/python_interop/setup_venv.sh), against a
//! real redis-server: Python producer → Rust `pythia run`, and Rust `pythia produce --wire
//! pythia-py` → Python Worker, on a list and on a stream; every message arrives with its body
//! and its headers.
//!
//! The venv is `$PYTHIA_PY_VENV`, else `~/.cache/pythia/interop-venv`; it is made if missing
//! (needs python3 with venv and PyPI), and reused as it is when it imports `pythia`.

mod common;
use pythia_test_support as support;

use common::command;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use support::RedisServer;

const N: usize = 20;

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python_interop")
}

/// The venv's python, made once per test binary.
fn python() -> &'static PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = std::env::var_os("PYTHIA_PY_VENV").map_or_else(
            || {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                    .join(".cache/pythia/interop-venv")
            },
            PathBuf::from,
        );
        let o = Command::new("bash")
            .arg(here().join("setup_venv.sh"))
            .arg(&venv)
            .output()
            .unwrap();
        assert!(o.status.success(), "setting up the venv failed: {o:?}");
        venv.join("bin/python")
    })
}

fn py(script: &str, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(python())
        .arg(here().join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{script} {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{script} {args:?}: {o:?}");
    o
}

/// Python producer → `pythia run --burst`: each message's body and headers, as the handler saw
/// them (`<body>|<tenant>|<seq>|<id>`), in the order handled. The Python producers RPUSH and
/// its consumers BLPOP: `--list-side left` is the same queue order.
fn python_to_rust(broker: &str) -> Vec<String> {
    let server = RedisServer::start();
    let port = server.port().to_string();
    py("produce.py", &[&port, broker, "interop", &N.to_string()]);
    let script = r#"printf '%s|%s|%s|%s\n' "$(cat)" "$PYTHIA_HEADER_TENANT" "$PYTHIA_HEADER_SEQ" "$PYTHIA_MESSAGE_ID""#;
    let o = command(["run", "--redis-url", &server.url(), "--queue", "interop"])
        .args(["--broker", if broker == "list" { "list" } else { "stream" }])
        .args([
            "--exec",
            script,
            "--concurrency",
            "1",
            "--burst",
            "--list-side",
            "left",
        ])
        .args(["--metrics-addr", "off", "--log", "warn"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn python_list_producer_to_rust_worker() {
    let got = python_to_rust("list");
    let want: Vec<String> = (0..N)
        .map(|i| format!("py-{i} é|acme|{i}|py-id-{i}"))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn python_stream_producer_to_rust_worker() {
    let got = python_to_rust("stream");
    // The message id of a stream entry is its entry id: the body and headers are checked.
    let got: BTreeSet<String> = got
        .iter()
        .map(|l| l.rsplit_once('|').unwrap().0.to_owned())
        .collect();
    let want: BTreeSet<String> = (0..N).map(|i| format!("py-{i} é|acme|{i}")).collect();
    assert_eq!(got, want);
}

/// `pythia produce --wire pythia-py` → a Python Worker: what it received, as JSON lines.
fn rust_to_python(broker: &str) -> Vec<serde_json::Value> {
    let server = RedisServer::start();
    let bodies: Vec<String> = (0..N).map(|i| format!("rs-{i} é \"q\"")).collect();
    let o = command([
        "produce",
        "--redis-url",
        &server.url(),
        "--queue",
        "interop",
    ])
    .args([
        "--broker",
        broker,
        "--wire",
        "pythia-py",
        "--list-side",
        "left",
    ])
    .args(["--header", "tenant=acme", "--header", "lang=rust"])
    .args(&bodies)
    .output()
    .unwrap();
    assert!(o.status.success(), "{o:?}");
    let port = server.port().to_string();
    let o = py("consume.py", &[&port, broker, "interop", &N.to_string()]);
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("RECEIVED "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn check_rust_to_python(got: &[serde_json::Value]) {
    // In order: the Python consumers handle one message at a time.
    let bodies: Vec<&str> = got.iter().map(|m| m["body"].as_str().unwrap()).collect();
    let want: Vec<String> = (0..N).map(|i| format!("rs-{i} é \"q\"")).collect();
    assert_eq!(bodies, want.iter().map(String::as_str).collect::<Vec<_>>());
    for m in got {
        assert_eq!(m["headers"]["tenant"], "acme", "{m}");
        assert_eq!(m["headers"]["lang"], "rust", "{m}");
        assert!(
            m["message_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{m}"
        );
    }
}

#[test]
fn rust_list_producer_to_python_worker() {
    let got = rust_to_python("list");
    check_rust_to_python(&got);
}

#[test]
fn rust_stream_producer_to_python_worker() {
    let got = rust_to_python("stream");
    check_rust_to_python(&got);
}
