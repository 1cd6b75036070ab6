//! `--exec CMD`: a worker that runs a command per message. The body goes to stdin, never to
//! the command line; metadata goes to sanitised environment variables.
//!
//! The child gets the scrubbed environment of [`super::inherited_env`]. A failure reason,
//! which reaches the logs, the dead-letter queue and the dashboard, names the program (the
//! command's first word), the exit status and the end of the child's stderr, never the whole
//! command line.
//!
//! The child's stdout is copied to the worker's ([`HandlerStdout`]): when that is closed
//! (`pythia run --exec … | head`), the message goes back to the queue and the worker stops,
//! where the child dying of SIGPIPE would have counted as the message's failure.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia::{Message, Worker, WorkerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{inherited_env, keep_tail, program_name, stderr_tail};
use crate::output::HandlerStdout;

/// Exit code that rejects the message (dead-letters it without retry): `EX_DATAERR`.
pub(crate) const EXIT_REJECT: i32 = 65;

/// How long the stdout and stderr copies may run on after the child exited (a background
/// grandchild may keep the pipes open).
const STDERR_LINGER: Duration = Duration::from_millis(200);

/// Runs `sh -c <command>` for each message.
#[derive(Clone)]
pub(crate) struct ExecWorker {
    command: String,
    /// The program, as failure reasons name it.
    program: String,
    /// The inherited environment: the safe variables and those `--pass-env` names.
    env: Vec<(OsString, OsString)>,
    /// Where the children's stdout goes.
    stdout: HandlerStdout,
}

impl ExecWorker {
    /// A worker running `command`, its children seeing the safe part of this process's
    /// environment and the variables named in `pass_env`, their stdout copied to `stdout`.
    pub(crate) fn new(command: String, pass_env: &[String], stdout: HandlerStdout) -> Self {
        Self::with_parent_env(command, std::env::vars_os(), pass_env, stdout)
    }

    /// As [`new`](Self::new), inheriting from `parent` instead of this process's environment.
    fn with_parent_env(
        command: String,
        parent: impl IntoIterator<Item = (OsString, OsString)>,
        pass_env: &[String],
        stdout: HandlerStdout,
    ) -> Self {
        Self {
            env: inherited_env(parent, pass_env),
            program: program_name(&command),
            command,
            stdout,
        }
    }
}

/// Names the program and the inherited variables, never the command line or the values.
impl std::fmt::Debug for ExecWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecWorker")
            .field("program", &self.program)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `PYTHIA_HEADER_` + the key upper-cased with anything but ASCII letters and digits as `_`.
fn header_var(key: &str) -> String {
    let mut name = String::with_capacity(14 + key.len());
    name.push_str("PYTHIA_HEADER_");
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    name
}

/// Environment values cannot hold NUL bytes; keep them short too.
fn env_value(v: &str) -> String {
    v.chars().filter(|c| *c != '\0').take(4096).collect()
}

impl ExecWorker {
    fn failure(&self, status: std::process::ExitStatus, stderr: &[u8]) -> WorkerError {
        let mut reason = match status.code() {
            Some(code) => format!("`{}` exited {code}", self.program),
            None => format!("`{}` was killed by a signal", self.program),
        };
        if status.code() == Some(EXIT_REJECT) {
            reason.push_str(" (reject)");
        }
        let tail = stderr_tail(stderr);
        if !tail.is_empty() {
            reason.push_str(": ");
            reason.push_str(&tail);
        }
        if status.code() == Some(EXIT_REJECT) {
            WorkerError::reject(reason)
        } else {
            WorkerError::retry(reason)
        }
    }
}

