//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod completions;
pub(crate) mod config_file;
mod connect;
pub(crate) mod dlq;
pub(crate) mod doctor;
pub(crate) mod empty;
pub(crate) mod inspect;
pub(crate) mod job;
pub(crate) mod jobs;
pub(crate) mod pause;
pub(crate) mod produce;
pub(crate) mod queues;
pub(crate) mod quickstart;
pub(crate) mod run;
pub(crate) mod run_queues;
pub(crate) mod scheduled;

pub(crate) use self::connect::{connect, connect_url};
// The dashboard shows numbers and times as the commands print them: one set of formatters.
use crate::error::CliError;
pub(crate) use pythia_dashboard::format::{
    escaped_preview, hex, human_age, human_bytes, human_duration, rfc3339,
};

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Asks on the terminal before deleting `what` (`delete <what>? [y/N]`); refuses without a
/// terminal (pass `--yes`: exit 2), and stops with "<command> cancelled" unless the answer is
/// yes.
pub(crate) fn confirm_deletion(what: &str, command: &str) -> Result<(), CliError> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "refusing to delete {what} without confirmation: not a terminal; pass --yes"
        )));
    }
    eprint!("delete {what}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::runtime(format!(
            "{command} cancelled: nothing deleted"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}
