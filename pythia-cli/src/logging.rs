//! Where the command's logs and errors go: stderr, as text or one JSON object per line.
//!
//! The filter is `--log` / `PYTHIA_LOG`, else `RUST_LOG` (what every tracing program reads),
//! else `info`. Colours only on a terminal (and never with `NO_COLOR` set): a file or a pipe
//! gets plain text. With `--log-format json` the errors that end the command are JSON lines
//! too, start-up errors included (a bad flag, a bad config file), so that a log shipper never
//! meets a line it cannot parse.

use std::ffi::OsString;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, LogFormat};

/// Installs the global subscriber for `cli`'s filter and format.
pub(crate) fn init(cli: &Cli) {
    let (directives, from) = match (&cli.log, std::env::var("RUST_LOG")) {
        (Some(log), _) => (log.clone(), "--log"),
        (None, Ok(rust_log)) if !rust_log.trim().is_empty() => (rust_log, "RUST_LOG"),
        (None, _) => ("info".to_owned(), "--log"),
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        report(
            cli.log_format,
            "WARN",
            &format!("invalid {from} filter {directives:?} ({e}); using \"info\""),
            None,
        );
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Whether stderr gets colour: a terminal, and `NO_COLOR` unset or empty (no-color.org).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The log format asked for on a command line that may not parse: `--log-format json` (or
/// `=json`) among the arguments, else `PYTHIA_LOG_FORMAT=json`.
pub(crate) fn format_before_parsing(argv: &[OsString]) -> LogFormat {
    let mut asked = None;
    let mut args = argv.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = args.next() {
        if a == "--" {
            break;
        }
        if a == "--log-format" {
            asked = args.next().map(|v| v.into_owned());
        } else if let Some(v) = a.strip_prefix("--log-format=") {
            asked = Some(v.to_owned());
        }
    }
    let asked = asked.or_else(|| std::env::var("PYTHIA_LOG_FORMAT").ok());
    match asked.as_deref().map(str::trim) {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// Writes the error that ends the command (exit `code`): `error: …` as text, or a JSON line
/// shaped like the JSON logs' (`timestamp`, `level`, `fields.message`, `target`) with
/// `fields.exit_code`.
pub(crate) fn error(format: LogFormat, message: &str, code: u8) {
    report(format, "ERROR", message, Some(code));
}

fn report(format: LogFormat, level: &str, message: &str, code: Option<u8>) {
    match format {
        LogFormat::Text => {
            crate::output::errln!("{}: {message}", level.to_ascii_lowercase());
        }
        LogFormat::Json => {
            let mut fields = serde_json::json!({ "message": message });
            if let Some(code) = code {
                fields["exit_code"] = code.into();
            }
            let line = serde_json::json!({
                "timestamp": crate::commands::rfc3339(std::time::SystemTime::now()),
                "level": level,
                "fields": fields,
                "target": "pythia",
            });
            crate::output::errln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_found_before_parsing() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let f = |a: &[&str]| format_before_parsing(&argv(a));
        assert_eq!(
            f(&["pythia", "--log-format", "json", "run"]),
            LogFormat::Json
        );
        assert_eq!(f(&["pythia", "run", "--log-format=json"]), LogFormat::Json);
        assert_eq!(
            f(&["pythia", "produce", "--", "--log-format=json"]),
            LogFormat::Text
        );
        assert_eq!(f(&["pythia", "--log-format", "text"]), LogFormat::Text);
    }
}
