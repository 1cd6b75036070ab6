//! `--exec CMD`: a worker that runs a command per message. The body goes to stdin, never to
//! the command line; metadata goes to sanitised environment variables.

use std::process::Stdio;

use pythia::{Message, Worker, WorkerError};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Exit code that rejects the message (dead-letters it without retry): `EX_DATAERR`.
pub(crate) const EXIT_REJECT: i32 = 65;

/// Runs `sh -c <command>` for each message.
#[derive(Debug, Clone)]
pub(crate) struct ExecWorker {
    command: String,
}

impl ExecWorker {
    pub(crate) fn new(command: String) -> Self {
        Self { command }
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

impl Worker for ExecWorker {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .env("PYTHIA_MESSAGE_ID", env_value(msg.id()))
            .env("PYTHIA_ATTEMPT", msg.attempt().to_string())
            .env("PYTHIA_QUEUE", env_value(msg.source().name()));
        for (k, v) in msg.headers() {
            cmd.env(header_var(k), env_value(v));
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| WorkerError::retry(format!("cannot start `{}`: {e}", self.command)))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin closes the pipe early: not a failure.
            let _ = stdin.write_all(msg.body()).await;
        }
        let status = child.wait().await?;
        match status.code() {
            Some(0) => Ok(()),
            Some(EXIT_REJECT) => Err(WorkerError::reject(format!(
                "`{}` exited {EXIT_REJECT} (reject)",
                self.command
            ))),
            Some(code) => Err(WorkerError::retry(format!(
                "`{}` exited {code}",
                self.command
            ))),
            None => Err(WorkerError::retry(format!(
                "`{}` was killed by a signal",
                self.command
            ))),
        }
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
        );
        ok.process_message(&msg).await.unwrap();
        assert!(!std::path::Path::new("/tmp/pythia-never").exists());

        let reject = ExecWorker::new("exit 65".into());
        let e = reject.process_message(&msg).await.unwrap_err();
        assert!(!e.is_retryable());
        let retry = ExecWorker::new("exit 3".into());
        let e = retry.process_message(&msg).await.unwrap_err();
        assert!(e.is_retryable());
        assert!(e.to_string().contains("exited 3"));
    }
}
