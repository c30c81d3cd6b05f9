//! The gateway binary's allocator: mimalloc, with memory given back to the kernel sooner.
//!
//! mimalloc 3 holds the pages a thread freed for a second (its `purge_delay`, 1,000 ms) before it
//! returns them, in case they are wanted again. A gateway frees in bursts (a wave of requests,
//! connections closing), and for that second its resident memory is the burst's high-water mark:
//! with 1,000 keep-alive connections it rose from ~28 to 36 MiB for a second at a time, where a
//! 50 ms delay peaked at 30 MiB (docs/profile.md). The cost is page faults when freed pages are
//! wanted again: ~17 per 1,000 requests at full load, against ~3 with the default.
//!
//! `MIMALLOC_PURGE_DELAY` in the environment still wins: mimalloc reads it when the process starts,
//! and [`shorten_purge_delay`] then leaves the delay alone.
//!
//! This module holds the binary's only `unsafe` code: two calls into mimalloc's C API, which the
//! `mimalloc` crate does not wrap. The libraries forbid `unsafe` outright.

use std::ffi::{c_int, c_long};

/// Fewer resident pages per connection than glibc malloc with the same throughput (measured in
/// docs/profile.md); the libraries leave the choice to whoever builds the application.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`'s value in mimalloc 3's `mi_option_t` (mimalloc.h); libmimalloc-sys
/// does not export it. Reading its default back (below) checks that it still names that option.
const PURGE_DELAY_OPTION: c_int = 15;
/// mimalloc 3's default purge delay, and the default of no other option: reading it at
/// [`PURGE_DELAY_OPTION`] tells that the constant is right for the linked mimalloc.
const MIMALLOC_DEFAULT_PURGE_DELAY_MS: c_long = 1_000;
/// The gateway's purge delay.
pub(crate) const PURGE_DELAY_MS: c_long = 50;

// The signatures of mimalloc.h: `long mi_option_get(mi_option_t)` and
// `void mi_option_set(mi_option_t, long)`, with `mi_option_t` a C enum (an `int`). The symbols are
// those of the mimalloc that libmimalloc-sys builds and links for the global allocator.
#[allow(unsafe_code)]
unsafe extern "C" {
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// What [`shorten_purge_delay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PurgeDelay {
    /// Set to [`PURGE_DELAY_MS`] (or found already set to it).
    Shortened,
    /// Left as `MIMALLOC_PURGE_DELAY` set it.
    SetByEnvironment,
    /// Left alone: the option read back a value that is neither mimalloc 3's default nor ours, so
    /// [`PURGE_DELAY_OPTION`] may name another option in the linked mimalloc.
    Unrecognised(c_long),
}

/// Shortens mimalloc's purge delay to [`PURGE_DELAY_MS`], unless the environment set it. For the
/// start of `main`, before any thread is spawned (mimalloc's options are not synchronised).
pub(crate) fn shorten_purge_delay() -> PurgeDelay {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return PurgeDelay::SetByEnvironment;
    }
    let current = purge_delay_option();
    if current == PURGE_DELAY_MS {
        return PurgeDelay::Shortened;
    }
    if current != MIMALLOC_DEFAULT_PURGE_DELAY_MS {
        return PurgeDelay::Unrecognised(current);
    }
    #[allow(unsafe_code)]
    // SAFETY: `mi_option_set` takes an option and a value by value and stores the value in
    // mimalloc's option table; the option was just read back as the purge delay's default. The
    // caller runs before any other thread exists, so no thread reads the table meanwhile.
    unsafe {
        mi_option_set(PURGE_DELAY_OPTION, PURGE_DELAY_MS);
    }
    PurgeDelay::Shortened
}

/// The value mimalloc holds at [`PURGE_DELAY_OPTION`].
fn purge_delay_option() -> c_long {
    #[allow(unsafe_code)]
    // SAFETY: `mi_option_get` takes an option by value and reads mimalloc's option table (reading
    // the environment on first use); any value below `_mi_option_last` is a valid option.
    unsafe {
        mi_option_get(PURGE_DELAY_OPTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, as it changes the process's allocator option (no other test reads it).
    #[test]
    fn the_purge_delay_option_is_mimalloc_s_and_is_shortened() {
        assert!(
            std::env::var_os("MIMALLOC_PURGE_DELAY").is_none(),
            "unset MIMALLOC_PURGE_DELAY to run this test"
        );
        // Before: mimalloc 3's default, which only the purge delay has. A mimalloc upgrade that
        // renumbers its options fails here, not silently in production.
        assert_eq!(purge_delay_option(), MIMALLOC_DEFAULT_PURGE_DELAY_MS);
        assert_eq!(shorten_purge_delay(), PurgeDelay::Shortened);
        assert_eq!(purge_delay_option(), PURGE_DELAY_MS);
        // Again: already ours.
        assert_eq!(shorten_purge_delay(), PurgeDelay::Shortened);
        assert_eq!(purge_delay_option(), PURGE_DELAY_MS);
    }
}
