//! Lower-case hex for ids, shared by every codec, and Datadog's decimal ids.
//! Parsing is by length-checked slices and returns `None` on anything
//! unexpected; nothing here can panic.

use super::swar::{within, HIGH, ONES};
use super::value::Buf;

/// Parses exactly `s.len()` hex digits (1..=32) into a `u128`. `uppercase` says
/// whether `A-F` is accepted (W3C forbids it; B3 and Jaeger tolerate it).
pub fn parse_u128(s: &[u8], uppercase: bool) -> Option<u128> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    if s.len() <= 16 {
        return parse_u64(s, uppercase).map(u128::from);
    }
    let (high, low) = s.split_at(s.len() - 16);
    Some(u128::from(parse_u64(high, uppercase)?) << 64 | u128::from(parse_u64(low, uppercase)?))
}

/// Parses 1..=16 hex digits into a `u64`.
pub fn parse_u64(s: &[u8], uppercase: bool) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    // Ids are mostly 16 or 32 digits (two 16-digit halves): eight at a time.
    if let Ok(digits) = <&[u8; 16]>::try_from(s) {
        return parse_16(digits, uppercase);
    }
    let table = if uppercase { &ANY_CASE } else { &LOWER };
    // OR-ing the digits lets one check at the end catch any invalid byte.
    let mut acc = 0u64;
    let mut invalid = 0u8;
    for &b in s {
        let d = table[usize::from(b)];
        invalid |= d;
        acc = acc << 4 | u64::from(d & 0xf);
    }
    (invalid & INVALID == 0).then_some(acc)
}

/// Exactly 16 hex digits, read as two words.
pub fn parse_16(digits: &[u8; 16], uppercase: bool) -> Option<u64> {
    let (high, low) = digits.split_first_chunk::<8>()?;
    let low = <[u8; 8]>::try_from(low).ok()?;
    let high = parse_8(*high, uppercase)?;
    let low = parse_8(low, uppercase)?;
    Some(u64::from(high) << 32 | u64::from(low))
}

/// Two lower-case hex digits (W3C's version and flags fields).
pub fn parse_2(digits: [u8; 2]) -> Option<u8> {
    let [high, low] = digits.map(|b| LOWER[usize::from(b)]);
    ((high | low) & INVALID == 0).then_some(high << 4 | low)
}

/// Eight hex digits, most significant first, read as one word (SWAR): each
/// byte is checked against the digit and letter ranges by adding offsets that
/// set its high bit, with no carry between bytes since every byte is below
/// 0x80 by then. `uppercase` accepts `A-F` too.
fn parse_8(digits: [u8; 8], uppercase: bool) -> Option<u32> {
    let x = u64::from_be_bytes(digits);
    if x & HIGH != 0 {
        return None;
    }
    let mut valid = within(x, b'0', b'9') | within(x, b'a', b'f');
    if uppercase {
        valid |= within(x, b'A', b'F');
    }
    if valid & HIGH != HIGH {
        return None;
    }
    // Digits keep their low nibble; letters (bit 6 set) add 9 to theirs.
    let nibbles = (x & (ONES * 0x0f)) + ((x >> 6) & ONES) * 9;
    // Pack the eight nibbles: pairs into bytes, bytes into 16 bits, into 32.
    let bytes = (nibbles | nibbles >> 4) & 0x00ff_00ff_00ff_00ff;
    let halves = (bytes | bytes >> 8) & 0x0000_ffff_0000_ffff;
    u32::try_from((halves | halves >> 16) & 0xffff_ffff).ok()
}

/// Marks a byte that is not a digit in the decoding tables.
const INVALID: u8 = 0x80;

/// Byte → digit value, or [`INVALID`]: lower-case only.
static LOWER: [u8; 256] = table(false);
/// Byte → digit value, or [`INVALID`]: either case.
static ANY_CASE: [u8; 256] = table(true);

const fn table(uppercase: bool) -> [u8; 256] {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        if uppercase {
            t[b'A' as usize + i] = 10 + i as u8;
        }
        i += 1;
    }
    t
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Byte → its two lower-case hex digits: ids are written a byte at a time.
static PAIRS: [[u8; 2]; 256] = pairs();

const fn pairs() -> [[u8; 2]; 256] {
    let mut t = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    t
}

/// Writes `v` as exactly `out.len()` lower-case hex digits (most significant first).
pub fn write(v: u128, out: &mut [u8]) {
    // In 64-bit halves: the low 16 digits, then what is left of the high half.
    let split = out.len().saturating_sub(16);
    let (high, low) = out.split_at_mut(split);
    write_u64(v as u64, low);
    write_u64((v >> 64) as u64, high);
}

