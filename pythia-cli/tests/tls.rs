//! `rediss://` with the default build of `pythia`: a real TLS-only redis-server with a private
//! CA (trusted through REDIS_TLS_CA_FILE), and `--version` naming the commit and features.

#![cfg(feature = "tls")]

mod common;
use pythia_test_support as support;

use std::process::{Output, Stdio};

use common::{command, text};
use support::tls::start_tls_redis;

/// `pythia ARGS` with REDIS_TLS_CA_FILE set to `ca` (or unset).
fn pythia_tls(ca: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut c = command(args);
    c.env_remove("REDIS_URL")
        .env_remove("PYTHIA_QUEUE")
        .env_remove("REDIS_TLS_CA_FILE")
        .stdin(Stdio::null());
    if let Some(ca) = ca {
        c.env("REDIS_TLS_CA_FILE", ca);
    }
    c.output().unwrap()
}

#[test]
fn produce_and_run_over_rediss_with_a_private_ca() {
    let server = start_tls_redis();
    let url = server.url();
    let ca = server.ca_file();

    let o = pythia_tls(
        Some(&ca),
        &[
            "produce",
            "--redis-url",
            &url,
            "--queue",
            "secure",
            "a",
            "b",
            "c",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = pythia_tls(
        Some(&ca),
        &[
            "run",
            "--redis-url",
            &url,
            "--queue",
            "secure",
            "--burst",
            "--metrics-addr",
            "off",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let mut bodies: Vec<&str> = stdout.lines().collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["a", "b", "c"], "{}", text(&o));
    assert!(text(&o).contains("processed 3"), "{}", text(&o));

    // Certificates are verified: the private CA is not among the system's roots. An untrusted
    // certificate is a configuration error (exit 2 at once), not an outage to wait out.
    for args in [
        &["inspect", "--queue", "secure"][..],
        &[
            "run",
            "--queue",
            "secure",
            "--metrics-addr",
            "off",
            "--connect-timeout",
            "5s",
        ][..],
    ] {
        let started = std::time::Instant::now();
        let o = pythia_tls(None, &[args, &["--redis-url", &url]].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{args:?} waited: {}",
            text(&o)
        );
        assert!(
            text(&o).contains("invalid peer certificate"),
            "{}",
            text(&o)
        );
        assert!(!text(&o).contains("not reachable yet"), "{}", text(&o));
    }
}

#[test]
fn version_names_the_commit_and_the_tls_feature() {
    let o = pythia_tls(None, &["--version"]);
    assert!(o.status.success(), "{}", text(&o));
    let line = String::from_utf8_lossy(&o.stdout);
    assert!(
        line.starts_with(&format!("pythia {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains("features: tls"), "{line}");
    // Built from this checkout: the commit is known (it is `unknown` only without .git).
    assert!(!line.contains("commit unknown"), "{line}");
}
