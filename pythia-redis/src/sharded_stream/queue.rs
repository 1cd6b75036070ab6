//! [`ShardedQueue`]: the names of a sharded queue's streams, the shard of a key, and the
//! layout check (see the [module docs](super)).

use std::sync::Arc;

use pythia_core::BrokerError;

use crate::call::Call;
use crate::connection::RedisConnection;
use crate::keys::QueueKeys;

/// Redis Cluster's slot count.
const SLOTS: u32 = 16_384;
/// The narrowest window of slots a shard's name is searched for (bounds the search at about
/// 16384 / 64 = 256 names per shard).
const MIN_WINDOW: u32 = 64;

/// The shards of one logical queue: its name and the name of each shard's stream (see the
/// [module docs](super) for the naming rule).
///
/// ```
/// use pythia_redis::ShardedQueue;
///
/// let queue = ShardedQueue::new("orders", 4).unwrap();
/// assert_eq!(queue.shard_count(), 4);
/// assert!(queue.stream(0).starts_with("{orders#0."));
/// // A key always lands in the same shard.
/// assert_eq!(queue.shard_for_key("customer 7"), queue.shard_for_key("customer 7"));
/// assert!(ShardedQueue::new("{orders}", 4).is_err(), "the shards carry their own tags");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedQueue {
    name: String,
    streams: Arc<[String]>,
}

impl ShardedQueue {
    /// Most shards a queue may have.
    pub const MAX_SHARDS: usize = 1024;

    /// The queue `name` in `shards` shards (1 to [`MAX_SHARDS`](Self::MAX_SHARDS)).
    ///
    /// Fails with a [`Config`](pythia_core::BrokerErrorKind::Config) error when the name is
    /// empty or holds `{`, `}` (each shard carries a hash tag of its own) or a line break, or
    /// the shard count is out of range.
    pub fn new(name: &str, shards: usize) -> Result<Self, BrokerError> {
        if name.is_empty() || name.contains(['{', '}', '\n', '\r']) {
            return Err(BrokerError::config(format!(
                "invalid sharded queue name {name:?}: it must be non-empty, without braces \
                 (each shard has a hash tag of its own) and without line breaks"
            )));
        }
        if !(1..=Self::MAX_SHARDS).contains(&shards) {
            return Err(BrokerError::config(format!(
                "invalid shard count {shards} for queue {name:?}: expected 1 to {}",
                Self::MAX_SHARDS
            )));
        }
        let streams = (0..shards).map(|i| shard_stream(name, i, shards)).collect();
        Ok(Self {
            name: name.to_owned(),
            streams,
        })
    }

    /// The logical queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many shards it has.
    pub fn shard_count(&self) -> usize {
        self.streams.len()
    }

    /// The stream of shard `shard`.
    ///
    /// # Panics
    ///
    /// When `shard` is not below [`shard_count`](Self::shard_count).
    pub fn stream(&self, shard: usize) -> &str {
        &self.streams[shard]
    }

    /// Every shard's stream, by shard index.
    pub fn streams(&self) -> &[String] {
        &self.streams
    }

    /// The shard of `key`: Google's jump consistent hash of the 64-bit FNV-1a hash of the
    /// key's bytes, so any language can compute it, and a change of the shard count from N to
    /// M moves only about |M − N| / max(M, N) of the keys.
    pub fn shard_for_key(&self, key: impl AsRef<[u8]>) -> usize {
        jump_hash(fnv1a(key.as_ref()), self.streams.len())
    }

    /// The key holding the layout (`<prefix>:{<queue>}:shards`).
    pub fn layout_key(&self, key_prefix: &str) -> String {
        QueueKeys::new(key_prefix, &self.name).shard_layout()
    }

    /// Stores the layout unless one is stored, and fails when the stored one differs.
    pub(super) async fn check_layout(&self, conn: &RedisConnection) -> Result<(), BrokerError> {
        let key = self.layout_key(conn.config().key_prefix());
        let want = self.streams.join("\n");
        let mut m = conn.manager();
        let (_, stored): (redis::Value, Option<String>) = layout_call(&key, &want)
            .query(&mut m)
            .await
            .map_err(|e| conn.error("SET NX (shard layout)", e))?;
        match stored {
            Some(stored) if stored != want => Err(BrokerError::config(format!(
                "the sharded queue {:?} is laid out in {} shards in {key} ({}), not in {} ({}): \
                 every producer and consumer must use the same shard count; to change it, \
                 drain the queue, stop them all and delete {key}",
                self.name,
                stored.lines().count(),
                stored.replace('\n', " "),
                self.streams.len(),
                want.replace('\n', " "),
            ))),
            _ => Ok(()),
        }
    }
}

/// The layout `want` stored at `key` unless one is (`SET NX`), then read back: replies
/// `(_, stored layout)`.
fn layout_call(key: &str, want: &str) -> Call {
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(key)
        .arg(want)
        .arg("NX")
        .cmd("GET")
        .arg(key);
    Call::pipeline(pipe)
}

