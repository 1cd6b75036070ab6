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

use pythia::redis::RedisConnection;

pub(crate) use self::connect::{connect, connect_url};
use crate::error::CliError;

/// The type of a key (`TYPE`): `list`, `stream`, `none`, …
pub(crate) async fn key_type(conn: &RedisConnection, key: &str) -> Result<String, CliError> {
    let mut m = conn.manager();
    redis::cmd("TYPE")
        .arg(key)
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("TYPE", e)))
}

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

/// `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// An age in seconds as [`human_duration`] writes it (`None`: unknown, negative or not finite).
/// `pythia inspect` and the dashboard show ages with it.
pub(crate) fn human_age(seconds: Option<f64>) -> Option<String> {
    seconds
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| human_duration(std::time::Duration::from_secs_f64(s)))
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `text` with control and non-printable characters escaped, cut to `max` characters (…).
pub(crate) fn escaped_preview(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for c in text.chars() {
        let esc: String = if c == '"' || c == '\'' {
            c.to_string()
        } else {
            c.escape_debug().collect()
        };
        let n = esc.chars().count();
        if count + n > max {
            out.push('…');
            return out;
        }
        out.push_str(&esc);
        count += n;
    }
    out
}

/// `2024-05-01T12:34:56.789Z` (UTC).
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
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
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats() {
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_714_566_896_789)),
            "2024-05-01T12:34:56.789Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(escaped_preview("a\nb\"c", 10), "a\\nb\"c");
        assert_eq!(escaped_preview("abcdef", 3), "abc…");
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}
