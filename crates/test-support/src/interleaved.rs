//! A ratio of two timings that a noisy machine cannot skew: the benchmarks' judge of "full
//! validation against the bare signature check" (trustgate-core's `validate` bench, and the
//! service bench's uncached target).
//!
//! Measured in separate runs, the two sides see a shared or virtualised machine at different
//! moments, and its speed drifts by more than the margins being judged (on the project's VM, two
//! back-to-back criterion runs of the same binary gave ratios from 0.95 to 1.25). Here both sides
//! of a round run within a millisecond of each other, in alternating order, and a round during
//! which the thread was switched out (its context-switch counts in `/proc/thread-self/status`
//! moved) is dropped, so each round's ratio is a ratio of CPU work.

use std::time::Instant;

/// Medians of an interleaved measurement: ns per call of each side, and of the rounds' ratios.
#[derive(Debug, Clone, Copy)]
pub struct Interleaved {
    pub full_ns: f64,
    pub raw_ns: f64,
    /// The median of the rounds' `full / raw`.
    pub ratio: f64,
    /// The fastest round of `full` over the fastest of `raw`.
    pub fastest_ratio: f64,
    /// Rounds kept, and rounds run (the others were preempted).
    pub kept: usize,
    pub tried: usize,
}

/// Times `full` and `raw` in alternating batches of about half a millisecond each until `rounds`
/// rounds ran unpreempted (or twenty times that ran). Each closure runs the batch of the size it
/// is given itself, so a loop around the measured code costs the same on both sides.
///
/// # Panics
/// If every round was preempted.
pub fn interleaved(
    rounds: usize,
    mut full: impl FnMut(u32),
    mut raw: impl FnMut(u32),
) -> Interleaved {
    let probe = Instant::now();
    full(16);
    let per_call = probe.elapsed().as_secs_f64() / 16.0;
    let batch = ((0.0005 / per_call) as u32).max(1);
    let time = |run: &mut dyn FnMut(u32)| {
        let start = Instant::now();
        run(batch);
        start.elapsed().as_secs_f64() * 1e9 / f64::from(batch)
    };
    let (mut full_ns, mut raw_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut tried = 0;
    while ratios.len() < rounds && tried < rounds * 20 {
        let switches = context_switches();
        // Alternate which side goes first, so neither always runs on a warm cache.
        let (f, r) = if tried % 2 == 0 {
            let f = time(&mut full);
            (f, time(&mut raw))
        } else {
            let r = time(&mut raw);
            (time(&mut full), r)
        };
        tried += 1;
        if switches.is_some() && switches != context_switches() {
            continue;
        }
        full_ns.push(f);
        raw_ns.push(r);
        ratios.push(f / r);
    }
    assert!(!ratios.is_empty(), "every interleaved round was preempted");
    let fastest = |values: &[f64]| values.iter().copied().fold(f64::INFINITY, f64::min);
    Interleaved {
        fastest_ratio: fastest(&full_ns) / fastest(&raw_ns),
        kept: ratios.len(),
        full_ns: median(full_ns),
        raw_ns: median(raw_ns),
        ratio: median(ratios),
        tried,
    }
}

/// Voluntary and involuntary context switches of this thread, if the OS reports them.
fn context_switches() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim()
            .parse()
            .ok()
    };
    Some((
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
