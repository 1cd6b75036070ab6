//! Handlers in another language, run as child processes of `pythia run`:
//!
//! * `--exec CMD` ([`per_message`]): one `sh -c CMD` per message, the body on its stdin, the
//!   outcome in its exit code. Simple, and a fork + exec per message (about a millisecond,
//!   far more for an interpreter's start-up).
//! * `--exec-persistent CMD` ([`persistent`]): a few long-lived `sh -c CMD` children that
//!   receive the messages as JSON lines on stdin and answer one JSON line each on stdout, many
//!   messages in flight per child.
//!
//! Both give their children the same scrubbed environment ([`inherited_env`]): the worker's own
//! holds its secrets (`REDIS_URL` with the Redis password, `PYTHIA_DASHBOARD_TOKEN`, cloud
//! credentials). Both name a child by its program ([`program_name`]) in failure reasons, which
//! reach the logs, the dead-letter queue and the dashboard, never by the whole command line.

pub(crate) mod per_message;
pub(crate) mod persistent;

use std::ffi::OsString;

/// Variables a child inherits without `--pass-env`: what a shell and common tools need to run,
/// nothing that usually holds a secret. `LC_*` are inherited too.
pub(crate) const SAFE_ENV: [&str; 10] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
];

/// Bytes of a child's stderr kept for a failure reason (its end).
const STDERR_TAIL: usize = 300;

/// The part of `parent` a child inherits: the [`SAFE_ENV`] variables, the `LC_*` ones and
/// those named in `pass_env`.
fn inherited_env(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    pass_env: &[String],
) -> Vec<(OsString, OsString)> {
    parent
        .into_iter()
        .filter(|(name, _)| {
            name.to_str().is_some_and(|n| {
                SAFE_ENV.contains(&n)
                    || n.starts_with("LC_")
                    || pass_env.iter().any(|p| p.trim() == n)
            })
        })
        .collect()
}

/// The program a shell command line runs: its first word that is not a `NAME=value`
/// assignment, without quotes, cut to 64 characters. Only this goes into failure reasons: the
/// rest of the line may hold a secret.
fn program_name(command: &str) -> String {
    let is_assignment = |w: &str| {
        w.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    command
        .split_whitespace()
        .find(|w| !is_assignment(w))
        .map(|w| w.trim_matches(['\'', '"', '(', ')', '{', '}', ';', '&', '|']))
        .filter(|w| !w.is_empty())
        .map_or_else(
            || "the command".to_owned(),
            |w| w.chars().take(64).collect(),
        )
}

/// The last line(s) of what a child wrote to stderr, escaped, for a failure reason.
fn stderr_tail(tail: &[u8]) -> String {
    let text = String::from_utf8_lossy(tail);
    let text = text.trim();
    // The cut may fall inside a line: start at the next one when there is one.
    let text = match (tail.len() >= STDERR_TAIL, text.split_once('\n')) {
        (true, Some((_, rest))) if !rest.trim().is_empty() => rest.trim(),
        _ => text,
    };
    text.escape_debug().collect()
}

/// Appends `bytes` to a stderr tail, keeping its last [`STDERR_TAIL`] bytes.
fn keep_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    tail.extend_from_slice(bytes);
    let over = tail.len().saturating_sub(STDERR_TAIL);
    tail.drain(..over);
}