/// The stream of shard `i` of `n` of the queue `name`: `{name#i.k}` for the smallest `k` whose
/// slot is within the shard's window.
fn shard_stream(name: &str, i: usize, n: usize) -> String {
    let (i, n) = (i as u32, n as u32);
    let center = ((2 * i + 1) * SLOTS) / (2 * n);
    let width = (SLOTS / (4 * n)).max(MIN_WINDOW);
    let low = (center + SLOTS - width / 2) % SLOTS;
    let mut tag = String::with_capacity(name.len() + 12);
    for k in 0u32.. {
        tag.clear();
        use std::fmt::Write;
        let _ = write!(tag, "{name}#{i}.{k}");
        let slot = u32::from(key_slot(tag.as_bytes()));
        if (slot + SLOTS - low) % SLOTS < width {
            break;
        }
    }
    format!("{{{tag}}}")
}

/// Redis Cluster's slot of a hash tag's content: CRC16 (XMODEM) modulo 16384.
fn key_slot(tag: &[u8]) -> u16 {
    (crc16_xmodem(tag) as u32 % SLOTS) as u16
}

const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014).
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_stored_only_if_absent_and_read_back() {
        let q = ShardedQueue::new("orders", 2).unwrap();
        let key = q.layout_key("pythia");
        assert_eq!(key, "pythia:{orders}:shards");
        let want = q.streams().join("\n");
        assert_eq!(
            layout_call(&key, &want).commands_text(),
            [
                vec!["SET", key.as_str(), want.as_str(), "NX"],
                vec!["GET", key.as_str()]
            ]
        );
    }

    #[test]
    fn slots_match_redis() {
        // CLUSTER KEYSLOT values, and the CRC16/XMODEM check value.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        for key in ["orders#0.3", "a", "", "{x}", "{orders#2.7}"] {
            let theirs = format!("{:?}", redis::cluster_routing::Slot::for_key(key));
            let tag = crate::keys::hash_tag(key).as_bytes();
            assert_eq!(theirs, format!("Slot({})", key_slot(tag)), "{key}");
        }
    }

    #[test]
    fn shards_spread_evenly_over_the_slot_space() {
        for n in [1, 2, 3, 4, 7, 16, 100] {
            let q = ShardedQueue::new("jobs", n).unwrap();
            for (i, stream) in q.streams().iter().enumerate() {
                let tag = crate::keys::hash_tag(stream);
                assert_eq!(format!("{{{tag}}}"), *stream, "the whole name is the tag");
                assert!(tag.starts_with(&format!("jobs#{i}.")));
                let slot = f64::from(key_slot(tag.as_bytes()));
                let center = (2 * i + 1) as f64 * f64::from(SLOTS) / (2 * n) as f64;
                let window = f64::from((SLOTS / (4 * n as u32)).max(MIN_WINDOW));
                let off = (slot - center).rem_euclid(f64::from(SLOTS));
                let off = off.min(f64::from(SLOTS) - off);
                assert!(off <= window / 2.0 + 1.0, "n={n} shard {i}: slot {slot}");
            }
        }
        // Three masters with equal ranges, as redis-cli makes them: four shards use them all.
        let q = ShardedQueue::new("orders", 4).unwrap();
        let mut masters: Vec<u16> = q
            .streams()
            .iter()
            .map(|s| key_slot(crate::keys::hash_tag(s).as_bytes()) / 5462)
            .collect();
        masters.dedup();
        assert_eq!(masters, [0, 1, 2]);
        assert_eq!(q, ShardedQueue::new("orders", 4).unwrap(), "deterministic");
        assert_eq!(
            q.layout_key("pythia"),
            "pythia:{orders}:shards",
            "the layout is in the logical queue's slot"
        );
    }

    #[test]
    fn names_and_counts_are_checked() {
        for bad in ["", "{a}", "a}", "a\nb"] {
            assert!(ShardedQueue::new(bad, 2).is_err(), "{bad:?}");
        }
        assert!(ShardedQueue::new("a", 0).is_err());
        assert!(ShardedQueue::new("a", ShardedQueue::MAX_SHARDS + 1).is_err());
        let big = ShardedQueue::new("a", ShardedQueue::MAX_SHARDS).unwrap();
        let unique: std::collections::HashSet<&String> = big.streams().iter().collect();
        assert_eq!(unique.len(), ShardedQueue::MAX_SHARDS);
    }

    #[test]
    fn keys_map_to_shards_stably_and_evenly() {
        let q = ShardedQueue::new("q", 4).unwrap();
        let mut counts = [0usize; 4];
        for k in 0..40_000 {
            counts[q.shard_for_key(format!("customer {k}"))] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
        // Fixed values: the mapping must never change between releases.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let fixed: Vec<usize> = ["a", "b", "customer 42", ""]
            .iter()
            .map(|k| q.shard_for_key(k))
            .collect();
        assert_eq!(
            fixed,
            [2, 3, 1, 1],
            "checked against an independent implementation"
        );
        // Growing from 4 to 5 shards moves about a fifth of the keys.
        let q5 = ShardedQueue::new("q", 5).unwrap();
        let moved = (0..10_000)
            .filter(|k| {
                let key = format!("k{k}");
                q.shard_for_key(&key) != q5.shard_for_key(&key)
            })
            .count();
        assert!((1_500..2_500).contains(&moved), "{moved}");
    }
}
