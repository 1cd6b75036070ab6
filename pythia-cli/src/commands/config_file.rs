//! `--config FILE` (or `PYTHIA_CONFIG`), on every command that talks to Redis: settings from a
//! TOML file.
//!
//! The file's keys are long flags of the command, in snake_case or kebab-case
//! (`redis_url`, `max-attempts`, `retry_delay = "100ms"`, `burst = true`,
//! `queue = ["a", "b"]`). Precedence is flags > environment > file > defaults: the command line
//! is parsed first, and a file value is used only for a setting whose value there is nothing
//! or clap's default (`ArgMatches::value_source`). File values then go through the same parsers
//! and checks as flags, so a bad value is reported the way a bad flag is, naming the file and
//! the key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::Cli;
use crate::error::CliError;

/// Why the command line could not be parsed.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// Clap's own error (usage, help, version): printed and exited by clap.
    Clap(clap::Error),
    /// A config file problem: exit 2.
    Config(CliError),
}

/// Parses `argv` and, for a command given `--config` (or `PYTHIA_CONFIG`), merges the file in.
pub(crate) fn parse_from(argv: Vec<OsString>) -> Result<Cli, ParseError> {
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        // A required flag (`inspect --queue`) may come from the file: find the file anyway.
        Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => {
            match Cli::command()
                .ignore_errors(true)
                .try_get_matches_from(&argv)
            {
                Ok(m) if config_path(&m).is_some() => m,
                _ => return Err(ParseError::Clap(e)),
            }
        }
        Err(e) => return Err(ParseError::Clap(e)),
    };
    let Some(path) = config_path(&matches) else {
        return Cli::from_arg_matches(&matches).map_err(ParseError::Clap);
    };
    let extra = file_args(&path, &matches).map_err(ParseError::Config)?;
    let mut all = argv.clone();
    all.extend(extra.iter().flat_map(|(_, a)| a.iter().cloned()));
    match Cli::command().try_get_matches_from(&all) {
        Ok(m) => Cli::from_arg_matches(&m).map_err(ParseError::Clap),
        Err(e) => {
            // Name the key: try each key's values alone on the command line. When the command
            // line alone lacks a required flag (one the file gives), that error is no key's.
            let missing = |e: &clap::Error| e.kind() == ErrorKind::MissingRequiredArgument;
            let base_lacks = Cli::command()
                .try_get_matches_from(&argv)
                .is_err_and(|e| missing(&e));
            for (key, args) in &extra {
                let mut one = argv.clone();
                one.extend(args.iter().cloned());
                match Cli::command().try_get_matches_from(&one) {
                    Err(e) if !(base_lacks && missing(&e)) => {
                        return Err(ParseError::Config(CliError::usage(format!(
                            "config file {}: key `{key}`: {}",
                            path.display(),
                            first_line(&e)
                        ))));
                    }
                    _ => {}
                }
            }
            Err(ParseError::Config(CliError::usage(format!(
                "config file {}: {}",
                path.display(),
                first_line(&e)
            ))))
        }
    }
}

/// The subcommand path (`["dlq", "list"]`) and the matches of the innermost subcommand.
fn leaf(matches: &ArgMatches) -> (Vec<&str>, &ArgMatches) {
    let mut path = Vec::new();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        path.push(name);
        m = sub;
    }
    (path, m)
}

/// The `--config` file of the command, if it takes one and one was given.
fn config_path(matches: &ArgMatches) -> Option<PathBuf> {
    let (_, m) = leaf(matches);
    m.try_get_one::<PathBuf>("config").ok().flatten().cloned()
}

/// Where the file fails to parse and why, without quoting the file: the offending line may
/// hold a password (an unterminated string runs to the end of its line).
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count()
                + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

/// The first line of a clap error, without its `error: ` prefix.
fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// The command-line arguments standing for the file's settings that neither a flag nor an
/// environment variable set, each with its key.
fn file_args(path: &Path, top: &ArgMatches) -> Result<Vec<(String, Vec<OsString>)>, CliError> {
    let err = |msg: String| CliError::usage(format!("config file {}: {msg}", path.display()));
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read config file {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| err(syntax_error(&text, &e)))?;

    let (names, sub) = leaf(top);
    let mut cmd = Cli::command();
    cmd.build();
    let mut this = &cmd;
    for name in &names {
        this = this
            .find_subcommand(name)
            .expect("the matched subcommand exists");
    }
    let run_cmd = cmd
        .find_subcommand("run")
        .expect("the run subcommand exists");
    let flag = |c: &clap::Command, long: &str| {
        c.get_arguments()
            .find(|a| a.get_long() == Some(long) && !a.is_hide_set())
            .filter(|_| !matches!(long, "config" | "help" | "version"))
            .cloned()
    };
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let Some(arg) = flag(this, &long) else {
            if flag(run_cmd, &long).is_some() {
                continue; // a worker setting this command does not take: one file serves all
            }
            return Err(err(format!(
                "unknown key `{key}` (the keys are long flags of `pythia {}` or `pythia run`, \
                 e.g. redis_url, queue, concurrency, retry_delay; see their --help)",
                names.join(" ")
            )));
        };
        if let Some((first, _)) = seen.iter().find(|(_, l)| *l == long) {
            return Err(err(format!(
                "key `{key}` is given twice (also as `{first}`)"
            )));
        }
        seen.push((key.clone(), long.clone()));
        let id = arg.get_id().as_str();
        let source = if arg.is_global_set() {
            top.value_source(id).or_else(|| sub.value_source(id))
        } else {
            sub.value_source(id)
        };
        if matches!(
            source,
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue; // a flag or the environment wins
        }
        let args = match arg.get_action() {
            ArgAction::SetTrue => match value {
                toml::Value::Boolean(true) => vec![OsString::from(format!("--{long}"))],
                toml::Value::Boolean(false) => Vec::new(),
                other => {
                    return Err(err(format!(
                        "key `{key}`: expected true or false, got {}",
                        other.type_str()
                    )));
                }
            },
            ArgAction::Append => match value {
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| scalar(&key, v).map(|s| format!("--{long}={s}").into()))
                    .collect::<Result<_, _>>()
                    .map_err(err)?,
                // `weights = { critical = 6, low = 1 }`: one `name=value` each.
                toml::Value::Table(items) => items
                    .iter()
                    .map(|(k, v)| scalar(&key, v).map(|s| format!("--{long}={k}={s}").into()))
                    .collect::<Result<_, _>>()
                    .map_err(err)?,
                v => vec![format!("--{long}={}", scalar(&key, &v).map_err(err)?).into()],
            },
            _ => vec![format!("--{long}={}", scalar(&key, &value).map_err(err)?).into()],
        };
        out.push((key, args));
    }
    Ok(out)
}

