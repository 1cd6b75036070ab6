//! Logs: RUST_LOG is the filter when PYTHIA_LOG is unset; no colour codes when stderr is not a
//! terminal; with --log-format json the errors that end a command are JSON lines too.

mod common;
use pythia_test_support as support;

use std::process::{Output, Stdio};

use common::{command, free_port, text};
use support::RedisServer;

/// `pythia ARGS` with stderr piped (not a terminal) and `env` set on a clean environment.
fn pythia_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command(args);
    c.env_remove("REDIS_URL")
        .env_remove("PYTHIA_QUEUE")
        .env_remove("PYTHIA_LOG")
        .env_remove("PYTHIA_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn rust_log_is_the_filter_when_pythia_log_is_unset_and_pipes_get_no_colour() {
    let server = RedisServer::start();
    let url = server.url();
    let run = [
        "run",
        "--redis-url",
        &url,
        "--queue",
        "q",
        "--burst",
        "--metrics-addr",
        "off",
    ];
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let default = pythia_env(&run, &[]);
    assert!(default.status.success(), "{}", text(&default));
    assert!(
        stderr(&default).contains("worker started"),
        "{}",
        text(&default)
    );
    assert!(
        !stderr(&default).contains('\x1b'),
        "colour codes in a pipe: {}",
        text(&default)
    );

    let quiet = pythia_env(&run, &[("RUST_LOG", "warn")]);
    assert!(quiet.status.success(), "{}", text(&quiet));
    assert!(
        !stderr(&quiet).contains("worker started"),
        "{}",
        text(&quiet)
    );

    // PYTHIA_LOG (or --log) wins over RUST_LOG.
    let chosen = pythia_env(&run, &[("RUST_LOG", "warn"), ("PYTHIA_LOG", "info")]);
    assert!(
        stderr(&chosen).contains("worker started"),
        "{}",
        text(&chosen)
    );
    let chosen = pythia_env(
        &[&run[..], &["--log", "info"]].concat(),
        &[("RUST_LOG", "warn")],
    );
    assert!(
        stderr(&chosen).contains("worker started"),
        "{}",
        text(&chosen)
    );
}

/// Arguments, environment, the exit code and a part of the error message.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], u8, &'a str);

/// Each line of stderr as JSON; panics on a line that is not.
fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", text(o)))
        })
        .collect()
}

#[test]
fn start_up_errors_are_json_lines_with_log_format_json() {
    let dir = std::env::temp_dir().join(format!("pythia-logs-{:x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_config = dir.join("worker.toml");
    std::fs::write(&bad_config, "queue = \"q\"\nno_such_flag = 1\n").unwrap();
    let unreachable = format!("redis://127.0.0.1:{}", free_port());
    let cases: [Case; 4] = [
        (
            &[
                "--log-format",
                "json",
                "run",
                "--queue",
                "q",
                "--broker",
                "carrier-pigeon",
            ],
            &[],
            2,
            "carrier-pigeon",
        ),
        (
            &["run", "--config", bad_config.to_str().unwrap()],
            &[("PYTHIA_LOG_FORMAT", "json")],
            2,
            "no_such_flag",
        ),
        (
            &[
                "produce",
                "--log-format=json",
                "--queue",
                "q",
                "--redis-url",
                "http://x",
                "m",
            ],
            &[],
            2,
            "invalid Redis URL",
        ),
        (
            &[
                "inspect",
                "--log-format",
                "json",
                "--queue",
                "q",
                "--redis-url",
                &unreachable,
                "--connect-timeout",
                "300ms",
            ],
            &[],
            69,
            "cannot connect to Redis",
        ),
    ];
    for (args, env, code, what) in cases {
        let o = pythia_env(args, env);
        assert_eq!(
            o.status.code(),
            Some(i32::from(code)),
            "{args:?}: {}",
            text(&o)
        );
        let lines = json_lines(&o);
        let last = lines
            .last()
            .unwrap_or_else(|| panic!("{args:?}: no output"));
        assert_eq!(last["level"], "ERROR", "{last}");
        assert_eq!(last["fields"]["exit_code"], code, "{last}");
        let message = last["fields"]["message"].as_str().unwrap();
        assert!(message.contains(what), "{args:?}: {last}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
