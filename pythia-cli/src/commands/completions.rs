//! `pythia completions SHELL` and `pythia man`: a shell's completion script and the man page,
//! both generated from the same clap definitions as `--help`, so they never drift from it.

use clap::{Args, CommandFactory};

use crate::cli::Cli;
use crate::error::CliError;

/// `pythia completions`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish (also elvish, powershell).
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// Prints the completion script of `args.shell` for `pythia`.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pythia", &mut script);
    crate::output::out!("{}", String::from_utf8_lossy(&script))
}

/// Prints the man page of `pythia` (roff, section 1).
pub(crate) fn man() -> Result<(), CliError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| CliError::runtime(format!("cannot render the man page: {e}")))?;
    crate::output::out!("{}", String::from_utf8_lossy(&page))
}