/// A string, number or boolean, as its command-line text.
fn scalar(key: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "key `{key}`: expected a string, number or boolean, got {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;

    fn parse(file: &str, args: &[&str]) -> Result<crate::commands::run::RunArgs, String> {
        let dir = std::env::temp_dir().join(format!("pythia-config-{:x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pythia.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["pythia".into(), "run".into(), "--config".into()];
        argv.push(path.clone().into());
        argv.extend(args.iter().map(OsString::from));
        let parsed = parse_from(argv);
        let _ = std::fs::remove_dir_all(&dir);
        match parsed {
            Ok(Cli {
                command: Command::Run(r),
                ..
            }) => Ok(*r),
            Ok(_) => unreachable!(),
            Err(ParseError::Clap(e)) => Err(e.to_string()),
            Err(ParseError::Config(e)) => Err(e.to_string()),
        }
    }

    #[test]
    fn file_values_fill_in_what_flags_did_not_set() {
        let r = parse(
            "queue = \"jobs\"\nmax-attempts = 7\nretry_delay = \"250ms\"\nburst = true\n\
             concurrency = 3\nmetrics_addr = \"off\"\nlog = \"warn\"\n",
            &["--concurrency", "9"],
        )
        .unwrap();
        assert_eq!(r.queue.queue, ["jobs"]);
        assert_eq!(r.max_attempts, 7);
        assert_eq!(r.retry_delay, std::time::Duration::from_millis(250));
        assert!(r.burst);
        assert_eq!(r.concurrency, 9, "the flag wins");
        assert_eq!(r.metrics_addr, Some(crate::commands::run::MetricsAddr::Off));
    }

    #[test]
    fn weights_come_as_a_table_or_a_list() {
        let r = parse("queue = [\"a\", \"b\"]\nweights = { a = 3, b = 1 }\n", &[]).unwrap();
        assert_eq!(r.queue.queue, ["a", "b"]);
        assert_eq!(r.weights, [("a".to_owned(), 3), ("b".to_owned(), 1)]);
        let r = parse("weights = [\"a=2\", \"b=5\"]\n", &[]).unwrap();
        assert_eq!(r.weights, [("a".to_owned(), 2), ("b".to_owned(), 5)]);
        let e = parse("weights = { a = 0 }\n", &[]).unwrap_err();
        assert!(
            e.contains("key `weights`") && e.contains("at least 1"),
            "{e}"
        );
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        let e = parse("queue = \"q\"\nconcurency = 3\n", &[]).unwrap_err();
        assert!(
            e.contains("pythia.toml") && e.contains("unknown key `concurency`"),
            "{e}"
        );
        let e = parse("max_attempts = \"many\"\n", &["--queue", "q"]).unwrap_err();
        assert!(
            e.contains("key `max_attempts`") && e.contains("many"),
            "{e}"
        );
        let e = parse("queue = \n", &[]).unwrap_err();
        assert!(e.contains("pythia.toml"), "{e}");
        let e = parse("burst = \"yes\"\n", &[]).unwrap_err();
        assert!(e.contains("key `burst`: expected true or false"), "{e}");
        let e = parse("max_attempts = 2\nmax-attempts = 3\n", &[]).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        let e = parse("config = \"other.toml\"\n", &[]).unwrap_err();
        assert!(e.contains("unknown key `config`"), "{e}");
    }

    #[test]
    fn pass_env_comes_from_the_file_as_a_list() {
        let r = parse(
            "queue = \"q\"\nexec = \"./handle.sh\"\npass_env = [\"API_KEY\", \"DB_URL\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(r.pass_env, ["API_KEY", "DB_URL"]);
        let e = parse("queue = \"q\"\npass_env = [\"API_KEY\"]\n", &[]).unwrap_err();
        assert!(e.contains("key `pass_env`"), "only with --exec: {e}");
        let r = parse(
            "queue = \"q\"\nexec_persistent = \"python3 h.py\"\nexec_children = 3\n\
             exec-in-flight = 10\npass_env = [\"API_KEY\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(r.exec_persistent.as_deref(), Some("python3 h.py"));
        assert_eq!((r.exec_children, r.exec_in_flight), (Some(3), 10));
        assert_eq!(r.pass_env, ["API_KEY"]);
    }

    #[test]
    fn syntax_errors_name_the_place_not_the_line() {
        // The offending line may hold a password (an unterminated string runs to its end).
        let e = parse(
            "queue = \"q\"\nredis_url = \"redis://:hunter2@h:6379\n",
            &[],
        )
        .unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("pythia.toml") && e.contains("line 2"), "{e}");
    }
}
