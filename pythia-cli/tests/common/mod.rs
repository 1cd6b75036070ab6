//! Helpers shared by the CLI's integration tests: run the real `pythia` binary with a clean
//! environment (`produce` and a burst `run` against a test's server in one call), describe its
//! output in assertion messages, pick free ports, scrape `/metrics`.

#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `pythia ARGS`, not started yet, without the environment variables that would change its
/// defaults (REDIS_URL, PYTHIA_BROKER, PYTHIA_QUEUE, PYTHIA_DASHBOARD_TOKEN) and with no stdin:
/// for a test that spawns a long-running process or sets more of its environment.
pub fn command<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pythia"));
    c.args(args)
        .env_remove("REDIS_URL")
        .env_remove("PYTHIA_BROKER")
        .env_remove("PYTHIA_QUEUE")
        .env_remove("PYTHIA_DASHBOARD_TOKEN")
        .stdin(Stdio::null());
    c
}

/// Runs `pythia ARGS` to completion (see [`command`] for its environment).
pub fn pythia(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

/// Runs `pythia ARGS` to completion with `input` on a piped stdin.
pub fn pythia_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `pythia COMMAND --redis-url URL ARGS…`, where `command` is the subcommand's words
/// (`"dlq replay"`).
pub fn pythia_on(url: &str, command: &str, args: &[&str]) -> Output {
    let mut all: Vec<&str> = command.split_whitespace().collect();
    all.extend(["--redis-url", url]);
    all.extend_from_slice(args);
    pythia(&all)
}

/// `pythia produce --redis-url URL ARGS…`.
pub fn produce(url: &str, args: &[&str]) -> Output {
    pythia_on(url, "produce", args)
}

/// `pythia run --redis-url URL ARGS… --burst --metrics-addr off`: a worker that stops once its
/// queues are empty, with no metrics exporter to bind a port for.
pub fn run_burst(url: &str, args: &[&str]) -> Output {
    pythia(
        &[
            &["run", "--redis-url", url],
            args,
            &["--burst", "--metrics-addr", "off"],
        ]
        .concat(),
    )
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP GET; returns (status code, body). `None` when nothing listens.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}

/// The value of the sample `name{labels…}` whose labels include every `want` pair.
pub fn sample(scrape: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let (n, labels) = key.split_once('{').unwrap_or((key, ""));
        (n == name
            && want
                .iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\""))))
        .then(|| value.parse().ok())
        .flatten()
    })
}
