//! Byte tests on eight bytes at once, in a `u64` ("SIMD within a register").
//!
//! The JSON string scan and the header-value check run over every byte of every uncached token;
//! one word test per eight bytes replaced a test per byte in both. Words are little-endian, so
//! the first byte of the text is the lowest byte of the word and the lowest flag is the first
//! byte found.

/// `byte` in each of the eight bytes of a word.
pub(crate) const fn splat(byte: u8) -> u64 {
    u64::from_le_bytes([byte; 8])
}

/// The word holding `bytes`, the first byte lowest.
#[inline]
pub(crate) fn load(bytes: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*bytes)
}

/// The high bit of each byte of `word` that is below `n` (at most 0x80).
///
/// Exact for the lowest flagged byte, and so for whether any is: a borrow can carry a false flag
/// into a higher byte only from a lower byte that is itself flagged.
#[inline]
pub(crate) fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(splat(n)) & !word & splat(0x80)
}

/// The high bit of each zero byte of `word`, with the exactness of [`below`].
#[inline]
pub(crate) fn zero_bytes(word: u64) -> u64 {
    below(word, 1)
}
