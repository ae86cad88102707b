//! Bytes read eight at a time as one `u64` ("SIMD within a register"), for
//! the codecs' hottest scans: hex and decimal ids, `tracestate` values. Each
//! test sets the high bit of the bytes it holds for; every result is exact
//! per byte, with no carry from one byte into the next.

/// A byte of ones in every position, and each byte's high bit.
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
pub(crate) const HIGH: u64 = ONES * 0x80;

/// The high bit of each byte of `x` that is in `lo..=hi`, for a word whose
/// bytes are all below 0x80 (callers check or clear the high bits first):
/// adding `0x80 - lo` sets a byte's high bit from `lo` up, adding `0x7f - hi`
/// from above `hi`, and no byte carries into the next. Only the high bits of
/// the result mean anything.
pub(crate) fn within(x: u64, lo: u8, hi: u8) -> u64 {
    let from_lo = x.wrapping_add(ONES * (0x80 - u64::from(lo)));
    let above_hi = x.wrapping_add(ONES * (0x7f - u64::from(hi)));
    from_lo & !above_hi
}

/// How many bytes `s` starts with that `holds` flags (the high bit of each
/// byte of a little-endian word it accepts): eight at a time, then the last
/// fewer than eight one at a time, each alone in the lowest byte of a word.
pub(crate) fn run(s: &[u8], holds: impl Fn(u64) -> u64) -> usize {
    let mut words = s.chunks_exact(8);
    let mut len = 0;
    for word in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let rejected = !holds(u64::from_le_bytes(bytes)) & HIGH;
        if rejected != 0 {
            // The lowest flagged byte is the first in `s`.
            return len + (rejected.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    let tail = words.remainder();
    let one = |b: u8| holds(u64::from(b)) & 0x80 != 0;
    len + tail.iter().position(|&b| !one(b)).unwrap_or(tail.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_flags_exactly_the_bytes_in_range() {
        for lo in [0u8, 0x21, b'0', b'a', 0x7f] {
            for hi in [lo, lo.saturating_add(9).min(0x7f), 0x7f] {
                for b in 0..0x80u8 {
                    let x = u64::from_le_bytes([b, 0x7f, 0, b, lo, hi, 0x40, b]);
                    let flags = within(x, lo, hi).to_le_bytes();
                    for (i, byte) in x.to_le_bytes().into_iter().enumerate() {
                        let expected = (lo..=hi).contains(&byte);
                        assert_eq!(
                            flags[i] & 0x80 != 0,
                            expected,
                            "{byte:#x} in {lo:#x}..={hi:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn run_counts_the_leading_accepted_bytes() {
        let digit = |x: u64| within(x, b'0', b'9');
        for s in [
            "",
            "1",
            "12345678",
            "123456789",
            "1234567x9",
            "x",
            "12345678123456781",
            "123456781234567x",
        ] {
            let expected = s
                .bytes()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(s.len());
            assert_eq!(run(s.as_bytes(), digit), expected, "{s:?}");
        }
    }
}
