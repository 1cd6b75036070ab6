//! Secrets stay where they belong, end to end against a real redis-server: an `--exec` child
//! sees only a safe environment (plus what `--pass-env` names), and failure reasons, which
//! reach the logs, the dead-letter queue and the dashboard, never carry the `--exec` command
//! line or the `--http` query (repro/e15_exec_env.sh, repro/e17_secret_in_dlq.sh).

mod common;
use pythia_test_support as support;

use common::{command, text};
use std::process::Output;

use support::{RedisServer, cmd};

/// `pythia run --burst` on `queue` with `extra` flags, in an environment holding secrets.
fn run_with_secrets(url: &str, queue: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    command([
        "run",
        "--redis-url",
        url,
        "--queue",
        queue,
        "--burst",
        "--max-attempts",
        "1",
        "--metrics-addr",
        "off",
        "--log",
        "warn",
    ])
    .args(extra)
    .env_remove("PYTHIA_PASS_ENV")
    // --redis-url wins over REDIS_URL, so this one only has to stay out of the child.
    .env("REDIS_URL", "redis://:hunter2@127.0.0.1:1")
    .env("PYTHIA_DASHBOARD_TOKEN", "tok123")
    .env("AWS_SECRET_ACCESS_KEY", "aws-secret")
    .envs(env.iter().copied())
    .output()
    .unwrap()
}

#[tokio::test]
async fn exec_children_get_a_scrubbed_environment_and_what_pass_env_names() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: i64 = cmd(&conn, &["LPUSH", "envq", "hello"]).await;
    // Acks only if no secret arrived and what was asked for did; else prints the environment
    // (to the worker's stderr) and rejects.
    let script = r#"cat >/dev/null
[ -z "${REDIS_URL+x}" ] && [ -z "${PYTHIA_DASHBOARD_TOKEN+x}" ] \
  && [ -z "${AWS_SECRET_ACCESS_KEY+x}" ] && [ "$KEEP_ME" = yes ] && [ "$ALSO" = 2 ] \
  && [ -n "$PATH" ] && [ "$PYTHIA_QUEUE" = envq ] && [ "$PYTHIA_ATTEMPT" = 1 ] && exit 0
env >&2; exit 65"#;
    let o = run_with_secrets(
        &server.url(),
        "envq",
        &[
            "--exec",
            script,
            "--pass-env",
            "KEEP_ME",
            "--pass-env",
            "ALSO",
        ],
        &[("KEEP_ME", "yes"), ("ALSO", "2")],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("processed 1 (acked 1,"), "{out}");
}

#[tokio::test]
async fn exec_failure_reasons_name_the_program_not_the_command_line() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: i64 = cmd(&conn, &["LPUSH", "reasonq", "hello"]).await;
    let o = run_with_secrets(
        &server.url(),
        "reasonq",
        &[
            "--exec",
            r#"sh -c 'echo "no such account" >&2; exit 3' --api-key=SECRET123"#,
        ],
        &[],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("SECRET123"), "{out}");
    let dead: Vec<String> = cmd(&conn, &["LRANGE", "pythia:{reasonq}:dlq", "0", "-1"]).await;
    assert_eq!(dead.len(), 1, "{out}");
    assert!(!dead[0].contains("SECRET123"), "{dead:?}");
    assert!(
        dead[0].contains("`sh` exited 3") && dead[0].contains("no such account"),
        "the program, the status and the end of its stderr: {dead:?}"
    );
}

#[tokio::test]
async fn http_failure_reasons_never_carry_the_query() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let _: i64 = cmd(&conn, &["LPUSH", "hookq", "hello"]).await;
    let port = common::free_port();
    let o = run_with_secrets(
        &server.url(),
        "hookq",
        &[
            "--http",
            &format!("http://127.0.0.1:{port}/hook?api_key=SECRET123"),
        ],
        &[],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("SECRET123"), "{out}");
    let dead: Vec<String> = cmd(&conn, &["LRANGE", "pythia:{hookq}:dlq", "0", "-1"]).await;
    assert_eq!(dead.len(), 1, "{out}");
    assert!(!dead[0].contains("SECRET123"), "{dead:?}");
    assert!(
        dead[0].contains(&format!("POST http://127.0.0.1:{port}/hook failed")),
        "{dead:?}"
    );
}

/// `pythia ARGS` with no Redis settings from the environment.
fn pythia_plain(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

#[tokio::test]
async fn passwords_are_masked_for_sockets_and_special_characters() {
    // repro/e5_password.sh: a password with `/` and `#`, given as a socket URL's `pass=` and
    // percent-encoded in a TCP URL; right (doctor --json names the URL) and wrong (the error
    // names it).
    let dir = std::env::temp_dir().join(format!("pythia-sock-{:x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("r.sock");
    let sock = sock.to_str().unwrap();
    let server = RedisServer::start_with(&[
        "--requirepass",
        "hunt/er#2",
        "--unixsocket",
        sock,
        "--unixsocketperm",
        "700",
    ]);
    let tcp = format!("redis://:hunt%2Fer%232@127.0.0.1:{}", server.port());
    for scheme in ["unix", "redis+unix"] {
        let url = format!("{scheme}://{sock}?pass=hunt%2Fer%232");
        let o = pythia_plain(&["doctor", "--json", "--redis-url", &url]);
        let out = text(&o);
        assert!(out.contains("pass=***"), "{out}");
        assert!(!out.contains("hunt"), "{out}");
        let wrong = format!("{scheme}://{sock}?user=default&pass=hunt%2Fer%233");
        let o = pythia_plain(&["inspect", "--redis-url", &wrong, "--queue", "q"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        assert!(!out.contains("hunt"), "{out}");
    }
    let o = pythia_plain(&["doctor", "--json", "--redis-url", &tcp]);
    let out = text(&o);
    assert!(!out.contains("hunt"), "{out}");
    for bad in [
        format!("redis://:hunt/er2@127.0.0.1:{}", server.port()),
        format!("redis://:hunt#er2@127.0.0.1:{}", server.port()),
        format!("redis://:hunt?er2@127.0.0.1:{}", server.port()),
    ] {
        let o = pythia_plain(&["inspect", "--redis-url", &bad, "--queue", "q"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        assert!(!out.contains("hunt"), "{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
