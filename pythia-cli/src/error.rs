//! Errors of the `pythia` command and the exit codes they map to.

use std::fmt;

/// A failure with its exit code: 2 for bad input or configuration, 69 when Redis cannot be
/// reached ([`EXIT_UNAVAILABLE`]), 1 for runtime failures, 141 when stdout was closed
/// ([`crate::output::EXIT_OUTPUT_CLOSED`]).
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) message: String,
}

/// The exit code when Redis cannot be reached: `EX_UNAVAILABLE` of sysexits.h, so that a
/// supervisor or a script can tell "the server is down, try later" from a typo (2).
pub(crate) const EXIT_UNAVAILABLE: u8 = 69;

impl CliError {
    /// Bad input or bad configuration: exit 2.
    pub(crate) fn usage(e: impl fmt::Display) -> Self {
        Self {
            code: 2,
            message: e.to_string(),
        }
    }

    /// Redis could not be reached (within `--connect-timeout`): exit [`EXIT_UNAVAILABLE`].
    pub(crate) fn unavailable(e: impl fmt::Display) -> Self {
        Self {
            code: EXIT_UNAVAILABLE,
            message: e.to_string(),
        }
    }

    /// A failure while running: exit 1.
    pub(crate) fn runtime(e: impl fmt::Display) -> Self {
        Self {
            code: 1,
            message: e.to_string(),
        }
    }
}

impl CliError {
    /// Writing to stdout failed: exit 141 when it was closed (a broken pipe: the reader, e.g.
    /// `head`, has what it wanted), else exit 1.
    pub(crate) fn output(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self {
                code: crate::output::EXIT_OUTPUT_CLOSED,
                message: "stdout was closed (broken pipe)".to_owned(),
            }
        } else {
            Self::runtime(format!("cannot write to stdout: {e}"))
        }
    }

    /// Whether this is a closed stdout, which needs no message: the reader left on purpose.
    pub(crate) fn is_output_closed(&self) -> bool {
        self.code == crate::output::EXIT_OUTPUT_CLOSED
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