/// Writes the low `out.len()` (at most 16) hex digits of `v`.
fn write_u64(mut v: u64, out: &mut [u8]) {
    let mut pairs = out.rchunks_exact_mut(2);
    for pair in &mut pairs {
        pair.copy_from_slice(&PAIRS[(v & 0xff) as usize]);
        v >>= 8;
    }
    if let [digit] = pairs.into_remainder() {
        *digit = DIGITS[(v & 0xf) as usize];
    }
}

/// `v` as 32 hex digits.
pub fn u128_32(v: u128) -> [u8; 32] {
    let mut out = [0; 32];
    write(v, &mut out);
    out
}

/// `v` as 16 hex digits.
pub fn u64_16(v: u64) -> [u8; 16] {
    let mut out = [0; 16];
    write(u128::from(v), &mut out);
    out
}

/// Appends a trace id in a width B3 and Jaeger accept: 32 digits, or, when
/// `narrow`, only its low 64 bits as 16 digits (for 64-bit-only neighbours).
/// An id whose low 64 bits are zero is always written whole: narrowed it would
/// be the all-zero id every reader rejects, breaking the trace.
pub(crate) fn push_trace_id(out: &mut Buf, v: u128, narrow: bool) {
    if narrow && v as u64 != 0 {
        out.extend(&u64_16(v as u64));
    } else {
        out.extend(&u128_32(v));
    }
}

/// 1–20 ASCII digits fitting a `u64`.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    // Up to 19 digits always fit a u64: only a 20th needs its arithmetic checked.
    let (head, last) = s.split_at(s.len().min(19));
    let acc = parse_19(head)?;
    last.iter().try_fold(acc, |acc, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        acc.checked_mul(10)?.checked_add(digit)
    })
}

/// Up to 19 digits (which cannot overflow): the leading `len % 8` one at a
/// time, then eight at a time as words (an id is 19 or 20 digits mostly).
fn parse_19(s: &[u8]) -> Option<u64> {
    let (lead, words) = s.split_at(s.len() % 8);
    let mut acc = 0u64;
    let mut not_digit = false;
    for &b in lead {
        let digit = b.wrapping_sub(b'0');
        not_digit |= digit > 9;
        acc = acc.wrapping_mul(10).wrapping_add(u64::from(digit));
    }
    for word in words.chunks_exact(8) {
        let word = u64::from_le_bytes(word.try_into().ok()?);
        not_digit |= !eight_digits(word);
        acc = acc
            .wrapping_mul(100_000_000)
            .wrapping_add(eight_digits_value(word));
    }
    (!not_digit).then_some(acc)
}

/// Whether each byte of `x` is an ASCII digit (a byte at 0x80 or above is
/// not, and is caught before [`within`] could be misled by its carry).
fn eight_digits(x: u64) -> bool {
    x & HIGH == 0 && within(x, b'0', b'9') & HIGH == HIGH
}

/// The number eight ASCII digits spell, the first (lowest-addressed, so
/// least significant in the little-endian word) most significant: pairs,
/// then fours, then all eight, by multiply-and-add (as fast_float does).
fn eight_digits_value(x: u64) -> u64 {
    const LOW_BYTES: u64 = 0x0000_00ff_0000_00ff;
    const MUL_HIGH: u64 = 100 + (1_000_000 << 32);
    const MUL_LOW: u64 = 1 + (10_000 << 32);
    let digits = x.wrapping_sub(ONES * u64::from(b'0'));
    let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8);
    ((pairs & LOW_BYTES)
        .wrapping_mul(MUL_HIGH)
        .wrapping_add(((pairs >> 16) & LOW_BYTES).wrapping_mul(MUL_LOW)))
        >> 32
}

