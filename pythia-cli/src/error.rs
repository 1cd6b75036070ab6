//! Errors of the `pythia` command and the exit codes they map to.

use std::fmt;

/// A failure with its exit code: 2 for bad input or configuration, 1 for runtime failures.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl CliError {
    /// Bad input, bad configuration, unreachable server: exit 2.
    pub(crate) fn usage(e: impl fmt::Display) -> Self {
        Self {
            code: 2,
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

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
