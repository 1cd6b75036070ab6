//! Helpers shared by the CLI's integration tests: run the real `pythia` binary with a clean
//! environment, describe its output in assertion messages, pick free ports.

#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output, Stdio};

/// Runs `pythia ARGS` to completion, without the environment variables that would change its
/// defaults (REDIS_URL, PYTHIA_BROKER, PYTHIA_QUEUE, PYTHIA_DASHBOARD_TOKEN) and with no stdin.
pub fn pythia(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pythia"))
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("PYTHIA_BROKER")
        .env_remove("PYTHIA_QUEUE")
        .env_remove("PYTHIA_DASHBOARD_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap()
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