impl Worker for ExecWorker {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&self.command)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env("PYTHIA_MESSAGE_ID", env_value(msg.id()))
            .env("PYTHIA_ATTEMPT", msg.attempt().to_string())
            .env("PYTHIA_QUEUE", env_value(msg.source().name()));
        for (k, v) in msg.headers() {
            cmd.env(header_var(k), env_value(v));
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| WorkerError::retry(format!("cannot start `sh`: {e}")))?;
        // The child's stderr still reaches the worker's, and its end is kept for the reason.
        let tail = Arc::new(Mutex::new(Vec::new()));
        let copy = child.stderr.take().map(|mut from| {
            let tail = Arc::clone(&tail);
            tokio::spawn(async move {
                let mut to = tokio::io::stderr();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = from.read(&mut buf).await {
                    let _ = to.write_all(&buf[..n]).await;
                    keep_tail(&mut tail.lock().expect("stderr tail lock"), &buf[..n]);
                }
            })
        });
        // Its stdout goes to the worker's through here, so that a closed stdout (`| head`) is
        // seen as such: the message goes back to the queue, it has not failed.
        let out = child.stdout.take().map(|mut from| {
            let stdout = self.stdout.clone();
            tokio::spawn(async move {
                let mut to = tokio::io::stdout();
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = from.read(&mut buf).await {
                    if let Err(e) = to.write_all(&buf[..n]).await {
                        stdout.failed_with(e);
                        return; // the child's next write fails: it stops
                    }
                }
                if let Err(e) = to.flush().await {
                    stdout.failed_with(e);
                }
            })
        });
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin closes the pipe early: not a failure.
            let _ = stdin.write_all(msg.body()).await;
        }
        let status = child.wait().await?;
        for mut copy in [out, copy].into_iter().flatten() {
            if tokio::time::timeout(STDERR_LINGER, &mut copy)
                .await
                .is_err()
            {
                copy.abort();
            }
        }
        if self.stdout.is_closed() {
            // The hard stop drops this future and hands the message back.
            return std::future::pending().await;
        }
        if status.success() {
            return Ok(());
        }
        let tail = tail.lock().expect("stderr tail lock").clone();
        Err(self.failure(status, &tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_and_values_are_sanitised() {
        assert_eq!(header_var("content-type"), "PYTHIA_HEADER_CONTENT_TYPE");
        assert_eq!(header_var("a b;rm -rf"), "PYTHIA_HEADER_A_B_RM__RF");
        assert_eq!(env_value("a\0b"), "ab");
    }

    #[tokio::test]
    async fn exit_codes_decide_the_outcome() {
        let msg = Message::new("$(touch /tmp/pythia-never) hello").with_header("tenant", "acme");
        let ok = ExecWorker::new(
            r#"body=$(cat); [ "$body" = '$(touch /tmp/pythia-never) hello' ] && [ "$PYTHIA_HEADER_TENANT" = acme ] && [ "$PYTHIA_ATTEMPT" = 1 ]"#.into(),
            &[],
            HandlerStdout::default(),
        );
        ok.process_message(&msg).await.unwrap();
        assert!(!std::path::Path::new("/tmp/pythia-never").exists());

        let reject = ExecWorker::new("exit 65".into(), &[], HandlerStdout::default());
        let e = reject.process_message(&msg).await.unwrap_err();
        assert!(!e.is_retryable());
        let retry = ExecWorker::new("exit 3".into(), &[], HandlerStdout::default());
        let e = retry.process_message(&msg).await.unwrap_err();
        assert!(e.is_retryable());
        assert!(e.to_string().contains("exited 3"));
    }

    #[tokio::test]
    async fn children_inherit_only_safe_variables_and_pass_env() {
        let parent = [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("LC_ALL", "C".to_owned()),
            ("REDIS_URL", "redis://:hunter2@h:6379".to_owned()),
            ("PYTHIA_DASHBOARD_TOKEN", "tok".to_owned()),
            ("PYTHIA_QUEUE", "not-this-one".to_owned()),
            ("API_KEY", "k".to_owned()),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let check = r#"[ -z "${REDIS_URL+x}" ] && [ -z "${PYTHIA_DASHBOARD_TOKEN+x}" ] && [ "$API_KEY" = k ] && [ "$LC_ALL" = C ] && [ "$PYTHIA_QUEUE" = default ] && [ -n "$PATH" ] || { env >&2; exit 3; }"#;
        let w = ExecWorker::with_parent_env(
            check.into(),
            parent,
            &["API_KEY".to_owned()],
            HandlerStdout::default(),
        );
        let msg = Message::new("x");
        w.process_message(&msg).await.unwrap();
        assert!(
            !w.env
                .iter()
                .any(|(k, _)| k == "REDIS_URL" || k == "PYTHIA_DASHBOARD_TOKEN")
        );
        let shown = format!("{w:?}");
        assert!(
            shown.contains("API_KEY") && !shown.contains("\"k\""),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn failure_reasons_name_the_program_status_and_stderr_tail_only() {
        let msg = Message::new("x");
        let w = ExecWorker::new(
            r#"TOKEN=SECRET1 sh -c 'echo "disk full" >&2; exit 4' --key SECRET2"#.into(),
            &[],
            HandlerStdout::default(),
        );
        let e = w.process_message(&msg).await.unwrap_err().to_string();
        assert_eq!(e, "`sh` exited 4: disk full");
        let w = ExecWorker::new(
            "exit 65 # --key SECRET".into(),
            &[],
            HandlerStdout::default(),
        );
        let e = w.process_message(&msg).await.unwrap_err();
        assert!(!e.is_retryable());
        assert_eq!(e.to_string(), "`exit` exited 65 (reject)");
        assert_eq!(program_name("  A=1 B=2 "), "the command");
        assert_eq!(program_name("'/opt/my tool' --x"), "/opt/my");
    }
}
