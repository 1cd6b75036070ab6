//! JSON text for the envelope encoder, written straight into a byte buffer: string contents
//! with serde_json's escaping and unsigned integers, byte for byte what `serde_json` writes.
//!
//! The envelope is encoded once per produced message, and going through `serde::Serialize`
//! and `serde_json`'s per-byte escape loop cost most of the producer's CPU. Here a string that
//! needs no escaping (the usual body and every generated id) is checked 16 bytes at a time
//! and copied in one piece.

/// Whether a byte must be escaped in a JSON string. (`|`, not `||`: no branch, so that a
/// block of these tests becomes vector compares.)
#[inline(always)]
const fn is_escape_byte(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

/// The index of the first byte of `bytes[from..]` to escape, or `bytes.len()`.
#[inline]
fn escape_byte_at(bytes: &[u8], from: usize) -> usize {
    scan(bytes, from, is_escape_byte)
}

/// The first index at or after `from` whose byte satisfies `hit`, or `bytes.len()`. Blocks
/// of 16 bytes are tested without a branch per byte (the compiler makes vector compares of
/// it); only a block with a hit, or a remainder shorter than a block that the overlapping last
/// block of the slice does not clear, is searched byte by byte.
#[inline(always)]
fn scan(bytes: &[u8], from: usize, hit: impl Fn(u8) -> bool) -> usize {
    const BLOCK: usize = 16;
    let any_hit = |block: &[u8; BLOCK]| block.iter().fold(false, |any, &b| any | hit(b));
    let mut i = from;
    loop {
        match bytes.get(i..i + BLOCK) {
            Some(block) => {
                if any_hit(block.try_into().expect("a 16-byte slice")) {
                    break;
                }
                i += BLOCK;
            }
            None => {
                // The last 16 bytes of the slice cover the rest; the ones before `i` that
                // they also cover can only add a hit, which the byte loop then sorts out.
                if bytes
                    .last_chunk::<BLOCK>()
                    .is_some_and(|last| !any_hit(last))
                {
                    return bytes.len();
                }
                break;
            }
        }
    }
    while let Some(&b) = bytes.get(i) {
        if hit(b) {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

/// The length of the leading run of `bytes` that is ASCII and needs no JSON escaping. When
/// it is the whole slice, the bytes are both valid UTF-8 and their own JSON string contents.
pub(crate) fn plain_ascii_prefix(bytes: &[u8]) -> usize {
    scan(bytes, 0, |b| (b >= 0x80) | is_escape_byte(b))
}

/// Appends `s` as the contents of a JSON string (without the quotes), escaped exactly as
/// serde_json does: `\"`, `\\`, `\b` `\t` `\n` `\f` `\r`, other control bytes as `\u00xx`;
/// everything else, including non-ASCII, as is.
///
/// `s` must be UTF-8 for the output to be JSON; `skip` is a prefix already known to need no
/// escaping (from [`plain_ascii_prefix`]), 0 when unknown.
pub(crate) fn write_escaped(buf: &mut Vec<u8>, s: &[u8], skip: usize) {
    let mut start = 0;
    let mut i = escape_byte_at(s, skip);
    while i < s.len() {
        buf.extend_from_slice(&s[start..i]);
        write_escape(buf, s[i]);
        start = i + 1;
        i = escape_byte_at(s, start);
    }
    buf.extend_from_slice(&s[start..]);
}

/// Appends `s` in quotes, escaped (see [`write_escaped`]).
pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    write_escaped(buf, s.as_bytes(), 0);
    buf.push(b'"');
}

fn write_escape(buf: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        _ => {
            buf.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
            return;
        }
    };
    buf.extend_from_slice(&[b'\\', short]);
}

/// Appends `n` in decimal.
pub(crate) fn write_u64(buf: &mut Vec<u8>, n: u64) {
    if n < 10 {
        // An attempt number, the envelope version.
        buf.push(b'0' + n as u8);
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    // Four digits per 64-bit division, then two 32-bit ones for them.
    while n >= 10_000 {
        let four = (n % 10_000) as u32;
        n /= 10_000;
        at -= 4;
        digits[at..at + 2].copy_from_slice(pair(four / 100));
        digits[at + 2..at + 4].copy_from_slice(pair(four % 100));
    }
    let mut n = n as u32;
    if n >= 100 {
        at -= 2;
        digits[at..at + 2].copy_from_slice(pair(n % 100));
        n /= 100;
    }
    if n >= 10 {
        at -= 2;
        digits[at..at + 2].copy_from_slice(pair(n));
    } else {
        at -= 1;
        digits[at] = b'0' + n as u8;
    }
    buf.extend_from_slice(&digits[at..]);
}

/// The two decimal digits of `n` (below 100).
#[inline(always)]
fn pair(n: u32) -> &'static [u8; 2] {
    const PAIRS: &[u8; 200] = b"\
        0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let i = n as usize * 2;
    PAIRS[i..i + 2].try_into().expect("n is below 100")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_str(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    #[test]
    fn every_single_byte_is_escaped_like_serde_json() {
        for b in 0u8..0x80 {
            let s = String::from(char::from(b));
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            assert_eq!(ours, serde_str(&s), "byte {b:#04x}");
        }
    }

    /// Checks `write_str` against serde_json, and `plain_ascii_prefix` and `write_escaped`
    /// from it against the byte-by-byte definition.
    fn check_str(s: &str) {
        let mut ours = Vec::new();
        write_str(&mut ours, s);
        assert_eq!(ours, serde_str(s), "{s:?}");
        let bytes = s.as_bytes();
        let plain = bytes
            .iter()
            .position(|&b| b >= 0x80 || is_escape_byte(b))
            .unwrap_or(bytes.len());
        assert_eq!(plain_ascii_prefix(bytes), plain, "{s:?}");
        let mut skipped = Vec::new();
        write_escaped(&mut skipped, bytes, plain);
        assert_eq!(skipped, ours[1..ours.len() - 1], "{s:?}");
    }

    #[test]
    fn one_special_character_at_every_position_of_a_plain_run() {
        // Each position relative to the 16-byte blocks and the overlapping last block, in
        // strings shorter and longer than one block.
        for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}", "é", "😀"] {
            for len in 0..70 {
                for at in 0..=len {
                    let mut s = "a".repeat(len);
                    s.insert_str(at, special);
                    check_str(&s);
                }
            }
        }
    }

    #[test]
    fn random_strings_are_escaped_like_serde_json() {
        let mut rng = fastrand::Rng::with_seed(7);
        let specials: Vec<char> = "\"\\/\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}é€😀"
            .chars()
            .collect();
        for _ in 0..20_000 {
            let s: String = if rng.bool() {
                // Dense: runs and escapes mixed.
                (0..rng.usize(0..40))
                    .map(|_| match rng.u8(0..3) {
                        0 => specials[rng.usize(..specials.len())],
                        _ => rng.char('a'..='z'),
                    })
                    .collect()
            } else {
                // Sparse: long plain runs with a few specials anywhere.
                let mut s: Vec<char> = (0..rng.usize(0..100))
                    .map(|_| rng.char(' '..='~'))
                    .collect();
                for _ in 0..rng.usize(0..3) {
                    s.insert(
                        rng.usize(0..=s.len()),
                        specials[rng.usize(..specials.len())],
                    );
                }
                s.into_iter().collect()
            };
            check_str(&s);
        }
    }

    #[test]
    fn integers_are_written_like_serde_json() {
        let mut rng = fastrand::Rng::with_seed(11);
        let edges = [
            0,
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            1_732_000_000_000,
            u64::MAX,
        ];
        let random = (0..10_000).map(|_| rng.u64(..) >> rng.u32(0..64));
        for n in edges.into_iter().chain(random) {
            let mut ours = Vec::new();
            write_u64(&mut ours, n);
            assert_eq!(ours, n.to_string().into_bytes());
        }
    }
}
