//! CPU time and peak memory of this process, from `/proc` (Linux). Elsewhere both read 0.

/// Clock ticks per second of `/proc/self/stat` times (`getconf CLK_TCK`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcStats {
    /// User + system CPU seconds so far.
    pub(crate) cpu_seconds: f64,
    /// Peak resident set size (VmHWM).
    pub(crate) peak_rss_bytes: u64,
}

impl ProcStats {
    pub(crate) fn read() -> Self {
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                // Fields after the command name (which may hold spaces) start at field 3.
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let utime: f64 = f.get(11)?.parse().ok()?;
                let stime: f64 = f.get(12)?.parse().ok()?;
                Some((utime + stime) / CLOCK_TICKS)
            })
            .unwrap_or(0.0);
        let peak_rss_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
                let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kb * 1024)
            })
            .unwrap_or(0);
        Self {
            cpu_seconds,
            peak_rss_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        let before = ProcStats::read();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let after = ProcStats::read();
        assert!(after.peak_rss_bytes > 1 << 20, "{after:?}");
        assert!(after.cpu_seconds >= before.cpu_seconds);
    }
}
