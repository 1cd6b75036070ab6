//! Writing to stdout without panicking: `pythia … | head` closes it early, and `println!`
//! would panic (exit 101). A closed stdout becomes [`CliError::output`]: exit
//! [`EXIT_OUTPUT_CLOSED`], as if SIGPIPE had killed the process, with nothing printed.

use std::fmt;
use std::io::Write;

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
