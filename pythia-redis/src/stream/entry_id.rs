//! [`StreamEntryId`]: the id of a stream entry, the token of a stream delivery.

use super::*;

/// The id of a stream entry, `<milliseconds>-<sequence>`: the token of a [`StreamBroker`]
/// delivery. Copy, no allocation, ordered like Redis orders entries.
///
/// ```
/// use pythia_redis::StreamEntryId;
///
/// let id: StreamEntryId = "1700000000123-4".parse().unwrap();
/// assert_eq!((id.ms(), id.seq()), (1_700_000_000_123, 4));
/// assert_eq!(id.to_string(), "1700000000123-4");
/// assert!(id < StreamEntryId::new(1_700_000_000_123, 5));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamEntryId {
    ms: u64,
    seq: u64,
}

impl StreamEntryId {
    /// The id `<ms>-<seq>`.
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The millisecond part: when Redis added the entry (for ids Redis generated).
    pub fn ms(self) -> u64 {
        self.ms
    }

    /// The sequence number within the millisecond.
    pub fn seq(self) -> u64 {
        self.seq
    }

    /// The time in the id.
    pub fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.ms)
    }

    /// Parses `<ms>-<seq>` (or `<ms>`, sequence 0) from bytes.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        fn number(digits: &[u8]) -> Option<u64> {
            if digits.is_empty() {
                return None;
            }
            digits.iter().try_fold(0u64, |n, d| {
                let d = d.wrapping_sub(b'0');
                (d < 10).then_some(())?;
                n.checked_mul(10)?.checked_add(u64::from(d))
            })
        }
        match raw.iter().position(|b| *b == b'-') {
            Some(dash) => Some(Self {
                ms: number(&raw[..dash])?,
                seq: number(&raw[dash + 1..])?,
            }),
            None => Some(Self {
                ms: number(raw)?,
                seq: 0,
            }),
        }
    }
}

impl fmt::Display for StreamEntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamEntryId {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        Self::parse(s.as_bytes()).ok_or_else(|| {
            BrokerError::config(format!(
                "invalid stream entry id {s:?}: expected <ms>-<seq>"
            ))
        })
    }
}

impl ToRedisArgs for StreamEntryId {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        use std::io::Write;
        // Formatted straight into the command buffer: no allocation per acked id.
        let _ = write!(out.writer_for_next_arg(), "{}-{}", self.ms, self.seq);
    }
}
