//! Lower-case hex for ids, shared by every codec. Parsing is by length-checked
//! slices and returns `None` on anything unexpected; nothing here can panic.

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
    if let Ok(digits) = <[u8; 16]>::try_from(s) {
        let (high, low) = digits.split_at(8);
        let high = parse_8(high.try_into().ok()?, uppercase)?;
        let low = parse_8(low.try_into().ok()?, uppercase)?;
        return Some(u64::from(high) << 32 | u64::from(low));
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

/// Eight hex digits, most significant first, read as one word (SWAR): each
/// byte is checked against the digit and letter ranges by adding offsets that
/// set its high bit, with no carry between bytes since every byte is below
/// 0x80 by then. `uppercase` accepts `A-F` too.
fn parse_8(digits: [u8; 8], uppercase: bool) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let x = u64::from_be_bytes(digits);
    if x & HIGH != 0 {
        return None;
    }
    // The high bit of each byte in `lo..=hi`.
    let within = |lo: u64, hi: u64| (x + ONES * (0x80 - lo)) & !(x + ONES * (0x7f - hi));
    let mut valid = within(u64::from(b'0'), u64::from(b'9')) | within(0x61, 0x66);
    if uppercase {
        valid |= within(0x41, 0x46);
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

/// Appends `v` in decimal (Datadog's ids), without the formatting machinery.
pub(crate) fn push_decimal(out: &mut Buf, v: u64) {
    out.extend(itoa::Buffer::new().format(v).as_bytes());
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

    #[test]
    fn decimal_writes_every_digit() {
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
            let mut buf = Buf::new();
            push_decimal(&mut buf, v);
            assert_eq!(buf.get(), Some(v.to_string().as_bytes()));
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
