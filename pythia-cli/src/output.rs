//! Writing to stdout without panicking: `pythia … | head` closes it early, and `println!`
//! would panic (exit 101). A closed stdout becomes [`CliError::output`]: exit
//! [`EXIT_OUTPUT_CLOSED`], as if SIGPIPE had killed the process, with nothing printed.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, OnceLock};

use pythia::CancellationToken;

use crate::error::CliError;

/// The exit code when stdout was closed (a broken pipe): 128 + SIGPIPE, what a shell reports
/// for a program that SIGPIPE killed, so `set -o pipefail` scripts see the usual value.
pub(crate) const EXIT_OUTPUT_CLOSED: u8 = 141;

/// Writes `args` to stdout and flushes; a closed stdout or another write error is a
/// [`CliError`].
pub(crate) fn write_stdout(args: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::output(&e))
}

/// The stdout of `pythia run`'s handlers (the print handler, `--exec` commands).
///
/// A failed write (closed by `pythia run | head`, or a full disk) is no failure of the
/// message being printed: failing it would retry and then dead-letter the whole queue. The
/// first failure is kept and cancels [`stop_token`](Self::stop_token), the runtime's hard stop
/// ([`pythia::WorkerRuntime::with_hard_stop`]); the handler then never completes, so its
/// message and every other unfinished one go back to the queue, and `pythia run` exits 141
/// (1 for another write error) with [`CliError::output`].
#[derive(Debug, Clone, Default)]
pub(crate) struct HandlerStdout {
    stop: CancellationToken,
    failed: Arc<OnceLock<std::io::Error>>,
}

impl HandlerStdout {
    /// The token to give [`pythia::WorkerRuntime::with_hard_stop`].
    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Whether a write has failed: nothing more will be printed.
    pub(crate) fn is_closed(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Records a failed write and asks for the hard stop (once).
    pub(crate) fn failed_with(&self, e: std::io::Error) {
        if self.failed.set(e).is_ok() {
            tracing::warn!(
                error = %self.failed.get().expect("just set"),
                "cannot write to stdout: stopping; unprinted messages go back to the queue"
            );
        }
        self.stop.cancel();
    }

    /// The run's result, unless stdout failed: then the exit for that.
    pub(crate) fn result(&self, run: Result<(), CliError>) -> Result<(), CliError> {
        match self.failed.get() {
            Some(e) => Err(CliError::output(e)),
            None => run,
        }
    }
}

/// `print!` that returns a [`CliError`] instead of panicking on a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` that returns a [`CliError`] instead of panicking on a closed stdout.
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics: with `2>&1 | head` stderr is a closed pipe too, and a note
/// must not turn the exit code into a panic's (101). What cannot be written is dropped.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub(crate) use {errln, out, outln};
