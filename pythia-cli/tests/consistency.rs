//! CLI consistency (issue 20): strict dates and humantime durations, `produce` reading a piped
//! stdin, `-q`/`-c`, shell completions and the man page, help texts without another command's
//! flags.

mod common;
use pythia_test_support as support;

use common::{produce, pythia, pythia_on, pythia_with_stdin, run_burst, text};
use support::{RedisServer, cmd};

#[tokio::test]
async fn dates_are_strict_and_durations_take_humantime_units() {
    let server = RedisServer::start();
    let url = server.url();
    // 31 February does not exist: refused, not read as 3 March.
    let o = produce(&url, &["-q", "q", "--at", "2026-02-31T00:00:00Z", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("2026-02-31T00:00:00Z"), "{}", text(&o));

    for delay in ["1h30m", "1d", "500us"] {
        let o = produce(&url, &["-q", "q", "--delay", delay, "x"]);
        assert!(o.status.success(), "--delay {delay}: {}", text(&o));
    }
    let o = pythia_on(&url, "inspect", &["-q", "q", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // 500us is due at once and may have been promoted by now; the other two wait.
    let scheduled = doc["scheduled"].as_u64().unwrap_or_else(|| panic!("{doc}"));
    assert!((2..=3).contains(&scheduled), "{doc}");

    let o = run_burst(
        &url,
        &[
            "-q",
            "empty",
            "--timeout",
            "1h30m",
            "--retry-delay",
            "500us",
            "--shutdown-grace",
            "1d",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = pythia(&["run", "-q", "q", "--timeout", "5 fortnights"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[tokio::test]
async fn produce_reads_a_piped_stdin_without_a_dash() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let o = pythia_with_stdin(
        &["produce", "--redis-url", &url, "-q", "piped", "--raw"],
        b"one\ntwo\nthree\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let items: Vec<String> = cmd(&conn, &["LRANGE", "piped", "0", "-1"]).await;
    assert_eq!(items, ["three", "two", "one"]);

    // An empty stdin (here /dev/null) is nothing to produce, not zero messages sent.
    let o = produce(&url, &["-q", "piped"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("stdin is empty"), "{}", text(&o));
}

#[tokio::test]
async fn short_flags_for_queue_and_concurrency() {
    let server = RedisServer::start();
    let url = server.url();
    let o = produce(&url, &["-q", "short", "a", "b"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run_burst(&url, &["-q", "short", "-c", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("processed 2"), "{}", text(&o));
    let o = pythia_on(&url, "inspect", &["-q", "short"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn completions_for_each_shell_and_a_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let o = pythia(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", text(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains("pythia"), "{shell}: {script}");
        assert!(script.contains("dlq"), "{shell}: subcommands are completed");
    }
    let o = pythia(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = pythia(&["man"]);
    assert!(o.status.success(), "{}", text(&o));
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(page.contains(".TH pythia 1"), "{page}");
    assert!(page.contains("Background workers on Redis"), "{page}");
}

#[test]
fn help_texts_name_only_their_own_command() {
    let help = |args: &[&str]| String::from_utf8_lossy(&pythia(args).stdout).into_owned();
    let produce = help(&["produce", "--help"]);
    let flags: Vec<&str> = produce
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("--") || l.starts_with("-q"))
        .collect();
    for consumer_only in ["--group ", "--group-start", "--pattern"] {
        assert!(
            !flags.iter().any(|f| f.starts_with(consumer_only)),
            "{consumer_only}: {flags:?}"
        );
    }
    assert!(
        flags.iter().any(|f| f.starts_with("-q, --queue")),
        "{flags:?}"
    );
    let run = help(&["run", "--help"]);
    assert!(
        run.contains("none of --exec, --exec-persistent and --http"),
        "{run}"
    );
    let dlq = help(&["dlq", "list", "--help"]);
    assert!(dlq.contains("`dlq` works on one queue"), "{dlq}");
}

/// The one JSON document on stdout (the last line).
fn json_out(o: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout: {}", text(o)));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

#[tokio::test]
async fn json_from_produce_run_burst_dlq_replay_and_purge_and_quickstart() {
    let server = RedisServer::start();
    let url = server.url();
    let o = produce(&url, &["-q", "js", "--json", "ok", "bad", "bad"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc = json_out(&o);
    assert_eq!(doc["produced"], 3, "{doc}");
    assert_eq!(doc["queue"], "js", "{doc}");
    assert_eq!(doc["broker"], "reliable-list", "{doc}");

    // "bad" is rejected (exit 65): two dead letters.
    let o = run_burst(
        &url,
        &[
            "-q",
            "js",
            "--json",
            "--exec",
            r#"[ "$(cat)" = ok ] || exit 65"#,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc = json_out(&o);
    assert_eq!(
        (&doc["processed"], &doc["acked"], &doc["dead_lettered"]),
        (&3.into(), &1.into(), &2.into()),
        "{doc}"
    );
    assert!(doc["elapsed_seconds"].as_f64().is_some(), "{doc}");

    let o = pythia_on(&url, "dlq replay", &["-q", "js", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc = json_out(&o);
    assert_eq!(
        (&doc["replayed"], &doc["missing"]),
        (&2.into(), &0.into()),
        "{doc}"
    );
    let o = run_burst(&url, &["-q", "js", "--exec", "exit 65"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = pythia_on(&url, "dlq purge", &["-q", "js", "--yes", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json_out(&o)["deleted"], 2, "{}", text(&o));
    let o = pythia_on(&url, "dlq purge", &["-q", "js", "--yes", "--json"]);
    assert_eq!(json_out(&o)["deleted"], 0, "{}", text(&o));

    let o = pythia_on(&url, "quickstart", &["--messages", "500", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 1, "only the document: {stdout}");
    let doc = json_out(&o);
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["modes"][0]["acked"], 500, "{doc}");
    assert_eq!(doc["throwaway_redis"], false, "{doc}");
}
