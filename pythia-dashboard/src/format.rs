//! Numbers, durations, sizes and times as people read them — one set of formatters for the
//! dashboard's pages and the `pythia` commands' text (which re-export them).

/// `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn human_duration(d: std::time::Duration) -> String {
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
pub fn human_age(seconds: Option<f64>) -> Option<String> {
    seconds
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| human_duration(std::time::Duration::from_secs_f64(s)))
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub fn human_bytes(n: u64) -> String {
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
pub fn escaped_preview(text: &str, max: usize) -> String {
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
pub fn rfc3339(t: std::time::SystemTime) -> String {
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

/// `bytes` as lowercase hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        assert_eq!(human_age(Some(245.0)).as_deref(), Some("4m05s"));
        assert_eq!(human_age(Some(-1.0)), None);
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(escaped_preview("a\nb\"c", 10), "a\\nb\"c");
        assert_eq!(escaped_preview("abcdef", 3), "abc…");
        assert_eq!(hex(b"\x00\xffA"), "00ff41");
    }
}