/// Whether `s` is `v` as `itoa` writes it: digits without a leading zero.
/// A header already holding an id is checked by reading it, which costs less
/// than writing the id out to compare.
pub(crate) fn is_decimal(s: &[u8], v: u64) -> bool {
    let canonical = matches!(s, [b'1'..=b'9', ..] | [b'0']);
    canonical && parse_decimal(s) == Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_fixed_width_hex() {
        let v = 0x4bf92f3577b34da6a3ce929d0e0e4736;
        assert_eq!(&u128_32(v), b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parse_u128(&u128_32(v), false), Some(v));
        assert_eq!(&u64_16(0xab), b"00000000000000ab");
        let mut odd = [0; 3];
        write(0xabc, &mut odd);
        assert_eq!(&odd, b"abc");
        let mut wide = [0; 21];
        write(0x1_2345_6789_abcd_ef01_2345, &mut wide);
        assert_eq!(&wide, b"123456789abcdef012345");
    }

    /// Decimal ids agree with a checked digit-at-a-time reader on every
    /// length, valid and with one byte of any value anywhere.
    #[test]
    fn decimal_ids_agree_with_one_checked_digit_at_a_time() {
        let naive = |s: &[u8]| -> Option<u64> {
            if s.is_empty() || s.len() > 20 {
                return None;
            }
            s.iter().try_fold(0u64, |acc, &b| {
                let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
                acc.checked_mul(10)?.checked_add(digit)
            })
        };
        let mut rng = fastrand::Rng::with_seed(18);
        for len in 0..=21 {
            for _ in 0..200 {
                let valid: Vec<u8> = (0..len).map(|_| b'0' + rng.u8(0..10)).collect();
                assert_eq!(parse_decimal(&valid), naive(&valid), "{valid:?}");
                if len == 0 {
                    continue;
                }
                let mut bad = valid.clone();
                bad[rng.usize(0..len)] = rng.u8(..);
                assert_eq!(parse_decimal(&bad), naive(&bad), "{bad:?}");
            }
        }
        for v in [u64::MAX, u64::MAX - 1, 10_u64.pow(19), 10_u64.pow(19) - 1] {
            assert_eq!(parse_decimal(v.to_string().as_bytes()), Some(v));
        }
    }

    #[test]
    fn two_digits_agree_with_the_general_reader() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let general = parse_u64(&[a, b], false).map(|v| v as u8);
                assert_eq!(parse_2([a, b]), general, "{a:#x} {b:#x}");
            }
        }
    }

    /// A header holds an id only as the id would be written: the same digits,
    /// no leading zero, nothing else.
    #[test]
    fn is_decimal_accepts_only_the_written_form() {
        for (text, v) in [
            ("07", 7),
            ("", 0),
            ("00", 0),
            ("7 ", 7),
            ("+7", 7),
            ("8", 7),
            ("18446744073709551616", 0),
            ("018446744073709551615", u64::MAX),
        ] {
            assert!(!is_decimal(text.as_bytes(), v), "{text:?}");
        }
    }

    #[test]
    fn decimal_reads_every_digit() {
        for v in [
            0,
            7,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            12345,
            67667974448284343,
            u64::MAX,
        ] {
            let text = v.to_string();
            assert!(is_decimal(text.as_bytes(), v));
            assert_eq!(parse_decimal(text.as_bytes()), Some(v));
        }
    }

    #[test]
    fn sixteen_digits_read_as_words_agree_with_one_at_a_time() {
        // Every byte value at every position, among valid digits of either
        // case: the word reader (16 digits) against the tables, a digit at a time.
        let one_at_a_time = |s: &[u8], uppercase: bool| {
            let table = if uppercase { &ANY_CASE } else { &LOWER };
            s.iter().try_fold(0u64, |acc, &b| {
                let d = table[usize::from(b)];
                (d & INVALID == 0).then_some(acc << 4 | u64::from(d))
            })
        };
        for base in [*b"0123456789abcdef", *b"FEDCBA9876543210"] {
            for position in 0..16 {
                for byte in 0..=255u8 {
                    let mut s = base;
                    s[position] = byte;
                    for uppercase in [false, true] {
                        let expected = one_at_a_time(&s, uppercase);
                        assert_eq!(parse_u64(&s, uppercase), expected, "{s:?}");
                    }
                }
            }
        }
        for v in [0, 1, 0x00f0_67aa_0ba9_02b7, u64::MAX, 0x8000_0000_0000_0000] {
            assert_eq!(parse_u64(&u64_16(v), false), Some(v));
        }
        assert_eq!(
            parse_u128(b"4bf92f3577b34da6a3ce929d0e0e4736", false),
            Some(0x4bf92f3577b34da6a3ce929d0e0e4736)
        );
        assert_eq!(parse_u64(b"4BF92F3577B34DA6", false), None);
        assert_eq!(
            parse_u64(b"4BF92F3577B34DA6", true),
            Some(0x4bf92f3577b34da6)
        );
    }

    #[test]
    fn uppercase_only_where_allowed() {
        assert_eq!(parse_u64(b"AB", false), None);
        assert_eq!(parse_u64(b"AB", true), Some(0xab));
    }

    #[test]
    fn rejects_empty_overlong_and_non_hex() {
        assert_eq!(parse_u128(b"", false), None);
        assert_eq!(parse_u128(&[b'1'; 33], false), None);
        assert_eq!(parse_u64(&[b'1'; 17], false), None);
        assert_eq!(parse_u64(b"12g4", false), None);
    }
}
